"""The practitioner's path around training: the command list, progress lines, recommendations for every user
and for a new one, files of them, and exports."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from movielens_gnn.cli import COMMANDS, main
from movielens_gnn.export import main as export_main
from movielens_gnn.clock import process_seconds
from movielens_gnn import recommend as recommend_module
from movielens_gnn.recommend import load_for_inference
from movielens_gnn.recommend import main as recommend_main
from tests.conftest import REPO
from tests.synthetic import write_ml100k
from tests.test_cli import QUIET


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """Checkpoints of a rating (gcn_dot) and a hybrid ranking (lightgcn_ease) model on the synthetic ml-100k."""
    work = tmp_path_factory.mktemp("work")
    root = work / "data"
    write_ml100k(root)
    out = {"root": root}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        for config, epochs in (("gcn_dot", 5), ("lightgcn_ease", 3)):
            fit = main(["fit", "--config", str(REPO / "configs" / f"{config}.yaml"), "--data.root", str(root), *QUIET,
                        "--trainer.max_epochs", str(epochs)])
            out[config] = Path(fit.trainer.checkpoint_callback.best_model_path)
    return out


def test_help_lists_every_command_and_version(capsys):
    main(["--help"])
    text = capsys.readouterr().out
    for command in ("fit", "validate", "test", "predict", "recommend", "describe", "export"):
        assert f"\n  {command} " in text and command in COMMANDS
    main(["--version"])
    assert capsys.readouterr().out.strip() == f"movielens_gnn {__import__('movielens_gnn').__version__}"


def test_progress_lines_by_default_and_silenced(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    write_ml100k(tmp_path / "data")
    args = ["fit", "--config", str(REPO / "configs" / "gcn_dot.yaml"), "--data.root", str(tmp_path / "data"),
            "--trainer.enable_model_summary", "false", "--trainer.max_epochs", "5"]
    before_fit_s, start = process_seconds(), time.monotonic()
    with caplog.at_level(logging.INFO, logger="movielens_gnn"):
        fit = main(args)
    fit_s = time.monotonic() - start
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    # The first three epochs, then (runs this short) only the last one.
    assert [line.split()[1] for line in lines] == ["1/5", "2/5", "3/5", "5/5"]
    assert "train_loss" in lines[0] and "val_rmse" in lines[0] and "s/epoch" in lines[0]
    # gcn_dot.yaml measures training metrics every 5th epoch: later lines show epoch 0's loss and say so.
    losses = [line.split("val_rmse")[0].split("train_loss ")[1].split() for line in lines]
    assert losses[0] == [losses[0][0]] and losses[1:] == [[losses[0][0], "at", "epoch=0"]] * 3
    best = fit.trainer.checkpoint_callback.best_model_score.item()
    assert f"best {best:.4f}" in lines[-1]
    # And where the time went, once, at the end: the five epochs, and the start-up before them.
    timing = [r.getMessage() for r in caplog.records if r.getMessage().startswith("trained ")]
    assert len(timing) == 1 and re.fullmatch(
        r"trained 5 epochs in [\d.]+ s \([\d.]+ ms an epoch, validation and checkpoints included\); "
        # A long pytest session's start-up passes 5 s: causes found here then follow (scipy, in the DGL env).
        r"[\d.]+ s from process start to the first epoch(\. Slow start-up: .+)?", timing[0]), timing
    train_s, start_up_s = (float(x) for x in re.findall(r"([\d.]+) s\b", timing[0]))
    # Training fits inside the call; the start-up began before it, when this pytest process started.
    assert 0 < train_s <= fit_s + 0.05 and before_fit_s <= start_up_s <= before_fit_s + fit_s + 0.05
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="movielens_gnn"):
        main(args + ["--trainer.enable_progress_bar", "false"])
    assert not [r for r in caplog.records if r.getMessage().startswith(("epoch ", "trained "))]


def test_progress_line_of_an_epoch_that_early_stopping_ends(tmp_path, caplog):
    """EarlyStopping decides after the progress callback's epoch end: the final epoch's line comes at the end."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import EarlyStopping

    from movielens_gnn.progress import EpochLines

    class Flat(pl.LightningModule):  # a validation metric that never improves: stops after epoch index 1
        monitor = "val_rmse"

        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, batch_idx):
            return (self.weight - batch[0]).pow(2).sum()

        def validation_step(self, batch, batch_idx):
            self.log("val_rmse", 1.0)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(4, 1)), batch_size=4)
    trainer = pl.Trainer(max_epochs=10, logger=False, enable_checkpointing=False, enable_model_summary=False,
                         default_root_dir=tmp_path, accelerator="cpu", devices=1,
                         callbacks=[EpochLines(interval_s=1e9, first_epochs=1),
                                    EarlyStopping(monitor="val_rmse", patience=1)])
    with caplog.at_level(logging.INFO, logger="movielens_gnn"):
        trainer.fit(Flat(), data, data)
    assert trainer.current_epoch == 2  # two epochs ran
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(("epoch ", "trained "))]
    assert [line.split()[:2] for line in lines] == [["epoch", "1/10"], ["epoch", "2/10"], ["trained", "2"]], lines
    assert "val_rmse 1.0000  best 1.0000 at epoch=0" in lines[1]


