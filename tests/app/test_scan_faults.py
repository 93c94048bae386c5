"""Bad files, bad models, bad databases and concurrent writers meet the scan (issue 15)."""

import gc
import json
import logging
import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import time
import tracemalloc
import weakref
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import app.library
import app.store
import model.audioio
from app import info_cmd, scan_cmd
from app.library import Library, LibraryError
from app.store import SCHEMA_VERSION, Store, StoreError
from model.audio import AudioConfig
from model.audioio import read_clips, segment_starts
from model.embedder import Embedder
from model.network import CSN, ModelSpec, NetConfig
from model.weights import WeightsError, load_weights, read_card, save_weights, sidecar
from tests.app.library_helpers import music, tiny_weights, write_bad_files
from tests.app.test_library import ROOT, run_scan, songs

LATIN1 = os.fsdecode(b"latin1_\xe9t\xe9.wav")  # not valid UTF-8: Python carries \udce9


@pytest.fixture
def weights(tmp_path):
    return tiny_weights(tmp_path / "w.safetensors")


def lib_args(tmp_path, weights):
    return ["--library", str(tmp_path / "lib"), "--weights", str(weights), "--device", "cpu"]


def snapshot(root: Path) -> list[tuple]:
    """What a library stores, row by row, with each track's windows (and any window files)."""
    con = sqlite3.connect(root / "library.sqlite")
    rows = con.execute("SELECT id, path, status, error, rev, vector, segfile FROM tracks ORDER BY id").fetchall()
    rows += con.execute("SELECT id, starts, vecs FROM segments ORDER BY id").fetchall()
    con.close()
    segs = sorted(str(p.relative_to(root)) for p in (root / "segments").glob("*/*.npz"))
    return rows + [tuple(segs)]


# ---------------------------------------------------------------- 1. no file ends a scan

