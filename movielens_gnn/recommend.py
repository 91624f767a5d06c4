"""``python -m movielens_gnn recommend``: top-K unseen movies per user, with titles.

The checkpoint carries the data module's settings (root, split, seeds) and a fingerprint of the
data, so the same training ratings are rebuilt and excluded; ``--data.root`` points elsewhere if
the data moved, and data other than the checkpoint's own is refused.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from movielens_gnn.checkpoint import (
    RUN_ONLY_DATA_ARGUMENTS, CheckpointError, check_fingerprint, load_checkpoint, trained_data_settings,
)
from movielens_gnn.data.datamodule import MovieLensDataModule
from movielens_gnn.files import atomic_write, check_output_file, created_dirs
from movielens_gnn.metrics import top_k_indices
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
                       cache_dir: str | None = None, allow_mismatch: bool = False, path: str | None = None,
                       items_path: str | None = None) -> tuple[GraphTask, MovieLensDataModule]:
    """Rebuild the model and its data module from a checkpoint, graph attached, in eval mode.

    The checkpoint is read weights-only (nothing in it can run code).

    Args:
        ckpt_path: A checkpoint written by ``fit``.
        root: Replaces the data root stored in the checkpoint.
        engine: Message-passing engine to run with (weights work with either).
        cache_dir: Replaces the processed-cache folder stored in the checkpoint.
        allow_mismatch: Go on (with a warning) when the data under ``root`` is not the data the
            checkpoint was trained on.
        path: Replaces the ratings file of a checkpoint trained on your own file (``--data.dataset csv``).
        items_path: Replaces its items file.

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
    for name, value in (("cache_dir", cache_dir), ("path", path), ("items_path", items_path)):
        if value is not None:
            settings[name] = value
    try:
        datamodule = MovieLensDataModule(**settings)
    except TypeError as err:  # settings of another version of this project
        raise CheckpointError(f"{ckpt_path} holds data settings this version does not know ({err}).") from err
    try:
        check_fingerprint(state, datamodule, ckpt_path, allow_mismatch)
    except FileNotFoundError as err:
        given = path if settings.get("dataset") == "csv" else root
        if given is not None:
            raise
        option = "--data.path (and --data.items_path)" if settings.get("dataset") == "csv" else "--data.root"
        raise FileNotFoundError(f"{str(err).rstrip('.')}. That is where the checkpoint {ckpt_path} was trained; if the "
                                f"data has moved, pass {option} where it is now.") from err
    return load_model(state, datamodule.graph, engine), datamodule


USER_CHUNK = 1024  # users scored at once: bounds the (users, items) score and mask matrices
NEW_USER = "new"


