"""Speed: the GraphConv layer, one training step (Lightning vs a bare loop), `fit` wall time, scaling.

    python benchmarks/speed.py --data-root ../shared/datasets                 # layer, step, fit, scaling on CPU
    python benchmarks/speed.py --data-root DIR --sections layer,step --device cuda

Every figure is the median of several repeats in this one run (the step section: means). Sections:
  layer    GraphConv forward+backward on the u1 training graph at 32/64/128 dims: the native engine,
           and dgl.nn.GraphConv beside it when DGL can be imported.
  step     one full training step (forward, loss, backward, optimizer) of each config, in Lightning
           (time between successive training batches, validation off, the config's training-metrics
           cadence) and as a bare loop; means over the steps, so epochs that log count.
  optimizer  bare-loop steps of each config with its optimizer as fit builds it (fused where torch
           can) and with `fused: false`, alternating (not in the default sections).
  syncs    CUDA only: host synchronisations per training step of each config inside Lightning
           (torch.cuda.set_sync_debug_mode("warn") over 20 epochs after 3 of warm-up, validation
           off), with the code lines that cause them.
  profile  torch.profiler over 10 bare steps of each config: operators by self time on the host and
           (CUDA) the device, and CUDA runtime calls per step (not in the default sections).
  topk     the ranking metrics' top K of 1,024 users' scores at the item counts of ml-100k, ml-20m and
           ml-32m: metrics.top_k_indices against the full stable sort it equals (not in the default sections).
  fit      `python -m movielens_gnn fit` from process start to exit, then the test RMSE of its best
           checkpoint (measured separately, not in the wall time).
  scaling  synthetic bipartite graphs with power-law degrees at ML-1M/10M/25M sizes: seconds per
           full-batch epoch and peak RSS, each size in a fresh process; the fitted exponent of time
           against edges. With --pyg, the same model written with PyG's GCNConv (cached
           normalisation; its edge_index and its sparse-CSR input, the faster one reported) runs on
           the same edges in fresh processes beside it; the column is skipped when torch_geometric
           cannot be imported.
CLI options after `--` go to every run of the step and fit sections
(`-- --model.optimizer.init_args.fused false`); `--configs` names the configs of the step, optimizer,
syncs, profile and fit sections (default: configs/gcn_dot.yaml and configs/ml100k_best.yaml).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from common import REPO, command_line, machine, peak_memory, quiet_logs, run_worker, workdir_or_temporary

from movielens_gnn.checkpoint import load_checkpoint
from movielens_gnn.cli import main as cli_main
from movielens_gnn.data.datamodule import EdgeBatch, MovieLensDataModule, pair_order
from movielens_gnn.models.graph import BipartiteGraph
from movielens_gnn.models.graphconv import GraphConv
from movielens_gnn.tasks.base import fused_if_available
from movielens_gnn.tasks.rating import RatingModel

CONFIGS = ("configs/gcn_dot.yaml", "configs/ml100k_best.yaml")
WORKER_TIMEOUT_S = 300  # one scaling worker (a size, one model); a stuck one must not eat a GPU session
# (users, items, ratings) of MovieLens 1M, 10M and 25M.
SIZES = {"1m": (6_040, 3_706, 1_000_209), "10m": (69_878, 10_677, 10_000_054), "25m": (162_541, 59_047, 25_000_095)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, repeats: int, warmup: int = 3, average=statistics.median) -> float:
    """Seconds of ``fn()``: the ``average`` (median unless told) over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return average(times)


def u1_datamodule(data_root: str, cache: Path) -> MovieLensDataModule:
    return MovieLensDataModule(root=data_root, split="u1", cache_dir=str(cache))


