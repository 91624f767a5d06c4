"""`fit` of configs/ml100k_best.yaml beside DGL's GC-MC example on the same machine, alternately.

    python benchmarks/gcmc_dgl.py --example-dir DIR --dgl-python PY --data-root ../shared/datasets [--rounds 2]
        [--config configs/ml100k_fast.yaml]

DIR holds DGL's example (``examples/pytorch/gcmc`` of https://github.com/dmlc/dgl: ``train.py``,
``data.py``, ``model.py``, ``utils.py``); PY is the interpreter of an environment where it runs (the
README's DGL environment: torch 2.2.1, dgl 2.1.0, plus scipy). The example is run as its README says
for ml-100k without features (``--data_name=ml-100k --use_one_hot_fea --gcn_agg_accum=stack``, here
with ``--device -1``: CPU), from process start to exit; it trains on u1.base (10% of it held out for
validation), early-stops on validation RMSE and prints the test RMSE of its best iteration. The one
change: its ``download`` of files.grouplens.org is replaced by a no-op, with the archive it would have
fetched (``ml-100k.zip``, rebuilt from ``--data-root``'s files) already in place in a temporary
``DGL_DOWNLOAD_DIR``, which the example then extracts as usual; these machines have no internet.

Ours is ``speed.fit_once``: ``python -m movielens_gnn fit --config configs/ml100k_best.yaml`` (or the
config ``--config`` names) from process start to exit (CSV logging, checkpoints, validation every epoch, early stopping) with the data cache
already built (the first, cache-building, fit is run before the rounds and reported apart), then ``test``
of its best checkpoint, not timed. Rounds alternate the two, because this machine's speed drifts.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import statistics
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

import torch

from common import command_line, machine, quiet_logs
from speed import fit_once

CONFIG = "configs/ml100k_best.yaml"
GCMC_ARGS = ["--data_name=ml-100k", "--use_one_hot_fea", "--gcn_agg_accum=stack", "--device", "-1"]
EXAMPLE_FILES = ("train.py", "data.py", "model.py", "utils.py")
# Runs the example's train.py as __main__ after replacing the one network call. `train.py` imports
# `MovieLens` from the same `data` module object, so the replacement is what it calls.
RUNNER = """
import os, runpy, sys
example_dir = sys.argv[1]
sys.path.insert(0, example_dir)
import data
data.download = lambda url, path=None, **kwargs: path
sys.argv = ["train.py", *sys.argv[2:]]
runpy.run_path(os.path.join(example_dir, "train.py"), run_name="__main__")
"""
RESULT = re.compile(r"Best Iter Idx=(\d+), Best Valid RMSE=([\d.]+), Best Test RMSE=([\d.]+)")


def example_digest(example_dir: Path) -> str:
    """A short sha256 over the example's files, so a table names the code that ran."""
    missing = [name for name in EXAMPLE_FILES if not (example_dir / name).is_file()]
    if missing:
        raise SystemExit(f"--example-dir {example_dir} lacks {', '.join(missing)}: expected DGL's "
                         "examples/pytorch/gcmc folder (git clone https://github.com/dmlc/dgl).")
    digest = hashlib.sha256()
    for name in EXAMPLE_FILES:
        digest.update((example_dir / name).read_bytes())
    return digest.hexdigest()[:12]


def archive(data_root: Path, download_dir: Path) -> None:
    """``ml-100k.zip`` as grouplens serves it (one ``ml-100k/`` folder), from the files under ``data_root``."""
    source = data_root / "ml-100k"
    with zipfile.ZipFile(download_dir / "ml-100k.zip", "w") as zf:
        for path in sorted(source.iterdir()):
            if path.is_file():
                zf.write(path, f"ml-100k/{path.name}")


def gcmc_once(example_dir: Path, dgl_python: str, download_dir: Path) -> dict:
    """One run of the example in a fresh process and folder: ``{"wall_s", "best_iter", "val_rmse", "test_rmse"}``."""
    env = {**os.environ, "DGL_DOWNLOAD_DIR": str(download_dir)}
    with tempfile.TemporaryDirectory(prefix="gcmc-run-") as workdir:  # the example writes its log/ folder here
        start = time.perf_counter()
        out = subprocess.run([dgl_python, "-c", RUNNER, str(example_dir.resolve()), *GCMC_ARGS], cwd=workdir,
                             env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
    found = RESULT.findall(out.stdout)
    if out.returncode != 0 or not found:
        tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"the GC-MC example failed (exit {out.returncode}): {tail}")
    best_iter, val_rmse, test_rmse = found[-1]
    return {"wall_s": wall, "best_iter": int(best_iter), "val_rmse": float(val_rmse), "test_rmse": float(test_rmse)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--example-dir", type=Path, required=True, help="DGL's examples/pytorch/gcmc folder")
    parser.add_argument("--dgl-python", required=True, help="a Python interpreter that can import dgl")
    parser.add_argument("--data-root", type=Path, default=Path("data"), help="the folder holding ml-100k/")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--config", default=CONFIG, help="our config to time against the example")
    args = parser.parse_args()
    quiet_logs()
    if not (args.data_root / "ml-100k" / "u1.base").is_file():
        raise SystemExit(f"--data-root {args.data_root} has no ml-100k/u1.base: give the folder that holds "
                         "MovieLens-100K's ml-100k/.")
    digest = example_digest(args.example_dir)
    with tempfile.TemporaryDirectory(prefix="gcmc-download-") as download_dir, \
            tempfile.TemporaryDirectory(prefix="mlgnn-cache-") as cache:
        archive(args.data_root, Path(download_dir))
        compare(args, digest, Path(download_dir), Path(cache))


def compare(args: argparse.Namespace, digest: str, download_dir: Path, cache: Path) -> None:
    """The cache-building fit, then ``args.rounds`` alternating rounds, printed as a markdown table."""
    device = torch.device("cpu")

    print(f"`{command_line()}`  ")
    print(f"Machine: {machine()}; GC-MC example files sha256 {digest}, run by {args.dgl_python}; ours: {args.config}  ")
    cold = fit_once(args.config, str(args.data_root), cache, device)
    print(f"First `fit` (builds the data cache): {cold['wall_s']:.1f} s, test RMSE {cold['test_rmse']:.4f}\n")
    rows = ["| round | DGL GC-MC wall s | its best iter | its test RMSE | ours wall s | ours best epoch / epochs "
            "| ours test RMSE | ours / GC-MC |", "|---|---|---|---|---|---|---|---|"]
    ratios = []
    for index in range(1, args.rounds + 1):
        gcmc = gcmc_once(args.example_dir, args.dgl_python, download_dir)
        ours = fit_once(args.config, str(args.data_root), cache, device)
        ratios.append(ours["wall_s"] / gcmc["wall_s"])
        rows.append(f"| {index} | {gcmc['wall_s']:.1f} | {gcmc['best_iter']} | {gcmc['test_rmse']:.4f} "
                    f"| {ours['wall_s']:.1f} | {ours['best_epoch']} / {ours['epochs']} | {ours['test_rmse']:.4f} "
                    f"| {ratios[-1]:.3f} (1/{1 / ratios[-1]:.1f}) |")
        print(rows[-1] if index > 1 else "\n".join(rows), flush=True)
    print(f"\nMedian ours / GC-MC: {statistics.median(ratios):.3f} (1/{1 / statistics.median(ratios):.1f})")


if __name__ == "__main__":
    main()