def recommend(model: GraphTask, datamodule: MovieLensDataModule, user_ids: Sequence[int], k: int,
              device: str | torch.device = "cpu") -> pd.DataFrame:
    """Top-``k`` movies each user has not rated in training (train and validation parts).

    Users with no training ratings get the ``k`` most-rated unseen movies, labelled in ``source``.
    A rated movie is never returned: when ``k`` exceeds the movies a user has not rated, the list
    holds all of those (fewer than ``k`` rows) and a warning says so. Users are scored in chunks of
    :data:`USER_CHUNK` on ``device`` (the model is moved there), so ``all`` users of a large dataset fit.

    Returns:
        One row per recommendation, the dataset's ids, columns :data:`COLUMNS` (a rating model's stars,
        clamped to the rating scale) or :data:`RANKING_COLUMNS` (a ranking model's raw score).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    data = datamodule.data
    known_ids = data.user_ids
    user_ids = list(dict.fromkeys(user_ids))  # one list per user, in the order asked (--user 42,7,42)
    users, unknown = _indices(known_ids, user_ids)
    if unknown:
        raise ValueError(f"Unknown user id(s) {unknown[:10]}{_more(unknown)}; this data has {len(known_ids)} users with ids "
                         f"{int(known_ids[0])}..{int(known_ids[-1])}. For a user not in the data, pass --ratings.")
    model = model.to(device)
    popularity = torch.bincount(torch.cat([data.train.items, data.val.items]), minlength=datamodule.num_items).float()
    frames, short = [], []
    with torch.no_grad():
        tables = model.encode()
        for chunk in users.split(USER_CHUNK):
            known = datamodule.known_items(chunk)
            scores = model.score_all_items(chunk, tables).cpu()
            cold = ~known.any(1)
            ranking = torch.where(cold[:, None], popularity.expand_as(scores), scores)
            frame, chunk_short = _top_k(model, datamodule, data.user_ids[chunk].tolist(), scores, ranking, known, k,
                                        [POPULAR if c else MODEL for c in cold.tolist()])
            frames.append(frame)
            short += chunk_short
    if short:
        shown = ", ".join(f"{u} ({n})" for u, n in short[:10]) + _more(short)
        log.warning("Asked for %d recommendations, but user(s) %s have only that many unrated movies; returning "
                    "those.", k, shown)
    return pd.concat(frames, ignore_index=True)


MAX_AGE = 120
AGE_WINDOW = 5  # ml-100k ages are years: peers are within this many years
ML1M_AGE_GROUPS = (1, 18, 25, 35, 45, 50, 56)  # ml-1m ages are the start of the group


def demographic_peers(datamodule: MovieLensDataModule, age: int | None = None, gender: str | None = None,
                      occupation: str | None = None) -> tuple[Tensor, str]:
    """Internal indices of the training users who share the given demographics, and what was matched.

    Ages match within :data:`AGE_WINDOW` years (ml-100k) or by age group (ml-1m); gender and occupation
    exactly (ml-1m occupations are codes 0..20). When nobody matches everything, occupation is dropped
    first, then age, then gender, and the description says so.

    Raises:
        ValueError: The dataset has no user features, or a value it cannot have.
    """
    users = datamodule.side.users
    if not {"age", "gender", "occupation"} <= set(users.columns):
        raise ValueError(f"--age/--gender/--occupation need user demographics, which {datamodule.dataset.NAME} does "
                         "not have (ml-100k and ml-1m do); leave them out.")
    frame = users.reindex(datamodule.data.user_ids.numpy())
    conditions: list[tuple[str, pd.Series]] = []
    if gender is not None:
        if gender not in ("M", "F"):
            raise ValueError(f"--gender must be M or F (as in the data), got {gender!r}.")
        conditions.append((f"gender {gender}", frame["gender"] == gender))
    if age is not None:
        if datamodule.dataset.NAME == "ml-1m":
            group = max(g for g in ML1M_AGE_GROUPS if g <= max(age, 1))
            conditions.append((f"age group {group}", frame["age"] == group))
        else:
            conditions.append((f"age {age - AGE_WINDOW}-{age + AGE_WINDOW}", (frame["age"] - age).abs() <= AGE_WINDOW))
    if occupation is not None:
        known = sorted(set(frame["occupation"].astype(str)), key=lambda v: (len(v), v) if v.isdigit() else (0, v))
        if str(occupation) not in known:
            codes = " (ml-1m codes occupations 0..20, as its README lists them: 20 is writer)" if all(
                v.isdigit() for v in known) else ""
            raise ValueError(f"--occupation {occupation!r} is not one of the data's: {', '.join(known)}{codes}.")
        conditions.append((f"occupation {occupation}", frame["occupation"].astype(str) == str(occupation)))
    # Relax the most specific condition first (occupation, then age, then gender) until someone matches.
    order = sorted(conditions, key=lambda c: ("gender", "age", "occupation").index(c[0].split()[0]))
    while order:
        mask = np.logical_and.reduce([c[1].to_numpy() for c in order])
        if mask.any():
            found = torch.from_numpy(np.flatnonzero(mask))
            return found, f"{len(found)} users with " + ", ".join(c[0] for c in order)
        order = order[:-1]
    return torch.arange(len(frame)), "all users (nobody shares the given demographics)"


def recommend_new_user(model: GraphTask, datamodule: MovieLensDataModule, rated: dict[int, float], k: int,
                       peers: Tensor | None = None) -> pd.DataFrame:
    """Top-``k`` movies for a user who is not in the data, from ``{movie id: rating}`` (may be empty when
    ``peers`` are given): the model folds the user in (a new user vector fitted against the frozen item
    side, started from the mean of ``peers``: :meth:`score_new_user`) and ranks the movies they did not rate.

    Raises:
        ValueError: A movie id the data does not have, or a rating off the data's scale.
    """
    data = datamodule.data
    items, unknown = _indices(data.item_ids, rated)
    if unknown:
        raise ValueError(f"--ratings names movie id(s) {unknown[:10]}{_more(unknown)} that this data does not have; use the "
                         f"dataset's movie ids (e.g. from `recommend --user ...` or the movies file).")
    low, high = datamodule.rating_values[0], datamodule.rating_values[-1]
    bare = [movie for movie, value in rated.items() if value is None]
    if bare and model.predicts_ratings:
        raise ValueError(f"--ratings {bare[0]} has no rating: a rating checkpoint fits the user to stars, so give "
                         f"movie:rating pairs, e.g. {bare[0]}:{high:g}.")
    rated = {movie: (high if value is None else value) for movie, value in rated.items()}  # chosen: as liked as any
    values = torch.tensor(list(rated.values()), dtype=torch.float32)
    if bool(((values < low) | (values > high)).any()):
        raise ValueError(f"--ratings must be on the data's scale {low:g}..{high:g}; got {sorted(rated.values())}.")
    # Below the data's implicit threshold (training's positives were the ratings at or above it), else below
    # the middle of the scale: ratings a ranking model cannot tell from liked ones.
    cut = datamodule.implicit_threshold if datamodule.implicit_threshold is not None else (low + high) / 2
    disliked = [f"{movie}:{value:g}" for movie, value in rated.items() if value < cut]
    if not model.predicts_ratings and disliked:
        log.warning("A ranking checkpoint takes every movie in --ratings as one the user chose, whatever its stars: "
                    "%s pull similar movies up as much as the others. Leave out the movies the user disliked, or "
                    "use a rating checkpoint.", ", ".join(disliked))
    scores = model.score_new_user(items, values, peers=peers).cpu()[None]
    known = torch.zeros_like(scores, dtype=torch.bool)
    known[0, items] = True
    frame, short = _top_k(model, datamodule, [NEW_USER], scores, scores, known, k, [MODEL])
    if short:
        log.warning("Asked for %d recommendations, but the new user rated all but %d movies; returning those.",
                    k, short[0][1])
    return frame


def _more(values: Sequence, shown: int = 10) -> str:
    """`` and N more`` after the first ``shown`` of ``values`` listed in a message; empty when all are."""
    return f" and {len(values) - shown} more" if len(values) > shown else ""


def _indices(known_ids: Tensor, requested: Sequence[int]) -> tuple[Tensor, list[int]]:
    """Internal indices of the dataset ids ``requested`` among the sorted ``known_ids``, and the requested
    ids that are not there."""
    ids = torch.tensor(list(requested), dtype=torch.int64)
    index = torch.searchsorted(known_ids, ids).clamp(max=len(known_ids) - 1)
    return index, ids[known_ids[index] != ids].tolist()


def _top_k(model: GraphTask, datamodule: MovieLensDataModule, user_ids: list, scores: Tensor, ranking: Tensor,
           known: Tensor, k: int, sources: list[str]) -> tuple[pd.DataFrame, list[tuple]]:
    """The rows of the top-``k`` unknown items of each user, and ``(user, unrated count)`` of users with fewer."""
    data, side = datamodule.data, datamodule.side
    unseen = (~known).sum(1)
    diverged = (ranking.isnan() & ~known).any(1)
    if bool(diverged.any()):
        users = [user_ids[r] for r in diverged.nonzero().flatten()[:10].tolist()]
        who = "the new user (from --ratings)" if users == [NEW_USER] else f"user(s) {users}"
        raise ValueError(f"The model scores movies as NaN for {who}: its weights hold NaN, as when training "
                         "diverged. Use an earlier checkpoint (the best one rather than last.ckpt), or train again "
                         "with a lower lr.")
    # Equal scores (the popularity fallback's counts) in the order the ranking metrics use: lower index first.
    top = top_k_indices(ranking.masked_fill(known, float("-inf")), k)
    counts = unseen.clamp(max=top.shape[1])
    keep = torch.arange(top.shape[1])[None, :] < counts[:, None]
    rows, ranks = keep.nonzero(as_tuple=True)
    items = top[rows, ranks]
    info = side.item_info(data.item_ids[items].numpy())
    value = scores[rows, items].double()  # rounded in float64: JSON shows 4.978, not float32's 4.978000164031982
    frame = pd.DataFrame({
        "user_id": [user_ids[r] for r in rows.tolist()],
        "rank": (ranks + 1).numpy(),
        "movie_id": data.item_ids[items].numpy(),
        "title": info["title"].to_numpy(), "year": info["year"].to_numpy(), "genres": info["genres"].to_numpy(),
        ("predicted_rating" if model.predicts_ratings else "score"):
            (value.clamp(*model.rating_range).numpy().round(3) if model.predicts_ratings else value.numpy().round(4)),
        "source": [sources[r] for r in rows.tolist()],
    })
    short = [(user_ids[r], int(n)) for r, n in enumerate(unseen.tolist()) if n < k]
    return frame[list(COLUMNS if model.predicts_ratings else RANKING_COLUMNS)], short


def _import_pyarrow():
    """pandas writes Parquet through pyarrow, an optional dependency (the ``parquet`` extra)."""
    import pyarrow

    return pyarrow


def write_output(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` as CSV, JSON or Parquet (by extension), atomically."""
    suffix = check_output_format(path)
    if suffix == ".parquet":
        try:
            _import_pyarrow()
        except ImportError as err:
            raise ImportError(f"--output {path}: Parquet needs pyarrow (pip install pyarrow), or write .csv.") from err
    check_output_file(path, "--output")
    with created_dirs(path.parent), atomic_write(path) as handle:
        if suffix == ".parquet":
            frame.to_parquet(handle, index=False)
        else:
            handle.write(render(frame, suffix[1:]).encode())


