from __future__ import annotations

import numpy as np
import pytest
import torch

from movielens_gnn.data.datamodule import EdgeBatch, EdgeLoader, MovieLensDataModule, split_identity
from movielens_gnn.data.datasets.ml100k import MovieLens100K
from movielens_gnn.data.splits import ratio_counts


def _pairs(batch: EdgeBatch) -> set[tuple[int, int]]:
    return set(zip(batch.users.tolist(), batch.items.tolist()))


def _file_pairs(path) -> set[tuple[int, int]]:
    rows = np.loadtxt(path, dtype=np.int64, ndmin=2)
    return {(u - 1, i - 1) for u, i in rows[:, :2]}  # synthetic ids are 1..N, so index = id - 1


@pytest.mark.parametrize("split", ["u1", "u4", "ua", "ub"])
def test_canonical_split_sizes_and_no_leakage(ml100k_root, split):
    dm = MovieLensDataModule(root=str(ml100k_root), split=split, val_fraction=0.1)
    raw = ml100k_root / "ml-100k"
    base, test = _file_pairs(raw / f"{split}.base"), _file_pairs(raw / f"{split}.test")
    data = dm.data
    assert _pairs(data.test) == test
    assert _pairs(data.train) | _pairs(data.val) == base
    assert len(data.val.ratings) == round(len(base) * 0.1)
    assert len(data.train.ratings) == len(base) - round(len(base) * 0.1)
    assert not _pairs(data.train) & _pairs(data.val)
    # The graph's edges are exactly the training edges, both ways, and nothing else.
    graph = dm.graph
    dense = graph.to_dense()
    u, i = data.train.users, data.train.items + dm.num_users
    nonzero = {tuple(x) for x in dense.nonzero().tolist()}
    expected = {(a, b) for a, b in zip(u.tolist(), i.tolist())} | {(b, a) for a, b in zip(u.tolist(), i.tolist())}
    assert nonzero == expected
    held_out = torch.cat([data.val.users, data.test.users]), torch.cat([data.val.items, data.test.items])
    assert dense[held_out[0], held_out[1] + dm.num_users].abs().sum() == 0


def test_sizes_for_the_model(ml100k_root):
    dm = MovieLensDataModule(root=str(ml100k_root))
    assert (dm.num_users, dm.num_items) == (24, 30)
    assert dm.user_feature_dim == 1 + 2 + 21 and dm.item_feature_dim == 19
    assert dm.rating_mean == pytest.approx(float(dm.data.train.ratings.double().mean()))


def test_ids_map_back_to_movielens_ids(ml100k_root):
    dm = MovieLensDataModule(root=str(ml100k_root), split="u2")
    test = dm.data.test
    ids = {(int(dm.data.user_ids[u]), int(dm.data.item_ids[i])) for u, i in zip(test.users, test.items)}
    assert ids == {(u + 1, i + 1) for u, i in _file_pairs(ml100k_root / "ml-100k" / "u2.test")}


def test_random_split_is_seeded(ml100k_root):
    a = MovieLensDataModule(root=str(ml100k_root), split="random", seed=1, test_fraction=0.25, cache=False).data
    b = MovieLensDataModule(root=str(ml100k_root), split="random", seed=1, test_fraction=0.25, cache=False).data
    c = MovieLensDataModule(root=str(ml100k_root), split="random", seed=2, test_fraction=0.25, cache=False).data
    assert len(a.test.ratings) == 72 and len(a.val.ratings) == round(216 * 0.05)
    assert _pairs(a.test) == _pairs(b.test) and _pairs(a.val) == _pairs(b.val)
    assert _pairs(a.test) != _pairs(c.test)
    assert not (_pairs(a.train) | _pairs(a.val)) & _pairs(a.test)


def test_temporal_split_orders_by_time(ml100k_root):
    dm = MovieLensDataModule(root=str(ml100k_root), split="temporal", test_fraction=0.2, val_fraction=0.1)
    raw = np.loadtxt(ml100k_root / "ml-100k" / "u.data", dtype=np.int64)
    stamp = {(u - 1, i - 1): t for u, i, _, t in raw}
    times = {part: [stamp[p] for p in _pairs(getattr(dm.data, part))] for part in ("train", "val", "test")}
    assert max(times["train"]) <= min(times["val"]) and max(times["val"]) <= min(times["test"])
    assert len(times["test"]) == round(288 * 0.2)


