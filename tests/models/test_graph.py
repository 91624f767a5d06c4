from __future__ import annotations

import pytest
import torch

from movielens_gnn.models.graph import BipartiteGraph, csr_layout, index_dtype


def _dense_reference(users, items, num_users, num_items):
    """D_in^-1/2 A D_out^-1/2 with A[dst, src] = 1 per directed edge, degrees clamped at 1."""
    n = num_users + num_items
    adj = torch.zeros(n, n, dtype=torch.float64)
    adj[items + num_users, users] = 1
    adj[users, items + num_users] = 1
    in_deg = adj.sum(1).clamp(min=1)
    out_deg = adj.sum(0).clamp(min=1)
    return in_deg.rsqrt()[:, None] * adj * out_deg.rsqrt()[None, :]


def test_normalisation_matches_dense_reference_with_isolated_nodes():
    users = torch.tensor([0, 0, 1, 2, 2, 2])
    items = torch.tensor([0, 1, 1, 0, 1, 3])  # item 2 and user 3 have no edges
    graph = BipartiteGraph(users, items, num_users=4, num_items=4, dtype=torch.float64)
    reference = _dense_reference(users, items, 4, 4)
    torch.testing.assert_close(graph.to_dense(), reference)
    # Hand-checked entry: user 0 (degree 2) -> item 1 (degree 3).
    assert graph.to_dense()[4 + 1, 0].item() == pytest.approx(1 / (2**0.5 * 3**0.5))
    assert graph.to_dense()[3].abs().sum() == 0 and graph.to_dense()[4 + 2].abs().sum() == 0
    assert (graph.num_nodes, graph.num_edges) == (8, 12)


def test_csr_layout_is_exact_with_32_bit_indices():
    rows = torch.tensor([2, 0, 2, 1, 0])
    cols = torch.tensor([1, 3, 0, 2, 3])  # (0, 3) twice: repeated entries keep their order
    crow, col, order = csr_layout(rows, cols, 4, 5)
    assert (crow.dtype, col.dtype, order.dtype) == (torch.int32, torch.int32, torch.int64)
    assert crow.tolist() == [0, 2, 3, 5, 5] and col.tolist() == [3, 3, 2, 0, 1] and order.tolist() == [1, 4, 3, 2, 0]
    # The key rows * n_cols + cols is formed in 64 bits: these sizes overflow 32-bit arithmetic.
    crow, col, order = csr_layout(torch.tensor([70_000, 1]), torch.tensor([5, 60_000]), 70_001, 60_001)
    assert order.tolist() == [1, 0] and col.tolist() == [60_000, 5]
    assert index_dtype(10, 2**31 - 2) == torch.int32 and index_dtype(10, 2**31) == torch.int64


