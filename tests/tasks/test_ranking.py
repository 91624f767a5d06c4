from __future__ import annotations

import math

import pytest
import torch

from movielens_gnn.checkpoint import CheckpointError
from movielens_gnn.data.datamodule import EdgeBatch
from movielens_gnn.models.baselines import EASE, interaction_matrix
from movielens_gnn.models.graph import BipartiteGraph
from movielens_gnn.tasks import RankingModel, RatingModel, task_class
from movielens_gnn.tasks.ranking import standardise

# 4 users, 5 items; user 3 has no training interaction.
USERS = torch.tensor([0, 0, 1, 1, 1, 2])
ITEMS = torch.tensor([0, 3, 1, 2, 4, 0])


def _model(**kwargs) -> RankingModel:
    torch.manual_seed(0)
    model = RankingModel(num_users=4, num_items=5, **{"embedding_dim": 3, **kwargs})
    model.attach_graph(BipartiteGraph(USERS, ITEMS, 4, 5))
    return model


def test_graph_interactions_read_back_the_training_edges():
    users, items = BipartiteGraph(USERS, ITEMS, 4, 5).interactions()
    assert sorted(zip(users.tolist(), items.tolist())) == sorted(zip(USERS.tolist(), ITEMS.tolist()))


@pytest.mark.parametrize("encoder", ["mf", "lightgcn", "graphconv"])
def test_training_step_is_bpr_plus_l2_of_the_batch_embeddings_by_hand(encoder):
    model = _model(encoder=encoder, negatives=2, l2_weight=0.1, hidden_dims=[3], num_layers=2)
    model.log = lambda *args, **kwargs: None  # no trainer here
    batch = EdgeBatch(torch.tensor([0, 1]), torch.tensor([3, 2]), torch.tensor([5.0, 1.0]))
    torch.manual_seed(7)
    loss = model.training_step(batch, 0)
    torch.manual_seed(7)
    negatives = model.sampler(batch.users, 2)  # the same draw as inside the step
    assert not any(int(j) in {0: {0, 3}, 1: {1, 2, 4}}[int(u)] for u, row in zip(batch.users, negatives) for j in row)
    with torch.no_grad():
        user_table, item_table = model.encode()
    expected = 0.0
    for b, (user, item) in enumerate(zip(batch.users.tolist(), batch.items.tolist())):
        positive = float(user_table[user] @ item_table[item])
        for j in negatives[b].tolist():
            expected += math.log1p(math.exp(float(user_table[user] @ item_table[j]) - positive)) / 4
    ego_u, ego_i = model.encoder.user_embedding.weight, model.encoder.item_embedding.weight
    squares = (ego_u[batch.users].pow(2).sum() + ego_i[batch.items].pow(2).sum() + ego_i[negatives].pow(2).sum())
    expected += 0.1 * float(squares) / 2 / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert model.encoder.user_embedding.weight.grad[batch.users].abs().sum() > 0


def test_a_user_with_every_item_is_left_out_of_the_loss_with_a_warning(caplog):
    # User 0 rated all three items: nothing to rank below them. User 1 rated items 0 and 1, so their
    # only negative is item 2, and the step's loss is user 1's one pair, exactly.
    graph = BipartiteGraph(torch.tensor([0, 0, 0, 1, 1]), torch.tensor([0, 1, 2, 0, 1]), 2, 3)
    from types import SimpleNamespace

    with caplog.at_level("WARNING", logger="movielens_gnn.tasks.ranking"):
        model = RankingModel(num_users=2, num_items=3, embedding_dim=3, encoder="mf", negatives=2, l2_weight=0.0)
        model.attach_graph(graph)
        assert "interacted with every one" not in caplog.text  # not at attach: recommend and test have no loss
        model._trainer = SimpleNamespace(is_global_zero=True, datamodule=None)
        model.on_fit_start()  # once a fit starts, on rank 0
        model._trainer = None
    assert "1 user(s) at index [0] interacted with every one of the 3 items" in caplog.text
    model.log = lambda *args, **kwargs: None
    loss = model.training_step(EdgeBatch(torch.tensor([0, 1, 0]), torch.tensor([1, 0, 2]), torch.ones(3)), 0)
    with torch.no_grad():
        user_table, item_table = model.encode()
    assert loss.item() == pytest.approx(math.log1p(math.exp(float(user_table[1] @ (item_table[2] - item_table[0])))))
    empty = model.training_step(EdgeBatch(torch.tensor([0]), torch.tensor([1]), torch.ones(1)), 0)
    assert empty.item() == 0.0  # a batch of such users alone: no pairs, no NaN


