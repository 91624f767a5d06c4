"""MovieLens-20M: 20,000,263 ratings of 26,744 movies by 138,493 users (1995-2015)."""

from movielens_gnn.data.datasets.grouplens_csv import MovieLensCSV


class MovieLens20M(MovieLensCSV):
    """MovieLens-20M under ``root`` (``ml-20m/`` or ``ml-20m.zip``)."""

    NAME = "ml-20m"
    TITLE = "MovieLens-20M"
    URL = "https://files.grouplens.org/datasets/movielens/ml-20m.zip"
    ARCHIVE_MD5 = "cd245b17a1ae2cc31bb14903e1204af3"
    ARCHIVE_SIZE = 198_702_078