# ------------------------------------------------------------------------------------- layer
def section_layer(dm: MovieLensDataModule, device: torch.device, repeats: int) -> list[str]:
    graph = dm.graph.to(device)
    try:
        import dgl
        from dgl.nn.pytorch import GraphConv as DGLGraphConv

        users = dm.data.train.users
        items = dm.data.train.items + dm.num_users
        dgl_graph = dgl.graph((torch.cat([users, items]), torch.cat([items, users])), num_nodes=graph.num_nodes)
        dgl_graph = dgl_graph.to(device)
        dgl_note = f"dgl {dgl.__version__}"
    except Exception as err:  # DGL is optional and fails to import on torch > 2.2 (missing graphbolt)
        dgl_graph, dgl_note = None, f"DGL not importable: {type(err).__name__}"
    rows = ["| dims | native fwd+bwd ms | DGL fwd+bwd ms | native / DGL |", "|---|---|---|---|"]
    for dims in (32, 64, 128):
        x = torch.randn(graph.num_nodes, dims, device=device, requires_grad=True)
        native = GraphConv(dims, dims).to(device)
        t_native = timed(lambda: native(graph, x).sum().backward(), device, repeats)
        if dgl_graph is not None:
            reference = DGLGraphConv(dims, dims, norm="both", allow_zero_in_degree=True).to(device)
            t_dgl = timed(lambda: reference(dgl_graph, x).sum().backward(), device, repeats)
            rows.append(f"| {dims} | {t_native * 1e3:.2f} | {t_dgl * 1e3:.2f} | {t_native / t_dgl:.2f} |")
        else:
            rows.append(f"| {dims} | {t_native * 1e3:.2f} | – | – |")
    return [f"Graph: u1 training edges, {graph.num_nodes} nodes, {graph.num_edges} directed edges; {dgl_note}.", "", *rows]


# -------------------------------------------------------------------------------------- step
class _StepTimer:
    """A Lightning callback taking the time between the starts of successive training batches."""

    def __new__(cls):
        import pytorch_lightning as pl

        class StepTimer(pl.Callback):
            def __init__(self) -> None:
                self.starts: list[float] = []

            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
                _sync(pl_module.device)
                self.starts.append(time.perf_counter())

        return StepTimer()


def _instantiate(config: str, data_root: str, cache: Path, *options: str):
    cli = cli_main(["--config", str(REPO / config), "--data.root", data_root, "--data.cache_dir", str(cache),
                    "--trainer.logger", "false", *options], run=False)
    return cli.model, cli.datamodule


def mse_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, edges: tuple, device: torch.device):
    """One full-batch training step (MSE of ``model(users, items)``, backward, optimizer) as a closure."""
    users, items, ratings = (t.to(device) for t in edges)
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.mse_loss(model(users, items), ratings).backward()
        optimizer.step()

    return step


def mse_step_seconds(model: torch.nn.Module, optimizer: torch.optim.Optimizer, edges: tuple, device: torch.device,
                     repeats: int, warmup: int = 3, average=statistics.median) -> float:
    """Seconds of one ``mse_step``, the ``average`` over ``repeats``."""
    return timed(mse_step(model, optimizer, edges, device), device, repeats, warmup=warmup, average=average)


def _bare_model(config: str, data_root: str, cache: Path, device: torch.device, *options: str):
    """The config's model on ``device`` with its training graph and optimizer, and the training edges."""
    model, dm = _instantiate(config, data_root, cache, *options)
    model.attach_graph(dm.graph)
    model.to(device)
    optimizer = model.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    return model, optimizer, tuple(dm.data.train)


def _bare_step_ms(config: str, data_root: str, cache: Path, device: torch.device, repeats: int,
                  *options: str) -> float:
    model, optimizer, edges = _bare_model(config, data_root, cache, device, *options)
    return mse_step_seconds(model, optimizer, edges, device, repeats, average=statistics.fmean) * 1e3


