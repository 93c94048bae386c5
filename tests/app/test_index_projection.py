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
    idx = VectorIndex(IndexParams(exact_below=1000, codes_above=1000))
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
    loaded, _ = VectorIndex.load(tmp_path / "index", IndexParams(exact_below=1000, codes_above=1000))
    assert [pr.dim for pr in loaded._proj] == [pr.dim for pr in idx._proj]
    w = parse_focus({"bass": 1})
    assert loaded.search(v[7], w, 10).ids.tolist() == idx.search(v[7], w, 10).ids.tolist()
    loaded.upsert(range(5001, 5101), [1] * 100, low_rank(100, seed=3))  # new rows fold into the projected graphs
    loaded.maintain(force=True)
    assert loaded.search(low_rank(100, seed=3)[5], parse_focus({"piano": 1}), 1).ids.tolist() == [5006]


def test_an_index_saved_before_projections_is_read_with_full_graphs(tmp_path):
    v = low_rank(1500, rank=128)
    idx = VectorIndex(IndexParams(exact_below=1000, keep_variance=1.0, codes_above=1000))
    idx.upsert(range(1, 1501), [1] * 1500, v)
    idx.maintain(force=True)
    idx.save(tmp_path / "index", {"model_sha": "x"})
    gen = next((tmp_path / "index").glob("gen-*"))
    for f in gen.glob("proj-*.npy"):
        f.unlink()
    loaded, _ = VectorIndex.load(tmp_path / "index", IndexParams(exact_below=1000, codes_above=1000))
    assert loaded.has_hnsw and all(pr.dim == 128 for pr in loaded._proj)
    w = parse_focus({"drums": 1})
    assert loaded.search(v[9], w, 5).ids.tolist() == idx.search(v[9], w, 5).ids.tolist()


@pytest.mark.parametrize("damage", [np.zeros((1, 128)), np.zeros((4, 100)), np.zeros((41, 128))])
def test_a_damaged_projection_file_means_a_rebuild(tmp_path, damage):
    v = low_rank(1500)
    idx = VectorIndex(IndexParams(exact_below=1000, codes_above=1000))
    idx.upsert(range(1, 1501), [1] * 1500, v)
    idx.maintain(force=True)
    idx.save(tmp_path / "index", {"model_sha": "x"})
    np.save(next((tmp_path / "index").glob("gen-*")) / "proj-2.npy", damage)
    assert VectorIndex.load(tmp_path / "index", IndexParams(exact_below=1000, codes_above=1000)) is None


def test_part_codes_estimate_the_match_and_keep_the_best_rows():
    from app.codes import CENTROIDS, PartCodes
    from app.focus import part_scales

    v = low_rank(6000, seed=5)
    projections = [Projection.fit(v[:, part_slice(c)], 0.95) for c in range(N_PARTS)]
    scales = part_scales(v)
    codes = PartCodes.fit(v, projections, scales)
    codes.reserve(6000)
    z_before = codes.z
    codes.append(v[:4000])
    codes.append(v[4000:])  # appended in two steps: the same as one
    assert codes.z is z_before and codes.z.shape[0] == 6000  # reserved once, never grown
    whole = PartCodes.fit(v, projections, scales)
    whole.append(v)
    assert np.array_equal(whole.codes[:, :6000], codes.codes) and np.array_equal(whole.z[:6000], codes.z)
    assert codes.n == 6000 and codes.codes.shape[0] == N_PARTS and codes.z.dtype == np.int8
    assert all(b.shape == (CENTROIDS, pr.dim) for b, pr in zip(codes.books, projections, strict=True))
    rng = np.random.default_rng(0)
    for w in ([1, 1, 1, 1, 1], [0, 1, 0.5, 0, 0], [1, -0.5, -0.5, -0.5, -0.5], [0.3, 0, -1, 1, 0]):
        w = np.asarray(w, np.float32)
        r = int(rng.integers(6000))
        truth = focused_scores(v[r], w, v, scales)
        best = set(np.argsort(-truth)[:10].tolist())
        zq = codes.query_parts(v[r])
        scanned = codes.scan(zq, w, scales, 600)
        assert 300 <= len(scanned) <= 1200 and (np.diff(scanned) > 0).all()
        assert len(best & set(scanned.tolist())) >= 9  # a tenth of the rows by estimate hold the best
        refined = codes.refine(scanned, zq, w, scales, 100)
        assert len(refined) == 100 and set(refined.tolist()) <= set(scanned.tolist())
        assert len(best & set(refined.tolist())) >= len(best & set(scanned.tolist())) - 1
        assert set(codes.scan(zq, w, scales, 6000).tolist()) == set(range(6000))  # asked for all: all


def test_an_index_without_part_codes_gets_them_and_keeps_them(tmp_path):
    v = low_rank(3000, seed=2)
    idx = VectorIndex(IndexParams(exact_below=1000, hnsw_cost=1.0, codes=False))
    idx.upsert(range(1, 3001), [1] * 3000, v)
    idx.maintain(force=True)
    assert idx._codes is None
    idx.save(tmp_path / "index", {"model_sha": "x"})
    params = IndexParams(exact_below=1000, hnsw_cost=1.0, codes_above=1000, codes_scan=300)  # not brute force at 3000 rows
    loaded, _ = VectorIndex.load(tmp_path / "index", params)
    assert loaded._codes is None
    loaded.maintain()
    assert loaded._codes is not None and loaded._codes.n == 3000
    w = parse_focus([1, 1, 1, 1, 1])
    truth = focused_scores(v[11], w, v, loaded.scales())
    truth[11] = -np.inf
    got = loaded.search(v[11], w, 10, exclude=[12])
    assert not got.exact and len(set(got.ids.tolist()) & set((np.argsort(-truth)[:10] + 1).tolist())) >= 9
    loaded.save(tmp_path / "index", {"model_sha": "x"})
    again, _ = VectorIndex.load(tmp_path / "index", params)
    assert again._codes is not None and again._codes.dim == loaded._codes.dim
    assert again.search(v[11], w, 10, exclude=[12]).ids.tolist() == got.ids.tolist()
    extra = low_rank(50, seed=8)  # rows added later are encoded as they fold in
    again.upsert(range(4001, 4051), [1] * 50, extra)
    again.maintain(force=True)
    assert again._codes.n == 3050
    assert again.search(extra[3], w, 1).ids.tolist() == [4004]
    np.save(next((tmp_path / "index").glob("gen-*")) / "code-proj-3.npy", np.zeros((3, 64)))
    assert VectorIndex.load(tmp_path / "index", params) is None
