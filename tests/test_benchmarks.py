"""The benchmark scripts' own arithmetic (they are run by hand, not by the test suite)."""

from __future__ import annotations

import re
import sys

import torch

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import accuracy  # noqa: E402
import pytest  # noqa: E402


def _row(split, seed, rmse, mae, epoch=10, wall=5.0):
    return {"config": "c.yaml", "split": split, "seed": seed, "test_rmse": rmse, "test_mae": mae,
            "best_epoch": epoch, "wall_s": wall}


def test_accuracy_table_means_and_sample_std():
    rows = [_row("u1", 0, 0.90, 0.70, 10, 4.0), _row("u1", 1, 0.92, 0.72, 20, 6.0),
            _row("u2", 0, 0.88, 0.69, 30, 5.0)]
    lines = accuracy.table(rows).splitlines()
    assert lines[2] == "| c.yaml | u1 | 2 | 0.9100 ± 0.0141 | 0.7100 ± 0.0141 | 15 | 5 (6) |"
    assert lines[3] == "| c.yaml | u2 | 1 | 0.8800 ± 0.0000 | 0.6900 ± 0.0000 | 30 | 5 (5) |"
    assert lines[4] == "| c.yaml | mean of u1,u2 | 3 | 0.9000 ± 0.0200 | 0.7033 ± 0.0153 | 20 | 5 (6) |"


def test_ranking_baselines_go_through_the_shared_evaluation(ml100k_root):
    import ranking
    import torch

    from movielens_gnn.data.datamodule import MovieLensDataModule
    from movielens_gnn.metrics import ranking_metrics
    from movielens_gnn.models.baselines import Popularity, interaction_matrix

    dm = MovieLensDataModule(root=str(ml100k_root), split="ratio", seed=0)
    row = ranking.run_baseline("popularity", dm, threshold=0.0, l2_grid=[])
    assert set(ranking.ROW_KEYS) <= set(row) and row["best_epoch"] is None
    # By hand: every test user ranks all items not in their training or validation part by count.
    train = dm.data.train
    counts = interaction_matrix(train.users, train.items, dm.num_users, dm.num_items).sum(0)
    users = torch.unique(dm.data.test.users)
    direct = ranking_metrics(counts.expand(len(users), -1), dm.known_items(users), dm.relevant_items(users, 0.0), (10,))
    assert row["test_ndcg@10"] == pytest.approx((direct["ndcg@10"] / direct["users"]).item(), abs=1e-6)
    assert torch.equal(Popularity(dm.num_items).fit(interaction_matrix(train.users, train.items, dm.num_users,
                                                                       dm.num_items)).counts, counts)
    ease = ranking.run_baseline("ease", dm, threshold=0.0, l2_grid=[1.0, 1000.0])
    assert ease["l2"] in (1.0, 1000.0) and 0 <= ease["test_ndcg@10"] <= 1


def test_ranking_config_row_is_the_tested_best_checkpoint(ml100k_root, tmp_path):
    import ranking

    from movielens_gnn.checkpoint import load_checkpoint

    protocol = {**ranking.PROTOCOLS["ratio"], "remainder": "test"}  # --ratio-remainder test
    row = ranking.run_config(REPO / "configs" / "lightgcn_bpr.yaml", protocol, 0, str(ml100k_root),
                             tmp_path / "cache", tmp_path / "run", extra=("--trainer.max_epochs", "3"))
    assert set(ranking.ROW_KEYS) <= set(row) and all(0 <= row[k] <= 1 for k in ranking.ROW_KEYS)
    (best,) = (tmp_path / "run" / "checkpoints" / "lightgcn_bpr" / "version_0").glob("epoch=*.ckpt")
    checkpoint = load_checkpoint(best)
    assert row["best_epoch"] == checkpoint["epoch"] < 3
    assert checkpoint["datamodule_hyper_parameters"]["ratio_remainder"] == "test"


def test_ranking_table_means():
    import ranking

    rows = [{"config": "ease", "protocol": "ratio", "seed": s, "wall_s": 1.0,
             **{key: value for key in ("test_ndcg@10", "test_recall@10", "test_hitrate@10", "test_precision@10",
                                       "test_mrr@10", "test_ndcg@20")}} for s, value in enumerate((0.3, 0.5))]
    assert ranking.table(rows).splitlines()[2] == (
        "| ease | ratio | 2 | " + " | ".join(["0.4000 ± 0.1414"] * 6) + " | 1.0 |")


