from __future__ import annotations

import pytest
import torch

from movielens_gnn.models import heads
from movielens_gnn.models.heads import DotHead, MLPHead, pair_dot


def test_dot_head_hand_computed():
    head = DotHead(num_users=3, num_items=2, rating_mean=3.5)
    with torch.no_grad():
        head.user_bias.weight.copy_(torch.tensor([[0.1], [0.2], [0.3]]))
        head.item_bias.weight.copy_(torch.tensor([[-0.5], [0.25]]))
    user_table = torch.tensor([[0.0, 1.0], [9.0, 9.0], [1.0, 2.0]])
    item_table = torch.tensor([[2.0, -1.0], [3.0, 4.0]])
    out = head(user_table, item_table, torch.tensor([2, 0]), torch.tensor([1, 0]))
    # 1*3 + 2*4 + 3.5 + 0.3 + 0.25 and 0*2 + 1*-1 + 3.5 + 0.1 - 0.5
    torch.testing.assert_close(out, torch.tensor([15.05, 2.1]))


def test_dot_head_starts_at_the_mean():
    head = DotHead(4, 4, rating_mean=3.53)
    out = head(torch.zeros(4, 3), torch.zeros(4, 3), torch.tensor([0, 1]), torch.tensor([2, 3]))
    torch.testing.assert_close(out, torch.full((2,), 3.53))
    assert "rating_mean" in head.state_dict()


@pytest.mark.parametrize("route, chunk", [("gather", 3), ("gather", 1 << 20), ("dense", 3), ("sparse", 3)])
def test_pair_dot_value_gradient_and_gradcheck(monkeypatch, route, chunk):
    monkeypatch.setattr(heads, "PAIR_CHUNK", chunk)
    if route == "gather":
        monkeypatch.setattr(heads, "DENSE_PAIR_RATIO", 0)
    if route != "gather":  # make sure the gather route is not taken
        monkeypatch.setattr(heads._PairDot, "apply", None)
    g = torch.Generator().manual_seed(0)
    users_t = torch.randn(5, 4, dtype=torch.float64, generator=g, requires_grad=True)
    items_t = torch.randn(6, 4, dtype=torch.float64, generator=g, requires_grad=True)
    users = torch.tensor([0, 4, 4, 2, 1, 0, 3])
    items = torch.tensor([5, 0, 1, 1, 2, 5, 3])  # repeats on both sides
    reference = (users_t[users] * items_t[items]).sum(-1)
    chosen = "auto" if route != "sparse" else "sparse"
    torch.testing.assert_close(pair_dot(users_t, items_t, users, items, chosen), reference)
    assert torch.autograd.gradcheck(lambda u, i: pair_dot(u, i, users, items, chosen), (users_t, items_t))


def test_mlp_head_reads_the_pair_and_adds_the_mean():
    head = MLPHead(in_dim=2, hidden_dims=[5], dropout=0.0, rating_mean=3.0)
    first, _, _, last = head.mlp
    assert first.in_features == 6 and last.out_features == 1
    u, i = torch.randn(3, 2), torch.randn(4, 2)
    users, items = torch.tensor([0, 2, 2, 1]), torch.tensor([3, 0, 1, 1])
    pairs = torch.cat([u[users], i[items], u[users] * i[items]], 1)
    torch.testing.assert_close(head(u, i, users, items), head.mlp(pairs).squeeze(-1) + 3.0)


