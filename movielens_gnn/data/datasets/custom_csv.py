"""Your own ratings file: ``--data.dataset csv --data.path FILE``.

Any delimited text file with one rating per line works: name its columns with ``--data.columns``
(header names, or 0-based positions with ``--data.header false``), its separator with
``--data.separator``. User and item ids must be integers (they need not be contiguous); ratings may
be on any scale, and the scale is the set of distinct ratings in the file (without a rating column,
``--data.columns.rating null``, each line is an interaction counted as 1). A timestamp column is
optional (the ``temporal`` split needs it). ``--data.items_path`` optionally names a CSV file with a
header holding the item id column, ``title`` and optionally ``genres`` (``|``-separated), for
``recommend`` and the genre features.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from movielens_gnn.data.datasets import readers
from movielens_gnn.data.datasets.base import Dataset, Ratings, SideInfo, check_unique_pairs, year_of
from movielens_gnn.data.datasets.ml1m import genre_names


@dataclass(frozen=True)
class Columns:
    """Which columns of your ratings file hold what: header names, or 0-based positions without a header.

    Attributes:
        user: The user id column.
        item: The item id column.
        rating: The rating column, or ``None`` for a file of interactions without ratings (views, clicks,
            purchases): every line then counts as rating 1, for the ranking task.
        timestamp: The timestamp column (unix seconds), or ``None`` when the file has none.
    """

    user: Union[int, str] = "user_id"
    item: Union[int, str] = "item_id"
    rating: Union[int, str, None] = "rating"
    timestamp: Union[int, str, None] = None


SEPARATOR_ESCAPES = {"\\t": "\t", "tab": "\t"}
# Separators to suggest when a header reads as one field that holds one of them.
LIKELY_SEPARATORS = (";", "\t", "|", ",", " ")
# Excel's "CSV UTF-8" starts the file with a byte-order mark; utf-8-sig reads past it (and reads plain UTF-8).
ENCODING = "utf-8-sig"


class CSVRatings(Dataset):
    """Ratings from a delimited text file of your own.

    Args:
        root: The data folder (the processed cache goes under it).
        path: The ratings file.
        columns: Which columns hold user, item, rating and (optionally) timestamp.
        separator: The field separator, one character (``","``, ``";"``, a tab ...; ``\\t`` as two
            characters, or ``tab``, also mean a tab).
        header: The first line names the columns.
        items_path: Optional items file (CSV with a header: the item column, ``title``, optionally ``genres``).
    """

    NAME = "csv"
    TITLE = "your ratings file"
    RATING_VALUES = None  # the distinct ratings in the file

    def __init__(self, root: str | Path, path: str | Path, columns: Columns = Columns(), separator: str = ",",
                 header: bool = True, items_path: Optional[str | Path] = None) -> None:
        super().__init__(root)
        self.path = Path(path)
        self.columns = columns
        # "\t" as typed in a shell or YAML without escapes: the tab it stands for.
        separator = SEPARATOR_ESCAPES.get(separator, separator)
        self.separator = separator
        self.header = header
        self.items_path = Path(items_path) if items_path is not None else None
        if len(separator) != 1:
            raise ValueError(f"--data.separator must be one character (',', ';', '\\t' ...), got {separator!r}.")
        for name in ("user", "item", "rating", "timestamp"):
            value = getattr(columns, name)
            if value is None and name not in ("rating", "timestamp"):
                raise ValueError(f"--data.columns.{name} must name a column (or its 0-based position), got null.")
            if not header and value is not None and not (isinstance(value, int) and value >= 0):
                raise ValueError(f"--data.columns.{name} must be a 0-based column position when --data.header is "
                                 f"false, got {value!r}.")

    @property
    def raw_dir(self) -> Path:
        return self.path.parent

    @property
    def location(self) -> Path:
        return self.path

    def raw_files(self, split: str) -> list[Path]:
        return [self.path] + ([self.items_path] if self.items_path is not None else [])

    def prepare(self) -> Path:
        for path, option, what in ((self.path, "--data.path", "your ratings file (see --data.columns, --data.separator "
                                    "and --data.header)"),
                                   (self.items_path, "--data.items_path", "your items file (the item column, title, "
                                    "genres)")):
            if path is not None and not path.is_file():
                raise FileNotFoundError(f"{option} {path} is not a file; expected {what}.")
        return self.raw_dir

    def check_files(self, names=None) -> None:
        self.prepare()

    def ratings_source(self) -> tuple[Path, bool]:
        return self.path, self.header

    def _positions(self) -> tuple[list[str], list[int]]:
        wanted = {"user_id": self.columns.user, "item_id": self.columns.item}
        if self.columns.rating is not None:  # else interactions without ratings: each counts as 1
            wanted["rating"] = self.columns.rating
        if self.columns.timestamp is not None:
            wanted["timestamp"] = self.columns.timestamp
        if not self.header:
            return list(wanted), [int(v) for v in wanted.values()]
        found = readers.header_fields(self.path, self.separator, ENCODING)
        if not any(field.strip() for field in found):
            raise ValueError(f"{self.path} is empty or starts with a blank line; expected a header naming the columns "
                             "(or --data.header false with 0-based --data.columns positions).")
        positions = []
        for name, column in wanted.items():
            option = {"user_id": "user", "item_id": "item"}.get(name, name)
            if isinstance(column, int):
                if column >= len(found):
                    raise ValueError(f"{self.path} has {len(found)} columns; --data.columns.{option} {column} is "
                                     "beyond them.")
                positions.append(column)
            elif column in found:
                positions.append(found.index(column))
            else:
                raise ValueError(f"{self.path} has no column {column!r} (--data.columns.{option}); its header has "
                                 f"{', '.join(repr(f) for f in found)}. {self._header_advice(found, option)}")
        return list(wanted), positions

    def _header_advice(self, found: list[str], option: str) -> str:
        """What to pass when a column is not in the header: the separator, when the header reads as one
        field holding another likely one, else the column's name."""
        if len(found) == 1:
            other = next((sep for sep in LIKELY_SEPARATORS if sep != self.separator and sep in found[0]), None)
            if other is not None:
                return (f"The header reads as one field: the file looks {other!r}-separated; pass "
                        f"--data.separator {'tab' if other == chr(9) else repr(other)}.")
        return f"Pass --data.columns.{option} NAME, or --data.header false with 0-based positions."

    def read_ratings(self) -> Ratings:
        names, positions = self._positions()
        table = readers.read_numeric_table(self.path, names, positions, self.separator, self.header, ENCODING,
                                           quoted=True)
        users = readers.check_integers(table["user_id"], "user id", self.path, self.header, low=0)
        items = readers.check_integers(table["item_id"], "item id", self.path, self.header, low=0)
        timestamps = (readers.check_integers(table["timestamp"], "timestamp", self.path, self.header, below=2.0**63)
                      if "timestamp" in table else np.zeros(len(users), dtype=np.int64))
        if "rating" in table:
            readers.check_finite(table["rating"], "rating", self.path, self.header)  # the scale is the file's own
        rating = table["rating"].astype(np.float32) if "rating" in table else np.ones(len(users), dtype=np.float32)
        check_unique_pairs(users, items, self.path, self.header)
        return Ratings(users, items, rating, timestamps)

    def read_side(self) -> SideInfo:
        import pandas as pd  # here, not at import: 0.3 s of start-up that a run from the cache never needs
        if self.items_path is None:
            return SideInfo(users=pd.DataFrame(), items=pd.DataFrame(columns=["title", "year", "genres"]), genres=())
        path = self.items_path
        key = self.columns.item if isinstance(self.columns.item, str) else "item_id"
        # The header's names split by each separator tried: like the ratings file, or by commas.
        header = self._header(path)
        names_by = {separator: set(header.split(separator)) for separator in dict.fromkeys((self.separator, ","))}
        frame, parse_error = None, None
        for separator, names in names_by.items():
            try:
                read = pd.read_csv(path, sep=separator, dtype=str, keep_default_na=False, encoding=ENCODING)
            except UnicodeDecodeError as err:
                raise ValueError(f"--data.items_path {path} is not UTF-8 text ({err.reason}): save it as UTF-8 "
                                 "(Excel: CSV UTF-8), or convert it, e.g. iconv -f latin1 -t utf-8.") from err
            except pd.errors.ParserError as err:
                if parse_error is None or {key, "title"} <= names:  # the error of the separator the header uses
                    parse_error = err
                continue
            frame = read if frame is None or key in read.columns else frame
            if key in read.columns:
                break
        if (frame is None or key not in frame.columns) and parse_error is not None and any(
                {key, "title"} <= names for names in names_by.values()):
            frame = None  # the header is right: a line breaks the format, which is what to report
        if frame is None:
            hint = self._separator_hint(header, key) or (
                " A title that holds the separator must be in double quotes (\"Copycat, The (1995)\").")
            raise ValueError(f"--data.items_path {path}: a line has more fields than the header "
                             f"({str(parse_error).strip()}).{hint}") from parse_error
        missing = [c for c in (key, "title") if c not in frame.columns]
        if missing:
            raise ValueError(f"{path} has no column {missing[0]!r}; an items file needs a header with {key!r} and "
                             f"'title' (and optionally 'genres'); its header has {', '.join(map(repr, frame.columns))}."
                             + self._separator_hint(header, key))
        frame = frame.rename(columns={key: "item_id"})
        frame.attrs["lines"] = np.arange(len(frame)) + 2
        readers.check_int_column(frame, "item_id", path, low=0)
        readers.check_unique(frame, "item_id", path)
        if "genres" not in frame:
            frame["genres"] = ""
        frame["year"] = year_of(frame["title"])
        items = frame[["item_id", "title", "year", "genres"]].set_index("item_id").sort_index()
        return SideInfo(users=pd.DataFrame(), items=items, genres=genre_names(items["genres"]))

    @staticmethod
    def _header(path: Path) -> str:
        """The first line of ``path`` ("" when it cannot be read as text)."""
        try:
            with open(path, encoding=ENCODING) as handle:
                return handle.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError):
            return ""

    def _separator_hint(self, header: str, key: str) -> str:
        """Which separator the items file's ``header`` splits into ``key`` and ``title`` with, if not one read."""
        for separator in LIKELY_SEPARATORS:
            if separator not in (self.separator, ",") and {key, "title"} <= set(header.split(separator)):
                also = "" if self.separator == "," else f"the ratings file's separator ({self.separator!r}) or "
                return f" Its header reads as {separator!r}-separated: write the items file with {also}commas."
        return ""

    def check_listed(self, ratings: Ratings, side: SideInfo) -> None:
        """Your items file need not list every rated item (those just have no title)."""
