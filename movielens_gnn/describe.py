"""``python -m movielens_gnn describe``: what is in the data, and plots of it.

Prints sample rows, missing values, counts, density, the rating distribution, per-user and
per-item counts and means, and the graph of the chosen split; ``--format json`` prints the counts
as one JSON object instead. ``--plots DIR`` saves PNGs: the
rating histogram, user and item degree distributions (log axes) and, given ``--logs`` of a run,
its train/validation RMSE curves.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import yaml

from movielens_gnn.data.datamodule import MovieLensDataModule, split_identity
from movielens_gnn.data.datasets import DATASETS, Columns, Ratings, dataset_class
from movielens_gnn.recommend import ArgumentParser, boolean


def ratings_frame(datamodule: MovieLensDataModule) -> pd.DataFrame:
    """All ratings of the dataset as a frame: user_id, item_id, rating, timestamp."""
    _, ratings = datamodule.dataset.load()
    return pd.DataFrame({"user_id": ratings.user_id, "item_id": ratings.item_id,
                         "rating": ratings.rating, "timestamp": ratings.timestamp})


def summary(datamodule: MovieLensDataModule, frame: pd.DataFrame) -> dict:
    """The counts of ``frame`` (:func:`ratings_frame`) as plain values: what ``--format json`` prints."""
    side = datamodule.side
    n_users, n_items, n_ratings = int(frame["user_id"].nunique()), int(frame["item_id"].nunique()), len(frame)
    distribution = frame["rating"].value_counts().sort_index()
    per_user = frame.groupby("user_id").size()
    has_time = bool(frame["timestamp"].any())
    return {
        "dataset": datamodule.dataset.NAME,
        "path": str(datamodule.dataset.location),
        "ratings": n_ratings,
        "users": n_users,
        "items": n_items,
        "items_listed": len(side.items),
        "rating_values": [float(v) for v in datamodule.dataset.rating_values(_as_ratings(frame))],
        "rating_counts": {f"{value:g}": int(count) for value, count in distribution.items()},
        "rating_mean": round(float(frame["rating"].mean()), 4),
        "density": n_ratings / (n_users * n_items),
        "ratings_per_user": {"min": int(per_user.min()), "median": float(per_user.median())},
        "first_timestamp": int(frame["timestamp"].min()) if has_time else None,
        "last_timestamp": int(frame["timestamp"].max()) if has_time else None,
        "user_columns": list(side.users.columns),
        "genres": list(side.genres),
        "split": split_facts(datamodule),
    }


def split_facts(datamodule: MovieLensDataModule) -> dict:
    """The split's settings (those that decide it) and the sizes of its parts and graph."""
    data, graph = datamodule.data, datamodule.graph
    return {**split_identity(dict(datamodule.hparams)), "train": len(data.train.ratings), "val": len(data.val.ratings),
            "test": len(data.test.ratings), "graph_nodes": graph.num_nodes, "graph_edges": graph.num_edges}


def _as_ratings(frame: pd.DataFrame) -> Ratings:
    return Ratings(frame["user_id"].to_numpy(), frame["item_id"].to_numpy(), frame["rating"].to_numpy(),
                   frame["timestamp"].to_numpy())


