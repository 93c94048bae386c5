"""The vector index's storage: float16 vectors, memory-mapped after a load, chunked brute force."""

import json
import logging

import numpy as np
import pytest

import app.index
from app.focus import focused_scores, parse_focus
from app.index import IndexParams, VectorIndex
from model.parts import part_sq_norms


def vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 640)).astype(np.float32)


@pytest.fixture
def saved(tmp_path):
    v = vectors(300)
    idx = VectorIndex(IndexParams(exact_below=100))
    idx.upsert(range(1, 301), [1] * 300, v)
    idx.maintain(force=True)
    idx.save(tmp_path / "index", {"model_sha": "x"})
    return idx, v, tmp_path / "index"


def test_a_loaded_index_reads_its_vectors_in_place_and_answers_the_same(saved):
    idx, v, folder = saved
    w = parse_focus({"bass": 1, "drums": 0.5})
    before = idx.search(v[3], w, 10, exclude=[4])
    loaded, doc = VectorIndex.load(folder, IndexParams(exact_below=100))
    assert doc["format"] == app.index.INDEX_FORMAT
    assert isinstance(loaded._vecs.base, np.memmap) and loaded._vecs.dtype == np.float16
    assert not loaded._vecs.flags.writeable
    after = loaded.search(v[3], w, 10, exclude=[4])
    assert after.ids.tolist() == before.ids.tolist()
    np.testing.assert_allclose(loaded.vector(5), v[4], rtol=1e-3, atol=1e-3)
    on_disk = np.load(next(folder.glob("gen-*")) / "vectors.npy")
    loaded.upsert([999], [1], v[:1] * 2)  # the first change copies; the saved file is untouched
    assert loaded._vecs.flags.owndata and not isinstance(loaded._vecs.base, np.memmap)
    np.testing.assert_array_equal(np.load(next(folder.glob("gen-*")) / "vectors.npy"), on_disk)
    assert loaded.search(v[0] * 2, parse_focus({"piano": 1}), 1).ids.tolist() == [999]


def test_an_index_of_float32_vectors_is_still_read(saved, tmp_path):
    _, v, folder = saved
    gen = next(folder.glob("gen-*"))
    np.save(gen / "vectors.npy", v)  # what format 1 kept: float32, no sq.npy
    (gen / "sq.npy").unlink()
    doc = json.loads((gen / "meta.json").read_text())
    (gen / "meta.json").write_text(json.dumps({**doc, "format": 1}))
    loaded, _ = VectorIndex.load(folder, IndexParams(exact_below=100))
    assert loaded._vecs.dtype == np.float16 and len(loaded) == 300
    np.testing.assert_allclose(loaded._sq[:300], part_sq_norms(v.astype(np.float16)), rtol=1e-5)


def test_a_damaged_norms_file_means_a_rebuild(saved):
    _, _, folder = saved
    np.save(next(folder.glob("gen-*")) / "sq.npy", np.zeros((3, 5), np.float32))
    assert VectorIndex.load(folder) is None


def test_brute_force_a_chunk_at_a_time_is_exact(monkeypatch):
    monkeypatch.setattr(app.index, "CHUNK", 7)
    v = vectors(50, seed=1)
    idx = VectorIndex()  # under exact_below: brute force
    idx.upsert(range(50), [1] * 50, v)
    idx.remove([7, 8])
    w = parse_focus([1, -0.5, 0.3, 0, 1])
    got = idx.search(v[0], w, 5, exclude=[0])
    stored = v.astype(np.float16).astype(np.float32)
    s = focused_scores(stored[0], w, stored, idx.scales())
    s[[0, 7, 8]] = -np.inf
    assert got.exact and got.ids.tolist() == np.argsort(-s, kind="stable")[:5].tolist()


def test_a_loaded_index_uses_the_scales_its_writer_measured(saved, monkeypatch):
    idx, v, folder = saved
    want = idx.scales().copy()

    def measure(*a, **kw):
        raise AssertionError("a reader measured the scales again")

    monkeypatch.setattr(app.index, "part_scales", measure)
    loaded, _ = VectorIndex.load(folder, IndexParams(exact_below=100))
    np.testing.assert_array_equal(loaded.scales(), want)
    loaded.search(v[0], parse_focus({"drums": 1}), 5)


def test_the_float32_copy_of_a_small_library_follows_every_change():
    v = vectors(60, seed=2)
    idx = VectorIndex()
    idx.upsert(range(60), [1] * 60, v)
    w = parse_focus([1, 1, 1, 1, 1])
    assert idx.search(v[5], w, 1, exclude=[5]).ids.tolist() != [100]
    idx.upsert([100], [1], v[5:6] + 1e-3)  # a near copy of track 5 arrives after the first search
    assert idx.search(v[5], w, 1, exclude=[5]).ids.tolist() == [100]
    idx.upsert([100], [2], v[7:8])  # replaced: its old row is dead, the new one is searched
    assert idx.search(v[7], w, 2, exclude=[7]).ids.tolist()[0] == 100
    idx.remove(list(range(30)))
    idx.maintain()  # compacts (half the rows are dead)
    assert idx.search(v[40], w, 1, exclude=[40]).ids.tolist() != [40]
    assert idx.search(v[7], w, 1).ids.tolist() == [100]


