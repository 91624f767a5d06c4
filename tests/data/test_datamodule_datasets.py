"""The data module on every dataset: exact split sizes, id mapping, rating scale, cache, wrong splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from movielens_gnn.data.datamodule import MovieLensDataModule
from movielens_gnn.data.datasets import Columns
from movielens_gnn.data.datasets.base import HALF_STARS, WHOLE_STARS
from movielens_gnn.data.splits import ratio_counts
from tests.formats import WRITERS, ratings_table

NAMES = [*WRITERS, "csv"]


def _module(tmp_path, name: str, **settings) -> tuple[MovieLensDataModule, np.ndarray]:
    """The data module of fixture ``name`` and the fixture's raw rows (dataset ids)."""
    root = tmp_path / "data"
    if name == "csv":  # the ml-10m-like ratings as a file of one's own: semicolons, other column names
        rows = ratings_table(half_stars=True, user_gaps=True)
        path = tmp_path / "mine.csv"
        path.write_text("stamp;member;film;stars\n" + "".join(f"{int(t)};{int(u)};{int(i)};{r:g}\n" for u, i, r, t in rows))
        columns = Columns(user="member", item="film", rating="stars", timestamp="stamp")
        settings = dict(path=str(path), columns=columns, separator=";", **settings)
    else:
        WRITERS[name](root)
        rows = ratings_table(half_stars=name != "ml-1m", user_gaps=name != "ml-1m")
    return MovieLensDataModule(root=str(root), dataset=name, cache_dir=str(tmp_path / "cache"), **settings), rows


def _raw_triples(dm: MovieLensDataModule) -> set:
    data = dm.data
    out = set()
    for part in (data.train, data.val, data.test):
        out |= set(zip(data.user_ids[part.users].tolist(), data.item_ids[part.items].tolist(), part.ratings.tolist()))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_random_split_sizes_ids_and_scale(tmp_path, name):
    dm, rows = _module(tmp_path, name, split="random", test_fraction=0.1, seed=3)
    data = dm.data
    assert (len(data.test.ratings), len(data.val.ratings), len(data.train.ratings)) == (24, 11, 205)  # 240: 10%, then 5%
    assert data.user_ids.tolist() == sorted(set(rows[:, 0].astype(int).tolist()))  # gaps kept, sorted
    assert data.item_ids.tolist() == sorted(set(rows[:, 1].astype(int).tolist()))
    assert _raw_triples(dm) == {(int(u), int(i), float(r)) for u, i, r, _ in rows}
    half = name != "ml-1m"
    expected_scale = list(HALF_STARS if half else WHOLE_STARS)
    if name == "csv":
        expected_scale = sorted(set(rows[:, 2].tolist()))
    assert dm.rating_values == expected_scale
    assert dm.graph.num_relations == len(expected_scale)
    assert dm.user_feature_dim == (30 if name == "ml-1m" else 0)
    # The cache reloads the same data; the settings it was built with key it.
    again = MovieLensDataModule(root=dm.hparams.root, dataset=name, split="random", test_fraction=0.1, seed=3,
                                cache_dir=str(tmp_path / "cache"), **_csv_settings(dm))
    assert again.fingerprint == dm.fingerprint and again.rating_values == dm.rating_values
    assert dm.cache_path.is_file() and dm.cache_path.name.startswith(name)


def _csv_settings(dm: MovieLensDataModule) -> dict:
    if dm.hparams.dataset != "csv":
        return {}
    return {"path": dm.hparams.path, "columns": Columns(**dm.hparams.columns), "separator": dm.hparams.separator}


@pytest.mark.parametrize("name", NAMES)
def test_temporal_and_ratio_splits(tmp_path, name):
    temporal, _ = _module(tmp_path, name, split="temporal", test_fraction=0.2)
    data = temporal.data
    assert len(data.test.ratings) == 48
    ratio, rows = _module(tmp_path, name, split="ratio", seed=1)
    per_user = np.unique(rows[:, 0], return_counts=True)[1]
    train, val, test = ratio_counts(per_user, (0.8, 0.1, 0.1))
    for part, expected in ((ratio.data.train, train), (ratio.data.val, val), (ratio.data.test, test)):
        assert torch.bincount(part.users, minlength=len(per_user)).tolist() == expected.tolist()


@pytest.mark.parametrize("name", ["ml-1m", "ml-32m", "csv"])
def test_canonical_splits_are_ml100k_only(tmp_path, name):
    with pytest.raises(ValueError, match=rf"--data.split u1 is one of ml-100k's own split files; {name} has none. "
                                         rf"Valid splits for {name}: random, temporal, ratio"):
        _module(tmp_path, name, split="u1")