def report(datamodule: MovieLensDataModule, frame: pd.DataFrame) -> str:
    """The text report for the data under ``datamodule``'s root and its split; ``frame`` is :func:`ratings_frame`."""
    side = datamodule.side
    users, items = side.users, side.items
    facts = summary(datamodule, frame)
    n_ratings = facts["ratings"]
    lines = [f"# {datamodule.dataset.TITLE} at {datamodule.dataset.location}", ""]
    # No timestamp column read (your file without --data.columns.timestamp): not a column of zeros.
    sample = frame if facts["first_timestamp"] is not None else frame.drop(columns="timestamp")
    lines += ["## Sample rows", "", "ratings:", sample.head(5).to_string(index=False), ""]
    if len(items):
        lines += ["items:", items[["title", "year", "genres"]].head(3).to_string(), ""]
    if len(users.columns):
        lines += ["users:", users.head(3).to_string(), ""]
    missing = {"ratings (empty fields)": int(frame.isna().sum().sum())}
    for column in ("title", "genres", "release_date", "url"):
        if column in items:
            missing[f"items {column} empty"] = int((items[column] == "").sum())
    if "zip_code" in users:
        missing["users zip_code empty"] = int((users["zip_code"] == "").sum())
    lines += ["## Missing values", ""] + [f"{name}: {count}" for name, count in missing.items()] + [""]
    lines += ["## Counts", "", f"users: {facts['users']}", f"items: {facts['items']} rated"
              + (f" ({facts['items_listed']} listed)" if facts["items_listed"] else ""),
              f"ratings: {n_ratings}", f"density: {facts['density']:.4%}", ""]
    scale = ", ".join(f"{v:g}" for v in facts["rating_values"])
    lines += ["## Ratings", "", f"scale: {scale}",
              f"mean {frame['rating'].mean():.3f}, std {frame['rating'].std():.3f}"]
    lines += [f"{value}: {count:6d} ({count / n_ratings:.1%})" for value, count in facts["rating_counts"].items()] + [""]
    per_user = frame.groupby("user_id")["rating"].agg(["count", "mean"]).sort_values("count", ascending=False)
    per_item = frame.groupby("item_id")["rating"].agg(["count", "mean"]).sort_values("count", ascending=False)
    if "title" in items:
        per_item.insert(0, "title", items["title"].reindex(per_item.index).fillna(""))
    lines += ["## Per user (most ratings first)", "", per_user.head(5).round(3).to_string(), "",
              f"ratings per user: min {per_user['count'].min()}, median {per_user['count'].median():.0f}, "
              f"max {per_user['count'].max()}", ""]
    lines += ["## Per item (most ratings first)", "", per_item.head(5).round(3).to_string(), "",
              f"ratings per item: min {per_item['count'].min()}, median {per_item['count'].median():.0f}, "
              f"max {per_item['count'].max()}", ""]
    data, graph = datamodule.data, datamodule.graph
    settings = {k: v for k, v in split_identity(dict(datamodule.hparams)).items() if k not in ("dataset", "split")}
    lines += [f"## Split {datamodule.split}", "", "settings: " + ", ".join(f"{k} {v}" for k, v in settings.items()),
              f"train {len(data.train.ratings)}, validation {len(data.val.ratings)}, test {len(data.test.ratings)} ratings",
              f"graph: {graph.num_nodes} nodes ({graph.num_users} users + {graph.num_items} items), "
              f"{graph.num_edges} directed edges (training ratings, both ways)",
              f"features: {data.user_features.shape[1]} per user, {data.item_features.shape[1]} per item", ""]
    return "\n".join(lines)


def plots(frame: pd.DataFrame, out_dir: Path, metrics: pd.DataFrame | None = None) -> list[Path]:
    """Save the PNGs of the ratings ``frame`` (and of a run's ``metrics``, :func:`training_curves`) into
    ``out_dir``; return their paths."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    fig, ax = plt.subplots(figsize=(5, 3.5))
    counts = frame["rating"].value_counts().sort_index()
    ax.bar(counts.index, counts.values, width=0.8 * float(np.diff(counts.index).min(initial=1.0)), color="#4c72b0")
    ax.set(xlabel="rating", ylabel="ratings", title="Rating distribution")
    ax.set_xticks(counts.index)
    written.append(_save(fig, out_dir / "rating_histogram.png"))

    for column, name in (("user_id", "user"), ("item_id", "item")):
        degrees = frame[column].value_counts().to_numpy()
        values, freq = np.unique(degrees, return_counts=True)
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.loglog(values, freq, "o", markersize=3, color="#dd8452")
        for axis in (ax.xaxis, ax.yaxis):  # plain numbers (1, 10, 100), not 10^k; no crowded minor labels
            axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set(xlabel=f"ratings per {name} (degree)", ylabel=f"{name}s", title=f"{name.capitalize()} degree distribution")
        written.append(_save(fig, out_dir / f"{name}_degree.png"))

    if metrics is not None:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ndcg = _ndcg_column(metrics)
        ranking = ndcg is not None and "val_rmse" not in metrics
        curves = ((ndcg, "validation"),) if ranking else (("train_rmse", "train"), ("val_rmse", "validation"))
        for column, label in curves:
            if column in metrics:
                curve = metrics.dropna(subset=[column]).groupby("epoch")[column].last()
                ax.plot(curve.index, curve.values, label=label)
                if label == "validation" and len(curve):  # where the checkpoint is selected
                    best = curve.idxmax() if ranking else curve.idxmin()
                    ax.plot([best], [curve[best]], "o", color="#c44e52", label=f"best (epoch={best})")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # whole epochs only
        metric = ndcg[len("val_"):].replace("ndcg", "NDCG") if ranking else "RMSE"
        ax.set(xlabel="epoch", ylabel=metric, title=f"{metric} during training")
        ax.legend()
        written.append(_save(fig, out_dir / ("ndcg_curves.png" if ranking else "rmse_curves.png")))
    return written


def _ndcg_column(metrics: pd.DataFrame) -> str | None:
    """The ranking task's validation NDCG column: ``val_ndcg@10`` if logged, else the first ``val_ndcg@K``."""
    found = [column for column in metrics.columns if column.startswith("val_ndcg@")]
    return "val_ndcg@10" if "val_ndcg@10" in found else (found[0] if found else None)