def test_cache_is_reused_and_rebuilt_when_settings_change(ml100k_root, caplog):
    caplog.set_level("INFO")
    first = MovieLensDataModule(root=str(ml100k_root), split="random", seed=1)
    data = first.data
    assert first.cache_path.is_file()
    saved = torch.load(first.cache_path, weights_only=True)
    assert saved["settings"]["seed"] == 1 and saved["settings"]["split"] == "random"
    caplog.clear()
    again = MovieLensDataModule(root=str(ml100k_root), split="random", seed=1).data
    assert "Processing" not in caplog.text and "Discarding" not in caplog.text  # read back, not rebuilt
    assert torch.equal(again.test.users, data.test.users)
    caplog.clear()
    second = MovieLensDataModule(root=str(ml100k_root), split="random", seed=2)
    other = second.data
    assert "Processing" in caplog.text and second.cache_path != first.cache_path  # a cache of its own
    assert torch.load(second.cache_path, weights_only=True)["settings"]["seed"] == 2
    assert _pairs(other.test) != _pairs(data.test)
    # Alternating back finds the first settings' cache still there: nothing is rebuilt.
    caplog.clear()
    back = MovieLensDataModule(root=str(ml100k_root), split="random", seed=1).data
    assert "Processing" not in caplog.text and torch.equal(back.test.users, data.test.users)


def test_caches_are_kept_per_settings_up_to_a_bound_most_recently_used_first(ml100k_root, caplog):
    import os

    def module(seed):
        return MovieLensDataModule(root=str(ml100k_root), split="random", seed=seed)

    folder = ml100k_root / "processed"
    folder.mkdir()
    legacy = folder / "ml-100k-random.pt"  # the one-per-split cache of earlier versions
    legacy.write_bytes(b"old")
    unrelated = folder / "ml-100k-notes.pt"  # not a name this code writes: never touched
    unrelated.write_bytes(b"mine")
    paths = {}
    for order, seed in enumerate((1, 2, 3, 4)):
        dm = module(seed)
        dm.data
        paths[seed] = dm.cache_path
        os.utime(paths[seed], ns=(10**18 + order, 10**18 + order))  # distinct, increasing use times
    assert not legacy.exists() and unrelated.exists() and all(p.is_file() for p in paths.values())
    caplog.set_level("INFO")
    caplog.clear()
    module(1).data  # read back: now the most recently used
    assert "Processing" not in caplog.text
    module(5).data  # a fifth: the least recently used (seed 2) goes
    assert sorted(p.name for p in folder.iterdir() if p != unrelated) == sorted(
        p.name for p in (paths[1], paths[3], paths[4], module(5).cache_path))


def test_cache_is_rebuilt_when_raw_files_change(ml100k_root, caplog):
    caplog.set_level("INFO")
    MovieLensDataModule(root=str(ml100k_root)).data
    path = ml100k_root / "ml-100k" / "u1.test"
    path.write_text(path.read_text().splitlines(keepends=True)[0])
    caplog.clear()
    data = MovieLensDataModule(root=str(ml100k_root)).data
    assert "built from other versions of the raw files" in caplog.text
    assert len(data.test.ratings) == 1


