from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
import torch

from movielens_gnn.cli import main
from movielens_gnn.data.datamodule import MovieLensDataModule
from movielens_gnn.runs import run_config
from movielens_gnn.tasks.rating import RatingModel
from tests.conftest import REPO

QUIET = ["--trainer.enable_model_summary", "false", "--trainer.enable_progress_bar", "false"]


@pytest.fixture
def workdir(tmp_path, monkeypatch, ml100k_root) -> Path:
    """Run in a scratch folder: checkpoints/ and logs/ are relative to the working directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _args(command: str, config: str, root: Path, *extra: str) -> list[str]:
    return [command, "--config", str(REPO / "configs" / config), "--data.root", str(root), *QUIET, *extra]


@pytest.mark.parametrize("config", ["gcn_dot.yaml", "gcn_mlp.yaml", "ml100k_best.yaml", "ml100k_fast.yaml", "biased_mf.yaml"])
def test_fit_fast_dev_run(workdir, ml100k_root, config):
    cli = main(_args("fit", config, ml100k_root, "--trainer.fast_dev_run", "true"))
    assert cli.model.hparams.num_users == 24 and cli.model.hparams.num_items == 30
    assert cli.model.hparams.user_feature_dim == 24 and cli.model.hparams.item_feature_dim == 19
    assert cli.model.hparams.rating_mean == pytest.approx(cli.datamodule.rating_mean)
    assert math.isfinite(cli.trainer.callback_metrics["train_loss"].item())


@pytest.mark.parametrize("config", ["gcn_dot.yaml", "ml100k_best.yaml"])  # one tower; GraphConv + autoencoder
def test_fit_checkpoint_then_test_round_trip(workdir, ml100k_root, config):
    name = config.removesuffix(".yaml")
    fit = main(_args("fit", config, ml100k_root, "--trainer.max_epochs", "4"))
    best = Path(fit.trainer.checkpoint_callback.best_model_path)
    assert best.parent == workdir / "checkpoints" / name / "version_0" and best.is_file()  # the run's own folder
    assert torch.load(best.parent / "last.ckpt", weights_only=True)["epoch"] == 3  # the latest, not the best
    assert sorted(p.name for p in best.parent.iterdir()) == sorted([best.name, "last.ckpt"])
    assert (workdir / "logs" / name / "version_0" / "metrics.csv").is_file()
    assert fit.trainer.current_epoch == 4

    test = main(_args("test", config, ml100k_root, "--ckpt_path", str(best)))
    reported = test.trainer.callback_metrics["test_rmse"].item()

    # The same checkpoint, evaluated by hand, with the data settings the config trained on.
    dm = MovieLensDataModule(root=str(ml100k_root), val_strategy=fit.datamodule.hparams.val_strategy)
    model = RatingModel.load_from_checkpoint(best)
    assert (model.autoencoder is not None) == (name == "ml100k_best")
    model.attach_graph(dm.graph)
    model.eval()
    users, items, ratings = dm.data.test
    with torch.no_grad():
        prediction = model(users, items).clamp(1, 5)
    assert reported == pytest.approx(torch.sqrt(((prediction - ratings) ** 2).mean()).item(), abs=1e-6)
    assert test.trainer.callback_metrics["test_mae"].item() == pytest.approx(
        (prediction - ratings).abs().mean().item(), abs=1e-6
    )
    # Top-K metrics: the logged values are those of ranking every unseen item for every test user.
    from movielens_gnn.metrics import ranking_metrics

    test_users = torch.unique(dm.data.test.users)
    direct = ranking_metrics(model.score_all_items(test_users), dm.known_items(test_users),
                             dm.relevant_items(test_users), ks=(10, 20))
    for name in ("precision@10", "recall@20", "ndcg@10", "hitrate@20"):
        logged = test.trainer.callback_metrics[f"test_{name}"].item()
        assert logged == pytest.approx((direct[name] / direct["users"]).item(), abs=1e-6) and 0 <= logged <= 1
    # In chunks of 5 of the 24 users (1,024 in a real run): the same metrics, the graph encoded once, not per chunk.
    from movielens_gnn.data.datamodule import MovieLensDataModule as DataModule

    encodes, original_encode, original_batches = [], type(model).encode, DataModule.ranking_batches
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(type(model), "encode", lambda self: encodes.append(1) or original_encode(self))
        mp.setattr(DataModule, "ranking_batches", lambda self, users, part, threshold: original_batches(
            self, users, part, threshold, chunk=5))
        chunked = main(_args("test", config, ml100k_root, "--ckpt_path", str(best)))
    assert len(test_users) > 15 and len(encodes) == 2  # test_step's RMSE batch, then the ranking
    for name in ("precision@10", "recall@20", "ndcg@10", "hitrate@20"):
        assert chunked.trainer.callback_metrics[f"test_{name}"].item() == pytest.approx(
            test.trainer.callback_metrics[f"test_{name}"].item(), abs=1e-6)


def test_validate_and_predict_from_checkpoint(workdir, ml100k_root):
    fit = main(_args("fit", "gcn_dot.yaml", ml100k_root, "--trainer.max_epochs", "2"))
    best = fit.trainer.checkpoint_callback.best_model_path
    val = main(_args("validate", "gcn_dot.yaml", ml100k_root, "--ckpt_path", best))
    assert val.trainer.callback_metrics["val_rmse"].item() == pytest.approx(fit.trainer.checkpoint_callback.best_model_score.item(), abs=1e-6)
    for part in ("test", "val"):
        out = workdir / f"pred_{part}.csv"
        predict = main(_args("predict", "gcn_dot.yaml", ml100k_root, "--ckpt_path", best, "--predict_part", part,
                             "--predictions", str(out)))
        frame = pd.read_csv(out)
        edges = getattr(predict.datamodule.data, part)
        assert list(frame.columns) == ["user_id", "item_id", "rating", "prediction"]
        assert len(frame) == len(edges.ratings) and frame.prediction.between(1, 5).all()
        expected_ids = {(u + 1, i + 1, r) for u, i, r in zip(edges.users.tolist(), edges.items.tolist(), edges.ratings.tolist())}
        assert set(zip(frame.user_id, frame.item_id, frame.rating)) == expected_ids  # synthetic ids are index + 1


@pytest.mark.parametrize("config", ["mf_bpr.yaml", "lightgcn_ease.yaml"])  # no graph; LightGCN + EASE hybrid
def test_ranking_fit_test_recommend_predict_round_trip(workdir, ml100k_root, capsys, config):
    from movielens_gnn.metrics import ranking_metrics
    from movielens_gnn.recommend import main as recommend_main
    from movielens_gnn.tasks import RankingModel

    name = config.removesuffix(".yaml")
    fit = main(_args("fit", config, ml100k_root, "--trainer.max_epochs", "3"))
    assert type(fit.model) is RankingModel and fit.datamodule.split == "ratio"
    checkpoint = fit.trainer.checkpoint_callback
    assert checkpoint.monitor == "val_ndcg@10" and checkpoint.mode == "max"
    best = Path(checkpoint.best_model_path)
    assert best.parent == workdir / "checkpoints" / name / "version_0"
    assert torch.load(best, weights_only=True)["hyper_parameters"]["_class_path"].endswith("RankingModel")

    # test: the logged metrics are those of ranking every item for every test user, train + val items left out.
    test = main(_args("test", config, ml100k_root, "--ckpt_path", str(best)))
    model, dm = test.model.eval(), test.datamodule
    users = torch.unique(dm.data.test.users)
    with torch.no_grad():
        direct = ranking_metrics(model.score_all_items(users), dm.known_items(users, ("train", "val")),
                                 dm.relevant_items(users, 0.0), ks=(10, 20))
    for key in ("ndcg@10", "recall@10", "precision@20", "hitrate@10", "mrr@20"):
        logged = test.trainer.callback_metrics[f"test_{key}"].item()
        assert logged == pytest.approx((direct[key] / direct["users"]).item(), abs=1e-6)
    # validate with the checkpoint gives the score it was selected with
    val = main(_args("validate", config, ml100k_root, "--ckpt_path", str(best)))
    assert val.trainer.callback_metrics["val_ndcg@10"].item() == pytest.approx(checkpoint.best_model_score.item(), abs=1e-6)
    # Other cut-offs at test, though the config's callbacks monitor @10 (they select nothing there).
    other = main(_args("test", config, ml100k_root, "--ckpt_path", str(best), "--model.ranking_ks", "[5]"))
    assert "test_ndcg@5" in other.trainer.callback_metrics and "test_ndcg@10" not in other.trainer.callback_metrics

    # recommend: ten movies per user, none of them rated in training or validation, ranked by score.
    capsys.readouterr()
    text = recommend_main(["--ckpt_path", str(best), "--user", "1,2", "--k", "10", "--format", "csv"])
    frame = pd.read_csv(__import__("io").StringIO(text))
    assert list(frame.columns) == ["user_id", "rank", "movie_id", "title", "year", "genres", "score", "source"]
    assert frame.groupby("user_id").size().tolist() == [10, 10]
    for user_id, group in frame.groupby("user_id"):
        index = user_id - 1  # synthetic ids are index + 1
        known = dm.known_items(torch.tensor([index]))[0]
        assert not known[torch.tensor(group.movie_id.values - 1)].any()
        with torch.no_grad():
            scores = model.score_all_items(torch.tensor([index]))[0].masked_fill(known, float("-inf"))
        assert (group.movie_id.values - 1).tolist() == scores.topk(10).indices.tolist()

    # predict: ranking scores (not stars) of the test pairs.
    out = workdir / "scores.csv"
    main(_args("predict", config, ml100k_root, "--ckpt_path", str(best), "--predictions", str(out)))
    predicted = pd.read_csv(out)
    assert list(predicted.columns) == ["user_id", "item_id", "rating", "score"]
    assert len(predicted) == len(dm.data.test.ratings)

    # The task is the checkpoint's: asking for the rating task with it is refused before any work.
    with pytest.raises(SystemExit) as exit_info:
        main(_args("test", config, ml100k_root, "--model", "RatingModel", "--ckpt_path", str(best)))
    assert exit_info.value.code == 2
    assert "holds a RankingModel; this run asks for a RatingModel" in capsys.readouterr().err
    # A rating task's config (no --model given) names the task mismatch, not the options it brings along.
    with pytest.raises(SystemExit):
        main(_args("test", "gcn_dot.yaml", ml100k_root, "--ckpt_path", str(best)))
    err = capsys.readouterr().err
    assert f"error: The checkpoint {best} holds a RankingModel; the --model options given (from --model." in err
    assert "are those of a RatingModel. Leave out the --config (the checkpoint's own settings are used)" in err
    # Without a config, an option of both tasks given against the weights is named as such.
    with pytest.raises(SystemExit):
        main(["test", "--ckpt_path", str(best), "--data.root", str(ml100k_root), "--model.embedding_dim", "7", *QUIET])
    assert "was trained with --model.embedding_dim" in capsys.readouterr().err
    # ... and with no config at all, the task and data settings come from the checkpoint.
    bare = main(["test", "--ckpt_path", str(best), "--data.root", str(ml100k_root), *QUIET])
    assert bare.trainer.callback_metrics["test_ndcg@10"].item() == pytest.approx(
        test.trainer.callback_metrics["test_ndcg@10"].item(), abs=1e-6)


def test_the_task_is_the_rating_model_unless_named_and_keeps_its_own_defaults(workdir, ml100k_root, capsys):
    from movielens_gnn.tasks import RankingModel

    root = ["--data.root", str(ml100k_root)]
    ranking = main(["--config", str(REPO / "configs" / "mf_bpr.yaml"), *root], run=False).model
    # Not the rating task's combine "last": a named task starts from its own defaults.
    assert type(ranking) is RankingModel and ranking.hparams.relevance_threshold is None
    assert ranking.hparams.combine == "mean" and ranking.hparams.encoder == "mf"
    rating = main([*root, "--model.embedding_dim", "8"], run=False).model
    assert type(rating) is RatingModel and rating.hparams.embedding_dim == 8 and rating.relevance_threshold == 4.0
    from_dict = main({"model": {"embedding_dim": 6}, "data": {"root": str(ml100k_root)}}, run=False).model
    assert type(from_dict) is RatingModel and from_dict.hparams.embedding_dim == 6
    switched = main([*root, "--model", "RankingModel", "--model.num_layers", "2"], run=False).model
    assert type(switched) is RankingModel and switched.hparams.num_layers == 2
    # A top-level config (before the subcommand) still gets the default task; it can name one too.
    (workdir / "top.yaml").write_text("fit:\n  trainer:\n    max_epochs: 1\n")
    top = main(["-c", str(workdir / "top.yaml"), "fit", "--data.root", str(ml100k_root), *QUIET])
    assert type(top.model) is RatingModel and top.trainer.current_epoch == 1
    (workdir / "top_ranking.yaml").write_text("fit:\n  model: RankingModel\n  trainer:\n    max_epochs: 1\n")
    top = main(["--config=" + str(workdir / "top_ranking.yaml"), "fit", "--data.root", str(ml100k_root), *QUIET])
    assert type(top.model) is RankingModel
    with pytest.raises(SystemExit) as exit_info:
        main(_args("fit", "lightgcn_bpr.yaml", ml100k_root, "--print_config"))
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "class_path: movielens_gnn.tasks.RankingModel" in printed and "item_item_weight:" in printed


@pytest.mark.parametrize(("task", "monitor", "best_is"), [("RatingModel", "val_rmse", min),
                                                          ("RankingModel", "val_ndcg@10", max)])
def test_a_run_without_config_logs_and_checkpoints_as_the_configs_do(workdir, ml100k_root, caplog, task, monitor,
                                                                      best_is):
    """No logger or checkpoints configured: CSV in logs/<task>/version_N, the best epoch on the task's monitor
    and last.ckpt in checkpoints/<task>/version_N (not Lightning's lightning_logs/ and latest epoch), no tips."""
    name = task.removesuffix("Model").lower()
    with caplog.at_level(logging.INFO):
        fit = main(["fit", "--model", task, "--data.root", str(ml100k_root), "--trainer.max_epochs", "4",
                    "--trainer.enable_model_summary", "false", "--model.embedding_dim", "8"])
    assert not (workdir / "lightning_logs").exists()
    rows = pd.read_csv(workdir / "logs" / name / "version_0" / "metrics.csv")
    scores = rows[monitor].dropna().tolist()
    assert len(scores) == 4
    files = sorted(p.name for p in (workdir / "checkpoints" / name / "version_0").iterdir())
    best = scores.index(best_is(scores))
    assert files == sorted([f"epoch={best}-{monitor}={scores[best]:.4f}.ckpt", "last.ckpt"])
    assert fit.trainer.checkpoint_callback.monitor == monitor
    assert (workdir / "logs" / name / "version_0" / "config.yaml").is_file()
    assert "💡" not in caplog.text and "litmodels" not in caplog.text and "litlogger" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):  # the evaluation commands log the same way, and no tips either
        tested = main(["test", "--ckpt_path", fit.trainer.checkpoint_callback.best_model_path, "--data.root",
                       str(ml100k_root), "--trainer.enable_model_summary", "false"])
    assert tested.trainer.logger.log_dir == str(Path("logs") / name / "version_1")
    assert "💡" not in caplog.text and "litmodels" not in caplog.text