def test_transpose_is_stored_consistently():
    g = torch.Generator().manual_seed(0)
    users = torch.randint(0, 30, (200,), generator=g)
    items = torch.randint(0, 50, (200,), generator=g)
    keep = torch.unique(users * 50 + items)
    graph = BipartiteGraph(keep // 50, keep % 50, 30, 50)
    assert graph.crow.dtype == graph.col.dtype == torch.int32
    adj, adj_t = graph.adjacency()
    torch.testing.assert_close(adj_t.to_dense(), adj.to_dense().T)


def test_buffers_follow_the_module_but_stay_out_of_the_state_dict():
    graph = BipartiteGraph(torch.tensor([0, 1]), torch.tensor([1, 0]), 2, 2, user_features=torch.ones(2, 3))
    assert graph.state_dict() == {}
    assert graph.double().val.dtype == torch.float64
    assert graph.user_features.shape == (2, 3) and graph.item_features is None


def test_rejects_out_of_range_edges():
    with pytest.raises(ValueError, match="out of range for 2 users and 2 items"):
        BipartiteGraph(torch.tensor([0, 2]), torch.tensor([0, 1]), 2, 2)


def test_relational_adjacency_splits_the_normalised_matrix_by_rating():
    users = torch.tensor([0, 0, 1, 2, 2])
    items = torch.tensor([0, 1, 1, 0, 2])
    ratings = torch.tensor([5.0, 1.0, 3.0, 5.0, 2.0])
    graph = BipartiteGraph(users, items, 3, 3, ratings=ratings, dtype=torch.float64)
    adj, adj_t = graph.relational_adjacency()
    n = graph.num_nodes
    wide = adj.to_dense()
    assert wide.shape == (n, 5 * n) and graph.num_relations == 5
    # Summing the five (N, N) blocks gives back the plain normalised adjacency.
    torch.testing.assert_close(wide.reshape(n, 5, n).sum(1), graph.to_dense())
    # User 0 -> item 0 was rated 5: its entry sits in block 4 only.
    assert wide[3 + 0, 4 * n + 0] == graph.to_dense()[3, 0] and wide[3 + 0, 0 * n + 0] == 0
    torch.testing.assert_close(adj_t.to_dense(), wide.T)


def test_half_star_ratings_get_ten_relations():
    users, items = torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1])
    half_stars = [k / 2 for k in range(1, 11)]
    graph = BipartiteGraph(users, items, 2, 2, ratings=torch.tensor([0.5, 5.0, 3.5]), rating_values=half_stars,
                           dtype=torch.float64)
    wide = graph.relational_adjacency()[0].to_dense()
    n = graph.num_nodes
    assert graph.num_relations == 10 and wide.shape == (n, 10 * n)
    plain = graph.to_dense()
    # Item 0 (node 2) <- user 0 rated 0.5: block 0; item 1 (node 3) <- user 1 rated 3.5: block 6.
    assert wide[2, 0 * n + 0] == plain[2, 0] and wide[3, 6 * n + 1] == plain[3, 1] and wide[3, 9 * n + 0] == plain[3, 0]
    torch.testing.assert_close(wide.reshape(n, 10, n).sum(1), plain)


def test_relational_needs_ratings_in_range():
    with pytest.raises(ValueError, match="each one of the rating values 1, 2, 3, 4, 5"):
        BipartiteGraph(torch.tensor([0]), torch.tensor([0]), 1, 1, ratings=torch.tensor([6.0]))
    with pytest.raises(ValueError, match="rating values 0.5, 1, 1.5"):  # a whole star where only half stars are
        BipartiteGraph(torch.tensor([0]), torch.tensor([0]), 1, 1, ratings=torch.tensor([3.25]),
                       rating_values=[k / 2 for k in range(1, 11)])
    with pytest.raises(ValueError, match="built without edge ratings"):
        BipartiteGraph(torch.tensor([0]), torch.tensor([0]), 1, 1).relational_adjacency()


def test_edge_scale_hits_both_directions_of_a_rating_in_every_layout():
    users = torch.tensor([0, 0, 1, 2])
    items = torch.tensor([0, 1, 1, 2])
    graph = BipartiteGraph(users, items, 3, 3, ratings=torch.tensor([5.0, 1.0, 3.0, 2.0]), dtype=torch.float64)
    scale = torch.tensor([1.0, 0.0, 2.0, 1.0])  # drop rating 1 (user 0, item 1), double rating 2
    dense = graph.to_dense()
    expected = dense.clone()
    expected[3 + 1, 0] = expected[0, 3 + 1] = 0
    expected[3 + 1, 1] *= 2
    expected[1, 3 + 1] *= 2
    adj, adj_t = graph.adjacency(scale)
    torch.testing.assert_close(adj.to_dense(), expected)
    torch.testing.assert_close(adj_t.to_dense(), expected.T)
    rel, rel_t = graph.relational_adjacency(scale)
    torch.testing.assert_close(rel.to_dense().reshape(6, 5, 6).sum(1), expected)
    torch.testing.assert_close(rel_t.to_dense(), rel.to_dense().T)