OUTPUT_FORMATS = (".csv", ".json", ".parquet")


def check_output_format(path: Path, fmt: str = "table") -> str:
    """``path``'s extension, one of :data:`OUTPUT_FORMATS`, agreeing with ``--format`` when one was given."""
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise ValueError(f"--output {path}: the extension says the format; use .csv, .json or .parquet.")
    if fmt != "table" and suffix != f".{fmt}":
        raise ValueError(f"--format {fmt} with --output {path}: the file's extension says its format. Name the file "
                         f"{path.with_suffix('.' + fmt).name}, or leave --format out.")
    return suffix


def render(frame: pd.DataFrame, fmt: str) -> str:
    """The recommendations as an aligned ``table``, ``csv`` or ``json`` (a list of objects)."""
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "json":
        records = frame.to_dict(orient="records")
        for record in records:  # a number, or null for a title without one (the CSV's empty field)
            if "year" in record:
                record["year"] = int(record["year"]) if str(record["year"]).isdigit() else None
        return json.dumps(records, indent=1, ensure_ascii=False) + "\n"
    if fmt != "table":
        raise ValueError(f"Unknown format {fmt!r}; valid values: {', '.join(FORMATS)}.")
    blocks = []
    for user_id, group in frame.groupby("user_id", sort=False):
        source = group["source"].iloc[0]
        header = f"Top {len(group)} for user {user_id}" + ("" if source == MODEL else f" ({source})")
        body = group.drop(columns=["user_id", "source"]).to_string(index=False)
        blocks.append(f"{header}\n{body}")
    return "\n\n".join(blocks) + "\n"