def test_run_without_config_defaults_follow_root_dir_given_callbacks_and_ranking_ks(workdir, ml100k_root):
    from pytorch_lightning.callbacks import ModelCheckpoint

    short = ["--trainer.max_epochs", "2", "--trainer.enable_model_summary", "false", "--model.embedding_dim", "8"]
    # Under --trainer.default_root_dir, as Lightning's own defaults would be.
    fit = main(["fit", "--data.root", str(ml100k_root), "--trainer.default_root_dir", "runs", *short])
    assert (workdir / "runs" / "logs" / "rating" / "version_0" / "metrics.csv").is_file()
    assert Path(fit.trainer.checkpoint_callback.best_model_path).parent == workdir / "runs" / "checkpoints" / "rating" / "version_0"
    assert not (workdir / "logs").exists() and not (workdir / "checkpoints").exists()
    # A ModelCheckpoint handed to main() by code counts as configured: no defaults beside it.
    mine = ModelCheckpoint(dirpath=str(workdir / "mine"), monitor="val_rmse")
    fit = main(["fit", "--data.root", str(ml100k_root), *short], callbacks=[mine])
    assert [type(c) for c in fit.trainer.callbacks if isinstance(c, ModelCheckpoint)] == [ModelCheckpoint]
    # A ranking run that logs no @10 selects on the first K it logs.
    fit = main(["fit", "--model", "RankingModel", "--model.encoder", "mf", "--model.ranking_ks", "[5, 20]",
                "--data.root", str(ml100k_root), *short])
    assert fit.trainer.checkpoint_callback.monitor == "val_ndcg@5" and fit.model.monitor == "val_ndcg@5"
    assert Path(fit.trainer.checkpoint_callback.best_model_path).name.startswith("epoch=")


