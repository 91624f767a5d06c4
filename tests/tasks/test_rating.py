from __future__ import annotations

import math
from functools import partial

import pytest
import torch

from movielens_gnn.data.datamodule import EdgeBatch
from movielens_gnn.models.graph import BipartiteGraph
from movielens_gnn.tasks.rating import RatingModel


def _model(**kwargs) -> RatingModel:
    model = RatingModel(num_users=3, num_items=3, rating_mean=3.0, **kwargs)
    model.attach_graph(BipartiteGraph(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1]), 3, 3))
    return model


def test_metrics_use_clamped_predictions_hand_computed():
    model = _model(embedding_dim=2, hidden_dims=[])
    with torch.no_grad():
        model.encoder.user_embedding.weight.zero_()
        model.head.user_bias.weight.copy_(torch.tensor([[0.0], [2.5], [-2.5]]))  # raw 3.0, 5.5, 0.5
    batch = EdgeBatch(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), torch.tensor([4.0, 5.0, 2.0]))
    model.log_dict = lambda *args, **kwargs: None  # no trainer here
    loss = model._shared_step(batch, model.test_metrics)
    assert loss.item() == pytest.approx((1 + 0.25 + 2.25) / 3)  # MSE on the raw scores
    values = model.test_metrics.compute()
    # Clamped to 3, 5, 1: errors 1, 0, 1.
    assert values["test_rmse"].item() == pytest.approx(math.sqrt(2 / 3))
    assert values["test_mae"].item() == pytest.approx(2 / 3)
    torch.testing.assert_close(model.predict_step(batch, 0), torch.tensor([3.0, 5.0, 1.0]))


def test_one_metric_collection_per_stage():
    model = _model()
    assert {"train_rmse", "train_mae"} == set(model.train_metrics.keys())
    assert model.val_metrics is not model.test_metrics
    assert set(model.test_metrics.keys()) == {"test_rmse", "test_mae"}


def test_graph_is_not_saved_with_the_weights():
    model = _model()
    assert not any(key.startswith("graph.") for key in model.state_dict())
    assert model.hparams.num_users == 3 and "optimizer" not in model.hparams


def test_unknown_head_lists_valid_values():
    with pytest.raises(ValueError, match="Unknown head 'knn'; valid values: dot, mlp"):
        RatingModel(num_users=3, num_items=3, head="knn")


def test_graph_of_other_sizes_is_rejected():
    model = RatingModel(num_users=3, num_items=3)
    with pytest.raises(ValueError, match="graph has 2 users and 3 items; this model was built for 3 and 3"):
        model.attach_graph(BipartiteGraph(torch.tensor([0]), torch.tensor([0]), 2, 3))
    with pytest.raises(RuntimeError, match="No graph attached"):
        model(torch.tensor([0]), torch.tensor([0]))


def test_optimizer_and_plateau_scheduler_from_callables():
    model = _model(
        optimizer=partial(torch.optim.SGD, lr=0.5),
        lr_scheduler=partial(torch.optim.lr_scheduler.ReduceLROnPlateau, patience=2),
    )
    config = model.configure_optimizers()
    assert isinstance(config["optimizer"], torch.optim.SGD) and config["optimizer"].defaults["lr"] == 0.5
    assert config["lr_scheduler"]["monitor"] == "val_rmse"
    assert isinstance(_model().configure_optimizers(), torch.optim.Adam)
    # A plateau schedule that counts a rising RMSE as progress would cut the rate while the model improves.
    backwards = _model(lr_scheduler=partial(torch.optim.lr_scheduler.ReduceLROnPlateau, mode="max"))
    with pytest.raises(ValueError, match=r"watches val_rmse, which is better lower, but has mode 'max': set "
                                         r"--model.lr_scheduler.init_args.mode min"):
        backwards.configure_optimizers()


def test_mlp_head_on_concatenated_layers():
    model = _model(head="mlp", embedding_dim=4, hidden_dims=[4, 4], combine="concat", mlp_hidden_dims=[8])
    out = model(torch.tensor([0, 2]), torch.tensor([1, 2]))
    assert out.shape == (2,) and model.head.mlp[0].in_features == 3 * 12


def _hybrid(**kwargs) -> RatingModel:
    model = RatingModel(num_users=3, num_items=3, rating_mean=3.0, embedding_dim=2, hidden_dims=[],
                        autoencoder_dim=4, **kwargs)
    graph = BipartiteGraph(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1]), 3, 3, ratings=torch.tensor([4.0, 5.0, 2.0]))
    model.attach_graph(graph)
    return model