def test_recommend_all_users_to_a_file(trained, tmp_path, capsys):
    out = tmp_path / "r.csv"
    text = recommend_main(["--ckpt_path", str(trained["gcn_dot"]), "--user", "all", "--k", "5", "--output", str(out)])
    assert text == f"Wrote {24 * 5} recommendations for 24 user(s) to {out}\n"
    frame = pd.read_csv(out)
    assert len(frame) == 24 * 5 and frame.groupby("user_id").size().eq(5).all()
    model, dm = load_for_inference(trained["gcn_dot"])
    users = torch.searchsorted(dm.data.user_ids, torch.tensor(frame.user_id.values))
    items = torch.searchsorted(dm.data.item_ids, torch.tensor(frame.movie_id.values))
    assert not dm.known_items(users)[torch.arange(len(frame)), items].any()  # nothing rated in training
    # The same as asking user by user (chunking does not change a list).
    capsys.readouterr()
    one = pd.read_csv(io.StringIO(recommend_main(["--ckpt_path", str(trained["gcn_dot"]), "--user", "7", "--k", "5",
                                                  "--format", "csv"])))
    assert one.movie_id.tolist() == frame[frame.user_id == 7].movie_id.tolist()
    ids = tmp_path / "ids.txt"
    ids.write_text("3\n7\n")
    capsys.readouterr()
    listed = pd.read_csv(io.StringIO(recommend_main(["--ckpt_path", str(trained["gcn_dot"]), "--user", f"@{ids}",
                                                     "--k", "5", "--format", "csv"])))
    assert listed.user_id.unique().tolist() == [3, 7]
    with pytest.raises(ValueError, match=r"--output .*r\.txt: the extension says the format; use \.csv, \.json or \.parquet"):
        recommend_main(["--ckpt_path", str(trained["gcn_dot"]), "--user", "1", "--output", str(tmp_path / "r.txt")])
    # JSON to a file, as printed; a --format that disagrees with the file's extension is refused, not ignored.
    printed = recommend_main(["--ckpt_path", str(trained["gcn_dot"]), "--user", "3,7", "--k", "5", "--format", "json"])
    recommend_main(["--ckpt_path", str(trained["gcn_dot"]), "--user", "3,7", "--k", "5", "--output", str(tmp_path / "r.json")])
    assert json.loads((tmp_path / "r.json").read_text()) == json.loads(printed)
    with pytest.raises(ValueError, match=r"--format json with --output .*r2\.csv: the file's extension says its format\. "
                                         r"Name the file r2\.json, or leave --format out"):
        recommend_main(["--ckpt_path", str(trained["gcn_dot"]), "--user", "1", "--format", "json",
                        "--output", str(tmp_path / "r2.csv")])
    assert not (tmp_path / "r2.csv").exists()


