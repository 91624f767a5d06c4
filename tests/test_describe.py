from __future__ import annotations

import json

import numpy as np
import pytest

from movielens_gnn.cli import main


def test_report_counts_and_split(ml100k_root, capsys):
    text = main(["describe", "--data.root", str(ml100k_root)])
    assert capsys.readouterr().out == text
    assert "users: 24\nitems: 30 rated (30 listed)\nratings: 288\n" in text
    assert f"density: {288 / (24 * 30):.4%}" in text
    assert "items release_date empty: 1" in text  # the synthetic last movie has no date
    lines = [line for line in text.splitlines() if line[:2] in {"1:", "2:", "3:", "4:", "5:"}]
    assert len(lines) == 5 and sum(int(line.split()[1]) for line in lines) == 288
    assert "## Split u1" in text and "directed edges" in text


def test_plots_are_written(ml100k_root, tmp_path):
    metrics = tmp_path / "metrics.csv"
    metrics.write_text("epoch,step,train_rmse,val_rmse\n0,0,,1.2\n0,0,1.3,\n1,1,,1.1\n1,1,1.0,\n")
    text = main(["describe", "--data.root", str(ml100k_root), "--plots", str(tmp_path / "plots"), "--logs", str(metrics)])
    names = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert names == ["item_degree.png", "rating_histogram.png", "rmse_curves.png", "user_degree.png"]
    for name in names:
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert name in text


