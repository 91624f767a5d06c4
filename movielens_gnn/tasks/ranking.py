"""The ranking task: BPR over (user, positive, negative) triples, selected on top-K metrics.

Trains an encoder (matrix factorisation, LightGCN or the GraphConv stack) so that each user's
training items score above items they never interacted with, then ranks every item for every
user at validation and test time. Optionally fuses the learned scores with a closed-form
item-item part (EASE) fitted on the same training graph: the hybrid the README's ranking table
compares.
"""

from __future__ import annotations

import logging
import math
from typing import Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from movielens_gnn.data.datasets.base import WHOLE_STARS
from movielens_gnn.models.baselines import EASE, interaction_matrix
from movielens_gnn.models.bpr import NegativeSampler, bpr_loss, l2_penalty
from movielens_gnn.models.encoder import GraphEncoder
from movielens_gnn.models.graph import BipartiteGraph
from movielens_gnn.models.lightgcn import LightGCN, MatrixFactorization
from movielens_gnn.tasks.base import GraphTask, check_layer_widths

log = logging.getLogger(__name__)

ENCODERS = ("mf", "lightgcn", "graphconv")
# The hybrid's EASE part inverts a dense items x items float64 matrix: 20,000 items is 3 GiB (and an
# O(I^3) inverse); larger catalogues (ml-20m's 27K items, ml-25m's 59K) are refused.
MAX_ITEM_ITEM = 20_000
# Users x items scores of the EASE part kept between validations up to this size (ml-100k: 1.6M).
MAX_CACHED_SCORES = 2**25


