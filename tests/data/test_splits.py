from __future__ import annotations

import numpy as np
import pytest

from movielens_gnn.data.datasets import Ratings
from movielens_gnn.data.splits import check_split, random_split, ratio_counts, ratio_split, temporal_split, user_holdout


def _ratings(n: int, seed: int = 0) -> Ratings:
    rng = np.random.default_rng(seed)
    return Ratings(
        user_id=np.arange(n, dtype=np.int64),
        item_id=np.arange(n, dtype=np.int64) % 7,
        rating=rng.integers(1, 6, n).astype(np.float32),
        timestamp=rng.permutation(n).astype(np.int64) * 10,
    )


def test_random_split_sizes_disjoint_and_complete():
    kept, held = random_split(_ratings(1000), 0.2, seed=3)
    assert (len(kept), len(held)) == (800, 200)
    assert set(kept.user_id).isdisjoint(held.user_id)
    assert sorted([*kept.user_id, *held.user_id]) == list(range(1000))


def test_random_split_is_deterministic_per_seed():
    a = random_split(_ratings(500), 0.1, seed=7)[1].user_id
    b = random_split(_ratings(500), 0.1, seed=7)[1].user_id
    c = random_split(_ratings(500), 0.1, seed=8)[1].user_id
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_random_split_rounds_and_keeps_at_least_one_on_each_side():
    assert len(random_split(_ratings(10), 0.25, seed=0)[1]) == 2  # round(2.5) is 2
    assert len(random_split(_ratings(3), 0.01, seed=0)[1]) == 1
    assert len(random_split(_ratings(3), 0.99, seed=0)[0]) == 1


def test_temporal_split_holds_out_the_latest():
    ratings = _ratings(100)
    earlier, latest = temporal_split(ratings, 0.25)
    assert (len(earlier), len(latest)) == (75, 25)
    assert earlier.timestamp.max() < latest.timestamp.min()
    np.testing.assert_array_equal(np.sort(latest.timestamp), np.arange(75, 100) * 10)


def test_temporal_split_ties_do_not_depend_on_file_order():
    ratings = Ratings(np.array([3, 1, 2, 0]), np.array([0, 0, 0, 0]), np.ones(4, np.float32), np.zeros(4, np.int64))
    reversed_ = ratings.take(np.array([3, 2, 1, 0]))
    assert sorted(temporal_split(ratings, 0.5)[1].user_id.tolist()) == [2, 3]
    assert sorted(temporal_split(reversed_, 0.5)[1].user_id.tolist()) == [2, 3]


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_fraction_must_be_inside_unit_interval(fraction):
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        random_split(_ratings(10), fraction, seed=0)


def test_unknown_split_lists_valid_values():
    with pytest.raises(ValueError, match=r"Unknown split 'u9'; valid values: u1, u2, u3, u4, u5, ua, ub, random, temporal"):
        check_split("u9")


def test_user_holdout_takes_a_larger_share_from_half_the_users():
    # 40 users with 10 ratings each.
    user = np.repeat(np.arange(40), 10)
    ratings = Ratings(user, np.tile(np.arange(10), 40), np.ones(400, np.float32), np.arange(400))
    kept, held = user_holdout(ratings, fraction=0.1, user_fraction=0.5, seed=0)
    assert len(held) == 20 * 2  # 20 users lose round(10 * 0.2) = 2 ratings each
    held_users, per_user = np.unique(held.user_id, return_counts=True)
    assert len(held_users) == 20 and set(per_user) == {2}
    assert len(kept) + len(held) == 400 and not set(zip(kept.user_id, kept.item_id)) & set(zip(held.user_id, held.item_id))
    again = user_holdout(ratings, fraction=0.1, user_fraction=0.5, seed=0)[1]
    np.testing.assert_array_equal(again.item_id, held.item_id)
    assert not np.array_equal(user_holdout(ratings, 0.1, 0.5, seed=1)[1].user_id, held.user_id)


def test_user_holdout_keeps_one_rating_per_user():
    ratings = Ratings(np.array([0, 0, 1]), np.array([0, 1, 0]), np.ones(3, np.float32), np.arange(3))
    kept, held = user_holdout(ratings, fraction=0.45, user_fraction=0.5, seed=0)
    assert sorted(kept.user_id.tolist()).count(0) >= 1 and sorted(kept.user_id.tolist()).count(1) >= 1
    with pytest.raises(ValueError, match="must be smaller than user_fraction"):
        user_holdout(ratings, fraction=0.5, user_fraction=0.4, seed=0)


def _per_user(ratings: Ratings) -> dict[int, int]:
    users, counts = np.unique(ratings.user_id, return_counts=True)
    return dict(zip(users.tolist(), counts.tolist()))