def test_data_parallel_ranks_draw_their_own_negatives_reproducibly():
    from types import SimpleNamespace

    model = _model(encoder="mf")
    batch = torch.tensor([0, 1, 2, 0, 1, 2] * 50)

    def draw(world_size: int, rank: int, epoch: int, batch_idx: int) -> torch.Tensor:
        model._trainer = SimpleNamespace(world_size=world_size, global_rank=rank, current_epoch=epoch)
        try:
            return model.sampler(batch, 4, generator=model._negative_generator(batch_idx))
        finally:
            model._trainer = None

    model._trainer = SimpleNamespace(world_size=1, global_rank=0, current_epoch=0)
    assert model._negative_generator(0) is None  # alone: torch's global stream, as the published runs drew
    model._trainer = None
    torch.manual_seed(11)
    first = draw(2, 0, 5, 3)
    assert torch.equal(first, draw(2, 0, 5, 3))  # a resumed run at epoch 5, batch 3 draws the same
    # Another rank, epoch or batch (gradient accumulation: several batches in one optimizer step) draws anew.
    assert not any(torch.equal(first, draw(*other)) for other in ((2, 1, 5, 3), (2, 0, 6, 3), (2, 0, 5, 4)))


def test_scores_are_dot_products_and_pairs_agree_with_the_full_ranking():
    model = _model(encoder="lightgcn")
    user_table, item_table = model.encode()
    scores = model.score_all_items(torch.tensor([2, 0]))
    torch.testing.assert_close(scores, user_table[[2, 0]] @ item_table.T)
    pairs = model(torch.tensor([0, 2, 0]), torch.tensor([4, 1, 1]))
    torch.testing.assert_close(pairs, torch.stack([scores[1, 4], scores[0, 1], scores[1, 1]]))
    torch.testing.assert_close(model.predict_step(EdgeBatch(torch.tensor([0]), torch.tensor([4]), torch.tensor([3.0])), 0),
                               scores[1, 4:5])


def test_hybrid_fuses_standardised_encoder_and_ease_scores():
    model = _model(encoder="mf", item_item_l2=2.0, item_item_weight=0.25)
    users = torch.tensor([0, 1, 2])
    ease = EASE(5, 2.0).fit(interaction_matrix(USERS, ITEMS, 4, 5))
    user_table, item_table = model.encode()
    expected = 0.75 * standardise(user_table[users] @ item_table.T) + 0.25 * standardise(ease(users))
    torch.testing.assert_close(model.score_all_items(users), expected)
    model._item_item_cache = None
    with torch.inference_mode():  # cached for every user at the first call (as in a validation loop) ...
        torch.testing.assert_close(model.score_all_items(users.flip(0)), expected.flip(0))
    torch.testing.assert_close(model.score_all_items(users[1:]), expected[1:])  # ... and reused outside it
    row = standardise(torch.tensor([[1.0, 2.0, 3.0]]))
    torch.testing.assert_close(row, torch.tensor([[-1.0, 0.0, 1.0]]))
    # Solved from the graph when attached: not part of the checkpointed weights, and not broadcast by DDP.
    assert not any(key.startswith(("item_item.", "graph.", "sampler.")) for key in model.state_dict())
    ignored = set(model._ddp_params_and_buffers_to_ignore)
    assert {"graph.crow", "sampler.shifted", "item_item.weights", "item_item.history_col"} <= ignored
    assert {"graph.rel_val", "graph.rating_t_crow"} <= ignored  # laid out on first use, possibly after DDP wraps
    assert not ignored & set(model.state_dict())


def test_task_class_comes_only_from_the_registry():
    assert task_class(None) is RatingModel
    assert task_class("movielens_gnn.tasks.RankingModel") is RankingModel
    assert task_class("movielens_gnn.tasks.ranking.RankingModel") is RankingModel
    assert task_class("RankingModel") is RankingModel
    with pytest.raises(CheckpointError, match=r"Unknown task 'os\.system'; this version has RatingModel, RankingModel"):
        task_class("os.system")
    with pytest.raises(CheckpointError, match="Unknown task 'evil.RankingModel'"):
        task_class("evil.RankingModel")