def check_arguments(**arguments) -> None:
    """Raise ``ValueError`` naming the first :class:`RankingModel` argument outside its range."""
    def fail(name: str, expected: str) -> None:
        raise ValueError(f"--model.{name} must be {expected}, got {arguments[name]!r}.")

    def integer(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    if "encoder" in arguments and arguments["encoder"] not in ENCODERS:
        fail("encoder", "one of " + ", ".join(ENCODERS))
    for name in ("num_users", "num_items", "embedding_dim", "negatives", "train_metrics_every_n_epochs"):
        if name in arguments and not (integer(arguments[name]) and arguments[name] >= 1):
            fail(name, "a positive integer")
    if "num_layers" in arguments and not (integer(arguments["num_layers"]) and 0 <= arguments["num_layers"] <= 8):
        fail("num_layers", "an integer in 0..8 (LightGCN uses 1-4)")
    for name in ("user_feature_dim", "item_feature_dim"):
        if name in arguments and not (integer(arguments[name]) and arguments[name] >= 0):
            fail(name, "an integer >= 0")
    for name in ("hidden_dims", "ranking_ks"):
        if name in arguments and not all(integer(v) and v >= 1 for v in arguments[name]):
            fail(name, "a list of positive integers, e.g. [64]")
    if "ranking_ks" in arguments and not list(arguments["ranking_ks"]):
        fail("ranking_ks", "at least one cut-off K, e.g. [10, 20]: validation selects on val_ndcg@K")
    if "dropout" in arguments and not (number(arguments["dropout"]) and 0.0 <= arguments["dropout"] < 1.0):
        fail("dropout", "a probability in [0, 1)")
    for name in ("l2_weight", "item_item_l2"):
        if name in arguments and not (number(arguments[name]) and arguments[name] >= 0):
            fail(name, "a finite number >= 0")
    if "item_item_weight" in arguments and not (number(arguments["item_item_weight"])
                                                and 0.0 <= arguments["item_item_weight"] <= 1.0):
        fail("item_item_weight", "a share in [0, 1]")
    for name in ("rating_mean", "relevance_threshold"):
        if name in arguments and not number(arguments[name]) and not (name == "relevance_threshold"
                                                                      and arguments[name] is None):
            fail(name, "a finite number")
    if arguments.get("encoder") == "graphconv":  # the other encoders have no layers to combine
        check_layer_widths(arguments)


def standardise(scores: Tensor) -> Tensor:
    """Each row of ``(B, I)`` scores shifted and scaled to mean 0, standard deviation 1, so two
    models' scores can be mixed with a scale-free weight."""
    return (scores - scores.mean(1, keepdim=True)) / scores.std(1, keepdim=True).clamp(min=1e-12)


class RankingModel(GraphTask):
    """Top-K recommendation: an encoder trained with BPR, chosen on ``val_ndcg@10``.

    Each training step takes a batch of training interactions ``(u, i)``, draws ``negatives``
    items per interaction uniformly from those ``u`` has no training interaction with (fresh draws
    every step, on the model's device: :class:`~movielens_gnn.models.bpr.NegativeSampler`), and
    minimises ``-log σ(s(u,i) - s(u,j))`` plus ``l2_weight`` times the squared norm of the
    batch's layer-0 embeddings, as in the BPR and LightGCN papers. ``s(u,i)`` is the dot product
    of the encoder's user and item vectors.

    At validation and test every item is ranked for every user of the part, the user's training
    items left out (and validation items at test), and Recall, NDCG, Precision, HitRate and MRR
    at ``ranking_ks`` are logged as ``val_ndcg@10`` ... ``test_mrr@20``.

    With ``item_item_l2 > 0`` the model is a hybrid: EASE's closed-form item-item weights
    (Steck 2019, ridge ``item_item_l2``) are solved from the training graph when it is attached
    (rebuilt, not stored in checkpoints), and a user's scores are
    ``(1 - w) · z(encoder scores) + w · z(EASE scores)`` with ``z`` standardising each user's
    scores and ``w = item_item_weight``. Training still fits only the encoder with BPR; the
    fusion, and so the checkpoint selection, is on the ranking it produces.

    Args:
        num_users: Number of users; linked from the data module.
        num_items: Number of items; linked from the data module.
        user_feature_dim: Width of the user side features; linked from the data module.
        item_feature_dim: Width of the item side features; linked from the data module.
        rating_mean: Linked from the data module like for the rating task; not used in ranking.
        rating_values: The rating scale, linked from the data module like for the rating task; not
            used in ranking.
        encoder: ``mf`` (free embeddings, no graph), ``lightgcn`` (no weights or activations,
            mean of layers 0..L, symmetric normalisation) or ``graphconv`` (the rating task's
            GraphConv stack).
        embedding_dim: Width of the ID embeddings.
        num_layers: LightGCN's propagation layers ``L``.
        hidden_dims: ``graphconv``: output width of each layer.
        activation: ``graphconv``: between layers.
        dropout: ``graphconv``: dropout on each layer's input.
        combine: ``graphconv``: output is the ``last`` layer, the ``mean`` or ``concat`` of all.
        side_features: ``graphconv``: add projected side features to the ID embeddings.
        negatives: Negatives drawn per training interaction.
        l2_weight: Weight of the L2 penalty on the batch's layer-0 embeddings.
        item_item_l2: EASE's ridge ``λ`` for the hybrid; 0 (the default) leaves it out.
        item_item_weight: Share ``w`` of the EASE part in the hybrid's standardised scores.
        engine: ``graphconv``: ``native`` or ``dgl``.
        optimizer: Builds the optimizer from the parameters; torch's Adam, AdamW, SGD and Adagrad run
            fused (where this torch can) unless ``fused`` or ``foreach`` is set.
        lr_scheduler: Builds an LR scheduler, or ``None``; a ``ReduceLROnPlateau`` watches
            ``val_ndcg@10`` (give it ``mode: max``).
        ranking_ks: Cut-offs K of the logged metrics; the configs monitor ``val_ndcg@10``, and so does a
            run without checkpoint callbacks when 10 is among them (else ``val_ndcg@`` the first K).
        relevance_threshold: Held-out interactions rated at or above this are relevant; ``None`` (the
            default) counts every held-out interaction, the implicit protocol (whatever the scale, negative
            ratings included: training takes every interaction as a positive too).
        train_metrics_every_n_epochs: Measure and log the training metrics (``train_loss``) on the
            first epoch and then every this many; the others skip them (each logged key costs about
            0.2 ms of Lightning's bookkeeping per epoch, a few percent of a full-batch epoch on u1).
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        user_feature_dim: int = 0,
        item_feature_dim: int = 0,
        rating_mean: float = 3.5,
        rating_values: Sequence[float] = WHOLE_STARS,
        encoder: Literal["mf", "lightgcn", "graphconv"] = "lightgcn",
        embedding_dim: int = 64,
        num_layers: int = 3,
        hidden_dims: Sequence[int] = (64,),
        activation: Literal["relu", "leaky_relu", "elu", "tanh", "identity"] = "relu",
        dropout: float = 0.0,
        combine: Literal["last", "mean", "concat"] = "mean",
        side_features: bool = False,
        negatives: int = 1,
        l2_weight: float = 1e-4,
        item_item_l2: float = 0.0,
        item_item_weight: float = 0.5,
        engine: Literal["native", "dgl"] = "native",
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: Optional[LRSchedulerCallable] = None,
        ranking_ks: Sequence[int] = (10, 20),
        relevance_threshold: Optional[float] = None,
        train_metrics_every_n_epochs: int = 1,
    ) -> None:
        super().__init__()
        check_arguments(
            num_users=num_users, num_items=num_items, user_feature_dim=user_feature_dim,
            item_feature_dim=item_feature_dim, rating_mean=rating_mean, encoder=encoder,
            embedding_dim=embedding_dim, num_layers=num_layers, hidden_dims=list(hidden_dims), combine=combine,
            dropout=dropout,
            negatives=negatives, l2_weight=l2_weight, item_item_l2=item_item_l2,
            item_item_weight=item_item_weight, ranking_ks=list(ranking_ks), relevance_threshold=relevance_threshold,
            train_metrics_every_n_epochs=train_metrics_every_n_epochs,
        )
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        ks = list(ranking_ks)
        self.monitor = f"val_ndcg@{10 if 10 in ks else ks[0]}"  # what is logged: @10 unless only other K are
        if encoder == "mf":
            self.encoder = MatrixFactorization(num_users, num_items, embedding_dim)
        elif encoder == "lightgcn":
            self.encoder = LightGCN(num_users, num_items, embedding_dim, num_layers)
        else:
            self.encoder = GraphEncoder(
                num_users, num_items, embedding_dim, list(hidden_dims), activation=activation, dropout=dropout,
                combine=combine, user_feature_dim=user_feature_dim if side_features else 0,
                item_feature_dim=item_feature_dim if side_features else 0, engine=engine,
            )
        if item_item_l2 > 0 and num_items > MAX_ITEM_ITEM:
            raise ValueError(
                f"--model.item_item_l2 solves a dense items x items system; this data has {num_items} items, above "
                f"{MAX_ITEM_ITEM} (about {num_items ** 2 * 8 / 2 ** 30:.0f} GiB for it). Use --model.item_item_l2 0 "
                "(the encoder alone) on this catalogue.")
        self.item_item = EASE(num_items, item_item_l2) if item_item_l2 > 0 else None
        self.sampler: NegativeSampler | None = None
        self._item_item_cache: Tensor | None = None

    check_arguments = staticmethod(check_arguments)

    def on_graph_attached(self, graph: BipartiteGraph) -> None:
        """Build the negative sampler (and solve the EASE part) from the graph's training interactions."""
        users, items = graph.interactions()
        self.sampler = NegativeSampler(users, items, graph.num_users, graph.num_items).to(graph.crow.device)
        self._item_item_cache = None
        if self.item_item is not None:
            # Sparse: the users x items matrix of a large dataset would not fit densely.
            self.item_item.fit(interaction_matrix(users, items, graph.num_users, graph.num_items, sparse=True))

    # ---------------------------------------------------------------------------- compute
    def encode(self) -> tuple[Tensor, Tensor]:
        """``((U, D), (I, D))`` user and item vectors over the attached training graph."""
        return self.encoder(self.attached_graph)

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        """``(B,)`` scores of the pairs ``(users[b], items[b])``, on the scale of :meth:`score_all_items`."""
        unique, row = torch.unique(users, return_inverse=True)
        return self.score_all_items(unique)[row, items.to(row.device)]

    def score_all_items(self, users: Tensor, tables: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """``(B, I)`` ranking scores of ``(B,)`` users for every item (the hybrid's fused scores).

        Args:
            users: ``(B,)`` internal user indices.
            tables: :meth:`encode`'s output, to reuse across calls.
        """
        user_table, item_table = tables if tables is not None else self.encode()
        users = users.to(user_table.device)
        scores = user_table[users] @ item_table.T
        if self.item_item is None:
            return scores
        weight = self.hparams.item_item_weight
        return (1 - weight) * standardise(scores) + weight * self._item_item_scores(users)

    @torch.enable_grad()
    def score_new_user(self, items: Tensor, ratings: Tensor, steps: int = 200, l2: float = 1e-2,
                       peers: Tensor | None = None) -> Tensor:
        """``(I,)`` scores for a user who is not in the training graph, from the items they rated.

        The item side stays frozen (as ``implicit``'s ``recalculate_user`` does): a new user vector is
        fitted by BPR over every (rated, unrated) item pair, starting from the mean of ``peers`` (every
        user by default), with an L2 pull of weight ``l2``; the hybrid's EASE part is exact for a new user
        (their 0/1 row times ``B``). Ratings only say which items the user interacted with here (all count
        as positives). With no items the scores are the peers' mean vector's.

        Args:
            items: ``(K,)`` internal indices of the rated items.
            ratings: ``(K,)`` their ratings (unused beyond marking the items as interactions).
            steps: Adam steps of the fit.
            l2: Weight of the squared norm of the user vector.
            peers: ``(P,)`` internal indices of the training users to start from; ``None``: every user.
        """
        user_table, item_table = (t.detach() for t in self.encode())
        positive = torch.zeros(item_table.shape[0], dtype=torch.bool, device=item_table.device)
        positive[items.to(item_table.device)] = True
        group = user_table if peers is None else user_table[peers.to(user_table.device)]
        user = group.mean(0).clone().requires_grad_(True)
        optimizer = torch.optim.Adam([user], lr=0.05)
        for _ in range(steps if bool(positive.any()) else 0):
            optimizer.zero_grad()
            scores = item_table @ user
            # Every rated item above every other one: the full BPR objective of this one user.
            margin = scores[positive][:, None] - scores[~positive][None, :]
            loss = -F.logsigmoid(margin).mean() + l2 * user.pow(2).sum()
            loss.backward()
            optimizer.step()
        scores = (item_table @ user).detach()
        if self.item_item is None:
            return scores
        ease_scores = positive.to(self.item_item.weights.dtype) @ self.item_item.weights
        weight = self.hparams.item_item_weight
        return (1 - weight) * standardise(scores[None])[0] + weight * standardise(ease_scores[None])[0]

    def _item_item_scores(self, users: Tensor) -> Tensor:
        """``(B, I)`` standardised EASE scores. They never change while the encoder trains, so on a small
        enough ``U × I`` they are computed once for every user and reused at each validation."""
        assert self.item_item is not None
        num_users, num_items = self.hparams.num_users, self.hparams.num_items
        if num_users * num_items > MAX_CACHED_SCORES:
            return standardise(self.item_item(users))
        cache = self._item_item_cache
        if cache is None or cache.device != users.device:
            with torch.no_grad():
                cache = torch.cat([standardise(self.item_item(chunk))
                                   for chunk in torch.arange(num_users, device=users.device).split(1024)])
            self._item_item_cache = cache
        return cache[users]

    def training_step(self, batch, batch_idx: int) -> Tensor:
        users, items, _ = batch
        assert self.sampler is not None, "on_graph_attached builds the sampler"
        negatives = self.sampler(users, self.hparams.negatives, generator=self._negative_generator(batch_idx))  # (B, K)
        if len(self.sampler.full_users):  # -1 rows: nothing to rank below these users' items
            keep = negatives[:, 0] >= 0
            users, items, negatives = users[keep], items[keep], negatives[keep]
        user_table, item_table = self.encode()
        user_vectors = user_table[users]
        positive = (user_vectors * item_table[items]).sum(-1)
        negative = torch.einsum("bd,bkd->bk", user_vectors, item_table[negatives])
        # The papers' regularisation: the batch's own layer-0 embeddings, not the propagated ones.
        ego_users, ego_items = self.encoder.user_embedding.weight, self.encoder.item_embedding.weight
        penalty = l2_penalty(ego_users[users], ego_items[items], ego_items[negatives].flatten(0, 1))
        loss = bpr_loss(positive, negative) + self.hparams.l2_weight * penalty
        self.record_train_loss(loss, len(users), batch_idx)
        return loss

    def on_fit_start(self) -> None:
        super().on_fit_start()
        full = self.sampler.full_users if self.sampler is not None else ()
        if len(full) and self.trainer.is_global_zero:  # once, where there is a loss to leave them out of
            data = getattr(self.trainer.datamodule, "data", None)
            named = (f"user id(s) {data.user_ids[full[:10]].tolist()}" if data is not None
                     else f"user(s) at index {full[:10].tolist()}")
            log.warning("%d %s interacted with every one of the %d items in training: there is nothing to rank "
                        "below their items, so they are left out of the BPR loss.", len(full), named,
                        self.hparams.num_items)

    def _negative_generator(self, batch_idx: int) -> torch.Generator | None:
        """Under data parallelism, a generator of this rank's own for the step's negatives; alone, ``None``
        (torch's global stream, as the published runs drew them).

        ``seed_everything`` seeds every rank alike, so that their initial weights agree; the global stream
        would then hand all ranks the same draws. With full-batch data each rank's rows are nearly the
        same users (rank r takes edges r::W of a user-sorted list), so the ranks would draw the same
        negatives: half of them wasted at two ranks. Seeding from (seed, rank, epoch, batch) instead of
        carrying a state keeps a resumed run's draws those of an uninterrupted one (the batch, not the
        optimizer step, which gradient accumulation repeats over several batches).
        """
        trainer = self._trainer
        if trainer is None or trainer.world_size == 1:
            return None
        generator = torch.Generator(device=self.device)
        # Python hashes int tuples without a per-process salt: every rank and every run agree.
        key = (torch.initial_seed(), trainer.global_rank, trainer.current_epoch, batch_idx)
        generator.manual_seed(hash(key) & (2**63 - 1))
        return generator

    def validation_step(self, batch, batch_idx: int) -> None:
        """Nothing per batch: the whole ranking is scored at the end of the epoch."""

    def test_step(self, batch, batch_idx: int) -> None:
        """Nothing per batch: the whole ranking is scored at the end of the epoch."""

    def on_validation_epoch_end(self) -> None:
        self.log_ranking("val", self.hparams.ranking_ks, self.hparams.relevance_threshold)

    def on_test_epoch_end(self) -> None:
        self.log_ranking("test", self.hparams.ranking_ks, self.hparams.relevance_threshold)

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """``(B,)`` ranking scores of the batch's pairs (an order, not stars)."""
        users, items, _ = batch
        return self(users, items)
