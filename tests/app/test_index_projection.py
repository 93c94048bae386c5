"""The graphs hold each part projected on its principal axes: smaller graphs, the same answers."""

import numpy as np
import pytest

from app.focus import focused_scores, parse_focus
from app.index import IndexParams, Projection, VectorIndex
from model.parts import N_PARTS, part_slice


def low_rank(n: int, rank: int = 6, seed: int = 0) -> np.ndarray:
    """(n, 640): each part spans ``rank`` directions (with a little noise), as real embeddings
    concentrate in a few."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, 640), np.float32)
    for c in range(N_PARTS):
        basis = np.linalg.qr(rng.standard_normal((128, rank)))[0]
        centres = rng.standard_normal((40, rank)) * 2.0
        z = centres[rng.integers(0, 40, n)] + rng.standard_normal((n, rank))
        out[:, part_slice(c)] = z @ basis.T + 0.01 * rng.standard_normal((n, 128))
    return out


def test_a_projection_never_lengthens_a_distance():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2000, 128)) * np.linspace(3, 0.01, 128)
    pr = Projection.fit(x, 0.9)
    assert 8 <= pr.dim < 128 and pr.dim % 8 == 0
    a, b = x[:500], x[500:1000]
    true = ((a - b) ** 2).sum(1)
    graph = ((pr(a) - pr(b)) ** 2).sum(1)
    assert (graph <= true * (1 + 1e-5) + 1e-6).all()
    assert graph.mean() > 0.85 * true.mean()
    assert Projection.fit(x, 1.0).dim == 128


def test_low_rank_parts_get_small_graphs_and_the_answers_of_brute_force(tmp_path):
    v = low_rank(4000)
    idx = VectorIndex(IndexParams(exact_below=1000, mix_above=1000))
    idx.upsert(range(1, 4001), [1] * 4000, v)
    idx.maintain(force=True)
    assert idx.has_hnsw and all(pr.dim <= 16 for pr in idx._proj)
    scales, hits, total = idx.scales(), 0, 0
    for f in ({"drums": 1}, {"bass": 1, "piano": 0.5}, [1, 1, 1, 1, 1], {"guitar": 1, "drums": -0.5}):
        w = parse_focus(f)
        for r in range(0, 4000, 200):
            s = focused_scores(v[r], w, v, scales)
            s[r] = -np.inf
            truth = set((np.argpartition(-s, 10)[:10] + 1).tolist())
            got = idx.search(v[r], w, 10, exclude=[r + 1])
            hits += len(truth & set(got.ids.tolist()))
            total += 10
    assert hits / total >= 0.97
    idx.save(tmp_path / "index", {"model_sha": "x"})
    loaded, _ = VectorIndex.load(tmp_path / "index", IndexParams(exact_below=1000, mix_above=1000))
    assert [pr.dim for pr in loaded._proj] == [pr.dim for pr in idx._proj]
    w = parse_focus({"bass": 1})
    assert loaded.search(v[7], w, 10).ids.tolist() == idx.search(v[7], w, 10).ids.tolist()
    loaded.upsert(range(5001, 5101), [1] * 100, low_rank(100, seed=3))  # new rows fold into the projected graphs
    loaded.maintain(force=True)
    assert loaded.search(low_rank(100, seed=3)[5], parse_focus({"piano": 1}), 1).ids.tolist() == [5006]


def test_an_index_saved_before_projections_is_read_with_full_graphs(tmp_path):
    v = low_rank(1500, rank=128)
    idx = VectorIndex(IndexParams(exact_below=1000, keep_variance=1.0, mix_above=1000))
    idx.upsert(range(1, 1501), [1] * 1500, v)
    idx.maintain(force=True)
    idx.save(tmp_path / "index", {"model_sha": "x"})
    gen = next((tmp_path / "index").glob("gen-*"))
    for f in gen.glob("proj-*.npy"):
        f.unlink()
    loaded, _ = VectorIndex.load(tmp_path / "index", IndexParams(exact_below=1000, mix_above=1000))
    assert loaded.has_hnsw and all(pr.dim == 128 for pr in loaded._proj)
    w = parse_focus({"drums": 1})
    assert loaded.search(v[9], w, 5).ids.tolist() == idx.search(v[9], w, 5).ids.tolist()


@pytest.mark.parametrize("damage", [np.zeros((1, 128)), np.zeros((4, 100)), np.zeros((41, 128))])
def test_a_damaged_projection_file_means_a_rebuild(tmp_path, damage):
    v = low_rank(1500)
    idx = VectorIndex(IndexParams(exact_below=1000, mix_above=1000))
    idx.upsert(range(1, 1501), [1] * 1500, v)
    idx.maintain(force=True)
    idx.save(tmp_path / "index", {"model_sha": "x"})
    np.save(next((tmp_path / "index").glob("gen-*")) / "proj-2.npy", damage)
    assert VectorIndex.load(tmp_path / "index", IndexParams(exact_below=1000, mix_above=1000)) is None


def test_the_several_parts_graph_ranks_rows_by_the_weighted_distance():
    from app.focus import part_scales
    from app.index import MixSpace

    v = low_rank(600, seed=5)
    projections = [Projection.fit(v[:, part_slice(c)], 0.999) for c in range(N_PARTS)]
    space = MixSpace(projections, part_scales(v), 1.0)
    space.radius = space.max_norm(v)
    rows = space.rows(v)
    assert np.allclose((rows ** 2).sum(1), space.radius ** 2, rtol=1e-3)  # every row on one sphere
    rng = np.random.default_rng(0)
    for _ in range(5):
        w = rng.uniform(-1, 1, N_PARTS).astype(np.float32)
        q = v[rng.integers(600)]
        u = np.where(w > 0, w, 0.3 * w)
        z = [projections[c](v[:, part_slice(c)]) * space.inv[c] for c in range(N_PARTS)]
        zq = [projections[c](q[None, part_slice(c)]) * space.inv[c] for c in range(N_PARTS)]
        weighted = sum(u[c] * ((z[c] - zq[c]) ** 2).sum(1) for c in range(N_PARTS))
        l2 = ((rows - space.query(q, w, 0.3)) ** 2).sum(1)
        assert np.argsort(l2)[:20].tolist() == np.argsort(weighted)[:20].tolist()


def test_an_index_without_the_several_parts_graph_gets_it_and_keeps_it(tmp_path):
    v = low_rank(3000, seed=2)
    idx = VectorIndex(IndexParams(exact_below=1000, hnsw_cost=1.0, mix_graph=False))
    idx.upsert(range(1, 3001), [1] * 3000, v)
    idx.maintain(force=True)
    assert idx._mix is None
    idx.save(tmp_path / "index", {"model_sha": "x"})
    params = IndexParams(exact_below=1000, hnsw_cost=1.0, mix_above=1000)  # HNSW, not brute force, at 3000 rows
    loaded, _ = VectorIndex.load(tmp_path / "index", params)
    assert loaded._mix is None
    loaded.maintain()
    assert loaded._mix is not None
    w = parse_focus([1, 1, 1, 1, 1])
    truth = focused_scores(v[11], w, v, loaded.scales())
    truth[11] = -np.inf
    got = loaded.search(v[11], w, 10, exclude=[12])
    assert not got.exact and len(set(got.ids.tolist()) & set((np.argsort(-truth)[:10] + 1).tolist())) >= 9
    loaded.save(tmp_path / "index", {"model_sha": "x"})
    again, _ = VectorIndex.load(tmp_path / "index", params)
    assert again._mix is not None and again._mix[0].dim == loaded._mix[0].dim
    assert again.search(v[11], w, 10, exclude=[12]).ids.tolist() == got.ids.tolist()
    np.save(next((tmp_path / "index").glob("gen-*")) / "mix-proj-3.npy", np.zeros((3, 64)))
    assert VectorIndex.load(tmp_path / "index", IndexParams(exact_below=1000, mix_above=1000)) is None