def test_recommend_to_parquet(trained, tmp_path, monkeypatch):
    pytest.importorskip("pyarrow", reason="Parquet output needs pyarrow (in the dev extra)")
    args = ["--ckpt_path", str(trained["lightgcn_ease"]), "--user", "all", "--k", "4"]
    recommend_main([*args, "--output", str(tmp_path / "r.csv")])
    recommend_main([*args, "--output", str(tmp_path / "r.parquet")])
    table, parquet = pd.read_csv(tmp_path / "r.csv"), pd.read_parquet(tmp_path / "r.parquet")
    assert len(parquet) == 24 * 4 and list(parquet.columns) == list(table.columns)
    pd.testing.assert_frame_equal(parquet[["user_id", "rank", "movie_id"]], table[["user_id", "rank", "movie_id"]])
    assert parquet.title.tolist() == table.title.tolist()  # commas and non-ASCII titles survive
    # As if pyarrow were not installed (hiding it from sys.modules would break pandas, which uses it for strings).
    def missing():
        raise ModuleNotFoundError("No module named 'pyarrow'")

    monkeypatch.setattr(recommend_module, "_import_pyarrow", missing)
    with pytest.raises(ImportError, match=r"--output .*s\.parquet: Parquet needs pyarrow \(pip install pyarrow\), or write \.csv"):
        recommend_main([*args, "--output", str(tmp_path / "s.parquet")])
    assert not (tmp_path / "s.parquet").exists()


def test_new_user_fold_in_fits_the_ratings_and_skips_rated_movies(trained, capsys):
    model, dm = load_for_inference(trained["gcn_dot"])
    rated = {1: 5.0, 2: 1.0, 3: 4.0, 4: 2.0}
    items = torch.searchsorted(dm.data.item_ids, torch.tensor(list(rated)))
    scores = model.score_new_user(items, torch.tensor(list(rated.values())), steps=400)
    # The fitted user reproduces their own ratings' order, and much closer than the mean user does.
    fitted = scores[items]
    target = torch.tensor(list(rated.values()))
    assert torch.argsort(fitted).tolist() == torch.argsort(target).tolist()
    capsys.readouterr()
    text = recommend_main(["--ckpt_path", str(trained["gcn_dot"]), "--ratings", "1:5,2:1,3:4,4:2", "--k", "8",
                           "--format", "csv"])
    frame = pd.read_csv(io.StringIO(text))
    assert len(frame) == 8 and not set(frame.movie_id) & set(rated) and (frame.user_id == "new").all()
    order = torch.argsort(scores.masked_fill(torch.isin(torch.arange(len(scores)), items), float("-inf")), descending=True)
    assert frame.movie_id.tolist() == dm.data.item_ids[order[:8]].tolist()
    with pytest.raises(ValueError, match=r"--ratings names movie id\(s\) \[999\] that this data does not have"):
        recommend_main(["--ckpt_path", str(trained["gcn_dot"]), "--ratings", "999:5"])
    with pytest.raises(ValueError, match=r"--ratings takes movie:rating pairs"):
        recommend_main(["--ckpt_path", str(trained["gcn_dot"]), "--ratings", "5-4"])


def test_a_ranking_checkpoint_takes_bare_movie_ids_as_the_new_users_interactions(trained):
    args = ["--ckpt_path", str(trained["lightgcn_ease"]), "--k", "5", "--format", "csv"]
    bare = pd.read_csv(io.StringIO(recommend_main([*args, "--ratings", "1,2,3"])))
    top = pd.read_csv(io.StringIO(recommend_main([*args, "--ratings", "1:5,2:5,3:5"])))
    pd.testing.assert_frame_equal(bare, top)  # chosen movies count as liked as any: the top of the scale
    assert not set(bare.movie_id) & {1, 2, 3}


