"""What every dataset shares: ratings as arrays, side information, and finding, fetching and verifying files.

A dataset is one small class (PyG style): it names its archive and checksum, the folder the archive
extracts to, its raw files, its rating scale and how to parse them; :class:`Dataset` decides what to
download, verify and extract, and nothing else is done twice.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Mapping, Optional, TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from movielens_gnn.data.datasets import readers
from movielens_gnn.data.download import download, extract_zip, verify_archive
from movielens_gnn.files import remove_stale

if TYPE_CHECKING:  # pandas loads where files are parsed: 0.3 s of start-up a run from the cache never needs
    import pandas as pd

log = logging.getLogger(__name__)

WHOLE_STARS = (1.0, 2.0, 3.0, 4.0, 5.0)
HALF_STARS = tuple(k / 2 for k in range(1, 11))  # 0.5 .. 5.0
NO_GENRE = "(no genres listed)"  # the CSV releases' entry for a movie without genres
_YEAR = re.compile(r"\((\d{4})\)\s*$")


@dataclass(frozen=True)
class Ratings:
    """Ratings as parallel arrays, in file order, with the dataset's own ids.

    Attributes:
        user_id: ``(E,)`` int64.
        item_id: ``(E,)`` int64.
        rating: ``(E,)`` float32 on the dataset's scale (1..5, or 0.5..5.0 in half stars).
        timestamp: ``(E,)`` int64 unix seconds (0 where a file has none).
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
class SideInfo:
    """What a dataset says about its users and items besides the ratings.

    Attributes:
        users: Indexed by user id; the dataset's user columns (none for most datasets).
        items: Indexed by item id; at least ``title``, ``year`` and ``genres`` (``|``-joined), plus the
            dataset's own columns.
        genres: Genre names in the order of the item features.
        categories: The vocabulary of each categorical user column, in feature order (ml-100k's
            occupations, say).
    """

    users: pd.DataFrame
    items: pd.DataFrame
    genres: tuple[str, ...]
    categories: Mapping[str, tuple] = field(default_factory=dict)

    def item_info(self, item_ids: np.ndarray) -> pd.DataFrame:
        """``title``, ``year`` and ``genres`` of each of ``item_ids``, in order; blank for an unlisted item."""
        return self.items.reindex(columns=["title", "year", "genres"]).reindex(item_ids).fillna("")


def year_of(titles: pd.Series) -> pd.Series:
    """The year at the end of each title ("Heat (1995)" gives "1995"), else ""."""
    return titles.str.extract(_YEAR, expand=False).fillna("")


def genre_flags(items: pd.DataFrame, genres: tuple[str, ...], item_ids: np.ndarray) -> Tensor:
    """``(I, len(genres))`` 0/1: which of ``genres`` each of ``item_ids`` has (none for an unlisted item)."""
    flags = items["genres"].str.get_dummies(sep="|").reindex(columns=list(genres), fill_value=0)
    flags = flags.reindex(item_ids, fill_value=0)
    return torch.from_numpy(flags.to_numpy(np.float32, copy=True))


def one_hot(values: pd.Series, vocabulary: tuple) -> np.ndarray:
    """``(N, len(vocabulary))`` float32 one-hot rows of ``values``."""
    import pandas as pd
    codes = pd.Categorical(values, categories=list(vocabulary)).codes
    out = np.zeros((len(values), len(vocabulary)), dtype=np.float32)
    out[np.arange(len(values))[codes >= 0], codes[codes >= 0]] = 1.0
    return out


