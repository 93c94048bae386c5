"""The store's windows: stored as int8 within a known bound, and its cache of decoded windows:
what a fader move re-reads comes from memory, and a rewrite of a track's windows is never
answered from it."""

import sqlite3
from pathlib import Path

import numpy as np
import pytest

import app.store as store_mod
from app.store import Store, decode_windows, encode_windows
from model.parts import EMBED_DIM, N_PARTS, SUBSPACE_DIM


def _write(store: Store, path: Path, seed: int, n: int = 6) -> int:
    rng = np.random.default_rng(seed)
    tid = store.begin_track(path, path.parent, 100, 1)
    segs = rng.normal(size=(n, EMBED_DIM)).astype(np.float32)
    store.finish_ok(tid, title=path.stem, artist="", album="", duration=30.0, model_sha="m",
                    policy="p", vector=segs.mean(0), presence=np.ones(N_PARTS, np.float32),
                    segments=segs, starts=np.arange(n, dtype=np.float32) * 2.5)
    return tid


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "lib")
    yield s
    s.close()


def test_second_read_comes_from_the_cache_and_is_read_only(store, tmp_path, monkeypatch):
    ids = [_write(store, tmp_path / f"t{i}.flac", i) for i in range(4)]
    rows = list(store.rows_for(ids).values())
    first = store.load_segments_many(rows)
    reads = []
    real = store._con

    def counting():
        reads.append(1)
        return real()

    monkeypatch.setattr(store, "_con", counting)
    again = store.load_segments_many(rows)
    assert not reads  # nothing read from SQLite
    for tid in ids:
        np.testing.assert_array_equal(again[tid][0], first[tid][0])
        assert not again[tid][0].flags.writeable and not again[tid][1].flags.writeable


def test_a_rewritten_track_is_read_again(store, tmp_path):
    tid = _write(store, tmp_path / "a.flac", 1)
    before, _ = store.load_segments(store.row(tid))
    _write(store, tmp_path / "a.flac", 2, n=4)  # a rescan: new windows, rev + 1
    after, starts = store.load_segments(store.row(tid))
    assert after.shape == (4, EMBED_DIM) and len(starts) == 4
    assert not np.allclose(after[:4], before[:4], atol=1e-2)


def test_the_cache_stays_within_its_bytes(store, tmp_path, monkeypatch):
    one = 6 * EMBED_DIM * 4 + 6 * 4  # a track of 6 windows, decoded
    monkeypatch.setattr(store_mod, "WINDOWS_CACHE_BYTES", 6 * one)
    ids = [_write(store, tmp_path / f"t{i}.flac", i) for i in range(8)]
    for tid in ids:
        store.load_segments(store.row(tid))
    assert store._windows_bytes <= store_mod.WINDOWS_CACHE_BYTES
    assert len(store._windows) == 6
    kept = {k[0] for k in store._windows}
    assert ids[-1] in kept and ids[0] not in kept  # the least recently used went first


def test_windows_come_back_within_half_a_step_of_each_parts_scale():
    rng = np.random.default_rng(3)
    # parts of very different sizes (one silent), and two windows almost the same
    segs = rng.normal(size=(7, EMBED_DIM)).astype(np.float32) * np.repeat([1.0, 1e-3, 30.0, 0.2, 0.0], SUBSPACE_DIM)
    segs[1, :-SUBSPACE_DIM] = segs[0, :-SUBSPACE_DIM] + 1e-4
    blob = encode_windows(segs)
    assert len(blob) == 7 * (EMBED_DIM + 4 * N_PARTS)
    got = decode_windows(7, blob)
    assert got.dtype == np.float32 and got.shape == segs.shape
    parts = np.abs(segs).reshape(7, N_PARTS, SUBSPACE_DIM)
    bound = parts.max(axis=2, keepdims=True) / 254
    err = np.abs(got - segs).reshape(7, N_PARTS, SUBSPACE_DIM)
    assert np.all(err <= bound * (1 + 1e-5) + 1e-12)
    assert np.all(got[:, 4 * SUBSPACE_DIM:] == 0)  # a silent part stays silent
    assert decode_windows(7, blob[:-1]) is None and decode_windows(0, b"") is None


def test_a_new_library_has_16k_pages_and_an_old_one_keeps_its_own(tmp_path):
    s = Store(tmp_path / "new")
    assert s._con().execute("PRAGMA page_size").fetchone()[0] == store_mod.PAGE_SIZE
    s.close()
    old = tmp_path / "old"
    old.mkdir()
    con = sqlite3.connect(old / store_mod.DB_NAME)
    con.execute("PRAGMA page_size=4096")
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    con.commit()
    con.close()
    s = Store(old)
    try:
        assert s._con().execute("PRAGMA page_size").fetchone()[0] == 4096
        tid = _write(s, tmp_path / "a.flac", 1)
        assert s.load_segments(s.row(tid))[0].shape == (6, EMBED_DIM)
    finally:
        s.close()