def _has_curves(metrics: pd.DataFrame) -> bool:
    columns = ["train_rmse", "val_rmse", *[c for c in metrics.columns if c.startswith("val_ndcg@")]]
    return "epoch" in metrics and any(c in metrics and metrics[c].notna().any() for c in columns)


def training_curves(logs: Path) -> pd.DataFrame:
    """The metrics of a fit under ``logs`` (a ``metrics.csv``, or the first one below the folder that has
    curves), refused (``ValueError``) when there is none: the log of a ``test`` or ``validate`` run, say,
    which claims a version folder of its own."""
    paths = [logs] if logs.is_file() else sorted(logs.glob("**/metrics.csv"))
    if not paths:
        raise FileNotFoundError(f"No metrics.csv under {logs}; pass a run's log folder or its metrics.csv.")
    for path in paths:
        metrics = pd.read_csv(path)
        if _has_curves(metrics):
            return metrics
    raise ValueError(f"{paths[0]} holds no training curves (train_rmse, val_rmse or val_ndcg@K by epoch): it is not the "
                     "log of a fit (a test or validate run logs to a version folder of its own). Pass the log folder "
                     "of a fit.")


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


# Settings a fit config's data section may hold that describe has no option for; the split's counts follow them.
SPLIT_OPTIONS = (("test_fraction", float, "random split: share of ratings held out for test"),
                 ("val_fraction", float, "share of the training part held out for validation"),
                 ("val_strategy", str, "random or users: how validation ratings are held out"),
                 ("val_user_fraction", float, "users validation: share of users who hold ratings out"),
                 ("ratios", yaml.safe_load, "ratio split: train, validation, test shares of each user, e.g. [0.8,0.1,0.1]"),
                 ("ratio_remainder", str, "ratio split: the part a user's rounding remainder goes to (train or test)"),
                 ("seed", int, "seed of the random splits"),
                 ("implicit_threshold", float, "keep only ratings at or above this, as interactions (ranking configs)"))


def main(argv: Sequence[str]) -> str:
    """Parse ``argv`` (without the word ``describe``), print the report and return it."""
    parser = ArgumentParser(prog="python -m movielens_gnn describe", description=__doc__)
    parser.add_argument("-c", "--config", action="append", type=Path, default=[],
                        help="a fit config (or configs/data/*.yaml) whose data section to describe, as fit would "
                             "split it; repeatable, later ones win, options given here win over them")
    parser.add_argument("--data.root", dest="root", help="folder holding the dataset or its archive (default data)")
    parser.add_argument("--data.dataset", dest="dataset", help=f"one of {', '.join(DATASETS)} (default ml-100k)")
    parser.add_argument("--data.split", dest="split",
                        help="split whose graph is described (default u1 for ml-100k, else random)")
    for name, kind, text in SPLIT_OPTIONS:
        parser.add_argument(f"--data.{name}", dest=name, type=kind, help=text)
    parser.add_argument("--data.cache_dir", dest="cache_dir", help="processed-cache folder")
    parser.add_argument("--data.verify", dest="verify", type=boolean, help="check the archive's md5 (default true)")
    parser.add_argument("--data.path", dest="path", help="csv: your ratings file")
    parser.add_argument("--data.separator", dest="separator", help="csv: field separator (default ,)")
    parser.add_argument("--data.header", dest="header", type=boolean, help="csv: first line names columns (default true)")
    parser.add_argument("--data.items_path", dest="items_path", help="csv: items file (item column, title, genres)")
    for name, default in (("user", "user_id"), ("item", "item_id"), ("rating", "rating"), ("timestamp", None)):
        parser.add_argument(f"--data.columns.{name}", dest=f"column_{name}",
                            help=f"csv: the {name} column (name, or 0-based position without a header; default {default})")
    parser.add_argument("--format", default="text", choices=("text", "json"),
                        help="text: the report (and plots); json: the counts as one JSON object")
    parser.add_argument("--plots", type=Path, help="save PNG plots into this folder")
    parser.add_argument("--logs", type=Path, help="a run's log folder or metrics.csv, for RMSE curves")
    args = parser.parse_args(list(argv))
    metrics = None
    if args.logs is not None:  # checked before any data work
        if args.plots is None:
            raise ValueError(f"--logs {args.logs} is only used for plots; add --plots DIR to draw its RMSE curves.")
        metrics = training_curves(args.logs)  # a folder without them is refused before any plot is written
    datamodule = MovieLensDataModule(**data_settings(args))
    datamodule.require_every_part = False  # a handful of ratings can be described, if not trained on
    datamodule.prepare_data()  # like fit: extract the archive, or download it
    frame = ratings_frame(datamodule)
    if args.format == "json":
        text = json.dumps(summary(datamodule, frame), indent=1, ensure_ascii=False) + "\n"
    else:
        text = report(datamodule, frame)
        if args.plots is not None:
            written = plots(frame, args.plots, metrics)
            text += "\n## Plots\n\n" + "\n".join(str(p) for p in written) + "\n"
    print(text, end="")
    return text