def test_rating_matrix_is_items_by_users_with_raw_ratings():
    users = torch.tensor([0, 0, 1, 2])
    items = torch.tensor([1, 0, 1, 2])
    ratings = torch.tensor([4.0, 2.0, 5.0, 1.0])
    graph = BipartiteGraph(users, items, num_users=3, num_items=4, ratings=ratings)
    matrix, transpose = graph.rating_matrix()
    expected = torch.tensor([[2.0, 0, 0], [4.0, 5.0, 0], [0, 0, 1.0], [0, 0, 0]])
    torch.testing.assert_close(matrix.to_dense(), expected)
    torch.testing.assert_close(transpose.to_dense(), expected.T)
    # edge_scale multiplies each rating's entry; here rating 1 (user 0 -> item 0) is dropped.
    scaled, _ = graph.rating_matrix(edge_scale=torch.tensor([1.0, 0.0, 2.0, 1.0]))
    torch.testing.assert_close(scaled.to_dense(), torch.tensor([[0.0, 0, 0], [4.0, 10.0, 0], [0, 0, 1.0], [0, 0, 0]]))
    with pytest.raises(ValueError, match="without edge ratings"):
        BipartiteGraph(users, items, 3, 4).rating_matrix()


def test_derived_layouts_are_built_on_first_use_and_match_dense_references():
    g = torch.Generator().manual_seed(1)
    num_users, num_items = 7, 9  # some users and items get no rating at all
    keys = torch.unique(torch.randint(0, (num_users - 1) * num_items, (40,), generator=g))
    users, items = keys // num_items, keys % num_items
    ratings = torch.randint(1, 6, (len(keys),), generator=g).double()
    graph = BipartiteGraph(users, items, num_users, num_items, ratings=ratings).double()
    assert not hasattr(graph, "rel_crow") and not hasattr(graph, "rating_crow")  # only A until asked
    stars = torch.zeros(num_items, num_users, dtype=torch.float64)
    stars[items, users] = ratings
    matrix, transpose = graph.rating_matrix()
    assert matrix.values().dtype == torch.float64  # laid out after .double(), in the graph's dtype
    torch.testing.assert_close(matrix.to_dense(), stars)
    torch.testing.assert_close(transpose.to_dense(), stars.T)
    n = graph.num_nodes
    rel, rel_t = graph.relational_adjacency()
    per_level = torch.zeros(5, n, n, dtype=torch.float64)
    dense = graph.to_dense()
    for user, item, rating in zip(users.tolist(), items.tolist(), ratings.tolist()):
        level = int(rating) - 1
        per_level[level, num_users + item, user] = dense[num_users + item, user]
        per_level[level, user, num_users + item] = dense[user, num_users + item]
    torch.testing.assert_close(rel.to_dense(), per_level.permute(1, 0, 2).reshape(n, 5 * n))
    torch.testing.assert_close(rel_t.to_dense(), rel.to_dense().T)
    assert graph.state_dict() == {}


def test_layouts_first_built_in_inference_mode_are_normal_tensors():
    """Lightning's sanity check runs under inference mode; layouts built there are kept for training."""
    graph = BipartiteGraph(torch.tensor([0, 1, 1]), torch.tensor([1, 0, 2]), 2, 3,
                           ratings=torch.tensor([4.0, 2.0, 5.0]))
    with torch.inference_mode():
        graph.relational_adjacency()
        graph.rating_matrix()
    assert not any(getattr(graph, name).is_inference() for name in BipartiteGraph.LAZY_BUFFERS)
    weights = torch.ones(3, requires_grad=True)
    (graph.rel_val * weights[graph.rel_edge]).sum().backward()  # usable in autograd (DGL saves it)
    assert set(BipartiteGraph.LAZY_BUFFERS) <= set(graph._non_persistent_buffers_set)


