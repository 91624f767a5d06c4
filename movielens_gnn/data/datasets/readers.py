"""Reading text tables: a fast vectorised path for ratings files, and exact line numbers when a file is wrong.

Ratings files reach tens of millions of lines (ml-32m: 32 million), so they are parsed by pandas' C
engine straight into float64 columns, with no per-line Python. ``::``-separated files (ml-1m, ml-10m)
go through the same engine with ``:`` as the separator: ``1::31::2.5::1260759144`` splits into seven
fields whose odd ones must be empty. Only when something is wrong is the file read again, as text,
to name the first bad line and value. Small files (users, movies) are read as text and checked line
by line.
"""

from __future__ import annotations

import csv
import io
import mmap
import re
from pathlib import Path
from typing import Sequence, TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pandas loads where files are parsed: 0.3 s of start-up a run from the cache never needs
    import pandas as pd

_QUOTE_NONE = csv.QUOTE_NONE
# Pandas splits lines on \n, \r\n and \r only (str.splitlines would also split on \x0c, \x85 ...).
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# What a message naming a bad line tells the user to do (the MovieLens files are fine as released; a custom
# file is the user's own to fix), and one naming a line that repeats an earlier one.
FIX_LINE = "Fix or remove that line, or restore the original file."
REMOVE_REPEAT = "Remove one of the two lines, or restore the original file."


def decode(path: Path, encodings: Sequence[str]) -> str:
    """The text of ``path`` in the first of ``encodings`` that decodes it (Latin-1 decodes anything)."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ValueError(f"{path} cannot be read: {err.strerror or err}.") from err
    for encoding in encodings:
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ValueError(f"{path} is not text in {' or '.join(encodings)}; restore the original file.")


def line_number(path: Path, row: int, header: bool) -> int:
    """The 1-based line of ``path`` that holds data row ``row`` (0-based; blank lines skipped, as pandas does)."""
    target = row + (1 if header else 0)
    seen = -1
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.rstrip(b"\r\n"):
                seen += 1
                if seen == target:
                    return number
    return row + 1 + (1 if header else 0)  # unreachable for a row the file has; a safe fallback


def line_of(frame: pd.DataFrame, row: int) -> int:
    """The 1-based file line of ``frame``'s ``row`` (recorded in ``attrs["lines"]`` by :func:`read_text_table`)."""
    lines = frame.attrs.get("lines")
    return int(lines[row]) if lines is not None else row + 1


def read_text_table(path: Path, columns: Sequence[str], sep: str = "|", encodings: Sequence[str] = ("latin-1",),
                    header: bool = False) -> pd.DataFrame:
    """Read a small unquoted text table as strings; every line must have exactly ``len(columns)`` fields.

    A missing or an extra field (a trailing separator, say) is reported with its line number rather than
    read shifted. ``sep`` may have several characters (``::``). The frame's ``attrs["lines"]`` maps each
    row to its line in the file.
    """
    import pandas as pd
    text = decode(path, encodings)
    lines = _LINE_BREAK.split(text)
    numbers = [number for number, line in enumerate(lines, start=1) if line]
    if header and numbers:
        numbers = numbers[1:]
    if not numbers:
        raise ValueError(f"{path} is empty; expected lines of {', '.join(columns)}.")
    expected = len(columns) - 1
    for number in numbers:
        found = lines[number - 1].count(sep)
        if found != expected:
            name = {"\t": "tab", "|": "'|'", ",": "comma"}.get(sep, repr(sep))
            raise ValueError(
                f"{path} line {number}: expected {len(columns)} {name}-separated fields "
                f"({', '.join(columns)}), got {found + 1}. {FIX_LINE}"
            )
    if len(sep) > 1:  # the C engine takes one character; \x1f (unit separator) never occurs in these files
        text = text.replace(sep, "\x1f")
        sep = "\x1f"
    frame = pd.read_csv(io.StringIO(text), sep=sep, header=0 if header else None, names=list(columns), dtype=str,
                        keep_default_na=False, engine="c", quoting=_QUOTE_NONE)
    if len(frame) != len(numbers):  # pandas saw other rows than we counted: say so rather than misnumber
        raise ValueError(f"{path} could not be read line by line ({len(numbers)} lines, {len(frame)} rows); "
                         "restore the original file.")
    frame.attrs["lines"] = np.asarray(numbers)
    return frame


