"""Training progress as one compact log line per interval: epoch, train loss, the monitored metric, its best.

Lightning's tqdm bar redraws per step and shows only the loss; a 500-epoch full-batch fit is better
followed by lines like::

    epoch 40/500  train_loss 0.8412  val_rmse 0.9391  best 0.9377 at epoch=36  0.21 s/epoch

("epoch 40/500" counts epochs; ``epoch=36`` is Lightning's 0-based index, as in the checkpoint's file name;
a training loss measured on an earlier epoch, see ``train_metrics_every_n_epochs``, reads
``train_loss 0.8412 at epoch=35``).

which also read well in a log file. When training ends, one more line says where the run's time went::

    trained 200 epochs in 2.60 s (13.0 ms an epoch, validation and checkpoints included); 3.1 s from process start to the first epoch

(u1 ``gcn_dot`` on 2 CPU cores; the second figure is imports, data and device set-up; it is left out where the process's start time
cannot be read, outside Linux). A start-up over 5 s also names its causes that the user can change, where
found: no bytecode cache (or one written only now), or unused packages that torchmetrics imported
(``movielens_gnn/startup.py``). It is the CLI's default progress bar (a Lightning ``ProgressBar``),
so ``--trainer.enable_progress_bar false`` silences it like any other.
"""

from __future__ import annotations

import logging
import math
import time

import pytorch_lightning as pl
from pytorch_lightning.callbacks.progress.progress_bar import ProgressBar

from movielens_gnn.clock import process_seconds
from movielens_gnn.runs import is_final_epoch
from movielens_gnn.startup import slow_start_hints

log = logging.getLogger("movielens_gnn")

class EpochLines(ProgressBar):
    """Log a line after the first epochs, then at most every ``interval_s`` seconds, and after the last.

    Args:
        interval_s: Seconds between lines after the first ``first_epochs``.
        first_epochs: Epochs that always get a line (so a run shows life at once).
    """

    def __init__(self, interval_s: float = 10.0, first_epochs: int = 3) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.first_epochs = first_epochs
        self._enabled = True
        self._last_line = 0.0
        self._epoch_start = 0.0
        self._epoch_times: list[float] = []
        self._best: tuple[float, int] | None = None
        self._train_start = 0.0
        self._start_up_s: float | None = None
        self._epochs_run = 0
        # The last epoch that ended, with its monitored value, and the last one that got a line: early
        # stopping decides after this callback's epoch end (EarlyStopping runs later in the same hook),
        # so the final epoch's line may be owed at the end of training.
        self._last_epoch: tuple[int, str, float | None] | None = None  # (epoch, monitor, value)
        self._logged_epoch: int | None = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_line = self._train_start = time.monotonic()
        self._start_up_s = process_seconds()
        self._epochs_run = 0
        self._best = None
        self._last_epoch = self._logged_epoch = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._enabled or not trainer.is_global_zero:
            return
        if self._last_epoch is not None and self._last_epoch[0] != self._logged_epoch:
            epoch, monitor, value = self._last_epoch
            log.info(self.line(trainer, monitor, value, epoch))
        log.info(self.time_line(time.monotonic() - self._train_start))

    def time_line(self, train_s: float) -> str:
        """Where this fit's time went: its epochs (a resumed run counts those it ran) and the start-up."""
        line = f"trained {self._epochs_run} epochs in {train_s:.2f} s"
        if self._epochs_run:
            line += f" ({1000 * train_s / self._epochs_run:.1f} ms an epoch, validation and checkpoints included)"
        if self._start_up_s is not None:
            line += f"; {self._start_up_s:.1f} s from process start to the first epoch"
            hints = slow_start_hints(self._start_up_s)
            if hints:
                line += ". Slow start-up: " + "; ".join(hints)
        return line

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = time.monotonic()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Validation of this epoch has run by now, so its metric is in callback_metrics.
        now = time.monotonic()
        self._epochs_run += 1
        self._epoch_times = (self._epoch_times + [now - self._epoch_start])[-20:]
        monitor, higher = monitored(trainer, pl_module)
        value = _scalar(trainer.callback_metrics.get(monitor))
        epoch = trainer.current_epoch
        if value is not None and (self._best is None or (value > self._best[0] if higher else value < self._best[0])):
            self._best = (value, epoch)
        self._last_epoch = (epoch, monitor, value)
        last = is_final_epoch(trainer)
        if not self._enabled or not trainer.is_global_zero:
            return
        if epoch < self.first_epochs or last or now - self._last_line >= self.interval_s:
            self._last_line = now
            self._logged_epoch = epoch
            log.info(self.line(trainer, monitor, value, epoch))

    def line(self, trainer: pl.Trainer, monitor: str, value: float | None, epoch: int) -> str:
        """The progress line of ``epoch`` (0-based), the epoch that ended last."""
        total = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        parts = [f"epoch {epoch + 1}{total}"]
        loss = _scalar(trainer.callback_metrics.get("train_loss"))
        if loss is not None:
            # Measured every train_metrics_every_n_epochs epochs: name the epoch of an older value.
            measured = getattr(trainer.lightning_module, "train_metrics_epoch", None)
            stale = measured is not None and measured != epoch
            parts.append(f"train_loss {loss:.4f}" + (f" at epoch={measured}" if stale else ""))
        if value is not None:
            parts.append(f"{monitor} {value:.4f}")
        if self._best is not None:
            parts.append(f"best {self._best[0]:.4f} at epoch={self._best[1]}")  # 0-based, as in checkpoint names
        if self._epoch_times:
            parts.append(f"{sum(self._epoch_times) / len(self._epoch_times):.2f} s/epoch")
        return "  ".join(parts)


def monitored(trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[str, bool]:
    """The validation metric the run selects on, and whether higher is better: the checkpoint callback's
    when it has one, else the task's own (``val_rmse``, ``val_ndcg@10``)."""
    callback = trainer.checkpoint_callback
    monitor = getattr(callback, "monitor", None)
    if monitor:
        return monitor, getattr(callback, "mode", "min") == "max"
    # The task declares both (GraphTask.monitor, monitor_mode); another module falls back to a loss.
    return getattr(pl_module, "monitor", "val_loss"), getattr(pl_module, "monitor_mode", "min") == "max"


def _scalar(value) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None