def test_a_cut_off_as_large_as_the_catalogue_is_warned_about_once(workdir, ml100k_root, caplog):
    caplog.set_level("WARNING", logger="movielens_gnn.tasks.base")
    main(["fit", "--model", "RankingModel", "--model.encoder", "mf", "--model.ranking_ks", "[5, 30, 40]",
          "--data.root", str(ml100k_root), "--trainer.max_epochs", "2", *QUIET])
    warned = [r.getMessage() for r in caplog.records if "reach the" in r.getMessage()]
    assert warned == ["--model.ranking_ks [30, 40] reach the 30 items of this data: the top K is then every item, so "
                      "recall and hit rate there are 1 whatever the model. Use cut-offs below 30."]


def test_early_stopping_stops_before_max_epochs(workdir, ml100k_root):
    cli = main(_args("fit", "gcn_dot.yaml", ml100k_root, "--trainer.max_epochs", "500",
                     "--model.optimizer.init_args.lr", "0.2"))
    assert cli.trainer.should_stop and cli.trainer.current_epoch < 500


@pytest.mark.parametrize(
    ("option", "value", "valid"),
    [("--data.split", "u9", ["u1", "ub", "random", "temporal"]), ("--model.head", "knn", ["dot", "mlp"])],
)
def test_unknown_choice_exits_with_valid_values(workdir, ml100k_root, capsys, option, value, valid):
    with pytest.raises(SystemExit) as exit_info:
        main(_args("fit", "gcn_dot.yaml", ml100k_root, option, value))
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert value in err and all(name in err for name in valid)
    assert not (workdir / "checkpoints").exists()