def test_mlp_head_scores_many_pairs_without_gradients_in_pieces(monkeypatch):
    head = MLPHead(in_dim=4, hidden_dims=[8, 3], dropout=0.0, rating_mean=3.5).eval()
    assert head._floats_per_pair(4) == 6 * 4 + 2 * (8 + 3 + 1)
    g = torch.Generator().manual_seed(0)
    u, i = torch.randn(7, 4, generator=g), torch.randn(9, 4, generator=g)
    users, items = torch.arange(7).repeat_interleave(9), torch.arange(9).repeat(7)  # all 63 pairs, as ranking asks
    whole = head(u, i, users, items)
    scored = []
    original = MLPHead._score
    monkeypatch.setattr(MLPHead, "_score", lambda self, *a: scored.append(len(a[2])) or original(self, *a))
    monkeypatch.setattr(MLPHead, "INFERENCE_FLOATS", 10 * head._floats_per_pair(4))  # ten pairs a piece
    with torch.no_grad():
        pieces = head(u, i, users, items)
    assert scored == [10] * 6 + [3]
    torch.testing.assert_close(pieces, whole.detach(), rtol=1e-6, atol=1e-6)
    scored.clear()
    out = head(u.requires_grad_(), i, users, items)  # training: one piece, with its graph
    assert scored == [63] and out.requires_grad


def test_sparse_route_equals_gather_on_a_larger_graph():
    g = torch.Generator().manual_seed(1)
    user_table = torch.randn(300, 16, generator=g, requires_grad=True)
    item_table = torch.randn(200, 16, generator=g, requires_grad=True)
    keys = torch.randperm(300 * 200, generator=g)[:5000]
    users, items = keys // 200, keys % 200
    weights = torch.rand(5000, generator=g)
    results = []
    for route in ("gather", "sparse"):
        user_table.grad = item_table.grad = None
        out = pair_dot(user_table, item_table, users, items, route)
        (out * weights).sum().backward()
        results.append((out.detach(), user_table.grad.clone(), item_table.grad.clone()))
    for a, b in zip(*results):  # summation order differs: relative tolerance
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("in_order", [True, False])
def test_sparse_route_with_pairs_in_pattern_order_skips_the_permutations(monkeypatch, in_order):
    """Pairs sorted by (user, item) are already in the pattern's CSR order: no index_select forward, no
    scatter backward; values and gradients stay exact (gradcheck in float64)."""
    g = torch.Generator().manual_seed(2)
    user_table = torch.randn(6, 3, dtype=torch.float64, generator=g, requires_grad=True)
    item_table = torch.randn(5, 3, dtype=torch.float64, generator=g, requires_grad=True)
    keys = torch.tensor([1, 3, 4, 7, 10, 11, 17, 22, 26, 29])  # distinct (user, item) keys, ascending
    if not in_order:
        keys = keys.flip(0)
    users, items = keys // 5, keys % 5
    pattern = heads.PairPattern(users, items, 6, 5)
    assert pattern.in_order is in_order
    # 32-bit indices in both layouts (the sparse kernels' native type), the gradcheck below runs on them.
    assert {t.dtype for t in (pattern.crow, pattern.col, pattern.crow_t, pattern.col_t)} == {torch.int32}
    if in_order:  # the permutations must not run at all
        monkeypatch.setattr(heads._SampledDot, "forward", _no_permutation(heads._SampledDot.forward))
    reference = (user_table[users] * item_table[items]).sum(-1)
    torch.testing.assert_close(pair_dot(user_table, item_table, users, items, "sparse", pattern), reference)
    assert torch.autograd.gradcheck(lambda u, i: pair_dot(u, i, users, items, "sparse", pattern),
                                    (user_table, item_table))


def _no_permutation(forward):
    def checked(ctx, user_table, item_table, pattern):
        original = torch.Tensor.index_select
        try:
            torch.Tensor.index_select = None  # a call would fail: the in-order path gathers nothing
            return forward(ctx, user_table, item_table, pattern)
        finally:
            torch.Tensor.index_select = original
    return staticmethod(checked)


def test_pattern_cache_builds_on_the_second_sighting_only():
    cache = heads.PatternCache(size=2)
    users, items = torch.tensor([0, 1, 1]), torch.tensor([2, 0, 1])
    assert cache.get(users, items, 2, 3) is None  # first time: maybe a minibatch
    pattern = cache.get(users, items, 2, 3)
    assert isinstance(pattern, heads.PairPattern) and cache.get(users, items, 2, 3) is pattern
    other_users, other_items = users.clone(), items.clone()
    assert cache.get(other_users, other_items, 2, 3) is None  # equal values, other tensors: another edge set
    del users, items, pattern
    assert len([e for e in cache._seen if e[0]() is not None]) == 1  # the dropped edge set's entry goes with it