def test_a_ranking_checkpoint_says_it_does_not_weigh_the_stars_of_ratings(trained, caplog):
    args = ["--ckpt_path", str(trained["lightgcn_ease"]), "--k", "3", "--format", "csv"]
    with caplog.at_level("WARNING", logger="movielens_gnn.recommend"):
        recommend_main([*args, "--ratings", "1:5,2:4,3:3"])
        assert "whatever its stars" not in caplog.text  # nothing below the middle of the scale: nothing to warn about
        recommend_main([*args, "--ratings", "1:5,2:1,3:4,4:2"])
    assert "takes every movie in --ratings as one the user chose, whatever its stars: 2:1, 4:2 pull" in caplog.text


def test_a_new_user_who_rated_every_movie_gets_an_empty_list_and_a_warning(trained, caplog):
    model, dm = load_for_inference(trained["gcn_dot"])
    every = ",".join(f"{movie}:4" for movie in dm.data.item_ids.tolist())
    with caplog.at_level("WARNING", logger="movielens_gnn.recommend"):
        text = recommend_main(["--ckpt_path", str(trained["gcn_dot"]), "--ratings", every, "--format", "json"])
    assert text == "[]\n" and "the new user rated all but 0 movies; returning those" in caplog.text


def test_ranking_fold_in_moves_toward_the_rated_movies_neighbours():
    from movielens_gnn.models.graph import BipartiteGraph
    from movielens_gnn.tasks.ranking import RankingModel

    # Two groups of movies, 0-5 and 6-11, along two axes; users rate within one group.
    model = RankingModel(num_users=4, num_items=12, encoder="mf", embedding_dim=2)
    model.attach_graph(BipartiteGraph(torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 6, 7]), 4, 12))
    with torch.no_grad():
        items = torch.zeros(12, 2)
        items[:6, 0], items[6:, 1] = torch.linspace(1.0, 0.5, 6), torch.linspace(1.0, 0.5, 6)
        model.encoder.item_embedding.weight.copy_(items)
        model.encoder.user_embedding.weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]))
    scores = model.score_new_user(torch.tensor([7, 9]), torch.tensor([5.0, 4.0]))
    unrated = [i for i in torch.argsort(scores, descending=True).tolist() if i not in (7, 9)]
    assert set(unrated[:4]) <= set(range(6, 12))  # the other movies of the rated group come first


def test_export_refuses_other_ratings_unless_asked_as_the_message_says(trained, tmp_path):
    from movielens_gnn.checkpoint import CheckpointError

    write_ml100k(tmp_path / "other", seed=5)  # the same users and items, other ratings
    args = ["--ckpt_path", str(trained["gcn_dot"]), "--data.root", str(tmp_path / "other"),
            "--data.cache_dir", str(tmp_path / "cache")]
    with pytest.raises(CheckpointError, match=r"or pass --data\.allow_mismatch true to use this data on purpose\.$"):
        export_main([*args, "--out", str(tmp_path / "refused")])
    assert not (tmp_path / "refused").exists()
    export_main([*args, "--out", str(tmp_path / "asked"), "--data.allow_mismatch", "true"])
    assert json.loads((tmp_path / "asked" / "export.json").read_text())["users"] == 24


