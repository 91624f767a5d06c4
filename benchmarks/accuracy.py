"""Test RMSE/MAE of configs over splits and seeds, with the checkpoint chosen on validation only.

Example (the README's results table):
    python benchmarks/accuracy.py --configs configs/ml100k_best.yaml,configs/gcn_dot.yaml \
        --splits u1 --seeds 3 --data-root ../shared/datasets --out results/u1.json

Each run fits with ``--seed_everything S --data.seed S`` (S = 0 .. seeds-1; the data seed picks the
validation edges), keeps the checkpoint with the best ``val_rmse``, and evaluates it once on the test part.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from common import command_line, machine, quiet_logs, run, workdir_or_temporary


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {std:.4f}"


def table(rows: list[dict]) -> str:
    """Markdown: one line per (config, split), plus one per config over all its splits when several."""
    lines = ["| config | split | runs | test RMSE | test MAE | best epoch | wall s per run, mean (max) |",
             "|---|---|---|---|---|---|---|"]
    configs = list(dict.fromkeys(r["config"] for r in rows))
    for config in configs:
        mine = [r for r in rows if r["config"] == config]
        splits = list(dict.fromkeys(r["split"] for r in mine))
        groups = [(split, [r for r in mine if r["split"] == split]) for split in splits]
        if len(splits) > 1:
            groups.append(("mean of " + ",".join(splits), mine))
        for split, group in groups:
            lines.append(
                f"| {config} | {split} | {len(group)} | {_mean_std([r['test_rmse'] for r in group])} | "
                f"{_mean_std([r['test_mae'] for r in group])} | "
                f"{statistics.mean(r['best_epoch'] for r in group):.0f} | "
                f"{statistics.mean(r['wall_s'] for r in group):.0f} ({max(r['wall_s'] for r in group):.0f}) |"
            )
    return "\n".join(lines)


def runs(args: argparse.Namespace, workdir: Path) -> list[dict]:
    """Every config × split × seed, fitted and tested in ``workdir``: one row each, also printed and written
    to ``--out`` as it comes."""
    rows = []
    for config in args.configs.split(","):
        config_path = Path(config).resolve()
        for split in args.splits.split(","):
            for seed in range(args.seeds):
                overrides = ["--data.root", str(Path(args.data_root).resolve()), "--data.split", split,
                             "--data.cache_dir", str(workdir / "cache"),
                             "--seed_everything", str(seed), "--data.seed", str(seed), *args.overrides]
                result = run(config_path, overrides, workdir / f"{config_path.stem}-{split}-{seed}", test=True)
                row = {"config": config, "split": split, "seed": seed, "test_rmse": result.test_rmse,
                       "test_mae": result.test_mae, "best_val_rmse": result.best_score,
                       "best_epoch": result.best_epoch, "epochs": result.epochs, "wall_s": round(result.wall_s, 1)}
                rows.append(row)
                print(json.dumps(row), flush=True)
                if args.out:
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", required=True, help="comma-separated config files")
    parser.add_argument("--splits", default="u1", help="comma-separated splits (default u1)")
    parser.add_argument("--seeds", type=int, default=3, help="runs per config and split (default 3)")
    parser.add_argument("--data-root", default="data", help="folder holding ml-100k/ or ml-100k.zip")
    parser.add_argument("--out", type=Path, help="write one JSON object per run here (a list)")
    parser.add_argument("--workdir", type=Path, help="checkpoints and cache (default: a temporary folder)")
    parser.add_argument("overrides", nargs="*", help="extra CLI arguments for every run, after --")
    args = parser.parse_args()
    quiet_logs()

    with workdir_or_temporary(args.workdir, "mlgnn-accuracy-") as workdir:
        rows = runs(args, workdir)
    print()
    print(f"`{command_line()}`  ")
    print(f"Machine: {machine()}")
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
