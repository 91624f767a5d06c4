"""The rating task: a LightningModule predicting stars from a graph encoder and a rating head."""

from __future__ import annotations

import logging
import math
from typing import Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection

from movielens_gnn.data.datasets.base import WHOLE_STARS  # also the scale of checkpoints from before it was linked
from movielens_gnn.models.autoencoder import ItemAutoencoder
from movielens_gnn.models.encoder import GraphEncoder
from movielens_gnn.models.heads import HEADS, DotHead, MLPHead
from movielens_gnn.tasks.base import GraphTask, check_layer_widths

log = logging.getLogger(__name__)



def check_arguments(**arguments) -> None:
    """Raise ``ValueError`` naming the first :class:`RatingModel` argument outside its range.

    Called by ``RatingModel.__init__`` and by the CLI on the parsed config before any data is read.
    Only the arguments given are checked; the message names the option, the value and the range.
    """
    def fail(name: str, expected: str) -> None:
        raise ValueError(f"--model.{name} must be {expected}, got {arguments[name]!r}.")

    def integer(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    for name in ("num_users", "num_items", "embedding_dim", "train_metrics_every_n_epochs"):
        if name in arguments and not (integer(arguments[name]) and arguments[name] >= 1):
            fail(name, "a positive integer")
    for name in ("user_feature_dim", "item_feature_dim", "autoencoder_dim"):
        if name in arguments and not (integer(arguments[name]) and arguments[name] >= 0):
            fail(name, "an integer >= 0 (0 turns it off)")
    for name in ("hidden_dims", "mlp_hidden_dims", "ranking_ks"):
        if name in arguments and not all(integer(v) and v >= 1 for v in arguments[name]):
            fail(name, "a list of positive integers, e.g. [64]")
    for name in ("dropout", "edge_dropout", "mlp_dropout"):
        if name in arguments and not (isinstance(arguments[name], (int, float)) and 0.0 <= arguments[name] < 1.0):
            fail(name, "a probability in [0, 1)")
    decay = arguments.get("autoencoder_weight_decay")
    if decay is not None and not (isinstance(decay, (int, float)) and 0.0 <= decay < float("inf")):
        fail("autoencoder_weight_decay", "a finite number >= 0, or null to keep the optimizer's")
    for name in ("rating_mean", "relevance_threshold"):
        if arguments.get(name) is None and name == "relevance_threshold":
            continue  # the scale's own (RatingModel.relevance_threshold)
        if name in arguments and not (isinstance(arguments[name], (int, float)) and math.isfinite(arguments[name])):
            fail(name, "a finite number")
    values = arguments.get("rating_values")
    if values is not None and not (len(values) and all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
                                   and list(values) == sorted(set(values))):
        fail("rating_values", "the rating scale: distinct finite numbers, ascending, e.g. [1, 2, 3, 4, 5]")
    if values is not None and len(values) == 1:
        raise ValueError(f"The rating task predicts ratings, but every rating in this data is {values[0]:g} (a file "
                         "read without a rating column counts each line as 1): there is nothing to predict. Train a "
                         "ranking config for top-K lists (configs/lightgcn_ease.yaml, configs/lightgcn_bpr.yaml, configs/mf_bpr.yaml).")
    check_layer_widths(arguments)


class RatingModel(GraphTask):
    """Predicts ratings of (user, item) pairs from a GraphConv encoding of the training graph.

    Trains with MSE on the raw score (of each tower, when the autoencoder tower is on: see
    ``autoencoder_dim``); RMSE and MAE are measured on predictions clamped to the rating scale's range
    (1..5, or 0.5..5.0 for half stars), with one metric collection per stage. For top-K lists prefer
    :class:`~movielens_gnn.tasks.ranking.RankingModel`, which is trained and selected for them.

    Args:
        num_users: Number of users; linked from the data module.
        num_items: Number of items; linked from the data module.
        user_feature_dim: Width of the user side features; linked from the data module.
        item_feature_dim: Width of the item side features; linked from the data module.
        rating_mean: Mean training rating, the heads' offset; linked from the data module.
        rating_values: The rating scale, ascending (``[1, 2, 3, 4, 5]``; ten half stars 0.5..5.0 on
            ml-10m and later); linked from the data module. Predictions are clamped to its range and
            ``rating_relations`` has one relation per value.
        embedding_dim: Width of the ID embeddings.
        hidden_dims: Output width of each GraphConv layer.
        activation: Between GraphConv layers: ``relu``, ``leaky_relu``, ``elu``, ``tanh`` or ``identity``.
        dropout: Dropout on each GraphConv layer's input.
        edge_dropout: Share of training rating edges left out of message passing at each training
            step (a fresh draw each step; none at evaluation).
        combine: Encoder output: ``last`` layer, ``mean`` or ``concat`` of all layers.
        rating_relations: Rating-aware message passing: one GraphConv weight per rating value
            (of ``rating_values``), as in GC-MC, instead of one for all edges.
        side_features: Add projected user/item side features to the ID embeddings.
        autoencoder_dim: Width ``K`` of a second tower, an item autoencoder (I-AutoRec as one
            rating-weighted message-passing step, :class:`ItemAutoencoder`) scored by its own dot
            head; 0 (the default) leaves it out. With it, the prediction is the mean of the two
            towers' scores, and training minimises the sum of their two MSEs, so each tower
            fits the ratings on its own and their errors average out.
        autoencoder_weight_decay: Weight decay of the autoencoder's two ``U x K`` embedding
            tables (wide, so they need more than the GraphConv tower; biases keep the
            optimizer's); ``None`` keeps the optimizer's.
        engine: ``native`` (torch sparse, the default) or ``dgl`` (``dgl.nn.GraphConv``; needs
            ``pip install -e ".[dgl]"``). Checkpoints load with either engine.
        head: ``dot`` (inner product + biases) or ``mlp``.
        pair_route: How the dot head computes its pairs' products: ``auto`` (the default) uses SDDMM +
            SpMM over the edge set's CSR pattern when the same edge set comes back (full batch, from the
            second epoch), else scores all user-item pairs with one matrix product when the batch covers
            many of them, else gathers rows; ``dense``, ``gather`` and ``sparse`` force one. Values agree
            to float rounding; only speed differs.
        mlp_hidden_dims: Hidden widths of the ``mlp`` head.
        mlp_dropout: Dropout inside the ``mlp`` head.
        optimizer: Builds the optimizer from the parameters (``class_path`` + ``init_args`` in YAML);
            torch's Adam, AdamW, SGD and Adagrad run fused (where this torch can) unless ``fused``
            or ``foreach`` is set.
        lr_scheduler: Builds an LR scheduler from the optimizer, or ``None``. A
            ``ReduceLROnPlateau`` watches ``val_rmse``.
        ranking_ks: Cut-offs K of the top-K metrics logged by ``test`` (``test_ndcg@10`` …):
            every item a test user did not rate in training is ranked; empty to skip them.
        relevance_threshold: Test ratings at or above this are relevant for the top-K metrics; ``None``
            means the top quarter of the rating scale: its smallest value at or above
            ``min + 0.75 (max - min)`` (4 on MovieLens' 1..5 and 0.5..5.0; 1 on -2..2; 75 on 0..100).
        train_metrics_every_n_epochs: Measure and log the training metrics (``train_loss``,
            ``train_rmse``, ``train_mae``) on the first epoch and then every this many; the others skip
            them (each logged key costs about 0.2 ms of Lightning's bookkeeping per epoch, a few percent
            of a full-batch epoch on u1).
    """

    predicts_ratings = True
    monitor = "val_rmse"
    monitor_mode = "min"
    run_name = "rating"
    check_arguments = staticmethod(check_arguments)

    def __init__(
        self,
        num_users: int,
        num_items: int,
        user_feature_dim: int = 0,
        item_feature_dim: int = 0,
        rating_mean: float = 3.5,
        rating_values: Sequence[float] = WHOLE_STARS,
        embedding_dim: int = 64,
        hidden_dims: Sequence[int] = (64,),
        activation: Literal["relu", "leaky_relu", "elu", "tanh", "identity"] = "relu",
        dropout: float = 0.0,
        edge_dropout: float = 0.0,
        combine: Literal["last", "mean", "concat"] = "last",
        rating_relations: bool = False,
        side_features: bool = False,
        autoencoder_dim: int = 0,
        autoencoder_weight_decay: Optional[float] = None,
        engine: Literal["native", "dgl"] = "native",
        head: Literal["dot", "mlp"] = "dot",
        pair_route: Literal["auto", "dense", "gather", "sparse"] = "auto",
        mlp_hidden_dims: Sequence[int] = (64,),
        mlp_dropout: float = 0.0,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: Optional[LRSchedulerCallable] = None,
        ranking_ks: Sequence[int] = (10, 20),
        relevance_threshold: Optional[float] = None,
        train_metrics_every_n_epochs: int = 1,
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"Unknown head {head!r}; valid values: {', '.join(HEADS)}.")
        check_arguments(
            num_users=num_users, num_items=num_items, user_feature_dim=user_feature_dim,
            item_feature_dim=item_feature_dim, rating_mean=rating_mean, embedding_dim=embedding_dim,
            hidden_dims=list(hidden_dims), combine=combine, dropout=dropout, edge_dropout=edge_dropout,
            autoencoder_dim=autoencoder_dim, autoencoder_weight_decay=autoencoder_weight_decay,
            mlp_hidden_dims=list(mlp_hidden_dims), mlp_dropout=mlp_dropout, ranking_ks=list(ranking_ks),
            relevance_threshold=relevance_threshold, rating_values=list(rating_values),
            train_metrics_every_n_epochs=train_metrics_every_n_epochs,
        )
        if side_features and not (user_feature_dim and item_feature_dim):
            absent = " and ".join(n for n, d in (("user", user_feature_dim), ("item", item_feature_dim)) if not d)
            log.info("side_features: this dataset has no %s features; using what there is.", absent)
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.rating_range = (float(min(rating_values)), float(max(rating_values)))
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.encoder = GraphEncoder(
            num_users,
            num_items,
            embedding_dim,
            list(hidden_dims),
            activation=activation,
            dropout=dropout,
            edge_dropout=edge_dropout,
            combine=combine,
            user_feature_dim=user_feature_dim if side_features else 0,
            item_feature_dim=item_feature_dim if side_features else 0,
            num_relations=len(rating_values) if rating_relations else 0,
            engine=engine,
        )
        if head == "dot":
            self.head = DotHead(num_users, num_items, rating_mean, pair_route)
        else:
            self.head = MLPHead(self.encoder.out_dim, list(mlp_hidden_dims), mlp_dropout, rating_mean)
        self.autoencoder: ItemAutoencoder | None = None
        self.autoencoder_head: DotHead | None = None
        if autoencoder_dim:
            self.autoencoder = ItemAutoencoder(num_users, num_items, autoencoder_dim)
            self.autoencoder_head = DotHead(num_users, num_items, rating_mean, pair_route)
        metrics = MetricCollection({"rmse": MeanSquaredError(squared=False), "mae": MeanAbsoluteError()})
        self.train_metrics = metrics.clone(prefix="train_")
        self.val_metrics = metrics.clone(prefix="val_")
        self.test_metrics = metrics.clone(prefix="test_")

    # ---------------------------------------------------------------------------- compute
    @property
    def tower_heads(self) -> list[nn.Module]:
        """Each tower's head, in :meth:`encode`'s order: the GraphConv tower's, then the autoencoder's."""
        return [self.head] if self.autoencoder_head is None else [self.head, self.autoencoder_head]

    def encode(self) -> list[tuple[Tensor, Tensor]]:
        """Each tower's ``(user_table, item_table)`` over the attached graph: the GraphConv
        encoder's, then the autoencoder's when there is one."""
        tables = [self.encoder(self.attached_graph)]
        if self.autoencoder is not None:
            tables.append(self.autoencoder(self.attached_graph))
        return tables

    def tower_scores(self, tables: list[tuple[Tensor, Tensor]], users: Tensor, items: Tensor) -> Tensor:
        """``(T, B)`` raw scores of the pairs by each of the ``T`` towers, from :meth:`encode`'s tables."""
        scores = [head(user_table, item_table, users, items)
                  for head, (user_table, item_table) in zip(self.tower_heads, tables)]
        # One tower (most configs): a view, not a copy of every pair's score (100 MB at 25M ratings).
        return scores[0].unsqueeze(0) if len(scores) == 1 else torch.stack(scores)

    @staticmethod
    def mean_of_towers(scores: Tensor) -> Tensor:
        """``(B,)`` the mean over the towers of ``(T, B)`` scores; with one tower its row itself (the
        same values, without a pass over every pair)."""
        return scores[0] if len(scores) == 1 else scores.mean(0)

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        """Args:
            users: ``(B,)`` internal user indices.
            items: ``(B,)`` internal item indices.

        Returns:
            ``(B,)`` raw (unclamped) predicted ratings: the mean of the towers' scores.
        """
        return self.mean_of_towers(self.tower_scores(self.encode(), users, items))

    @torch.no_grad()
    def score_all_items(self, users: Tensor, tables: list[tuple[Tensor, Tensor]] | None = None) -> Tensor:
        """``(B, I)`` raw predicted ratings of ``users`` for every item, in one batched pass.

        Args:
            users: ``(B,)`` internal user indices.
            tables: :meth:`encode`'s output, to reuse across calls.
        """
        tables = tables if tables is not None else self.encode()
        num_items = tables[0][1].shape[0]
        device = tables[0][1].device
        pair_users = users.to(device).repeat_interleave(num_items)
        pair_items = torch.arange(num_items, device=device).repeat(len(users))
        return self.mean_of_towers(self.tower_scores(tables, pair_users, pair_items)).view(len(users), num_items)

    @torch.enable_grad()
    def score_new_user(self, items: Tensor, ratings: Tensor, steps: int = 200, l2: float = 1e-2,
                       peers: Tensor | None = None) -> Tensor:
        """``(I,)`` predicted ratings for a user who is not in the training graph, from their ratings.

        The item side stays frozen: each tower gets a new user vector (and user bias, for a dot head),
        started from the mean of ``peers`` (all users by default) and fitted to ``ratings`` by MSE with an
        L2 pull of weight ``l2`` toward that start (so a user with few ratings stays near their peers);
        the prediction is the towers' mean, as for any user. With no ratings it is the peers' mean.

        Args:
            items: ``(K,)`` internal indices of the rated items (``K`` may be 0).
            ratings: ``(K,)`` the ratings, on the data's scale.
            steps: Adam steps of the fit.
            l2: Weight of the squared distance from the start.
            peers: ``(P,)`` internal indices of the training users to start from (e.g. those with the
                new user's demographics); ``None``: every user.
        """
        predictions = []
        for head, (user_table, item_table) in zip(self.tower_heads, self.encode()):
            user_table, item_table = user_table.detach(), item_table.detach()
            group = user_table if peers is None else user_table[peers.to(user_table.device)]
            start = group.mean(0)
            user = start.clone().requires_grad_(True)
            bias_start = 0.0
            if isinstance(head, DotHead):  # the bias starts from the same peers' mean as the vector
                biases = head.user_bias.weight.detach().squeeze(1)
                bias_start = float((biases if peers is None else biases[peers.to(biases.device)]).mean())
            bias = torch.full((), bias_start, device=start.device, requires_grad=True)
            optimizer = torch.optim.Adam([user, bias], lr=0.05)
            rated = items.to(item_table.device)
            target = ratings.to(item_table.device, item_table.dtype)

            def predict(subset: Tensor | None) -> Tensor:
                table = item_table if subset is None else item_table[subset]
                index = torch.arange(len(table), device=table.device) if subset is None else subset
                if isinstance(head, DotHead):
                    item_bias = head.item_bias.weight.squeeze(1).detach()[index]
                    return table @ user + bias + head.rating_mean + item_bias
                return head(user[None], table, torch.zeros(len(table), dtype=torch.long, device=table.device),
                            torch.arange(len(table), device=table.device))

            for _ in range(steps if len(rated) else 0):
                optimizer.zero_grad()
                loss = F.mse_loss(predict(rated), target) + l2 * (user - start).pow(2).sum()
                loss.backward()
                optimizer.step()
            with torch.no_grad():
                predictions.append(predict(None))
        return torch.stack(predictions).mean(0)

    def _shared_step(self, batch, metrics: MetricCollection | None) -> Tensor:
        users, items, ratings = batch
        scores = self.tower_scores(self.encode(), users, items)
        prediction = self.mean_of_towers(scores)
        # Each tower is fitted on its own (a sum of per-tower MSEs); fitting only their mean lets one
        # tower lean on the other and was worse on validation. Tower by tower, no (T, B) squared errors.
        loss = sum(F.mse_loss(tower, ratings.to(tower.dtype)) for tower in scores)  # bf16-true: ratings in bf16
        if metrics is not None:
            # Half-precision predictions (a "bf16-true" run) are scored in float32: RMSE sums squares.
            dtype = torch.promote_types(prediction.dtype, torch.float32)
            metrics.update(prediction.detach().to(dtype).clamp(*self.rating_range), ratings.to(dtype))
        return loss

    def _log_epoch_metrics(self, metrics: MetricCollection) -> None:
        """Log a part's RMSE and MAE once per epoch: at its end, or for training from its last step.

        Logging the ``Metric`` objects from every step would make Lightning move them to the device at
        each call (about 1 ms of a 10 ms u1 `gcn_dot` step on CPU, measured); the values are the same, since ``compute``
        reduces the sum states over all batches and, under DDP, over all ranks.
        """
        # Epoch values also when called from the last training step; already equal on every rank.
        self.log_dict(metrics.compute(), on_step=False, on_epoch=True, batch_size=1, sync_dist=True)
        metrics.reset()

    def training_step(self, batch, batch_idx: int) -> Tensor:
        loss = self._shared_step(batch, self.train_metrics if self.logs_train_metrics else None)
        self.record_train_loss(loss, len(batch[2]), batch_idx)
        return loss

    def log_train_metrics(self) -> None:
        """``train_loss``, ``train_rmse`` and ``train_mae``."""
        super().log_train_metrics()
        self._log_epoch_metrics(self.train_metrics)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._shared_step(batch, self.val_metrics)

    def test_step(self, batch, batch_idx: int) -> None:
        self._shared_step(batch, self.test_metrics)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics(self.val_metrics)

    def on_test_epoch_end(self) -> None:
        """RMSE and MAE, and the top-K metrics over all test users (``test_ndcg@10`` ...)."""
        self._log_epoch_metrics(self.test_metrics)
        self.log_ranking("test", self.hparams.ranking_ks, self.relevance_threshold)

    @property
    def relevance_threshold(self) -> float:
        """The rating at or above which a test rating is relevant: the configured one, else the top quarter
        of the scale (see ``relevance_threshold`` in :class:`RatingModel`). A configured threshold above the
        scale (nothing relevant: every top-K metric 0) or at its bottom (everything relevant) is warned about."""
        values = [float(v) for v in self.hparams.rating_values]
        low, high = values[0], values[-1]
        top_quarter = next(v for v in values if v >= low + 0.75 * (high - low))
        threshold = self.hparams.get("relevance_threshold")
        if threshold is None:
            return top_quarter
        if (threshold > high or threshold <= low) and not self._threshold_warned and (
                self._trainer is None or self.trainer.is_global_zero):
            self._threshold_warned = True
            what = "no rating reaches it: every top-K metric is 0" if threshold > high else "every rating counts"
            log.warning("--model.relevance_threshold %g on a rating scale of %g..%g: %s. Set one within the scale, or "
                        "--model.relevance_threshold null for the top quarter (%g).", threshold, low, high, what,
                        top_quarter)
        return float(threshold)

    _threshold_warned = False

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """``(B,)`` predicted ratings clamped to the rating scale's range."""
        users, items, _ = batch
        return self(users, items).clamp(*self.rating_range)

    def _parameter_groups(self) -> list[dict]:
        """One group for all parameters, or two when the autoencoder's embedding tables have their own weight decay."""
        decay = self.hparams.autoencoder_weight_decay
        if self.autoencoder is None or decay is None:
            return super()._parameter_groups()
        tower = {id(self.autoencoder.user_input), id(self.autoencoder.user_output)}
        return [
            {"params": [p for p in self.parameters() if id(p) not in tower]},
            {"params": [p for p in self.parameters() if id(p) in tower], "weight_decay": decay},
        ]