def test_export_round_trips_scores_and_ids(trained, tmp_path):
    for config in ("gcn_dot", "lightgcn_ease"):
        out = tmp_path / config
        export_main(["--ckpt_path", str(trained[config]), "--out", str(out)])
        manifest = json.loads((out / "export.json").read_text())
        model, dm = load_for_inference(trained[config])
        users_csv, items_csv = pd.read_csv(out / "users.csv"), pd.read_csv(out / "items.csv")
        assert users_csv.user_id.tolist() == dm.data.user_ids.tolist() and items_csv.item_id.tolist() == dm.data.item_ids.tolist()
        assert items_csv.title[1] == dm.side.items.loc[int(dm.data.item_ids[1]), "title"]
        u, i = np.load(out / "tower0_users.npy"), np.load(out / "tower0_items.npy")
        assert u.shape == (24, manifest["towers"][0]["dim"]) and i.shape == (30, manifest["towers"][0]["dim"])
        scores = u @ i.T
        if config == "gcn_dot":
            scores = scores + manifest["towers"][0]["mean"] + np.load(out / "tower0_user_bias.npy")[:, None] \
                + np.load(out / "tower0_item_bias.npy")[None, :]
        else:
            def z(x):
                return (x - x.mean(1, keepdims=True)) / x.std(1, ddof=1, keepdims=True)
            history = np.zeros((24, 30), dtype=np.float32)
            history[dm.data.train.users.numpy(), dm.data.train.items.numpy()] = 1  # the graph's training rows
            weight = manifest["item_item"]["weight"]
            scores = (1 - weight) * z(scores) + weight * z(history @ np.load(out / "item_item.npy"))
        with torch.no_grad():
            expected = model.score_all_items(torch.arange(24)).numpy()
        np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(FileExistsError, match="exists and is not an empty folder"):
        export_main(["--ckpt_path", str(trained["gcn_dot"]), "--out", str(tmp_path / "gcn_dot")])


def test_a_resumed_search_proposes_new_values(tmp_path, monkeypatch, caplog):
    pytest.importorskip("optuna", reason="search needs the [search] extra (in [dev])")
    import optuna

    from movielens_gnn.search import main as search_main

    monkeypatch.chdir(tmp_path)
    write_ml100k(tmp_path / "data")
    space = tmp_path / "space.yaml"
    space.write_text("model.dropout: {type: float, low: 0.0, high: 0.5}\n")
    args = ["--config", str(REPO / "configs" / "gcn_dot.yaml"), "--space", str(space), "--out", str(tmp_path / "out"),
            "--no-prune", "--", "--data.root", str(tmp_path / "data"), "--trainer.max_epochs", "1"]
    search_main(["--trials", "2", *args])
    with caplog.at_level("WARNING", logger="movielens_gnn.search"):
        search_main(["--trials", "2", *args])  # resumed: two more
    assert "earlier trials ran with" not in caplog.text
    with caplog.at_level("WARNING", logger="movielens_gnn.search"):
        search_main(["--trials", "1", *args[:-1], "2"])  # another budget: the trials no longer compare
    assert "This study's earlier trials ran with `-- --data.root" in caplog.text and "max_epochs 2`" in caplog.text
    study = optuna.load_study(study_name="gcn_dot", storage=f"sqlite:///{tmp_path / 'out' / 'study.db'}")
    values = [t.params["model.dropout"] for t in study.trials]
    assert len(values) == 5 and len(set(values)) == 5, values  # not the first run's draws again


def test_search_space_mistakes_fail_the_trial_and_name_the_space(tmp_path, monkeypatch, caplog):
    pytest.importorskip("optuna", reason="search needs the [search] extra (in [dev])")
    import optuna

    from movielens_gnn.search import TrialFailed, main as search_main

    monkeypatch.chdir(tmp_path)
    write_ml100k(tmp_path / "data")
    space = tmp_path / "space.yaml"
    args = ["--config", str(REPO / "configs" / "gcn_dot.yaml"), "--space", str(space), "--out", str(tmp_path / "out"),
            "--trials", "1", "--no-prune", "--", "--data.root", str(tmp_path / "data"), "--trainer.max_epochs", "1"]
    space.write_text("model.dropout: [0.1, 0.2\n")
    with pytest.raises(ValueError, match=r"--space .*space.yaml is not valid YAML \(.*line 1"):
        search_main(args)
    space.write_text("model.dropuot: {type: float, low: 0.0, high: 0.5}\n")  # a typo: fit refuses the option
    with pytest.raises(TrialFailed, match=r"trial 0's fit stopped \(exit code 2\) with --model.dropuot .*fix its entry "
                                          r"in --space .*space.yaml"):
        search_main(args)
    space.write_text("model.dropout: {type: float, low: 0.0, high: 0.5}\n")
    with caplog.at_level("WARNING", logger="movielens_gnn.search"):
        text = search_main(args)
    assert "earlier trials searched another --space (model.dropuot)" in caplog.text
    study = optuna.load_study(study_name="gcn_dot", storage=f"sqlite:///{tmp_path / 'out' / 'study.db'}")
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE"]  # not left "running"
    assert "| 0 | fail |" in text and "| 1 | complete |" in text
    # Ctrl-C inside a trial (the CLI exits 130): the trial is stored as failed and the search ends with 130,
    # not as a mistake in the space.
    import movielens_gnn.cli as cli

    def interrupted(*args, **kwargs):
        raise SystemExit(cli.EXIT_INTERRUPTED)

    monkeypatch.setattr(cli, "main", interrupted)
    with pytest.raises(SystemExit) as exit_info:
        search_main(args)
    assert exit_info.value.code == 130
    study = optuna.load_study(study_name="gcn_dot", storage=f"sqlite:///{tmp_path / 'out' / 'study.db'}")
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE", "FAIL"]


