"""LightningDataModule: a dataset's splits as edge batches, and the training graph (orchestration only:
which dataset, split, cache, loaders; parsing and features live in :mod:`movielens_gnn.data.datasets`)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect
import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, NamedTuple, Optional, Sequence

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only
import torch
from torch import Tensor

from movielens_gnn.data.datasets import Columns, CSVRatings, Dataset, Ratings, SideInfo, dataset_class
from movielens_gnn.data.datasets.ml100k import MovieLens100K
from movielens_gnn.files import atomic_write, created_dirs, remove_stale
from movielens_gnn.data.splits import (
    SPLITS, check_fraction, check_ratio_remainder, check_ratios, check_split, random_split, ratio_split, temporal_split,
    user_holdout,
)
from movielens_gnn.models.graph import BipartiteGraph

log = logging.getLogger(__name__)

SplitName = Literal["u1", "u2", "u3", "u4", "u5", "ua", "ub", "random", "temporal", "ratio"]
CACHE_FORMAT = 3  # 2: the rating scale is cached too; 3: raw-file fingerprints in a list, not keyed by name
PARTS = ("train", "val", "test")


class EdgeBatch(NamedTuple):
    """A batch of rated (user, item) pairs, by internal index.

    Attributes:
        users: ``(B,)`` int64.
        items: ``(B,)`` int64.
        ratings: ``(B,)`` float32.
    """

    users: Tensor
    items: Tensor
    ratings: Tensor


def pair_order(edges: EdgeBatch, num_items: int) -> EdgeBatch:
    """``edges`` sorted by user, then item (unchanged, not copied, when they already are)."""
    key = edges.users.long() * num_items + edges.items.long()
    if key.numel() < 2 or bool((key[1:] >= key[:-1]).all()):
        return edges
    order = torch.argsort(key, stable=True)
    return EdgeBatch(*(t[order] for t in edges))


class EdgeLoader:
    """Iterates over one rank's share of the rated edges, in batches, with no per-sample collation.

    Under data parallelism every rank runs the whole graph and takes a disjoint shard of the
    supervision edges:

    * ``batch_size=None`` (full batch; how validation and test always run): rank ``r`` takes
      edges ``r, r + W, r + 2W, ...`` as one batch. Shards differ in size by at most one and
      together hold every edge exactly once, so synchronised metrics count each edge once.
      With one rank the edges are handed out as they are, without copying.
    * with a batch size: every epoch all ranks draw the same permutation (same generator seed)
      and rank ``r`` takes every ``W``-th edge of it, cut to ``floor(E / W)`` edges so that all
      ranks run the same number of steps; the at most ``W - 1`` edges left out change each epoch.

    Args:
        edges: All edges of one part.
        batch_size: Edges per batch; ``None`` for one batch of the whole shard.
        shuffle: Draw a fresh permutation each epoch (only with a batch size).
        seed: Seed of that permutation's generator; must be equal on all ranks.
        rank: This process's index ``r`` among the data-parallel ranks.
        world_size: The number of ranks ``W``.
        generator: The permutation's generator itself, instead of a fresh one from ``seed`` (the
            data module passes its own so that a resumed run continues its sequence).
    """

    def __init__(
        self,
        edges: EdgeBatch,
        batch_size: int | None = None,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        generator: torch.Generator | None = None,
    ) -> None:
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer or None, got {batch_size}.")
        assert 0 <= rank < world_size, (rank, world_size)
        self.edges = edges
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.generator = generator if generator is not None else torch.Generator().manual_seed(seed)
        # Full batch: this rank's shard is cut once and handed out as the same tensors every epoch, so that
        # what is built per edge set (the dot head's CSR pattern) is built once.
        self._shard = edges if world_size == 1 else EdgeBatch(*(t[rank::world_size] for t in edges))

    @property
    def num_edges(self) -> int:
        """Edges this rank sees in one epoch."""
        n = len(self.edges.ratings)
        if self.batch_size is None:
            return len(range(self.rank, n, self.world_size))
        return n // self.world_size

    def __len__(self) -> int:
        return 1 if self.batch_size is None else math.ceil(self.num_edges / self.batch_size)

    def __iter__(self) -> Iterator[EdgeBatch]:
        if self.batch_size is None:
            yield self._shard
            return
        n = len(self.edges.ratings)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order[self.rank :: self.world_size][: self.num_edges]
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield EdgeBatch(*(t[index] for t in self.edges))


@dataclass(frozen=True)
class ProcessedData:
    """Everything training needs, as tensors indexed by internal user/item index.

    Attributes:
        train: Edges of the message-passing graph and of the training loss.
        val: Validation edges (never in the graph).
        test: Test edges (never in the graph).
        user_ids: ``(U,)`` the dataset's id of each internal user index (sorted).
        item_ids: ``(I,)`` the dataset's id of each internal item index (sorted).
        user_features: ``(U, Fu)`` the dataset's user features (``Fu`` may be 0).
        item_features: ``(I, Fi)`` the dataset's item features (genre flags).
        rating_values: ``(R,)`` float32, the rating scale, ascending (1..5, or 0.5..5.0 in half stars).
    """

    train: EdgeBatch
    val: EdgeBatch
    test: EdgeBatch
    user_ids: Tensor
    item_ids: Tensor
    user_features: Tensor
    item_features: Tensor
    rating_values: Tensor

    def to_dict(self) -> dict[str, Tensor]:
        out = {"user_ids": self.user_ids, "item_ids": self.item_ids, "rating_values": self.rating_values,
               "user_features": self.user_features, "item_features": self.item_features}
        for part in PARTS:
            for name, tensor in getattr(self, part)._asdict().items():
                out[f"{part}_{name}"] = tensor
        return out

    @classmethod
    def from_dict(cls, tensors: dict[str, Tensor]) -> ProcessedData:
        parts = {part: EdgeBatch(*(tensors[f"{part}_{name}"] for name in EdgeBatch._fields)) for part in PARTS}
        names = ("user_ids", "item_ids", "user_features", "item_features", "rating_values")
        return cls(**parts, **{k: tensors[k] for k in names})


class IdIndex:
    """The sorted distinct ids of ``ids`` (:attr:`ids`), and a map from an id to its index among them.

    Ids of MovieLens are small integers (below a million, with gaps), so both come from a table as long
    as the largest id, in time linear in the ratings (np.unique would sort 32 million ids, twice);
    sparse ids (a file of your own) fall back to sorting.
    """

    def __init__(self, ids: np.ndarray) -> None:
        top = int(ids.max()) + 1 if len(ids) else 0
        self._table: np.ndarray | None = None
        if len(ids) and int(ids.min()) >= 0 and top <= max(4 * len(ids), 1 << 20):
            present = np.bincount(ids, minlength=top) > 0
            self.ids = np.flatnonzero(present).astype(np.int64)
            self._table = np.cumsum(present) - 1
        else:
            self.ids = np.unique(ids).astype(np.int64)

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        """``(E,)`` int64 index of each of ``ids`` (all of which must be among :attr:`ids`)."""
        if self._table is not None:
            return self._table[ids]
        return np.searchsorted(self.ids, ids)


def _absolute(path: str) -> str:
    """``path`` as an absolute path (``~`` expanded, symbolic links kept as named)."""
    return os.path.abspath(os.path.expanduser(str(path)))


def normalise(value: Any) -> Any:
    """Tuples and lists compare equal (YAML gives lists, defaults are tuples)."""
    if isinstance(value, (list, tuple)):
        return [normalise(v) for v in value]
    return value


def split_identity(settings: dict) -> dict:
    """The data settings that decide which ratings land in which part, from data-module arguments.

    Two runs with the same identity (on the same files) see exactly the same train, validation and
    test edges; this is what a checkpoint is checked against before it is evaluated, and part of
    the processed cache's key. Settings that do not apply are left out (``test_fraction`` of a
    canonical split, ``val_user_fraction`` of ``random`` validation), so they never cause a
    spurious mismatch.
    """
    split = settings.get("split", "u1")
    threshold = settings.get("implicit_threshold")
    identity = _split_settings(settings, split)
    if threshold is not None:  # absent when unset, so checkpoints from before the option still match
        identity["implicit_threshold"] = float(threshold)
    return identity


def _split_settings(settings: dict, split: str) -> dict:
    identity = {"dataset": settings.get("dataset", MovieLens100K.NAME), "split": split,
                "seed": settings.get("seed", 42), "val_fraction": settings.get("val_fraction", 0.05),
                "val_strategy": settings.get("val_strategy", "random")}
    if split == "ratio":  # validation and test both come from the ratios
        identity = {"dataset": identity["dataset"], "split": split, "seed": identity["seed"],
                    "ratios": [float(r) for r in settings.get("ratios", (0.8, 0.1, 0.1))]}
        if settings.get("ratio_remainder", "train") != "train":  # absent by default: older caches still match
            identity["ratio_remainder"] = settings["ratio_remainder"]
        return identity
    if split in ("random", "temporal"):
        identity["test_fraction"] = settings.get("test_fraction", 0.2)
    if split == "temporal":
        del identity["val_strategy"]  # temporal validation is always the latest ratings
    elif identity["val_strategy"] == "users":
        identity["val_user_fraction"] = settings.get("val_user_fraction", 0.5)
    return identity


def data_fingerprint(data: ProcessedData) -> str:
    """sha256 over the ids and every part's edges: equal exactly when two runs see the same data."""
    digest = hashlib.sha256()
    for name, tensor in sorted(data.to_dict().items()):
        if name.endswith("_features") or name == "rating_values":
            continue
        digest.update(name.encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


def _check_processed(data: ProcessedData) -> None:
    """Raise ``ValueError`` unless ``data`` is consistent (as a cache written by this code is)."""
    users, items = len(data.user_ids), len(data.item_ids)
    for part in PARTS:
        edges = getattr(data, part)
        if not all(isinstance(t, Tensor) for t in edges) or not len(edges.users) == len(edges.items) == len(edges.ratings):
            raise ValueError(f"{part} edges of unequal lengths")
        if len(edges.users) and (int(edges.users.max()) >= users or int(edges.items.max()) >= items
                                 or int(edges.users.min()) < 0 or int(edges.items.min()) < 0):
            raise ValueError(f"{part} edges index beyond the id lists")
    if data.user_features.shape[0] != users or data.item_features.shape[0] != items:
        raise ValueError("feature rows do not match the id lists")
    if data.rating_values.dim() != 1 or not len(data.rating_values):
        raise ValueError("no rating scale")


class MovieLensDataModule(pl.LightningDataModule):
    """A ratings dataset as train/validation/test edge sets plus the training graph.

    The graph holds the training edges only: validation edges are carved out of the training
    part first, and neither they nor test edges ever enter it. Processed tensors are cached in
    ``<root>/processed/`` together with the settings and raw-file fingerprints they came from;
    a cache built with other settings is rebuilt. A read-only ``root`` just skips the cache.

    Args:
        root: Folder holding the dataset's extracted folder or its archive (``ml-100k/`` or
            ``ml-100k.zip``, ``ml-10M100K/`` or ``ml-10m.zip`` ...); downloaded there when missing.
        dataset: Which dataset: ``ml-100k``, ``ml-1m``, ``ml-10m``, ``ml-20m``, ``ml-25m``, ``ml-32m``,
            ``ml-latest-small``, or ``csv`` (your own ratings file, see ``path``).
        split: ``u1``..``u5``, ``ua``, ``ub`` (ml-100k's own train/test files), ``random``
            (a seeded ``test_fraction`` of all ratings), ``temporal`` (the latest
            ``test_fraction`` by timestamp) or ``ratio`` (each user's ratings shuffled with
            ``seed`` and cut by ``ratios`` into train/validation/test, RecBole's default
            protocol; the validation settings below are then not used).
        val_fraction: Share of the training part held out for validation: seeded random, or
            for ``temporal`` the latest training ratings.
        val_strategy: ``random`` holds out ``val_fraction`` of the training ratings uniformly;
            ``users`` holds out a larger share of the ratings of a seeded ``val_user_fraction``
            of the users (about ``val_fraction`` in total), which resembles the canonical u1
            test part (39% of the ratings of half the users). Ignored by ``temporal``.
        val_user_fraction: Share of users that lose ratings under ``val_strategy: users``.
        test_fraction: Share of the ratings held out for testing by ``random`` and ``temporal``
            (0.1 gives the literature's 90/10 splits of ml-1m and ml-10m).
        ratios: ``[train, validation, test]`` shares of each user's ratings for ``split: ratio``.
        ratio_remainder: ``split: ratio`` only: the part that keeps what rounding down leaves over.
            ``train`` is RecBole's rule (validation and test get ``floor(share * n)``); ``test``
            gives training and validation ``floor(share * n)`` and test the rest (RecBole's early code,
            other splitters; about 1.2 more test ratings a user on ml-100k, and higher top-K scores).
        seed: Seed of the random splits, so a given seed always gives the same edges.
        implicit_threshold: Keep only ratings at or above this as interactions (positives), before
            splitting (of the canonical files: in each part); ``None`` (the default) keeps every
            rating, so any rating is a positive. For the ranking task; the rating task then sees
            only these ratings. Must lie on the dataset's rating scale range.
        batch_size: Training edges per step; ``None`` trains full-batch (one step an epoch).
        url: Where the archive is downloaded from; ``None`` means GroupLens's address for ``dataset``.
        verify: Check the archive's md5 and size (always on, except to accept a newer release of a
            development dataset such as ``ml-latest-small`` on purpose).
        path: ``dataset: csv`` only: your ratings file.
        columns: ``dataset: csv`` only: which columns hold user, item, rating and timestamp (header
            names, or 0-based positions with ``header: false``).
        separator: ``dataset: csv`` only: the field separator, one character.
        header: ``dataset: csv`` only: the file's first line names its columns.
        items_path: ``dataset: csv`` only: an optional items file (CSV with a header: the item
            column, ``title``, optionally ``genres``).
        cache: Read and write the processed cache.
        cache_dir: Folder of the processed cache; ``None`` means ``<root>/processed``.
        predict_part: The part ``predict`` runs on: ``test`` or ``val``.
        allow_mismatch: Evaluate a checkpoint on data settings (split, seed, validation) or data
            other than those it was trained on. Off by default: ``validate``/``test``/``predict``
            and ``recommend`` then refuse, since e.g. testing a u2 model on u1 tests it on its own
            training ratings.
    """

    def __init__(
        self,
        root: str = "data",
        dataset: str = MovieLens100K.NAME,
        split: SplitName = "u1",
        val_fraction: float = 0.05,
        val_strategy: Literal["random", "users"] = "random",
        val_user_fraction: float = 0.5,
        test_fraction: float = 0.2,
        ratios: Sequence[float] = (0.8, 0.1, 0.1),
        ratio_remainder: Literal["train", "test"] = "train",
        seed: int = 42,
        implicit_threshold: Optional[float] = None,
        batch_size: Optional[int] = None,
        url: Optional[str] = None,
        verify: bool = True,
        path: Optional[str] = None,
        columns: Columns = Columns(),
        separator: str = ",",
        header: bool = True,
        items_path: Optional[str] = None,
        cache: bool = True,
        cache_dir: Optional[str] = None,
        predict_part: Literal["test", "val"] = "test",
        allow_mismatch: bool = False,
    ) -> None:
        super().__init__()
        check_split(split)
        kind = dataset_class(dataset)
        if split not in ("random", "temporal", "ratio") and split not in kind.CANONICAL_SPLITS:
            valid = ", ".join([*kind.CANONICAL_SPLITS, "random", "temporal", "ratio"])
            usual = f" (configs/data/{dataset}.yaml sets its usual one)" if dataset != "csv" else ""
            raise ValueError(f"--data.split {split} is one of ml-100k's own split files; {dataset} has none. "
                             f"Valid splits for {dataset}: {valid}{usual}.")
        if not (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**64):
            raise ValueError(f"--data.seed must be an integer in 0..{2**64 - 1} (numpy's and torch's generators "
                             f"take those), got {seed!r}.")
        check_fraction("--data.val_fraction", val_fraction)
        if val_strategy not in ("random", "users"):
            raise ValueError(f"Unknown val_strategy {val_strategy!r}; valid values: random, users.")
        if val_strategy == "users" and not 0.0 < val_fraction < val_user_fraction < 1.0:
            raise ValueError(
                f"--data.val_strategy users needs 0 < --data.val_fraction < --data.val_user_fraction < 1, "
                f"got {val_fraction} and {val_user_fraction}."
            )
        check_fraction("--data.test_fraction", test_fraction)
        check_ratios(ratios)
        check_ratio_remainder(ratio_remainder)
        if implicit_threshold is not None and not (isinstance(implicit_threshold, (int, float))
                                                   and not isinstance(implicit_threshold, bool)
                                                   and math.isfinite(implicit_threshold)):
            raise ValueError(f"--data.implicit_threshold must be null (every rating is a positive) or a rating, "
                             f"got {implicit_threshold!r}.")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"--data.batch_size must be a positive integer or null (full batch), got {batch_size}.")
        if predict_part not in ("test", "val"):
            raise ValueError(f"Unknown predict_part {predict_part!r}; valid values: test, val.")
        if isinstance(columns, dict):  # as checkpoints store it (plain values only: they load weights-only)
            columns = Columns(**columns)
        self.save_hyperparameters(ignore=["columns"])
        # The paths absolute in what checkpoints store: recommend, test or export run from another folder
        # would read a relative root as another folder (and download into it). Messages of this run keep
        # the paths as typed.
        paths = {name: str(value) for name, value in (("root", root), ("path", path), ("items_path", items_path),
                                                       ("cache_dir", cache_dir)) if value is not None}
        self.hparams.update({name: _absolute(value) for name, value in paths.items()})
        # And as typed, where relative: a checkpoint taken to another machine or clone finds its data there
        # too, as before (checkpoint.trained_data_settings falls back to them when the absolute ones are gone).
        self.hparams["_typed_paths"] = {name: value for name, value in paths.items() if not os.path.isabs(value)}
        self.hparams["columns"] = dataclasses.asdict(columns)
        self.predict_part = predict_part
        if kind is CSVRatings:
            if path is None:
                raise ValueError("--data.dataset csv reads your own ratings file: pass --data.path FILE (and "
                                 "--data.columns, --data.separator, --data.header to describe it).")
            self.dataset: Dataset = CSVRatings(root, path, columns, separator, header, items_path)
        else:
            given = [f"--data.{name}" for name, value in (("path", path), ("items_path", items_path)) if value is not None]
            if given:
                raise ValueError(f"{' and '.join(given)} are for --data.dataset csv (your own file); {dataset} is "
                                 f"read from --data.root. Drop {given[0]} or pass --data.dataset csv.")
            self.dataset = kind(root, url, verify)
        self.split = split
        self.val_fraction = val_fraction
        self.val_strategy = val_strategy
        self.val_user_fraction = val_user_fraction
        self.test_fraction = test_fraction
        self.ratios = tuple(float(r) for r in ratios)
        self.ratio_remainder = ratio_remainder
        self.seed = seed
        self.implicit_threshold = implicit_threshold
        self.batch_size = batch_size
        self.cache = cache
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self.dataset.root / "processed"
        self.allow_mismatch = allow_mismatch
        # Shuffles the training edges with a batch size; kept (and checkpointed) across epochs so
        # that a resumed run draws the same permutations as an uninterrupted one.
        self.train_generator = torch.Generator().manual_seed(seed)
        self._data: ProcessedData | None = None
        self._fingerprint: str | None = None
        self._side: SideInfo | None = None
        self._graph: BipartiteGraph | None = None
        self._warn_unused_settings()

    #: The settings that shape a split, each used by some splits only (see :func:`split_identity`).
    SPLIT_SETTINGS = ("test_fraction", "val_fraction", "val_strategy", "val_user_fraction", "ratios", "ratio_remainder")

    def _warn_unused_settings(self) -> None:
        """Warn about split settings changed from their defaults that this split does not use (``test_fraction``
        of u1, ``val_fraction`` of ``ratio``): a run would otherwise go on as if they applied."""
        defaults = inspect.signature(MovieLensDataModule.__init__).parameters
        applies = split_identity(dict(self.hparams))
        unused = [name for name in self.SPLIT_SETTINGS if name not in applies
                  and name in self.hparams and normalise(self.hparams[name]) != normalise(defaults[name].default)]
        if unused and rank_zero_only.rank == 0:
            log.warning("%s %s no effect on --data.split %s%s: ignored.",
                        ", ".join(f"--data.{name}" for name in unused), "has" if len(unused) == 1 else "have", self.split,
                        " (with val_strategy random)" if unused == ["val_user_fraction"] else "")

    # ------------------------------------------------------------------ sizes for the model
    @property
    def num_users(self) -> int:
        return len(self.data.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.data.item_ids)

    @property
    def user_feature_dim(self) -> int:
        return self.data.user_features.shape[1]

    @property
    def item_feature_dim(self) -> int:
        return self.data.item_features.shape[1]

    @property
    def rating_mean(self) -> float:
        """Mean rating of the training edges (validation excluded)."""
        return float(self.data.train.ratings.mean())

    @property
    def rating_values(self) -> list[float]:
        """The rating scale, ascending: ``[1, 2, 3, 4, 5]``, or ``[0.5, 1.0, ..., 5.0]`` for half stars."""
        return [float(v) for v in self.data.rating_values]

    # ------------------------------------------------------------------------ processing
    def prepare_data(self) -> None:
        """Download and extract the dataset if needed (once per node under DDP)."""
        self.dataset.prepare()

    @property
    def side(self) -> SideInfo:
        """Users, items, titles and genres (parsed on first use)."""
        if self._side is None:
            self.dataset.prepare()
            self._side = self.dataset.read_side()
        return self._side

    @property
    def data(self) -> ProcessedData:
        """The processed splits, from the cache when it matches the settings, else rebuilt.

        Sizes such as :attr:`num_users` are read from here when the CLI links them to the
        model, before ``setup`` runs, so this prepares the files itself when needed.
        """
        if self._data is None:
            self.dataset.prepare()
            settings = self._settings()
            data = self._load_cache(settings) if self.cache else None
            fresh = data is None
            if fresh:
                data = self._process()
            self._check_parts(data)  # before anything is cached
            if fresh and self.cache:
                self._save_cache(settings, data)
            self._data = data
        return self._data

    #: Refuse a split that leaves a part empty: training needs all three. ``describe``, which only reads
    #: the data, turns it off for its own instance.
    require_every_part: bool = True

    def _check_parts(self, data: ProcessedData) -> None:
        parts = [getattr(data, part) for part in PARTS]
        empty = [name for name, part in zip(("training", "validation", "test"), parts) if not len(part.ratings)]
        if empty and self.require_every_part:
            sizes = " / ".join(str(len(part.ratings)) for part in parts)
            raise ValueError(
                f"--data.split {self.split} left the {' and '.join(empty)} part{'s' if len(empty) > 1 else ''} of "
                f"{self.dataset.ratings_source()[0]} empty ({sizes} training / validation / test ratings): a model "
                "cannot be trained and selected on that. Give it more ratings, or larger --data.val_fraction / "
                "--data.test_fraction (--data.ratios for the ratio split).")

    #: Processed caches kept per dataset (per file for ``csv``), the most recently used: runs that alternate
    #: settings (another validation strategy or seed) each find their own instead of rebuilding one in turn.
    CACHES_KEPT = 4

    @property
    def cache_path(self) -> Path:
        """``<cache_dir>/<dataset>-<split>-<key>.pt``, the key a hash of the settings that decide the data
        (:func:`split_identity`, and for ``csv`` the file and how it is read); the raw files' fingerprints
        are checked inside, so a changed file rebuilds its cache in place."""
        return self._cache_file(self._settings())

    def _cache_file(self, settings: dict) -> Path:
        """:attr:`cache_path` from :meth:`_settings` already gathered (they stat every raw file)."""
        key = {k: v for k, v in settings.items() if k != "files"}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
        return self.cache_dir / f"{self._cache_prefix}-{self.split}-{digest}.pt"

    @property
    def _cache_prefix(self) -> str:
        """The dataset's name, for ``csv`` with a hash of the file's path: each file keeps its own caches."""
        if isinstance(self.dataset, CSVRatings):
            return f"{self.dataset.NAME}-{hashlib.sha256(str(self.dataset.path.resolve()).encode()).hexdigest()[:10]}"
        return self.dataset.NAME

    def _settings(self) -> dict:
        # A list in raw_files' order, not a dict by name: your own ratings and items files may share a name.
        fingerprints = []
        for path in self.dataset.raw_files(self.split):
            stat = path.stat() if path.is_file() else None
            fingerprints.append([path.name, *([stat.st_size, stat.st_mtime_ns] if stat else [None])])
        settings = {"format": CACHE_FORMAT, **split_identity(dict(self.hparams)), "files": fingerprints}
        if isinstance(self.dataset, CSVRatings):  # how the file is read decides what the data is
            csv = self.dataset
            settings["csv"] = {"path": str(csv.path.resolve()), "columns": repr(csv.columns),
                               "separator": csv.separator, "header": csv.header,
                               "items_path": str(csv.items_path.resolve()) if csv.items_path else None}
        return settings

    def _prune_caches(self, keep: Path) -> None:
        """Remove this dataset's (this file's) caches beyond the :attr:`CACHES_KEPT` most recently used
        (``keep`` among them), and the one-per-split cache of earlier versions (``<dataset>-<split>.pt``;
        for ``csv`` ``csv-<hash of the file's path>-<split>.pt``)."""
        pattern = re.compile(re.escape(self._cache_prefix) + r"-.+-[0-9a-f]{10}\.pt")
        legacy = f"{self._cache_prefix}-{self.split}.pt"  # csv's was csv-<hash of its path>-<split>.pt too
        with contextlib.suppress(OSError):
            (self.cache_dir / legacy).unlink(missing_ok=True)
            caches = [p for p in self.cache_dir.iterdir() if pattern.fullmatch(p.name) and p != keep]
            caches.sort(key=lambda p: p.stat().st_mtime_ns, reverse=True)
            for path in caches[self.CACHES_KEPT - 1:]:
                path.unlink(missing_ok=True)

    @property
    def fingerprint(self) -> str:
        """:func:`data_fingerprint` of :attr:`data` (stored in checkpoints, checked when they are evaluated)."""
        if self._fingerprint is None:
            self._fingerprint = data_fingerprint(self.data)
        return self._fingerprint

    def state_dict(self) -> dict:
        """What checkpoints keep of the data: its fingerprint and the training shuffle's generator state."""
        return {"data_fingerprint": self.fingerprint, "train_generator": self.train_generator.get_state()}

    def load_state_dict(self, state_dict: dict) -> None:
        """Continue the training shuffle where the checkpoint left it (on resume)."""
        if "train_generator" in state_dict:
            self.train_generator.set_state(state_dict["train_generator"])

    def _load_cache(self, settings: dict) -> ProcessedData | None:
        """The cached data if the cache exists, is readable and matches ``settings``; else ``None``.

        A corrupt or foreign cache (random bytes, another torch object, missing tensors) is never
        fatal: it is reported, and rebuilt by the caller.
        """
        path = self._cache_file(settings)
        remove_stale(path.parent, path.name)
        if not path.is_file():
            return None
        try:
            # mmap: 32M edges reload in seconds. A str: torch < 2.3 takes mmap only with a file name, not a Path.
            saved = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
            if not isinstance(saved, dict) or not isinstance(saved.get("tensors"), dict):
                raise ValueError("not a processed-data cache")
            if saved.get("settings") != settings:
                changed = {k: v for k, v in saved.get("settings", {}).items() if k != "files"} == \
                    {k: v for k, v in settings.items() if k != "files"}
                log.info("Cache %s was built %s; rebuilding it", path,
                         "from other versions of the raw files (their size or time changed)" if changed else
                         "with other settings")
                return None
            data = ProcessedData.from_dict(saved["tensors"])
            _check_processed(data)
            with contextlib.suppress(OSError):  # used now: the last to be pruned (_prune_caches)
                os.utime(path)
            return data
        # The cache is derived data, rebuilt in about a second: whatever fails while reading it
        # (torch.load of damaged bytes raises UnpicklingError, RuntimeError, IndexError,
        # UnicodeDecodeError, ... - an open-ended set) means "rebuild", never "stop".
        except Exception as err:  # noqa: BLE001
            log.warning("Discarding the corrupt processed cache %s (%s: %s); rebuilding it", path,
                        type(err).__name__, err)
            return None

    def _save_cache(self, settings: dict, data: ProcessedData) -> None:
        path = self._cache_file(settings)
        try:
            with created_dirs(path.parent), atomic_write(path) as handle:
                torch.save({"settings": settings, "tensors": data.to_dict()}, handle)
            self._prune_caches(keep=path)
        except OSError as err:
            # A read-only data folder (a shared copy, say) is fine: processing takes about a second.
            log.warning("Not caching processed data at %s: %s", path, err)

    def _positives(self, ratings: Ratings) -> Ratings:
        """``ratings`` at or above ``implicit_threshold`` (all of them without one)."""
        if self.implicit_threshold is None:
            return ratings
        return ratings.take(ratings.rating >= self.implicit_threshold)

    def _split_ratings(self, ratings: Ratings, side: SideInfo) -> tuple[Ratings, Ratings, Ratings]:
        ratings = self._positives(ratings)
        if self.split == "ratio":
            return ratio_split(ratings, self.ratios, self.seed, self.ratio_remainder)
        if self.split == "random":
            train, test = random_split(ratings, self.test_fraction, self.seed)
        elif self.split == "temporal":
            if not ratings.timestamp.any():
                raise ValueError(f"--data.split temporal needs timestamps; {self.dataset.ratings_source()[0]} has none "
                                 "(for your own file, name the column with --data.columns.timestamp). "
                                 "Use --data.split random or ratio instead.")
            train, test = temporal_split(ratings, self.test_fraction)
        else:
            train, test = (self._positives(part) for part in self.dataset.read_split(self.split, side))
        if self.split == "temporal":
            train, val = temporal_split(train, self.val_fraction)
        elif self.val_strategy == "users":
            train, val = user_holdout(train, self.val_fraction, self.val_user_fraction, self.seed)
        else:
            train, val = random_split(train, self.val_fraction, self.seed)
        return train, val, test

    def _check_threshold(self, scale: tuple[float, ...]) -> None:
        threshold = self.implicit_threshold
        if threshold is not None and not scale[0] <= threshold <= scale[-1]:
            raise ValueError(f"--data.implicit_threshold {threshold} is outside the ratings of {self.dataset.NAME} "
                             f"({scale[0]:g}..{scale[-1]:g}); pass a rating in that range, or null.")

    def _process(self) -> ProcessedData:
        log.info("Processing %s (dataset %s, split %s)", self.dataset.location, self.dataset.NAME, self.split)
        side, ratings = self.dataset.load()
        self._side = side
        scale = self.dataset.rating_values(ratings)
        self._check_threshold(scale)
        # Internal indices: every user and item with a rating (before any threshold), ids sorted, so that
        # searchsorted maps an id to its index.
        users, items = IdIndex(ratings.user_id), IdIndex(ratings.item_id)
        user_ids, item_ids = users.ids, items.ids
        train, val, test = self._split_ratings(ratings, side)
        del ratings

        def edges(part: Ratings) -> EdgeBatch:
            return EdgeBatch(torch.from_numpy(users(part.user_id)), torch.from_numpy(items(part.item_id)),
                             torch.from_numpy(part.rating))

        return ProcessedData(
            train=edges(train),
            val=edges(val),
            test=edges(test),
            user_ids=torch.from_numpy(user_ids),
            item_ids=torch.from_numpy(item_ids),
            user_features=self.dataset.user_features(side, user_ids),
            item_features=self.dataset.item_features(side, item_ids),
            rating_values=torch.tensor(scale, dtype=torch.float32),
        )

    # --------------------------------------------------------------------------- Lightning
    @property
    def graph(self) -> BipartiteGraph:
        """The training graph with side features; built once and reused by every stage."""
        if self._graph is None:
            data = self.data
            self._graph = BipartiteGraph(
                data.train.users, data.train.items, self.num_users, self.num_items,
                user_features=data.user_features, item_features=data.item_features,
                ratings=data.train.ratings, rating_values=self.rating_values,
            )
        return self._graph

    def _user_item_mask(self, users: Tensor, parts: tuple[EdgeBatch, ...]) -> Tensor:
        """``(B, I)`` bool: which items each of ``users`` has an edge to in ``parts`` (a user listed twice
        gets the same row twice)."""
        distinct, row = torch.unique(users, return_inverse=True)
        mask = torch.zeros(len(distinct), self.num_items, dtype=torch.bool)
        row_of = torch.full((self.num_users,), -1, dtype=torch.int64)
        row_of[distinct] = torch.arange(len(distinct))
        for part in parts:
            rows = row_of[part.users]
            keep = rows >= 0
            mask[rows[keep], part.items[keep]] = True
        return mask[row]

    def known_items(self, users: Tensor, parts: tuple[str, ...] = ("train", "val")) -> Tensor:
        """``(B, I)`` bool: the items each user rated in ``parts`` (by default the whole training part,
        training + validation: what a ranking of the test part leaves out)."""
        return self._user_item_mask(users, tuple(getattr(self.data, part) for part in parts))

    def relevant_items(self, users: Tensor, threshold: float | None = 4.0, part: str = "test") -> Tensor:
        """``(B, I)`` bool: the items of ``part`` each user rated ``>= threshold`` (every one for ``None``),
        relevant for ranking."""
        edges = getattr(self.data, part)
        liked = edges.ratings >= (threshold if threshold is not None else -math.inf)
        return self._user_item_mask(users, (EdgeBatch(edges.users[liked], edges.items[liked], edges.ratings[liked]),))

    def ranking_batches(self, users: Tensor, part: str = "test", threshold: float | None = 4.0,
                        chunk: int = 1024) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """``(users, exclude, relevant)`` in chunks of ``users``, for ranking all items on ``part``.

        Ranking the validation part leaves out the training items; ranking the test part leaves
        out training and validation items. Chunks bound the ``(users, items)`` masks on large data.
        """
        seen = ("train",) if part == "val" else ("train", "val")
        for batch in users.split(chunk):
            yield batch, self.known_items(batch, seen), self.relevant_items(batch, threshold, part)

    def setup(self, stage: str | None = None) -> None:
        data = self.data
        log.info(
            "Split %s: %d train, %d val, %d test ratings; graph of %d nodes and %d directed edges",
            self.split, len(data.train.ratings), len(data.val.ratings), len(data.test.ratings),
            self.graph.num_nodes, self.graph.num_edges,
        )

    def _loader(self, edges: EdgeBatch, batch_size: int | None = None, shuffle: bool = False) -> EdgeLoader:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        if batch_size is None and trainer is not None:
            # A full batch goes to the device once: Lightning's per-step copy is then a no-op that returns
            # the same tensors, which keeps per-edge-set caches (the dot head's pattern) valid on a GPU too.
            edges = EdgeBatch(*(t.to(trainer.strategy.root_device) for t in edges))
        return EdgeLoader(edges, batch_size, shuffle=shuffle, seed=self.seed, rank=rank, world_size=world,
                          generator=self.train_generator if shuffle else None)

    def train_dataloader(self) -> EdgeLoader:
        edges = self.data.train
        if self.batch_size is None:
            # Full batch: the same edges every epoch, laid out once user-major, then by item, the order of
            # the dot head's sparse pattern, so no permutation runs per step (and row gathers read memory
            # in order). A loss averaged over all edges does not depend on their order.
            edges = pair_order(edges, self.num_items)
        return self._loader(edges, self.batch_size, shuffle=True)

    def val_dataloader(self) -> EdgeLoader:
        return self._loader(self.data.val)

    def test_dataloader(self) -> EdgeLoader:
        return self._loader(self.data.test)

    def predict_dataloader(self) -> EdgeLoader:
        return self._loader(getattr(self.data, self.predict_part))


__all__ = ["SPLITS", "EdgeBatch", "EdgeLoader", "MovieLensDataModule", "ProcessedData"]
