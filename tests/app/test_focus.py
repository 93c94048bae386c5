import numpy as np
import pytest

from app.focus import (
    because,
    best_segment_pair,
    focused_scores,
    match,
    parse_focus,
    part_scales,
    similarity,
)
from app.index import IndexParams, VectorIndex
from model.parts import EMBED_DIM, N_PARTS, PARTS, SUBSPACE_DIM, part_sq_distances


def hand_built(offsets: dict[str, list[float]]) -> np.ndarray:
    """Tracks whose part c sits at distance offsets[c][i] from a zero query: (n, 640)."""
    n = len(next(iter(offsets.values())))
    x = np.zeros((n, EMBED_DIM), np.float32)
    for c, part in enumerate(PARTS):
        x[:, c * SUBSPACE_DIM] = offsets.get(part, [0.0] * n)
    return x


# A: same drums, different rest; B: a bit different everywhere; C: different drums, same rest;
# D: different everywhere.
OFF = {"drums": [0, 1, 3, 3], **{p: [3, 1, 0, 3] for p in PARTS[1:]}}


def ranked(index: VectorIndex, focus, k: int = 4, exclude=()) -> list[int]:
    return index.search(np.zeros(EMBED_DIM, np.float32), parse_focus(focus), k, exclude).ids.tolist()


@pytest.fixture
def small():
    idx = VectorIndex()
    idx.upsert([10, 11, 12, 13], [1] * 4, hand_built(OFF))
    return idx


def test_parse_focus_forms():
    np.testing.assert_array_equal(parse_focus({"bass": 0.5}), [0, 0.5, 0, 0, 0])
    np.testing.assert_array_equal(parse_focus("drums=1, others=-0.5"), [1, 0, 0, 0, -0.5])
    np.testing.assert_array_equal(parse_focus([1, 0, 0, 0, 1]), [1, 0, 0, 0, 1])
    for bad in ({"drums": 1.5}, {"flute": 1}, [0] * 5, [1, 2], "drums=x", {"bass": float("nan")}):
        with pytest.raises(ValueError):
            parse_focus(bad)


def test_solo_drums_ranks_by_drums_only(small):
    assert ranked(small, {"drums": 1})[:2] == [10, 11]
    res = small.search(np.zeros(EMBED_DIM, np.float32), parse_focus({"drums": 1}), 4)
    np.testing.assert_allclose(res.parts[:, 0], [0, 1, 9, 9])
    np.testing.assert_allclose(res.parts[0], [0, 9, 9, 9, 9])
    # solo: the match is the drums' similarity, 1 for identical drums
    np.testing.assert_allclose(res.scores, np.exp(-res.parts[:, 0] / small.scales()[0]), rtol=1e-5)
    np.testing.assert_allclose(res.similarity[:, 0], res.scores, rtol=1e-5)
    assert res.scores[0] == pytest.approx(1.0)


def test_same_drums_different_everything_else(small):
    # A: same drums and far elsewhere, D: far everywhere, B: a bit off everywhere, C: other drums
    focus = {"drums": 1, "bass": -0.3, "piano": -0.3, "guitar": -0.3, "others": -0.3}
    assert ranked(small, focus) == [10, 13, 11, 12]
    res = small.search(np.zeros(EMBED_DIM, np.float32), parse_focus(focus), 4)
    w = parse_focus(focus)
    np.testing.assert_allclose(res.scores, match(similarity(res.parts, small.scales()), w), rtol=1e-5)
    assert ((res.scores >= 0) & (res.scores <= 1)).all()


def test_different_drums_same_rest(small):
    focus = {"drums": -1, "bass": 1, "piano": 1, "guitar": 1, "others": 1}
    # C: -9, B: -1 + 4 = 3, D: -9 + 36 = 27, A: 0 + 36 = 36
    assert ranked(small, focus) == [12, 11, 13, 10]


def test_equal_weights_count_the_parts_that_are_alike(small):
    # C, identical in four parts, beats B, a bit off in all five (their summed squared
    # distances, 9 and 5, ranked them the other way round before similarity was bounded)
    assert ranked(small, [1] * 5) == [12, 11, 10, 13]


