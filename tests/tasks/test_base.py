from __future__ import annotations

import copy
from functools import partial

import pytest
import torch

from movielens_gnn.cli import main
from movielens_gnn.tasks.base import fused_if_available, keep_implementation

from tests.conftest import REPO
from tests.tasks.test_rating import _hybrid

# Fused kernels on CPU arrived in torch 2.4 (the DGL environment's torch 2.2.1 has none).
CPU_FUSED = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 4)
needs_cpu_fused = pytest.mark.skipif(not CPU_FUSED, reason=f"torch {torch.__version__} has no fused optimizers on CPU")


def _parameters(dtype=torch.float32) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(shape, generator=generator, dtype=dtype)) for shape in ((50, 8), (8,))]


def _train(optimizer: torch.optim.Optimizer, steps: int = 50) -> list[torch.Tensor]:
    """Steps with the same sequence of gradients; the parameters after them."""
    generator = torch.Generator().manual_seed(1)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=generator, dtype=p.dtype)
        optimizer.step()
    return [p.detach().clone() for p in params]


@needs_cpu_fused
@pytest.mark.parametrize("cls", [torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD])
def test_fused_rebuild_keeps_groups_and_options_and_makes_the_same_updates(cls):
    options = {"lr": 0.01, "weight_decay": 1e-3} | ({"momentum": 0.9} if cls is torch.optim.SGD else {})
    plain_params, fused_params = _parameters(), _parameters()
    plain = cls([{"params": plain_params[:1]}, {"params": plain_params[1:], "weight_decay": 0.5}], **options)
    fused = fused_if_available(cls([{"params": fused_params[:1]}, {"params": fused_params[1:], "weight_decay": 0.5}],
                                   **options))
    assert type(fused) is cls and fused.defaults["fused"] is True and plain.defaults["fused"] is None
    assert [g["params"] for g in fused.param_groups] == [fused_params[:1], fused_params[1:]]
    for plain_group, fused_group in zip(plain.param_groups, fused.param_groups):
        assert {k: v for k, v in fused_group.items() if k not in ("params", "fused")} == \
               {k: v for k, v in plain_group.items() if k not in ("params", "fused")}
    assert fused_group["weight_decay"] == 0.5 and fused_group["fused"] is True
    # The same update up to float rounding: 50 steps, parameters of order 1.
    for start, a, b in zip(_parameters(), _train(plain), _train(fused)):
        assert (a - start).abs().max() > 0.1  # the steps moved the parameters
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_an_explicit_implementation_or_an_optimizer_without_fused_kernel_is_kept():
    for optimizer in (
        torch.optim.Adam(_parameters(), fused=False),
        torch.optim.Adam(_parameters(), foreach=True),
        torch.optim.Adam(_parameters(), differentiable=True),
        torch.optim.RMSprop(_parameters()),  # no fused implementation in torch
    ):
        assert fused_if_available(optimizer) is optimizer


def test_an_optimizer_outside_torch_is_kept_even_if_it_has_the_option():
    class Custom(torch.optim.Adam):
        pass

    optimizer = Custom(_parameters())
    assert fused_if_available(optimizer) is optimizer


def test_parameters_without_a_fused_kernel_keep_the_configured_optimizer():
    # Fused Adam takes real floating-point parameters only (recent torch says so only at the first step).
    optimizer = torch.optim.Adam(_parameters(torch.complex64))
    assert fused_if_available(optimizer) is optimizer and optimizer.defaults["fused"] is None


def test_a_torch_without_the_fused_kernel_keeps_the_configured_optimizer():
    class OldTorchAdam(torch.optim.Adam):
        """Adam as torch < 2.4 builds it on CPU: ``fused=True`` refused by the constructor."""

        __module__ = "torch.optim.adam"

        def __init__(self, params, lr: float = 1e-3, weight_decay: float = 0.0, fused=None) -> None:
            if fused:
                raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of "
                                   "supported devices: ['cuda', 'xpu', 'privateuseone'].")
            super().__init__(params, lr=lr, weight_decay=weight_decay, fused=fused)

    optimizer = OldTorchAdam(_parameters(), lr=0.1)
    assert fused_if_available(optimizer) is optimizer and optimizer.defaults["fused"] is None


@needs_cpu_fused
def test_configure_optimizers_runs_the_configured_adam_fused_with_its_groups():
    model = _hybrid(autoencoder_weight_decay=0.01, optimizer=partial(torch.optim.Adam, lr=0.1, weight_decay=1e-4))
    optimizer = model.configure_optimizers()
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["fused"] is True
    assert [(g["lr"], g["weight_decay"], g["fused"]) for g in optimizer.param_groups] == [(0.1, 1e-4, True),
                                                                                        (0.1, 0.01, True)]
    # Opting out in the config keeps torch's own choice.
    kept = _hybrid(optimizer=partial(torch.optim.Adam, lr=0.1, fused=False)).configure_optimizers()
    assert kept.defaults["fused"] is False


@needs_cpu_fused
@pytest.mark.parametrize("saved_fused", [False, True])
def test_a_loaded_state_keeps_this_processs_implementation(saved_fused):
    # Saved by one implementation, loaded into the other: the groups take the saved flag, then ours back.
    source = torch.optim.Adam(_parameters(), lr=0.01, fused=saved_fused)
    trained = _train(source, steps=3)
    target = torch.optim.Adam([torch.nn.Parameter(t.clone()) for t in trained], lr=0.01, fused=not saved_fused)
    target.load_state_dict(copy.deepcopy(source.state_dict()))  # as from a file: no tensors shared
    assert [g["fused"] for g in target.param_groups] == [saved_fused]
    keep_implementation(target)
    assert [g["fused"] for g in target.param_groups] == [not saved_fused]
    steps = [target.state[p]["step"] for p in target.param_groups[0]["params"]]
    assert all(s.dtype == torch.float32 and s.item() == 3 for s in steps)
    # It then continues as the source does, up to rounding.
    for a, b in zip(_train(source, steps=5), _train(target, steps=5)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@needs_cpu_fused
def test_resuming_an_unfused_run_trains_fused(tmp_path, monkeypatch, ml100k_root):
    monkeypatch.chdir(tmp_path)
    common = ["--config", str(REPO / "configs" / "gcn_dot.yaml"), "--data.root", str(ml100k_root),
              "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    main(["fit", *common, "--trainer.max_epochs", "2", "--model.optimizer.init_args.fused", "false"])
    last = tmp_path / "checkpoints" / "gcn_dot" / "version_0" / "last.ckpt"
    saved = torch.load(last, weights_only=True)["optimizer_states"][0]["param_groups"]
    assert [g["fused"] for g in saved] == [False]
    resumed = main(["fit", *common, "--trainer.max_epochs", "4", "--ckpt_path", str(last)])
    assert resumed.trainer.current_epoch == 4
    assert [g["fused"] for g in resumed.trainer.optimizers[0].param_groups] == [True]
