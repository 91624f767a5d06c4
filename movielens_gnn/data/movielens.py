"""MovieLens-100K on disk: locate or fetch the files, validate and parse them.

The raw files keep their original formats: ``u.data`` and the ``uX.base``/``uX.test`` splits are
tab-separated ``user item rating timestamp``; ``u.item`` and ``u.user`` are ``|``-separated and
Latin-1 encoded (titles such as "Misérables").
"""

from __future__ import annotations

import csv
import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from movielens_gnn.data.download import download, extract_zip, verify_archive
from movielens_gnn.files import remove_stale

log = logging.getLogger(__name__)

ENCODING = "latin-1"
CANONICAL_SPLITS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")
REQUIRED_FILES = ("u.data", "u.info", "u.item", "u.user", "u.genre", "u.occupation")
RATING_COLUMNS = ("user_id", "item_id", "rating", "timestamp")


@dataclass(frozen=True)
class Ratings:
    """Ratings as parallel arrays, in file order, with MovieLens ids (1-based).

    Attributes:
        user_id: ``(E,)`` int64.
        item_id: ``(E,)`` int64.
        rating: ``(E,)`` float32 in 1..5.
        timestamp: ``(E,)`` int64 unix seconds.
    """

    user_id: np.ndarray
    item_id: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray

    def __len__(self) -> int:
        return len(self.rating)

    def take(self, index: np.ndarray) -> Ratings:
        """Return the ratings at ``index`` (an int array or a boolean mask)."""
        return Ratings(self.user_id[index], self.item_id[index], self.rating[index], self.timestamp[index])