def test_column_slices_multiply_like_the_whole_matrix_with_empty_and_ragged_slices():
    from movielens_gnn.models.graph import ColumnSlices, csr_tensor

    g = torch.Generator().manual_seed(3)
    dense = torch.rand(7, 11, generator=g, dtype=torch.float64) * (torch.rand(7, 11, generator=g) < 0.4)
    dense[:, 4:8] = 0  # a slice without entries
    dense[2] = 0  # a row without entries
    sparse = dense.to_sparse_csr()
    crow, col, values = sparse.crow_indices(), sparse.col_indices(), sparse.values()
    x = torch.randn(11, 3, generator=g, dtype=torch.float64)
    for width in (1, 4, 5, 11, 16):  # 11 columns: ragged last slices, one slice, wider than the matrix
        slices, order = ColumnSlices.from_layout(crow, col, 11, width)
        assert [b - a for a, b in slices.bounds][:-1] == [width] * (len(slices.bounds) - 1)
        assert sorted(order.tolist()) == list(range(len(values)))
        torch.testing.assert_close(slices.matmul(values[order.long()], x), dense @ x)
        # Each slice is the matrix's own columns [start, end).
        for crow_s, col_s, part, (start, end) in zip(slices.crows, slices.cols, values[order.long()].split(slices.sizes),
                                                     slices.bounds):
            torch.testing.assert_close(csr_tensor(crow_s, col_s, part, (7, end - start)).to_dense(), dense[:, start:end])


def test_slice_width_only_for_operands_that_overflow_two_slices_on_cpu():
    from movielens_gnn.models.graph import SLICE_BYTES, slice_width

    cpu = torch.device("cpu")
    graph_25m = (221_588, 221_588, 50_000_190)  # the 25M graph's adjacency: rows, columns, entries
    assert slice_width(2625, 2625, 152_000, 64, 4, cpu) is None  # u1: 0.7 MB of features
    n = 2 * SLICE_BYTES // 256
    assert slice_width(n, n, 10**7, 64, 4, cpu) is None  # exactly two slices' worth
    assert slice_width(*graph_25m, 64, 4, cpu) == 16_384  # 4 MB per slice
    assert slice_width(59_047, 162_541, 25_000_095, 66, 4, cpu) == 8_192  # 66 wide: the power of two below 4 MB / 264 B
    assert slice_width(*graph_25m, 64, 4, torch.device("cuda")) is None
    assert slice_width(10, 1000, 100, 64, 4, cpu, slice_bytes=1024) == 4
    # 500 wide over 2.2M columns (a rating-aware layer at 25M, half stars): 1,083 slices of 221,589 row
    # pointers each would outnumber the entries; one piece instead.
    assert slice_width(221_588, 10 * 221_588, 50_000_190, 500, 4, cpu) is None


