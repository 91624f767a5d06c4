"""Top-K ranking of configs and of the popularity and EASE baselines, under one protocol and evaluation.

Example:
    python benchmarks/ranking.py --configs popularity,ease,configs/mf_bpr.yaml,configs/lightgcn_ease.yaml \
        --protocol ratio --seeds 3 --data-root ../shared/datasets --out ranking.json

Protocols:
    ratio: each user's ratings shuffled with the seed and cut 80/10/10 (``--data.split ratio``, RecBole's
        default for ml-100k); every rating is a positive, so every test item is relevant.
    u1: the canonical u1.base/u1.test, validation a seeded 5% of u1.base; a test rating >= 4 is relevant.
    With --ratio-remainder test, ratio's rounding remainder goes to test instead of training
    (``--data.ratio_remainder test``: RecBole's early code, other splitters); rows say "ratio, remainder to test".

Evaluation, the same for every row: all items are ranked for every test user with their training
items left out (training + validation at test; training at validation) and scored with
``movielens_gnn.metrics.RankingMetrics``. Selection uses validation only and the test part is
evaluated once per run: EASE's ``l2`` is chosen on validation NDCG@10 from ``--ease-l2``; a config
is trained with the CLI (its own checkpoint selection on validation) and tested with its best
checkpoint. Popularity has nothing to choose. Each run writes one JSON row.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from common import QUIET, _chdir, command_line, machine, quiet_logs, workdir_or_temporary

from movielens_gnn.checkpoint import load_checkpoint
from movielens_gnn.cli import main as cli_main
from movielens_gnn.data.datamodule import MovieLensDataModule
from movielens_gnn.data.splits import RATIO_REMAINDERS
from movielens_gnn.metrics import RankingMetrics
from movielens_gnn.models.baselines import EASE, Popularity, interaction_matrix

BASELINES = ("popularity", "ease")
PROTOCOLS = {"ratio": {"split": "ratio", "threshold": 0.0}, "u1": {"split": "u1", "threshold": 4.0}}
KS = (10, 20)
ROW_KEYS = ("test_recall@10", "test_ndcg@10", "test_hitrate@10", "test_precision@10", "test_mrr@10",
            "test_recall@20", "test_ndcg@20")


def evaluate(score, datamodule: MovieLensDataModule, part: str, threshold: float) -> dict[str, float]:
    """Ranking metrics of ``score(users) -> (B, I)`` on ``part`` (``val`` or ``test``) of ``datamodule``."""
    metric = RankingMetrics(KS)
    users = torch.unique(getattr(datamodule.data, part).users)
    for chunk, exclude, relevant in datamodule.ranking_batches(users, part, threshold):
        metric.update(score(chunk), exclude, relevant)
    return {name: float(value) for name, value in metric.compute().items()}


def run_baseline(name: str, datamodule: MovieLensDataModule, threshold: float, l2_grid: list[float]) -> dict:
    train = datamodule.data.train
    matrix = interaction_matrix(train.users, train.items, datamodule.num_users, datamodule.num_items)
    extra = {}
    if name == "popularity":
        model = Popularity(datamodule.num_items).fit(matrix)
    else:
        scored = {l2: evaluate(EASE(datamodule.num_items, l2).fit(matrix), datamodule, "val", threshold)["ndcg@10"]
                  for l2 in l2_grid}
        best = max(scored, key=scored.get)  # validation only
        model = EASE(datamodule.num_items, best).fit(matrix)
        extra = {"l2": best, "val_ndcg@10": scored[best]}
    test = evaluate(model, datamodule, "test", threshold)
    return {**{f"test_{k}": v for k, v in test.items()}, "best_epoch": None, **extra}


def run_config(config: Path, protocol: dict, seed: int, root: str, cache: Path, workdir: Path,
               extra: tuple[str, ...] = ()) -> dict:
    """Fit ``config`` (its own checkpoint selection on validation), then test the selected checkpoint once."""
    data = ["--data.root", root, "--data.cache_dir", str(cache), "--data.split", protocol["split"],
            "--data.seed", str(seed), *(["--data.ratio_remainder", protocol["remainder"]] if "remainder" in protocol else [])]
    options = ["--config", str(config), *data, "--seed_everything", str(seed),
               "--model.relevance_threshold", str(protocol["threshold"]), *QUIET, *extra]
    with _chdir(workdir):
        fit = cli_main(["fit", *options])
        best = fit.trainer.checkpoint_callback.best_model_path
        tested = cli_main(["test", *options, "--ckpt_path", best, "--verbose", "false"])
    metrics = tested.trainer.callback_metrics
    return {**{key: float(metrics[key]) for key in ROW_KEYS}, "best_epoch": int(load_checkpoint(best)["epoch"])}


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {std:.4f}"


def table(rows: list[dict]) -> str:
    columns = ("test_ndcg@10", "test_recall@10", "test_hitrate@10", "test_precision@10", "test_mrr@10", "test_ndcg@20")
    lines = ["| config | protocol | runs | " + " | ".join(c.removeprefix("test_") for c in columns) + " | wall s |",
             "|---|---|---|" + "---|" * len(columns) + "---|"]
    for config in dict.fromkeys(r["config"] for r in rows):
        for protocol in dict.fromkeys(r["protocol"] for r in rows if r["config"] == config):
            group = [r for r in rows if r["config"] == config and r["protocol"] == protocol]
            cells = " | ".join(_mean_std([r[c] for r in group]) for c in columns)
            lines.append(f"| {config} | {protocol} | {len(group)} | {cells} | "
                         f"{statistics.mean(r['wall_s'] for r in group):.1f} |")
    return "\n".join(lines)


def runs(args: argparse.Namespace, protocol: dict, label: str, workdir: Path) -> list[dict]:
    """Every config × seed, fitted (baselines: solved) and tested in ``workdir``: one row each, also printed."""
    cache = workdir / "cache"
    l2_grid = [float(v) for v in args.ease_l2.split(",")]
    rows = []
    for config in [c.strip() for c in args.configs.split(",") if c.strip()]:
        for seed in range(args.seeds):
            start = time.perf_counter()
            if config in BASELINES:
                datamodule = MovieLensDataModule(root=args.data_root, split=protocol["split"], seed=seed,
                                                 cache_dir=str(cache), ratio_remainder=protocol.get("remainder", "train"))
                row = run_baseline(config, datamodule, protocol["threshold"], l2_grid)
            else:
                run_dir = workdir / f"{Path(config).stem}-{args.protocol}-{seed}"
                run_dir.mkdir(parents=True, exist_ok=True)
                row = run_config(Path(config).resolve(), protocol, seed, str(Path(args.data_root).resolve()),
                                 cache, run_dir)
            rows.append({"config": config, "protocol": label, "seed": seed, **row,
                         "wall_s": round(time.perf_counter() - start, 2)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", required=True, help="comma-separated: config files and/or popularity, ease")
    parser.add_argument("--protocol", choices=tuple(PROTOCOLS), default="ratio")
    parser.add_argument("--ratio-remainder", choices=RATIO_REMAINDERS, default="train",
                        help="ratio protocol: the part that keeps the rounding remainder (train: RecBole's rule)")
    parser.add_argument("--seeds", type=int, default=3, help="runs per config (seeds 0 .. N-1)")
    parser.add_argument("--data-root", default="data", help="folder holding ml-100k/ or ml-100k.zip")
    parser.add_argument("--out", type=Path, help="write the rows here as a JSON list")
    parser.add_argument("--ease-l2", default="50,100,200,300,500,800,1200", help="EASE l2 grid (chosen on validation)")
    parser.add_argument("--workdir", type=Path, help="checkpoints and cache (default: a temporary folder)")
    args = parser.parse_args()
    quiet_logs()
    protocol, label = PROTOCOLS[args.protocol], args.protocol
    if args.ratio_remainder != "train":
        if protocol["split"] != "ratio":
            parser.error(f"--ratio-remainder applies to --protocol ratio, not {args.protocol}")
        protocol, label = {**protocol, "remainder": args.ratio_remainder}, f"{args.protocol}, remainder to test"
    with workdir_or_temporary(args.workdir, "mlgnn-ranking-") as workdir:
        rows = runs(args, protocol, label, workdir)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))
    print(f"\n`{command_line()}`  \nMachine: {machine()}\n")
    print(table(rows))


if __name__ == "__main__":
    main()