def read_quoted_csv(path: Path, columns: Sequence[str], encodings: Sequence[str] = ("utf-8", "latin-1")) -> pd.DataFrame:
    """Read a small CSV file with a header and quoted fields (``movies.csv``: ``2,"Jumanji (1995)",Adventure``).

    The header must name ``columns`` in order. Values are strings; a row with a missing or an extra field is
    reported by line (pandas would pad a short row with empty strings).
    """
    import pandas as pd
    text = decode(path, encodings)
    first = next((line for line in _LINE_BREAK.split(text) if line), "")
    found = next(csv.reader([first]), [])
    if found != list(columns):
        raise ValueError(f"{path}: expected the header {','.join(columns)}, got {first!r}; restore the original file.")
    # The csv module reads the records (quotes, a quoted line break) and knows each one's lines: a small
    # file (ml-32m's movies.csv has 87,585 rows), read in well under a second.
    reader = csv.reader(io.StringIO(text, newline=""))
    rows, starts, end, header = [], [], 0, True
    for fields in reader:
        start, end = end + 1, reader.line_num
        if not fields:  # a blank line: pandas skips it too
            continue
        if header:
            header = False
            continue
        if len(fields) != len(columns):
            line = _LINE_BREAK.split(text)[start - 1]
            raise ValueError(f"{path} line {start}: expected {len(columns)} fields ({', '.join(columns)}), got "
                             f"{len(fields)} in {line!r} (quote a field that holds a comma, and close every quote). "
                             f"{FIX_LINE}")
        rows.append(fields)
        starts.append(start)
    frame = pd.DataFrame(rows, columns=list(columns)).astype(str)  # strings, as read_csv(dtype=str) gives them
    frame.attrs["lines"] = np.asarray(starts, dtype=np.int64)
    return frame


