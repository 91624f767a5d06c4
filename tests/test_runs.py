"""LastCheckpoint: how often last.ckpt is written, and that the final epoch always is; which checkpoint resumes."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.demos.boring_classes import BoringModel

from pytorch_lightning.callbacks import ModelCheckpoint

from movielens_gnn.runs import LastCheckpoint, latest_checkpoint


class _SeenEpochs(pl.Callback):
    """Before each epoch and at the end, the epoch stored in last.ckpt (None while there is none)."""

    def __init__(self, path) -> None:
        self.path, self.seen = path, []

    def _read(self) -> None:
        self.seen.append(torch.load(self.path, weights_only=True)["epoch"] if self.path.is_file() else None)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._read()

    def on_fit_end(self, trainer, pl_module) -> None:
        self._read()


class _StopAt(pl.Callback):
    """Ask to stop after epoch ``epoch`` (and, with ``onwards``, after every later one)."""

    def __init__(self, epoch: int, onwards: bool = False) -> None:
        self.epoch, self.onwards = epoch, onwards

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch or (self.onwards and trainer.current_epoch > self.epoch):
            trainer.should_stop = True


def _fit(tmp_path, max_epochs: int, checkpoint: LastCheckpoint, *callbacks: pl.Callback, **trainer_options) -> list:
    """Fit a BoringModel (2 steps an epoch); the epochs last.ckpt held before each epoch and at the end."""
    seen = _SeenEpochs(tmp_path / "last.ckpt")
    trainer = pl.Trainer(max_epochs=max_epochs, limit_train_batches=2, limit_val_batches=1, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         callbacks=[checkpoint, seen, *callbacks], **trainer_options)
    trainer.fit(BoringModel())
    return seen.seen


def test_every_n_epochs_and_always_the_final_epoch(tmp_path):
    seen = _fit(tmp_path, 8, LastCheckpoint(dirpath=str(tmp_path), every_n_epochs=3))
    # Written after epochs 2 and 5 (0-based), then after the final epoch 7 though only 2 epochs passed.
    assert seen == [None, None, None, 2, 2, 2, 5, 5, 7]
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_default_cadence_is_one_percent_of_max_epochs_and_early_stopping_is_final(tmp_path):
    checkpoint = LastCheckpoint(dirpath=str(tmp_path))
    seen = _fit(tmp_path, 300, checkpoint, _StopAt(4))
    assert checkpoint._epochs_between == 3
    assert seen == [None, None, None, 2, 2, 4]  # epoch 4 is the last: early stopping made it final


def test_short_runs_write_every_epoch(tmp_path):
    assert _fit(tmp_path, 4, LastCheckpoint(dirpath=str(tmp_path))) == [None, 0, 1, 2, 3]


def test_resumed_run_keeps_the_cadence(tmp_path):
    _fit(tmp_path, 4, LastCheckpoint(dirpath=str(tmp_path), every_n_epochs=3))  # writes after 2, then 3 (final)
    state = torch.load(tmp_path / "last.ckpt", weights_only=True)
    stored = next(v for k, v in state["callbacks"].items() if k.startswith("LastCheckpoint"))
    assert stored["last_epoch_saved"] == 3
    restored = LastCheckpoint(dirpath=str(tmp_path), every_n_epochs=3)
    restored.load_state_dict(stored)
    assert restored._last_epoch_saved == 3


def test_a_run_ended_by_max_steps_leaves_its_end_state(tmp_path):
    # 2 steps an epoch: max_steps 7 ends the run inside epoch 3, before the cadence of 5 epochs is due.
    _fit(tmp_path, 20, LastCheckpoint(dirpath=str(tmp_path), every_n_epochs=5), max_steps=7)
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == 7


def test_early_stopping_before_min_epochs_is_not_final(tmp_path):
    # should_stop from epoch 1 on, but min_epochs 4 keeps training: last.ckpt keeps its cadence until then.
    seen = _fit(tmp_path, 50, LastCheckpoint(dirpath=str(tmp_path), every_n_epochs=3), _StopAt(1, onwards=True),
                min_epochs=4)
    assert seen == [None, None, None, 2, 3]  # after epoch 2 (cadence), then the final epoch 3


def test_rejects_a_cadence_below_one():
    with pytest.raises(ValueError, match="every_n_epochs must be a positive number of epochs"):
        LastCheckpoint(every_n_epochs=0)


class _Latest(pl.Callback):
    """At the start of epoch ``epoch``: the file latest_checkpoint names, and every checkpoint file on disk
    from newest to oldest."""

    def __init__(self, epoch: int, folder) -> None:
        self.epoch, self.folder, self.named, self.newest_first = epoch, folder, None, []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            self.named = latest_checkpoint(trainer).name
            files = sorted(self.folder.glob("*.ckpt"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
            self.newest_first = [p.name for p in files]


def test_resume_uses_the_newest_whole_checkpoint_not_a_newer_weights_only_one(tmp_path):
    weights = ModelCheckpoint(dirpath=str(tmp_path), filename="{epoch}", every_n_epochs=1, save_weights_only=True)
    probe = _Latest(4, tmp_path)
    _fit(tmp_path, 5, LastCheckpoint(dirpath=str(tmp_path), every_n_epochs=3), weights, probe)
    # Before epoch 4: last.ckpt holds epoch 2, epoch=3.ckpt is newer but cannot resume a run.
    assert probe.newest_first == ["epoch=3.ckpt", "last.ckpt"]
    assert probe.named == "last.ckpt"
    best = torch.load(tmp_path / "epoch=4.ckpt", weights_only=True)
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert "optimizer_states" not in best and "optimizer_states" in last
    assert best["state_dict"].keys() == last["state_dict"].keys()


def test_is_wandb_recognises_the_logger_and_its_subclasses_without_starting_a_run(tmp_path):
    from pytorch_lightning.loggers import CSVLogger, WandbLogger

    from movielens_gnn.runs import is_wandb, wandb_run_folder

    class TeamLogger(WandbLogger):
        pass

    csv = CSVLogger(tmp_path)
    assert not is_wandb(csv) and not is_wandb(None) and wandb_run_folder(csv) is None
    assert is_wandb(WandbLogger(save_dir=str(tmp_path), offline=True))
    subclassed = TeamLogger(save_dir=str(tmp_path), offline=True)
    assert is_wandb(subclassed) and subclassed._experiment is None



def test_quiet_wandb_start_creates_the_save_dir_and_drops_the_unset_anonymous_option(tmp_path):
    from pytorch_lightning.loggers import CSVLogger, WandbLogger

    from movielens_gnn.runs import quiet_wandb_start

    logger = WandbLogger(save_dir=str(tmp_path / "logs"), offline=True)
    assert "anonymous" in logger._wandb_init and not (tmp_path / "logs").exists()
    quiet_wandb_start(logger)
    assert (tmp_path / "logs").is_dir() and "anonymous" not in logger._wandb_init and logger._experiment is None
    chosen = WandbLogger(save_dir=str(tmp_path / "logs"), offline=True, anonymous=True)
    quiet_wandb_start(chosen)
    assert chosen._wandb_init["anonymous"] == "allow"  # a choice the user made stays
    quiet_wandb_start(CSVLogger(tmp_path / "csv"))  # other loggers: nothing to do
    assert not (tmp_path / "csv").exists()
