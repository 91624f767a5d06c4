"""What the rating and ranking tasks share: the training graph, full-ranking evaluation, resumable RNGs."""

from __future__ import annotations

import inspect
import logging
import random
from typing import ClassVar, Literal

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn
import torch
from torch import Tensor
from torchmetrics import Metric

from movielens_gnn.metrics import MeanLoss, RankingMetrics
from movielens_gnn.models.graph import BipartiteGraph

log = logging.getLogger(__name__)

# Arguments a checkpoint can be evaluated (or its training resumed) with other values of; every other
# hyperparameter is the architecture or training recipe the weights belong to.
EVALUATION_ARGUMENTS = ("engine", "pair_route", "ranking_ks", "relevance_threshold", "train_metrics_every_n_epochs")


def check_layer_widths(arguments: dict) -> None:
    """Raise ``ValueError`` when ``combine: mean`` is given layers of other widths than the embedding's
    (the average needs one width); a part of both tasks' ``check_arguments``, so the CLI says it before
    reading any data."""
    combine, width, widths = arguments.get("combine"), arguments.get("embedding_dim"), arguments.get("hidden_dims")
    if combine == "mean" and width is not None and widths is not None and any(w != width for w in widths):
        raise ValueError(f"--model.combine mean averages the outputs of the embedding and every layer, so "
                         f"--model.hidden_dims must all equal --model.embedding_dim ({width}), got {list(widths)}: "
                         "give them that width, or use --model.combine last (or concat).")


def _state_dtype(metric: Metric) -> torch.dtype | None:
    """The dtype of a metric's first floating-point state, or ``None`` when it has none."""
    return next((value.dtype for value in metric.metric_state.values()
                 if isinstance(value, Tensor) and value.is_floating_point()), None)