@pytest.mark.parametrize(("arguments", "message"), [
    ({"encoder": "ngcf"}, r"--model\.encoder must be one of mf, lightgcn, graphconv, got 'ngcf'"),
    ({"negatives": 0}, r"--model\.negatives must be a positive integer, got 0"),
    ({"num_layers": -1}, r"--model\.num_layers must be an integer in 0\.\.8"),
    ({"l2_weight": -1e-4}, r"--model\.l2_weight must be a finite number >= 0"),
    ({"item_item_weight": 1.5}, r"--model\.item_item_weight must be a share in \[0, 1\], got 1\.5"),
    ({"item_item_l2": float("nan")}, r"--model\.item_item_l2 must be a finite number >= 0"),
    ({"ranking_ks": [0]}, r"--model\.ranking_ks must be a list of positive integers"),
    ({"ranking_ks": []}, r"--model\.ranking_ks must be at least one cut-off K, e\.g\. \[10, 20\]: validation selects on "
                         r"val_ndcg@K, got \[\]"),
    ({"num_items": 27_278, "item_item_l2": 300.0},
     r"--model\.item_item_l2 solves a dense items x items system; this data has 27278 items, above 20000"),
])
def test_bad_arguments_name_the_option(arguments, message):
    with pytest.raises(ValueError, match=message):
        RankingModel(**{"num_users": 4, "num_items": 5, **arguments})


def test_graph_of_other_sizes_is_rejected_and_no_graph_is_an_error():
    model = RankingModel(num_users=4, num_items=5)
    with pytest.raises(RuntimeError, match="No graph attached"):
        model.score_all_items(torch.tensor([0]))
    with pytest.raises(ValueError, match="graph has 3 users and 5 items; this model was built for 4 and 5"):
        model.attach_graph(BipartiteGraph(torch.tensor([0]), torch.tensor([0]), 3, 5))


def test_bpr_training_ranks_held_out_items_of_a_planted_structure():
    """Two taste groups; after a few hundred steps each user's unseen in-group item outranks every other."""
    torch.manual_seed(0)
    users, items = [], []
    for user in range(8):
        group = range(0, 5) if user < 4 else range(5, 10)
        for item in group:
            if item != (user % 4) + (0 if user < 4 else 5):  # hold out one in-group item per user
                users.append(user)
                items.append(item)
    graph = BipartiteGraph(torch.tensor(users), torch.tensor(items), 8, 10)
    model = RankingModel(num_users=8, num_items=10, encoder="lightgcn", embedding_dim=8, num_layers=2, l2_weight=0.0)
    model.attach_graph(graph)
    model.log = lambda *args, **kwargs: None
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    batch = EdgeBatch(torch.tensor(users), torch.tensor(items), torch.ones(len(users)))
    for _ in range(200):
        optimizer.zero_grad()
        model.training_step(batch, 0).backward()
        optimizer.step()
    scores = model.score_all_items(torch.arange(8)).detach()
    known = interaction_matrix(torch.tensor(users), torch.tensor(items), 8, 10).bool()
    top = scores.masked_fill(known, float("-inf")).argmax(1)
    assert top.tolist() == [0, 1, 2, 3, 5, 6, 7, 8]


def test_plateau_scheduler_watches_validation_ndcg():
    from functools import partial

    model = _model(optimizer=partial(torch.optim.Adam, lr=0.1),
                   lr_scheduler=partial(torch.optim.lr_scheduler.ReduceLROnPlateau, mode="max", patience=2))
    config = model.configure_optimizers()
    assert config["lr_scheduler"]["monitor"] == "val_ndcg@10"
    assert config["optimizer"].param_groups[0]["lr"] == 0.1
    assert len(config["optimizer"].param_groups[0]["params"]) == len(list(model.parameters()))
    # torch's default mode, min, would count a falling NDCG as progress: refused, naming the setting.
    default = _model(lr_scheduler=partial(torch.optim.lr_scheduler.ReduceLROnPlateau, patience=2))
    with pytest.raises(ValueError, match=r"watches val_ndcg@10, which is better higher, but has mode 'min'.*mode max"):
        default.configure_optimizers()
