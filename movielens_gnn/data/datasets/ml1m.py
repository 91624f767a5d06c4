"""MovieLens-1M: 1,000,209 whole-star ratings of 3,706 movies by 6,040 users, with user demographics.

``ratings.dat`` is ``UserID::MovieID::Rating::Timestamp`` without a header; ``users.dat`` is
``UserID::Gender::Age::Occupation::Zip-code`` (age a group code, occupation a code 0..20);
``movies.dat`` is ``MovieID::Title::Genres`` in Latin-1, genres ``|``-separated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from movielens_gnn.data.datasets import readers
from movielens_gnn.data.datasets.base import NO_GENRE, WHOLE_STARS, Dataset, Ratings, SideInfo, one_hot, year_of

if TYPE_CHECKING:  # pandas loads where files are parsed: 0.3 s of start-up a run from the cache never needs
    import pandas as pd

RATING_COLUMNS = ("user_id", "item_id", "rating", "timestamp")
AGE_GROUPS = (1, 18, 25, 35, 45, 50, 56)  # "under 18", "18-24", ... "56+"
OCCUPATIONS = tuple(range(21))  # 0 "other or not specified" .. 20 "writer"


def read_movies_dat(path: Path, encodings: Sequence[str]) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Parse ``MovieID::Title::Genres`` lines.

    Returns:
        The items frame indexed by movie id (title, year, genres) and the genre names, sorted.
    """
    items = readers.read_text_table(path, ["item_id", "title", "genres"], "::", encodings)
    readers.check_int_column(items, "item_id", path, low=1)
    readers.check_unique(items, "item_id", path)
    items["year"] = year_of(items["title"])
    return items.set_index("item_id").sort_index(), genre_names(items["genres"])


def genre_names(genres: pd.Series) -> tuple[str, ...]:
    """The distinct genres of ``|``-joined genre strings, sorted, without the "no genres" marker."""
    names = set(genres.str.split("|").explode().dropna())
    return tuple(sorted(names - {"", NO_GENRE}))


class MovieLens1M(Dataset):
    """MovieLens-1M under ``root`` (``ml-1m/`` or ``ml-1m.zip``)."""

    NAME = "ml-1m"
    TITLE = "MovieLens-1M"
    URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
    ARCHIVE_MD5 = "c4d9eecfca2ab87c1945afe126590906"
    ARCHIVE_SIZE = 5_917_549
    RAW_FILES = ("ratings.dat", "users.dat", "movies.dat")
    RATING_VALUES = WHOLE_STARS
    ENCODINGS: tuple[str, ...] = ("latin-1",)

    def read_side(self) -> SideInfo:
        path = self.raw_dir / "users.dat"
        users = readers.read_text_table(path, ["user_id", "gender", "age", "occupation", "zip_code"], "::",
                                        self.ENCODINGS)
        readers.check_int_column(users, "user_id", path, low=1)
        readers.check_values(users, "gender", ("M", "F"), path)
        readers.check_int_column(users, "age", path)
        readers.check_values(users, "age", AGE_GROUPS, path)
        readers.check_int_column(users, "occupation", path, low=0, high=20)
        readers.check_unique(users, "user_id", path)
        items, genres = read_movies_dat(self.raw_dir / "movies.dat", self.ENCODINGS)
        return SideInfo(users=users.set_index("user_id").sort_index(), items=items, genres=genres,
                        categories={"age": AGE_GROUPS, "occupation": OCCUPATIONS})

    def ratings_source(self) -> tuple[Path, bool]:
        return self.raw_dir / "ratings.dat", False

    def read_ratings(self) -> Ratings:
        path, header = self.ratings_source()
        columns = readers.read_numeric_table(path, RATING_COLUMNS, (0, 1, 2, 3), "::", header, self.ENCODINGS[0],
                                             fields=4)
        return self.checked_ratings(columns, path, header)

    def user_features(self, side: SideInfo, user_ids: np.ndarray) -> Tensor:
        """``(U, 2 + 7 + 21)``: one-hot gender (M, F), age group and occupation code."""
        users = side.users.loc[user_ids]
        parts = [one_hot(users["gender"], ("M", "F")), one_hot(users["age"], AGE_GROUPS),
                 one_hot(users["occupation"], OCCUPATIONS)]
        return torch.from_numpy(np.concatenate(parts, axis=1))
