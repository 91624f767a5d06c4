"""MovieLens-10M: 10,000,054 half-star ratings (0.5..5.0) of 10,677 movies by 69,878 users.

The archive extracts to ``ml-10M100K/``. ``ratings.dat`` is ``UserID::MovieID::Rating::Timestamp``
and ``movies.dat`` ``MovieID::Title::Genres``, both without a header. There are no user features.
"""

from __future__ import annotations

from pathlib import Path

from movielens_gnn.data.datasets import readers
from movielens_gnn.data.datasets.base import HALF_STARS, Dataset, Ratings, SideInfo
from movielens_gnn.data.datasets.ml1m import RATING_COLUMNS, read_movies_dat


class MovieLens10M(Dataset):
    """MovieLens-10M under ``root`` (``ml-10M100K/`` or ``ml-10m.zip``)."""

    NAME = "ml-10m"
    TITLE = "MovieLens-10M"
    FOLDER = "ml-10M100K"
    URL = "https://files.grouplens.org/datasets/movielens/ml-10m.zip"
    ARCHIVE_MD5 = "ce571fd55effeba0271552578f2648bd"
    ARCHIVE_SIZE = 65_566_137
    RAW_FILES = ("ratings.dat", "movies.dat")
    RATING_VALUES = HALF_STARS
    ENCODINGS = ("utf-8", "latin-1")

    def read_side(self) -> SideInfo:
        import pandas as pd  # here, not at import: 0.3 s of start-up that a run from the cache never needs
        items, genres = read_movies_dat(self.raw_dir / "movies.dat", self.ENCODINGS)
        return SideInfo(users=pd.DataFrame(), items=items, genres=genres)

    def ratings_source(self) -> tuple[Path, bool]:
        return self.raw_dir / "ratings.dat", False

    def read_ratings(self) -> Ratings:
        path, header = self.ratings_source()
        columns = readers.read_numeric_table(path, RATING_COLUMNS, (0, 1, 2, 3), "::", header, fields=4)
        return self.checked_ratings(columns, path, header)