def test_unwritable_cache_is_skipped_with_a_warning(ml100k_root, tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    dm = MovieLensDataModule(root=str(ml100k_root), cache_dir=str(blocker / "sub"))
    assert len(dm.data.test.ratings) > 0
    assert "Not caching processed data" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": "u7"}, "Unknown split 'u7'; valid values: u1"),
        ({"val_fraction": 0.0}, "val_fraction must be strictly between 0 and 1"),
        ({"test_fraction": 1.0}, "test_fraction must be strictly between 0 and 1"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        MovieLensDataModule(root=str(tmp_path), **kwargs)


def test_init_touches_no_files(tmp_path):
    MovieLensDataModule(root=str(tmp_path / "nothing"), url=(tmp_path / "x.zip").as_uri())
    assert list(tmp_path.iterdir()) == []


def test_edge_loader_full_batch_and_minibatches():
    edges = EdgeBatch(torch.arange(10), torch.arange(10) % 3, torch.ones(10))
    full = list(EdgeLoader(edges))
    assert len(full) == 1 and full[0] is edges
    loader = EdgeLoader(edges, batch_size=4, shuffle=True, seed=0)
    epoch1, epoch2 = list(loader), list(loader)
    assert len(loader) == 3 and [len(b.users) for b in epoch1] == [4, 4, 2]
    assert sorted(torch.cat([b.users for b in epoch1]).tolist()) == list(range(10))
    assert not torch.equal(torch.cat([b.users for b in epoch1]), torch.cat([b.users for b in epoch2]))
    assert all(torch.equal(b.items, b.users % 3) for b in epoch1)


def test_real_u1_split_sizes(real_data_root, tmp_path):
    dm = MovieLensDataModule(root=str(real_data_root), split="u1", cache_dir=str(tmp_path))
    data = dm.data
    assert (len(data.train.ratings), len(data.val.ratings), len(data.test.ratings)) == (76_000, 4_000, 20_000)
    assert (dm.graph.num_nodes, dm.graph.num_edges) == (943 + 1682, 152_000)
    assert not (_pairs(data.train) & _pairs(data.test))


@pytest.mark.parametrize("world_size", [2, 3])
def test_eval_shards_count_every_edge_once(world_size):
    edges = EdgeBatch(torch.arange(101), torch.arange(101) % 5, torch.rand(101))
    shards = [list(EdgeLoader(edges, rank=r, world_size=world_size)) for r in range(world_size)]
    assert all(len(batches) == 1 for batches in shards)  # the same number of steps on every rank
    seen = torch.cat([batches[0].users for batches in shards])
    assert sorted(seen.tolist()) == list(range(101))
    assert [len(b[0].users) for b in shards] == [len(range(r, 101, world_size)) for r in range(world_size)]
    for batches in shards:
        assert torch.equal(batches[0].ratings, edges.ratings[batches[0].users])


@pytest.mark.parametrize("world_size", [1, 2])
def test_full_batch_is_the_same_tensors_every_epoch(world_size):
    # So that what a model builds per edge set (the dot head's CSR pattern) is built once, not per epoch.
    edges = EdgeBatch(torch.arange(11), torch.arange(11) % 5, torch.rand(11))
    loader = EdgeLoader(edges, rank=world_size - 1, world_size=world_size)
    (first,), (second,) = list(loader), list(loader)
    assert all(a is b for a, b in zip(first, second))


def test_train_shards_are_disjoint_equal_and_reshuffled():
    edges = EdgeBatch(torch.arange(101), torch.zeros(101, dtype=torch.long), torch.ones(101))
    loaders = [EdgeLoader(edges, batch_size=10, shuffle=True, seed=3, rank=r, world_size=2) for r in range(2)]
    epoch1 = [torch.cat([b.users for b in loader]) for loader in loaders]
    epoch2 = [torch.cat([b.users for b in loader]) for loader in loaders]
    assert [len(loader) for loader in loaders] == [5, 5] and [len(e) for e in epoch1] == [50, 50]
    assert not set(epoch1[0].tolist()) & set(epoch1[1].tolist())
    assert not torch.equal(epoch1[0], epoch2[0])


def test_full_batch_training_edges_come_in_pair_order(ml100k_root):
    """Full batch: the training edges sorted by (user, item), the dot head's pattern order; minibatches,
    validation and test keep their own order."""
    dm = MovieLensDataModule(root=str(ml100k_root), split="random", test_fraction=0.35)
    train = dm.data.train
    key = train.users * dm.num_items + train.items
    assert not bool((key[1:] > key[:-1]).all())  # the random split's own order is not sorted
    (batch,) = list(dm.train_dataloader())
    got = batch.users * dm.num_items + batch.items
    assert torch.equal(got, key.sort().values)
    assert torch.equal(batch.ratings, train.ratings[key.argsort()])  # each rating kept with its pair
    (val,) = list(dm.val_dataloader())
    assert torch.equal(val.users, dm.data.val.users) and torch.equal(val.items, dm.data.val.items)
    dm.batch_size = 16
    minibatches = torch.cat([b.users * dm.num_items + b.items for b in dm.train_dataloader()])
    assert sorted(minibatches.tolist()) == sorted(key.tolist()) and not torch.equal(minibatches, key.sort().values)


def test_loaders_follow_the_trainer_rank(ml100k_root):
    dm = MovieLensDataModule(root=str(ml100k_root), split="random", test_fraction=0.35)

    class FakeTrainer:
        global_rank, world_size = 1, 2

        class strategy:  # noqa: N801  (what the data module reads of Trainer.strategy)
            root_device = torch.device("cpu")

    dm.trainer = FakeTrainer()
    assert len(dm.data.test.ratings) == 101
    assert len(next(iter(dm.test_dataloader())).users) == 50


def test_graph_carries_training_ratings_by_level(ml100k_root):
    dm = MovieLensDataModule(root=str(ml100k_root))
    wide = dm.graph.relational_adjacency()[0].to_dense()
    n = dm.graph.num_nodes
    train = dm.data.train
    for user, item, rating in zip(train.users.tolist(), train.items.tolist(), train.ratings.tolist()):
        level = int(rating) - 1
        assert wide[dm.num_users + item, level * n + user] > 0
        assert wide[user, level * n + dm.num_users + item] > 0
    assert int((wide != 0).sum()) == 2 * len(train.ratings)


def test_user_validation_strategy(ml100k_root):
    dm = MovieLensDataModule(root=str(ml100k_root), split="u1", val_strategy="users", val_fraction=0.1,
                             val_user_fraction=0.5)
    data = dm.data
    base = _file_pairs(ml100k_root / "ml-100k" / "u1.base")
    assert _pairs(data.train) | _pairs(data.val) == base and not _pairs(data.train) & _pairs(data.val)
    val_users = set(data.val.users.tolist())
    assert len(val_users) <= 12  # half of the 24 users at most
    # The graph's user -> item entries are exactly the training pairs; no validation pair is among them.
    block = dm.graph.to_dense()[dm.num_users :, : dm.num_users]
    graph_pairs = {(u, i) for i, u in block.nonzero().tolist()}
    assert graph_pairs == _pairs(data.train) and not graph_pairs & _pairs(data.val)
    assert saved_setting(dm, "val_strategy") == "users"


def saved_setting(dm, key):
    return torch.load(dm.cache_path, weights_only=True)["settings"][key]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"val_strategy": "per_item"}, "Unknown val_strategy 'per_item'; valid values: random, users"),
     ({"val_strategy": "users", "val_fraction": 0.6, "val_user_fraction": 0.5}, "needs 0 < --data.val_fraction < --data.val_user_fraction")],
)
def test_bad_validation_strategy(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        MovieLensDataModule(root=str(tmp_path), **kwargs)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda path: path.write_bytes(b"\x80\x02 random bytes, not a torch file" * 30),
        lambda path: path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2]),  # truncated
        lambda path: torch.save(torch.zeros(3), path),  # another torch object
        lambda path: torch.save({"settings": torch.load(path, weights_only=True)["settings"], "tensors": {}}, path),
        lambda path: torch.save({**torch.load(path, weights_only=True), "tensors": {
            **torch.load(path, weights_only=True)["tensors"], "train_users": torch.tensor([0, 999])}}, path),
    ],
    ids=["random_bytes", "truncated", "tensor", "no_tensors", "index_beyond_ids"],
)
def test_corrupt_cache_is_discarded_and_rebuilt(ml100k_root, caplog, corrupt):
    reference = MovieLensDataModule(root=str(ml100k_root))
    expected = reference.data
    corrupt(reference.cache_path)
    caplog.clear()
    data = MovieLensDataModule(root=str(ml100k_root)).data
    assert "Discarding the corrupt processed cache" in caplog.text
    assert torch.equal(data.test.users, expected.test.users) and torch.equal(data.train.ratings, expected.train.ratings)
    # The cache was rewritten whole: the next run reads it without a warning.
    caplog.clear()
    again = MovieLensDataModule(root=str(ml100k_root)).data
    assert "corrupt" not in caplog.text and torch.equal(again.val.items, expected.val.items)
    assert sorted(p.name for p in reference.cache_path.parent.iterdir()) == [reference.cache_path.name]