@pytest.mark.parametrize(("command", "suggestion"), [("recomend", " (did you mean recommend?)"), ("frobnicate", "")])
def test_an_unknown_command_lists_every_command(capsys, command, suggestion):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--user", "1"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (f"error: Unknown command '{command}'{suggestion}; the commands are fit, validate, "
                                       "test, predict, recommend, describe, export, search. `python -m movielens_gnn "
                                       "--help` says what each does.\n")


def test_missing_data_without_network_is_one_clear_message(workdir, tmp_path, capsys):
    empty = tmp_path / "empty"
    with pytest.raises(SystemExit) as exit_info:
        main(_args("fit", "gcn_dot.yaml", empty, "--data.url", (tmp_path / "offline.zip").as_uri()))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: MovieLens-100K was not found") and "ml-100k.zip" in err
    assert "Traceback" not in err
    assert not (workdir / "checkpoints").exists()


def test_evaluating_with_a_config_whose_data_root_is_empty_names_the_checkpoint_s(workdir, ml100k_root, capsys,
                                                                                   monkeypatch):
    fit = main(_args("fit", "gcn_dot.yaml", ml100k_root, "--trainer.max_epochs", "1"))
    best = str(Path(fit.trainer.checkpoint_callback.best_model_path).resolve())
    (workdir / "elsewhere").mkdir()
    monkeypatch.chdir(workdir / "elsewhere")  # where the config's data/ holds nothing
    offline = ["--data.url", (workdir / "offline.zip").as_uri()]  # no download from the live site
    # The config's data.root (data/, empty here) wins over the checkpoint's: the error says where its data was.
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", "--config", str(REPO / "configs" / "gcn_dot.yaml"), *QUIET, "--ckpt_path", best, *offline])
    assert exit_info.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and err[0].startswith("error: MovieLens-100K was not found under ")
    assert err[0].endswith(f"The checkpoint was trained on the data under {ml100k_root}: pass --data.root "
                           f"{ml100k_root}, or leave --config out to take the checkpoint's own settings.")
    # Pointed at the checkpoint's own folder, it runs.
    main(["validate", "--config", str(REPO / "configs" / "gcn_dot.yaml"), *QUIET, "--ckpt_path", best,
          "--data.root", str(ml100k_root)])


