"""The DGL engine gives the native engine's outputs and gradients (run in the DGL environment)."""

from __future__ import annotations

import importlib

import pytest
import torch

from movielens_gnn.models.encoder import GraphEncoder
from movielens_gnn.models.graph import BipartiteGraph
from movielens_gnn.tasks.rating import RatingModel


def _dgl_available() -> bool:
    try:
        importlib.import_module("movielens_gnn.models.dgl_engine").import_dgl()
    except ImportError:
        return False
    return True


needs_dgl = pytest.mark.skipif(not _dgl_available(), reason="DGL is not importable here (see the README's DGL section)")
pytestmark = pytest.mark.dgl
TOL = {"atol": 1e-5, "rtol": 1e-5}


def _graph() -> BipartiteGraph:
    g = torch.Generator().manual_seed(0)
    pairs = torch.randperm(30 * 40, generator=g)[:300]
    pairs = pairs[(pairs % 40 < 37) & (pairs // 40 < 28)]  # items 37-39 and users 28-29 have no edges
    ratings = torch.randint(1, 6, (len(pairs),), generator=g).float()
    feats = torch.randn(30, 5, generator=g), torch.randn(40, 3, generator=g)
    return BipartiteGraph(pairs // 40, pairs % 40, 30, 40, user_features=feats[0], item_features=feats[1], ratings=ratings)


CONFIGS = [
    {"hidden_dims": [16]},
    {"hidden_dims": [32, 8], "activation": "relu", "combine": "last"},  # shrinking layer: W before aggregation
    {"hidden_dims": [16, 16], "activation": "tanh", "combine": "mean"},
    {"hidden_dims": [24, 16], "activation": "elu", "combine": "concat"},
    {"hidden_dims": [16], "user_feature_dim": 5, "item_feature_dim": 3},
    {"hidden_dims": [16, 16], "num_relations": 5, "combine": "mean"},
    {"hidden_dims": [16], "edge_dropout": 0.3},
    {"hidden_dims": [16, 16], "num_relations": 5, "edge_dropout": 0.3, "combine": "mean"},
]


@needs_dgl
@pytest.mark.parametrize("config", CONFIGS, ids=[str(i) for i in range(len(CONFIGS))])
def test_encoder_parity_values_and_gradients(config):
    graph = _graph()
    native = GraphEncoder(30, 40, embedding_dim=16, engine="native", **config)
    dgl = GraphEncoder(30, 40, embedding_dim=16, engine="dgl", **config)
    assert native.state_dict().keys() == dgl.state_dict().keys()
    dgl.load_state_dict(native.state_dict())
    weights = torch.randn(70, native.out_dim)
    outputs = []
    for encoder in (native, dgl):
        torch.manual_seed(7)  # the same edge-dropout draw for both
        encoder.train()
        users, items = encoder(graph)
        (torch.cat([users, items]) * weights).sum().backward()
        outputs.append((torch.cat([users, items]), {n: p.grad for n, p in encoder.named_parameters()}))
    (out_n, grad_n), (out_d, grad_d) = outputs
    torch.testing.assert_close(out_d, out_n, **TOL)
    for name in grad_n:
        torch.testing.assert_close(grad_d[name], grad_n[name], **TOL, msg=name)
    # Nodes without edges see only their bias on both engines.
    assert torch.isfinite(out_d).all()


@needs_dgl
def test_relational_dgl_encoder_trains_after_a_first_pass_in_inference_mode():
    """As in fit: the sanity check's validation (inference mode) is the first use of the relational
    layouts; DGL then saves their values for backward in the training step."""
    graph = _graph()
    encoder = GraphEncoder(30, 40, embedding_dim=16, hidden_dims=[16], num_relations=5, engine="dgl")
    with torch.inference_mode():
        encoder.eval()
        encoder(graph)
    encoder.train()
    users, items = encoder(graph)
    (users.sum() + items.sum()).backward()
    assert encoder.layers[0].weight.grad is not None


@needs_dgl
def test_dgl_layer_is_dgl_graphconv_with_native_parameter_layout():
    from dgl.nn.pytorch import GraphConv as DGLGraphConv

    encoder = GraphEncoder(3, 4, embedding_dim=8, hidden_dims=[6], engine="dgl")
    (layer,) = encoder.layers
    assert isinstance(layer, DGLGraphConv) and layer.weight.shape == (8, 6) and layer.bias.shape == (6,)


@needs_dgl
@pytest.mark.parametrize("autoencoder_dim", [0, 8])
def test_checkpoint_weights_move_between_engines(autoencoder_dim):
    graph = _graph()
    options = {"embedding_dim": 16, "hidden_dims": [16], "combine": "mean", "side_features": True,
               "autoencoder_dim": autoencoder_dim}
    native = RatingModel(30, 40, 5, 3, 3.5, **options)
    dgl = RatingModel(30, 40, 5, 3, 3.5, engine="dgl", **options)
    dgl.load_state_dict(native.state_dict())
    for model in (native, dgl):
        model.attach_graph(graph)
        model.eval()
    users, items = torch.tensor([0, 5, 29]), torch.tensor([1, 38, 3])
    torch.testing.assert_close(dgl(users, items), native(users, items), **TOL)


@pytest.mark.skipif(_dgl_available(), reason="DGL is importable here, so there is no error to check")
def test_missing_dgl_fails_before_training_with_the_install_command():
    with pytest.raises(ImportError, match=r"engine 'dgl' needs a working DGL.*pip install -e \"\.\[dgl\]\""):
        RatingModel(3, 4, engine="dgl")


@pytest.mark.skipif(_dgl_available(), reason="DGL is importable here, so there is no error to check")
def test_missing_dgl_is_one_error_line_from_the_cli(tmp_path, monkeypatch, ml100k_root, capsys):
    """The task is built inside jsonargparse, which wraps the reason in its list of union types and a dump of
    every option: the line keeps the reason only."""
    from movielens_gnn.cli import main
    from tests.test_cli import _args

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(_args("fit", "gcn_dot.yaml", ml100k_root, "--model.engine", "dgl"))
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: --model (RatingModel): engine 'dgl' needs a working DGL")
    assert errors[0].endswith("Or use --model.engine native.") and "Namespace(" not in errors[0]


@needs_dgl
def test_cli_fit_on_dgl_and_test_on_both_engines(tmp_path, monkeypatch, ml100k_root):
    from movielens_gnn.cli import main
    from tests.test_cli import _args

    monkeypatch.chdir(tmp_path)
    fit = main(_args("fit", "gcn_dot.yaml", ml100k_root, "--trainer.max_epochs", "3", "--model.engine", "dgl"))
    assert type(fit.model.encoder.layers[0]).__module__.startswith("dgl.")
    best = fit.trainer.checkpoint_callback.best_model_path
    rmse = {}
    for engine in ("dgl", "native"):
        tested = main(_args("test", "gcn_dot.yaml", ml100k_root, "--model.engine", engine, "--ckpt_path", best))
        rmse[engine] = tested.trainer.callback_metrics["test_rmse"].item()
    assert rmse["dgl"] == pytest.approx(rmse["native"], abs=1e-5)
