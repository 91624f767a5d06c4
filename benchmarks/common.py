"""Shared by the benchmark scripts: one fit (and optionally one test) through the project's CLI."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from movielens_gnn.checkpoint import load_checkpoint  # noqa: E402
from movielens_gnn.cli import main  # noqa: E402

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--trainer.logger", "false"]


@dataclass
class RunResult:
    """What one fit (+ test) produced.

    Attributes:
        monitor: The validation metric the config's checkpointing selects on (``val_rmse``, ``val_ndcg@10``).
        higher_is_better: Whether it selects the highest value (``mode: max``).
        best_score: Its value at the selected checkpoint.
        best_epoch: Epoch of that checkpoint (0-based).
        epochs: Epochs trained before early stopping or ``max_epochs``.
        test_rmse: Test RMSE of the selected checkpoint, or ``None`` when not tested.
        test_mae: Test MAE of the selected checkpoint, or ``None``.
        wall_s: Seconds for fit and test together, in this process.
    """

    monitor: str
    higher_is_better: bool
    best_score: float
    best_epoch: int
    epochs: int
    test_rmse: float | None
    test_mae: float | None
    wall_s: float


@contextlib.contextmanager
def workdir_or_temporary(workdir: Path | None, prefix: str):
    """``workdir`` as given (kept), or a temporary folder removed when the block ends, error or not."""
    if workdir is not None:
        yield workdir
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as scratch:
        yield Path(scratch)


@contextlib.contextmanager
def _chdir(path: Path):
    previous = Path.cwd()
    path.mkdir(parents=True, exist_ok=True)
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def run(config: Path, overrides: list[str], workdir: Path, test: bool) -> RunResult:
    """Fit ``config`` with ``overrides`` inside ``workdir``; select on its monitored validation metric;
    test once if asked.

    Checkpoints land in ``workdir`` (the configs use relative paths), so runs never collide.
    """
    start = time.perf_counter()
    with _chdir(workdir):
        fit = main(["fit", "--config", str(config), *overrides, *QUIET])
        checkpoint = fit.trainer.checkpoint_callback
        best = checkpoint.best_model_path
        result = RunResult(
            monitor=checkpoint.monitor,
            higher_is_better=checkpoint.mode == "max",
            best_score=float(checkpoint.best_model_score),
            best_epoch=int(load_checkpoint(best)["epoch"]),
            epochs=fit.trainer.current_epoch,
            test_rmse=None,
            test_mae=None,
            wall_s=0.0,
        )
        if test:
            tested = main(["test", "--config", str(config), *overrides, *QUIET, "--ckpt_path", best, "--verbose", "false"])
            metrics = tested.trainer.callback_metrics
            result.test_rmse = float(metrics["test_rmse"]) if "test_rmse" in metrics else None
            result.test_mae = float(metrics["test_mae"]) if "test_mae" in metrics else None
    result.wall_s = time.perf_counter() - start
    return result


def quiet_logs() -> None:
    """Keep Lightning's per-run chatter out of the benchmark output."""
    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning", "lightning_fabric", "movielens_gnn"):
        logging.getLogger(name).setLevel(logging.WARNING)


def machine() -> str:
    """A one-line description of where the numbers were measured."""
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")


def command_line() -> str:
    return "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]])


def peak_memory(device: torch.device) -> dict:
    """Peak resident memory of this process (imports included) and, on CUDA, peak GPU allocation, in GiB."""
    return {"peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,  # KiB -> GiB
            "gpu_peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None}


def run_worker(script: Path, args: list[str], timeout_s: float, required: bool = False) -> dict | None:
    """Run ``python script *args`` in a fresh process and return the JSON object on its last output line.

    When it fails or runs past ``timeout_s`` (out of memory, say: one stuck size must not eat a whole
    session), the reason goes to stderr as an HTML comment, which a markdown table ignores, and the
    result is ``None``, or with ``required`` a ``RuntimeError``.
    """
    label = " ".join(args)
    try:
        out = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=timeout_s)
        failure = None if out.returncode == 0 else f"failed (exit {out.returncode}): {out.stderr.strip().splitlines()[-1:]}"
    except subprocess.TimeoutExpired:
        failure = f"stopped after {timeout_s:.0f} s"
    if failure is None:
        return json.loads(out.stdout.strip().splitlines()[-1])
    print(f"<!-- worker {label} {failure} -->", file=sys.stderr)
    if required:
        raise RuntimeError(f"the worker {label} {failure}")
    return None