def read_numeric_table(path: Path, columns: Sequence[str], positions: Sequence[int], sep: str, header: bool,
                       encoding: str = "utf-8", fields: int | None = None, quoted: bool = False) -> dict[str, np.ndarray]:
    """Read numeric columns of a large table fast: ``{name: (E,) float64}`` in file order.

    Args:
        path: The file.
        columns: Names of the columns to return.
        positions: 0-based field position of each of ``columns``.
        sep: One separator character, or ``"::"`` (read as ``:``; the fields between must be empty).
        header: The first line is a header (skipped here; check it with :func:`header_fields`).
        encoding: The file's encoding.
        fields: How many fields every line has, when the format fixes it (the GroupLens files): a line with
            more is then an error. ``None`` (a file of your own) reads only ``positions`` and ignores the rest.
        quoted: Read CSV quoting (``"1","50","4.5"``, a quoted separator in a text column), as tools that
            write a file of your own may; the GroupLens files have none, so a quote there is an error.

    Raises:
        ValueError: A field is missing or not a number, or a line has extra fields; the message names the
            file, the line and the value.
    """
    import pandas as pd
    quoted = quoted and check_quotes(path)  # no quote in the file: read it as the GroupLens files are
    colon = sep == "::"
    used = [2 * p for p in positions] if colon else list(positions)
    gaps = [2 * p + 1 for p in range(max(positions))] if colon else []  # the empty fields between '::'
    names = {position: name for position, name in zip(used, columns)}
    read = sorted(set(used) | set(gaps))
    width = (2 * fields - 1 if colon else fields) if fields is not None else None
    options = dict(sep=":" if colon else sep, header=None, skiprows=1 if header else None,
                   usecols=read if width is None else None,
                   engine="c", quoting=csv.QUOTE_MINIMAL if quoted else _QUOTE_NONE, encoding=encoding,
                   skip_blank_lines=True)
    try:
        frame = pd.read_csv(path, dtype=np.float64, **options)
    except pd.errors.EmptyDataError as err:  # nothing after the header (or an empty file)
        raise ValueError(f"{path} has no data lines; expected lines of {sep.join(columns)}.") from err
    except pd.errors.ParserError as err:  # a line with more fields than the first ("... in line 7, saw 5")
        found = re.search(r"in line (\d+), saw", str(err))
        if found is None:
            raise ValueError(f"{path} cannot be parsed ({str(err).strip()}); restore the original file.") from err
        number = int(found.group(1))
        raise ValueError(f"{path} line {number}: expected the fields {sep.join(columns)}, got "
                         f"{_line_text(path, number)!r}. {FIX_LINE}") from err
    except (ValueError, UnicodeDecodeError):  # a non-numeric field: find it, as text
        _raise_first_non_numeric(path, names, options, header, sep)
        raise
    if frame.empty:
        raise ValueError(f"{path} has no data lines; expected lines of {sep.join(columns)}.")
    if width is not None and frame.shape[1] != width:  # the first line itself had another count of fields
        number = line_number(path, 0, header)
        raise ValueError(f"{path} line {number}: expected the fields {sep.join(columns)}, got "
                         f"{_line_text(path, number)!r}. {FIX_LINE}")
    bad = frame[used].isna().any(axis=1).to_numpy()
    if gaps:
        bad = bad | frame[gaps].notna().any(axis=1).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        number = line_number(path, row, header)
        text = _line_text(path, number)
        fields = text.split(":" if colon else sep)
        for position in used:  # a field that is there but read as missing: 'nan', 'NA', 'null' ...
            if pd.isna(frame.at[row, position]) and position < len(fields) and fields[position].strip():
                raise ValueError(f"{path} line {number}: {names[position]} must be a number, got "
                                 f"{fields[position].strip()!r}. {FIX_LINE}")
        raise ValueError(f"{path} line {number}: expected the fields {sep.join(columns)}, got {text!r}. {FIX_LINE}")
    return {names[position]: frame[position].to_numpy() for position in used}


def check_quotes(path: Path) -> bool:
    """Whether ``path`` holds a double quote; ``ValueError`` naming the first line whose quotes do not pair up.

    A quote left open (``1,"12 inch,5,4``) would make CSV quoting join the lines after it into one record,
    and the file would read as other ratings without a word; a ratings file has no field that spans lines.
    """
    with open(path, "rb") as handle:
        try:
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
                if view.find(b'"') < 0:  # the usual case, found at memchr speed
                    return False
        except ValueError:  # an empty file cannot be mapped
            return False
        handle.seek(0)
        for number, line in enumerate(handle, start=1):
            if line.count(b'"') % 2:
                text = line.rstrip(b"\r\n").decode("utf-8", errors="replace")
                raise ValueError(f"{path} line {number}: a quote (\") opens a field that the line does not close, in "
                                 f"{text!r}; left open, it would join the lines after it into one. Close it or remove "
                                 f"it. {FIX_LINE}")
    return True


def _column_format(name: str, value: str) -> str:
    """What to do when a whole column of ``name`` is text like ``value``."""
    if "," in value and re.fullmatch(r"\s*-?\d+,\d+\s*", value):
        return ("decimal commas; write numbers with a decimal point (3.5), e.g. pandas' to_csv(decimal='.'), and keep "
                "the separator.")
    if name.startswith("timestamp"):
        return ("timestamps must be Unix seconds (integers); convert the column, e.g. "
                "(pd.to_datetime(frame[column]) - pd.Timestamp(0)) // pd.Timedelta('1s'), or leave --data.columns.timestamp out.")
    if name.startswith(("user", "item")):
        return ("ids must be integers; map yours to integers first (e.g. codes, ids = pd.factorize(frame[column])) "
                "and keep the map to read recommendations back.")
    return "a column of numbers is expected there; check --data.columns and --data.separator."