USERS_USAGE = "--user takes user ids separated by commas (1,2,3), `all`, or @FILE of ids"
ID_LIMIT = 2**63  # ids are int64 tensors


def parse_users(text: str) -> list[int]:
    """``42``, ``1,2,3`` or ``@FILE`` (ids separated by commas, spaces or lines); ``all`` is the caller's."""
    where = ""
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            text = path.read_text(encoding="utf-8-sig")  # past a byte-order mark
        except OSError as err:
            raise FileNotFoundError(f"--user @{path}: cannot read the file of user ids "
                                    f"({err.strerror or err}).") from err
        except UnicodeDecodeError as err:
            raise ValueError(f"--user @{path} is not a text file of user ids ({err.reason} at byte {err.start}); "
                             "give a file with one id per line (or ids separated by commas or spaces).") from err
        where = f"@{path} "
    users = []
    for number, line in enumerate(text.splitlines(), start=1):
        for part in line.replace(" ", ",").replace("\t", ",").split(","):
            if not part.strip():
                continue
            try:
                user = int(part)
            except ValueError:
                user = None
            if user is None or not -ID_LIMIT < user < ID_LIMIT:
                at = f" on line {number} of {where.strip()}" if where else ""
                raise ValueError(f"{USERS_USAGE}; got {part.strip()!r}{at}.")
            users.append(user)
    if not users:
        raise ValueError("--user needs at least one user id (or `all`)" + (f"; {where.strip()} has none." if where else "."))
    return users