def test_sliced_adjacency_equals_the_csr_one_with_and_without_edge_scale():
    from movielens_gnn.models.graph import SlicedMatrix

    g = torch.Generator().manual_seed(4)
    keys = torch.randperm(40 * 30, generator=g)[:300]
    graph = BipartiteGraph(keys // 30, keys % 30, 40, 30)
    x = torch.randn(graph.num_nodes, 8)
    assert not isinstance(graph.adjacency_operand(x), SlicedMatrix)  # small: the CSR tensor itself
    scale = torch.rand(300, generator=g)
    for edge_scale in (None, scale):
        sliced = graph.adjacency_operand(x, edge_scale, slice_bytes=8 * 4 * 8)  # 8 columns a slice
        assert isinstance(sliced, SlicedMatrix) and len(sliced.slices.bounds) == 9
        torch.testing.assert_close(sliced @ x, graph.adjacency(edge_scale)[0] @ x)
    assert list(graph._slices) == [("", 8)]  # laid out once, for both
    with pytest.raises(ValueError, match=r"Expected a dense \(70, F\) operand .* got shape \(75, 8\)"):
        sliced @ torch.randn(75, 8)
    graph.to(torch.float64)
    assert graph._slices == {}  # caches of the buffers: dropped when they move


def test_sliced_layout_first_built_in_inference_mode_serves_training():
    """Lightning validates (in inference mode) before the first training step: the cached layout must be
    made of normal tensors, usable with an edge_scale that autograd tracks."""
    g = torch.Generator().manual_seed(8)
    keys = torch.randperm(40 * 30, generator=g)[:300]
    graph = BipartiteGraph(keys // 30, keys % 30, 40, 30)
    x = torch.randn(graph.num_nodes, 8)
    with torch.inference_mode():
        graph.adjacency_operand(x, slice_bytes=256) @ x
    (_, values, edge), = graph._slices.values()
    assert not values.is_inference() and not edge.is_inference()
    scale = torch.rand(300, generator=g).requires_grad_()
    out = graph.adjacency_operand(x, scale, slice_bytes=256) @ x
    torch.testing.assert_close(out, graph.adjacency(scale.detach())[0] @ x)



def test_sliced_relational_and_rating_matrix_products_equal_the_csr_ones_in_value_and_gradient():
    from movielens_gnn.models.graph import SlicedMatrix
    from movielens_gnn.models.graphconv import sparse_matmul

    g = torch.Generator().manual_seed(7)
    keys = torch.randperm(40 * 30, generator=g)[:300]
    ratings = torch.randint(1, 6, (300,), generator=g).double()
    graph = BipartiteGraph(keys // 30, keys % 30, 40, 30, ratings=ratings, dtype=torch.float64)
    scale = torch.rand(300, generator=g, dtype=torch.float64)
    cases = (
        (graph.relational_operands, graph.relational_adjacency, 5 * graph.num_nodes),
        (graph.rating_matrix_operands, graph.rating_matrix, 40),
    )
    for operands, csr, rows in cases:
        for edge_scale in (None, scale):
            x = torch.randn(rows, 3, generator=g, dtype=torch.float64, requires_grad=True)
            sliced = operands(x, edge_scale, slice_bytes=4 * 3 * 8)  # 4 float64 columns of width 3 a slice
            assert all(isinstance(m, SlicedMatrix) for m in sliced)
            assert [m.slices.bounds[0] for m in sliced] == [(0, 4), (0, 4)]
            matrix, transpose = csr(edge_scale)
            torch.testing.assert_close(sliced[0] @ x.detach(), matrix @ x.detach())
            grad = torch.randn(matrix.shape[0], 3, generator=g, dtype=torch.float64)
            torch.testing.assert_close(sliced[1] @ grad, transpose @ grad)
            assert torch.autograd.gradcheck(lambda t: sparse_matmul(*sliced, t), (x,), fast_mode=True)


def test_a_sliced_layout_serves_operands_up_to_four_times_wider_slices():
    from movielens_gnn.models.graph import reuse_width

    assert reuse_width([], 16_384) == 16_384
    assert reuse_width([8_192], 16_384) == 8_192 and reuse_width([4_096], 16_384) == 4_096
    assert reuse_width([2_048], 16_384) == 16_384  # eight times narrower: a layout of its own
    assert reuse_width([32_768], 16_384) == 16_384  # wider slices would overflow the budget
    g = torch.Generator().manual_seed(10)
    keys = torch.randperm(40 * 30, generator=g)[:300]
    graph = BipartiteGraph(keys // 30, keys % 30, 40, 30)
    wide, narrow = torch.randn(graph.num_nodes, 8), torch.randn(graph.num_nodes, 4)
    for x in (wide, narrow):  # 8 columns a slice for the 8-wide operand; the 4-wide one would take 16
        torch.testing.assert_close(graph.adjacency_operand(x, slice_bytes=256) @ x, graph.adjacency()[0] @ x)
    assert list(graph._slices) == [("", 8)]