@pytest.mark.parametrize("layout", ["edge_index", "csr"])
def test_pyg_side_by_side_model_is_the_same_function(layout):
    """speed.py's PyG column times the same model: with our weights copied in, PyG's GCNConv version
    gives our RatingModel's predictions."""
    pytest.importorskip("torch_geometric", reason="torch_geometric is not installed (it is on the CUDA images)")
    import torch

    import speed
    from movielens_gnn.models.graph import BipartiteGraph
    from movielens_gnn.tasks.rating import RatingModel

    num_users, num_items, dim = 9, 7, 4
    users, items = speed.power_law_edges(num_users, num_items, 30, seed=3)
    ours = RatingModel(num_users, num_items, rating_mean=3.0, embedding_dim=dim, hidden_dims=[dim], combine="mean")
    ours.attach_graph(BipartiteGraph(users, items, num_users, num_items))
    theirs = speed.PygGcnDot(num_users, num_items, speed.pyg_graph(users, items, num_users, num_items, layout), dim)
    encoder, head, conv = ours.encoder, ours.head, ours.encoder.layers[0]
    with torch.no_grad():
        for p in (encoder.user_embedding.weight, encoder.item_embedding.weight, conv.weight, conv.bias,
                  head.user_bias.weight, head.item_bias.weight):
            p.normal_()
        theirs.embedding.weight.copy_(torch.cat([encoder.user_embedding.weight, encoder.item_embedding.weight]))
        theirs.conv.lin.weight.copy_(conv.weight.T)  # PyG's Linear is (out, in); ours DGL's (in, out)
        theirs.conv.bias.copy_(conv.bias)
        theirs.user_bias.copy_(head.user_bias.weight[:, 0])
        theirs.item_bias.copy_(head.item_bias.weight[:, 0])
    ours.eval()
    pairs = (torch.tensor([0, 3, 8, 2]), torch.tensor([1, 6, 0, 2]))
    torch.testing.assert_close(theirs(*pairs), ours(*pairs), rtol=1e-5, atol=1e-5)


def test_gcmc_runner_rebuilds_the_archive_and_replaces_only_the_download(tmp_path):
    import zipfile

    import gcmc_dgl

    data_root = tmp_path / "data"
    (data_root / "ml-100k").mkdir(parents=True)
    for name, text in (("u1.base", "1\t2\t3\t4\n"), ("u.item", "2|Film|x\n")):
        (data_root / "ml-100k" / name).write_text(text)
    download = tmp_path / "download"
    download.mkdir()
    gcmc_dgl.archive(data_root, download)
    with zipfile.ZipFile(download / "ml-100k.zip") as zf:
        assert sorted(zf.namelist()) == ["ml-100k/u.item", "ml-100k/u1.base"]
        assert zf.read("ml-100k/u1.base") == b"1\t2\t3\t4\n"

    # A stand-in for DGL's example: data.py's download would reach the network; train.py reports as
    # the real one does and checks what it was given.
    example = tmp_path / "gcmc"
    example.mkdir()
    (example / "data.py").write_text("def download(url, path=None):\n    raise OSError('network')\n")
    (example / "model.py").write_text("")
    (example / "utils.py").write_text("")
    (example / "train.py").write_text(
        "import os, sys\nfrom data import download\n"
        "path = download('https://files.grouplens.org/datasets/movielens/ml-100k.zip',\n"
        "                path=os.environ['DGL_DOWNLOAD_DIR'] + '/ml-100k.zip')\n"
        "assert os.path.getsize(path) > 0 and sys.argv[1:] == %r\n"
        "print('Iter=   1, loss=1.0')\n"
        "print('Best Iter Idx=647, Best Valid RMSE=0.8866, Best Test RMSE=0.9098')\n" % gcmc_dgl.GCMC_ARGS)
    assert len(gcmc_dgl.example_digest(example)) == 12
    run = gcmc_dgl.gcmc_once(example, sys.executable, download)
    assert (run["best_iter"], run["val_rmse"], run["test_rmse"]) == (647, 0.8866, 0.9098) and run["wall_s"] > 0

    (example / "model.py").unlink()
    with pytest.raises(SystemExit, match="lacks model.py"):
        gcmc_dgl.example_digest(example)