def parse_ratings(text: str) -> dict[int, float | None]:
    """``"50:5,172:4.5"`` to ``{50: 5.0, 172: 4.5}``; a bare movie id (``"50,172"``, interactions for a ranking
    checkpoint) has ``None``."""
    rated: dict[int, float | None] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        movie, sep, value = part.partition(":")
        try:
            movie_id, rating = int(movie), (float(value) if sep else None)
            valid = -ID_LIMIT < movie_id < ID_LIMIT
        except ValueError:
            valid = False
        if not valid:
            raise ValueError(f"--ratings takes movie:rating pairs separated by commas, e.g. 50:5,172:4 (or movie ids, "
                             f"50,172, for a ranking checkpoint); got {part!r}.")
        if rating is not None and not math.isfinite(rating):
            raise ValueError(f"--ratings: a rating must be a number on the data's scale, got {part!r}.")
        if movie_id in rated:
            raise ValueError(f"--ratings names movie {movie_id} twice.")
        rated[movie_id] = rating
    if not rated:
        raise ValueError("--ratings needs at least one movie:rating pair, e.g. 50:5.")
    return rated


def parse_device(text: str) -> torch.device:
    """``--device``: ``cpu``, ``cuda`` or ``cuda:N`` (``mps`` where torch has it), present on this machine."""
    usage = f"--device takes cpu, cuda or cuda:N, got {text!r}"
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"{usage}.") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {text}: no CUDA device here; use --device cpu.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {text}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                         f"cuda:0..cuda:{torch.cuda.device_count() - 1}.")
    mps = getattr(torch.backends, "mps", None)
    if device.type == "mps" and not (mps is not None and mps.is_available()):
        raise ValueError(f"--device {text}: torch has no MPS device here; use --device cpu.")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{usage}.")
    return device