@dataclass(frozen=True)
class MovieLensMeta:
    """Users, items and their side information.

    Attributes:
        user_ids: ``(U,)`` the MovieLens user ids, sorted; index ``k`` is internal user ``k``.
        item_ids: ``(I,)`` the MovieLens item ids, sorted; index ``k`` is internal item ``k``.
        users: ``u.user`` as a frame indexed by user id: age, gender, occupation, zip_code.
        items: ``u.item`` as a frame indexed by item id: title, release_date, url and one 0/1
            column per genre.
        genres: The 19 genre names in ``u.genre`` order.
        occupations: The occupation names in ``u.occupation`` order.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    users: pd.DataFrame
    items: pd.DataFrame
    genres: tuple[str, ...]
    occupations: tuple[str, ...]

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)


class MovieLens100K:
    """The MovieLens-100K files under ``root``: find, fetch, verify and read them.

    ``root`` holds ``ml-100k/`` (extracted) or ``ml-100k.zip``. When neither is present,
    :meth:`prepare` downloads the archive from ``url``, checks its md5 and size, and extracts it
    through a temporary folder.

    Args:
        root: The data folder.
        url: Where to download ``ml-100k.zip`` from when it is missing.
    """

    NAME = "ml-100k"
    URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
    ARCHIVE_MD5 = "0e33842e24a9c977be4e0107933c0723"
    ARCHIVE_SIZE = 4_924_029

    def __init__(self, root: str | Path, url: str = URL) -> None:
        self.root = Path(root)
        self.url = url

    @property
    def raw_dir(self) -> Path:
        return self.root / self.NAME

    @property
    def archive(self) -> Path:
        return self.root / f"{self.NAME}.zip"

    def prepare(self) -> Path:
        """Make sure ``raw_dir`` exists and holds valid files; fetch or extract what is missing.

        Returns:
            ``raw_dir``.

        Raises:
            FileNotFoundError: Nothing local and the download failed.
            ValueError: The archive's checksum or a file's content is wrong.
        """
        for path, what in ((self.root, "--data.root"), (self.raw_dir, f"{self.NAME}/ in --data.root")):
            if path.exists() and not path.is_dir():
                raise NotADirectoryError(
                    f"{what} {path} is a file; expected a folder that holds {self.NAME}/ or {self.NAME}.zip "
                    "(or an empty one to download into). Pass --data.root DIR for such a folder."
                )
        for name in (self.NAME, self.archive.name):  # what a killed extraction or download left
            remove_stale(self.root, name)
        if not self.raw_dir.is_dir():
            if not self.archive.is_file():
                try:
                    download(self.url, self.archive, self.ARCHIVE_MD5, self.ARCHIVE_SIZE)
                except ConnectionError as err:
                    raise FileNotFoundError(
                        f"MovieLens-100K was not found under {self.root.resolve()} and could not be "
                        f"downloaded ({err}). Put the extracted folder at {self.raw_dir.resolve()} or "
                        f"the archive at {self.archive.resolve()} (from {self.URL}), or pass "
                        "--data.root DIR for a folder that holds one of them."
                    ) from err
            else:
                verify_archive(self.archive, self.ARCHIVE_MD5, self.ARCHIVE_SIZE)
            log.info("Extracting %s", self.archive)
            extract_zip(self.archive, self.raw_dir, self.NAME)
        self.check_files()
        return self.raw_dir

    def check_files(self, names: tuple[str, ...] = REQUIRED_FILES) -> None:
        """Raise ``FileNotFoundError`` naming every file of ``names`` missing from ``raw_dir``."""
        missing = [name for name in names if not (self.raw_dir / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{self.raw_dir} is missing {', '.join(missing)}; expected the MovieLens-100K files "
                f"{', '.join(names)}. Re-extract ml-100k.zip there or point --data.root elsewhere."
            )

    # ----------------------------------------------------------------------------------- parsing
    def read_meta(self) -> MovieLensMeta:
        """Parse ``u.user``, ``u.item``, ``u.genre`` and ``u.occupation``."""
        genres = tuple(_read_lines(self.raw_dir / "u.genre", lambda line: line.split("|")[0]))
        occupations = tuple(_read_lines(self.raw_dir / "u.occupation", str.strip))
        users = _read_table(self.raw_dir / "u.user", ["user_id", "age", "gender", "occupation", "zip_code"])
        _check_int(users, "user_id", self.raw_dir / "u.user", low=1)
        _check_int(users, "age", self.raw_dir / "u.user", low=1, high=120)
        _check_values(users, "gender", ("M", "F"), self.raw_dir / "u.user")
        _check_values(users, "occupation", occupations, self.raw_dir / "u.user")
        item_columns = ["item_id", "title", "release_date", "video_release_date", "url", *genres]
        items = _read_table(self.raw_dir / "u.item", item_columns)
        _check_int(items, "item_id", self.raw_dir / "u.item", low=1)
        for genre in genres:
            _check_int(items, genre, self.raw_dir / "u.item", low=0, high=1)
        for frame, key, path in ((users, "user_id", "u.user"), (items, "item_id", "u.item")):
            duplicated = frame[key].duplicated()
            if duplicated.any():
                row = int(np.flatnonzero(duplicated.to_numpy())[0])
                raise ValueError(f"{self.raw_dir / path} line {_line(frame, row)}: {key} {frame[key].iloc[row]} appears twice.")
        users = users.set_index("user_id").sort_index()
        items = items.drop(columns="video_release_date").set_index("item_id").sort_index()
        return MovieLensMeta(
            user_ids=users.index.to_numpy(np.int64),
            item_ids=items.index.to_numpy(np.int64),
            users=users,
            items=items,
            genres=genres,
            occupations=occupations,
        )

    def read_ratings(self, name: str, meta: MovieLensMeta) -> Ratings:
        """Parse a ratings file (``u.data``, ``u1.base`` …) and check it against ``meta``.

        Raises:
            FileNotFoundError: The file is missing.
            ValueError: A line is malformed, a rating is outside 1..5, an id is unknown or a
                (user, item) pair appears twice; the message names the file and line.
        """
        path = self.raw_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; it is part of the MovieLens-100K archive.")
        frame = _read_table(path, list(RATING_COLUMNS), sep="\t")
        for column in ("user_id", "item_id", "timestamp"):
            _check_int(frame, column, path, low=0)
        _check_int(frame, "rating", path, low=1, high=5)
        for column, known in (("user_id", meta.user_ids), ("item_id", meta.item_ids)):
            unknown = ~np.isin(frame[column].to_numpy(), known)
            if unknown.any():
                row = int(np.flatnonzero(unknown)[0])
                listed = "u.user" if column == "user_id" else "u.item"
                raise ValueError(f"{path} line {_line(frame, row)}: {column} {frame[column].iloc[row]} is not in the "
                                 f"id list of {listed}; the files are from different releases or edited.")
        duplicated = frame.duplicated(["user_id", "item_id"]).to_numpy()
        if duplicated.any():
            row = int(np.flatnonzero(duplicated)[0])
            raise ValueError(f"{path} line {_line(frame, row)}: user {frame.user_id.iloc[row]} rated item "
                             f"{frame.item_id.iloc[row]} twice; each (user, item) pair may appear once.")
        return Ratings(
            user_id=frame["user_id"].to_numpy(np.int64),
            item_id=frame["item_id"].to_numpy(np.int64),
            rating=frame["rating"].to_numpy(np.float32),
            timestamp=frame["timestamp"].to_numpy(np.int64),
        )

    def read_info(self) -> dict[str, int]:
        """Parse ``u.info`` ("943 users" …) into ``{"users": 943, "items": 1682, "ratings": 100000}``."""
        path = self.raw_dir / "u.info"
        counts: dict[str, int] = {}
        for number, line in enumerate(path.read_text(encoding=ENCODING).splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[0].isdigit():
                raise ValueError(f"{path} line {number}: expected '<count> <users|items|ratings>', got {line!r}.")
            counts[parts[1]] = int(parts[0])
        missing = {"users", "items", "ratings"} - counts.keys()
        if missing:
            raise ValueError(f"{path} gives no count for {', '.join(sorted(missing))}.")
        return counts

    def load(self) -> tuple[MovieLensMeta, Ratings]:
        """Read and cross-check everything: ``u.data`` must match the counts in ``u.info``.

        Returns:
            The metadata and all ratings of ``u.data``.
        """
        self.check_files()
        meta = self.read_meta()
        ratings = self.read_ratings("u.data", meta)
        info = self.read_info()
        seen = {
            "users": (meta.num_users, len(np.unique(ratings.user_id))),
            "items": (meta.num_items, len(np.unique(ratings.item_id))),
        }
        for what, (listed, rated) in seen.items():
            if listed != info[what] or rated != info[what]:
                raise ValueError(
                    f"{self.raw_dir}: u.info says {info[what]} {what}; the id list has {listed} and "
                    f"u.data rates {rated}. The files are incomplete or from different releases."
                )
        if len(ratings) != info["ratings"]:
            raise ValueError(
                f"{self.raw_dir / 'u.data'} has {len(ratings)} ratings; u.info says {info['ratings']}."
            )
        return meta, ratings


def _read_lines(path: Path, parse) -> list[str]:
    lines = path.read_text(encoding=ENCODING).splitlines()
    return [parse(line) for line in lines if line.strip()]


def _line(frame: pd.DataFrame, row: int) -> int:
    """The 1-based line number in the file of ``frame``'s ``row`` (blank lines are skipped when reading)."""
    lines = frame.attrs.get("lines")
    return int(lines[row]) if lines is not None else row + 1