def section_profile(data_root: str, cache: Path, device: torch.device, steps: int = 10, top: int = 12,
                    configs: Sequence[str] = CONFIGS) -> list[str]:
    """Where a bare full-batch step's time goes: torch.profiler over ``steps`` steps after 5 of warm-up.

    Per config, the operators with the most self time on the host or (CUDA) the device, per step, and on
    CUDA the runtime calls per step (kernel launches, copies, synchronisations, allocations): on a graph
    as small as u1's, a GPU step is mostly these, not arithmetic.
    """
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    lines = [f"{steps} bare steps per config after 5 of warm-up, per step; host times include the profiler's "
             "own overhead (compare the wall time with the step section's)."]
    for config in configs:
        model, optimizer, edges = _bare_model(config, data_root, cache, device)
        step = mse_step(model, optimizer, edges, device)
        for _ in range(5):
            step()
        _sync(device)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as prof:
            start = time.perf_counter()
            for _ in range(steps):
                step()
            _sync(device)
            wall = time.perf_counter() - start
        events = prof.key_averages()

        def device_ms(event) -> float:  # torch >= 2.4 names it device time; older ones cuda time
            return getattr(event, "self_device_time_total", getattr(event, "self_cuda_time_total", 0)) / 1e3 / steps

        # Three kinds of entries: the kernels themselves (device events), the CUDA runtime and driver
        # calls (cudaLaunchKernel, cuLaunchKernel, …) and the operators, whose device time is that of
        # the kernels they launched. The device's busy time adds up the kernels alone: adding the
        # operators' too would count each kernel twice.
        kernels = [e for e in events if e.device_type == DeviceType.CUDA]
        runtime = [e for e in events if e.device_type == DeviceType.CPU and re.match(r"cu(da)?[A-Z]", e.key)]
        ops = [e for e in events if e.device_type == DeviceType.CPU and e not in runtime]
        ops.sort(key=lambda e: -max(e.self_cpu_time_total / 1e3 / steps, device_ms(e)))
        lines += ["", f"**{config}**: {1e3 * wall / steps:.2f} ms a step under the profiler"
                  + (f", device busy {sum(device_ms(e) for e in kernels):.2f} ms in {sum(e.count for e in kernels) / steps:g} "
                     "kernels" if cuda else ""), "",
                  "| operator | calls / step | host ms / step | device ms / step |", "|---|---|---|---|"]
        lines += [f"| {e.key} | {e.count / steps:g} | {e.self_cpu_time_total / 1e3 / steps:.3f} | "
                  + (f"{device_ms(e):.3f} |" if cuda else "– |") for e in ops[:top]]
        if cuda:
            runtime.sort(key=lambda e: -e.count)
            calls = ", ".join(f"{e.key} {e.count / steps:g}" for e in runtime[:8]) or "none recorded"
            lines += ["", f"CUDA runtime calls per step: {calls}"]
    return lines


def _bare_trainer(device: torch.device, max_epochs: int, callback):
    """A Trainer with nothing but training and ``callback``: no validation, logger, checkpoints or bar."""
    import pytorch_lightning as pl

    return pl.Trainer(accelerator="gpu" if device.type == "cuda" else device.type, devices=1, max_epochs=max_epochs,
                      limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=[callback], num_sanity_val_steps=0)


def _lightning_step_ms(config: str, data_root: str, cache: Path, device: torch.device, repeats: int,
                       *options: str) -> float:
    model, dm = _instantiate(config, data_root, cache, *options)
    timer = _StepTimer()
    _bare_trainer(device, repeats + 3, timer).fit(model, datamodule=dm)
    gaps = [b - a for a, b in zip(timer.starts, timer.starts[1:])][3:]
    # The mean, not the median: epochs that log training metrics (every train_metrics_every_n_epochs-th)
    # are slower, and a median would leave them out.
    return statistics.fmean(gaps) * 1e3


def _given(overrides: Sequence[str], lead: str = "") -> str:
    """`` with `--the --options` `` for a section's caption, or nothing without overrides."""
    return f"{lead} with `{' '.join(overrides)}`" if overrides else ""


def _rounds_row(label: str, pairs: list[tuple[float, float]]) -> str:
    """A table row from alternating rounds of ``(a, b)`` milliseconds: the medians of ``a`` and ``b``, the
    median of the per-round ratios ``a / b`` (each round's two runs measured seconds apart), every round."""
    a, b = (statistics.median(p[k] for p in pairs) for k in (0, 1))
    ratio = statistics.median(x / y for x, y in pairs)
    each = ", ".join(f"{x:.1f} / {y:.1f}" for x, y in pairs)
    return f"| {label} | {a:.1f} | {b:.1f} | {ratio:.2f} | {each} |"


# The configs' training-metrics cadence, and every epoch beside it: what the cadence saves.
EVERY_EPOCH = ("--model.train_metrics_every_n_epochs", "1")


def section_step(data_root: str, cache: Path, device: torch.device, repeats: int, rounds: int = 3,
                 overrides: Sequence[str] = (), configs: Sequence[str] = CONFIGS) -> list[str]:
    """Bare and Lightning steps measured alternately ``rounds`` times (this machine's speed drifts by
    tens of percent between minutes); the step cells are medians over rounds of per-round means, the
    ratio the median of the per-round ratios (each round's runs measured seconds apart). Lightning runs
    twice a round: with the config's ``train_metrics_every_n_epochs`` and with training metrics every epoch.
    ``overrides`` (CLI options) apply to every run."""
    rows = ["| config | Lightning step ms | bare loop step ms | Lightning / bare | per round (Lightning / bare ms) |",
            "|---|---|---|---|---|"]
    for config in configs:
        rounds_ms = [(_lightning_step_ms(config, data_root, cache, device, repeats, *overrides),
                      _lightning_step_ms(config, data_root, cache, device, repeats, *overrides, *EVERY_EPOCH),
                      _bare_step_ms(config, data_root, cache, device, repeats, *overrides)) for _ in range(rounds)]
        for column, label in ((0, config), (1, f"{config}, training metrics every epoch")):
            rows.append(_rounds_row(label, [(r[column], r[2]) for r in rounds_ms]))
    return [f"Full-batch training step on u1 (76,000 training ratings){_given(overrides, ',')}; {rounds} alternating rounds.", "",
            *rows]


