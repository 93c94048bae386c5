"""The part-code scan's compiled loops give the plain sums of the tables, and its refinement the
match on the projected parts."""

import numpy as np
import pytest

import app.codes
from app import kernels as ck
from app.codes import FAR, PartCodes
from app.focus import part_scales
from app.index import Projection
from model.parts import N_PARTS, part_slice
from tests.app.test_index_projection import low_rank

FOCUSES = ([1, 1, 1, 1, 1], [0, 1, 0.5, 0, 0], [1, -0.5, -0.5, -0.5, -0.5], [0.3, 0, -1, 1, 0], [0, 0, 1, 0, 0],
           [1, 1, 0, 0, 1])


@pytest.fixture(scope="module")
def fitted():
    v = low_rank(5000, seed=7)
    projections = [Projection.fit(v[:, part_slice(c)], 0.95) for c in range(N_PARTS)]
    scales = part_scales(v)
    codes = PartCodes.fit(v, projections, scales)
    codes.append(v)
    return v, codes, scales


def reference_estimate(codes: PartCodes, zq, w, scales) -> np.ndarray:
    """Every row's estimate, one part's table at a time."""
    ratio = codes.scales / scales.astype(np.float32)
    est = np.zeros(codes.n, np.float64)
    for c in np.flatnonzero(w):
        d = ((codes.books[c] - zq[c]) ** 2).sum(axis=1)
        est += (w[c] * np.exp(-np.minimum(d * ratio[c], FAR)))[codes.codes[c, :codes.n]]
    return est


@pytest.mark.parametrize("focus", FOCUSES)
def test_the_compiled_estimate_and_selection_are_the_sums_of_the_tables(fitted, focus):
    v, codes, scales = fitted
    w = np.asarray(focus, np.float32)
    zq = codes.query_parts(v[11])
    gathers = codes._gathers(zq, w, scales)
    truth = reference_estimate(codes, zq, w, scales)
    est = np.empty(codes.n, np.float32)
    ck.estimate(*gathers, 0, codes.n, 1, est)
    np.testing.assert_allclose(est, truth, rtol=1e-5, atol=1e-6)
    every7 = np.empty(len(range(3, codes.n, 7)), np.float32)
    ck.estimate(*gathers, 3, codes.n, 7, every7)
    assert np.array_equal(every7, est[3::7])
    threshold = np.float32(np.quantile(est, 0.9))
    rows, kept = np.empty(codes.n, np.int64), np.empty(codes.n, np.float32)
    m = ck.select(*gathers, threshold, 100, codes.n, rows, kept)
    want = 100 + np.flatnonzero(est[100:] >= threshold)
    assert np.array_equal(rows[:m], want) and np.array_equal(kept[:m], est[want])
    assert ck.select(*gathers, threshold, 100, codes.n, rows[:m - 1], kept[:m - 1]) == -1  # no room: says so


@pytest.mark.parametrize("focus", FOCUSES)
def test_the_refinement_is_the_match_on_the_projected_parts(fitted, focus):
    v, codes, scales = fitted
    w = np.asarray(focus, np.float32)
    zq = codes.query_parts(v[42])
    rows = np.sort(np.random.default_rng(1).choice(codes.n, 900, replace=False))
    ratio = codes.scales / scales.astype(np.float32)
    zf = codes.z[rows].astype(np.float64) * codes.step_by_dim
    truth = np.zeros(len(rows))
    for c in np.flatnonzero(w):
        part = zf[:, codes.offsets[c]:codes.offsets[c + 1]]
        d = (part ** 2).sum(axis=1) + zq[c] @ zq[c] - 2.0 * part @ zq[c]  # |z|^2 as quantised, as kept
        truth += w[c] * np.exp(-np.clip(d * ratio[c], 0.0, FAR))
    kept = codes.refine(rows, zq, w, scales, 90)
    best = set(rows[np.argsort(-truth)[:90]].tolist())
    assert len(kept) == 90 and (np.diff(kept) > 0).all()
    assert len(best & set(kept.tolist())) >= 88  # float32 sums may swap the last ones


def test_two_threads_and_a_misjudged_threshold_keep_the_same_rows(fitted, monkeypatch):
    v, codes, scales = fitted
    w = np.asarray([1, 1, 1, 0, 1], np.float32)
    zq = codes.query_parts(v[5])
    one = codes.scan(zq, w, scales, 400)
    monkeypatch.setattr(app.codes, "THREADS_ABOVE", 1000)  # two halves from 1000 rows
    assert np.array_equal(codes.scan(zq, w, scales, 400), one)
    truth = reference_estimate(codes, zq, w, scales)
    exact = set(np.argsort(-truth)[:400].tolist())
    assert 400 <= len(one) <= 800 and len(exact & set(one.tolist())) >= 390  # about the best 400
    # a probe that sets the threshold far too high (too few rows) or too low (more than the
    # room): every row is estimated, and the best 400 kept
    for wrong in (np.max, np.min):
        monkeypatch.setattr(np, "partition", lambda a, at, wrong=wrong: np.full_like(a, wrong(a)))
        got = codes.scan(zq, w, scales, 400)
        assert len(got) == 400 and (np.diff(got) > 0).all()
        assert len(exact & set(got.tolist())) >= 398


def test_float16_rows_widened_by_table_give_numpys_part_distances(tmp_path, monkeypatch):
    import sys

    from app.index import IndexParams, VectorIndex

    v = low_rank(3000, seed=3)
    v[7, :128] = 0.0  # a silent part
    idx = VectorIndex(IndexParams(exact_below=10**6))
    idx.upsert(range(1, 3001), [1] * 3000, v)
    q = v[11] + 0.05
    rows = np.sort(np.random.default_rng(2).choice(3000, 500, replace=False))
    assert np.array_equal(ck.WIDEN.view(np.uint32)[:1], [0]) and ck.WIDEN[0x3C00] == 1.0  # 0x3C00: float16 1.0
    for w in ([1, 0, 0, 0, 0], [0, 1, 1, 0, -1], [1, 1, 1, 1, 1]):
        w = np.asarray(w, np.float32)
        compiled = idx._compiled_sq_distances(q, rows, w)
        assert "app.kernels" in sys.modules
        with monkeypatch.context() as m:
            m.delitem(sys.modules, "app.kernels")  # not loaded: numpy widens the rows
            plain = idx._weighed_sq_distances(q, rows, w)
            plain_all = idx._weighed_sq_distances(q, slice(0, 3000), w)
        np.testing.assert_allclose(compiled, plain, rtol=1e-5, atol=1e-4)
        assert (compiled[:, w == 0] == 0).all()
        np.testing.assert_allclose(idx._weighed_sq_distances(q, slice(0, 3000), w), plain_all, rtol=1e-5, atol=1e-4)
    # a saved index maps its vectors read-only: the same numbers
    idx.save(tmp_path / "index", {})
    loaded, _ = VectorIndex.load(tmp_path / "index", IndexParams(exact_below=10**6))
    assert not loaded._vecs.flags.writeable
    w = np.ones(5, np.float32)
    np.testing.assert_array_equal(loaded._compiled_sq_distances(q, rows, w), idx._compiled_sq_distances(q, rows, w))