def test_a_small_index_saves_its_float32_copy_and_a_reader_maps_it(saved):
    idx, v, folder = saved
    wide = np.load(next(folder.glob("gen-*")) / "wide.npy")
    np.testing.assert_array_equal(wide, v.astype(np.float16).astype(np.float32))  # lossless
    w = parse_focus([1, 1, 1, 1, 1])
    before = idx.search(v[3], w, 10, exclude=[4])
    loaded, _ = VectorIndex.load(folder, IndexParams(exact_below=1000))  # exact: every row scored
    mapped = loaded._wide
    assert isinstance(mapped.base, np.memmap) and not mapped.flags.writeable
    after = loaded.search(v[3], w, 10, exclude=[4])
    assert loaded._wide is mapped  # scored from the saved copy, nothing widened
    assert after.ids.tolist() == before.ids.tolist()
    np.testing.assert_allclose(after.scores, before.scores, rtol=1e-6)
    loaded.upsert([999], [1], v[:1] * 2)  # a change drops the copy; the next search is still right
    assert loaded._wide is None
    assert loaded.search(v[0] * 2, w, 1).ids.tolist() == [999]


def test_a_float32_copy_that_does_not_match_is_not_used(saved, caplog):
    idx, v, folder = saved
    gen = next(folder.glob("gen-*"))
    bad = np.load(gen / "wide.npy")
    bad[0] += 1.0
    np.save(gen / "wide.npy", bad)
    w = parse_focus([1, 1, 1, 1, 1])
    with caplog.at_level(logging.WARNING, logger="app.index"):
        loaded, _ = VectorIndex.load(folder, IndexParams(exact_below=1000))
    assert loaded._wide is None and "differs" in caplog.text
    assert loaded.search(v[0], w, 3).ids.tolist() == idx.search(v[0], w, 3).ids.tolist()
    (gen / "wide.npy").write_bytes(b"\x93NUMPY garbage")  # damaged: the index itself still loads
    loaded, _ = VectorIndex.load(folder, IndexParams(exact_below=1000))
    assert loaded._wide is None and len(loaded) == 300


def test_a_large_index_saves_no_float32_copy(tmp_path, monkeypatch):
    monkeypatch.setattr(app.index, "WIDE_ROWS", 50)
    idx = VectorIndex()
    idx.upsert(range(60), [1] * 60, vectors(60, seed=3))
    idx.save(tmp_path / "index", {})
    assert not (next((tmp_path / "index").glob("gen-*")) / "wide.npy").exists()
    loaded, _ = VectorIndex.load(tmp_path / "index")
    assert loaded._wide is None


def test_room_reserved_ahead_is_exact_and_keeps_what_is_held():
    idx = VectorIndex(IndexParams(exact_below=100))
    v = np.random.default_rng(3).standard_normal((130, 640)).astype(np.float32)
    idx.upsert(range(1, 31), [1] * 30, v[:30])  # room for 64
    idx.reserve(100)
    assert len(idx._ids) == 130 and len(idx) == 30
    assert np.array_equal(idx.vector(7), v[6].astype(np.float16).astype(np.float32))
    for a in range(30, 130, 25):  # added in steps: no growth beyond what was reserved
        idx.upsert(range(a + 1, a + 26), [1] * 25, v[a:a + 25])
    assert len(idx._ids) == 130 and len(idx) == 130
    idx.reserve(0)
    assert len(idx._ids) == 130


def test_every_live_track_has_exactly_one_live_row(tmp_path):
    """Searches count live rows as live tracks (not a sum over every row): replacing, removing
    and adding back must keep the two in step, through a build, a fold and a reload."""
    rng = np.random.default_rng(4)
    idx = VectorIndex(IndexParams(exact_below=100, fold_every=16))

    def check(index):
        assert int(index._alive[:index._n].sum()) == len(index._pos) == len(index)

    idx.upsert(range(1, 201), [1] * 200, vectors(200, seed=1))
    idx.maintain(force=True)
    for step in range(6):
        ids = rng.choice(np.arange(1, 260), 40, replace=False)
        if step % 2:
            idx.remove(ids.tolist() + ids.tolist()[:3])  # some twice, some never there
        else:
            idx.upsert(ids.tolist(), [step + 2] * 40, vectors(40, seed=10 + step))  # replaced or new
        idx.maintain()
        check(idx)
        hits = idx.search(vectors(1, seed=99)[0], parse_focus({"drums": 1, "bass": 1}), 10)
        assert len(hits.ids) == 10 and set(hits.ids.tolist()) <= set(idx._pos)
    idx.save(tmp_path / "index", {"model_sha": "x"})
    check(VectorIndex.load(tmp_path / "index", IndexParams(exact_below=100))[0])


def test_the_row_map_holds_near_and_far_ids_and_forgets_popped_ones():
    from app.index import RowMap

    m = RowMap(np.array([3, 1, 2]), np.array([0, 1, 2]))
    assert len(m) == 3 and m.get(3) == 0 and m.get(1) == 1 and m.get(0) is None and m.get(-5) is None
    far = 10 ** 12  # an id far beyond the others: kept aside, the array stays small
    m.put(np.array([far, 4]), np.array([3, 4]))
    assert m.get(far) == 3 and m.get(4) == 4 and len(m) == 5 and len(m._rows) < 100
    assert m.pop(far) == 3 and m.pop(far) is None and m.pop(2) == 2 and m.pop(2) is None and m.pop(99) is None
    assert len(m) == 3 and sorted(m) == [1, 3, 4] and 3 in m and 2 not in m
    m.put(np.arange(5, 5000), np.arange(5, 5000))  # grows
    assert m.get(4999) == 4999 and len(m) == 4998


def test_an_upsert_that_names_a_track_twice_is_refused():
    idx = VectorIndex()
    with pytest.raises(ValueError, match="twice"):
        idx.upsert([1, 2, 1], [1, 1, 1], vectors(3))
    assert len(idx) == 0
