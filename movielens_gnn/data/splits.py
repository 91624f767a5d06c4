"""Train/validation/test edge splits: canonical files, seeded random, temporal, per-user ratio."""

from __future__ import annotations

import numpy as np

from typing import Sequence

from movielens_gnn.data.datasets.base import Ratings
from movielens_gnn.data.datasets.ml100k import MovieLens100K

CANONICAL_SPLITS = MovieLens100K.CANONICAL_SPLITS

SPLITS = (*CANONICAL_SPLITS, "random", "temporal", "ratio")


def check_split(split: str) -> None:
    """Raise ``ValueError`` unless ``split`` is one of :data:`SPLITS`."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; valid values: {', '.join(SPLITS)}.")


def check_fraction(name: str, value: float) -> None:
    """Raise ``ValueError`` unless ``0 < value < 1``."""
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1, got {value}.")


def _count(n: int, fraction: float) -> int:
    """Number of held-out items: ``round(n * fraction)``, at least 1 and leaving at least 1."""
    return min(max(int(round(n * fraction)), 1), n - 1)


def random_split(ratings: Ratings, fraction: float, seed: int) -> tuple[Ratings, Ratings]:
    """Hold out a seeded random ``fraction`` of the ratings.

    Returns:
        ``(kept, held_out)`` with ``len(held_out) == round(len(ratings) * fraction)``; both keep the
        input's relative order.
    """
    check_fraction("fraction", fraction)
    n = len(ratings)
    held = np.zeros(n, dtype=bool)
    held[np.random.default_rng(seed).permutation(n)[: _count(n, fraction)]] = True
    return ratings.take(~held), ratings.take(held)


def temporal_split(ratings: Ratings, fraction: float) -> tuple[Ratings, Ratings]:
    """Hold out the latest ``fraction`` of the ratings by timestamp.

    Ties are broken by (user, item) so the split does not depend on file order.

    Returns:
        ``(earlier, latest)``; every held-out timestamp is ``>=`` every kept one.
    """
    check_fraction("fraction", fraction)
    n = len(ratings)
    order = np.lexsort((ratings.item_id, ratings.user_id, ratings.timestamp))
    held = np.zeros(n, dtype=bool)
    held[order[n - _count(n, fraction) :]] = True
    return ratings.take(~held), ratings.take(held)


def user_holdout(ratings: Ratings, fraction: float, user_fraction: float, seed: int) -> tuple[Ratings, Ratings]:
    """Hold out a larger share of the ratings of a seeded subset of users.

    A seeded ``user_fraction`` of the users each lose ``fraction / user_fraction`` of their
    ratings (rounded, at least one kept), about ``fraction`` of all ratings in total. This mimics
    the canonical ``u1`` test part, which holds out about 39% of the ratings of half the users,
    better than a uniform random holdout does.

    Returns:
        ``(kept, held_out)``, both in the input's relative order.
    """
    check_fraction("fraction", fraction)
    check_fraction("user_fraction", user_fraction)
    if fraction >= user_fraction:
        raise ValueError(f"fraction ({fraction}) must be smaller than user_fraction ({user_fraction}).")
    rng = np.random.default_rng(seed)
    users, inverse, counts = np.unique(ratings.user_id, return_inverse=True, return_counts=True)
    chosen = np.zeros(len(users), dtype=bool)
    chosen[rng.permutation(len(users))[: max(1, int(round(len(users) * user_fraction)))]] = True
    # Hold out the first ``quota`` ratings of chosen users, in a random order within each user.
    rank = _random_rank_within_user(inverse, counts, rng)
    quota = np.minimum(np.round(counts * (fraction / user_fraction)).astype(np.int64), counts - 1)
    held = chosen[inverse] & (rank < quota[inverse])
    return ratings.take(~held), ratings.take(held)


def check_ratios(ratios: Sequence[float]) -> None:
    """Raise ``ValueError`` unless ``ratios`` is ``[train, val, test]``: all positive (an empty validation
    or test part would leave nothing to select or evaluate on), summing to 1."""
    values = list(ratios)
    if len(values) != 3 or min(values) <= 0 or abs(sum(values) - 1.0) > 1e-6:
        raise ValueError(f"--data.ratios must be three shares [train, val, test], each > 0, summing to 1, "
                         f"e.g. [0.8, 0.1, 0.1]; got {values}.")


RATIO_REMAINDERS = ("train", "test")


def check_ratio_remainder(remainder: str) -> None:
    """Raise ``ValueError`` unless ``remainder`` names the part that takes the rounding remainder."""
    if remainder not in RATIO_REMAINDERS:
        raise ValueError(f"--data.ratio_remainder must be one of {', '.join(RATIO_REMAINDERS)} (the part that keeps "
                         f"what rounding down leaves over); got {remainder!r}.")


def ratio_counts(counts: np.ndarray, ratios: Sequence[float],
                 remainder: str = "train") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per user, how many ratings go to train, validation and test.

    ``remainder="train"`` is RecBole's ``split_by_ratio`` rule (1.x): validation and test get
    ``floor(share * n)``; then, test first, a part whose share of ``n`` is between 0 and 1 gets one
    rating while training keeps more than one. So every user keeps at least one training rating,
    and small users still reach validation and test where they can.

    ``remainder="test"``: training and validation get ``floor(share * n)`` (training at least one),
    test the rest, as RecBole's early development code and splitters that fill the last part with what is
    left do. Test parts are larger: on ml-100k at 0.8/0.1/0.1, 11.4 test ratings a user against 10.2.
    """
    check_ratio_remainder(remainder)
    train_share, val_share, test_share = ratios
    val = np.floor(val_share * counts).astype(np.int64)
    if remainder == "test":
        train = np.minimum(np.maximum(np.floor(train_share * counts).astype(np.int64), 1), counts)
        return train, val, counts - train - val
    test = np.floor(test_share * counts).astype(np.int64)
    train = counts - val - test
    for share, part in ((test_share, test), (val_share, val)):
        add = (train > 1) & (share * counts > 0) & (share * counts < 1)
        part += add
        train -= add
    return train, val, test


def ratio_split(ratings: Ratings, ratios: Sequence[float], seed: int,
                remainder: str = "train") -> tuple[Ratings, Ratings, Ratings]:
    """Shuffle each user's ratings (seeded) and cut them into train/validation/test by ``ratios``.

    This is RecBole's default protocol for ml-100k (``RS: [0.8, 0.1, 0.1]``); the counts per user
    follow :func:`ratio_counts` (``remainder``: which part keeps what rounding down leaves over).

    Returns:
        ``(train, val, test)``, each in the input's relative order.
    """
    check_ratios(ratios)
    _, inverse, counts = np.unique(ratings.user_id, return_inverse=True, return_counts=True)
    rank = _random_rank_within_user(inverse, counts, np.random.default_rng(seed))
    train, val, _ = ratio_counts(counts, ratios, remainder)
    in_train = rank < train[inverse]
    in_val = ~in_train & (rank < (train + val)[inverse])
    return ratings.take(in_train), ratings.take(in_val), ratings.take(~in_train & ~in_val)


def _random_rank_within_user(inverse: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``(E,)`` each rating's position 0..n_u-1 in a random order of its user's ratings.

    Args:
        inverse: ``(E,)`` user index of each rating (from ``np.unique(..., return_inverse=True)``).
        counts: ``(U,)`` ratings per user index.
        rng: Draws the order (one uniform number per rating).
    """
    order = np.lexsort((rng.random(len(inverse)), inverse))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(inverse), dtype=np.int64)
    rank[order] = np.arange(len(inverse)) - np.repeat(starts, counts)
    return rank
