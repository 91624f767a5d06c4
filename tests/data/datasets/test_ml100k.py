from __future__ import annotations

import numpy as np
import pytest

from movielens_gnn.data.datasets.ml100k import MovieLens100K
from tests.synthetic import GENRES, LATIN1_TITLE, OCCUPATIONS


@pytest.fixture
def dataset(ml100k_root):
    return MovieLens100K(ml100k_root)


def _replace_line(path, number, text):
    lines = path.read_text(encoding="latin-1").splitlines(keepends=True)
    lines[number - 1] = text
    path.write_text("".join(lines), encoding="latin-1")


def test_load_parses_counts_ids_and_values(dataset):
    side, ratings = dataset.load()
    assert (len(side.users), len(side.items), len(ratings)) == (24, 30, 24 * 12)
    np.testing.assert_array_equal(side.users.index, np.arange(1, 25))
    first = dataset.raw_dir.joinpath("u.data").read_text().splitlines()[0].split("\t")
    assert (ratings.user_id[0], ratings.item_id[0], ratings.rating[0], ratings.timestamp[0]) == tuple(
        float(v) for v in first
    )
    assert ratings.rating.dtype == np.float32 and set(np.unique(ratings.rating)) <= {1, 2, 3, 4, 5}


def test_latin1_titles_and_side_information(dataset):
    side = dataset.read_side()
    assert side.items.loc[2, "title"] == LATIN1_TITLE
    assert side.genres == GENRES and side.categories["occupation"] == OCCUPATIONS
    assert side.items.loc[30, "release_date"] == ""
    assert len(side.items.loc[1, "genres"].split("|")) == 1 and side.items.loc[1, "genres"] in GENRES
    assert side.users.loc[3, "gender"] == "F" and side.users.loc[3, "age"] == 18 + 21


def test_features_keep_the_u_genre_order_and_demographics(dataset):
    side = dataset.read_side()
    ids = np.arange(1, 31)
    flags = dataset.item_features(side, ids)
    assert flags.shape == (30, len(GENRES)) and flags.sum(1).tolist() == [1.0] * 30
    assert GENRES[int(flags[0].argmax())] == side.items.loc[1, "genres"]
    users = dataset.user_features(side, np.arange(1, 25))
    assert users.shape == (24, 1 + 2 + len(OCCUPATIONS))
    assert users[2, 2] == 1.0 and users[2, 1] == 0.0  # user 3 is F: the second gender column
    assert abs(float(users[:, 0].mean())) < 1e-5  # z-scored age


def test_real_files_have_the_documented_counts(real_data_root):
    side, ratings = MovieLens100K(real_data_root).load()
    assert (len(side.users), len(side.items), len(ratings)) == (943, 1682, 100_000)
    assert len(side.genres) == 19 and len(side.categories["occupation"]) == 21
    assert side.items.title.str.contains("Misérables").any()
    assert ratings.rating.min() == 1 and ratings.rating.max() == 5


def test_missing_files_are_all_named(dataset):
    (dataset.raw_dir / "u.item").unlink()
    (dataset.raw_dir / "u.genre").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing u\.item, u\.genre"):
        dataset.load()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1\t2\t6\t881250949\n", r"u\.data line 3: rating must be an integer in 1\.\.5, got '6'"),
        ("1\t2\t0\t881250949\n", r"u\.data line 3: rating must be an integer in 1\.\.5, got '0'"),
        ("1\tabc\t3\t881250949\n", r"u\.data line 3: item_id must be an integer"),
        ("1\t2\t3\n", r"u\.data line 3: expected 4 tab-separated fields \(user_id, item_id, rating, timestamp\), got 3"),
        ("1\t2\t3\t881250949\t\n", r"u\.data line 3: expected 4 tab-separated fields .*, got 5"),  # trailing tab
        ("99\t2\t3\t881250949\n", r"u\.data line 3: user_id 99 is not in the id list"),
    ],
)
def test_malformed_ratings_name_file_and_line(dataset, line, message):
    _replace_line(dataset.raw_dir / "u.data", 3, line)
    with pytest.raises(ValueError, match=message):
        dataset.load()


def test_too_many_fields_is_reported(dataset):
    _replace_line(dataset.raw_dir / "u.data", 5, "1\t2\t3\t4\t5\n")
    with pytest.raises(ValueError, match=r"u\.data line 5: expected 4 tab-separated fields .*got 5"):
        dataset.load()


def test_duplicate_rating_is_reported(dataset):
    path = dataset.raw_dir / "u.data"
    first = path.read_text().splitlines()[0]
    _replace_line(path, 2, first + "\n")
    with pytest.raises(ValueError, match=r"u\.data line 2: user \d+ rated item \d+ twice \(also on line 1\)"):
        dataset.load()


def test_counts_must_match_u_info(dataset):
    (dataset.raw_dir / "u.info").write_text("24 users\n30 items\n999 ratings\n")
    with pytest.raises(ValueError, match="has 288 ratings; u.info says 999"):
        dataset.load()


def test_unknown_occupation_and_bad_age(dataset):
    _replace_line(dataset.raw_dir / "u.user", 4, "4|30|M|astronaut|12345\n")
    with pytest.raises(ValueError, match=r"u\.user line 4: occupation 'astronaut' is not one of administrator"):
        dataset.read_side()
    _replace_line(dataset.raw_dir / "u.user", 4, "4|old|M|artist|12345\n")
    with pytest.raises(ValueError, match=r"u\.user line 4: age must be an integer"):
        dataset.read_side()


def test_bad_genre_flag(dataset):
    path = dataset.raw_dir / "u.item"
    line = path.read_text(encoding="latin-1").splitlines()[6]
    _replace_line(path, 7, line[:-1] + "7\n")
    with pytest.raises(ValueError, match=r"u\.item line 7: Western must be an integer in 0\.\.1"):
        dataset.read_side()


def test_missing_split_file(dataset):
    (dataset.raw_dir / "u3.test").unlink()
    side = dataset.read_side()
    with pytest.raises(FileNotFoundError, match=r"u3\.test is missing"):
        dataset.read_split("u3", side)
