"""A training run's files: its own folders, checkpoints written atomically, and how to resume it.

These are Lightning pieces the CLI adds to every Trainer it builds (they are also usable with a
plain ``Trainer``):

* :func:`claim_run_folders` gives each ``fit`` its own ``version_N`` for the logger and for every
  checkpoint folder, claimed with ``mkdir`` so that two runs started at once never share one.
* :class:`AtomicCheckpointIO` writes each checkpoint to a temporary file and renames it, so a
  checkpoint on disk is always whole, even when the process is killed while saving.
* :class:`LastCheckpoint` keeps ``last.ckpt``, the run's latest state, at a cadence tied to the run's
  length (by default a resume loses at most 1% of ``max_epochs``) and always at the final epoch.
* :class:`ResumeHint` says, when ``fit`` is stopped by Ctrl-C or SIGTERM, which command resumes it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shlex
from pathlib import Path
from typing import Any, Optional, Sequence

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins import TorchCheckpointIO
from lightning_fabric.utilities.cloud_io import _is_local_file_protocol
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

from movielens_gnn.files import atomic_write, remove_stale

log = logging.getLogger(__name__)

_VERSION = re.compile(r"version_(\d+)")


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` through a temporary file beside the checkpoint, renamed into place when whole."""

    def __init__(self) -> None:
        super().__init__()
        self._swept: set[Path] = set()  # folders already cleared of dead runs' temporaries

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if not _is_local_file_protocol(path):  # s3://... and the like: fsspec's own writer
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}.")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent not in self._swept:  # once per folder: only a dead run leaves temporaries of other names
            remove_stale(path.parent)
            self._swept.add(path.parent)
        with atomic_write(path) as handle:
            torch.save(checkpoint, handle)


def is_final_epoch(trainer: pl.Trainer) -> bool:
    """At an epoch's end: whether training ends after it (``max_epochs`` or ``max_steps`` reached, or a
    stop asked for, e.g. by early stopping, that ``min_epochs`` / ``min_steps`` no longer hold back)."""
    stopping = trainer.should_stop and getattr(trainer.fit_loop, "_can_stop_early", True)
    return (stopping or (trainer.max_epochs is not None and 0 < trainer.max_epochs <= trainer.current_epoch + 1)
            or (trainer.max_steps not in (None, -1) and trainer.global_step >= trainer.max_steps))


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt``: the run's latest state (model, optimizer, loops, callbacks) to resume from.

    Written after an epoch once ``every_n_epochs`` epochs have passed since the last write, and always
    after the run's final epoch (``max_epochs`` or ``max_steps`` reached, or early stopping) or when
    training ends otherwise (``max_time``), so the file a finished run leaves is its end state. A resume
    after a crash repeats at most ``every_n_epochs - 1`` epochs. Writing every epoch was a third of a
    small model's training loop on an H200 (u1 ``gcn_dot``: 339 saves took 2.2 s, 32% of the loop, in
    the profile of the project's issue 15); the default cadence, 1% of ``max_epochs``, bounds what a
    resume loses instead.

    Args:
        dirpath: Folder of the file (the CLI gives each run its own ``version_N`` below it).
        filename: Name without ``.ckpt``.
        every_n_epochs: Epochs between writes; ``None``: ``max(1, max_epochs // 100)`` (every epoch
            when ``max_epochs`` is unbounded).
    """

    def __init__(self, dirpath: Optional[str] = None, filename: str = "last", every_n_epochs: Optional[int] = None) -> None:
        if every_n_epochs is not None and every_n_epochs < 1:
            raise ValueError(f"LastCheckpoint's every_n_epochs must be a positive number of epochs or null (1% of "
                             f"max_epochs), got {every_n_epochs}.")
        # The parent's own epoch trigger is off (every_n_epochs=0): _due decides, at each epoch's end.
        super().__init__(dirpath=dirpath, filename=filename, every_n_epochs=0, enable_version_counter=False,
                         save_on_train_epoch_end=True)
        self._requested_every = every_n_epochs
        self._epochs_between = every_n_epochs or 1
        self._last_epoch_saved = -1

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if self._requested_every is None:
            max_epochs = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs > 0 else 0
            self._epochs_between = max(1, max_epochs // 100)

    def _due(self, trainer: pl.Trainer) -> bool:
        return is_final_epoch(trainer) or trainer.current_epoch - self._last_epoch_saved >= self._epochs_between

    def _save(self, trainer: pl.Trainer) -> None:
        """Write the file unless this step's state is written already (or Lightning says not now)."""
        if self._should_skip_saving_checkpoint(trainer):
            return
        self._last_epoch_saved = trainer.current_epoch  # before the save: the file holds this callback's state
        self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning 2 runs this after the epoch's validation and EarlyStopping's check, so
        # trainer.should_stop already says whether this epoch is the final one.
        if self._due(trainer):
            self._save(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer)  # a run that ends inside an epoch (max_steps, max_time) still leaves its end state

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "last_epoch_saved": self._last_epoch_saved}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._last_epoch_saved = int(state_dict.get("last_epoch_saved", -1))