def test_fingerprint_changes_with_the_ratings_and_the_split(ml100k_root, tmp_path):
    from tests.synthetic import write_ml100k

    a = MovieLensDataModule(root=str(ml100k_root)).fingerprint
    assert a == MovieLensDataModule(root=str(ml100k_root), cache=False).fingerprint  # cached or not
    assert a != MovieLensDataModule(root=str(ml100k_root), split="u2").fingerprint
    assert a != MovieLensDataModule(root=str(ml100k_root), seed=7).fingerprint  # other validation edges
    write_ml100k(tmp_path / "other", seed=5)
    assert a != MovieLensDataModule(root=str(tmp_path / "other")).fingerprint


def test_state_dict_continues_the_training_shuffle(ml100k_root):
    dm = MovieLensDataModule(root=str(ml100k_root), batch_size=16)
    first = [batch.users for batch in dm.train_dataloader()]
    state = dm.state_dict()
    second = [batch.users for batch in dm.train_dataloader()]
    resumed = MovieLensDataModule(root=str(ml100k_root), batch_size=16)
    resumed.load_state_dict(state)
    assert state["data_fingerprint"] == resumed.fingerprint
    assert all(torch.equal(a, b) for a, b in zip(second, [batch.users for batch in resumed.train_dataloader()]))
    assert not all(torch.equal(a, b) for a, b in zip(first, second))  # each epoch is a fresh permutation


