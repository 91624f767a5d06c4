"""Train/validation/test edge splits: canonical files, seeded random, temporal."""

from __future__ import annotations

import numpy as np

from movielens_gnn.data.movielens import CANONICAL_SPLITS, Ratings

SPLITS = (*CANONICAL_SPLITS, "random", "temporal")


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
    # Rank each rating within its user in a random order; hold out the first ``quota`` of chosen users.
    order = np.lexsort((rng.random(len(ratings)), inverse))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(ratings), dtype=np.int64)
    rank[order] = np.arange(len(ratings)) - np.repeat(starts, counts)
    quota = np.minimum(np.round(counts * (fraction / user_fraction)).astype(np.int64), counts - 1)
    held = chosen[inverse] & (rank < quota[inverse])
    return ratings.take(~held), ratings.take(held)