def default_checkpoints(folder: Path, monitor: str, mode: str) -> list[ModelCheckpoint]:
    """The configs' checkpoint callbacks, for a ``fit`` whose config names none: the best epoch on the
    task's ``monitor`` (weights, hyperparameters and data settings only) and ``last.ckpt`` (the whole
    state), both in ``folder`` (``checkpoints/<task>``; :func:`claim_run_folders` adds ``version_N``).
    Lightning's own default would keep the latest epoch only, under the logger's folder."""
    dirpath = str(folder)
    return [ModelCheckpoint(dirpath=dirpath, filename=f"{{epoch}}-{{{monitor}:.4f}}", monitor=monitor, mode=mode,
                            save_weights_only=True),
            LastCheckpoint(dirpath=dirpath)]


def _versions(folder: Path) -> list[int]:
    if not folder.is_dir():
        return []
    return [int(m.group(1)) for p in folder.iterdir() if (m := _VERSION.fullmatch(p.name))]


def newest_run_checkpoint(roots: Sequence[Path], which: str) -> tuple[Path | None, list[Path]]:
    """The checkpoint ``--ckpt_path last`` or ``best`` means in a new process: that of the newest run
    (highest ``version_N``) under the checkpoint folders ``roots`` that has one.

    Args:
        roots: The checkpoint callbacks' folders (``checkpoints/<config>``), without ``version_N``.
        which: ``last`` (its ``last.ckpt``) or ``best`` (its other checkpoint, when it has exactly one).

    Returns:
        The checkpoint (``None`` when there is none, or several best ones), and the newest run's candidates.
    """
    runs = sorted(((version, root / f"version_{version}") for root in roots for version in _versions(root)),
                  key=lambda run: run[0], reverse=True)
    for _, folder in runs:
        found = sorted(path for path in folder.glob("*.ckpt") if (path.name == "last.ckpt") == (which == "last"))
        if found:
            return (found[0] if len(found) == 1 else None), found
    return None, []


def claim_run_folders(trainer: pl.Trainer, resume_from: Path | None = None, checkpoints: bool = True) -> list[Path]:
    """Give this ``fit`` its own ``version_N`` folders before it writes anything.

    ``N`` is one past the highest version in the logger's folder and in every checkpoint folder,
    and the folders are created with ``mkdir`` (which fails if another run took ``N`` first; the
    next number is then tried), so concurrent runs never share logs or checkpoints. The logger (a
    ``CSVLogger`` or ``TensorBoardLogger`` without an explicit version) logs into
    ``<save_dir>/<name>/version_N`` and each ``ModelCheckpoint`` with a ``dirpath`` saves into
    ``<dirpath>/version_N``. Call on global rank 0 only; other ranks get the checkpoint folder
    from rank 0 when Lightning sets the callbacks up.

    Args:
        trainer: The Trainer about to fit.
        resume_from: The checkpoint a resumed run starts from. When it lies in one of these
            checkpoint folders' ``version_M``, the run keeps saving there, so that the restored
            best/last checkpoint records stay valid (Lightning drops them when the folder
            changes); its logs still get a new version (a CSV logger would delete the old rows).
        checkpoints: Also give the checkpoint folders a version (``fit``); evaluation commands
            write logs only.

    Returns:
        The folders created, deepest first (for removal when the run leaves them empty).
    """
    logger = trainer.logger
    roots: list[Path] = []
    versioned_logger = logger is not None and hasattr(logger, "root_dir") and getattr(logger, "_version", 0) is None
    if versioned_logger:
        roots.append(Path(logger.root_dir))
    checkpoints = [cb for cb in trainer.callbacks if checkpoints and isinstance(cb, ModelCheckpoint) and cb.dirpath]
    if resume_from is not None and _VERSION.fullmatch(resume_from.parent.name):
        own = resume_from.parent.resolve()
        continuing = [cb for cb in checkpoints if Path(cb.dirpath).resolve() == own.parent]
        for cb in continuing:
            cb.dirpath = str(own)  # absolute, as Lightning stores it: else it drops the restored best record
        checkpoints = [cb for cb in checkpoints if cb not in continuing]
    roots += list(dict.fromkeys(Path(cb.dirpath) for cb in checkpoints))
    if not roots:
        return []
    for root in roots:
        for folder in (root, *root.parents):
            if folder.exists() and not folder.is_dir():
                raise NotADirectoryError(f"Cannot create the run folder under {root}: {folder} is a file. Move it, or "
                                         "choose another logger save_dir / checkpoint dirpath.")
    missing = {folder for root in roots for folder in (root, *root.parents) if not folder.exists()}
    version = max((v for root in roots for v in _versions(root)), default=-1) + 1
    while True:
        made: list[Path] = []
        try:
            for root in roots:
                root.mkdir(parents=True, exist_ok=True)
                (root / f"version_{version}").mkdir()
                made.append(root / f"version_{version}")
        except BaseException as err:
            remove_if_empty(made)
            if not isinstance(err, FileExistsError):
                raise
            version += 1
            continue
        break
    if versioned_logger:
        logger._version = version  # what CSVLogger/TensorBoardLogger(version=N) would have set
    for cb in checkpoints:
        cb.dirpath = str(Path(cb.dirpath) / f"version_{version}")
    log.info("Run folder version_%d: %s", version, ", ".join(str(p) for p in made))
    return made + sorted(missing, key=lambda p: len(p.parts), reverse=True)


