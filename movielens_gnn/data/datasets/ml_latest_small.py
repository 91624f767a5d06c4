"""MovieLens latest-small: 100,836 ratings of 9,742 movies by 610 users; a development dataset that GroupLens updates."""

from movielens_gnn.data.datasets.grouplens_csv import MovieLensCSV


class MovieLensLatestSmall(MovieLensCSV):
    """MovieLens latest-small under ``root`` (``ml-latest-small/`` or ``ml-latest-small.zip``)."""

    NAME = "ml-latest-small"
    TITLE = "MovieLens latest-small"
    URL = "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip"
    ARCHIVE_MD5 = "31a303aabbc519bd33d025e44d6c2570"
    ARCHIVE_SIZE = 978_202
    DEVELOPMENT = True
