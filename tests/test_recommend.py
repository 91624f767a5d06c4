from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from movielens_gnn.cli import main
from movielens_gnn.recommend import POPULAR, load_for_inference, recommend, render
from tests.synthetic import LATIN1_TITLE
from tests.test_cli import _args

COLD_USER = 5


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A checkpoint trained 3 epochs on synthetic data in which user 5 has no training ratings."""
    from tests.synthetic import write_ml100k

    tmp = tmp_path_factory.mktemp("recommend")
    root = tmp / "data"
    raw = write_ml100k(root)
    base = (raw / "u1.base").read_text().splitlines(keepends=True)
    cold = [line for line in base if line.split("\t")[0] == str(COLD_USER)]
    (raw / "u1.base").write_text("".join(line for line in base if line not in cold))
    (raw / "u1.test").write_text((raw / "u1.test").read_text() + "".join(cold))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)
        fit = main(_args("fit", "gcn_dot.yaml", root, "--trainer.max_epochs", "3"))
    return Path(fit.trainer.checkpoint_callback.best_model_path), root


def _train_pairs(root: Path) -> set[tuple[int, int]]:
    lines = (root / "ml-100k" / "u1.base").read_text().splitlines()
    return {(int(u), int(i)) for u, i, *_ in (line.split("\t") for line in lines)}


def test_top_k_excludes_training_items_and_has_titles(trained, capsys):
    ckpt, root = trained
    text = main(["recommend", "--ckpt_path", str(ckpt), "--user", "1,2,3", "--k", "5", "--format", "csv"])
    assert capsys.readouterr().out == text
    frame = pd.read_csv(io.StringIO(text))
    assert list(frame.columns) == ["user_id", "rank", "movie_id", "title", "year", "genres", "predicted_rating", "source"]
    assert len(frame) == 15 and frame.groupby("user_id")["rank"].apply(list).tolist() == [[1, 2, 3, 4, 5]] * 3
    assert not {(u, i) for u, i in zip(frame.user_id, frame.movie_id)} & _train_pairs(root)
    assert frame.predicted_rating.between(1, 5).all() and (frame.source == "model").all()
    for _, group in frame.groupby("user_id"):
        assert group.predicted_rating.is_monotonic_decreasing
    titles = dict(zip(frame.movie_id, frame.title))
    assert all(title.startswith("Movie ") or title == LATIN1_TITLE for title in titles.values())


def test_json_and_table_formats(trained, capsys):
    ckpt, _ = trained
    rows = json.loads(main(["recommend", "--ckpt_path", str(ckpt), "--user", "2", "--k", "3", "--format", "json"]))
    assert [r["rank"] for r in rows] == [1, 2, 3] and {"title", "year", "genres"} <= rows[0].keys()
    # Stars as printed in the CSV: three decimals, no float32 tail (4.978000164031982).
    assert all(r["predicted_rating"] == round(r["predicted_rating"], 3) for r in rows)
    raw = main(["recommend", "--ckpt_path", str(ckpt), "--user", "2", "--k", "3", "--format", "json"])
    assert raw.endswith("]\n")  # a whole last line, as the CSV and the table end
    assert all(len(line.split(".")[-1].rstrip(",")) <= 3 for line in raw.splitlines() if '"predicted_rating"' in line)
    table = main(["recommend", "--ckpt_path", str(ckpt), "--user", "2", "--k", "3"])
    assert table.startswith("Top 3 for user 2\n") and rows[0]["title"] in table


def test_json_years_are_numbers_and_null_where_the_title_has_none():
    frame = pd.DataFrame({"user_id": [7, 7], "rank": [1, 2], "movie_id": [50, 267], "title": ["Star Wars (1977)", "unknown"],
                          "year": ["1977", ""], "genres": ["Action|Sci-Fi", ""], "predicted_rating": [4.5, 3.25],
                          "source": ["model", "model"]})
    rows = json.loads(render(frame, "json"))
    assert [r["year"] for r in rows] == [1977, None] and rows[0]["movie_id"] == 50 and rows[1]["predicted_rating"] == 3.25
    assert pd.read_csv(io.StringIO(render(frame, "csv")), keep_default_na=False)["year"].astype(str).tolist() == ["1977", ""]


def test_user_without_training_ratings_gets_labelled_popular_fallback(trained):
    ckpt, root = trained
    model, dm = load_for_inference(ckpt)
    frame = recommend(model, dm, [COLD_USER], k=4)
    assert (frame.source == POPULAR).all()
    counts = pd.Series([i for _, i in _train_pairs(root)]).value_counts()
    # The four most rated movies; equal counts in ascending id order, as the ranking metrics break ties.
    expected = sorted(counts.index, key=lambda movie: (-counts[movie], movie))[:4]
    assert frame.movie_id.tolist() == expected


def test_a_repeated_user_gets_one_list_of_movies_they_did_not_rate(trained):
    # The known-items mask gave the first copy of a repeated user an empty row: labelled "popular" and
    # listing movies the user had rated.
    ckpt, root = trained
    model, dm = load_for_inference(ckpt)
    frame = recommend(model, dm, [2, 1, 2], k=3)
    assert frame.user_id.tolist() == [2, 2, 2, 1, 1, 1] and (frame.source != POPULAR).all()
    assert not {(u, i) for u, i in zip(frame.user_id, frame.movie_id)} & _train_pairs(root)
    users = torch.tensor([1, 0, 1])
    mask = dm.known_items(users)
    assert torch.equal(mask[0], mask[2]) and torch.equal(mask[0], dm.known_items(torch.tensor([1]))[0])
    assert mask[0].any()


def test_a_diverged_model_is_refused_not_ranked_by_index(trained):
    ckpt, _ = trained
    model, dm = load_for_inference(ckpt)
    with torch.no_grad():
        model.encoder.item_embedding.weight[3] = float("nan")
    with pytest.raises(ValueError, match=r"scores movies as NaN for user\(s\) \[1, 2\]: its weights hold NaN"):
        recommend(model, dm, [1, 2], k=4)


def test_messages_listing_ten_users_say_how_many_more(trained, caplog):
    ckpt, _ = trained
    model, dm = load_for_inference(ckpt)
    with caplog.at_level("WARNING", logger="movielens_gnn.recommend"):
        frame = recommend(model, dm, list(range(1, 25)), k=30)  # 30 movies: every user rated some
    assert len(frame) < 24 * 30
    warning = next(r.getMessage() for r in caplog.records if "unrated movies" in r.getMessage())
    # 23 users (user 5, with no training ratings, gets the popular list of all 30): ten listed, and the rest counted.
    assert warning.count(" (") == 10 and "11 (20) and 13 more have only that many unrated movies" in warning
    with pytest.raises(ValueError, match=r"Unknown user id\(s\) \[100, 101, .*, 109\] and 2 more; this data"):
        recommend(model, dm, list(range(100, 112)), k=3)


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--user", "999"], "Unknown user id(s) [999]; this data has 24 users with ids 1..24"),
     (["--user", "1", "--k", "0"], "--k must be at least 1"),
     (["--user", "one"], "--user takes user ids separated by commas (1,2,3), `all`, or @FILE of ids")],
)
def test_bad_requests_exit_with_one_message(trained, capsys, extra, message):
    ckpt, _ = trained
    with pytest.raises(SystemExit) as exit_info:
        main(["recommend", "--ckpt_path", str(ckpt), *extra])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_checkpoint_for_other_data_is_rejected(trained, tmp_path, capsys):
    from tests.synthetic import write_ml100k

    ckpt, _ = trained
    write_ml100k(tmp_path / "other", num_users=30)
    args = ["recommend", "--ckpt_path", str(ckpt), "--user", "1", "--data.root", str(tmp_path / "other"),
            "--data.cache_dir", str(tmp_path / "cache")]
    with pytest.raises(SystemExit):
        main(args)
    err = capsys.readouterr().err
    assert f"error: The ratings under {tmp_path / 'other'} are not those the checkpoint {ckpt} was trained on" in err
    assert "or pass --data.allow_mismatch true to use this data on purpose." in err
    # The advice works as given, and as a bare flag; even on purpose, a model for other user/item counts
    # cannot score them.
    for flag in (["--data.allow_mismatch", "true"], ["--data.allow_mismatch"]):
        with pytest.raises(SystemExit):
            main([*args, *flag])
        assert "graph has 30 users and 30 items; this model was built for 24 and 30" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*args, "--data.allow_mismatch", "maybe"])
    assert "argument --data.allow_mismatch: invalid boolean value: 'maybe'" in capsys.readouterr().err


def test_year_prefers_the_title():
    import pandas as pd

    from movielens_gnn.data.datasets.base import year_of

    titles = pd.Series(["Fargo (1996)", "Untitled", "City of Lost Children, The (Cité des enfants perdus, La) (1995) "])
    assert year_of(titles).tolist() == ["1996", "", "1995"]


def test_user_file_with_a_byte_order_mark_lines_and_spaces(tmp_path):
    from movielens_gnn.recommend import parse_users

    path = tmp_path / "ids.txt"
    path.write_bytes("\ufeff1\r\n2 3\t4,5\n\n".encode("utf-8"))
    assert parse_users(f"@{path}") == [1, 2, 3, 4, 5]
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ValueError, match=r"--user needs at least one user id \(or `all`\); @.*empty\.txt has none\.$"):
        parse_users(f"@{tmp_path / 'empty.txt'}")


def test_a_relative_data_root_is_kept_absolute_so_the_checkpoint_works_from_another_folder(tmp_path, monkeypatch):
    from tests.synthetic import write_ml100k

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    write_ml100k(work / "mydata")
    elsewhere.mkdir()
    monkeypatch.chdir(work)
    fit = main(_args("fit", "gcn_dot.yaml", "mydata", "--trainer.max_epochs", "1"))
    assert fit.datamodule.hparams.root == str(work / "mydata")
    ckpt = Path(fit.trainer.checkpoint_callback.best_model_path)
    monkeypatch.chdir(elsewhere)  # "mydata" here would be a folder that does not exist
    model, dm = load_for_inference(ckpt)
    assert dm.dataset.root == work / "mydata" and len(recommend(model, dm, [1], k=2)) == 2
    # Taken elsewhere with its data beside it (another machine, a copied project): the path as typed serves.
    moved = tmp_path / "moved"
    (work / "mydata").rename(tmp_path / "gone")
    moved.mkdir()
    (tmp_path / "gone").rename(moved / "mydata")
    monkeypatch.chdir(moved)
    model, dm = load_for_inference(ckpt)
    assert dm.dataset.root == Path("mydata") and len(recommend(model, dm, [1], k=2)) == 2
