"""Trains on the real MovieLens-100K u1 split; skipped when the files are not present."""

from __future__ import annotations

import pytest

from movielens_gnn.cli import main
from tests.conftest import REPO


@pytest.mark.integration
@pytest.mark.parametrize("config", ["gcn_dot.yaml", "ml100k_best.yaml"])
def test_few_epochs_on_real_u1_beat_rmse_one(real_data_root, tmp_path, monkeypatch, config):
    monkeypatch.chdir(tmp_path)
    common = ["--config", str(REPO / "configs" / config), "--data.root", str(real_data_root),
              "--data.cache_dir", str(tmp_path / "cache"), "--trainer.enable_model_summary", "false"]
    fit = main(["fit", *common, "--trainer.max_epochs", "30"])
    best = fit.trainer.checkpoint_callback.best_model_path
    assert fit.datamodule.num_users == 943 and fit.datamodule.num_items == 1682
    test = main(["test", *common, "--ckpt_path", best])
    rmse = test.trainer.callback_metrics["test_rmse"].item()
    assert 0.5 < rmse < 1.0
