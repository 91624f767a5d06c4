from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.synthetic import write_ml100k

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def ml100k_root(tmp_path: Path) -> Path:
    """A data root holding a small synthetic ``ml-100k/`` folder."""
    write_ml100k(tmp_path / "data")
    return tmp_path / "data"


@pytest.fixture(scope="session")
def real_data_root() -> Path:
    """The real MovieLens-100K files (``../shared/datasets`` or ``$MOVIELENS_GNN_DATA``)."""
    root = Path(os.environ.get("MOVIELENS_GNN_DATA", REPO.parent / "shared" / "datasets"))
    if not (root / "ml-100k" / "u.data").is_file():
        pytest.skip(f"real MovieLens-100K not found at {root}/ml-100k (set MOVIELENS_GNN_DATA to its parent)")
    return root