def test_search_runs_pruned_trials_and_writes_the_best_config(tmp_path, monkeypatch, capsys):
    pytest.importorskip("optuna", reason="search needs the [search] extra (in [dev])")
    import yaml

    from movielens_gnn.search import main as search_main

    monkeypatch.chdir(tmp_path)
    write_ml100k(tmp_path / "data")
    space = tmp_path / "space.yaml"
    space.write_text("model.dropout: {type: float, low: 0.0, high: 0.5}\n"
                     "model.optimizer.init_args.lr: {type: float, low: 0.001, high: 0.05, log: true}\n"
                     'model.hidden_dims: {type: categorical, choices: ["[64]", "[64, 64]"]}\n')
    text = search_main(["--config", str(REPO / "configs" / "gcn_dot.yaml"), "--space", str(space), "--trials", "3",
                        "--out", str(tmp_path / "out"), "--", "--data.root", str(tmp_path / "data"),
                        "--trainer.max_epochs", "8"])
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 3 and (tmp_path / "out" / "study.db").is_file()
    assert (tmp_path / "out" / "trials.md").read_text() in text
    import optuna

    study = optuna.load_study(study_name="gcn_dot", storage=f"sqlite:///{tmp_path / 'out' / 'study.db'}")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = min(complete, key=lambda t: t.value)
    # The value of a trial is its best validation RMSE: the checkpoint it selected.
    assert best.value == pytest.approx(float(Path(best.user_attrs["checkpoint"]).stem.split("val_rmse=")[1]), abs=1e-4)
    # Its best epoch is the one that checkpoint holds (0-based, as in its file name).
    assert best.user_attrs["best_epoch"] == int(Path(best.user_attrs["checkpoint"]).stem.split("-")[0][len("epoch="):])
    written = yaml.safe_load((tmp_path / "out" / "best.yaml").read_text())
    # The options after -- too: fit --config best.yaml trains as the trials did, not for the config's 500 epochs.
    assert written["trainer"]["max_epochs"] == 8 and written["data"]["root"] == str(tmp_path / "data")
    assert best.user_attrs["passthrough"] == ["--data.root", str(tmp_path / "data"), "--trainer.max_epochs", "8"]
    assert written["model"]["dropout"] == best.params["model.dropout"]
    assert written["model"]["optimizer"]["init_args"]["lr"] == best.params["model.optimizer.init_args.lr"]
    assert written["model"]["hidden_dims"] == yaml.safe_load(best.params["model.hidden_dims"])
    assert written["trainer"] == {**yaml.safe_load((REPO / "configs" / "gcn_dot.yaml").read_text())["trainer"],
                                  "max_epochs": 8}  # the rest of the config's trainer as it was