class Dataset:
    """A ratings dataset under ``root``: find, fetch, verify and read it.

    ``root`` holds the extracted folder :attr:`FOLDER` or the archive ``<NAME>.zip``. When neither is
    present, :meth:`prepare` downloads the archive from ``url``, checks its md5 and size, and extracts it
    through a temporary folder, so nothing is ever half-written.

    Subclasses set the class attributes and implement :meth:`read_side` and :meth:`read_ratings`.

    Args:
        root: The data folder.
        url: Where to download the archive from when it is missing; ``None`` means :attr:`URL`.
        verify: Check the archive's md5 and size; ``False`` accepts another release on purpose.
    """

    NAME: ClassVar[str] = ""
    TITLE: ClassVar[str] = ""  # for people: "MovieLens-1M"
    FOLDER: ClassVar[str] = ""  # what the archive extracts to; "" means NAME
    URL: ClassVar[Optional[str]] = None
    ARCHIVE_MD5: ClassVar[Optional[str]] = None
    ARCHIVE_SIZE: ClassVar[Optional[int]] = None
    RAW_FILES: ClassVar[tuple[str, ...]] = ()  # must all be in the folder
    RATING_VALUES: ClassVar[Optional[tuple[float, ...]]] = WHOLE_STARS  # None: the distinct values in the data
    CANONICAL_SPLITS: ClassVar[tuple[str, ...]] = ()  # the dataset's own train/test files (ml-100k's u1..)
    DEVELOPMENT: ClassVar[bool] = False  # GroupLens may replace the archive with a newer release

    def __init__(self, root: str | Path, url: Optional[str] = None, verify: bool = True) -> None:
        self.root = Path(root)
        self.url = url or self.URL
        self.verify = verify

    @property
    def raw_dir(self) -> Path:
        return self.root / (self.FOLDER or self.NAME)

    @property
    def location(self) -> Path:
        """What the data is read from, as reports name it: the release's folder (your own file, for ``csv``)."""
        return self.raw_dir

    @property
    def archive(self) -> Path:
        return self.root / f"{self.NAME}.zip"

    def raw_files(self, split: str) -> list[Path]:
        """The files whose sizes and times key the processed cache for ``split``."""
        return [self.raw_dir / name for name in self.RAW_FILES]

    # ------------------------------------------------------------------------------ files
    def prepare(self) -> Path:
        """Make sure :attr:`raw_dir` exists and holds the raw files; fetch or extract what is missing.

        Returns:
            :attr:`raw_dir`.

        Raises:
            FileNotFoundError: Nothing local and the download failed.
            ValueError: The archive's checksum or content is wrong.
        """
        folder = self.FOLDER or self.NAME
        for path, what in ((self.root, "--data.root"), (self.raw_dir, f"{folder}/ in --data.root")):
            if path.exists() and not path.is_dir():
                raise NotADirectoryError(
                    f"{what} {path} is a file; expected a folder that holds {folder}/ or {self.archive.name} "
                    "(or an empty one to download into). Pass --data.root DIR for such a folder."
                )
        for name in (folder, self.archive.name):  # what a killed extraction or download left
            remove_stale(self.root, name)
        if not self.raw_dir.is_dir():
            inside = [name for name in self.RAW_FILES if (self.root / name).is_file()]
            if inside and not self.archive.is_file():  # the dataset's own folder, given as the root
                raise FileNotFoundError(
                    f"--data.root {self.root} holds {self.TITLE}'s files itself ({inside[0]}, ...); it names the "
                    f"folder above {folder}/. Pass --data.root {self.root.resolve().parent} instead.")
            if not self.archive.is_file():
                try:
                    download(self.url, self.archive, *self._checksum())
                except ConnectionError as err:
                    raise FileNotFoundError(
                        f"{self.TITLE} was not found under {self.root.resolve()} and could not be downloaded "
                        f"({err}). Put the extracted folder at {self.raw_dir.resolve()} or the archive at "
                        f"{self.archive.resolve()} (from {self.URL}), or pass --data.root DIR for a folder "
                        "that holds one of them."
                    ) from err
                except ValueError as err:
                    raise ValueError(f"{err}{self._newer_release_hint()}") from err
            elif self.verify:
                try:
                    verify_archive(self.archive, *self._checksum(), on_mismatch="keep" if self.DEVELOPMENT else "rename")
                except ValueError as err:
                    raise ValueError(f"{err}{self._newer_release_hint()}") from err
            log.info("Extracting %s", self.archive)
            extract_zip(self.archive, self.raw_dir, folder)
        self.check_files()
        return self.raw_dir

    def _checksum(self) -> tuple[Optional[str], Optional[int]]:
        return (self.ARCHIVE_MD5, self.ARCHIVE_SIZE) if self.verify else (None, None)

    def _newer_release_hint(self) -> str:
        if not self.DEVELOPMENT:
            return ""
        return (f" {self.TITLE} is a development dataset that GroupLens replaces from time to time: if this is "
                "a newer release you want, pass --data.verify false to accept it on purpose.")

    def check_files(self, names: Optional[tuple[str, ...]] = None) -> None:
        """Raise ``FileNotFoundError`` naming every file of ``names`` (default :attr:`RAW_FILES`) missing."""
        names = self.RAW_FILES if names is None else names
        missing = [name for name in names if not (self.raw_dir / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{self.raw_dir} is missing {', '.join(missing)}; expected the {self.TITLE} files "
                f"{', '.join(names)}. Re-extract {self.archive.name} there or point --data.root elsewhere."
            )

    # ---------------------------------------------------------------------------- parsing
    def read_side(self) -> SideInfo:
        """Parse the users and items files."""
        raise NotImplementedError

    def read_ratings(self) -> Ratings:
        """Parse every rating of the dataset, checked against its scale; no (user, item) pair twice."""
        raise NotImplementedError

    def read_split(self, split: str, side: SideInfo) -> tuple[Ratings, Ratings]:
        """The dataset's own ``(train, test)`` files of ``split`` (one of :attr:`CANONICAL_SPLITS`)."""
        raise ValueError(f"{self.NAME} has no split files of its own; valid splits: random, temporal, ratio.")

    def load(self) -> tuple[SideInfo, Ratings]:
        """Read the side information and all ratings, and check that every rated id is listed.

        Returns:
            The side information and every rating.
        """
        self.check_files()
        side = self.read_side()
        ratings = self.read_ratings()
        self.check_listed(ratings, side)
        return side, ratings

    def check_listed(self, ratings: Ratings, side: SideInfo) -> None:
        """Raise ``ValueError`` for the first rating whose user or item the side files do not list
        (when they list users or items at all)."""
        for column, frame in (("user_id", side.users), ("item_id", side.items)):
            if not len(frame.index):  # the dataset lists none: nothing to check against
                continue
            ids = getattr(ratings, column)
            unknown = readers.unknown_ids(ids, frame.index.to_numpy())
            if unknown.any():
                row = int(np.flatnonzero(unknown)[0])
                path, header = self.ratings_source()
                raise ValueError(
                    f"{path} line {readers.line_number(path, row, header)}: {column} {ids[row]} is not listed in "
                    f"the {'users' if column == 'user_id' else 'items'} file; the files are from different "
                    "releases or edited. Restore the original files."
                )

    def ratings_source(self) -> tuple[Path, bool]:
        """The file :meth:`read_ratings` reads and whether it has a header (for error line numbers)."""
        raise NotImplementedError

    def rating_values(self, ratings: Ratings) -> tuple[float, ...]:
        """The rating scale: :attr:`RATING_VALUES`, or the distinct ratings in the data."""
        if self.RATING_VALUES is not None:
            return self.RATING_VALUES
        return tuple(float(v) for v in np.unique(ratings.rating))

    # ---------------------------------------------------------------------------- features
    def user_features(self, side: SideInfo, user_ids: np.ndarray) -> Tensor:
        """``(U, Fu)`` features of ``user_ids`` (internal order); ``(U, 0)`` for a dataset without any."""
        return torch.zeros(len(user_ids), 0)

    def item_features(self, side: SideInfo, item_ids: np.ndarray) -> Tensor:
        """``(I, n_genres)`` genre flags of ``item_ids`` (internal order)."""
        return genre_flags(side.items, side.genres, item_ids)

    # ----------------------------------------------------------------------------- helpers
    def checked_ratings(self, columns: dict[str, np.ndarray], path: Path, header: bool) -> Ratings:
        """Ratings from :func:`readers.read_numeric_table` columns, checked: integer ids >= 1, ratings on the
        scale (when the dataset declares one), integer timestamps, no pair twice."""
        users = readers.check_integers(columns["user_id"], "user_id", path, header, low=1)
        items = readers.check_integers(columns["item_id"], "item_id", path, header, low=1)
        if "timestamp" in columns:
            timestamps = readers.check_integers(columns["timestamp"], "timestamp", path, header, low=0)
        else:
            timestamps = np.zeros(len(users), dtype=np.int64)
        rating = columns["rating"]
        if self.RATING_VALUES is not None:
            readers.check_scale(rating, self.RATING_VALUES, path, header)
        check_unique_pairs(users, items, path, header)
        return Ratings(users, items, rating.astype(np.float32), timestamps)


def check_unique_pairs(users: np.ndarray, items: np.ndarray, path: Path, header: bool) -> None:
    """Raise ``ValueError`` naming the line of the first (user, item) pair that appears twice."""
    repeats = readers.repeated_rows(users, items)
    if len(repeats):
        row = int(repeats.min())
        earlier = int(np.flatnonzero((users[:row] == users[row]) & (items[:row] == items[row]))[0])
        more = f", and {len(repeats) - 1} more lines repeat an earlier pair" if len(repeats) > 1 else ""
        raise ValueError(f"{path} line {readers.line_number(path, row, header)}: user {users[row]} rated item "
                         f"{items[row]} twice (also on line {readers.line_number(path, earlier, header)}){more}; each "
                         f"(user, item) pair may appear once. " + (
                             "Keep one line per pair (pandas: drop_duplicates on the user and item columns), or "
                             "restore the original file." if more else readers.REMOVE_REPEAT))