def test_json_counts(ml100k_root, capsys):
    text = main(["describe", "--data.root", str(ml100k_root), "--format", "json"])
    facts = json.loads(capsys.readouterr().out)
    raw = np.loadtxt(ml100k_root / "ml-100k" / "u.data", dtype=np.int64)
    assert facts["dataset"] == "ml-100k" and json.loads(text) == facts
    assert (facts["ratings"], facts["users"], facts["items"], facts["items_listed"]) == (288, 24, 30, 30)
    assert facts["rating_values"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert facts["density"] == 288 / (24 * 30)
    assert facts["rating_counts"] == {str(v): int((raw[:, 2] == v).sum()) for v in range(1, 6) if (raw[:, 2] == v).any()}
    assert facts["rating_mean"] == round(float(raw[:, 2].mean()), 4)
    assert facts["first_timestamp"] == int(raw[:, 3].min()) and facts["user_columns"] == ["age", "gender", "occupation", "zip_code"]


def test_logs_folder_with_a_test_log_first_and_a_ranking_fit_without_k_10(ml100k_root, tmp_path):
    from movielens_gnn.describe import training_curves

    logs = tmp_path / "logs"
    (logs / "version_0").mkdir(parents=True)
    (logs / "version_1").mkdir()
    (logs / "version_0" / "metrics.csv").write_text("test_ndcg@20\n0.41\n")  # a test run's log comes first
    (logs / "version_1" / "metrics.csv").write_text("epoch,step,val_ndcg@20\n0,0,0.30\n1,1,0.35\n")
    assert training_curves(logs)["val_ndcg@20"].tolist() == [0.30, 0.35]
    text = main(["describe", "--data.root", str(ml100k_root), "--plots", str(tmp_path / "plots"), "--logs", str(logs)])
    assert "ndcg_curves.png" in text and (tmp_path / "plots" / "ndcg_curves.png").is_file()


def _split_counts(text: str) -> tuple[int, int, int]:
    line = next(line for line in text.splitlines() if line.startswith("train "))
    words = line.replace(",", "").split()
    return int(words[1]), int(words[3]), int(words[5])


def test_config_data_section_sets_the_split_and_options_given_here_win(ml100k_root, tmp_path):
    from movielens_gnn.data.datamodule import MovieLensDataModule

    config = tmp_path / "run.yaml"
    config.write_text("model:\n  embedding_dim: 8\ndata:\n  split: random\n  test_fraction: 0.25\n  val_fraction: 0.1\n"
                      "  seed: 7\ntrainer:\n  max_epochs: 1\n")

    def reference(**settings) -> tuple[int, int, int]:
        datamodule = MovieLensDataModule(root=str(ml100k_root), split="random", val_fraction=0.1, seed=7,
                                         cache_dir=str(tmp_path / "reference"), **settings)
        datamodule.prepare_data()
        data = datamodule.data
        return len(data.train.ratings), len(data.val.ratings), len(data.test.ratings)

    text = main(["describe", "--config", str(config), "--data.root", str(ml100k_root)])
    assert "## Split random" in text and _split_counts(text) == reference(test_fraction=0.25)
    assert _split_counts(text)[2] == 72  # a quarter of the 288 ratings
    text = main(["describe", "--config", str(config), "--data.root", str(ml100k_root), "--data.test_fraction", "0.5"])
    assert _split_counts(text) == reference(test_fraction=0.5) and _split_counts(text)[2] == 144
    assert "settings: seed 7, val_fraction 0.1, val_strategy random, test_fraction 0.5" in text
    facts = json.loads(main(["describe", "--config", str(config), "--data.root", str(ml100k_root), "--format", "json"]))
    assert facts["split"] == {"dataset": "ml-100k", "split": "random", "seed": 7, "val_fraction": 0.1,
                              "val_strategy": "random", "test_fraction": 0.25, **dict(zip(("train", "val", "test"),
                                                                                         reference(test_fraction=0.25))),
                              "graph_nodes": 54, "graph_edges": 2 * reference(test_fraction=0.25)[0]}
    ratio = main(["describe", "--data.root", str(ml100k_root), "--data.split", "ratio", "--data.ratios", "[0.6,0.2,0.2]"])
    assert "ratios [0.6, 0.2, 0.2]" in ratio
    default = main(["describe", "--data.root", str(ml100k_root)])
    assert "## Split u1" in default


def test_config_with_settings_the_data_module_does_not_take_is_refused(ml100k_root, tmp_path):
    config = tmp_path / "typo.yaml"
    config.write_text("data:\n  splt: random\n")
    from movielens_gnn.describe import main as describe

    with pytest.raises(ValueError, match=r"--config .*typo.yaml: data has settings the data module does not take: splt"):
        describe(["--config", str(config), "--data.root", str(ml100k_root)])
    config.write_text("data:\n  columns: user_id\n")
    with pytest.raises(ValueError, match=r"expected `columns:` to map user, item, rating, timestamp to columns, got 'user_id'"):
        describe(["--config", str(config), "--data.root", str(ml100k_root)])
    config.write_text("data: [1, 2]\n")
    with pytest.raises(ValueError, match=r"expected `data:` to be a mapping"):
        describe(["--config", str(config), "--data.root", str(ml100k_root)])


def test_csv_columns_from_a_data_config_merge_with_the_command_line(tmp_path):
    import argparse

    from movielens_gnn.describe import data_settings

    config = tmp_path / "csv.yaml"
    config.write_text("data:\n  dataset: csv\n  path: r.csv\n  header: false\n  columns:\n    user: 2\n    item: 0\n")
    args = argparse.Namespace(config=[config], **{name: None for name in (
        "root", "dataset", "split", "cache_dir", "verify", "path", "separator", "header", "items_path", "test_fraction",
        "val_fraction", "val_strategy", "val_user_fraction", "ratios", "ratio_remainder", "seed", "implicit_threshold",
        "column_user", "column_item", "column_timestamp")},
        column_rating="3")
    settings = data_settings(args)
    assert (settings["dataset"], settings["path"], settings["split"], settings["header"]) == ("csv", "r.csv", "random", False)
    assert (settings["columns"].user, settings["columns"].item, settings["columns"].rating) == (2, 0, 3)
    assert settings["columns"].timestamp is None
    args.column_rating, args.column_timestamp = "null", "4"  # as fit takes them: no rating column
    settings = data_settings(args)
    assert settings["columns"].rating is None and settings["columns"].timestamp == 4


def test_describing_your_own_file_names_the_file(tmp_path, capsys):
    path = tmp_path / "my folder" / "my ratings.csv"
    path.parent.mkdir()
    path.write_text("user_id,item_id,rating\n" + "".join(f"{u},{i},{1 + (u + i) % 5}\n" for u in range(6) for i in range(5)))
    facts = json.loads(main(["describe", "--data.dataset", "csv", "--data.path", str(path), "--data.root",
                             str(tmp_path / "data"), "--format", "json"]))
    assert facts["path"] == str(path) and facts["ratings"] == 30 and facts["rating_values"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    capsys.readouterr()
    text = main(["describe", "--data.dataset", "csv", "--data.path", str(path), "--data.root", str(tmp_path / "data")])
    assert text.splitlines()[0].endswith(f" at {path}")
    header = text.splitlines()[text.splitlines().index("ratings:") + 1].split()
    assert header == ["user_id", "item_id", "rating"]  # no timestamp column read: none shown, not zeros