def _raise_first_non_numeric(path: Path, names: dict[int, str], options: dict, header: bool, sep: str) -> None:
    """Re-read ``path`` as text and raise ``ValueError`` naming the first field of ``names`` that is not a number.

    In chunks of :data:`TEXT_CHUNK` lines: the whole of ml-32m as strings would take several GiB more than
    reading it as numbers did, only to name one line.
    """
    import pandas as pd
    offset = 0
    try:
        with pd.read_csv(path, dtype=str, keep_default_na=False, chunksize=TEXT_CHUNK, **options) as chunks:
            for frame in chunks:
                for position, name in names.items():
                    text = frame[position]
                    values = pd.to_numeric(text.str.strip(), errors="coerce")
                    bad = (values.isna() & (text != "")).to_numpy()
                    if bad.any():
                        row = int(np.flatnonzero(bad)[0])
                        number = line_number(path, offset + row, header)
                        value = text.iloc[row]
                        # Most lines alike: the file's format, not one damaged line.
                        advice = (f"{int(bad.sum())} of the first {len(bad)} lines are like it: {_column_format(name, value)}"
                                  if offset == 0 and bad.mean() > 0.5 and len(bad) > 1 else FIX_LINE)
                        raise ValueError(f"{path} line {number}: {name} must be a number, got {value!r}. {advice}")
                offset += len(frame)
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not {options['encoding']} text ({err}); restore the original file.") from err


TEXT_CHUNK = 200_000


def _line_text(path: Path, number: int) -> str:
    with open(path, "rb") as handle:
        for current, line in enumerate(handle, start=1):
            if current == number:
                return line.rstrip(b"\r\n").decode("utf-8", errors="replace")
    return ""


def header_fields(path: Path, sep: str, encoding: str = "utf-8") -> list[str]:
    """The fields of the first line of ``path`` (its header), split on ``sep`` with CSV quoting."""
    try:
        with open(path, encoding=encoding, newline="") as handle:
            first = handle.readline()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} cannot be read as {encoding} text: {err}.") from err
    return next(csv.reader([first.rstrip("\r\n")], delimiter=sep), [])


# The numeric columns are read as float64, which holds every integer below 2^53 exactly and no larger
# ones: 9007199254740993 would silently read as 9007199254740992, so such ids are refused.
EXACT_INTEGERS = 2.0**53


def check_integers(values: np.ndarray, name: str, path: Path, header: bool, low: float | None = None,
                   below: float = EXACT_INTEGERS) -> np.ndarray:
    """``values`` as int64 when every one is a whole number (``>= low``, below ``below`` in size: 2^53 for
    ids, which must stay distinct; timestamps only order ratings, and 2^63 fits them); else ``ValueError``
    naming the line."""
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(values) < below) | (values != np.round(values))  # NaN and inf included
    if low is not None:
        bad |= values < low
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        bounds = f" >= {low:g}" if low is not None else ""
        power = int(np.log2(below))
        number = line_number(path, row, header)
        raise ValueError(f"{path} line {number}: {name} must be an integer{bounds} below 2^{power} "
                         f"({below:.0f}), got {values[row]:g} in {_line_text(path, number)!r}. {FIX_LINE}")
    return values.astype(np.int64)


def check_finite(values: np.ndarray, name: str, path: Path, header: bool) -> None:
    """Raise ``ValueError`` naming the line of the first value of ``values`` that is infinite or NaN."""
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{path} line {line_number(path, row, header)}: {name} must be a finite number, "
                         f"got {values[row]:g}. {FIX_LINE}")


