"""MovieLens-25M: 25,000,095 ratings of 59,047 movies by 162,541 users (1995-2019)."""

from movielens_gnn.data.datasets.grouplens_csv import MovieLensCSV


class MovieLens25M(MovieLensCSV):
    """MovieLens-25M under ``root`` (``ml-25m/`` or ``ml-25m.zip``)."""

    NAME = "ml-25m"
    TITLE = "MovieLens-25M"
    URL = "https://files.grouplens.org/datasets/movielens/ml-25m.zip"
    ARCHIVE_MD5 = "6b51fb2759a8657d3bfcbfc42b592ada"
    ARCHIVE_SIZE = 261_978_986
