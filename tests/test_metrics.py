from __future__ import annotations

import math

import pytest
import torch

from movielens_gnn.metrics import ranking_metrics


def test_ranking_metrics_hand_computed():
    # Two users, six items. Scores rank items by index for user 0 and in reverse for user 1.
    scores = torch.tensor([[6.0, 5, 4, 3, 2, 1], [1.0, 2, 3, 4, 5, 6]])
    exclude = torch.zeros(2, 6, dtype=torch.bool)
    exclude[0, 0] = True  # user 0 rated item 0 in training: it must not take a slot
    relevant = torch.zeros(2, 6, dtype=torch.bool)
    relevant[0, [2, 5]] = True  # user 0: ranking 1,2,3,4,5 -> hits at ranks 2 and 5
    relevant[1, 0] = True  # user 1: ranking 5,4,3,2,1,0 -> hit at rank 6
    out = ranking_metrics(scores, exclude, relevant, ks=(2, 5))
    assert out["users"] == 2
    # K=2: user 0 has 1 hit (rank 2), user 1 none.
    assert out["precision@2"].item() == pytest.approx(0.5 + 0)
    assert out["recall@2"].item() == pytest.approx(0.5 + 0)
    assert out["hitrate@2"].item() == pytest.approx(1 + 0)
    assert out["ndcg@2"].item() == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    # K=5: user 0 hits at ranks 2 and 5 -> precision 2/5, recall 1; user 1 still none.
    assert out["precision@5"].item() == pytest.approx(0.4)
    assert out["recall@5"].item() == pytest.approx(1.0)
    dcg = 1 / math.log2(3) + 1 / math.log2(6)
    assert out["ndcg@5"].item() == pytest.approx(dcg / (1 + 1 / math.log2(3)))


def test_users_without_relevant_items_are_not_counted():
    scores = torch.rand(3, 4)
    relevant = torch.zeros(3, 4, dtype=torch.bool)
    relevant[1, 2] = True
    out = ranking_metrics(scores, torch.zeros(3, 4, dtype=torch.bool), relevant, ks=(4,))
    assert out["users"] == 1 and out["recall@4"].item() == 1.0 and out["hitrate@4"].item() == 1.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="one shape"):
        ranking_metrics(torch.rand(2, 3), torch.zeros(2, 4, dtype=torch.bool), torch.zeros(2, 3, dtype=torch.bool), (1,))
    with pytest.raises(ValueError, match="positive cut-offs"):
        ranking_metrics(torch.rand(2, 3), torch.zeros(2, 3, dtype=torch.bool), torch.zeros(2, 3, dtype=torch.bool), (0,))


def test_mrr_is_the_reciprocal_rank_of_the_first_hit_within_k():
    scores = torch.tensor([[6.0, 5, 4, 3, 2, 1], [1.0, 2, 3, 4, 5, 6]])
    relevant = torch.zeros(2, 6, dtype=torch.bool)
    relevant[0, [2, 5]] = True  # first hit at rank 3
    relevant[1, 0] = True  # first hit at rank 6: outside K=5
    out = ranking_metrics(scores, torch.zeros(2, 6, dtype=torch.bool), relevant, ks=(2, 5))
    assert out["mrr@2"].item() == 0 and out["mrr@5"].item() == pytest.approx(1 / 3)


def test_metric_class_adds_batches_and_matches_torchmetrics_retrieval():
    """Oracle: torchmetrics.retrieval on random scores without ties, excluded items left out of the lists."""
    from torchmetrics import retrieval

    from movielens_gnn.metrics import RankingMetrics

    generator = torch.Generator().manual_seed(0)
    users, items, ks = 37, 50, (5, 10)
    scores = torch.rand(users, items, generator=generator, dtype=torch.float64)  # continuous: no ties
    exclude = torch.rand(users, items, generator=generator) < 0.2
    relevant = (torch.rand(users, items, generator=generator) < 0.1) & ~exclude
    relevant[3] = False  # a user without relevant items is not counted
    metric = RankingMetrics(ks)
    for rows in torch.arange(users).split(8):  # batches of users add up
        metric.update(scores[rows], exclude[rows], relevant[rows])
    ours = metric.compute()
    keep = ~exclude
    indexes = torch.arange(users)[:, None].expand(users, items)[keep]
    preds, target = scores[keep], relevant[keep]
    oracles = {"precision": retrieval.RetrievalPrecision, "recall": retrieval.RetrievalRecall,
               "ndcg": retrieval.RetrievalNormalizedDCG, "hitrate": retrieval.RetrievalHitRate,
               "mrr": retrieval.RetrievalMRR}
    for k in ks:
        for name, cls in oracles.items():
            expected = cls(top_k=k, empty_target_action="skip")(preds, target, indexes=indexes)
            assert ours[f"{name}@{k}"].item() == pytest.approx(expected.item(), abs=1e-6), (name, k)
    functional = ranking_metrics(scores, exclude, relevant, ks)
    assert ours["ndcg@10"].item() == pytest.approx((functional["ndcg@10"] / functional["users"]).item(), abs=1e-6)


