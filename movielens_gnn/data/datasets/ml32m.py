"""MovieLens-32M: 32,000,204 ratings of 87,585 movies by 200,948 users (1995-2023)."""

from movielens_gnn.data.datasets.grouplens_csv import MovieLensCSV


class MovieLens32M(MovieLensCSV):
    """MovieLens-32M under ``root`` (``ml-32m/`` or ``ml-32m.zip``)."""

    NAME = "ml-32m"
    TITLE = "MovieLens-32M"
    URL = "https://files.grouplens.org/datasets/movielens/ml-32m.zip"
    ARCHIVE_MD5 = "d472be332d4daa821edc399621853b57"
    ARCHIVE_SIZE = 238_950_008
