"""Data speed: processing and cached reload of every real format at MovieLens 1M/10M/25M/32M sizes.

    python benchmarks/data_speed.py                                  # all four sizes, then the 25M epoch
    python benchmarks/data_speed.py --sizes ml-1m,ml-10m --no-epoch --workdir /tmp/ds

Writes synthetic files in each release's own format (ml-1m: ``::`` whole stars with ``users.dat`` and
Latin-1 ``movies.dat``; ml-10m: ``::`` half stars in ``ml-10M100K/``; ml-25m, ml-32m: ``ratings.csv`` with
its header and half stars, ``movies.csv`` with quoted titles), with the real counts of users, items and
ratings, id gaps, sorted by user then movie as the releases are, power-law degrees. Then, each in a fresh
process: the first ``MovieLensDataModule(...).data`` (parse, check, split ``random`` 90/10, features,
cache write), and a cached reload (the cache read and every tensor touched). Peak RSS is the process's,
imports included. Last, one full-batch epoch of a gcn_dot-sized model (64 dims, one GraphConv layer, as
``speed.py --sections scaling``) on the 25M-format data's training edges, and the same on the synthetic
25M graph of ``speed.py`` in the same run, for a like-for-like comparison.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import speed
from common import command_line, machine, peak_memory, run_worker

from movielens_gnn.data.datasets import dataset_class

# (users, items, ratings) of the real releases: speed.py's sizes, and ml-32m.
SIZES = {**{f"ml-{size}": counts for size, counts in speed.SIZES.items()}, "ml-32m": (200_948, 87_585, 32_000_204)}
WORKER_TIMEOUT_S = 900  # one step of one size in its own process
GENRES = ("Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
          "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")


def synthetic_ratings(name: str, seed: int = 0) -> pd.DataFrame:
    """Distinct (user, movie) pairs with power-law degrees (``speed.power_law_edges``), gapped ids, sorted by
    user then movie."""
    num_users, num_items, num_ratings = SIZES[name]
    users, items = speed.power_law_edges(num_users, num_items, num_ratings, seed)
    keys = np.sort((users * num_items + items).numpy())
    rng = np.random.default_rng(seed)
    # Gapped ids: users skip about one id in ten, movies are spread over three times their count.
    user_ids = np.sort(rng.choice(int(num_users * 1.1), num_users, replace=False)) + 1
    item_ids = np.sort(rng.choice(num_items * 3, num_items, replace=False)) + 1
    half = name != "ml-1m"
    stars = rng.choice(np.arange(1, 11) / 2 if half else np.arange(1, 6), num_ratings)
    return pd.DataFrame({"user": user_ids[keys // num_items], "item": item_ids[keys % num_items], "rating": stars,
                         "timestamp": rng.integers(789_652_009, 1_697_164_147, num_ratings)})


def write_release(name: str, root: Path) -> Path:
    """Write ``root/<folder>/`` in the release's exact format; return the folder."""
    kind = dataset_class(name)
    folder = root / (kind.FOLDER or kind.NAME)
    folder.mkdir(parents=True, exist_ok=True)
    frame = synthetic_ratings(name)
    movie_ids = np.unique(frame["item"])
    genres = ["|".join(GENRES[j] for j in {k % 18, (7 * k) % 18}) for k in range(len(movie_ids))]
    titles = [f"Movie {m}, The ({1920 + m % 100})" if m % 7 == 0 else f"Movie {m} ({1920 + m % 100})" for m in movie_ids]
    if name in ("ml-1m", "ml-10m"):  # UserID::MovieID::Rating::Timestamp, no header
        colons = pd.DataFrame({"u": frame["user"], "a": "", "i": frame["item"], "b": "",
                               "r": frame["rating"], "c": "", "t": frame["timestamp"]})
        colons.to_csv(folder / "ratings.dat", sep=":", header=False, index=False)
        lines = "".join(f"{m}::{t}::{g}\n" for m, t, g in zip(movie_ids, titles, genres))
        (folder / "movies.dat").write_bytes(lines.encode("latin-1" if name == "ml-1m" else "utf-8"))
        if name == "ml-1m":
            users = np.unique(frame["user"])
            ages = (1, 18, 25, 35, 45, 50, 56)
            (folder / "users.dat").write_text("".join(f"{u}::{'MF'[u % 2]}::{ages[u % 7]}::{u % 21}::{10000 + u}\n"
                                                      for u in users))
    else:  # userId,movieId,rating,timestamp with a header; movies.csv with quoted titles
        frame.to_csv(folder / "ratings.csv", header=["userId", "movieId", "rating", "timestamp"], index=False)
        pd.DataFrame({"movieId": movie_ids, "title": titles, "genres": genres}).to_csv(folder / "movies.csv", index=False)
    return folder