def test_ties_go_to_the_lower_item_whatever_the_cut_offs():
    scores = torch.ones(1, 30)  # all tied: the ranking is items 0, 1, 2, ...
    relevant = torch.zeros(1, 30, dtype=torch.bool)
    relevant[0, 9] = True  # rank 10
    exclude = torch.zeros(1, 30, dtype=torch.bool)
    alone = ranking_metrics(scores, exclude, relevant, ks=(10,))
    together = ranking_metrics(scores, exclude, relevant, ks=(10, 20))
    assert alone["mrr@10"].item() == together["mrr@10"].item() == pytest.approx(0.1)


def test_a_nan_score_makes_that_users_metrics_nan_not_an_index_ranking():
    # NaN sorts above every number: without the check a diverged model would rank items 0, 1, 2, ...
    # and user 0, whose relevant item is item 0, would score a perfect hit.
    scores = torch.tensor([[float("nan")] * 4, [1.0, 2, 3, 4], [float("nan"), 1, 2, 3]])
    exclude = torch.zeros(3, 4, dtype=torch.bool)
    exclude[2, 0] = True  # user 2's NaN is on an item left out of the ranking: it does not count
    relevant = torch.zeros(3, 4, dtype=torch.bool)
    relevant[:, 0] = True
    relevant[2, 3] = True
    out = ranking_metrics(scores, exclude, relevant, ks=(1,))
    assert out["users"] == 3 and math.isnan(out["hitrate@1"].item()) and math.isnan(out["ndcg@1"].item())
    healthy = ranking_metrics(scores[1:], exclude[1:], relevant[1:], ks=(1,))
    assert healthy["hitrate@1"].item() == 1.0  # user 1 misses item 0, user 2 ranks item 3 first


def test_low_precision_scores_are_counted_in_float64_and_excluded_items_are_not_relevant():
    generator = torch.Generator().manual_seed(2)
    scores = torch.rand(50, 40, generator=generator)
    exclude = torch.rand(50, 40, generator=generator) < 0.2
    relevant = torch.rand(50, 40, generator=generator) < 0.15
    low = ranking_metrics(scores.bfloat16(), exclude, relevant, ks=(10,))
    high = ranking_metrics(scores.bfloat16().double(), exclude, relevant, ks=(10,))  # the same ranking
    for name in ("ndcg@10", "mrr@10", "recall@10"):
        assert low[name].dtype == torch.float64 and low[name].item() == pytest.approx(high[name].item(), abs=1e-9)
    # A relevant item that is also excluded can never be ranked: it is not in the recall denominator.
    alone = ranking_metrics(scores, exclude, relevant & ~exclude, ks=(10,))
    assert low["users"] == alone["users"] and ranking_metrics(scores, exclude, relevant, (10,))["recall@10"] == alone["recall@10"]


def test_mean_loss_weights_each_batch_by_its_size_and_resets():
    from movielens_gnn.metrics import MeanLoss

    metric = MeanLoss()
    metric.update(torch.tensor(2.0), 3)
    metric.update(torch.tensor(4.0), 1)
    assert metric.compute().item() == pytest.approx((2.0 * 3 + 4.0 * 1) / 4)
    metric.reset()
    metric.update(torch.tensor(0.5), 10)
    assert metric.compute().item() == pytest.approx(0.5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int64])
def test_top_k_indices_equals_the_stable_full_sort(dtype):
    """Oracle: ``sort(stable=True)`` over all items, on rows with and without ties across the cut."""
    from movielens_gnn.metrics import top_k_indices

    generator = torch.Generator().manual_seed(3)
    for trial in range(200):
        rows, items = torch.randint(1, 12, (2,), generator=generator).tolist()
        if trial % 2:  # few levels: ties inside the top k and across the cut
            scores = torch.randint(0, 4, (rows, items), generator=generator).to(dtype)
        else:
            scores = torch.rand(rows, items, generator=generator).to(dtype)
        if dtype != torch.int64 and trial % 3 == 0:
            scores[torch.rand(rows, items, generator=generator) < 0.3] = float("-inf")  # excluded items
        if dtype != torch.int64 and trial % 5 == 0:
            scores[torch.rand(rows, items, generator=generator) < 0.2] = float("nan")
        for k in (1, max(1, items // 2), items, items + 2):
            expected = scores.sort(dim=1, descending=True, stable=True).indices[:, :k]
            assert torch.equal(top_k_indices(scores, k), expected), (scores, k)
