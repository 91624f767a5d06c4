"""The CSV releases of MovieLens (ml-20m, ml-25m, ml-32m, ml-latest-small): one format, several archives.

``ratings.csv`` has the header ``userId,movieId,rating,timestamp`` and half-star ratings 0.5..5.0;
``movies.csv`` has ``movieId,title,genres``, titles quoted where they hold commas, genres
``|``-separated or ``(no genres listed)``. Both are UTF-8. There are no user features.
"""

from __future__ import annotations

from pathlib import Path

from movielens_gnn.data.datasets import readers
from movielens_gnn.data.datasets.base import HALF_STARS, Dataset, Ratings, SideInfo, year_of
from movielens_gnn.data.datasets.ml1m import genre_names

RATINGS_HEADER = ("userId", "movieId", "rating", "timestamp")
MOVIES_HEADER = ("movieId", "title", "genres")


class MovieLensCSV(Dataset):
    """A MovieLens release in the CSV format; subclasses name the archive."""

    RAW_FILES = ("ratings.csv", "movies.csv")
    RATING_VALUES = HALF_STARS

    def read_side(self) -> SideInfo:
        import pandas as pd  # here, not at import: 0.3 s of start-up that a run from the cache never needs
        path = self.raw_dir / "movies.csv"
        items = readers.read_quoted_csv(path, MOVIES_HEADER)
        items = items.rename(columns={"movieId": "item_id"})
        readers.check_int_column(items, "item_id", path, low=1)
        readers.check_unique(items, "item_id", path)
        items["year"] = year_of(items["title"])
        return SideInfo(users=pd.DataFrame(), items=items.set_index("item_id").sort_index(),
                        genres=genre_names(items["genres"]))

    def ratings_source(self) -> tuple[Path, bool]:
        return self.raw_dir / "ratings.csv", True

    def read_ratings(self) -> Ratings:
        path, header = self.ratings_source()
        found = readers.header_fields(path, ",")
        if tuple(found) != RATINGS_HEADER:
            raise ValueError(f"{path}: expected the header {','.join(RATINGS_HEADER)}, got {','.join(found)!r}; "
                             f"restore the original file of {self.TITLE}.")
        columns = readers.read_numeric_table(path, ("user_id", "item_id", "rating", "timestamp"), (0, 1, 2, 3),
                                             ",", header, fields=4)
        return self.checked_ratings(columns, path, header)
