"""Datasets by name: ``--data.dataset NAME`` picks one of :data:`DATASETS`.

To add a dataset, write one file here with a :class:`~movielens_gnn.data.datasets.base.Dataset`
subclass (its archive, checksum, raw files and parsers), add it to :data:`DATASETS`, and add
``configs/data/<name>.yaml``.
"""

from __future__ import annotations

from movielens_gnn.data.datasets.base import Dataset, Ratings, SideInfo
from movielens_gnn.data.datasets.custom_csv import Columns, CSVRatings
from movielens_gnn.data.datasets.ml100k import MovieLens100K
from movielens_gnn.data.datasets.ml10m import MovieLens10M
from movielens_gnn.data.datasets.ml1m import MovieLens1M
from movielens_gnn.data.datasets.ml20m import MovieLens20M
from movielens_gnn.data.datasets.ml25m import MovieLens25M
from movielens_gnn.data.datasets.ml32m import MovieLens32M
from movielens_gnn.data.datasets.ml_latest_small import MovieLensLatestSmall

DATASETS: dict[str, type[Dataset]] = {
    cls.NAME: cls
    for cls in (MovieLens100K, MovieLens1M, MovieLens10M, MovieLens20M, MovieLens25M, MovieLens32M,
                MovieLensLatestSmall, CSVRatings)
}


def dataset_class(name: str) -> type[Dataset]:
    """The dataset class registered as ``name``; ``ValueError`` listing the valid names otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"Unknown --data.dataset {name!r}; valid values: {', '.join(DATASETS)}.") from None


__all__ = ["DATASETS", "Columns", "CSVRatings", "Dataset", "Ratings", "SideInfo", "dataset_class"]