def test_ratio_split_in_the_data_module(ml100k_root):
    dm = MovieLensDataModule(root=str(ml100k_root), split="ratio", ratios=(0.8, 0.1, 0.1), seed=1)
    data = dm.data
    # 24 synthetic users with 12 ratings each: floor(1.2) = 1 to validation and to test, 10 to training.
    assert (len(data.train.ratings), len(data.val.ratings), len(data.test.ratings)) == (240, 24, 24)
    assert torch.bincount(data.test.users, minlength=24).tolist() == [1] * 24
    assert not (_pairs(data.train) | _pairs(data.val)) & _pairs(data.test)
    again = MovieLensDataModule(root=str(ml100k_root), split="ratio", seed=1).data  # from the cache
    assert _pairs(again.test) == _pairs(data.test)
    with pytest.raises(ValueError, match="--data.ratios must be three shares"):
        MovieLensDataModule(root=str(ml100k_root), split="ratio", ratios=(0.5, 0.5))
    # The remainder to test: 12 ratings a user -> floor(9.6) = 9 training, 1 validation, 2 test; the
    # rule is part of the data's identity (its own cache entry), the default rule is not written into it.
    rest = MovieLensDataModule(root=str(ml100k_root), split="ratio", seed=1, ratio_remainder="test")
    assert (len(rest.data.train.ratings), len(rest.data.val.ratings), len(rest.data.test.ratings)) == (216, 24, 48)
    assert rest.fingerprint != dm.fingerprint and _pairs(rest.data.train) <= _pairs(data.train)
    assert "ratio_remainder" not in split_identity(dict(dm.hparams))
    assert split_identity(dict(rest.hparams))["ratio_remainder"] == "test"
    with pytest.raises(ValueError, match="--data.ratio_remainder must be one of train, test"):
        MovieLensDataModule(root=str(ml100k_root), split="ratio", ratio_remainder="val")