def test_malformed_file_names_file_and_line(workdir, ml100k_root, capsys):
    path = ml100k_root / "ml-100k" / "u1.base"
    lines = path.read_text().splitlines(keepends=True)
    lines[9] = "1\t1\tfive\t0\n"
    path.write_text("".join(lines))
    with pytest.raises(SystemExit):
        main(_args("fit", "gcn_dot.yaml", ml100k_root))
    assert "u1.base line 10: rating must be an integer in 1..5, got 'five'" in capsys.readouterr().err


@pytest.mark.parametrize(("config", "column"), [("gcn_dot.yaml", "predicted_rating"), ("mf_bpr.yaml", "score")])
def test_wandb_logger_offline(workdir, ml100k_root, monkeypatch, config, column, caplog):
    pytest.importorskip("wandb")
    caplog.set_level("INFO", logger="movielens_gnn")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cli = main([*_args("fit", config, ml100k_root, "--trainer.max_epochs", "2"),
                "--config", str(REPO / "configs" / "logger" / "wandb.yaml"),
                # absolute: wandb's service process resolves paths from the folder it started in (an earlier test's)
                "--trainer.logger.init_args.save_dir", str(workdir / "logs")])
    assert type(cli.trainer.logger).__name__ == "WandbLogger"
    runs = list((workdir / "logs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    tables = list(runs[0].glob("files/media/table/sample_recommendations_*.table.json"))
    assert len(tables) == 1
    # The run's own config.yaml (logs/config.yaml is every W&B run's), named by the printed test command.
    saved = yaml.safe_load((runs[0] / "files" / "cli_config.yaml").read_text())  # W&B's config.yaml is its own
    assert saved["trainer"]["max_epochs"] == 2 and saved["trainer"]["logger"]["class_path"].endswith("WandbLogger")
    assert run_config(cli.trainer) == Path(cli.trainer.logger.experiment.dir) / "cli_config.yaml"
    assert f"test --config {run_config(cli.trainer)} --ckpt_path" in caplog.text
    table = json.loads(tables[0].read_text())
    assert "title" in table["columns"] and column in table["columns"] and len(table["data"]) == 3 * 10


def test_module_entry_point_help():
    result = subprocess.run([sys.executable, "-m", "movielens_gnn", "fit", "--help"], capture_output=True,
                            text=True, cwd=REPO, env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("usage: python -m movielens_gnn [options] fit")
    assert "--data.root" in result.stdout and "--model.help" in result.stdout
    assert "--model.num_users" not in result.stdout  # linked from the data, never typed
    # Each task's options: the task is chosen with --model.
    for task, option in (("RatingModel", "--model.hidden_dims"), ("RankingModel", "--model.item_item_weight")):
        result = subprocess.run([sys.executable, "-m", "movielens_gnn", "fit", "--model.help", task], capture_output=True,
                                text=True, cwd=REPO, env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=120)
        assert result.returncode == 0 and option in result.stdout
        assert result.stdout.startswith("usage: python -m movielens_gnn --model.")  # not "__main__.py"


def test_fit_bf16_mixed_on_cpu(workdir, ml100k_root):
    cli = main(_args("fit", "gcn_dot.yaml", ml100k_root, "--trainer.max_epochs", "3",
                     "--trainer.precision", "bf16-mixed"))
    assert cli.trainer.precision == "bf16-mixed"
    assert math.isfinite(cli.trainer.callback_metrics["val_rmse"].item())
    assert cli.model.encoder.user_embedding.weight.dtype == torch.float32  # weights stay float32


@pytest.mark.parametrize("config", ["ml100k_best.yaml", "lightgcn_ease.yaml"])
def test_fit_and_test_with_weights_in_bf16(workdir, ml100k_root, config):
    """Lightning's "bf16-true": the model itself in bfloat16 (the sparse sums still in float32)."""
    cli = main(_args("fit", config, ml100k_root, "--trainer.max_epochs", "2", "--trainer.precision", "bf16-true"))
    assert cli.model.encoder.user_embedding.weight.dtype == torch.bfloat16
    assert math.isfinite(cli.trainer.callback_metrics[cli.model.monitor].item())
    best = cli.trainer.checkpoint_callback.best_model_path
    tested = main(_args("test", config, ml100k_root, "--ckpt_path", best, "--trainer.precision", "bf16-true"))
    assert all(math.isfinite(value.item()) for value in tested.trainer.callback_metrics.values())
    # The metrics keep their own dtypes (sums in bfloat16 would round): float32, float64 for the top-K sums.
    from torchmetrics import Metric

    dtypes = {name: {value.dtype for value in metric.metric_state.values()}
              for name, metric in tested.model.named_modules() if isinstance(metric, Metric)}
    assert dtypes and all(found <= {torch.float32, torch.float64, torch.int64} for found in dtypes.values()), dtypes
    assert tested.model.test_metrics["rmse"].total.dtype == torch.int64 if config == "ml100k_best.yaml" else True
    validated = main(_args("validate", config, ml100k_root, "--ckpt_path", best, "--trainer.precision", "bf16-true"))
    assert validated.model.train_loss.total.dtype == torch.float32  # restored for the validate command too


def test_instantiate_without_running(workdir, ml100k_root):
    cli = main(["--config", str(REPO / "configs" / "ml100k_best.yaml"), "--data.root", str(ml100k_root)], run=False)
    assert cli.model.hparams.side_features and cli.model.hparams.num_items == 30
    assert cli.trainer.current_epoch == 0 and not (workdir / "checkpoints").exists()


def test_explicit_keys_sees_every_way_of_giving_an_option(tmp_path):
    from movielens_gnn.cli import explicit_keys

    config = tmp_path / "c.yaml"
    config.write_text("data:\n  split: u2\nmodel:\n  embedding_dim: 8\n")
    nested = tmp_path / "n.yaml"
    nested.write_text(f"fit:\n  data: {tmp_path / 'd.yaml'}\n")
    (tmp_path / "d.yaml").write_text("seed: 3\n")
    found = explicit_keys(["test", "--config", str(config), "--data.seed=4", "--model.hidden_dims+", "5",
                           "--model.init_args.dropout", "0.1", "--data", '{"val_fraction": 0.1}'], "test")
    assert found == {"data": {"split", "seed", "val_fraction"}, "model": {"embedding_dim", "hidden_dims", "dropout"}}
    assert explicit_keys([f"--config={nested}", "fit"], "fit") == {"data": {"seed"}, "model": set()}
    assert explicit_keys({"test": {"data": {"split": "u3"}}}, "test") == {"data": {"split"}, "model": set()}
    assert explicit_keys(["test", "--ckpt_path", "x.ckpt"], "test") == {"data": set(), "model": set()}


def test_validation_cadence_is_a_trainer_setting(workdir, ml100k_root):
    """--trainer.check_val_every_n_epoch 2: validation (and so the best checkpoint) only after epochs 1 and 3,
    while last.ckpt still ends at the final epoch."""
    fit = main(_args("fit", "gcn_dot.yaml", ml100k_root, "--trainer.max_epochs", "4",
                     "--trainer.check_val_every_n_epoch", "2", "--model.train_metrics_every_n_epochs", "1"))
    metrics = pd.read_csv(workdir / "logs" / "gcn_dot" / "version_0" / "metrics.csv")
    assert sorted(metrics.loc[metrics["val_rmse"].notna(), "epoch"]) == [1, 3]
    assert sorted(metrics.loc[metrics["train_loss"].notna(), "epoch"]) == [0, 1, 2, 3]
    best = Path(fit.trainer.checkpoint_callback.best_model_path)
    assert best.name.split("-")[0] in ("epoch=1", "epoch=3")
    assert torch.load(best.parent / "last.ckpt", weights_only=True)["epoch"] == 3


def test_training_metrics_cadence_logs_the_same_values_on_fewer_epochs(workdir, ml100k_root):
    """--model.train_metrics_every_n_epochs 3: train_loss/rmse/mae only after epochs 0, 3 and 6, equal to an
    every-epoch run's there (measuring changes no draw of the training); validation stays every epoch."""
    logs = {}
    for every in (1, 3):
        main(_args("fit", "gcn_dot.yaml", ml100k_root, "--trainer.max_epochs", "7",
                   "--model.train_metrics_every_n_epochs", str(every), "--trainer.logger.init_args.name", f"e{every}"))
        (csv,) = (workdir / "logs" / f"e{every}").glob("version_*/metrics.csv")
        logs[every] = pd.read_csv(csv)
    sparse, dense = logs[3], logs[1]
    for name in ("train_loss", "train_rmse", "train_mae"):
        assert sorted(sparse.loc[sparse[name].notna(), "epoch"]) == [0, 3, 6]
        assert sorted(dense.loc[dense[name].notna(), "epoch"]) == list(range(7))
        rows = dense[dense[name].notna() & dense["epoch"].isin([0, 3, 6])].sort_values("epoch")
        assert sparse[sparse[name].notna()].sort_values("epoch")[name].tolist() == pytest.approx(rows[name].tolist())
    assert sorted(sparse.loc[sparse["val_rmse"].notna(), "epoch"]) == list(range(7))
    # Full batch, one tower: the loss is the step's MSE, so its root is the (unclamped) train RMSE.
    first = dense[dense["train_loss"].notna()].sort_values("epoch").iloc[0]
    assert math.sqrt(first["train_loss"]) == pytest.approx(first["train_rmse"], rel=0.02)


def test_minibatch_train_loss_is_the_size_weighted_mean_of_the_steps(workdir, ml100k_root):
    """With --data.batch_size each epoch's train_loss weighs each step's loss by its batch size (the
    last batch is smaller), also for an epoch that max_steps cuts short; nothing is left pending."""
    import pytorch_lightning as pl

    class Steps(pl.Callback):
        def __init__(self) -> None:
            self.steps: dict[int, list[tuple[float, int]]] = {}

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.steps.setdefault(trainer.current_epoch, []).append((float(outputs["loss"]), len(batch[2])))

    args = _args("fit", "gcn_dot.yaml", ml100k_root, "--trainer.max_epochs", "3", "--data.batch_size", "37",
                 "--trainer.log_every_n_steps", "50", "--model.train_metrics_every_n_epochs", "1")[1:]
    datamodule = main(args, run=False).datamodule
    datamodule.setup("fit")
    batches = len(datamodule.train_dataloader())
    # Built, not run, so that the callback joins; the second epoch stops after three of its steps.
    cli = main([*args, "--trainer.max_steps", str(batches + 3)], run=False)
    steps = Steps()
    cli.trainer.callbacks.append(steps)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert [len(s) for s in steps.steps.values()] == [batches, 3]
    first_sizes = [n for _, n in steps.steps[0]]
    assert len(set(first_sizes)) == 2 and first_sizes[0] == 37  # a short last batch
    expected = [sum(loss * n for loss, n in s) / sum(n for _, n in s) for s in steps.steps.values()]
    # Epoch values in the logger, though fewer steps ran than log_every_n_steps.
    (csv,) = (workdir / "logs").glob("*/version_*/metrics.csv")
    metrics = pd.read_csv(csv)
    logged = metrics[metrics["train_loss"].notna()].sort_values("epoch")
    assert logged["epoch"].tolist() == [0, 1] and metrics["train_rmse"].notna().sum() == 2
    assert logged["train_loss"].tolist() == pytest.approx(expected, rel=1e-6)
    assert cli.model.train_loss.count.item() == 0 and cli.model.train_metrics_epoch == 1


def test_fit_refuses_a_weights_only_best_checkpoint_and_last_resumes_the_newest_run(workdir, ml100k_root, capsys):
    fit = main(_args("fit", "gcn_dot.yaml", ml100k_root, "--trainer.max_epochs", "2"))
    best = Path(fit.trainer.checkpoint_callback.best_model_path)
    last = best.with_name("last.ckpt")
    assert "optimizer_states" not in torch.load(best, weights_only=True)
    with pytest.raises(SystemExit) as exit_info:
        main(_args("fit", "gcn_dot.yaml", ml100k_root, "--trainer.max_epochs", "4", "--ckpt_path", str(best)))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"The checkpoint {best} holds the model's weights only" in err and f"Resume from the same run's {last}." in err
    assert "Traceback" not in err
    # The named file resumes: the run goes on to epoch 4.
    resumed = main(_args("fit", "gcn_dot.yaml", ml100k_root, "--trainer.max_epochs", "4", "--ckpt_path", str(last)))
    assert resumed.trainer.current_epoch == 4
    # "last" in a new process: the newest run's last.ckpt (Lightning's own lookup would start afresh, untrained).
    again = main(_args("fit", "gcn_dot.yaml", ml100k_root, "--trainer.max_epochs", "5", "--ckpt_path", "last"))
    assert again.trainer.current_epoch == 5 and Path(again.trainer.checkpoint_callback.dirpath) == last.parent.resolve()
    with pytest.raises(SystemExit) as exit_info:
        main(_args("fit", "gcn_dot.yaml", ml100k_root, "--ckpt_path", "best"))
    assert exit_info.value.code == 2 and "Use --ckpt_path last" in capsys.readouterr().err
    # Nothing left to train: refused before a log folder is taken (Lightning trained nothing, or failed later).
    logs = sorted((workdir / "logs" / "gcn_dot").iterdir())
    with pytest.raises(SystemExit) as exit_info:
        main(_args("fit", "gcn_dot.yaml", ml100k_root, "--trainer.max_epochs", "4", "--ckpt_path", "last"))
    assert exit_info.value.code == 2 and sorted((workdir / "logs" / "gcn_dot").iterdir()) == logs
    assert "has trained 5 epochs already, and --trainer.max_epochs is 4: resuming would train nothing. Raise " \
           "--trainer.max_epochs above 5" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # another split: said as a resume, not as an evaluation
        main(_args("fit", "gcn_dot.yaml", ml100k_root, "--trainer.max_epochs", "6", "--data.split", "u2", "--ckpt_path",
                   "last"))
    err = capsys.readouterr().err
    assert "this run asks for split 'u2'. Resuming it on other data would go on training it" in err and "Evaluating" not in err


def test_evaluation_needs_a_checkpoint_and_best_means_the_newest_runs(workdir, ml100k_root, capsys):
    for command in ("test", "validate", "predict"):  # nothing trained yet
        with pytest.raises(SystemExit) as exit_info:
            main(_args(command, "gcn_dot.yaml", ml100k_root))
        assert exit_info.value.code == 2
        assert f"error: {command} scores a trained model and needs --ckpt_path" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # an empty --ckpt_path ("$CKPT" unset) is no checkpoint either
        main(_args("test", "gcn_dot.yaml", ml100k_root, "--ckpt_path", ""))
    assert "test scores a trained model and needs --ckpt_path" in capsys.readouterr().err
    main(_args("fit", "gcn_dot.yaml", ml100k_root, "--trainer.max_epochs", "1"))
    newest = main(_args("fit", "gcn_dot.yaml", ml100k_root, "--trainer.max_epochs", "3"))
    best = Path(newest.trainer.checkpoint_callback.best_model_path)
    assert best.parent.name == "version_1"
    with pytest.raises(SystemExit):
        main(_args("test", "gcn_dot.yaml", ml100k_root))
    err = capsys.readouterr().err
    assert "without one the weights would be random" in err and f"version_1/{best.name}" in err
    named = main(_args("test", "gcn_dot.yaml", ml100k_root, "--ckpt_path", str(best)))
    picked = main(_args("test", "gcn_dot.yaml", ml100k_root, "--ckpt_path", "best"))
    assert picked.trainer.callback_metrics["test_rmse"].item() == named.trainer.callback_metrics["test_rmse"].item()
    last = main(_args("validate", "gcn_dot.yaml", ml100k_root, "--ckpt_path", "last"))
    assert last.trainer.callback_metrics["val_rmse"].item() == pytest.approx(
        newest.trainer.callback_metrics["val_rmse"].item(), abs=1e-6)  # the third epoch's weights


def test_a_plateau_schedule_counting_the_wrong_way_is_refused_before_any_run_folder(workdir, ml100k_root, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(_args("fit", "mf_bpr.yaml", ml100k_root, "--model.lr_scheduler",
                   '{"class_path": "torch.optim.lr_scheduler.ReduceLROnPlateau"}'))
    assert exit_info.value.code == 2 and not (workdir / "logs").exists() and not (workdir / "checkpoints").exists()
    assert "watches val_ndcg@10, which is better higher, but has mode 'min'" in capsys.readouterr().err


def test_checkpoint_roots_from_a_list_a_single_callback_or_none(tmp_path):
    from movielens_gnn.cli import checkpoint_roots, check_monitored_cutoffs

    checkpoint = {"class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
                  "init_args": {"dirpath": "checkpoints/mine", "monitor": "val_ndcg@10"}}
    last = {"class_path": "movielens_gnn.runs.LastCheckpoint", "init_args": {"dirpath": "checkpoints/mine"}}
    stop = {"class_path": "pytorch_lightning.callbacks.EarlyStopping", "init_args": {"monitor": "val_rmse"}}
    ranking = {"class_path": "movielens_gnn.tasks.RankingModel"}
    assert checkpoint_roots({"trainer": {"callbacks": [checkpoint, last, stop]}}) == [Path("checkpoints/mine")]
    assert checkpoint_roots({"trainer": {"callbacks": checkpoint}}) == [Path("checkpoints/mine")]  # one, as a mapping
    assert checkpoint_roots({"trainer": {"callbacks": [stop], "default_root_dir": str(tmp_path)}, "model": ranking}) == [
        tmp_path / "checkpoints" / "ranking"]  # fit's default folder for the task
    with pytest.raises(ValueError, match=r"leaves out 10, but the config's ModelCheckpoint monitors val_ndcg@10"):
        check_monitored_cutoffs([20], {"callbacks": checkpoint})


class MatricesOnly(torch.optim.SGD):
    """An optimizer that, like Muon, takes only 2-D parameters (for the check below)."""

    def __init__(self, params, lr: float = 0.1) -> None:
        params = list(params)
        if any(p.dim() != 2 for p in params):
            raise ValueError("MatricesOnly only supports 2D parameters")
        super().__init__(params, lr=lr)


def test_the_optimizer_check_builds_over_a_matrix():
    from movielens_gnn.cli import check_optimizer_arguments

    check_optimizer_arguments({"class_path": "tests.test_cli.MatricesOnly", "init_args": {"lr": 0.1}})
    with pytest.raises(ValueError, match=r"--model\.optimizer \(SGD\) refuses its settings: Invalid momentum value"):
        check_optimizer_arguments({"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1, "momentum": -1}})
