"""Data parallelism on CPU: two gloo processes must give the single-process answer."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from movielens_gnn.cli import main
from tests.conftest import REPO
from tests.test_cli import _args

pytestmark = pytest.mark.ddp
# 288 synthetic ratings; a 0.35 random test part holds 101 edges: 51 and 50 on two ranks.
UNEVEN = ["--data.split", "random", "--data.test_fraction", "0.35"]
CPU_DDP = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]


def _run(args: list[str], cwd: Path) -> None:
    """Run the CLI in a fresh interpreter: DDP relaunches ``sys.argv``, which under pytest is pytest."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "movielens_gnn", *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _logged(log_dir: Path, key: str) -> float:
    (path,) = log_dir.glob("**/metrics.csv")
    with open(path) as handle:
        values = [row[key] for row in csv.DictReader(handle) if row.get(key)]
    assert len(values) == 1, values
    return float(values[0])


@pytest.fixture
def checkpoint(tmp_path, monkeypatch, ml100k_root) -> Path:
    monkeypatch.chdir(tmp_path)
    fit = main(_args("fit", "gcn_dot.yaml", ml100k_root, "--trainer.max_epochs", "3", *UNEVEN))
    assert len(fit.datamodule.data.test.ratings) == 101
    return Path(fit.trainer.checkpoint_callback.best_model_path)


def test_ddp_test_equals_single_process(checkpoint, ml100k_root, tmp_path):
    single = main(_args("test", "gcn_dot.yaml", ml100k_root, "--ckpt_path", str(checkpoint), *UNEVEN))
    # Ranking metrics too: each rank scores half of the test users and the Metric sums them once.
    keys = ("test_rmse", "test_mae", "test_ndcg@10", "test_recall@20", "test_mrr@10", "test_precision@10")
    expected = {k: single.trainer.callback_metrics[k].item() for k in keys}
    logs = tmp_path / "ddp_logs"
    _run(_args("test", "gcn_dot.yaml", ml100k_root, "--ckpt_path", str(checkpoint), *UNEVEN, *CPU_DDP,
               "--trainer.logger.init_args.save_dir", str(logs)), tmp_path)
    for key, value in expected.items():
        assert _logged(logs, key) == pytest.approx(value, abs=1e-6)


def test_ddp_fit_writes_checkpoints_once(ml100k_root, tmp_path, monkeypatch):
    """...and logs the first epoch's train_loss as the mean over both ranks' edges: without dropout, the
    loss of the same initial weights on all training edges, as in one process."""
    no_dropout = ["--model.dropout", "0"]
    single_dir = tmp_path / "single"
    single_dir.mkdir()
    monkeypatch.chdir(single_dir)
    single = main(_args("fit", "gcn_dot.yaml", ml100k_root, "--trainer.max_epochs", "1", *no_dropout))
    expected = single.trainer.callback_metrics["train_loss"].item()
    monkeypatch.chdir(tmp_path)
    _run(_args("fit", "gcn_dot.yaml", ml100k_root, "--trainer.max_epochs", "3", *no_dropout, *CPU_DDP), tmp_path)
    assert [p.name for p in (tmp_path / "checkpoints" / "gcn_dot").iterdir()] == ["version_0"]  # one run folder
    files = sorted(p.name for p in (tmp_path / "checkpoints" / "gcn_dot" / "version_0").iterdir())
    assert len(files) == 2 and "last.ckpt" in files, files
    state = torch.load(tmp_path / "checkpoints" / "gcn_dot" / "version_0" / "last.ckpt", weights_only=True)
    assert state["epoch"] == 2 and not any(k.startswith("graph.") for k in state["state_dict"])
    (metrics,) = (tmp_path / "logs").glob("**/metrics.csv")  # one logger, on rank 0
    with open(metrics) as handle:
        rows = list(csv.DictReader(handle))
    assert len([row for row in rows if row["val_rmse"]]) == 3
    (first,) = [float(row["train_loss"]) for row in rows if row["train_loss"] and row["epoch"] == "0"]
    assert first == pytest.approx(expected, rel=1e-5)


def test_ddp_ranking_fit_and_test_equal_single_process(ml100k_root, tmp_path, monkeypatch):
    """The ranking task (LightGCN + EASE hybrid): two ranks train on halves of the interactions with
    their own negatives, and at test each scores half of the users; the metrics are the single-process ones."""
    monkeypatch.chdir(tmp_path)
    fit = main(_args("fit", "lightgcn_ease.yaml", ml100k_root, "--trainer.max_epochs", "2"))
    best = fit.trainer.checkpoint_callback.best_model_path
    single = main(_args("test", "lightgcn_ease.yaml", ml100k_root, "--ckpt_path", best))
    keys = ("test_ndcg@10", "test_recall@10", "test_mrr@10", "test_hitrate@20", "test_precision@20")
    expected = {k: single.trainer.callback_metrics[k].item() for k in keys}
    logs = tmp_path / "ddp_logs"
    _run(_args("test", "lightgcn_ease.yaml", ml100k_root, "--ckpt_path", best, *CPU_DDP,
               "--trainer.logger.init_args.save_dir", str(logs)), tmp_path)
    for key, value in expected.items():
        assert _logged(logs, key) == pytest.approx(value, abs=1e-6)

    ddp_fit = tmp_path / "ddp_fit"
    ddp_fit.mkdir()
    _run(_args("fit", "lightgcn_ease.yaml", ml100k_root, "--trainer.max_epochs", "2", *CPU_DDP), ddp_fit)
    (metrics,) = (ddp_fit / "logs").glob("**/metrics.csv")
    with open(metrics) as handle:
        rows = [row for row in csv.DictReader(handle) if row["val_ndcg@10"]]
    assert len(rows) == 2 and all(0 < float(row["val_ndcg@10"]) <= 1 for row in rows)


def test_ddp_predict_writes_one_file_in_the_parts_order(checkpoint, ml100k_root, tmp_path):
    """Each rank predicts its strided shard (51 and 50 of the 101 test edges); rank 0 writes them all,
    in the part's order, to the one file asked for: the single-process file, value for value."""
    single = tmp_path / "single.csv"
    main(_args("predict", "gcn_dot.yaml", ml100k_root, "--ckpt_path", str(checkpoint), *UNEVEN,
               "--predictions", str(single)))
    ddp = tmp_path / "out" / "ddp.csv"
    _run(_args("predict", "gcn_dot.yaml", ml100k_root, "--ckpt_path", str(checkpoint), *UNEVEN, *CPU_DDP,
               "--predictions", str(ddp)), tmp_path)
    assert sorted(p.name for p in ddp.parent.iterdir()) == ["ddp.csv"]  # no per-rank files
    expected, got = pd.read_csv(single), pd.read_csv(ddp)
    assert len(got) == 101
    pd.testing.assert_frame_equal(got, expected, atol=1e-4, rtol=0)