def test_startup_table_adds_up_from_the_process_start():
    import subprocess

    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "startup.py"), "--by-package"],
                         capture_output=True, text=True, check=True, cwd=REPO).stdout
    stages, by_package = out.split("| top-level package |")
    rows = [line.split("|")[1:-1] for line in stages.splitlines() if line.startswith("| ") and "stage" not in line]
    names = [name.strip() for name, _, _ in rows]
    assert names[1:4] == ["import torch", "import pytorch_lightning",
                          "import movielens_gnn.cli (jsonargparse, torchmetrics, the project)"] and len(rows) == 7
    seconds = [float(s) for _, s, _ in rows]
    since = [float(t) for _, _, t in rows]
    # Each stage's "since process start" is the previous one plus its own seconds (to the printed rounding).
    assert all(abs(since[0] + sum(seconds[1:i + 1]) - since[i]) <= 0.005 * (i + 2) + 1e-9 for i in range(len(rows)))
    # The findings' lines (their values are tested with controlled packages in tests/test_startup.py).
    listed = r"(none|\w+(, \w+)*)"
    assert re.search(rf"^Bytecode cache missing after loading: {listed}  $", stages, re.M)
    assert re.search(rf"^Bytecode cache written by this process: {listed}  $", stages, re.M)
    assert re.search(r"^\(of torch, pytorch_lightning, torchmetrics, sympy; dont_write_bytecode [01], pycache_prefix .+\)  $",
                     stages, re.M)
    assert re.search(rf"^Unused extras torchmetrics imported: {listed}$", stages, re.M)
    # The child's import profile: torch is the biggest package, and the rows add up to the stated total.
    total = float(re.search(r"wall, ([\d.]+) s of imports", stages).group(1))
    packages = [line.split("|")[1:-1] for line in by_package.splitlines()[2:] if line.startswith("| ")]
    assert packages[0][0].strip() == "torch" and len(packages) == 13 and packages[-1][0].strip().endswith("others")
    assert abs(sum(float(spent) for _, spent in packages) - total) <= 0.005 * 14
    assert seconds[1] > 0.05 and seconds[2] > 0.05  # torch and Lightning take time to import, always


def test_lean_env_closure_follows_requirements_extras_and_markers():
    import lean_env

    dists, missing = lean_env.closure(["pytorch-lightning", "jsonargparse[signatures]", "no-such-package-here"])
    assert {"pytorch-lightning", "torch", "torchmetrics", "lightning-utilities", "jsonargparse",
            "docstring-parser", "typeshed-client"} <= set(dists)
    assert missing == ["no-such-package-here"]
    plain, _ = lean_env.closure(["jsonargparse"])
    assert "docstring-parser" not in plain  # only the [signatures] extra brings it in
    # The README's install put every dependency of pyproject.toml into the test environment.
    assert set(lean_env.closure(lean_env.project_requirements([]))[0]) >= {"torch", "pandas", "matplotlib", "wandb"}


def test_lean_env_links_only_the_closure(tmp_path):
    import importlib.metadata
    import subprocess

    import lean_env

    python = lean_env.build(tmp_path / "env", {"packaging": importlib.metadata.distribution("packaging")})
    code = ("import importlib.util as u, packaging, sys; print(u.find_spec('torch') is None, "
            "packaging.__file__.startswith(sys.prefix))")
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin"}).stdout.split()
    assert out == ["True", "True"]  # packaging is linked into the venv, torch is not reachable


def test_profile_section_tables_each_config(ml100k_root, tmp_path):
    """On the synthetic ml-100k files: one table per config, its rows the busiest operators with their
    calls per step (the dense layer products run every step, so aten::addmm or aten::mm is among them)."""
    import speed

    lines = speed.section_profile(str(ml100k_root), tmp_path / "cache", torch.device("cpu"), steps=2, top=5)
    text = "\n".join(lines)
    assert text.count("| operator | calls / step | host ms / step | device ms / step |") == len(speed.CONFIGS)
    rows = [line.split("|")[1:-1] for line in lines if line.startswith("| ") and not line.startswith("| operator")]
    assert len(rows) == 5 * len(speed.CONFIGS)
    assert all(float(calls) > 0 and float(host) >= 0 and device.strip() == "–" for _, calls, host, device in rows)
    assert {"aten::addmm", "aten::mm"} & {name.strip() for name, *_ in rows}
    assert "CUDA runtime calls" not in text  # CUDA only


def test_lean_env_links_a_distribution_without_record(tmp_path):
    """Some system installs keep no RECORD: top_level.txt names the modules (a folder and a single file)."""
    import importlib.metadata

    import lean_env

    site = tmp_path / "site"
    (site / "fakepkg").mkdir(parents=True)
    (site / "fakepkg" / "__init__.py").write_text("")
    (site / "single.py").write_text("")
    info = site / "fakepkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakepkg\nVersion: 1.0\n")
    (info / "top_level.txt").write_text("fakepkg\nsingle\n")
    dist = importlib.metadata.PathDistribution(info)
    assert dist.files is None
    assert lean_env.top_level_paths(dist) == {site / "fakepkg", site / "single.py", info}


def test_a_benchmark_s_temporary_workdir_is_removed_and_a_given_one_kept(tmp_path):
    from common import workdir_or_temporary

    with workdir_or_temporary(None, "mlgnn-test-") as scratch:
        (scratch / "cache").mkdir()
        assert scratch.name.startswith("mlgnn-test-") and scratch.is_dir()
    assert not scratch.exists()
    with pytest.raises(RuntimeError), workdir_or_temporary(None, "mlgnn-test-") as failed:
        raise RuntimeError("a run failed")
    assert not failed.exists()  # removed on errors too
    with workdir_or_temporary(tmp_path / "mine", "mlgnn-test-") as given:
        given.mkdir()
    assert given == tmp_path / "mine" and given.is_dir()