def remove_if_empty(folders: list[Path]) -> None:
    """Remove those of ``folders`` that are still empty (a failed or checkpoint-less run)."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


# The run's config in a W&B run's files folder: not "config.yaml", which is W&B's own file there (its
# run config, rewritten by W&B), and which --config could not read.
WANDB_CONFIG = "cli_config.yaml"


def is_wandb(logger: Any) -> bool:
    """Whether ``logger`` is Lightning's ``WandbLogger`` (or a subclass). Importing the class does not import
    ``wandb`` itself, which only its run does."""
    from pytorch_lightning.loggers import WandbLogger

    return isinstance(logger, WandbLogger)


def quiet_wandb_start(logger: Any) -> None:
    """Before a ``WandbLogger``'s run starts: create its ``save_dir`` (W&B looks for a git root there and warns
    "git root logs does not exist" while it is missing) and drop Lightning's ``anonymous=None`` (W&B warns that
    the setting has no effect whenever it is passed at all)."""
    if not is_wandb(logger) or getattr(logger, "_experiment", None) is not None:
        return
    if logger.save_dir:
        Path(logger.save_dir).mkdir(parents=True, exist_ok=True)
    init = getattr(logger, "_wandb_init", None)
    if isinstance(init, dict) and init.get("anonymous") is None:
        init.pop("anonymous", None)


def wandb_run_folder(logger: Any) -> Path | None:
    """The files folder of a ``WandbLogger``'s run (``logs/wandb/<run>/files``, uploaded with it); ``None``
    for other loggers. Starts the run if it has not started (on rank 0, where Lightning would anyway)."""
    if not is_wandb(logger):
        return None
    return Path(logger.experiment.dir)


def run_config(trainer: pl.Trainer) -> Path | None:
    """The run's saved ``config.yaml`` (LightningCLI writes it into the log folder; a W&B run's is
    :data:`WANDB_CONFIG` in its own files folder, see ``cli.RunConfig``), if there is one.

    Like ``trainer.log_dir`` but without its broadcast, so it can be called on rank 0 alone.
    """
    name = "config.yaml"
    if trainer.loggers:
        logger = trainer.loggers[0]
        folder = wandb_run_folder(logger)
        if folder is not None:
            name = WANDB_CONFIG
        else:
            folder = logger.log_dir if hasattr(logger, "log_dir") and hasattr(logger, "root_dir") else logger.save_dir
    else:
        folder = trainer.default_root_dir
    path = Path(folder or ".") / name
    return path if path.is_file() else None


def latest_checkpoint(trainer: pl.Trainer) -> Path | None:
    """The most recently written checkpoint of this run that can resume it.

    That is one of a ``ModelCheckpoint`` callback that saves the whole training state (model,
    optimizer, loops, callbacks): the configs' best checkpoints keep the weights only
    (``save_weights_only``), for evaluation, so the answer is ``last.ckpt`` there.
    """
    found: set[Path] = set()
    for cb in trainer.checkpoint_callbacks:
        if cb.save_weights_only:
            continue
        written = [cb.best_model_path, cb.last_model_path, *cb.best_k_models]  # its current files, restored on resume
        found |= {Path(p) for p in written if p and Path(p).is_file()}
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None


class ResumeHint(Callback):
    """On Ctrl-C or SIGTERM during ``fit``, log the command that resumes the run from its latest checkpoint.

    The command uses the run's saved ``config.yaml`` (every option and override of the run) when
    there is one. Resuming restores the model, optimizer, loops, callbacks and random generators,
    so on CPU the resumed run repeats the uninterrupted one.
    """

    def __init__(self) -> None:
        self.message: str | None = None
        self.interrupted: BaseException | None = None  # the KeyboardInterrupt or SIGTERMException, if any

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            return
        self.interrupted = exception
        if trainer.state.fn != "fit":
            return
        if not trainer.is_global_zero:
            return
        signal_name = "Ctrl-C" if isinstance(exception, KeyboardInterrupt) else "SIGTERM"
        checkpoint = latest_checkpoint(trainer)
        if checkpoint is None:
            self.message = (f"Training was stopped by {signal_name} before a checkpoint to resume from was written; "
                            "start it again.")
        else:
            config = run_config(trainer)
            options = f"--config {shlex.quote(str(config))}" if config else "<the same options>"
            done = trainer.fit_loop.epoch_progress.current.completed
            self.message = (f"Training was stopped by {signal_name} after {done} completed epoch(s). Resume it with: "
                            f"python -m movielens_gnn fit {options} --ckpt_path {shlex.quote(str(checkpoint))}")
        log.warning(self.message)