def test_a_negative_weight_never_outweighs_the_positive_ones():
    """others=1, drums=-0.5: the same others must win over a track whose drums are
    arbitrarily far away but whose others differ; being different in drums earns at most 0.5."""
    w = parse_focus({"others": 1, "drums": -0.5})
    scales = np.ones(N_PARTS, np.float32)
    same_others = match(similarity(np.array([1.0, 0, 0, 0, 0]), scales), w)
    for far in (1e1, 1e3, 1e6, 1e12):
        other_others = match(similarity(np.array([far, 0, 0, 0, 4.0]), scales), w)
        assert other_others < same_others
        assert 0.0 <= other_others <= 1.0
    # the bound: a part weighted down moves the match by at most its weight's share
    best = match(similarity(np.array([np.inf, 0, 0, 0, 0]), scales), w)
    assert best == pytest.approx(1.0)
    assert best - same_others <= 0.5 / 1.5 + 1e-6


def test_exclusion_and_k(small):
    assert ranked(small, {"drums": 1}, k=2, exclude=[10]) == [11, 12]
    assert ranked(small, {"drums": 1}, k=10) == [10, 11, 12, 13]
    small.remove([10])
    assert ranked(small, {"drums": 1}, k=10) == [11, 12, 13]
    small.upsert([10], [2], hand_built(OFF)[3:4])  # id 10 now holds D's vector
    assert ranked(small, {"drums": 1}, k=10) == [11, 10, 12, 13]


def test_scores_match_the_definition():
    rng = np.random.default_rng(0)
    q = rng.standard_normal(EMBED_DIM).astype(np.float32)
    x = rng.standard_normal((50, EMBED_DIM)).astype(np.float32)
    w = np.array([1, -0.5, 0.25, 0, 0.75], np.float32)
    d = np.array([[np.sum((q[c * 128:(c + 1) * 128] - xi[c * 128:(c + 1) * 128]) ** 2)
                   for c in range(N_PARTS)] for xi in x])
    np.testing.assert_allclose(part_sq_distances(q, x), d, rtol=1e-4, atol=1e-3)
    scales = part_scales(x)
    sim = np.exp(-d / scales)
    ref = (sim @ w + 0.5) / (2.0 + 0.5)  # P = 1 + 0.25 + 0.75, N = 0.5
    np.testing.assert_allclose(focused_scores(q, w, x, scales), ref, rtol=1e-4, atol=1e-5)


def test_best_segment_pair_follows_the_focus():
    qs = np.zeros((3, EMBED_DIM), np.float32)
    xs = np.zeros((4, EMBED_DIM), np.float32)
    qs[:, 0] = [1.0, 5.0, 9.0]  # the drums of each query segment
    xs[:, 0] = [3.0, 7.0, 5.1, 12.0]  # track segment 2 is closest to query segment 1
    xs[3, 200] = 5.0  # and segment 3 alone has different bass
    ones = np.ones(N_PARTS, np.float32)
    assert best_segment_pair(qs, xs, parse_focus({"drums": 1}), ones) == (1, 2)
    # "different bass": segment 3 wins for any query segment
    assert best_segment_pair(qs, xs, parse_focus({"bass": -1}), ones)[1] == 3


def test_because_names_a_weighted_part_both_tracks_have():
    s = similarity(np.array([0.0, 4.0, 100.0, 1.0, 0.0]), np.full(5, 2.0))
    present = np.ones(5)
    # the focus picks among the parts it weighs up
    assert because(s, np.array([0, 0, 0, 1, 0.0]), present, present) == 3
    # with no positive weight, any part; a part absent from a track cannot be "the reason"
    assert because(s, np.array([0, -1, 0, 0, 0.0]), present, np.array([0.05, 1, 1, 1, 1])) == 4