def fused_if_available(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """``optimizer`` rebuilt with ``fused=True`` when it is one of torch's own with a fused kernel for
    its parameters' device and the config left the implementation to torch (``fused`` and ``foreach``
    unset); otherwise ``optimizer`` itself.

    Why: with neither set, torch runs Adam on CPU as a Python loop over the parameters, several
    kernels each (2.5 ms a step for ``ml100k_best``'s 1.1M parameters on 2 cores, 0.35 ms fused), and
    on CUDA as ``foreach`` kernels over every tensor, where fused is one pass. Fused is the same update
    up to float rounding. Torch before 2.4 has no fused kernels on CPU, and some optimizers none at
    all: then the optimizer stays as configured. Set ``fused: false`` (or ``foreach``) in the config
    to keep torch's own choice.

    Args:
        optimizer: Freshly built, before any step (its state is not carried over).
    """
    defaults = optimizer.defaults
    if (
        not type(optimizer).__module__.startswith("torch.optim")
        or "fused" not in defaults
        or defaults["fused"] is not None
        or defaults.get("foreach") is not None
        or defaults.get("differentiable")
        # Where torch has fused kernels for sure; recent torch checks this only at the first step.
        or not all(p.device.type in ("cpu", "cuda") and torch.is_floating_point(p)
                   for group in optimizer.param_groups for p in group["params"])
    ):
        return optimizer
    groups = [{**group, "fused": True} for group in optimizer.param_groups]
    # Its defaults, as far as its constructor takes them (AdamW's hold a flag it sets itself).
    accepted = inspect.signature(type(optimizer)).parameters
    options = {key: value for key, value in defaults.items() if key in accepted}
    try:
        return type(optimizer)(groups, **{**options, "fused": True})
    except RuntimeError as error:  # no fused kernel here (CPU before torch 2.4, or these dtypes)
        log.debug("Keeping %s unfused: %s", type(optimizer).__name__, error)
        return optimizer


def keep_implementation(optimizer: torch.optim.Optimizer) -> None:
    """Give ``optimizer``'s parameter groups its own ``fused`` and ``foreach`` choice again.

    Why: loading a state dict copies the saved groups' options, implementation flags included, so a
    run resumed from a checkpoint written with another choice (an older version, ``fused: false``, or
    another torch: torch 2.2.1 has no fused kernels on CPU and fails at the first step) would run
    that one. The flags only pick how the same update is computed; this process's choice wins. With
    fused kernels a step counter must sit on its parameter's device, as torch's own loading puts it.

    Args:
        optimizer: After its state was loaded, before its next step.
    """
    fused = optimizer.defaults.get("fused")
    for group in optimizer.param_groups:
        for key in ("fused", "foreach"):
            if key in optimizer.defaults:
                group[key] = optimizer.defaults[key]
        if not fused:
            continue
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            if torch.is_tensor(state.get("step")):
                state["step"] = state["step"].to(device=param.device, dtype=torch.float32)


class GraphTask(pl.LightningModule):
    """A LightningModule over the training graph of a :class:`~movielens_gnn.data.datamodule.MovieLensDataModule`.

    The graph is data, not a parameter: ``setup`` takes it from the data module (or call
    :meth:`attach_graph`), and it is never saved in checkpoints. Subclasses implement
    :meth:`score_all_items`; :meth:`log_ranking` turns it into the top-K metrics of a part.
    Subclasses pass each training batch's loss to :meth:`record_train_loss`; ``train_loss`` is logged
    at the end of every ``train_metrics_every_n_epochs``-th epoch (a hyperparameter of theirs).
    """

    #: Whether :meth:`score_all_items` predicts stars (on the rating scale) or only orders items.
    predicts_ratings: ClassVar[bool] = False
    #: The validation metric a ``ReduceLROnPlateau`` scheduler watches (and, in a run whose config names
    #: no checkpoints, the best checkpoint; a task may set its own per instance), and whether it is better
    #: higher (``max``) or lower.
    monitor: str = "val_ndcg@10"
    monitor_mode: ClassVar[Literal["min", "max"]] = "max"
    #: The folder name of a run whose config names no logger or checkpoints: ``logs/<run_name>/version_N``.
    run_name: ClassVar[str] = "ranking"

    def __init__(self) -> None:
        super().__init__()
        self.graph: BipartiteGraph | None = None
        self.train_loss = MeanLoss()
        self._train_metrics_pending = False
        #: The epoch whose training metrics were logged last (``None`` before any): the progress line names it.
        self.train_metrics_epoch: int | None = None
        self._metric_dtypes: dict[str, torch.dtype] | None = None  # see _keep_metric_dtypes
        self._whole_list_warned = False  # log_ranking's warning about K >= the number of items, once

    # ------------------------------------------------------------------------------ graph
    def attach_graph(self, graph: BipartiteGraph) -> None:
        """Use ``graph`` for message passing; it then moves with the module between devices."""
        expected = (self.hparams.num_users, self.hparams.num_items)
        if (graph.num_users, graph.num_items) != expected:
            raise ValueError(
                f"The graph has {graph.num_users} users and {graph.num_items} items; this model was "
                f"built for {expected[0]} and {expected[1]}. Use the data the checkpoint was trained on."
            )
        self.graph = graph.to(self.device)
        self.on_graph_attached(self.graph)
        # Every rank builds the same graph (and what derives from it: non-persistent buffers) from the
        # same edges; DDP need not broadcast them each step.
        self._ddp_params_and_buffers_to_ignore = [
            f"{prefix}.{name}" if prefix else name
            for prefix, module in self.named_modules()
            for name in {*module._non_persistent_buffers_set,
                         *(BipartiteGraph.LAZY_BUFFERS if isinstance(module, BipartiteGraph) else ())}]

    @property
    def attached_graph(self) -> BipartiteGraph:
        """The training graph; raises when none is attached yet."""
        if self.graph is None:
            raise RuntimeError("No graph attached; call attach_graph() or run through a Trainer with the data module.")
        return self.graph

    def on_graph_attached(self, graph: BipartiteGraph) -> None:
        """Hook: build what derives from the training graph (samplers, closed-form parts)."""

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule if self.trainer is not None else None
        graph = getattr(datamodule, "graph", None)
        if graph is None and self.graph is None:
            raise ValueError(f"{type(self).__name__} needs its training graph: pass a MovieLensDataModule to the Trainer.")
        if graph is not None and graph is not self.graph:
            self.attach_graph(graph)
        if self._metric_dtypes is None:  # before Lightning converts the module (see _keep_metric_dtypes)
            self._metric_dtypes = {name: dtype for name, metric in self.named_modules()
                                   if isinstance(metric, Metric) and (dtype := _state_dtype(metric)) is not None}

    def _keep_metric_dtypes(self) -> None:
        """Give the metrics back the state dtypes they were built with.

        Lightning's "bf16-true" and "16-true" convert the whole module after ``setup``, metric states
        included; sums over thousands of examples in bfloat16's 8 mantissa bits drift (and a count
        stops growing at 256 additions of 1), so the metrics would report rounded values. Called once
        a command, after that conversion: as fit, validate or test starts.
        """
        for name, metric in self.named_modules():
            declared = (self._metric_dtypes or {}).get(name)
            if isinstance(metric, Metric) and declared is not None and _state_dtype(metric) != declared:
                # Floating states (and their reset values) only: counts stay integers. Metric._apply
                # converts both, as for a device move; set_dtype would convert the counts too.
                metric._apply(lambda t, dtype=declared: t.to(dtype) if t.is_floating_point() else t)

    def on_fit_start(self) -> None:
        self._keep_metric_dtypes()

    def on_validation_start(self) -> None:
        if self.trainer.state.fn == TrainerFn.VALIDATING:  # the validate command; fit did it in on_fit_start
            self._keep_metric_dtypes()

    def on_test_start(self) -> None:
        self._keep_metric_dtypes()

    def encode(self):
        """The user and item representations :meth:`score_all_items` reads: computed once and passed to it
        as ``tables`` when many chunks of users are scored (the whole graph is encoded for each call otherwise)."""
        raise NotImplementedError

    def score_all_items(self, users: Tensor, tables=None) -> Tensor:
        """``(B, I)`` scores of ``(B,)`` users for every item (higher is better), from :meth:`encode`'s
        ``tables`` when given."""
        raise NotImplementedError

    # --------------------------------------------------------------------------- training
    @property
    def logs_train_metrics(self) -> bool:
        """Whether this epoch measures and logs the training metrics: the first epoch, then every
        ``train_metrics_every_n_epochs``-th (each logged key costs about 0.2 ms of Lightning's bookkeeping
        per epoch, a few percent of a full-batch epoch on a small graph)."""
        return self.current_epoch % self.hparams.get("train_metrics_every_n_epochs", 1) == 0

    def record_train_loss(self, loss: Tensor, batch_size: int, batch_idx: int) -> None:
        """Add a training batch's scalar mean loss to the epoch's ``train_loss`` on epochs that measure
        it; after the epoch's last batch, log the epoch's training metrics (:meth:`log_train_metrics`).

        Logged from the last training step rather than ``on_train_epoch_end``: Lightning runs the
        callbacks' epoch-end hooks (the progress line) before the module's, and they should see it.
        """
        if not self.logs_train_metrics:
            return
        self.train_loss.update(loss, batch_size)
        self._train_metrics_pending = True
        trainer = self._trainer  # None when a step is called by hand: then nothing is logged
        if trainer is not None and batch_idx + 1 >= trainer.num_training_batches:
            self.log_train_metrics()

    def log_train_metrics(self) -> None:
        """Log the epoch's training metrics and reset them: ``train_loss`` here, subclasses add theirs."""
        # An epoch value, though logged from a step (batch_size 1: one value, nothing to average).
        self.log("train_loss", self.train_loss.compute(), on_step=False, on_epoch=True, prog_bar=True, batch_size=1,
                 sync_dist=True)  # already over all ranks: the mean changes nothing
        self.train_loss.reset()
        self._train_metrics_pending = False
        self.train_metrics_epoch = self.current_epoch

    def on_train_epoch_end(self) -> None:
        # An epoch cut short (max_steps, max_time, a stop after a validation inside the epoch) never
        # reached its last batch: log what it measured, and start the next fit afresh.
        if self._train_metrics_pending:
            self.log_train_metrics()

    # ------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def log_ranking(self, part: str, ks, threshold: float | None) -> None:
        """Log ``{part}_ndcg@10`` ... over all users of ``part``, every item ranked, known items left out.

        Data-parallel ranks each score a share of the users, and :class:`RankingMetrics` sums them
        across ranks once.
        """
        datamodule = self.trainer.datamodule
        if not ks or not hasattr(datamodule, "ranking_batches"):
            return
        whole = [k for k in ks if k >= self.hparams.num_items]
        if whole and not self._whole_list_warned and self.trainer.is_global_zero:
            log.warning("--model.ranking_ks %s reach the %d items of this data: the top K is then every item, so "
                        "recall and hit rate there are 1 whatever the model. Use cut-offs below %d.", whole,
                        self.hparams.num_items, self.hparams.num_items)
            self._whole_list_warned = True
        if part == "test" and self.trainer.is_global_zero:  # what the printed table's metrics count
            log.info("Top-K metrics on test: %s, ranked among the items each user has not rated in training or "
                     "validation.", "every held-out interaction is relevant" if threshold is None else
                     f"held-out ratings >= {threshold:g} are relevant (--model.relevance_threshold)")
        metric = RankingMetrics(ks).to(self.device)
        users = torch.unique(getattr(datamodule.data, part).users)[self.trainer.global_rank :: self.trainer.world_size]
        tables = self.encode()  # once: 1,024 users a chunk, 159 chunks on ml-25m
        for chunk, exclude, relevant in datamodule.ranking_batches(users, part, threshold):
            scores = self.score_all_items(chunk, tables)
            metric.update(scores, exclude.to(scores.device), relevant.to(scores.device))
        for name, value in metric.compute().items():  # already over all ranks' users
            self.log(f"{part}_{name}", value, sync_dist=True, prog_bar=name == "ndcg@10")

    # ------------------------------------------------------------------------- optimizers
    def _parameter_groups(self) -> list[dict]:
        """The optimizer's parameter groups: one for all parameters unless a task needs more."""
        return [{"params": list(self.parameters())}]

    def configure_optimizers(self):
        """The configured optimizer (``optimizer_factory``; fused where torch can, see
        :func:`fused_if_available`) and, if any, LR scheduler, which a ``ReduceLROnPlateau`` runs on
        :attr:`monitor`."""
        optimizer = fused_if_available(self.optimizer_factory(self._parameter_groups()))
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = self.lr_scheduler_factory(optimizer)
        config = {"scheduler": scheduler}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            if scheduler.mode != self.monitor_mode:  # it would cut the rate while the metric improves
                raise ValueError(plateau_mode_message(self.monitor, self.monitor_mode, scheduler.mode))
            config["monitor"] = self.monitor
        return {"optimizer": optimizer, "lr_scheduler": config}

    # ---------------------------------------------------------------------------- resume
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep the random number generators' states, so a resumed run draws what an uninterrupted one would."""
        checkpoint["rng_states"] = rng_states()

    def on_train_start(self) -> None:
        """A resumed run's optimizers compute as this process built them (:func:`keep_implementation`)."""
        for optimizer in self.trainer.optimizers:
            keep_implementation(optimizer)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """On resuming ``fit``, continue the saved random streams (dropout, negatives)."""
        trainer = self._trainer
        if trainer is not None and trainer.state.fn == "fit" and "rng_states" in checkpoint:
            set_rng_states(checkpoint["rng_states"])


def plateau_mode_message(monitor: str, wanted: str, mode: str) -> str:
    """Why a ``ReduceLROnPlateau`` with ``mode`` cannot watch ``monitor`` (better when ``wanted``)."""
    better = "lower" if wanted == "min" else "higher"
    return (f"--model.lr_scheduler ReduceLROnPlateau watches {monitor}, which is better {better}, but has mode "
            f"{mode!r}: set --model.lr_scheduler.init_args.mode {wanted} (mode: {wanted} under its init_args in the "
            "config).")


def rng_states() -> dict:
    """The states of torch's (CPU and initialised CUDA), numpy's and Python's global generators,
    as tensors and plain values only, so checkpoints holding them load with ``weights_only=True``."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "position": int(position), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "internal": list(internal), "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    """Restore what :func:`rng_states` returned."""
    torch.set_rng_state(states["torch"])
    numpy_state = states["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32),
                         numpy_state["position"], numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    python_state = states["python"]
    random.setstate((python_state["version"], tuple(python_state["internal"]), python_state["gauss"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