def check_scale(values: np.ndarray, scale: Sequence[float], path: Path, header: bool) -> None:
    """Raise ``ValueError`` naming the first rating of ``values`` that is not one of ``scale``'s values."""
    allowed = np.asarray(scale, dtype=np.float64)
    index = np.clip(np.searchsorted(allowed, values), 0, len(allowed) - 1)
    bad = allowed[index] != values
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        shown = ", ".join(f"{v:g}" for v in scale)
        raise ValueError(f"{path} line {line_number(path, row, header)}: rating must be one of {shown}, "
                         f"got {values[row]:g}. {FIX_LINE}")


def repeated_rows(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """The rows whose (user, item) pair repeats an earlier row's (unordered)."""
    if len(users) == 0:
        return np.zeros(0, dtype=np.int64)
    users, items = users.astype(np.int64), items.astype(np.int64)
    if min(users.min(), items.min()) < 0 or int(users.max()) * (int(items.max()) + 1) + int(items.max()) >= 2**63:
        # Ids of your own file may reach 2^53 or be negative: the key would wrap (or collide) in int64,
        # so key on dense indices instead, whose product fits. np.unique keeps the order of the ids.
        users, items = np.unique(users, return_inverse=True)[1], np.unique(items, return_inverse=True)[1]
    key = users * (int(items.max()) + 1) + items
    steps = np.diff(key)
    if (steps >= 0).all():  # sorted by user, then item (the CSV releases are): repeats are neighbours
        return np.flatnonzero(steps == 0) + 1
    order = np.argsort(key, kind="stable")  # equal keys keep file order, so the later one is the repeat
    sorted_key = key[order]
    return order[1:][sorted_key[1:] == sorted_key[:-1]]


def check_int_column(frame: pd.DataFrame, column: str, path: Path, low: int | None = None,
                     high: int | None = None) -> None:
    """Convert text column ``frame[column]`` to int64 in place, raising on the first bad line."""
    import pandas as pd
    values = pd.to_numeric(frame[column].str.strip(), errors="coerce")
    bad = values.isna() | (values != values.round())
    if low is not None:
        bad |= values < low
    if high is not None:
        bad |= values > high
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        bounds = f" in {low}..{high}" if high is not None else (f" >= {low}" if low is not None else "")
        raise ValueError(f"{path} line {line_of(frame, row)}: {column} must be an integer{bounds}, "
                         f"got {frame[column].iloc[row]!r}. {FIX_LINE}")
    frame[column] = values.astype(np.int64)


def check_values(frame: pd.DataFrame, column: str, valid: Sequence, path: Path) -> None:
    """Raise ``ValueError`` on the first line whose ``column`` is not one of ``valid``."""
    bad = ~frame[column].isin(list(valid))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"{path} line {line_of(frame, row)}: {column} {frame[column].iloc[row]!r} is not one of "
                         f"{', '.join(str(v) for v in valid)}. {FIX_LINE}")


def check_unique(frame: pd.DataFrame, column: str, path: Path) -> None:
    """Raise ``ValueError`` on the first line whose ``column`` value appeared on an earlier line."""
    duplicated = frame[column].duplicated().to_numpy()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated)[0])
        value = frame[column].iloc[row]
        earlier = int(np.flatnonzero((frame[column] == value).to_numpy())[0])
        raise ValueError(f"{path} line {line_of(frame, row)}: {column} {value} appears twice (also on line "
                         f"{line_of(frame, earlier)}). {REMOVE_REPEAT}")


def unknown_ids(ids: np.ndarray, listed: np.ndarray) -> np.ndarray:
    """``(E,)`` bool: which of ``ids`` are not in ``listed`` (binary search: millions of ids in seconds)."""
    listed = np.sort(listed)
    if not len(listed):
        return np.ones(len(ids), dtype=bool)
    position = np.clip(np.searchsorted(listed, ids), 0, len(listed) - 1)
    return listed[position] != ids