def data_settings(args) -> dict:
    """The data module's arguments: the ``data`` sections of ``--config`` files in order, then the options
    given on the command line; the split defaults to u1 where the dataset has canonical splits."""
    settings: dict = {}
    allowed = {k: v for k, v in inspect.signature(MovieLensDataModule.__init__).parameters.items() if k != "self"}
    for path in args.config:
        section = config_data_section(path)
        unknown = sorted(set(section) - set(allowed))
        if unknown:
            raise ValueError(f"--config {path}: data has settings the data module does not take: {', '.join(unknown)}. "
                             f"Fix or remove them (valid: {', '.join(sorted(allowed))}).")
        columns = {**_as_mapping(settings.get("columns")), **_as_mapping(section.get("columns"))}
        settings.update(section)
        if columns:
            settings["columns"] = columns
    for name in ("root", "dataset", "split", "cache_dir", "verify", "path", "separator", "header", "items_path",
                 *(option for option, _, _ in SPLIT_OPTIONS)):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    header = settings.get("header", True)
    columns = {**dataclasses.asdict(Columns()), **_as_mapping(settings.get("columns"))}
    unknown = sorted(set(columns) - {"user", "item", "rating", "timestamp"})
    if unknown:
        raise ValueError(f"data.columns names user, item, rating and timestamp; got also {', '.join(unknown)}. "
                         "Fix the config's columns.")
    for name in ("user", "item", "rating", "timestamp"):
        if getattr(args, f"column_{name}") is not None:
            columns[name] = _position(getattr(args, f"column_{name}"), header)
    settings["columns"] = Columns(**columns)
    dataset = settings.get("dataset", allowed["dataset"].default)  # the data module's own defaults otherwise
    settings.setdefault("split", "u1" if dataset_class(dataset).CANONICAL_SPLITS else "random")
    return settings


def config_data_section(path: Path) -> dict:
    """The ``data`` mapping of the YAML config at ``path`` (its ``init_args`` when written with a class path)."""
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise FileNotFoundError(f"--config {path}: cannot read it ({err.strerror or err}).") from err
    except yaml.YAMLError as err:
        raise ValueError(f"--config {path} is not valid YAML ({err}).") from err
    data = loaded.get("data") if isinstance(loaded, dict) else None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected `data:` to be a mapping of data settings, got {data!r}.")
    if data.get("columns") is not None and not isinstance(data["columns"], dict):
        raise ValueError(f"--config {path}: expected `columns:` to map user, item, rating, timestamp to columns, got "
                         f"{data['columns']!r}.")
    return {**{k: v for k, v in data.items() if k not in ("class_path", "init_args")}, **_as_mapping(data.get("init_args"))}


def _as_mapping(value) -> dict:
    if isinstance(value, Columns):
        return dataclasses.asdict(value)
    return dict(value) if isinstance(value, dict) else {}


def _position(value: str | None, header: bool) -> str | int | None:
    """A column given on the command line: a name, (without a header) a 0-based position, or ``null`` for none
    (the rating or timestamp column, as fit takes them)."""
    if value is not None and value.lower() in ("null", "none"):
        return None
    return int(value) if value is not None and not header and value.isdigit() else value