def test_pattern_cache_keys_on_the_tables_shape_too():
    """The same edge tensors scored against tables of another size get their own pattern."""
    cache = heads.PatternCache()
    users, items = torch.tensor([0, 1, 1]), torch.tensor([2, 0, 1])
    cache.get(users, items, 2, 3)
    small = cache.get(users, items, 2, 3)
    assert cache.get(users, items, 4, 5) is None  # first sighting at this shape
    large = cache.get(users, items, 4, 5)
    assert small.shape == (2, 3) and large.shape == (4, 5) and cache.get(users, items, 2, 3) is small
    g = torch.Generator().manual_seed(3)
    user_table, item_table = torch.randn(4, 2, generator=g), torch.randn(5, 2, generator=g)
    torch.testing.assert_close(pair_dot(user_table, item_table, users, items, "sparse", large),
                               (user_table[users] * item_table[items]).sum(-1))


def test_a_dot_head_that_has_scored_pickles(tmp_path):
    """torch.save of a whole model: the pattern cache's weak references are left out (rebuilt on demand)."""
    import pickle

    head = DotHead(3, 4, rating_mean=3.0)
    tables, users, items = (torch.randn(3, 2), torch.randn(4, 2)), torch.tensor([0, 2]), torch.tensor([3, 1])
    for _ in range(2):  # the second call builds a pattern
        expected = head(*tables, users, items)
    copy = pickle.loads(pickle.dumps(head))
    assert copy.patterns._seen == [] and copy.patterns.size == head.patterns.size
    torch.testing.assert_close(copy(*tables, users, items), expected)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_sparse_route_by_name_with_half_tables_runs_in_float32(dtype):
    g = torch.Generator().manual_seed(4)
    user_table = torch.randn(5, 4, generator=g).to(dtype).requires_grad_()
    item_table = torch.randn(6, 4, generator=g).to(dtype).requires_grad_()
    users, items = torch.tensor([0, 4, 2, 1]), torch.tensor([5, 0, 1, 3])
    out = pair_dot(user_table, item_table, users, items, "sparse")
    reference = (user_table.float()[users] * item_table.float()[items]).sum(-1)
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), reference, atol=2e-2, rtol=1e-2)
    out.sum().backward()
    assert user_table.grad.dtype == dtype and item_table.grad.dtype == dtype


def test_dot_head_auto_route_switches_to_sparse_for_a_returning_edge_set(monkeypatch):
    monkeypatch.setattr(heads, "DENSE_PAIR_MAX", 0)  # a graph too large for the dense route
    head = DotHead(30, 40, rating_mean=3.0)
    g = torch.Generator().manual_seed(2)
    user_table, item_table = torch.randn(30, 8, generator=g), torch.randn(40, 8, generator=g)
    users, items = torch.randint(0, 30, (200,), generator=g), torch.randint(0, 40, (200,), generator=g)
    calls = []
    monkeypatch.setattr(heads._SampledDot, "apply", lambda *a, f=heads._SampledDot.apply: calls.append(1) or f(*a))
    first = head(user_table, item_table, users, items)
    assert not calls
    second = head(user_table, item_table, users, items)
    assert calls == [1]
    torch.testing.assert_close(first, second)
    with pytest.raises(ValueError, match="Unknown pair route 'fast'; valid values: auto, dense, gather, sparse"):
        DotHead(3, 4, 3.0, pair_route="fast")