def test_implicit_threshold_keeps_only_positives_before_splitting(ml100k_root):
    raw = np.loadtxt(ml100k_root / "ml-100k" / "u.data", dtype=np.int64)
    base = np.loadtxt(ml100k_root / "ml-100k" / "u1.base", dtype=np.int64)
    test = np.loadtxt(ml100k_root / "ml-100k" / "u1.test", dtype=np.int64)
    dm = MovieLensDataModule(root=str(ml100k_root), split="u1", implicit_threshold=4)
    data = dm.data
    assert len(data.train.ratings) + len(data.val.ratings) == int((base[:, 2] >= 4).sum())
    assert len(data.test.ratings) == int((test[:, 2] >= 4).sum())
    assert all(bool((part.ratings >= 4).all()) for part in (data.train, data.val, data.test))
    assert dm.graph.num_ratings == len(data.train.ratings)  # the graph and the sampler see positives only
    # The ratio split cuts each user's positives (RecBole's rounding, see ratio_counts), not their ratings.
    ratio = MovieLensDataModule(root=str(ml100k_root), split="ratio", implicit_threshold=4, seed=0).data
    per_user = np.bincount(raw[raw[:, 2] >= 4, 0] - 1, minlength=24)
    assert per_user.sum() < len(raw)
    assert torch.bincount(ratio.test.users, minlength=24).tolist() == ratio_counts(per_user, (0.8, 0.1, 0.1))[2].tolist()
    assert len(ratio.train.ratings) + len(ratio.val.ratings) + len(ratio.test.ratings) == int(per_user.sum())
    # Part of the data's identity: another threshold is another cache entry and another fingerprint.
    plain = MovieLensDataModule(root=str(ml100k_root), split="u1")
    assert len(plain.data.test.ratings) == len(test) and plain.fingerprint != dm.fingerprint


def test_bad_implicit_threshold(ml100k_root):
    with pytest.raises(ValueError, match=r"--data.implicit_threshold must be null \(every rating is a positive\) "
                                         r"or a rating, got '4'"):
        MovieLensDataModule(root=str(ml100k_root), implicit_threshold="4")
    for threshold in (0, 5.5):  # known to be off the scale once the data says what its scale is
        with pytest.raises(ValueError, match=rf"--data.implicit_threshold {threshold} is outside the ratings of "
                                             r"ml-100k \(1\.\.5\)"):
            MovieLensDataModule(root=str(ml100k_root), implicit_threshold=threshold, cache=False).data


def test_relevant_items_without_a_threshold_are_every_held_out_rating_negative_ones_too(tmp_path):
    from movielens_gnn.tasks import RankingModel

    path = tmp_path / "scores.csv"
    rows = [(u, i, (u + i) % 5 - 2) for u in range(1, 13) for i in range(1, 11) if (u * i) % 3]  # ratings -2..2
    path.write_text("user_id,item_id,rating\n" + "".join(f"{u},{i},{r}\n" for u, i, r in rows))
    dm = MovieLensDataModule(root=str(tmp_path), dataset="csv", path=str(path), split="random", cache=False)
    test = dm.data.test
    users = torch.unique(test.users)
    assert int(dm.relevant_items(users, None).sum()) == len(test.ratings)  # the ranking task's default
    assert int(dm.relevant_items(users, 0.0).sum()) == int((test.ratings >= 0).sum()) < len(test.ratings)
    assert RankingModel(num_users=3, num_items=3).hparams.relevance_threshold is None


def test_split_settings_this_split_does_not_use_are_warned_about(tmp_path, caplog):
    caplog.set_level("WARNING")
    MovieLensDataModule(root=str(tmp_path), test_fraction=0.1)  # u1 has its own test part
    MovieLensDataModule(root=str(tmp_path), split="ratio", test_fraction=0.3, val_fraction=0.2)
    MovieLensDataModule(root=str(tmp_path), split="random", test_fraction=0.1, ratios=[0.8, 0.1, 0.1])  # all used/default
    MovieLensDataModule(root=str(tmp_path), split="random", val_strategy="users", val_user_fraction=0.3)
    assert [r.getMessage() for r in caplog.records] == [
        "--data.test_fraction has no effect on --data.split u1: ignored.",
        "--data.test_fraction, --data.val_fraction have no effect on --data.split ratio: ignored."]
