"""``python -m movielens_gnn describe``: what is in the data, and plots of it.

Prints sample rows, missing values, counts, density, the rating distribution, per-user and
per-item counts and means, and the graph of the chosen split. ``--plots DIR`` saves PNGs: the
rating histogram, user and item degree distributions (log axes) and, given ``--logs`` of a run,
its train/validation RMSE curves.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from movielens_gnn.data.datamodule import MovieLensDataModule
from movielens_gnn.recommend import ArgumentParser


def ratings_frame(datamodule: MovieLensDataModule) -> pd.DataFrame:
    """All of ``u.data`` as a frame: user_id, item_id, rating, timestamp."""
    _, ratings = datamodule.dataset.load()
    return pd.DataFrame({"user_id": ratings.user_id, "item_id": ratings.item_id,
                         "rating": ratings.rating.astype(int), "timestamp": ratings.timestamp})


def report(datamodule: MovieLensDataModule, frame: pd.DataFrame) -> str:
    """The text report for the data under ``datamodule``'s root and its split; ``frame`` is :func:`ratings_frame`."""
    meta = datamodule.meta
    users, items = meta.users, meta.items
    n_users, n_items, n_ratings = meta.num_users, meta.num_items, len(frame)
    lines = [f"# MovieLens-100K at {datamodule.dataset.raw_dir}", ""]
    lines += ["## Sample rows", "", "u.data:", frame.head(5).to_string(index=False), "",
              "u.item:", items[["title", "release_date"] + list(meta.genres[:4])].head(3).to_string(), "",
              "u.user:", users.head(3).to_string(), ""]
    missing = {
        "u.data": int(frame.isna().sum().sum()),
        "u.item release_date empty": int((items["release_date"] == "").sum()),
        "u.item url empty": int((items["url"] == "").sum()),
        "u.user zip_code empty": int((users["zip_code"] == "").sum()),
    }
    lines += ["## Missing values", ""] + [f"{name}: {count}" for name, count in missing.items()] + [""]
    lines += ["## Counts", "", f"users: {n_users}", f"items: {n_items}", f"ratings: {n_ratings}",
              f"density: {n_ratings / (n_users * n_items):.4%}", ""]
    distribution = frame["rating"].value_counts().sort_index()
    lines += ["## Ratings", "", f"mean {frame['rating'].mean():.3f}, std {frame['rating'].std():.3f}"]
    lines += [f"{value}: {count:6d} ({count / n_ratings:.1%})" for value, count in distribution.items()] + [""]
    per_user = frame.groupby("user_id")["rating"].agg(["count", "mean"]).sort_values("count", ascending=False)
    per_item = frame.groupby("item_id")["rating"].agg(["count", "mean"]).sort_values("count", ascending=False)
    per_item.insert(0, "title", items.loc[per_item.index, "title"])
    lines += ["## Per user (most ratings first)", "", per_user.head(5).round(3).to_string(), "",
              f"ratings per user: min {per_user['count'].min()}, median {per_user['count'].median():.0f}, "
              f"max {per_user['count'].max()}", ""]
    lines += ["## Per item (most ratings first)", "", per_item.head(5).round(3).to_string(), "",
              f"ratings per item: min {per_item['count'].min()}, median {per_item['count'].median():.0f}, "
              f"max {per_item['count'].max()}", ""]
    data, graph = datamodule.data, datamodule.graph
    lines += [f"## Split {datamodule.split}", "",
              f"train {len(data.train.ratings)}, validation {len(data.val.ratings)}, test {len(data.test.ratings)} ratings",
              f"graph: {graph.num_nodes} nodes ({graph.num_users} users + {graph.num_items} items), "
              f"{graph.num_edges} directed edges (training ratings, both ways)", ""]
    return "\n".join(lines)


def plots(frame: pd.DataFrame, out_dir: Path, logs: Path | None = None) -> list[Path]:
    """Save the PNGs of the ratings ``frame`` (and of a run's ``logs``) into ``out_dir``; return their paths."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    fig, ax = plt.subplots(figsize=(5, 3.5))
    counts = frame["rating"].value_counts().sort_index()
    ax.bar(counts.index, counts.values, color="#4c72b0")
    ax.set(xlabel="rating", ylabel="ratings", title="MovieLens-100K rating distribution")
    written.append(_save(fig, out_dir / "rating_histogram.png"))

    for column, name in (("user_id", "user"), ("item_id", "item")):
        degrees = frame[column].value_counts().to_numpy()
        values, freq = np.unique(degrees, return_counts=True)
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.loglog(values, freq, "o", markersize=3, color="#dd8452")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap on short ranges
        ax.set(xlabel=f"ratings per {name} (degree)", ylabel=f"{name}s", title=f"{name.capitalize()} degree distribution")
        written.append(_save(fig, out_dir / f"{name}_degree.png"))

    if logs is not None:
        path = logs if logs.is_file() else next(iter(sorted(logs.glob("**/metrics.csv"))), None)
        if path is None:
            raise FileNotFoundError(f"No metrics.csv under {logs}; pass a run's log folder or its metrics.csv.")
        metrics = pd.read_csv(path)
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for column, label in (("train_rmse", "train"), ("val_rmse", "validation")):
            if column in metrics:
                curve = metrics.dropna(subset=[column]).groupby("epoch")[column].last()
                ax.plot(curve.index, curve.values, label=label)
        ax.set(xlabel="epoch", ylabel="RMSE", title="RMSE during training")
        ax.legend()
        written.append(_save(fig, out_dir / "rmse_curves.png"))
    return written


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def main(argv: Sequence[str]) -> str:
    """Parse ``argv`` (without the word ``describe``), print the report and return it."""
    parser = ArgumentParser(prog="python -m movielens_gnn describe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data.root", dest="root", default="data", help="folder holding ml-100k/ or ml-100k.zip")
    parser.add_argument("--data.split", dest="split", default="u1", help="split whose graph is described")
    parser.add_argument("--data.cache_dir", dest="cache_dir", help="processed-cache folder")
    parser.add_argument("--plots", type=Path, help="save PNG plots into this folder")
    parser.add_argument("--logs", type=Path, help="a run's log folder or metrics.csv, for RMSE curves")
    args = parser.parse_args(list(argv))
    if args.logs is not None:  # checked before any data work
        if args.plots is None:
            raise ValueError(f"--logs {args.logs} is only used for plots; add --plots DIR to draw its RMSE curves.")
        if not args.logs.exists():
            raise FileNotFoundError(f"No metrics.csv under {args.logs}; pass a run's log folder or its metrics.csv.")
    datamodule = MovieLensDataModule(root=args.root, split=args.split, cache_dir=args.cache_dir)
    datamodule.prepare_data()  # like fit: extract the archive, or download it
    frame = ratings_frame(datamodule)
    text = report(datamodule, frame)
    if args.plots is not None:
        written = plots(frame, args.plots, args.logs)
        text += "\n## Plots\n\n" + "\n".join(str(p) for p in written) + "\n"
    print(text, end="")
    return text