def worker(name: str, root: str, cache: str, mode: str) -> dict:
    """In a fresh process: time ``.data`` (``process`` or ``reload``) or one training epoch (``epoch``)."""
    from movielens_gnn.data.datamodule import MovieLensDataModule

    start = time.perf_counter()
    dm = MovieLensDataModule(root=root, dataset=name, split="random", test_fraction=0.1, cache_dir=cache)
    data = dm.data
    for tensor in data.to_dict().values():  # read every byte of the (memory-mapped) cache
        tensor.sum()
    seconds = time.perf_counter() - start
    out = {"dataset": name, "mode": mode, "seconds": seconds,
           "ratings": sum(len(p.ratings) for p in (data.train, data.val, data.test))}
    if mode == "epoch":
        out.update(_epoch(dm))
    out["peak_rss_gib"] = peak_memory(torch.device("cpu"))["peak_rss_gib"]
    return out


def _epoch(dm) -> dict:
    """``speed.py``'s scaling model on the data module's training edges (the same builder and timing)."""
    train = dm.data.train
    timing = speed.gcn_dot_epoch(tuple(train), dm.num_users, dm.num_items, torch.device("cpu"), repeats=3,
                                 rating_mean=dm.rating_mean)
    return {**timing, "train_edges": len(train.ratings)}


def _worker(*args: str) -> dict:
    """:func:`worker` in a fresh process (its peak RSS is that step's alone)."""
    return run_worker(Path(__file__), ["--worker", *args], WORKER_TIMEOUT_S, required=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--workdir", type=Path, help="where the synthetic files go (default: a temporary folder)")
    parser.add_argument("--no-epoch", action="store_true", help="skip the 25M training epoch")
    parser.add_argument("--worker", nargs=4, metavar=("NAME", "ROOT", "CACHE", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return
    with tempfile.TemporaryDirectory() as scratch:
        root = args.workdir or Path(scratch)
        rows = ["| format | ratings | users | items | write s | first processing s | peak RSS GiB | cached reload s | "
                "peak RSS GiB |", "|---|---|---|---|---|---|---|---|---|"]
        for name in args.sizes.split(","):
            users, items, ratings = SIZES[name]
            start = time.perf_counter()
            write_release(name, root)
            written = time.perf_counter() - start
            cache = root / f"cache-{name}"
            first = _worker(name, str(root), str(cache), "process")
            again = _worker(name, str(root), str(cache), "reload")
            rows.append(f"| {name} | {ratings:,} | {users:,} | {items:,} | {written:.0f} | {first['seconds']:.1f} | "
                        f"{first['peak_rss_gib']:.1f} | {again['seconds']:.1f} | {again['peak_rss_gib']:.1f} |")
            print(rows[-1], flush=True)
        lines = [f"Command: `{command_line()}`", f"Machine: {machine()}", "", *rows]
        if not args.no_epoch and "ml-25m" in args.sizes.split(","):
            real = _worker("ml-25m", str(root), str(root / "cache-ml-25m"), "epoch")
            # The same model, route (the default, as in _epoch) and repeats on speed.py's synthetic 25M graph.
            synthetic = run_worker(Path(speed.__file__), ["--scaling-worker", "25m", "--device", "cpu", "--repeats", "3",
                                                          "--pair-route", "auto"], WORKER_TIMEOUT_S, required=True)
            lines += ["", "| graph | training edges | s / epoch | graph build s |", "|---|---|---|---|",
                      f"| ml-25m format, random 90/10 split (train part) | {real['train_edges']:,} | {real['epoch_s']:.2f} | "
                      f"{real['graph_build_s']:.1f} |",
                      f"| synthetic 25M graph of speed.py (all ratings) | {synthetic['ratings']:,} | "
                      f"{synthetic['epoch_s']:.2f} | {synthetic['graph_build_s']:.1f} |",
                      "", f"Per million edges: {real['epoch_s'] / real['train_edges'] * 1e6:.3f} s (ml-25m format) vs "
                      f"{synthetic['epoch_s'] / synthetic['ratings'] * 1e6:.3f} s (synthetic)."]
        print("\n".join(lines))


if __name__ == "__main__":
    main()