# The optimizer as torch builds it when the config leaves the implementation open, beside fit's fused one.
UNFUSED = ("--model.optimizer.init_args.fused", "false")


def section_optimizer(data_root: str, cache: Path, device: torch.device, repeats: int, rounds: int = 3,
                      configs: Sequence[str] = CONFIGS) -> list[str]:
    """Bare-loop steps with the config's optimizer as ``fit`` builds it (fused where torch can) and with
    ``fused: false``, alternately ``rounds`` times; medians of the per-round means and of their ratios."""
    rows = ["| config | fused step ms | unfused step ms | fused / unfused | per round (fused / unfused ms) |",
            "|---|---|---|---|---|"]
    for config in configs:
        rounds_ms = [(_bare_step_ms(config, data_root, cache, device, repeats),
                      _bare_step_ms(config, data_root, cache, device, repeats, *UNFUSED)) for _ in range(rounds)]
        rows.append(_rounds_row(config, rounds_ms))
    return [f"Bare full-batch training step on u1, optimizer fused and not; {rounds} alternating rounds.", "", *rows]


def section_syncs(data_root: str, cache: Path, device: torch.device, epochs: int = 20,
                  configs: Sequence[str] = CONFIGS) -> list[str]:
    """Host synchronisations per Lightning training step (``set_sync_debug_mode``), CUDA only."""
    import warnings

    import pytorch_lightning as pl

    if device.type != "cuda":
        return ["(needs a CUDA device: torch reports synchronisations only there)"]

    class Counter(pl.Callback):
        def __init__(self) -> None:
            self.caught: list[warnings.WarningMessage] = []
            self._record = None

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            if trainer.current_epoch == 3:  # after warm-up (the dot head's pattern exists from the 2nd epoch)
                self._record = warnings.catch_warnings(record=True)
                self.caught = self._record.__enter__()
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")

        def on_train_end(self, trainer, pl_module) -> None:
            torch.cuda.set_sync_debug_mode(0)
            if self._record is not None:
                self._record.__exit__(None, None, None)

    rows = ["| config | host syncs per step | where (file:line, count) |", "|---|---|---|"]
    for config in configs:
        model, dm = _instantiate(config, data_root, cache)
        counter = Counter()
        _bare_trainer(device, epochs + 3, counter).fit(model, datamodule=dm)
        syncs = [w for w in counter.caught if "synchroniz" in str(w.message)]
        places = pd.Series([f"{Path(w.filename).name}:{w.lineno}" for w in syncs]).value_counts().head(5)
        where = ", ".join(f"{place} ({count})" for place, count in places.items()) or "none"
        rows.append(f"| {config} | {len(syncs) / epochs:.1f} | {where} |")
    return [f"Full batch (one step per epoch), {epochs} epochs counted.", "", *rows]


# --------------------------------------------------------------------------------------- fit
def fit_once(config: str, data_root: str, cache: Path, device: torch.device, overrides: Sequence[str] = ()) -> dict:
    """``python -m movielens_gnn fit`` of ``config`` (and ``overrides``, CLI options) in a fresh process and
    folder, timed from process start to exit, then ``test`` of its best checkpoint (not timed).

    Returns:
        ``{"wall_s", "best_epoch", "epochs", "test_rmse"}``.
    """
    accelerator = ["--trainer.accelerator", "gpu"] if device.type == "cuda" else ["--trainer.accelerator", "cpu"]
    common = ["--config", str(REPO / config), "--data.root", str(Path(data_root).resolve()),
              "--data.cache_dir", str(cache), *accelerator, *overrides]
    with tempfile.TemporaryDirectory(prefix="mlgnn-fit-") as folder:  # its logs/ and checkpoints/
        workdir = Path(folder)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "movielens_gnn", "fit", *common], cwd=workdir, check=True,
                       capture_output=True)
        wall = time.perf_counter() - start
        (best,) = (workdir / "checkpoints" / Path(config).stem).glob("version_*/epoch=*.ckpt")  # the run's folder
        state = load_checkpoint(best)
        fitted = pd.read_csv(workdir / "logs" / Path(config).stem / "version_0" / "metrics.csv")
        # The test run logs into the next version; its metrics.csv, not the printed table (rich draws boxes).
        subprocess.run([sys.executable, "-m", "movielens_gnn", "test", *common, "--ckpt_path", str(best)],
                       cwd=workdir, check=True, capture_output=True)
        tested = pd.read_csv(workdir / "logs" / Path(config).stem / "version_1" / "metrics.csv")
    return {"wall_s": wall, "best_epoch": state["epoch"], "epochs": int(fitted["val_rmse"].notna().sum()),
            "test_rmse": float(tested["test_rmse"].dropna().iloc[-1])}


