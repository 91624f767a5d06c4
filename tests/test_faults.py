"""Faults: killed runs, interrupted training, concurrent runs, checkpoints evaluated on their own data."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from movielens_gnn.cli import main
from movielens_gnn.data.datamodule import MovieLensDataModule
from movielens_gnn.data.datasets.ml100k import MovieLens100K
from movielens_gnn.tasks.rating import RatingModel
from movielens_gnn.runs import AtomicCheckpointIO
from tests.conftest import REPO
from tests.synthetic import write_ml100k, zip_folder
from tests.test_cli import QUIET, _args

TEMP = re.compile(r"\.tmp$|\.part$")

# Runs in a child process: a run that pauses inside extraction or cache writing (after the first
# member / the first bytes, so the temporary is half-written), touching MARKER once it pauses.
PAUSING_RUN = """
import pathlib, sys, time, zipfile
from movielens_gnn.data.datasets.ml100k import MovieLens100K
root, md5, size, marker, stage = sys.argv[1:6]
MovieLens100K.ARCHIVE_MD5, MovieLens100K.ARCHIVE_SIZE = md5, int(size)
def pause():
    pathlib.Path(marker).touch()
    time.sleep(120)
if stage == "extract":
    extract = zipfile.ZipFile.extract
    def slow_extract(self, member, path=None, pwd=None):
        out = extract(self, member, path, pwd)
        pause()
        return out
    zipfile.ZipFile.extract = slow_extract
else:
    import torch
    def slow_save(obj, handle, *args, **kwargs):
        handle.write(b"half a cache")
        handle.flush()
        pause()
    torch.save = slow_save