def _read_table(path: Path, columns: list[str], sep: str = "|") -> pd.DataFrame:
    """Read a headerless text table as strings; report the first bad line by number.

    Every non-blank line must have exactly ``len(columns)`` fields: a missing or an extra field
    (a trailing separator, say) is reported with its line number rather than read shifted. The
    frame's ``attrs["lines"]`` maps each row to its line number in the file.
    """
    try:
        text = path.read_bytes().decode(ENCODING)
    except OSError as err:
        raise ValueError(f"{path} cannot be read: {err.strerror or err}.") from err
    # Split as pandas' parser does (on \n, \r\n, \r only; str.splitlines would also split on \x0c, \x85 ...),
    # so that row k of the frame is the k-th non-empty line here.
    lines = re.split(r"\r\n|\r|\n", text)
    numbers = [number for number, line in enumerate(lines, start=1) if line]
    if not numbers:
        raise ValueError(f"{path} is empty; expected lines of {', '.join(columns)}.")
    expected = len(columns) - 1
    for number in numbers:
        found = lines[number - 1].count(sep)
        if found != expected:
            name = {"\t": "tab", "|": "'|'"}.get(sep, repr(sep))
            raise ValueError(
                f"{path} line {number}: expected {len(columns)} {name}-separated fields "
                f"({', '.join(columns)}), got {found + 1}. Fix or remove that line, or restore the original file."
            )
    frame = pd.read_csv(
        io.StringIO(text),
        sep=sep,
        header=None,
        names=columns,
        dtype=str,
        keep_default_na=False,
        engine="c",
        quoting=csv.QUOTE_NONE,
    )
    if len(frame) != len(numbers):  # pandas saw other rows than we counted: say so rather than misnumber
        raise ValueError(f"{path} could not be read line by line ({len(numbers)} lines, {len(frame)} rows); "
                         "restore the original file.")
    frame.attrs["lines"] = np.asarray(numbers)
    return frame


def _check_int(frame: pd.DataFrame, column: str, path: Path, low: int | None = None, high: int | None = None) -> None:
    """Convert ``frame[column]`` to int64 in place, raising on the first bad line."""
    values = pd.to_numeric(frame[column].str.strip(), errors="coerce")
    bad = values.isna() | (values != values.round())
    if low is not None:
        bad |= values < low
    if high is not None:
        bad |= values > high
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        bounds = f" in {low}..{high}" if high is not None else (f" >= {low}" if low is not None else "")
        raise ValueError(f"{path} line {_line(frame, row)}: {column} must be an integer{bounds}, "
                         f"got {frame[column].iloc[row]!r}.")
    frame[column] = values.astype(np.int64)


def _check_values(frame: pd.DataFrame, column: str, valid: tuple[str, ...], path: Path) -> None:
    bad = ~frame[column].isin(valid)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(
            f"{path} line {_line(frame, row)}: {column} {frame[column].iloc[row]!r} is not one of {', '.join(valid)}."
        )