def test_implicit_threshold_on_half_stars(tmp_path):
    dm, rows = _module(tmp_path, "ml-10m", split="random", implicit_threshold=3.5)
    data = dm.data
    kept = int((rows[:, 2] >= 3.5).sum())
    assert len(data.train.ratings) + len(data.val.ratings) + len(data.test.ratings) == kept
    assert float(data.train.ratings.min()) >= 3.5
    with pytest.raises(ValueError, match=r"implicit_threshold 5.5 is outside the ratings of ml-10m \(0\.5\.\.5\)"):
        _module(tmp_path / "b", "ml-10m", split="random", implicit_threshold=5.5)[0].data


def test_csv_options_only_with_the_csv_dataset(tmp_path):
    with pytest.raises(ValueError, match=r"--data.path are for --data.dataset csv \(your own file\); ml-1m is read "
                                         r"from --data.root"):
        MovieLensDataModule(root=str(tmp_path), dataset="ml-1m", split="random", path="x.csv")
    with pytest.raises(ValueError, match=r"--data.dataset csv reads your own ratings file: pass --data.path FILE"):
        MovieLensDataModule(root=str(tmp_path), dataset="csv", split="random")


def test_temporal_needs_timestamps(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("user_id,item_id,rating\n" + "".join(f"{u},{i},{(u + i) % 5 + 1}\n" for u in range(6) for i in range(5)))
    dm = MovieLensDataModule(root=str(tmp_path), dataset="csv", path=str(path), split="temporal", cache=False)
    with pytest.raises(ValueError, match=r"--data.split temporal needs timestamps; .*plain\.csv has none"):
        dm.data


def test_a_handful_of_ratings_is_described_but_not_trained_on(tmp_path, capsys):
    """``describe`` reads a file too small to split into three parts; training on it (from the cache that
    describe wrote, too) is refused; any seed a generator takes is accepted."""
    from movielens_gnn.describe import main as describe_main

    path = tmp_path / "tiny.csv"
    path.write_text("user_id,item_id,rating\n1,2,3\n2,2,4\n")
    args = dict(root=str(tmp_path / "data"), dataset="csv", split="random", path=str(path))
    text = describe_main(["--data.root", args["root"], "--data.dataset", "csv", "--data.path", str(path),
                          "--format", "json"])
    assert __import__("json").loads(text)["ratings"] == 2
    with pytest.raises(ValueError, match=r"--data\.split random left the validation part of .*tiny\.csv empty "
                                         r"\(1 / 0 / 1 training / validation / test ratings\)"):
        MovieLensDataModule(**args).data
    assert MovieLensDataModule(**args, seed=2**32).seed == 2**32


def test_csv_cache_sees_the_ratings_file_change_beside_an_items_file_of_the_same_name(tmp_path, caplog):
    """Both files called data.csv: a fingerprint keyed by file name kept only the items file's, and an
    edited ratings file was served from the stale cache."""
    caplog.set_level("INFO")
    rows = ratings_table(half_stars=True, user_gaps=True)
    (tmp_path / "r").mkdir()
    (tmp_path / "i").mkdir()
    ratings, items = tmp_path / "r" / "data.csv", tmp_path / "i" / "data.csv"
    ratings.write_text("user_id,item_id,rating\n" + "".join(f"{int(u)},{int(i)},{r:g}\n" for u, i, r, _ in rows))
    items.write_text("item_id,title\n" + "".join(f"{int(i)},Film {int(i)} (2001)\n" for i in sorted(set(rows[:, 1]))))

    def module() -> MovieLensDataModule:
        return MovieLensDataModule(root=str(tmp_path / "data"), dataset="csv", path=str(ratings), items_path=str(items),
                                   split="random", cache_dir=str(tmp_path / "cache"))

    import hashlib

    legacy = tmp_path / "cache" / f"csv-{hashlib.sha256(str(ratings.resolve()).encode()).hexdigest()[:10]}-random.pt"
    legacy.parent.mkdir()
    legacy.write_bytes(b"an earlier version's cache of this file")
    first = module().data
    assert sum(len(getattr(first, part).ratings) for part in ("train", "val", "test")) == len(rows)
    assert not legacy.exists() and len(list(legacy.parent.glob("csv-*-random-*.pt"))) == 1  # replaced, not kept too
    ratings.write_text("".join(ratings.read_text().splitlines(keepends=True)[:-20]))
    caplog.clear()
    second = module().data
    assert "built from other versions of the raw files" in caplog.text
    assert sum(len(getattr(second, part).ratings) for part in ("train", "val", "test")) == len(rows) - 20
