"""Faults to inject into runs under test: a signal at a chosen epoch, a pause at a chosen point."""

from __future__ import annotations

import os
import signal

from pytorch_lightning.callbacks import Callback


class SignalAtEpoch(Callback):
    """Send ``signum`` to this process at the end of training epoch ``epoch`` (after its checkpoint)."""

    def __init__(self, epoch: int, signum: int = int(signal.SIGTERM)) -> None:
        self.epoch = epoch
        self.signum = signum

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), self.signum)