def test_non_utf8_names_are_stored_and_shown_losslessly(tmp_path, weights, capsys):
    folder = tmp_path / "music"
    songs(folder, 2)
    good = folder / LATIN1
    sf.write(os.fsencode(good), music(4.0), 22050)  # libsndfile takes a name as bytes
    broken = folder / os.fsdecode(b"broken_\xff.wav")
    broken.write_bytes(b"RIFF not really a wave file" * 20)
    with Library(tmp_path / "lib", weights=weights, device="cpu") as lib:
        last, _ = run_scan(lib, [folder])
        assert (last.added, last.failed) == (3, 1)
        t = lib.find(good)
        assert t.status == "ok" and t.path == good and t.path.exists()
        assert t.shown_path.endswith("latin1_\\xe9t\\xe9.wav") and t.title == "latin1_\\xe9t\\xe9"
        f = lib.find(broken)
        assert f.status == "failed" and "broken_\\xff.wav" in f.error
        with pytest.raises(LibraryError, match=r"broken_\\xff\.wav\) has no embedding"):
            lib.search(f.id, {"bass": 1})
        assert len(lib.search(t.id, {"bass": 1}, k=5)) == 2
        assert run_scan(lib)[0].total == 0  # stored exactly: found again as the same file
    capsys.readouterr()
    assert info_cmd.main(["--failures", *lib_args(tmp_path, weights)]) == 0
    out = capsys.readouterr().out
    out.encode("utf-8")  # printable as it is: no lone surrogates
    assert "broken_\\xff.wav" in out
    assert info_cmd.main(["--json", "--failures", *lib_args(tmp_path, weights)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["failures"][0]["path"].endswith("broken_\\xff.wav")


def test_a_database_write_that_fails_fails_that_file_only(tmp_path, weights, monkeypatch):
    files = songs(tmp_path / "music", 4)
    real = app.library.Store.finish_ok

    def finish_ok(self, track_id, **kw):
        if self.row(track_id).path == str(files[1]):
            raise sqlite3.OperationalError("disk I/O error")
        return real(self, track_id, **kw)

    monkeypatch.setattr(app.library.Store, "finish_ok", finish_ok)
    with Library(tmp_path / "lib", weights=weights, device="cpu", batch_size=2) as lib:
        last, _ = run_scan(lib, [tmp_path / "music"])
        assert (last.done, last.added, last.failed) == (4, 3, 1)
        t = lib.find(files[1])
        assert t.status == "failed" and "could not be stored" in t.error and "disk I/O" in t.error
        monkeypatch.setattr(app.library.Store, "finish_ok", real)
        last, _ = run_scan(lib)  # a write error may be temporary: the next scan tries again
        assert (last.total, last.updated, last.failed) == (1, 1, 0)
        assert lib.find(files[1]).status == "ok"


# ---------------------------------------------------------------- 2. memory bounded by the batch

def test_decoded_audio_is_let_go_batch_by_batch(tmp_path, weights, monkeypatch):
    songs(tmp_path / "music", 30, seconds=4.0)
    alive: list[weakref.ref] = []
    real = model.audioio.read_clips

    def tracked(*a, **kw):
        c = real(*a, **kw)
        alive.append(weakref.ref(c))
        return c

    monkeypatch.setattr(model.audioio, "read_clips", tracked)  # the scan imports it when it runs
    lib = Library(tmp_path / "lib", weights=weights, device="cpu", workers=1, batch_size=4)
    most = 0
    for _ in lib.scan([tmp_path / "music"]):
        gc.collect()
        most = max(most, sum(r() is not None for r in alive))
    lib.close()
    assert len(alive) == 30
    # 4 clips a batch (2 per 4-s track) and a look-ahead of 2 * workers + 2 files
    assert most <= 2 + 4 + 1, most


# ---------------------------------------------------------------- 3. lying headers

def lying_flac(path: Path, rate: int | None = None) -> Path:
    """A real 8-s FLAC whose STREAMINFO claims 2^36 - 1 samples (at ``rate`` when given)."""
    sf.write(path, music(8.0, 8000, channels=0), 8000)
    b = bytearray(path.read_bytes())
    assert b[:4] == b"fLaC"
    v = int.from_bytes(b[18:26], "big")
    v |= (1 << 36) - 1
    if rate is not None:
        v = (v & ((1 << 44) - 1)) | (rate << 44)
    b[18:26] = v.to_bytes(8, "big")
    path.write_bytes(bytes(b))
    return path


def test_a_header_that_lies_costs_no_more_than_an_honest_file(tmp_path, weights):
    starts = segment_starts(int(47 * 365.25 * 86400 * 16000), 16000, 3.0, None, 10)
    assert len(starts) == 10 and starts[0] == 0
    honest = tmp_path / "music" / "honest.flac"
    honest.parent.mkdir()
    sf.write(honest, music(8.0, 8000, channels=0), 8000)
    liar = lying_flac(tmp_path / "music" / "years.flac", rate=1000)  # claims 2.2 years
    assert sf.info(str(liar)).duration > 2 * 365 * 86400 and abs(liar.stat().st_size - honest.stat().st_size) < 64

    def cost(path: Path) -> tuple[float, float]:
        tracemalloc.start()
        t0 = time.perf_counter()
        try:
            read_clips(path, 16000, 3.0, 10)
        except model.audioio.DecodeError:
            pass
        took = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return took, peak

    cost(honest)  # warm the resampler
    (t_honest, m_honest), (t_liar, m_liar) = cost(honest), cost(liar)
    assert m_liar <= max(4 * m_honest, 4e6), (m_liar, m_honest)
    assert t_liar <= t_honest + 1.0
    with Library(tmp_path / "lib", weights=weights, device="cpu") as lib:
        last, _ = run_scan(lib, [tmp_path / "music"])
        assert (last.added, last.failed) == (1, 1)
        assert lib.find(liar).status == "failed"


# ---------------------------------------------------------------- 4. a broken model changes nothing

def nan_weights(path: Path) -> Path:
    tiny_weights(path)
    w = load_weights(path)
    with torch.no_grad():
        next(w.model.parameters()).fill_(float("nan"))
    save_weights(path, w.model, w.spec, card=w.card)
    return path


def bad_card_weights(path: Path) -> Path:
    tiny_weights(path, seed=3)
    doc = read_card(path)
    doc["spec"]["audio"]["sample_rate"] = -5
    sidecar(path).write_text(json.dumps(doc))
    return path


def individual_net_weights(path: Path) -> Path:
    """A trainer's individual net (128-d out): a valid weights file, but not an app model."""
    net = NetConfig(widths=(4, 8, 8, 16, 16), n_mels=64, out_dim=128)
    save_weights(path, CSN(net), ModelSpec(net=net, audio=AudioConfig(n_mels=64)))
    return path


@pytest.mark.parametrize("make", [nan_weights, bad_card_weights, individual_net_weights],
                         ids=["nan-model", "card-rate-minus-5", "individual-net"])
def test_a_broken_model_stops_the_scan_and_changes_nothing(tmp_path, weights, make, capsys):
    files = songs(tmp_path / "music", 5)
    write_bad_files(tmp_path / "music" / "bad")
    assert scan_cmd.main([str(tmp_path / "music"), "--no-progress", *lib_args(tmp_path, weights)]) == 0
    before = snapshot(tmp_path / "lib")
    sf.write(tmp_path / "music" / "new.wav", music(4.0, seed=9), 22050)  # new work for the bad model
    broken = make(tmp_path / "broken.safetensors")
    capsys.readouterr()
    assert scan_cmd.main(["--no-progress", *lib_args(tmp_path, broken)]) == 1
    err = capsys.readouterr().err
    assert "broken.json" in err or "broken.safetensors" in err
    says = {nan_weights: "non-finite", bad_card_weights: "sample_rate -5", individual_net_weights: "128-d"}
    assert says[make] in err, err
    assert "Traceback" not in err
    assert snapshot(tmp_path / "lib") == before
    with Library(tmp_path / "lib", weights=broken, device="cpu") as lib:
        with pytest.raises(LibraryError):
            run_scan(lib)
    assert snapshot(tmp_path / "lib") == before
    # the good model again: only the new file is work, nothing was lost
    with Library(tmp_path / "lib", weights=weights, device="cpu") as lib:
        last, _ = run_scan(lib)
        assert (last.total, last.added) == (1, 1)
        assert len(lib.track_vectors()[0]) == len(files) + 1 + 3  # 3 unusual-but-valid bad files


def test_card_validation_names_what_is_wrong(tmp_path):
    w = bad_card_weights(tmp_path / "w.safetensors")
    with pytest.raises(WeightsError, match=r"w\.json: the card does not validate: audio\.sample_rate -5"):
        load_weights(w)
    w2 = tiny_weights(tmp_path / "w2.safetensors", card={"norm_bias": [0.0, float("nan"), 0, 0, 0]})
    with pytest.raises(WeightsError, match="norm_bias"):
        load_weights(w2)
    load_weights(tiny_weights(tmp_path / "w3.safetensors", card={"norm_bias": [0.5] * 5}))


def test_nan_for_one_file_fails_that_file(tmp_path, weights, monkeypatch):
    """A model that answers NaN for one file's windows only: that file fails, the rest is stored."""
    songs(tmp_path / "music", 3)
    odd = tmp_path / "music" / "dc.wav"
    sf.write(odd, np.full(6 * 22050, 0.25, np.float32), 22050)  # one whole 5-s window
    real = Embedder.embed_clips

    def embed_clips(self, clips):
        out = real(self, clips)
        c = np.asarray(clips)
        out[(np.abs(c - 0.25) < 1e-3).all(axis=1)] = np.nan
        return out

    monkeypatch.setattr(Embedder, "embed_clips", embed_clips)
    with Library(tmp_path / "lib", weights=weights, device="cpu") as lib:
        last, _ = run_scan(lib, [tmp_path / "music"])
        assert (last.added, last.failed) == (3, 1)
        assert "NaN or infinity" in lib.find(odd).error


# ---------------------------------------------------------------- 5. failures are retried

def test_failures_are_retried_when_they_may_succeed(tmp_path, weights, monkeypatch, capsys):
    files = songs(tmp_path / "music", 3)
    (tmp_path / "music" / "text.mp3").write_bytes(b"not an mp3\n" * 50)
    locked = files[2]
    real_open = open

    def no_permission(p, *a, **kw):
        if Path(p) == locked:
            raise PermissionError(13, "Permission denied", str(p))
        return real_open(p, *a, **kw)

    monkeypatch.setattr(app.library, "open", no_permission, raising=False)
    with Library(tmp_path / "lib", weights=weights, device="cpu") as lib:
        last, _ = run_scan(lib, [tmp_path / "music"])
        assert (last.added, last.failed) == (2, 2)
        assert "Permission denied" in lib.find(locked).error
        last, _ = run_scan(lib)  # still locked: tried again, the decode failure is not
        assert (last.total, last.failed) == (1, 1)
        monkeypatch.undo()  # the user fixed the permissions ("chmod +r")
        last, _ = run_scan(lib)
        assert (last.total, last.updated, last.failed) == (1, 1, 0)
        assert run_scan(lib)[0].total == 0
        assert list(lib.scan(retry_failed=True))[-1].total == 1  # text.mp3, on request
    capsys.readouterr()
    assert scan_cmd.main(["--no-progress", "--retry-failed", *lib_args(tmp_path, weights)]) == 0
    assert "0 added, 0 updated, 0 removed, 1 failed" in capsys.readouterr().out
    other = tiny_weights(tmp_path / "other.safetensors", seed=5)
    with Library(tmp_path / "lib", weights=other, device="cpu") as lib:
        assert run_scan(lib)[0].total == 4  # a new model: everything, the failure too
    (tmp_path / "music" / "text.mp3").write_bytes(b"still not an mp3\n" * 50)
    with Library(tmp_path / "lib", weights=other, device="cpu") as lib:
        assert run_scan(lib)[0].total == 1  # the file changed


# ---------------------------------------------------------------- 9. one writer, stored warnings, owner only

def test_one_writer_at_a_time_and_queries_meanwhile(tmp_path, weights):
    songs(tmp_path / "music", 4)
    with Library(tmp_path / "lib", weights=weights, device="cpu") as first:
        run_scan(first, [tmp_path / "music"])
    songs(tmp_path / "music", 4, start=4)
    a = Library(tmp_path / "lib", weights=weights, device="cpu", batch_size=1, workers=1)
    b = Library(tmp_path / "lib", weights=weights, device="cpu")
    scanning = a.scan()
    assert next(scanning).total == 4  # a holds the library's lock now
    next(scanning)
    with pytest.raises(LibraryError, match=rf"another scan is writing to this library \(pid {os.getpid()}, started"):
        run_scan(b)
    with pytest.raises(LibraryError, match="another scan"):
        b.remove_folder(tmp_path / "music")
    assert len(b.search(1, {"drums": 1}, k=3)) == 3  # queries go on during the scan
    list(scanning)
    assert run_scan(b)[0].total == 0  # free again
    a.close()
    b.close()


HOLD_LOCK = """
import sys, time
from app.store import WriterLock
from pathlib import Path
lock = WriterLock(Path(sys.argv[1]))
lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_second_scan_names_the_first_and_stale_locks_are_recovered(tmp_path, weights, capsys):
    songs(tmp_path / "music", 2)
    Store(tmp_path / "lib").close()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path / "lib")], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert scan_cmd.main([str(tmp_path / "music"), "--no-progress", *lib_args(tmp_path, weights)]) == 1
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and "another scan" in err
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert f"pid {holder.pid}" in (tmp_path / "lib" / "scan.lock").read_text()  # left behind
    assert scan_cmd.main([str(tmp_path / "music"), "--no-progress", *lib_args(tmp_path, weights)]) == 0
    assert "2 added" in capsys.readouterr().out


def test_walk_warnings_are_stored_and_listed(tmp_path, weights, capsys):
    songs(tmp_path / "music", 1)
    (tmp_path / "music" / "loop").symlink_to(tmp_path / "music")
    (tmp_path / "music" / "gone.flac").symlink_to(tmp_path / "nowhere.flac")
    assert scan_cmd.main([str(tmp_path / "music"), "--no-progress", *lib_args(tmp_path, weights)]) == 0
    capsys.readouterr()
    assert info_cmd.main(["--failures", *lib_args(tmp_path, weights)]) == 0
    out = capsys.readouterr().out
    assert "symlink loop" in out and "broken symbolic link" in out and "gone.flac" in out
    (tmp_path / "music" / "gone.flac").unlink()
    assert scan_cmd.main(["--no-progress", *lib_args(tmp_path, weights)]) == 0
    with Library(tmp_path / "lib", weights=weights, device="cpu") as lib:
        msgs = [str(p) for p in lib.walk_problems()]
        assert len(msgs) == 1 and "symlink loop" in msgs[0]  # the last walk's warnings only


def test_library_is_readable_by_its_owner_only(tmp_path, weights):
    songs(tmp_path / "music", 1)
    with Library(tmp_path / "deep" / "lib", weights=weights, device="cpu") as lib:
        run_scan(lib, [tmp_path / "music"])
    root = tmp_path / "deep" / "lib"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    for name in ("library.sqlite", "scan.lock"):
        assert stat.S_IMODE((root / name).stat().st_mode) == 0o600, name


# ---------------------------------------------------------------- schema versions

OLD_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE folders (path TEXT PRIMARY KEY, added REAL NOT NULL);
CREATE TABLE tracks (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, folder TEXT NOT NULL,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, status TEXT NOT NULL, error TEXT,
    title TEXT NOT NULL DEFAULT '', updated REAL NOT NULL);
INSERT INTO tracks VALUES (1, '/m/a.wav', '/m', 10, 5, 'failed', 'bad', 'a', 0);
"""


def test_old_schema_is_migrated_and_newer_refused(tmp_path, weights, capsys):
    root = tmp_path / "lib"
    root.mkdir()
    con = sqlite3.connect(root / "library.sqlite")
    con.executescript(OLD_SCHEMA)  # unversioned, no presence, artist, rev, retry, ... columns
    con.close()
    with Library(root, weights=weights, device="cpu") as lib:
        (t,) = lib.tracks()
        assert (t.title, t.status, t.presence.shape) == ("a", "failed", (5,))
        assert lib.store.get_meta("schema_version") == str(SCHEMA_VERSION)
    assert info_cmd.main(["--library", str(root), "--weights", str(weights)]) == 0
    capsys.readouterr()
    for version, says in (("99", "newer Partwise"), ("x1", "unknown library schema")):
        con = sqlite3.connect(root / "library.sqlite")
        con.execute("UPDATE meta SET value=? WHERE key='schema_version'", (version,))
        con.commit()
        con.close()
        with pytest.raises(StoreError, match=says):
            Store(root)
        assert info_cmd.main(["--library", str(root), "--weights", str(weights)]) == 1
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err
    broken = tmp_path / "lib2"
    broken.mkdir()
    con = sqlite3.connect(broken / "library.sqlite")
    con.execute("CREATE TABLE tracks (id INTEGER PRIMARY KEY, title TEXT)")
    con.close()
    with pytest.raises(StoreError, match="lacks path, folder, size, mtime_ns, status"):
        Store(broken)


def as_schema_2(root: Path) -> None:
    """Turn a library into the layout of schema 2: each track's windows in a file of its own."""
    store = Store(root)
    con = sqlite3.connect(root / "library.sqlite")
    for tid, starts, vecs in con.execute("SELECT id, starts, vecs FROM segments").fetchall():
        rel = store.segfile_for(tid)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        segments, starts = store._decode_segments(tid, starts, vecs)  # float32, as files held them
        np.savez(root / rel, segments=segments, starts=starts)
        con.execute("UPDATE tracks SET segfile=? WHERE id=?", (rel, tid))
    con.execute("DELETE FROM segments")
    con.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
    con.commit()
    con.close()
    store.close()


def test_schema_2_window_files_are_read_then_moved_into_the_database(tmp_path, weights, caplog):
    caplog.set_level(logging.WARNING, logger="app.store")
    folder = tmp_path / "music"
    songs(folder, 4, seconds=8.0)
    root = tmp_path / "lib"
    with Library(root, weights=weights, device="cpu") as lib:
        run_scan(lib, [folder])
        ids = sorted(t.id for t in lib.tracks())
        want = {i: lib.timeline(i).presence.tolist() for i in ids}
        hits = [(r.track.id, r.match_start) for r in lib.search(ids[0], {"bass": 1}, k=3)]
    as_schema_2(root)
    files = sorted((root / "segments").glob("*/*.npz"))
    assert len(files) == 4
    damaged = root / Store(root).segfile_for(ids[3])
    damaged.write_bytes(b"not a zip")
    with Library(root, weights=weights, device="cpu") as lib:  # read from the files
        assert lib.store.get_meta("schema_version") == str(SCHEMA_VERSION)
        assert {i: lib.timeline(i).presence.tolist() for i in ids[:3]} == {i: want[i] for i in ids[:3]}
        with pytest.raises(LibraryError, match=f"{damaged.name}.*damaged"):
            lib.timeline(ids[3])
        got = [(r.track.id, r.match_start) for r in lib.search(ids[0], {"bass": 1}, k=3)]
        assert [g for g in got if g[0] != ids[3]] == [h for h in hits if h[0] != ids[3]]
        run_scan(lib, [folder])  # the writer moves them into the table; the damaged one stays
        assert sorted((root / "segments").glob("*/*.npz")) == [damaged]
        assert {i: lib.timeline(i).presence.tolist() for i in ids[:3]} == {i: want[i] for i in ids[:3]}
        assert lib.store.row(ids[3]).segfile and lib.store.row(ids[0]).segfile is None
    assert "damaged" in caplog.text


def test_windows_are_stored_as_int8_and_older_rows_still_read(tmp_path, weights):
    folder = tmp_path / "music"
    songs(folder, 3, seconds=11.0)  # two 5-s windows
    root = tmp_path / "lib"
    with Library(root, weights=weights, device="cpu") as lib:
        run_scan(lib, [folder])
        a, b, c = sorted(t.id for t in lib.tracks())
        segs, starts = lib.store.load_segments(lib.store.row(a))
        assert segs.dtype == np.float32 and len(segs) == len(starts) > 1
    con = sqlite3.connect(root / "library.sqlite")
    (blob,) = con.execute("SELECT vecs FROM segments WHERE id=?", (a,)).fetchone()
    assert len(blob) == len(segs) * (640 + 20)  # int8 values and five float32 scales a window
    # rows of an older Partwise: float16 and float32
    con.execute("UPDATE segments SET vecs=? WHERE id=?", (segs.astype(np.float16).tobytes(), b))
    con.execute("UPDATE segments SET vecs=? WHERE id=?", (segs.tobytes(), c))
    con.commit()
    con.close()
    store = Store(root)
    try:
        got = store.load_segments_many(list(store.rows_for([b, c]).values()))
        np.testing.assert_array_equal(got[b][0], segs.astype(np.float16).astype(np.float32))
        np.testing.assert_array_equal(got[c][0], segs)
        # windows with a value that is not finite are kept exactly, as float32
        odd = segs.copy()
        odd[0, 0] = np.inf
        params = app.store.segment_params(a, odd, starts)
        assert len(params[2]) == 4 * odd.size
        np.testing.assert_array_equal(store._decode_segments(a, params[1], params[2])[0], odd)
    finally:
        store.close()


def test_damaged_windows_in_the_database_are_named(tmp_path, weights):
    folder = tmp_path / "music"
    songs(folder, 2)
    root = tmp_path / "lib"
    with Library(root, weights=weights, device="cpu") as lib:
        run_scan(lib, [folder])
        a, b = sorted(t.id for t in lib.tracks())
    con = sqlite3.connect(root / "library.sqlite")
    con.execute("UPDATE segments SET vecs=x'00010203' WHERE id=?", (b,))
    con.commit()
    con.close()
    with Library(root, weights=weights, device="cpu") as lib:
        with pytest.raises(LibraryError, match=f"windows of track {b} are damaged"):
            lib.timeline(b)
        (hit,) = lib.search(a, {"drums": 1}, k=1)  # the hit is still listed, at its start
        assert (hit.track.id, hit.match_start) == (b, 0.0)
        lib.store.delete_tracks([b])
        assert lib.store.load_segments_many([lib.store.row(a)]).keys() == {a}
    con = sqlite3.connect(root / "library.sqlite")
    assert con.execute("SELECT id FROM segments").fetchall() == [(a,)]
    con.close()


# ---------------------------------------------------------------- kill -9 at random moments

SCAN_CLI = "import sys; from app.cli import main; sys.exit(main(sys.argv[1:]))"


def wait_for_scan(proc: subprocess.Popen, lock: Path, timeout: float = 120.0) -> bool:
    """Wait until ``proc`` holds the library's writer lock (its scan has begun)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if lock.exists() and f"pid {proc.pid}," in lock.read_text():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_kill_9_a_scan_at_random_moments(tmp_path, weights):
    """``partwise scan`` killed with SIGKILL at random moments, with new and changed files each
    round: the database stays intact, and a rescan completes with no duplicates."""
    files = songs(tmp_path / "music", 30, seconds=5.0)
    args = ["scan", str(tmp_path / "music"), "--no-progress", *lib_args(tmp_path, weights)]
    rng = random.Random(15)
    db, lock = tmp_path / "lib" / "library.sqlite", tmp_path / "lib" / "scan.lock"
    mid_scan = 0
    for round_ in range(8):
        files += songs(tmp_path / "music", 4, seconds=5.0, start=100 + 4 * round_)
        for f in rng.sample(files, 8):  # changed: re-embedded over a stored track
            sf.write(f, music(5.0, 22050, seed=rng.randrange(1000)), 22050)
        proc = subprocess.Popen([sys.executable, "-c", SCAN_CLI, *args], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started = wait_for_scan(proc, lock)
        time.sleep(rng.uniform(0.5, 6.0))  # model loading, decoding, embedding, writing
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        con = sqlite3.connect(db)
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = con.execute("SELECT COUNT(*) FROM tracks").fetchone()[0]
        con.close()
        mid_scan += started and proc.returncode == -signal.SIGKILL and rows < len(files)
    assert mid_scan >= 1, "no kill landed in the middle of a scan"
    with Library(tmp_path / "lib", weights=weights, device="cpu") as lib:
        run_scan(lib)
        tracks = lib.tracks()
        paths = [t.path for t in tracks]
        assert len(paths) == len(set(paths)) == len(files)
        assert {t.status for t in tracks} == {"ok"}
        assert sorted(lib.track_vectors()[0].tolist()) == sorted(t.id for t in tracks)
        # every track's windows in the segments table, nothing else; no window files left
        con = sqlite3.connect(db)
        assert {r[0] for r in con.execute("SELECT id FROM segments")} == {t.id for t in tracks}
        con.close()
        assert not list((tmp_path / "lib").glob("segments/*/*"))
        assert run_scan(lib)[0].total == 0