def test_hybrid_predicts_the_mean_of_its_towers_and_fits_each_tower():
    model = _hybrid()
    with torch.no_grad():
        model.encoder.user_embedding.weight.zero_()
        model.autoencoder.user_output.zero_()
        model.head.user_bias.weight.fill_(1.0)  # GraphConv tower: 3 + 1 = 4 everywhere
        model.autoencoder_head.item_bias.weight.copy_(torch.tensor([[-0.5], [0.5], [1.5]]))  # 2.5, 3.5, 4.5
    users, items = torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2])
    torch.testing.assert_close(model.tower_scores(model.encode(), users, items),
                               torch.tensor([[4.0, 4.0, 4.0], [2.5, 3.5, 4.5]]))
    torch.testing.assert_close(model(users, items), torch.tensor([3.25, 3.75, 4.25]))
    torch.testing.assert_close(model.score_all_items(torch.tensor([1])), torch.tensor([[3.25, 3.75, 4.25]]))
    model.log_dict = lambda *args, **kwargs: None
    batch = EdgeBatch(users, items, torch.tensor([4.0, 5.0, 2.0]))
    loss = model._shared_step(batch, model.train_metrics)
    # Per-tower MSEs, summed: (0 + 1 + 4) / 3 + (2.25 + 2.25 + 6.25) / 3.
    assert loss.item() == pytest.approx(5 / 3 + 10.75 / 3)
    # Metrics use the mean prediction: errors 0.75, 1.25, 2.25.
    assert model.train_metrics.compute()["train_mae"].item() == pytest.approx((0.75 + 1.25 + 2.25) / 3)


def test_hybrid_gives_the_autoencoder_tables_their_own_weight_decay():
    model = _hybrid(autoencoder_weight_decay=0.01, optimizer=partial(torch.optim.Adam, lr=0.1, weight_decay=1e-4))
    optimizer = model.configure_optimizers()
    groups = optimizer.param_groups
    assert [g["weight_decay"] for g in groups] == [1e-4, 0.01]
    assert {id(p) for p in groups[1]["params"]} == {id(model.autoencoder.user_input), id(model.autoencoder.user_output)}
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    # Without its own value, one group with the optimizer's weight decay.
    plain = _hybrid(optimizer=partial(torch.optim.Adam, lr=0.1, weight_decay=1e-4)).configure_optimizers()
    assert [g["weight_decay"] for g in plain.param_groups] == [1e-4]


@pytest.mark.parametrize(("scale", "expected"), [
    ([1, 2, 3, 4, 5], 4.0),  # MovieLens' whole stars
    ([v / 2 for v in range(1, 11)], 4.0),  # half stars: 0.5 + 0.75 * 4.5 = 3.875, the next value up
    ([-2, -1, 0, 1, 2], 1.0),
    ([0.0, 50.5, 74.9, 75.2, 100.0], 75.2),  # a file's own distinct ratings
])
def test_relevance_threshold_defaults_to_the_top_quarter_of_the_scale(scale, expected):
    model = RatingModel(num_users=3, num_items=3, rating_values=scale)
    assert model.hparams.relevance_threshold is None and model.relevance_threshold == expected


def test_a_relevance_threshold_outside_the_scale_is_used_and_warned_about_once(caplog):
    model = RatingModel(num_users=3, num_items=3, rating_values=[-2, -1, 0, 1, 2], relevance_threshold=4)
    assert model.relevance_threshold == 4.0 and model.relevance_threshold == 4.0
    warnings = [r.getMessage() for r in caplog.records if "relevance_threshold" in r.getMessage()]
    assert warnings == ["--model.relevance_threshold 4 on a rating scale of -2..2: no rating reaches it: every top-K "
                        "metric is 0. Set one within the scale, or --model.relevance_threshold null for the top quarter (1)."]
    bottom = RatingModel(num_users=3, num_items=3, relevance_threshold=1)
    assert bottom.relevance_threshold == 1.0 and "every rating counts" in caplog.text


def test_the_rating_task_refuses_data_whose_ratings_have_one_value():
    with pytest.raises(ValueError, match=r"every rating in this data is 1 \(a file read without a rating column.*Train a "
                                         r"ranking config"):
        RatingModel(num_users=3, num_items=3, rating_values=[1.0])
