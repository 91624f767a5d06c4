"""fit -> test -> recommend on the ml-1m format, a half-star release and a CSV file of one's own."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
import torch

from movielens_gnn.cli import main
from movielens_gnn.data.datamodule import EdgeBatch
from movielens_gnn.data.datasets.base import HALF_STARS
from movielens_gnn.recommend import main as recommend_main
from tests.conftest import REPO
from tests.formats import LATIN1_TITLE, WRITERS, ratings_table

QUIET = ["--trainer.enable_model_summary", "false", "--trainer.enable_progress_bar", "false"]


def _round_trip(tmp_path: Path, data_args: list[str], config: str = "gcn_dot.yaml", epochs: int = 3):
    fit = main(["fit", "--config", str(REPO / "configs" / config), *data_args, *QUIET,
                "--trainer.max_epochs", str(epochs)])
    best = fit.trainer.checkpoint_callback.best_model_path
    test = main(["test", "--config", str(REPO / "configs" / config), *data_args, *QUIET, "--ckpt_path", best])
    return fit, test, best


def test_ml1m_fit_test_recommend(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    WRITERS["ml-1m"](tmp_path / "data")
    fit, test, best = _round_trip(tmp_path, ["--data.dataset", "ml-1m", "--data.root", str(tmp_path / "data"),
                                             "--data.split", "random", "--model.side_features", "true"])
    assert fit.model.hparams.num_users == 20 and fit.model.hparams.num_items == 26
    assert fit.model.hparams.user_feature_dim == 30 and fit.model.hparams.item_feature_dim == 18
    assert "test_rmse" in test.trainer.callback_metrics
    capsys.readouterr()
    text = recommend_main(["--ckpt_path", best, "--user", "3", "--k", "5", "--format", "csv"])
    frame = pd.read_csv(io.StringIO(text))
    dm = test.datamodule
    known = dm.known_items(torch.searchsorted(dm.data.user_ids, torch.tensor([3])))[0]
    unseen_ids = set(dm.data.item_ids[~known].tolist())
    assert len(frame) == 5 and set(frame.movie_id) <= unseen_ids  # the dataset's own (gapped) movie ids
    titles = dm.side.items.loc[frame.movie_id, "title"].tolist()
    assert frame.title.tolist() == titles and frame.predicted_rating.between(1, 5).all()
    assert LATIN1_TITLE in set(dm.side.items.title)


def test_half_star_release_with_rating_relations(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    WRITERS["ml-latest-small"](tmp_path / "data")
    fit = main(["fit", "--config", str(REPO / "configs" / "gcn_dot.yaml"), "--data.dataset", "ml-latest-small",
                "--data.root", str(tmp_path / "data"), "--data.split", "random", "--model.rating_relations", "true",
                *QUIET, "--trainer.fast_dev_run", "true"])
    assert fit.model.hparams.rating_values == list(HALF_STARS) and fit.model.rating_range == (0.5, 5.0)
    assert fit.model.encoder.layers[0].num_relations == 10
    model = fit.model.eval()
    users, items = torch.arange(20).repeat_interleave(26), torch.arange(26).repeat(20)
    with torch.no_grad():
        raw = model(users, items)
        clamped = model.predict_step(EdgeBatch(users, items, torch.zeros(len(users))), 0)
    torch.testing.assert_close(clamped, raw.clamp(0.5, 5.0))  # the half-star scale's range, not 1..5


def test_csv_fit_test_recommend(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rows = ratings_table(half_stars=True, user_gaps=True)
    path = tmp_path / "my ratings.tsv"
    path.write_text("member\tfilm\tstars\twhen\n" + "".join(f"{int(u)}\t{int(i)}\t{r:g}\t{int(t)}\n" for u, i, r, t in rows))
    items = tmp_path / "films.tsv"
    items.write_text("film\ttitle\tgenres\n" + "".join(f"{int(i)}\tFilm {int(i)} (2001)\tDrama\n" for i in set(rows[:, 1])))
    data_args = ["--data.dataset", "csv", "--data.path", str(path), "--data.separator", "\t",
                 "--data.columns.user", "member", "--data.columns.item", "film", "--data.columns.rating", "stars",
                 "--data.columns.timestamp", "when", "--data.items_path", str(items), "--data.split", "temporal",
                 "--data.root", str(tmp_path / "data")]
    fit, test, best = _round_trip(tmp_path, data_args, config="lightgcn_bpr.yaml")
    assert fit.model.hparams.num_users == 20 and "test_ndcg@10" in test.trainer.callback_metrics
    capsys.readouterr()
    user = int(rows[0, 0])
    frame = pd.read_csv(io.StringIO(recommend_main(["--ckpt_path", best, "--user", str(user), "--format", "csv"])))
    assert len(frame) == 10 and (frame.title == [f"Film {m} (2001)" for m in frame.movie_id]).all()
    rated = set(rows[rows[:, 0] == user, 1].astype(int).tolist())
    test_items = set(test.datamodule.data.item_ids[test.datamodule.data.test.items[
        test.datamodule.data.test.users == int(torch.searchsorted(test.datamodule.data.user_ids, torch.tensor(user)))]].tolist())
    assert not (set(frame.movie_id) & (rated - test_items))  # nothing rated in training or validation
    # Other ratings in a file of the same shape: the advice names the file's option, not --data.root.
    changed = tmp_path / "changed.tsv"
    lines = path.read_text().splitlines(keepends=True)
    first = lines[1].split("\t")
    lines[1] = "\t".join([first[0], first[1], "0.5" if first[2] != "0.5" else "1", first[3]])
    changed.write_text("".join(lines))
    with pytest.raises(SystemExit):
        main(["test", "--ckpt_path", best, *[changed.as_posix() if a == str(path) else a for a in data_args], *QUIET])
    err = capsys.readouterr().err
    assert f"error: The ratings in {changed} are not those the checkpoint {best} was trained on" in err
    assert "Point --data.path to the data it was trained on, or pass --data.allow_mismatch true" in err
    # Another dataset on purpose: the checkpoint's own file is not carried over to it (it was: "Drop --data.path",
    # an option never typed); what stops it is that its weights do not fit.
    from tests.synthetic import write_ml100k

    write_ml100k(tmp_path / "ml")
    with pytest.raises(SystemExit):
        main(["test", "--ckpt_path", best, "--data.dataset", "ml-100k", "--data.root", str(tmp_path / "ml"),
              "--data.allow_mismatch", "true", *QUIET])
    err = capsys.readouterr().err
    assert "--data.path" not in err and "was trained for 20 users" in err
    # A config's relative path (a run's config.yaml keeps it as typed) from another folder: the advice is the
    # file the checkpoint was trained on, not --data.root.
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(SystemExit):
        main(["test", "--ckpt_path", best, *["my ratings.tsv" if a == str(path) else a for a in data_args], *QUIET])
    err = capsys.readouterr().err
    assert f"The checkpoint was trained on the ratings file {path}: pass --data.path '{path}'" in err
    monkeypatch.chdir(tmp_path)
    # The files moved: recommend and export take --data.path / --data.items_path as test does.
    moved = tmp_path / "moved"
    moved.mkdir()
    path.rename(moved / path.name)
    items.rename(moved / items.name)
    with pytest.raises(FileNotFoundError, match=r"--data\.path .*my ratings\.tsv is not a file; expected your ratings.*"
                                                r"That is where the checkpoint .* was trained; if the data has moved, "
                                                r"pass --data\.path \(and --data\.items_path\) where it is now"):
        recommend_main(["--ckpt_path", best, "--user", str(user)])
    args = ["--ckpt_path", best, "--data.path", str(moved / path.name), "--data.items_path", str(moved / items.name)]
    again = pd.read_csv(io.StringIO(recommend_main([*args, "--user", str(user), "--format", "csv"])))
    pd.testing.assert_frame_equal(again, frame)
    from movielens_gnn.export import main as export_main

    assert "Exported RankingModel" in export_main([*args, "--out", str(tmp_path / "export")])


def test_interactions_without_a_rating_column_train_the_ranking_task(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rows = ratings_table(user_gaps=True)
    path = tmp_path / "clicks.csv"
    path.write_text("user,movie\n" + "".join(f"{int(u)},{int(i)}\n" for u, i, _, _ in rows))
    data_args = ["--config", str(REPO / "configs" / "data" / "csv.yaml"), "--data.path", str(path),
                 "--data.columns.user", "user", "--data.columns.item", "movie", "--data.columns.rating", "null",
                 "--data.root", str(tmp_path / "data")]
    fit, test, _ = _round_trip(tmp_path, data_args, config="mf_bpr.yaml", epochs=1)
    assert fit.datamodule.dataset.columns.rating is None and list(fit.datamodule.rating_values) == [1.0]
    assert "test_ndcg@10" in test.trainer.callback_metrics
    with pytest.raises(SystemExit):  # nothing to predict: the rating task says which configs rank
        main(["fit", "--config", str(REPO / "configs" / "gcn_dot.yaml"), *data_args, *QUIET])
    assert "Train a ranking config for top-K lists" in capsys.readouterr().err


@pytest.mark.parametrize("config", sorted(p.name for p in (REPO / "configs" / "data").glob("*.yaml")))
def test_data_configs_compose_with_a_model_config(tmp_path, monkeypatch, config):
    from tests.synthetic import write_ml100k

    monkeypatch.chdir(tmp_path)
    name = config.removesuffix(".yaml")
    root = tmp_path / "data"
    if name == "ml-100k":
        write_ml100k(root)
    elif name == "csv":  # the config reads ratings.csv in the working directory
        rows = ratings_table()
        (tmp_path / "ratings.csv").write_text("user_id,item_id,rating\n" + "".join(
            f"{int(u)},{int(i)},{int(r)}\n" for u, i, r, _ in rows))
    else:
        WRITERS[name](root)
    cli = main(["fit", "--config", str(REPO / "configs" / "gcn_dot.yaml"), "--config", str(REPO / "configs" / "data" / config),
                "--data.root", str(root), *QUIET, "--trainer.fast_dev_run", "true"])
    assert cli.datamodule.dataset.NAME == name
    assert cli.datamodule.split == ("u1" if name == "ml-100k" else "random")
    assert cli.model.hparams.num_items == (30 if name == "ml-100k" else 26)


def test_acceptance_flow_from_an_archive_only(tmp_path, monkeypatch, capsys):
    """As the issue's check on the real ml-latest-small.zip: fit from a folder holding only the archive, then
    describe --format json reports its counts (here: the fixture archive, whose checksum the class expects)."""
    import hashlib
    import json

    from movielens_gnn.data.datasets.ml_latest_small import MovieLensLatestSmall
    from tests.formats import archive_of

    monkeypatch.chdir(tmp_path)
    source = WRITERS["ml-latest-small"](tmp_path / "source")
    root = tmp_path / "root"
    root.mkdir()
    payload = archive_of(source, root / "ml-latest-small.zip")
    monkeypatch.setattr(MovieLensLatestSmall, "ARCHIVE_MD5", hashlib.md5(payload).hexdigest())
    monkeypatch.setattr(MovieLensLatestSmall, "ARCHIVE_SIZE", len(payload))
    fit = main(["fit", "--config", str(REPO / "configs" / "gcn_dot.yaml"), "--data.dataset", "ml-latest-small",
                "--data.root", str(root), "--data.split", "random", *QUIET, "--trainer.max_epochs", "2"])
    assert fit.trainer.current_epoch == 2 and (root / "ml-latest-small" / "ratings.csv").is_file()
    capsys.readouterr()
    main(["describe", "--data.dataset", "ml-latest-small", "--data.root", str(root), "--format", "json"])
    facts = json.loads(capsys.readouterr().out)
    rows = ratings_table(half_stars=True, user_gaps=True)
    assert {k: facts[k] for k in ("dataset", "ratings", "users", "items", "items_listed")} == {
        "dataset": "ml-latest-small", "ratings": len(rows), "users": 20, "items": 26, "items_listed": 28}
    assert facts["rating_values"] == list(HALF_STARS) and facts["density"] == len(rows) / (20 * 26)
    assert sum(facts["rating_counts"].values()) == len(rows) and facts["user_columns"] == []


def test_describe_text_and_plots_on_half_stars(tmp_path, capsys):
    WRITERS["ml-10m"](tmp_path / "data")
    text = main(["describe", "--data.dataset", "ml-10m", "--data.root", str(tmp_path / "data"),
                 "--plots", str(tmp_path / "plots")])
    assert text.startswith(f"# MovieLens-10M at {tmp_path / 'data' / 'ml-10M100K'}")
    assert "scale: 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5" in text and "## Split random" in text
    assert "items: 26 rated (28 listed)" in text and "features: 0 per user, 19 per item" in text
    assert (tmp_path / "plots" / "rating_histogram.png").read_bytes()[:4] == b"\x89PNG"
