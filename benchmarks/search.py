"""Hyperparameter search on validation only: the config's monitored metric (``val_rmse`` for the rating
configs, ``val_ndcg@10`` for the ranking ones); the test part is never loaded into a metric.

Each trial is a set of CLI overrides on top of a base config; trials come from a small YAML/JSON grid
file mapping option names to lists of values (the Cartesian product is tried), e.g.

    {"--model.dropout": [0.2, 0.4], "_size": ["--model.embedding_dim 64 --model.hidden_dims [64]",
                                             "--model.embedding_dim 128 --model.hidden_dims [128]"]}

A key starting with ``_`` bundles options: each of its values is a whole argument string.

Example:
    python benchmarks/search.py --config configs/gcn_dot.yaml --grid grid.json --data-root ../shared/datasets
"""

from __future__ import annotations

import argparse
import itertools
import json
import shlex
import shutil
from pathlib import Path

import yaml

from common import command_line, machine, quiet_logs, run, workdir_or_temporary


def trials(args: argparse.Namespace, grid: dict, names: list[str], workdir: Path) -> tuple[list[dict], str, bool]:
    """Every point of ``grid``, each run ``--seeds`` times in ``workdir``: the rows (also printed and appended
    to ``--out``), the monitored metric and whether higher is better."""
    results = []
    monitor, higher = "val_rmse", False
    for number, values in enumerate(itertools.product(*(grid[name] for name in names))):
        trial = []
        for name, value in zip(names, values):
            trial += shlex.split(str(value)) if name.startswith("_") else [name, str(value)]
        vals, epochs, walls = [], [], []
        for seed in range(args.seeds):
            overrides = ["--data.root", str(Path(args.data_root).resolve()), "--data.split", args.split,
                         "--data.cache_dir", str(workdir / "cache"), "--seed_everything", str(seed),
                         "--data.seed", str(seed), *trial]
            rundir = workdir / f"trial{number}-seed{seed}"
            result = run(args.config.resolve(), overrides, rundir, test=False)
            shutil.rmtree(rundir)
            vals.append(result.best_score)
            monitor, higher = result.monitor, result.higher_is_better
            epochs.append(result.best_epoch)
            walls.append(result.wall_s)
        row = {"trial": dict(zip(names, values)), "monitor": monitor, "val": sum(vals) / len(vals), "val_runs": vals,
               "best_epoch": epochs, "wall_s": [round(w, 1) for w in walls]}
        results.append(row)
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a") as handle:
                handle.write(json.dumps(row) + "\n")
    return results, monitor, higher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--grid", required=True, type=Path, help="YAML/JSON: option -> list of values")
    parser.add_argument("--split", default="u1")
    parser.add_argument("--seeds", type=int, default=1, help="runs per trial (the mean of the monitored metric is reported)")
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--out", type=Path, help="append one JSON line per trial here")
    args = parser.parse_args()
    quiet_logs()

    grid = yaml.safe_load(args.grid.read_text())
    names = list(grid)
    with workdir_or_temporary(None, "mlgnn-search-") as workdir:
        results, monitor, higher = trials(args, grid, names, workdir)
    print(f"\n`{command_line()}`  \nMachine: {machine()}\n")
    print(f"| rank | {monitor} | epochs | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 3) + "|")
    for rank, row in enumerate(sorted(results, key=lambda r: r["val"], reverse=higher), start=1):
        print(f"| {rank} | {row['val']:.4f} | {row['best_epoch']} | " + " | ".join(str(row["trial"][n]) for n in names) + " |")


if __name__ == "__main__":
    main()
