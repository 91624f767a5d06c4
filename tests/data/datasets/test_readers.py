from __future__ import annotations

import numpy as np
import pytest

from movielens_gnn.data.datamodule import IdIndex
from movielens_gnn.data.datasets import readers


@pytest.mark.parametrize("ids", [np.array([7, 3, 7, 120, 3, 5]), np.array([10**12, 4, 10**12, 9])])  # table; sort
def test_id_index_maps_ids_to_sorted_positions(ids):
    index = IdIndex(ids)
    expected = np.unique(ids)
    assert index.ids.tolist() == expected.tolist()
    assert index(ids).tolist() == np.searchsorted(expected, ids).tolist()


def _first_duplicate(users, items):
    """The row of the first pair that repeats an earlier one, in file order (what the error names)."""
    repeats = readers.repeated_rows(users, items)
    return int(repeats.min()) if len(repeats) else None


def test_first_duplicate_in_file_order_sorted_or_not():
    users, items = np.array([1, 1, 2, 2, 3]), np.array([4, 5, 1, 1, 1])
    assert _first_duplicate(users, items) == 3  # sorted file: the neighbour test
    assert _first_duplicate(users[::-1].copy(), items[::-1].copy()) == 2  # unsorted: by stable sort
    assert _first_duplicate(np.array([3, 1, 2]), np.array([1, 1, 1])) is None
    assert sorted(readers.repeated_rows(np.array([1, 2, 1, 2, 2]), np.array([2, 2, 2, 2, 2])).tolist()) == [2, 3, 4]


def test_first_duplicate_with_ids_whose_pair_key_would_wrap_in_int64():
    # 2^32 * (2^32 + 1) wraps: distinct pairs collided (and the caller found no earlier equal line).
    users, items = np.array([0, 2**32, 7]), np.array([5, 5, 2**32 - 1])
    assert _first_duplicate(users, items) is None
    assert _first_duplicate(np.append(users, 2**32), np.append(items, 5)) == 3
    big = 2**53 - 1  # the largest id your own file may hold
    assert _first_duplicate(np.array([big, 1, big]), np.array([big, big, big])) == 2
    assert _first_duplicate(np.array([-1, 0, -1]), np.array([3, 3, 2])) is None  # negative ids too


def test_unknown_ids():
    assert readers.unknown_ids(np.array([5, 1, 9, 2]), np.array([9, 1, 2])).tolist() == [True, False, False, False]
    assert readers.unknown_ids(np.array([1]), np.array([], dtype=np.int64)).tolist() == [True]


def test_line_number_skips_blank_lines_and_header(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("a,b\n1,2\n\n\n3,4\n5,6\n")
    assert [readers.line_number(path, row, header=True) for row in range(3)] == [2, 5, 6]


def test_a_repeated_id_names_both_lines_and_what_to_do():
    import pandas as pd

    frame = pd.DataFrame({"item_id": [4, 9, 7, 9]})
    frame.attrs["lines"] = np.array([2, 3, 5, 6])  # a header, and a title spanning lines 3-4
    with pytest.raises(ValueError, match=r"^movies\.csv line 6: item_id 9 appears twice \(also on line 3\)\. Remove one of "
                                         r"the two lines, or restore the original file\.$"):
        readers.check_unique(frame, "item_id", "movies.csv")
    readers.check_unique(frame.iloc[:3], "item_id", "movies.csv")  # no repeat: nothing raised


def test_a_non_numeric_field_is_found_chunk_by_chunk_with_its_line(tmp_path, monkeypatch):
    # The text re-read that names the bad line goes a chunk at a time (ml-32m as strings is GiBs): the
    # line number must count the chunks before it.
    monkeypatch.setattr(readers, "TEXT_CHUNK", 2)
    path = tmp_path / "r.csv"
    lines = [f"{u},{u + 1},4" for u in range(1, 8)]
    lines[5] = "6,7,four"
    path.write_text("u,i,r\n" + "\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"r\.csv line 7: rating must be a number, got 'four'\. Fix or remove"):
        readers.read_numeric_table(path, ["user", "item", "rating"], [0, 1, 2], ",", header=True)