def test_ratio_split_counts_are_exact_per_user():
    # Users with 1, 2, 3, 10 and 25 ratings; shares 0.8 / 0.1 / 0.1 (RecBole's rule, worked by hand):
    # 1 -> 1/0/0 (train keeps it); 2 -> 1/0/1 (test first, then train has 1 left);
    # 3 -> 1/1/1; 10 -> 8/1/1; 25 -> floor(2.5) = 2 each, 21 train.
    sizes = {1: 1, 2: 2, 3: 3, 4: 10, 5: 25}
    rows = [(u, i) for u, n in sizes.items() for i in range(1, n + 1)]
    ratings = Ratings(np.array([u for u, _ in rows]), np.array([i for _, i in rows]),
                      np.full(len(rows), 4.0, dtype=np.float32), np.arange(len(rows)))
    train, val, test = ratio_split(ratings, (0.8, 0.1, 0.1), seed=0)
    assert _per_user(train) == {1: 1, 2: 1, 3: 1, 4: 8, 5: 21}
    assert _per_user(val) == {3: 1, 4: 1, 5: 2}
    assert _per_user(test) == {2: 1, 3: 1, 4: 1, 5: 2}
    pairs = [set(zip(p.user_id.tolist(), p.item_id.tolist())) for p in (train, val, test)]
    assert not (pairs[0] & pairs[1]) and not (pairs[0] & pairs[2]) and not (pairs[1] & pairs[2])
    assert len(pairs[0] | pairs[1] | pairs[2]) == len(rows)


def test_ratio_split_is_deterministic_per_seed():
    base = _ratings(600)  # 30 users with 20 ratings each
    ratings = Ratings(base.user_id % 30, base.item_id + 7 * (base.user_id // 30), base.rating, base.timestamp)
    a = ratio_split(ratings, (0.8, 0.1, 0.1), seed=3)
    b = ratio_split(ratings, (0.8, 0.1, 0.1), seed=3)
    c = ratio_split(ratings, (0.8, 0.1, 0.1), seed=4)
    assert all(np.array_equal(x.item_id, y.item_id) and np.array_equal(x.user_id, y.user_id) for x, y in zip(a, b))
    assert not np.array_equal(a[2].item_id, c[2].item_id)
    assert [len(p) for p in a] == [len(p) for p in c]  # the counts depend on the users only


def test_ratio_split_with_the_remainder_to_test():
    # Users with 1, 2, 3, 10, 19 and 25 ratings at 0.8 / 0.1 / 0.1, worked by hand: training floor(0.8 n)
    # but at least one, validation floor(0.1 n), test the rest: 1 -> 1/0/0; 2 -> 1/0/1; 3 -> 2/0/1;
    # 10 -> 8/1/1; 19 -> 15/1/3 (RecBole's rule: 17/1/1); 25 -> 20/2/3 (RecBole's: 21/2/2).
    sizes = {1: 1, 2: 2, 3: 3, 4: 10, 5: 19, 6: 25}
    counts = np.array(list(sizes.values()))
    train, val, test = ratio_counts(counts, (0.8, 0.1, 0.1), remainder="test")
    assert (train.tolist(), val.tolist(), test.tolist()) == ([1, 1, 2, 8, 15, 20], [0, 0, 0, 1, 1, 2], [0, 1, 1, 1, 3, 3])
    assert [part.tolist() for part in ratio_counts(counts[4:], (0.8, 0.1, 0.1))] == [[17, 21], [1, 2], [1, 2]]
    rows = [(u, i) for u, n in sizes.items() for i in range(1, n + 1)]
    ratings = Ratings(np.array([u for u, _ in rows]), np.array([i for _, i in rows]),
                      np.full(len(rows), 4.0, dtype=np.float32), np.arange(len(rows)))
    parts = ratio_split(ratings, (0.8, 0.1, 0.1), seed=0, remainder="test")
    assert [_per_user(p) for p in parts] == [{1: 1, 2: 1, 3: 2, 4: 8, 5: 15, 6: 20}, {4: 1, 5: 1, 6: 2},
                                             {2: 1, 3: 1, 4: 1, 5: 3, 6: 3}]
    # The same shuffle as the default rule: a user's order is drawn once, only the cuts move (user 3,
    # whom RecBole's rule leaves one training rating, aside).
    default = ratio_split(ratings, (0.8, 0.1, 0.1), seed=0)
    first = {(u, i) for u, i in zip(parts[0].user_id.tolist(), parts[0].item_id.tolist()) if u != 3}
    assert first <= {(u, i) for u, i in zip(default[0].user_id.tolist(), default[0].item_id.tolist())}
    with pytest.raises(ValueError, match=r"--data\.ratio_remainder must be one of train, test.*got 'val'"):
        ratio_split(ratings, (0.8, 0.1, 0.1), seed=0, remainder="val")


@pytest.mark.parametrize("ratios", [(0.8, 0.1), (0.0, 0.5, 0.5), (0.9, 0.0, 0.1), (0.8, 0.3, 0.1), (0.9, -0.1, 0.2)])
def test_ratio_split_rejects_bad_ratios(ratios):
    with pytest.raises(ValueError, match=r"--data\.ratios must be three shares"):
        ratio_split(_ratings(10), ratios, seed=0)