@pytest.mark.parametrize("bias_columns", [True, False])
def test_dot_head_routes_agree_on_values_and_gradients_of_tables_and_biases(monkeypatch, bias_columns):
    # From BIAS_COLUMNS_MIN_PAIRS pairs on, the sparse route carries the biases as two extra table columns;
    # below it, and on the other routes, they are gathered.
    monkeypatch.setattr(heads, "BIAS_COLUMNS_MIN_PAIRS", 0 if bias_columns else 9)
    widths = []
    apply = heads._SampledDot.apply
    monkeypatch.setattr(heads._SampledDot, "apply", lambda u, i, p: widths.append(u.shape[1]) or apply(u, i, p))
    g = torch.Generator().manual_seed(3)
    user_table = torch.randn(6, 4, dtype=torch.float64, generator=g, requires_grad=True)
    item_table = torch.randn(7, 4, dtype=torch.float64, generator=g, requires_grad=True)
    users = torch.tensor([0, 5, 5, 2, 1, 0, 3, 4])
    items = torch.tensor([6, 0, 1, 1, 2, 6, 3, 0])  # repeats on both sides
    weights = torch.randn(8, dtype=torch.float64, generator=g)
    results = {}
    for route in ("gather", "dense", "sparse"):
        head = DotHead(6, 7, rating_mean=3.5, pair_route=route).double()
        with torch.no_grad():
            head.user_bias.weight.copy_(torch.arange(6, dtype=torch.float64)[:, None] / 10)
            head.item_bias.weight.copy_(-torch.arange(7, dtype=torch.float64)[:, None] / 20)
        out = head(user_table, item_table, users, items)
        grads = torch.autograd.grad((out * weights).sum(),
                                    (user_table, item_table, head.user_bias.weight, head.item_bias.weight))
        results[route] = (out, grads)
        if route == "sparse":
            assert torch.autograd.gradcheck(
                lambda u, i, bu, bi: torch.func.functional_call(head, {"user_bias.weight": bu, "item_bias.weight": bi},
                                                                (u, i, users, items)),
                (user_table, item_table, head.user_bias.weight, head.item_bias.weight))
    by_hand = (user_table[users] * item_table[items]).sum(-1) + 3.5 + users / 10 - items / 20
    for route, (out, grads) in results.items():
        torch.testing.assert_close(out, by_hand, msg=route)
        for got, expected in zip(grads, results["gather"][1]):
            torch.testing.assert_close(got, expected, msg=route)
    assert set(widths) == {6 if bias_columns else 4}
    # The bias gradients by hand: the weights summed per user and per item.
    torch.testing.assert_close(results["sparse"][1][2].squeeze(1),
                               torch.zeros(6, dtype=torch.float64).index_add_(0, users, weights))


def test_pattern_products_run_in_slices_for_large_tables_and_equal_the_csr_ones():
    """A 40,000-user table of 64 floats (10 MB) is multiplied by Gᵀ in slices; G @ items (1 MB) is not."""
    from movielens_gnn.models.heads import PairPattern

    g = torch.Generator().manual_seed(6)
    num_users, num_items = 40_000, 4_000
    keys = torch.unique(torch.randint(0, num_users * num_items, (30_000,), generator=g))
    users, items = keys // num_items, keys % num_items
    pattern = PairPattern(users, items, num_users, num_items)
    values = torch.randn(len(keys), generator=g)
    user_table, item_table = torch.randn(num_users, 64, generator=g), torch.randn(num_items, 64, generator=g)
    torch.testing.assert_close(pattern.matmul(values, user_table, transpose=True), pattern.csr_t(values) @ user_table)
    torch.testing.assert_close(pattern.matmul(values, item_table), pattern.csr(values) @ item_table)
    assert list(pattern._slices) == [(True, 16_384)]
    # Through the sparse route's backward: the same gradients as gathering rows.
    tables = [t.clone().requires_grad_() for t in (user_table, item_table)]
    gathered = [t.clone().requires_grad_() for t in (user_table, item_table)]
    weights = torch.randn(len(keys), generator=g)
    (pair_dot(*tables, users, items, "sparse", pattern) * weights).sum().backward()
    (pair_dot(*gathered, users, items, "gather") * weights).sum().backward()
    for a, b in zip(tables, gathered):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-5)