def main(argv: Sequence[str]) -> str:
    """Parse ``argv`` (without the word ``recommend``), print the recommendations (or write them to
    ``--output``) and return what was printed."""
    parser = ArgumentParser(prog="python -m movielens_gnn recommend", description=__doc__)
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by fit")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="user id(s) of the data: 42, 1,2,3, all, or @FILE with ids")
    who.add_argument("--ratings", help="a new user's ratings as movie:rating pairs, e.g. 50:5,172:4,181:5 (a ranking checkpoint: movie ids alone, 50,172)")
    who.add_argument("--new-user", action="store_true", help="a new user known only by --age/--gender/--occupation")
    parser.add_argument("--age", type=int, help="new user: age in years (ml-100k, ml-1m)")
    parser.add_argument("--gender", help="new user: M or F (ml-100k, ml-1m)")
    parser.add_argument("--occupation", help="new user: as in the data (ml-100k: writer, ...; ml-1m: code 0..20)")
    parser.add_argument("--k", type=int, default=10, help="recommendations per user (default 10)")
    parser.add_argument("--format", default="table", choices=FORMATS, help="what is printed (without --output)")
    parser.add_argument("--output", type=Path, help="write the recommendations to FILE (.csv, .json or .parquet) instead")
    parser.add_argument("--device", default="cpu", help="where users are scored: cpu, cuda, cuda:1 ...")
    add_data_location(parser)
    add_allow_mismatch(parser, "recommend")
    parser.add_argument("--engine", default="native", choices=("native", "dgl"))
    args = parser.parse_args(list(argv))
    if args.k < 1:
        raise ValueError(f"--k must be at least 1, got {args.k}.")
    rated = parse_ratings(args.ratings) if args.ratings is not None else ({} if args.new_user else None)
    demographics = {"age": args.age, "gender": args.gender, "occupation": args.occupation}
    given = [f"--{name}" for name, value in demographics.items() if value is not None]
    if given and rated is None:
        raise ValueError(f"{', '.join(given)} describe a new user: use them with --ratings or --new-user, not --user.")
    if args.age is not None and not 1 <= args.age <= MAX_AGE:
        raise ValueError(f"--age is the new user's age in years, 1..{MAX_AGE}; got {args.age}.")
    if args.new_user and not given:
        raise ValueError("--new-user needs at least one of --age, --gender, --occupation (or use --ratings).")
    every_user = args.user is not None and args.user.strip() == "all"
    # A malformed list is reported before the checkpoint is read.
    user_ids = parse_users(args.user) if args.user is not None and not every_user else None
    if args.output is not None:
        check_output_file(args.output, "--output")
        check_output_format(args.output, args.format)
    device = parse_device(args.device)
    model, datamodule = load_for_inference(args.ckpt_path, args.root, args.engine, args.cache_dir, args.allow_mismatch,
                                           args.path, args.items_path)
    if rated is not None:
        peers = None
        if given:
            peers, matched = demographic_peers(datamodule, **demographics)
            log.info("New user: starting from the mean of %s", matched)
        frame = recommend_new_user(model.to(device), datamodule, rated, args.k, peers)
    else:
        frame = recommend(model, datamodule, datamodule.data.user_ids.tolist() if every_user else user_ids, args.k, device)
    if args.output is not None:
        write_output(frame, args.output)
        text = f"Wrote {len(frame)} recommendations for {frame['user_id'].nunique()} user(s) to {args.output}\n"
    else:
        text = render(frame, args.format)
    print(text, end="")
    return text


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises ``ValueError`` (one ``error:`` line from the CLI, exit 2) instead of
    printing the usage; ``--help`` still prints and exits 0, with the module docstring's lines (its
    examples) as written."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise ValueError(f"{message}. See `{self.prog} --help` for the accepted options.")


def add_data_location(parser: argparse.ArgumentParser) -> None:
    """Where the checkpoint's data is now, when it has moved: ``--data.root`` (a MovieLens dataset),
    ``--data.path`` and ``--data.items_path`` (your own file), ``--data.cache_dir``."""
    parser.add_argument("--data.root", dest="root", help="data folder, if not the one the checkpoint was trained on")
    parser.add_argument("--data.path", dest="path", help="your own ratings file, if not the one the checkpoint was "
                                                         "trained on (--data.dataset csv)")
    parser.add_argument("--data.items_path", dest="items_path", help="its items file, if it moved too")
    parser.add_argument("--data.cache_dir", dest="cache_dir", help="processed-cache folder")


def add_allow_mismatch(parser: argparse.ArgumentParser, command: str) -> None:
    """``--data.allow_mismatch``: a bare flag, or with a value as the Lightning commands take it (the data
    mismatch message says ``--data.allow_mismatch true`` whichever command read the checkpoint)."""
    parser.add_argument("--data.allow_mismatch", dest="allow_mismatch", type=boolean, nargs="?", const=True,
                        default=False, help=f"{command} even if the data is not the data the checkpoint was trained on")


def boolean(text: str) -> bool:
    """An option's ``true``/``false`` (also ``1``/``0``, ``yes``/``no``), as the Lightning commands take them."""
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")
