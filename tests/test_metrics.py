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