def section_fit(data_root: str, cache: Path, device: torch.device, overrides: Sequence[str] = (),
                configs: Sequence[str] = CONFIGS) -> list[str]:
    rows = ["| config | fit wall s (process start to exit) | best epoch | epochs | test RMSE |", "|---|---|---|---|---|"]
    for config in configs:
        run = fit_once(config, data_root, cache, device, overrides)
        rows.append(f"| {config} | {run['wall_s']:.1f} | {run['best_epoch']} | {run['epochs']} | {run['test_rmse']:.4f} |")
    return [f"`fit` as a user runs it{_given(overrides)} (CSV logger and checkpoints on), then `test` of the best checkpoint.", "",
            *rows]


# ----------------------------------------------------------------------------------- scaling
def power_law_edges(num_users: int, num_items: int, num_ratings: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct (user, item) pairs whose degrees follow Zipf-like laws, as in MovieLens."""
    g = torch.Generator().manual_seed(seed)
    user_w = torch.arange(1, num_users + 1, dtype=torch.float64) ** -0.6
    item_w = torch.arange(1, num_items + 1, dtype=torch.float64) ** -0.8
    keys = torch.empty(0, dtype=torch.int64)
    while keys.numel() < num_ratings:
        draw = int((num_ratings - keys.numel()) * 1.3) + 1000
        users = torch.multinomial(user_w, draw, replacement=True, generator=g)
        items = torch.multinomial(item_w, draw, replacement=True, generator=g)
        keys = torch.unique(torch.cat([keys, users * num_items + items]))
    keys = keys[torch.randperm(keys.numel(), generator=g)[:num_ratings]]
    return keys // num_items, keys % num_items


def _edges(size: str, edges_dir: Path | None, order: str = "pair") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The size's synthetic (users, items, ratings), generated once per run and shared by its workers,
    sorted by (user, item) like ``fit``'s full-batch training edges."""
    num_users, num_items, num_ratings = SIZES[size]
    path = edges_dir / f"{size}.pt" if edges_dir is not None else None
    if path is not None and path.is_file():
        saved = torch.load(path, weights_only=True)
        return saved["users"], saved["items"], saved["ratings"]
    users, items = power_law_edges(num_users, num_items, num_ratings)
    ratings = torch.randint(1, 6, (num_ratings,), generator=torch.Generator().manual_seed(1)).float()
    # In the order fit's full-batch training loader hands them out (by user, then item), for both models;
    # order="random" keeps power_law_edges' shuffled order, to see what that layout is worth.
    if order == "pair":
        users, items, ratings = pair_order(EdgeBatch(users, items, ratings), num_items)
    if path is not None:
        torch.save({"users": users, "items": items, "ratings": ratings}, path)
    return users, items, ratings


def gcn_dot_epoch(edges: tuple, num_users: int, num_items: int, device: torch.device, repeats: int,
                  rating_mean: float = 3.0, pair_route: str = "auto") -> dict:
    """Build the graph of ``edges`` (no rating layouts) and time full-batch epochs of the gcn_dot-sized
    model on it (64 dims, one GraphConv layer, mean combine, dot head; MSE, Adam as fit runs it): one step
    is one epoch."""
    users, items, _ = edges
    start = time.perf_counter()
    graph = BipartiteGraph(users, items, num_users, num_items)
    build_s = time.perf_counter() - start
    model = RatingModel(num_users, num_items, rating_mean=rating_mean, embedding_dim=64, hidden_dims=[64],
                        combine="mean", pair_route=pair_route)
    model.attach_graph(graph)
    model.to(device)
    optimizer = fused_if_available(torch.optim.Adam(model.parameters(), lr=0.01))  # as fit builds it
    seconds = mse_step_seconds(model, optimizer, edges, device, repeats, warmup=1)
    return {"epoch_s": seconds, "graph_build_s": build_s}


def scaling_worker(size: str, device: torch.device, repeats: int, pair_route: str, edges_dir: Path | None = None) -> dict:
    num_users, num_items, num_ratings = SIZES[size]
    route = pair_route if pair_route != "auto" else "sparse (auto)"  # full batch: the pattern from the 2nd epoch on
    timing = gcn_dot_epoch(_edges(size, edges_dir), num_users, num_items, device, repeats, pair_route=pair_route)
    return {"size": size, "users": num_users, "items": num_items, "ratings": num_ratings, **timing,
            **peak_memory(device), "pair_route": route}


def pyg_graph(users: torch.Tensor, items: torch.Tensor, num_users: int, num_items: int, layout: str) -> torch.Tensor:
    """The undirected user-item graph as PyG takes it: ``(2, 2E)`` ``edge_index``, or (``layout="csr"``)
    a ``torch.sparse_csr`` adjacency, PyG's ``adj_t`` (row = target node)."""
    edge_index = torch.stack([torch.cat([users, items + num_users]), torch.cat([items + num_users, users])])
    if layout == "edge_index":
        return edge_index
    nodes = num_users + num_items
    adjacency = torch.sparse_coo_tensor(edge_index.flip(0), torch.ones(edge_index.shape[1]), (nodes, nodes))
    return adjacency.coalesce().to_sparse_csr()


class PygGcnDot(torch.nn.Module):
    """The scaling model written with PyG: ``GCNConv`` (symmetric normalisation, cached; no self-loops)
    over users and items, the mean of its input and output, ``<u, i> + mu + b_u + b_i`` per rating.

    The same function as ``RatingModel(embedding_dim=dim, hidden_dims=[dim], combine="mean")`` with a
    dot head (``tests/test_benchmarks.py`` copies the weights across and compares the outputs).
    """

    def __init__(self, num_users: int, num_items: int, graph: torch.Tensor, dim: int = 64, mean: float = 3.0) -> None:
        from torch_geometric.nn import GCNConv

        super().__init__()
        self.num_users, self.graph, self.mean = num_users, graph, mean
        self.embedding = torch.nn.Embedding(num_users + num_items, dim)
        torch.nn.init.normal_(self.embedding.weight, std=0.1)
        self.conv = GCNConv(dim, dim, add_self_loops=False, cached=True)
        self.user_bias = torch.nn.Parameter(torch.zeros(num_users))
        self.item_bias = torch.nn.Parameter(torch.zeros(num_items))

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        h0 = self.embedding.weight
        h = (h0 + self.conv(h0, self.graph)) / 2
        dot = (h[users] * h[items + self.num_users]).sum(-1)
        return dot + self.user_bias[users] + self.item_bias[items] + self.mean


def pyg_worker(size: str, device: torch.device, repeats: int, layout: str, edges_dir: Path | None = None) -> dict:
    """Seconds per full-batch epoch (MSE, Adam) of :class:`PygGcnDot` with ``layout`` (``edge_index``:
    PyG's gather/scatter message passing; ``csr``: its SpMM path) on the size's edges."""
    num_users, num_items, _ = SIZES[size]
    users, items, ratings = _edges(size, edges_dir)
    graph = pyg_graph(users, items, num_users, num_items, layout).to(device)
    model = PygGcnDot(num_users, num_items, graph).to(device)
    optimizer = fused_if_available(torch.optim.Adam(model.parameters(), lr=0.01))  # the same optimizer as ours
    seconds = mse_step_seconds(model, optimizer, (users, items, ratings), device,
                               repeats, warmup=1)
    return {"size": size, "layout": layout, "epoch_s": seconds, **peak_memory(device)}


def _worker(kind: str, size: str, device: torch.device, repeats: int, option: str, edges_dir: Path,
            required: bool = False) -> dict | None:
    """Run one worker in a fresh process (see :func:`common.run_worker`)."""
    start = time.perf_counter()
    result = run_worker(Path(__file__), [f"--{kind}-worker", size, "--device", str(device), "--repeats", str(repeats),
                                         "--pair-route" if kind == "scaling" else "--pyg-layout", option,
                                         "--edges-dir", str(edges_dir)], WORKER_TIMEOUT_S, required)
    # Progress on stderr: where a long scaling run spends its time, even if it is cut short.
    print(f"[{kind} worker {size} {option}: {'ok' if result else 'failed'} in {time.perf_counter() - start:.0f} s]",
          file=sys.stderr, flush=True)
    return result


def pyg_available() -> bool:
    try:
        import torch_geometric  # noqa: F401
    except ImportError:
        return False
    return True


def section_scaling(device: torch.device, sizes: list[str], repeats: int, pair_route: str, pyg: bool = False,
                    edge_order: str = "pair") -> list[str]:
    with tempfile.TemporaryDirectory(prefix="mlgnn-speed-edges-") as folder:
        results, pyg_best = _scaling_runs(device, sizes, repeats, pair_route, pyg, edge_order, Path(folder))
    return _scaling_table(results, pyg_best, device, pyg, edge_order)


def _scaling_runs(device: torch.device, sizes: list[str], repeats: int, pair_route: str, pyg: bool, edge_order: str,
                  edges_dir: Path) -> tuple[list[dict], dict]:
    results, pyg_best = [], {}
    for size in sizes:
        start = time.perf_counter()
        _edges(size, edges_dir, edge_order)  # generated once, in this process, for every worker of this size
        print(f"[{size} edges generated in {time.perf_counter() - start:.0f} s]", file=sys.stderr, flush=True)
        results.append(_worker("scaling", size, device, repeats, pair_route, edges_dir, required=True))
        if pyg:
            runs = [r for layout in ("edge_index", "csr") if (r := _worker("pyg", size, device, repeats, layout, edges_dir))]
            if runs:
                pyg_best[size] = min(runs, key=lambda r: r["epoch_s"])
        (edges_dir / f"{size}.pt").unlink()
    return results, pyg_best


def _scaling_table(results: list[dict], pyg_best: dict, device: torch.device, pyg: bool, edge_order: str) -> list[str]:
    gpu = device.type == "cuda"
    header = "| size | users | items | ratings | dot-head route | s / epoch | graph build s | peak RSS GiB |"
    if gpu:
        header += " GPU peak GiB |"
    if pyg:
        header += " PyG best s / epoch | PyG / ours |" + (" PyG GPU peak GiB |" if gpu else "")
    rows = [header, "|" + "---|" * header.count(" |")]
    for r in results:
        row = (f"| {r['size']} | {r['users']:,} | {r['items']:,} | {r['ratings']:,} | {r['pair_route']} | "
               f"{r['epoch_s']:.4f} | {r['graph_build_s']:.1f} | {r['peak_rss_gib']:.1f} |")
        if gpu:
            row += f" {r['gpu_peak_gib']:.1f} |"
        best = pyg_best.get(r["size"])
        if pyg and best:
            row += f" {best['epoch_s']:.4f} ({best['layout']}) | {best['epoch_s'] / r['epoch_s']:.1f} |"
            row += f" {best['gpu_peak_gib']:.1f} |" if gpu else ""
        elif pyg:
            row += " failed | – |" + (" – |" if gpu else "")
        rows.append(row)
    lines = [f"Full-batch epochs of a gcn_dot-sized model (64 dims, one GraphConv layer) on synthetic power-law graphs, edges in {edge_order} order.",
             "", *rows]
    if len(results) > 1:
        x = [math.log(r["ratings"]) for r in results]
        y = [math.log(r["epoch_s"]) for r in results]
        mx, my = statistics.mean(x), statistics.mean(y)
        slope = sum((a - mx) * (b - my) for a, b in zip(x, y)) / sum((a - mx) ** 2 for a in x)
        lines += ["", f"Fitted exponent of time per epoch against edges: {slope:.2f}"]
    if pyg:
        lines += ["", "PyG: `torch_geometric.nn.GCNConv` (cached normalisation, no self-loops) on the same edges, the "
                  "faster of its edge_index and sparse-CSR inputs, each in a fresh process."]
    return lines


def section_topk(device: torch.device, repeats: int, users: int = 1024, k: int = 20) -> list[str]:
    """The top ``k`` of ``users`` rows of random scores: :func:`top_k_indices` against the full stable sort."""
    from movielens_gnn.metrics import top_k_indices

    rows = ["| items | top_k_indices ms | full stable sort ms | sort / top_k_indices | equal |", "|---|---|---|---|---|"]
    for items in (1_682, 27_278, 87_585):  # ml-100k, ml-20m, ml-32m
        scores = torch.rand(users, items, generator=torch.Generator().manual_seed(0)).to(device)
        ours = timed(lambda: top_k_indices(scores, k), device, max(3, repeats // 4), warmup=1)
        full = timed(lambda: scores.sort(dim=1, descending=True, stable=True).indices[:, :k], device,
                     max(3, repeats // 4), warmup=1)
        equal = torch.equal(top_k_indices(scores, k), scores.sort(dim=1, descending=True, stable=True).indices[:, :k])
        rows.append(f"| {items:,} | {ours * 1e3:.1f} | {full * 1e3:.1f} | {full / ours:.1f} | {equal} |")
    return [f"{users:,} users' scores (uniform random, float32), K = {k}; medians.", "", *rows]


def run_sections(args: argparse.Namespace, device: torch.device, cache: Path) -> None:
    """Print the chosen sections' tables, one after the other (``cache``: the processed-data cache's folder)."""
    sections = args.sections.split(",")
    configs = args.configs.split(",")
    print(f"`{command_line()}`  ")
    print(f"Machine: {machine()}, device {device}" + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""))
    if "layer" in sections:
        print("\n### GraphConv layer\n")
        print("\n".join(section_layer(u1_datamodule(args.data_root, cache), device, args.repeats)), flush=True)
    if "step" in sections:
        print("\n### Training step\n")
        print("\n".join(section_step(args.data_root, cache, device, args.repeats, args.rounds, args.overrides, configs)), flush=True)
    if "optimizer" in sections:
        print("\n### Fused optimizer\n")
        print("\n".join(section_optimizer(args.data_root, cache, device, args.repeats, args.rounds, configs)), flush=True)
    if "syncs" in sections:
        print("\n### Host synchronisations per step\n")
        print("\n".join(section_syncs(args.data_root, cache, device, configs=configs)), flush=True)
    if "profile" in sections:
        print("\n### Profile of a training step\n")
        print("\n".join(section_profile(args.data_root, cache, device, configs=configs)), flush=True)
    if "topk" in sections:
        print("\n### Top K of the ranking metrics\n")
        print("\n".join(section_topk(device, args.repeats)), flush=True)
    if "fit" in sections:
        print("\n### fit, start to finish\n")
        print("\n".join(section_fit(args.data_root, cache, device, args.overrides, configs)), flush=True)
    if "scaling" in sections:
        print("\n### Scaling\n")
        pyg = args.pyg and pyg_available()
        if args.pyg and not pyg:
            print("\n(--pyg: torch_geometric cannot be imported here; the PyG columns are left out.)")
        print("\n".join(section_scaling(device, args.scaling_sizes.split(","), max(3, args.repeats // 5),
                                        args.pair_route, pyg=pyg, edge_order=args.edge_order)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--sections", default="layer,step,fit,scaling")
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help="step, optimizer, syncs, profile, fit: the configs to run, comma-separated")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="step, optimizer: alternating rounds per config")
    parser.add_argument("--scaling-sizes", default="1m,10m,25m")
    parser.add_argument("--pair-route", choices=("auto", "dense", "gather", "sparse"), default="auto",
                        help="scaling: the dot head's route; auto: dense on small graphs, else sparse (SDDMM) from the 2nd epoch")
    parser.add_argument("--edge-order", choices=("pair", "random"), default="pair",
                        help="scaling: the training edges by (user, item), as fit lays out a full batch, or shuffled")
    parser.add_argument("--pyg", action="store_true",
                        help="scaling: also time the same model written with PyG's GCNConv (skipped without torch_geometric)")
    parser.add_argument("--scaling-worker", help=argparse.SUPPRESS)
    parser.add_argument("--pyg-worker", help=argparse.SUPPRESS)
    parser.add_argument("--pyg-layout", choices=("edge_index", "csr"), default="csr", help=argparse.SUPPRESS)
    parser.add_argument("--edges-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="step, fit: extra CLI options for every config's runs, after --")
    args = parser.parse_args()
    quiet_logs()
    device = torch.device(args.device)
    if args.scaling_worker:  # in a fresh process: args.repeats is already the scaling repeat count
        print(json.dumps(scaling_worker(args.scaling_worker, device, args.repeats, args.pair_route, args.edges_dir)))
        return
    if args.pyg_worker:
        print(json.dumps(pyg_worker(args.pyg_worker, device, args.repeats, args.pyg_layout, args.edges_dir)))
        return

    with workdir_or_temporary(None, "mlgnn-speed-cache-") as cache:  # the u1 processed-data cache
        run_sections(args, device, cache)


if __name__ == "__main__":
    main()
