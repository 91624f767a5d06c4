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