def test_because_never_names_a_part_absent_from_both_tracks():
    # both tracks lack drums and piano: those subspaces are near zero in both, so "alike"
    s = similarity(np.array([0.0, 3.0, 0.0, 5.0, 4.0]), np.full(5, 2.0))
    q = np.array([0.05, 1.0, 0.1, 0.9, 0.6])
    r = np.array([0.02, 0.8, 0.0, 1.0, 0.7])
    for w in ([1, 0, 0, 0, 0.0], [1, 0, 1, 0, 0.0], [1, 1, 1, 1, 1.0], [0, -1, 0, 0, 0.0]):
        got = because(s, np.array(w), q, r)
        assert PARTS[got] not in ("drums", "piano"), (w, PARTS[got])
    # a weighted part both tracks have still wins over a better-matching unweighted one
    assert PARTS[because(s, np.array([1, 0, 0, 1, 0.0]), q, r)] == "guitar"
    # present in one track only: may be named (it is what differs or matches)
    assert because(s, np.array([1, 0, 0, 0, 0.0]), np.array([0.9, 1, 0, 0, 0]), r) == 0
    # nothing present anywhere: the most present part, not the first
    quiet = np.array([0.01, 0.02, 0.2, 0.05, 0.0])
    assert because(s, np.array([1, 0, 0, 0, 0.0]), quiet, quiet) == 2


