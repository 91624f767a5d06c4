"""MovieLens-100K: 100,000 whole-star ratings of 1,682 movies by 943 users, with user demographics.

The raw files keep their original formats: ``u.data`` and the ``uX.base``/``uX.test`` splits are
tab-separated ``user item rating timestamp``; ``u.item`` and ``u.user`` are ``|``-separated and
Latin-1 encoded (titles such as "Misérables"). ``u.info`` gives the counts, which are checked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from movielens_gnn.data.datasets import readers
from movielens_gnn.data.datasets.base import (
    WHOLE_STARS, Dataset, Ratings, SideInfo, check_unique_pairs, one_hot, year_of,
)

ENCODING = "latin-1"
RATING_COLUMNS = ("user_id", "item_id", "rating", "timestamp")


class MovieLens100K(Dataset):
    """MovieLens-100K under ``root`` (``ml-100k/`` or ``ml-100k.zip``); its own splits u1..u5, ua, ub."""

    NAME = "ml-100k"
    TITLE = "MovieLens-100K"
    URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
    ARCHIVE_MD5 = "0e33842e24a9c977be4e0107933c0723"
    ARCHIVE_SIZE = 4_924_029
    RAW_FILES = ("u.data", "u.info", "u.item", "u.user", "u.genre", "u.occupation")
    RATING_VALUES = WHOLE_STARS
    CANONICAL_SPLITS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")

    def raw_files(self, split: str) -> list[Path]:
        extra = [f"{split}.base", f"{split}.test"] if split in self.CANONICAL_SPLITS else []
        return [self.raw_dir / name for name in (*self.RAW_FILES, *extra)]

    def read_side(self) -> SideInfo:
        """Parse ``u.user``, ``u.item``, ``u.genre`` and ``u.occupation``."""
        genres = tuple(_read_lines(self.raw_dir / "u.genre", lambda line: line.split("|")[0]))
        occupations = tuple(_read_lines(self.raw_dir / "u.occupation", str.strip))
        path = self.raw_dir / "u.user"
        users = readers.read_text_table(path, ["user_id", "age", "gender", "occupation", "zip_code"], "|", (ENCODING,))
        readers.check_int_column(users, "user_id", path, low=1)
        readers.check_int_column(users, "age", path, low=1, high=120)
        readers.check_values(users, "gender", ("M", "F"), path)
        readers.check_values(users, "occupation", occupations, path)
        readers.check_unique(users, "user_id", path)
        path = self.raw_dir / "u.item"
        items = readers.read_text_table(
            path, ["item_id", "title", "release_date", "video_release_date", "url", *genres], "|", (ENCODING,))
        readers.check_int_column(items, "item_id", path, low=1)
        for genre in genres:
            readers.check_int_column(items, genre, path, low=0, high=1)
        readers.check_unique(items, "item_id", path)
        flags = items[list(genres)].to_numpy(bool)
        items["genres"] = ["|".join(g for g, on in zip(genres, row) if on) for row in flags]
        # The year: from the title ("Fargo (1996)"), else from the US release date ("14-Feb-1997").
        items["year"] = year_of(items["title"]).where(lambda y: y != "", items["release_date"].str[-4:])
        items = items.drop(columns=["video_release_date", *genres]).set_index("item_id").sort_index()
        users = users.set_index("user_id").sort_index()
        return SideInfo(users=users, items=items, genres=genres, categories={"occupation": occupations})

    def read_ratings(self) -> Ratings:
        return self.read_ratings_file("u.data", self.read_side())

    def ratings_source(self) -> tuple[Path, bool]:
        return self.raw_dir / "u.data", False

    def read_ratings_file(self, name: str, side: SideInfo) -> Ratings:
        """Parse a ratings file (``u.data``, ``u1.base`` …) and check it against ``side``.

        Raises:
            FileNotFoundError: The file is missing.
            ValueError: A line is malformed, a rating is outside 1..5, an id is unknown or a
                (user, item) pair appears twice; the message names the file and line.
        """
        path = self.raw_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; it is part of the MovieLens-100K archive.")
        frame = readers.read_text_table(path, list(RATING_COLUMNS), "\t", (ENCODING,))
        for column in ("user_id", "item_id", "timestamp"):
            readers.check_int_column(frame, column, path, low=0)
        readers.check_int_column(frame, "rating", path, low=1, high=5)
        for column, listed, known in (("user_id", "u.user", side.users.index), ("item_id", "u.item", side.items.index)):
            unknown = ~np.isin(frame[column].to_numpy(), known.to_numpy())
            if unknown.any():
                row = int(np.flatnonzero(unknown)[0])
                raise ValueError(f"{path} line {readers.line_of(frame, row)}: {column} {frame[column].iloc[row]} is "
                                 f"not in the id list of {listed}; the files are from different releases or edited. Restore the "
                                 "original files.")
        check_unique_pairs(frame["user_id"].to_numpy(), frame["item_id"].to_numpy(), path, header=False)
        return Ratings(
            user_id=frame["user_id"].to_numpy(np.int64),
            item_id=frame["item_id"].to_numpy(np.int64),
            rating=frame["rating"].to_numpy(np.float32),
            timestamp=frame["timestamp"].to_numpy(np.int64),
        )

    def read_split(self, split: str, side: SideInfo) -> tuple[Ratings, Ratings]:
        return self.read_ratings_file(f"{split}.base", side), self.read_ratings_file(f"{split}.test", side)

    def read_info(self) -> dict[str, int]:
        """Parse ``u.info`` ("943 users" …) into ``{"users": 943, "items": 1682, "ratings": 100000}``."""
        path = self.raw_dir / "u.info"
        counts: dict[str, int] = {}
        for number, line in enumerate(path.read_text(encoding=ENCODING).splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[0].isdigit():
                raise ValueError(f"{path} line {number}: expected '<count> <users|items|ratings>', got {line!r}. "
                                 f"{readers.FIX_LINE}")
            counts[parts[1]] = int(parts[0])
        missing = {"users", "items", "ratings"} - counts.keys()
        if missing:
            raise ValueError(f"{path} gives no count for {', '.join(sorted(missing))}.")
        return counts

    def load(self) -> tuple[SideInfo, Ratings]:
        """Read and cross-check everything: ``u.data`` must match the counts in ``u.info``."""
        self.check_files()
        side = self.read_side()
        ratings = self.read_ratings_file("u.data", side)
        info = self.read_info()
        seen = {
            "users": (len(side.users), len(np.unique(ratings.user_id))),
            "items": (len(side.items), len(np.unique(ratings.item_id))),
        }
        for what, (listed, rated) in seen.items():
            if listed != info[what] or rated != info[what]:
                raise ValueError(
                    f"{self.raw_dir}: u.info says {info[what]} {what}; the id list has {listed} and "
                    f"u.data rates {rated}. The files are incomplete or from different releases."
                )
        if len(ratings) != info["ratings"]:
            raise ValueError(f"{self.raw_dir / 'u.data'} has {len(ratings)} ratings; u.info says {info['ratings']}.")
        return side, ratings

    def user_features(self, side: SideInfo, user_ids: np.ndarray) -> Tensor:
        """``(U, 1 + 2 + n_occupations)``: z-scored age, one-hot gender (M, F), one-hot occupation."""
        users = side.users.loc[user_ids]
        age = users["age"].to_numpy(np.float32)
        age = (age - age.mean()) / max(float(age.std()), 1e-6)
        gender = one_hot(users["gender"], ("M", "F"))
        occupation = one_hot(users["occupation"], side.categories["occupation"])
        return torch.from_numpy(np.concatenate([age[:, None], gender, occupation], axis=1))


def _read_lines(path: Path, parse) -> list[str]:
    lines = path.read_text(encoding=ENCODING).splitlines()
    return [parse(line) for line in lines if line.strip()]
