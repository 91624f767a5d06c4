"""The benchmark scripts' own arithmetic (they are run by hand, not by the test suite)."""

from __future__ import annotations

import sys

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import accuracy  # noqa: E402


def _row(split, seed, rmse, mae, epoch=10, wall=5.0):
    return {"config": "c.yaml", "split": split, "seed": seed, "test_rmse": rmse, "test_mae": mae,
            "best_epoch": epoch, "wall_s": wall}


def test_accuracy_table_means_and_sample_std():
    rows = [_row("u1", 0, 0.90, 0.70, 10, 4.0), _row("u1", 1, 0.92, 0.72, 20, 6.0),
            _row("u2", 0, 0.88, 0.69, 30, 5.0)]
    lines = accuracy.table(rows).splitlines()
    assert lines[2] == "| c.yaml | u1 | 2 | 0.9100 ± 0.0141 | 0.7100 ± 0.0141 | 15 | 5 (6) |"
    assert lines[3] == "| c.yaml | u2 | 1 | 0.8800 ± 0.0000 | 0.6900 ± 0.0000 | 30 | 5 (5) |"
    assert lines[4] == "| c.yaml | mean of u1,u2 | 3 | 0.9000 ± 0.0200 | 0.7033 ± 0.0153 | 20 | 5 (6) |"