def clustered(n: int, seed: int = 0) -> np.ndarray:
    """Vectors with structure per part (each part drawn from its own set of centres)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, EMBED_DIM), np.float32)
    for c in range(N_PARTS):
        centres = rng.standard_normal((40, SUBSPACE_DIM)).astype(np.float32)
        out[:, c * 128:(c + 1) * 128] = centres[rng.integers(0, 40, n)] + 0.4 * rng.standard_normal(
            (n, SUBSPACE_DIM)).astype(np.float32)
    return out


def test_hnsw_equals_brute_force_on_a_small_set():
    x = clustered(1500)
    ids = np.arange(100, 1600)
    # the candidate path even for focuses that default parameters answer by brute force
    ann = VectorIndex(IndexParams(exact_below=200, negative_dominance=float("inf"), hnsw_cost=1.0))
    exact = VectorIndex(IndexParams(exact_below=10 ** 9))
    default = VectorIndex(IndexParams(exact_below=200))
    for idx in (ann, exact, default):
        idx.upsert(ids, np.ones(len(ids)), x)
        idx.maintain(force=True)
    assert ann.has_hnsw and not exact.has_hnsw
    rng = np.random.default_rng(1)
    focuses = [{"drums": 1}, {"bass": 1, "guitar": 0.5}, [1] * 5, {"piano": 1, "others": 0.2},
               [1, -0.5, -0.5, -0.5, -0.5], {"bass": 1, "drums": -1}, [1, 0.5, -0.5, 0, -1]]
    for qi in rng.integers(0, len(ids), 10):
        for f in focuses:
            a = ann.search(x[qi], parse_focus(f), 10, exclude=[ids[qi]])
            e = exact.search(x[qi], parse_focus(f), 10, exclude=[ids[qi]])
            assert not a.exact and e.exact
            assert a.ids.tolist() == e.ids.tolist()
            np.testing.assert_allclose(a.scores, e.scores, rtol=1e-5)
    # when the "different" weights outweigh the "same" ones, the answer is exact brute force
    for f in ([0.2, -1, 0, -0.5, 0], [0.45, -0.77, 0.03, -0.68, -0.45]):
        assert default.search(x[0], parse_focus(f), 10, exclude=[ids[0]]).exact
    assert not default.search(x[1], parse_focus([1, 0.5, -0.5, 0, -0.5]), 10, exclude=[ids[1]]).exact


class _Counting:
    """An HNSW graph that counts its searches."""

    def __init__(self, h, calls):
        self.h, self.calls = h, calls

    def knn_query(self, *a, **k):
        self.calls.append(1)
        return self.h.knn_query(*a, **k)

    def __getattr__(self, name):
        return getattr(self.h, name)


def test_a_fader_move_reuses_what_the_last_search_of_the_same_query_worked_out():
    x = clustered(1500)
    ids = np.arange(100, 1600)
    ann = VectorIndex(IndexParams(exact_below=200, negative_dominance=float("inf"), hnsw_cost=1.0))
    default = VectorIndex(IndexParams(exact_below=200))
    exact = VectorIndex(IndexParams(exact_below=10 ** 9))
    for idx in (ann, default, exact):
        idx.upsert(ids, np.ones(len(ids)), x)
        idx.maintain(force=True)
    calls: list[int] = []
    ann._hnsw = [_Counting(h, calls) for h in ann._hnsw]
    moves = [[1, 0.5, 0, 0, 0], [1, 0.8, 0, 0, 0], [0.6, 0.8, 0, 0, 0], [0.6, 0.8, 0, 0.3, 0],
             [0.6, 0.8, 0, 0.3, -0.4]]  # one fader at a time
    for qi in np.random.default_rng(2).integers(0, len(ids), 5):
        calls.clear()
        for f in moves:
            a = ann.search(x[qi], parse_focus(f), 10, exclude=[ids[qi]])
            e = exact.search(x[qi], parse_focus(f), 10, exclude=[ids[qi]])
            assert a.ids.tolist() == e.ids.tolist()
            np.testing.assert_allclose(a.scores, e.scores, rtol=1e-5)
        # five searches, 11 lists without the memo: each part asked once (again only to grow)
        assert len(calls) <= 5, len(calls)
    # a search that scored every row: the next focus of the same query is re-scored, exactly
    q, excl = x[7], [ids[7]]
    assert default.search(q, parse_focus([0.2, -1, 0, -0.5, 0]), 10, exclude=excl).exact
    again = default.search(q, parse_focus([1, -1, 0, 0, 0]), 10, exclude=excl)
    want = exact.search(q, parse_focus([1, -1, 0, 0, 0]), 10, exclude=excl)
    assert again.exact and again.ids.tolist() == want.ids.tolist()
    assert not default.search(q, parse_focus([1, 0, 1, 0, 0]), 10, exclude=excl).exact  # piano: not known
    # any change to the index drops what was worked out
    default.remove([int(want.ids[0])])
    exact.remove([int(want.ids[0])])
    again = default.search(q, parse_focus([1, -1, 0, 0, 0]), 10, exclude=excl)
    assert again.ids.tolist() == exact.search(q, parse_focus([1, -1, 0, 0, 0]), 10, exclude=excl).ids.tolist()
    assert int(want.ids[0]) not in again.ids.tolist()


def test_index_updates_tail_deletes_and_persistence(tmp_path):
    x = clustered(600, seed=2)
    idx = VectorIndex(IndexParams(exact_below=300, fold_every=50))
    idx.upsert(range(400), [1] * 400, x[:400])
    idx.maintain()
    assert idx.has_hnsw
    idx.upsert(range(400, 600), [1] * 200, x[400:])  # tail, not yet in HNSW
    q = x[550]
    w = parse_focus({"bass": 1})
    assert idx.search(q, w, 1).ids.tolist() == [550]
    idx.remove([550])
    assert 550 not in idx.search(q, w, 5).ids.tolist()
    idx.upsert([7], [2], x[550:551])  # id 7 now holds 550's vector
    assert idx.search(q, w, 1).ids.tolist() == [7]
    idx.maintain(force=True)
    assert idx.search(q, w, 1).ids.tolist() == [7]
    idx.save(tmp_path / "index", {"model_sha": "abc"})
    loaded, meta = VectorIndex.load(tmp_path / "index", IndexParams(exact_below=300))
    assert meta["model_sha"] == "abc" and loaded.has_hnsw
    gen = tmp_path / "index" / (tmp_path / "index" / "CURRENT").read_text()
    assert sorted(f.name for f in gen.glob("hnsw-*.bin")) == [f"hnsw-{c}.bin" for c in range(5)]
    assert all(np.array_equal(a, b) for a, b in zip(loaded.revs(), idx.revs(), strict=True)) and len(loaded) == 599
    assert loaded.search(q, w, 3).ids.tolist() == idx.search(q, w, 3).ids.tolist()
    ids, vecs = loaded.vectors()
    assert ids.tolist() == sorted(ids.tolist()) and vecs.shape == (599, EMBED_DIM)
    # removing most rows compacts and falls back to brute force
    loaded.remove(range(8, 600))
    loaded.maintain()
    assert not loaded.has_hnsw and len(loaded) == 8
    assert loaded.search(q, w, 1).ids.tolist() == [7]


def test_damaged_index_folder_is_ignored(tmp_path):
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "CURRENT").write_text("gen-missing")
    assert VectorIndex.load(tmp_path / "index") is None


def test_candidates_grow_until_the_top_k_is_certain():
    """Tight clusters per part: a short candidate list from one part misses most of the true
    top 10 of a two-part focus; growing it until the lower bound holds finds them all."""
    rng = np.random.default_rng(4)
    n = 3000
    x = np.empty((n, EMBED_DIM), np.float32)
    for c in range(N_PARTS):
        centres = rng.standard_normal((8, SUBSPACE_DIM)).astype(np.float32)
        x[:, c * 128:(c + 1) * 128] = centres[rng.integers(0, 8, n)] + 0.3 * rng.standard_normal(
            (n, SUBSPACE_DIM)).astype(np.float32)
    ids = np.arange(n)
    # hnsw_cost: at this size a long beam costs more than a scan; make it look cheap so that
    # the growing candidate lists are what is tested
    ann = VectorIndex(IndexParams(exact_below=500, candidates=20, hnsw_cost=0.5))
    exact = VectorIndex(IndexParams(exact_below=10 ** 9))
    costly = VectorIndex(IndexParams(exact_below=500, candidates=20))
    for idx in (ann, exact, costly):
        idx.upsert(ids, np.ones(n), x)
        idx.maintain(force=True)
    for f in ({"bass": 1, "piano": 0.5}, {"drums": 1, "others": -0.3}, {"guitar": 1, "others": 0.7, "bass": 0.4}):
        w = parse_focus(f)
        for qi in rng.integers(0, n, 5):
            a = ann.search(x[qi], w, 10, exclude=[qi])
            e = exact.search(x[qi], w, 10, exclude=[qi])
            assert a.ids.tolist() == e.ids.tolist(), f
            assert not a.exact  # answered from HNSW candidates, not by brute force
            # with the default cost model, lists this long lose to a scan of 3000 rows
            c = costly.search(x[qi], w, 10, exclude=[qi])
            assert c.ids.tolist() == e.ids.tolist(), f


class _Lost:
    """An HNSW index that ends its search in the wrong place: the rows farthest from the query."""

    def __init__(self, h, rows: np.ndarray):
        self.h, self.rows = h, rows  # the graph's rows (its part, projected)

    def set_ef(self, ef: int) -> None:
        self.h.set_ef(ef)

    def knn_query(self, q, k: int, num_threads: int = 1):
        d = ((self.rows - q) ** 2).sum(1)
        far = np.argsort(-d)[:k]
        return far[None, :].astype(np.uint64), d[far][None, :].astype(np.float32)


def test_a_search_that_lost_its_way_is_noticed_and_answered_exactly():
    """A library track's own row is at distance 0 in every part: a candidate list without it
    came from a lost HNSW search, and the answer comes from a wider beam or brute force."""
    x = clustered(1500, seed=5)
    ids = np.arange(100, 1600)
    ann = VectorIndex(IndexParams(exact_below=200))
    exact = VectorIndex(IndexParams(exact_below=10 ** 9))
    for idx in (ann, exact):
        idx.upsert(ids, np.ones(len(ids)), x)
        idx.maintain(force=True)
    ann._hnsw[0] = _Lost(ann._hnsw[0], ann._proj[0](x[:, :SUBSPACE_DIM]))
    w = parse_focus({"drums": 1})
    for qi in (3, 700, 1400):
        a = ann.search(x[qi], w, 10, exclude=[ids[qi]])
        e = exact.search(x[qi], w, 10, exclude=[ids[qi]])
        assert a.ids.tolist() == e.ids.tolist()
        assert a.exact  # still lost with a wider beam: brute force answered