from movielens_gnn.cli import main
main(["describe", "--data.root", root])
"""


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if TEMP.search(p.name)]


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
@pytest.mark.parametrize("stage", ["extract", "cache"])
def test_killed_run_leaves_nothing_behind_after_the_next_run(tmp_path, monkeypatch, stage, signum):
    root = tmp_path / "data"
    folder = write_ml100k(tmp_path / "source")
    payload = zip_folder(folder, tmp_path / "ml-100k.zip")
    md5 = hashlib.md5(payload).hexdigest()
    root.mkdir()
    if stage == "extract":
        (root / "ml-100k.zip").write_bytes(payload)
    else:
        write_ml100k(root)
    marker = tmp_path / "paused"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "-c", PAUSING_RUN, str(root), md5, str(len(payload)), str(marker), stage],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the child never reached the pause"
            time.sleep(0.05)
        assert _temporaries(root), "the kill must land while a temporary is half-written"
        os.kill(proc.pid, signum)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    if signum == signal.SIGTERM:
        # Caught: the temporaries are removed on the way out, before any rerun.
        assert proc.returncode == 143 and "error: stopped by SIGTERM" in err
        assert not _temporaries(root)
    else:
        assert proc.returncode == -signal.SIGKILL and _temporaries(root)  # left behind by the dead process

    # The next run succeeds and removes what the killed one left.
    monkeypatch.setattr(MovieLens100K, "ARCHIVE_MD5", md5)
    monkeypatch.setattr(MovieLens100K, "ARCHIVE_SIZE", len(payload))
    data = MovieLensDataModule(root=str(root)).data
    assert len(data.train.ratings) + len(data.val.ratings) + len(data.test.ratings) == 288  # u1.base + u1.test
    assert not _temporaries(root)
    expected = {"ml-100k", "processed"} | ({"ml-100k.zip"} if stage == "extract" else set())
    assert {p.name for p in root.iterdir()} == expected
    assert sorted(p.name for p in (root / "ml-100k").iterdir()) == sorted(p.name for p in folder.iterdir())


def test_resume_after_sigterm_repeats_the_uninterrupted_run(tmp_path, monkeypatch, ml100k_root, caplog):
    monkeypatch.chdir(tmp_path)
    common = _args("fit", "gcn_dot.yaml", ml100k_root, "--trainer.max_epochs", "6")  # dropout 0.2: uses the RNG
    main(common)
    stop = json.dumps({"class_path": "tests.faults.SignalAtEpoch", "init_args": {"epoch": 2}})
    caplog.set_level(logging.WARNING, logger="movielens_gnn")
    with pytest.raises(SystemExit) as exit_info:
        main([*common, f"--trainer.callbacks+={stop}"])
    assert exit_info.value.code == 143
    (hint,) = [r.getMessage() for r in caplog.records if "Resume it with" in r.getMessage()]
    assert "stopped by SIGTERM after 3 completed epoch(s)" in hint
    command = shlex.split(hint.split("Resume it with: ", 1)[1])
    assert command[:4] == ["python", "-m", "movielens_gnn", "fit"]
    assert command[command.index("--ckpt_path") + 1].endswith("checkpoints/gcn_dot/version_1/last.ckpt")

    interrupted = tmp_path / "interrupted.ckpt"
    interrupted.write_bytes((tmp_path / "checkpoints/gcn_dot/version_1/last.ckpt").read_bytes())
    # The printed command, with the checkpoint path relative as a user types it: checkpoints go on in
    # version_1 (their best-checkpoint record restored), logs in version_2.
    ckpt = command.index("--ckpt_path") + 1
    command[ckpt] = os.path.relpath(command[ckpt], tmp_path)
    main([*command[3:], *QUIET])
    full = torch.load(tmp_path / "checkpoints/gcn_dot/version_0/last.ckpt", weights_only=True)
    resumed = torch.load(tmp_path / "checkpoints/gcn_dot/version_1/last.ckpt", weights_only=True)
    assert full["epoch"] == resumed["epoch"] == 5
    # The same best checkpoint too: the restored best-model record stayed valid in its own folder.
    assert sorted(p.name for p in (tmp_path / "checkpoints/gcn_dot/version_0").iterdir()) == \
        sorted(p.name for p in (tmp_path / "checkpoints/gcn_dot/version_1").iterdir())
    for name, value in full["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][name], value, rtol=0, atol=1e-6)

    def val_rmse(version: int) -> pd.Series:
        frame = pd.read_csv(tmp_path / f"logs/gcn_dot/version_{version}/metrics.csv").dropna(subset=["val_rmse"])
        return frame.set_index("epoch")["val_rmse"]

    after = val_rmse(2)
    assert list(after.index) == [3, 4, 5]
    assert (after - val_rmse(0).loc[[3, 4, 5]]).abs().max() < 1e-6

    # Without the random generators' states the same resume draws other dropout masks: the check can fail.
    monkeypatch.setattr(RatingModel, "on_load_checkpoint", lambda self, checkpoint: None)
    main([*command[3:ckpt], str(interrupted), *QUIET])
    newest = max((tmp_path / "checkpoints/gcn_dot").iterdir(), key=lambda p: int(p.name.split("_")[1]))
    assert newest.name == "version_3"  # one past the logs' version_2: a fresh run folder
    unrestored = torch.load(newest / "last.ckpt", weights_only=True)
    assert not torch.allclose(unrestored["state_dict"]["encoder.user_embedding.weight"],
                              full["state_dict"]["encoder.user_embedding.weight"], atol=1e-6)


def test_two_fits_started_together_get_separate_run_folders(tmp_path, ml100k_root):
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    args = [sys.executable, "-m", "movielens_gnn", *_args("fit", "gcn_dot.yaml", ml100k_root, "--trainer.max_epochs", "2")]
    procs = [subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    for folder in (tmp_path / "checkpoints" / "gcn_dot", tmp_path / "logs" / "gcn_dot"):
        assert sorted(p.name for p in folder.iterdir()) == ["version_0", "version_1"]
    for version in ("version_0", "version_1"):
        assert "last.ckpt" in {p.name for p in (tmp_path / "checkpoints" / "gcn_dot" / version).iterdir()}
        metrics = pd.read_csv(tmp_path / "logs" / "gcn_dot" / version / "metrics.csv")
        assert sorted(metrics.dropna(subset=["val_rmse"])["epoch"]) == [0, 1]  # one run's rows each


def test_checkpoint_data_settings_are_used_by_default(tmp_path, monkeypatch, ml100k_root, caplog):
    monkeypatch.chdir(tmp_path)
    fit = main(_args("fit", "gcn_dot.yaml", ml100k_root, "--trainer.max_epochs", "2", "--data.split", "u2",
                     "--data.seed", "3"))
    best = fit.trainer.checkpoint_callback.best_model_path
    # No --config: model and data come from the checkpoint (u2, seed 3, its root).
    test = main(["test", "--ckpt_path", best, *QUIET])
    assert (test.datamodule.split, test.datamodule.seed) == ("u2", 3)
    assert test.datamodule.fingerprint == fit.datamodule.fingerprint
    dm = MovieLensDataModule(root=str(ml100k_root), split="u2", seed=3)
    model = RatingModel.load_from_checkpoint(best)
    model.attach_graph(dm.graph)
    model.eval()
    with torch.no_grad():
        prediction = model(dm.data.test.users, dm.data.test.items).clamp(1, 5)
    expected = torch.sqrt(((prediction - dm.data.test.ratings) ** 2).mean()).item()
    assert test.trainer.callback_metrics["test_rmse"].item() == pytest.approx(expected, abs=1e-6)
    # On purpose, another split: it runs, on u1, and says so.
    caplog.set_level(logging.WARNING, logger="movielens_gnn")
    other = main(_args("test", "gcn_dot.yaml", ml100k_root, "--ckpt_path", best, "--data.allow_mismatch", "true"))
    assert other.datamodule.split == "u1" and "--data.allow_mismatch" in caplog.text


def test_evaluation_options_are_honoured_with_a_checkpoint(tmp_path, monkeypatch, ml100k_root):
    monkeypatch.chdir(tmp_path)
    fit = main(_args("fit", "gcn_dot.yaml", ml100k_root, "--trainer.max_epochs", "2"))
    best = fit.trainer.checkpoint_callback.best_model_path
    test = main(_args("test", "gcn_dot.yaml", ml100k_root, "--ckpt_path", best, "--model.ranking_ks", "[5]",
                      "--model.relevance_threshold", "3"))
    assert test.model.hparams.ranking_ks == [5] and test.model.hparams.relevance_threshold == 3
    assert "test_ndcg@5" in test.trainer.callback_metrics and "test_ndcg@10" not in test.trainer.callback_metrics


def test_atomic_checkpoint_io_leaves_no_partial_file(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "ckpts" / "last.ckpt"
    io.save_checkpoint({"epoch": 1}, path)
    assert torch.load(path, weights_only=True) == {"epoch": 1}

    def half_save(obj, handle, *args, **kwargs):
        handle.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", half_save)
    with pytest.raises(OSError):
        io.save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"epoch": 1}  # the previous one, whole
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


def test_describe_prepares_the_data_from_the_archive(tmp_path, monkeypatch, capsys):
    folder = write_ml100k(tmp_path / "source")
    root = tmp_path / "root"
    root.mkdir()
    payload = zip_folder(folder, root / "ml-100k.zip")
    monkeypatch.setattr(MovieLens100K, "ARCHIVE_MD5", hashlib.md5(payload).hexdigest())
    monkeypatch.setattr(MovieLens100K, "ARCHIVE_SIZE", len(payload))
    text = main(["describe", "--data.root", str(root)])
    assert "users: 24\nitems: 30 rated (30 listed)\nratings: 288\n" in text
    assert (root / "ml-100k" / "u.data").is_file() and not _temporaries(root)


def test_ctrl_c_during_fit_exits_130_with_the_resume_command(tmp_path, monkeypatch, ml100k_root, caplog):
    monkeypatch.chdir(tmp_path)
    stop = json.dumps({"class_path": "tests.faults.SignalAtEpoch", "init_args": {"epoch": 1, "signum": int(signal.SIGINT)}})
    caplog.set_level(logging.WARNING, logger="movielens_gnn")
    with pytest.raises(SystemExit) as exit_info:
        main([*_args("fit", "gcn_dot.yaml", ml100k_root, "--trainer.max_epochs", "5"), f"--trainer.callbacks+={stop}"])
    assert exit_info.value.code == 130
    (hint,) = [r.getMessage() for r in caplog.records if "Resume it with" in r.getMessage()]
    assert hint.startswith("Training was stopped by Ctrl-C after 1 completed epoch(s)")
    assert hint.endswith(f"--ckpt_path {tmp_path}/checkpoints/gcn_dot/version_0/last.ckpt")
    # Ctrl-C stops at once (epoch 1's checkpoint was not written yet); the named checkpoint is whole.
    assert torch.load(tmp_path / "checkpoints/gcn_dot/version_0/last.ckpt", weights_only=True)["epoch"] == 0
    assert not [p for p in (tmp_path / "checkpoints").rglob("*") if TEMP.search(p.name)]


def test_evaluation_in_a_fresh_folder_leaves_only_its_logs(tmp_path, monkeypatch, ml100k_root):
    monkeypatch.chdir(tmp_path)
    fit = main(_args("fit", "gcn_dot.yaml", ml100k_root, "--trainer.max_epochs", "1"))
    best = Path(fit.trainer.checkpoint_callback.best_model_path)
    assert "optimizer_states" not in torch.load(best, weights_only=True)  # the config's weights-only best
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    main(_args("test", "gcn_dot.yaml", ml100k_root, "--ckpt_path", str(best)))
    assert sorted(str(p.relative_to(elsewhere)) for p in elsewhere.rglob("*")) == [
        "logs", "logs/gcn_dot", "logs/gcn_dot/version_0", "logs/gcn_dot/version_0/config.yaml",
        "logs/gcn_dot/version_0/hparams.yaml", "logs/gcn_dot/version_0/metrics.csv"]  # no empty checkpoints/


def test_ctrl_c_while_the_command_line_loads_is_one_line_and_exit_130(monkeypatch, capsys):
    """Ctrl-C during ``import torch`` (the first seconds of every command): no traceback."""
    import builtins

    from movielens_gnn import __main__ as entry

    real_import = builtins.__import__

    def interrupted(name, *args, **kwargs):
        if name == "movielens_gnn.cli":
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", interrupted)
    try:
        with pytest.raises(SystemExit) as exit_info:
            entry.run()
    finally:
        __import__("gc").unfreeze()  # run() froze this test process's objects
    assert exit_info.value.code == 130
    assert capsys.readouterr().err == "error: interrupted (Ctrl-C) while starting; nothing was written.\n"