def test_pruning_callback_stops_the_fit_when_the_pruner_says_so(tmp_path, monkeypatch):
    from movielens_gnn.search import PruneOnValidation

    class Trial:  # what the callback uses of an Optuna trial
        def __init__(self):
            self.reported = []

        def report(self, value, step):
            self.reported.append((step, value))

        def should_prune(self):
            return len(self.reported) >= 2

    monkeypatch.chdir(tmp_path)
    write_ml100k(tmp_path / "data")
    trial = Trial()
    pruner = PruneOnValidation(trial)
    fit = main(["fit", "--config", str(REPO / "configs" / "gcn_dot.yaml"), "--data.root", str(tmp_path / "data"), *QUIET,
                "--trainer.max_epochs", "10"], callbacks=[pruner])
    assert pruner.pruned and fit.trainer.current_epoch == 2 and [s for s, _ in trial.reported] == [0, 1]


def test_tensorboard_logger_config(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard", reason="TensorBoard is the [tensorboard] extra (in [dev])")
    monkeypatch.chdir(tmp_path)
    write_ml100k(tmp_path / "data")
    main(["fit", "--config", str(REPO / "configs" / "gcn_dot.yaml"), "--config",
          str(REPO / "configs" / "logger" / "tensorboard.yaml"), "--data.root", str(tmp_path / "data"), *QUIET,
          "--trainer.max_epochs", "2"])
    events = list((tmp_path / "logs" / "tensorboard" / "version_0").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0


def test_new_user_by_demographics_starts_from_their_peers(trained, capsys):
    from movielens_gnn.recommend import demographic_peers
    from tests.synthetic import OCCUPATIONS

    model, dm = load_for_inference(trained["gcn_dot"])
    # The fixture's user u (1..24) is gender "MF"[u % 2], age 18 + 7u mod 50, occupation OCCUPATIONS[u % 21].
    peers, matched = demographic_peers(dm, age=30, gender="F")
    expected = [u for u in range(1, 25) if "MF"[u % 2] == "F" and abs(18 + (u * 7) % 50 - 30) <= 5]
    assert dm.data.user_ids[peers].tolist() == expected and matched == f"{len(expected)} users with gender F, age 25-35"
    # Nobody of that age and gender has this occupation: occupation is dropped first.
    absent = next(o for o in OCCUPATIONS if o not in {OCCUPATIONS[u % 21] for u in expected})
    peers_relaxed, matched = demographic_peers(dm, age=30, gender="F", occupation=absent)
    assert "occupation" not in matched and peers_relaxed.tolist() == peers.tolist()
    assert dm.data.user_ids[demographic_peers(dm, occupation=OCCUPATIONS[5])[0]].tolist() == [5]
    # Without ratings, a dot-head model's new user is exactly the peers' average prediction.
    with torch.no_grad():
        average = model.score_all_items(peers).mean(0)
    alone = model.score_new_user(torch.zeros(0, dtype=torch.long), torch.zeros(0), peers=peers)
    torch.testing.assert_close(alone, average, rtol=1e-5, atol=1e-5)
    # Without peers, every user's: the vector and the bias both start from all users' mean (biases
    # shifted by 0.5, which a bias started at 0 would miss).
    with torch.no_grad():
        model.head.user_bias.weight += 0.5
        everyone = model.score_all_items(torch.arange(len(dm.data.user_ids))).mean(0)
    anyone = model.score_new_user(torch.zeros(0, dtype=torch.long), torch.zeros(0))
    torch.testing.assert_close(anyone, everyone, rtol=1e-5, atol=1e-5)
    capsys.readouterr()
    frame = pd.read_csv(io.StringIO(recommend_main(["--ckpt_path", str(trained["gcn_dot"]), "--new-user", "--age", "30",
                                                    "--gender", "F", "--k", "4", "--format", "csv"])))
    assert frame.movie_id.tolist() == dm.data.item_ids[average.topk(4).indices].tolist()
    with pytest.raises(ValueError, match=r"--gender must be M or F \(as in the data\), got 'x'"):
        recommend_main(["--ckpt_path", str(trained["gcn_dot"]), "--new-user", "--gender", "x"])
    with pytest.raises(ValueError, match=r"--age describe a new user: use them with --ratings or --new-user"):
        recommend_main(["--ckpt_path", str(trained["gcn_dot"]), "--user", "1", "--age", "30"])
