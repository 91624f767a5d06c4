"""``python -m movielens_gnn recommend``: top-K unseen movies per user, with titles.

The checkpoint carries the data module's settings (root, split, seeds) and a fingerprint of the
data, so the same training ratings are rebuilt and excluded; ``--data.root`` points elsewhere if
the data moved, and data other than the checkpoint's own is refused.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch

from movielens_gnn.checkpoint import (
    RUN_ONLY_DATA_ARGUMENTS, CheckpointError, check_fingerprint, load_checkpoint, trained_data_settings,
)
from movielens_gnn.data.datamodule import MovieLensDataModule
from movielens_gnn.models.graph import BipartiteGraph
from movielens_gnn.tasks import GraphTask, task_class

log = logging.getLogger(__name__)

FORMATS = ("table", "csv", "json")
COLUMNS = ("user_id", "rank", "movie_id", "title", "year", "genres", "predicted_rating", "source")
# A ranking model's scores order the movies but are not stars: its lists show them as "score".
RANKING_COLUMNS = tuple("score" if c == "predicted_rating" else c for c in COLUMNS)
MODEL, POPULAR = "model", "popular (user has no training ratings)"


def load_model(state: dict, graph: BipartiteGraph, engine: str = "native") -> GraphTask:
    """The task a loaded checkpoint ``state`` holds (rating or ranking), ``graph`` attached, in eval mode.

    Raises:
        CheckpointError: The checkpoint names a task this version does not have.
        ValueError: The checkpoint does not match the graph (other user or item counts).
    """
    task = task_class(state["hyper_parameters"].get("_class_path"))
    hparams = {k: v for k, v in state["hyper_parameters"].items() if not k.startswith("_")}
    try:
        model = task(**{**hparams, "engine": engine})
    except TypeError as err:  # hyperparameters of another version of this project
        raise CheckpointError(f"The checkpoint's hyperparameters do not fit this version's model ({err}).") from err
    model.load_state_dict(state["state_dict"])
    model.attach_graph(graph)
    model.eval()
    return model


def load_for_inference(ckpt_path: str | Path, root: str | None = None, engine: str = "native",
                       cache_dir: str | None = None, allow_mismatch: bool = False,
                       ) -> tuple[GraphTask, MovieLensDataModule]:
    """Rebuild the model and its data module from a checkpoint, graph attached, in eval mode.

    The checkpoint is read weights-only (nothing in it can run code).

    Args:
        ckpt_path: A checkpoint written by ``fit``.
        root: Replaces the data root stored in the checkpoint.
        engine: Message-passing engine to run with (weights work with either).
        cache_dir: Replaces the processed-cache folder stored in the checkpoint.
        allow_mismatch: Go on (with a warning) when the data under ``root`` is not the data the
            checkpoint was trained on.

    Raises:
        FileNotFoundError: No checkpoint at ``ckpt_path``.
        CheckpointError: Not a readable, safe checkpoint of this project, or (without
            ``allow_mismatch``) trained on other data.
        ValueError: The checkpoint does not match the data (other user or item counts).
    """
    state = load_checkpoint(ckpt_path)
    settings = {k: v for k, v in trained_data_settings(state).items() if k not in RUN_ONLY_DATA_ARGUMENTS}
    if root is not None:
        settings["root"] = root
    if cache_dir is not None:
        settings["cache_dir"] = cache_dir
    try:
        datamodule = MovieLensDataModule(**settings)
    except TypeError as err:  # settings of another version of this project
        raise CheckpointError(f"{ckpt_path} holds data settings this version does not know ({err}).") from err
    check_fingerprint(state, datamodule, ckpt_path, allow_mismatch)
    return load_model(state, datamodule.graph, engine), datamodule


def recommend(model: GraphTask, datamodule: MovieLensDataModule, user_ids: Sequence[int], k: int) -> pd.DataFrame:
    """Top-``k`` movies each user has not rated in training (train and validation parts).

    Users with no training ratings get the ``k`` most-rated unseen movies, labelled in ``source``.
    A rated movie is never returned: when ``k`` exceeds the movies a user has not rated, the list
    holds all of those (fewer than ``k`` rows) and a warning says so.

    Returns:
        One row per recommendation, the dataset's ids, columns :data:`COLUMNS` (a rating model's stars,
        clamped to the rating scale) or :data:`RANKING_COLUMNS` (a ranking model's raw score).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    data, side = datamodule.data, datamodule.side
    known_ids = data.user_ids.tolist()
    unknown = [u for u in user_ids if u not in set(known_ids)]
    if unknown:
        raise ValueError(
            f"Unknown user id(s) {unknown}; this data has {len(known_ids)} users with ids {known_ids[0]}..{known_ids[-1]}."
        )
    users = torch.searchsorted(data.user_ids, torch.tensor(list(user_ids)))
    known = datamodule.known_items(users)
    with torch.no_grad():
        scores = model.score_all_items(users)
    popularity = torch.bincount(torch.cat([data.train.items, data.val.items]), minlength=datamodule.num_items).float()
    cold = ~known.any(1)
    ranking_scores = torch.where(cold[:, None], popularity.expand_as(scores), scores)
    unseen = (~known).sum(1)
    short = [(user_id, int(n)) for user_id, n in zip(user_ids, unseen.tolist()) if n < k]
    if short:
        log.warning("Asked for %d recommendations, but user(s) %s have only %s unrated movies; returning those.",
                    k, ", ".join(str(u) for u, _ in short), ", ".join(str(n) for _, n in short))
    top = ranking_scores.masked_fill(known, float("-inf")).topk(min(k, datamodule.num_items), dim=1).indices
    # Title, year and genres of every item (blank for an item the dataset's items file does not list).
    items = side.items.reindex(columns=["title", "year", "genres"]).reindex(data.item_ids.numpy()).fillna("")
    rows = []
    for row, user_id in enumerate(user_ids):
        for rank, item in enumerate(top[row, : int(unseen[row])].tolist(), start=1):
            info = items.iloc[item]
            rows.append({
                "user_id": int(user_id), "rank": rank, "movie_id": int(data.item_ids[item]), "title": info["title"],
                "year": info["year"], "genres": info["genres"],
                **({"predicted_rating": round(float(scores[row, item].clamp(*model.rating_range)), 3)}
                   if model.predicts_ratings else {"score": round(float(scores[row, item]), 4)}),
                "source": POPULAR if bool(cold[row]) else MODEL,
            })
    return pd.DataFrame(rows, columns=list(COLUMNS if model.predicts_ratings else RANKING_COLUMNS))


def render(frame: pd.DataFrame, fmt: str) -> str:
    """The recommendations as an aligned ``table``, ``csv`` or ``json`` (a list of objects)."""
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "json":
        return json.dumps(frame.to_dict(orient="records"), indent=1, ensure_ascii=False)
    if fmt != "table":
        raise ValueError(f"Unknown format {fmt!r}; valid values: {', '.join(FORMATS)}.")
    blocks = []
    for user_id, group in frame.groupby("user_id", sort=False):
        source = group["source"].iloc[0]
        header = f"Top {len(group)} for user {user_id}" + ("" if source == MODEL else f" ({source})")
        body = group.drop(columns=["user_id", "source"]).to_string(index=False)
        blocks.append(f"{header}\n{body}")
    return "\n\n".join(blocks) + "\n"


def parse_users(text: str) -> list[int]:
    try:
        users = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as err:
        raise ValueError(f"--user takes MovieLens user ids separated by commas, e.g. 1,2,3; got {text!r}.") from err
    if not users:
        raise ValueError("--user needs at least one MovieLens user id.")
    return users


def main(argv: Sequence[str]) -> str:
    """Parse ``argv`` (without the word ``recommend``), print the recommendations and return them."""
    parser = ArgumentParser(prog="python -m movielens_gnn recommend", description=__doc__)
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by fit")
    parser.add_argument("--user", required=True, help="MovieLens user id(s), comma-separated: 42 or 1,2,3")
    parser.add_argument("--k", type=int, default=10, help="recommendations per user (default 10)")
    parser.add_argument("--format", default="table", choices=FORMATS)
    parser.add_argument("--data.root", dest="root", help="data folder, if not the one the checkpoint was trained on")
    parser.add_argument("--data.cache_dir", dest="cache_dir", help="processed-cache folder")
    parser.add_argument("--data.allow_mismatch", dest="allow_mismatch", action="store_true",
                        help="recommend even if the data is not the data the checkpoint was trained on")
    parser.add_argument("--engine", default="native", choices=("native", "dgl"))
    args = parser.parse_args(list(argv))
    users = parse_users(args.user)
    if args.k < 1:
        raise ValueError(f"--k must be at least 1, got {args.k}.")
    model, datamodule = load_for_inference(args.ckpt_path, args.root, args.engine, args.cache_dir, args.allow_mismatch)
    text = render(recommend(model, datamodule, users, args.k), args.format)
    print(text, end="")
    return text



class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises ``ValueError`` (one ``error:`` line from the CLI, exit 2) instead of
    printing the usage; ``--help`` still prints and exits 0."""

    def error(self, message: str):
        raise ValueError(f"{message}. See `{self.prog} --help` for the accepted options.")
