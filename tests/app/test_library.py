import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from app.focus import match, similarity
from app.library import DEFAULT_WINDOW, AnalysisPolicy, Library, LibraryError
from app.userdirs import default_library_dir
from model.parts import EMBED_DIM, part_norms, presence
from tests.app.library_helpers import (
    music,
    real_recordings,
    tiny_weights,
    write_all_formats,
    write_bad_files,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def weights(tmp_path):
    return tiny_weights(tmp_path / "w.safetensors")


def run_scan(lib, folders=None, cancel=None):
    steps = list(lib.scan(folders, cancel=cancel))
    return steps[-1], steps


def songs(folder: Path, n: int, seconds: float = 4.0, start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(start, start + n):
        p = folder / f"song{i:03d}.wav"
        sf.write(p, music(seconds, 22050, seed=i), 22050)
        out.append(p)
    return out


def test_default_library_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("PARTWISE_LIBRARY", str(tmp_path / "lib"))
    assert default_library_dir() == tmp_path / "lib"
    monkeypatch.delenv("PARTWISE_LIBRARY")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert default_library_dir() == tmp_path / "xdg" / "partwise" / "library"


def test_scan_every_format_and_real_audio_then_rescan_nothing(tmp_path, weights):
    music_dir = tmp_path / "music"
    files = write_all_formats(music_dir / "formats", seconds=4.0)
    for r in real_recordings():
        shutil.copy(r, music_dir / r.name)
    lib = Library(tmp_path / "lib", weights=weights, device="cpu")
    last, steps = run_scan(lib, [music_dir])
    n = len(files) + len(real_recordings())
    assert steps[0].done == 0 and steps[0].total == n
    assert (last.done, last.total, last.added, last.failed) == (n, n, n, 0)
    tracks = lib.tracks()
    assert [t.status for t in tracks] == ["ok"] * n, [t.error for t in tracks]
    for t in tracks:
        assert t.presence.shape == (5,) and ((0 <= t.presence) & (t.presence <= 1)).all()
        assert t.duration > 3.5
    if real_recordings():
        vibe = next(t for t in tracks if t.title == "Vibe Ace")
        assert vibe.artist == "Kevin MacLeod" and 60 < vibe.duration < 63
    ids, vecs = lib.track_vectors()
    assert ids.dtype == np.int64 and vecs.shape == (n, EMBED_DIM) and vecs.dtype == np.float32
    assert sorted(ids.tolist()) == sorted(t.id for t in tracks)
    # an unchanged folder: nothing is re-embedded
    last2, steps2 = run_scan(lib)
    assert (last2.total, last2.added, last2.updated, last2.removed) == (0, 0, 0, 0)
    lib.close()
    # and after reopening (index loaded from disk)
    lib = Library(tmp_path / "lib", weights=weights, device="cpu")
    assert run_scan(lib)[0].total == 0
    assert lib.track_vectors()[0].tolist() == ids.tolist()
    lib.close()


def test_search_by_id_and_by_outside_file(tmp_path, weights):
    songs(tmp_path / "music", 6)
    lib = Library(tmp_path / "lib", weights=weights, device="cpu")
    run_scan(lib, [tmp_path / "music"])
    first = lib.tracks()[0]
    focus = {"drums": 1, "bass": 0.5, "others": -0.25}
    res = lib.search(first.id, focus, k=3)
    assert len(res) == 3 and first.id not in [r.track.id for r in res]
    w = np.array([1, 0.5, 0, 0, -0.25], np.float32)
    scales = lib.index.scales()
    for r in res:
        assert r.part_distances.shape == r.similarity.shape == (5,)
        np.testing.assert_allclose(r.similarity, similarity(r.part_distances, scales), rtol=1e-4)
        assert r.score == pytest.approx(float(match(r.similarity, w)), rel=1e-4, abs=1e-6)
        assert 0 <= r.score <= 1 and r.because in ("drums", "bass")  # the parts weighted up
        assert 0 <= r.match_start <= r.track.duration and r.query_start >= 0
    assert [r.score for r in res] == sorted((r.score for r in res), reverse=True)
    # the library file given by path is its track: excluded from its own results
    by_path = lib.search(first.path, focus, k=10)
    assert first.id not in [r.track.id for r in by_path] and len(by_path) == 5
    # a file outside the library is embedded on the fly, not added
    outside = tmp_path / "outside.flac"
    sf.write(outside, music(5.0, 44100, seed=99), 44100)
    res = lib.search(outside, {"bass": 1}, k=10)
    assert len(res) == 6 and len(lib.tracks()) == 6
    with pytest.raises(KeyError):
        lib.search(12345, {"bass": 1})
    with pytest.raises(LibraryError, match="no such file"):
        lib.search(tmp_path / "nope.wav", {"bass": 1})
    with pytest.raises(ValueError):
        lib.search(first.id, {"bass": 2})
    lib.close()


def test_outside_query_is_embedded_once_per_file_version(tmp_path, weights):
    """Moving the focus faders with an outside query re-ranks without embedding again."""
    songs(tmp_path / "music", 4)
    lib = Library(tmp_path / "lib", weights=weights, device="cpu")
    run_scan(lib, [tmp_path / "music"])
    calls = []
    real = lib._embed_tracks

    def counting(clips):
        calls.append(len(clips))
        return real(clips)

    lib._embed_tracks = counting
    outside = tmp_path / "outside.flac"
    sf.write(outside, music(5.0, 44100, seed=99), 44100)
    first = lib.search(outside, {"bass": 1}, k=4)
    assert len(calls) == 1
    again = lib.search(outside, {"bass": 1}, k=4)
    moved = lib.search(outside, {"drums": 1, "bass": -0.5}, k=4)
    assert len(calls) == 1  # a new focus for the same file: no embedding
    assert [r.track.id for r in again] == [r.track.id for r in first]
    assert [r.score for r in again] == [r.score for r in first]
    assert [r.query_start for r in again] == [r.query_start for r in first]
    w = np.array([1, -0.5, 0, 0, 0], np.float32)
    assert [r.score for r in moved] == pytest.approx([float(match(r.similarity, w)) for r in moved], abs=1e-5)
    # the file changes (new content and mtime): embedded again
    sf.write(outside, music(6.0, 44100, seed=7), 44100)
    os.utime(outside, ns=(time.time_ns(), time.time_ns() + 10 ** 9))
    lib.search(outside, {"bass": 1}, k=4)
    assert len(calls) == 2
    # only the last few files are kept
    others = []
    for i in range(Library.OUTSIDE_CACHE):
        f = tmp_path / f"other{i}.flac"
        sf.write(f, music(3.0, 44100, seed=200 + i), 44100)
        others.append(f)
        lib.search(f, {"bass": 1}, k=2)
    assert len(calls) == 2 + Library.OUTSIDE_CACHE
    lib.search(others[-1], {"piano": 1}, k=2)
    assert len(calls) == 2 + Library.OUTSIDE_CACHE
    lib.search(outside, {"bass": 1}, k=4)  # pushed out by the newer ones
    assert len(calls) == 3 + Library.OUTSIDE_CACHE
    lib.close()


def test_bad_input_is_reported_and_skipped(tmp_path, weights):
    music_dir = tmp_path / "music"
    bad = write_bad_files(music_dir / "bad")
    good = songs(music_dir / "good", 3)
    (music_dir / "good" / "loop").symlink_to(music_dir)  # a symlink loop
    (music_dir / "dangling.mp3").symlink_to(music_dir / "missing.mp3")
    (music_dir / "notes.txt").write_text("not music, not scanned")
    lib = Library(tmp_path / "lib", weights=weights, device="cpu")
    last, _ = run_scan(lib, [music_dir])
    by_name = {t.path.name: t for t in lib.tracks()}
    broken = [n for n in bad if not n.endswith("_ok.wav") and not n.endswith("_ok.flac")]
    for name in broken:
        t = by_name[name]
        assert t.status == "failed" and str(t.path) in t.error, (name, t.error)
    for name in [n for n in bad if n not in broken] + [p.name for p in good]:
        assert by_name[name].status == "ok", (name, by_name[name].error)
    assert last.failed == len(broken) and len(lib.failures()) == len(broken)
    problems = " | ".join(map(str, lib.scan_problems))
    assert "symlink loop" in problems and "broken symbolic link" in problems
    assert "notes.txt" not in by_name
    # nothing changed: failed files are not retried, nothing re-embedded
    assert run_scan(lib)[0].total == 0
    lib.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_file_and_folder(tmp_path, weights):
    songs(tmp_path / "music", 2)
    locked = songs(tmp_path / "music" / "locked", 1)
    secret = tmp_path / "music" / "secret.wav"
    sf.write(secret, music(4.0), 22050)
    secret.chmod(0)
    (tmp_path / "music" / "locked").chmod(0)
    try:
        lib = Library(tmp_path / "lib", weights=weights, device="cpu")
        run_scan(lib, [tmp_path / "music"])
        t = lib.find(secret)
        assert t.status == "failed" and "permission" in t.error
        assert any("permission denied" in str(p) for p in lib.scan_problems)
        assert lib.find(locked[0]) is None
        assert len([t for t in lib.tracks() if t.status == "ok"]) == 2
        lib.close()
    finally:
        (tmp_path / "music" / "locked").chmod(0o755)


def test_changes_deletes_and_new_files(tmp_path, weights):
    files = songs(tmp_path / "music", 4)
    lib = Library(tmp_path / "lib", weights=weights, device="cpu")
    run_scan(lib, [tmp_path / "music"])
    ids = {t.path: t.id for t in lib.tracks()}
    old_vec = lib.index.vector(ids[files[0]])
    sf.write(files[0], music(6.0, 22050, seed=42), 22050)  # changed content and size
    files[1].unlink()
    songs(tmp_path / "music", 1, start=10)
    last, _ = run_scan(lib)
    assert (last.added, last.updated, last.removed, last.failed) == (1, 1, 1, 0)
    t0 = lib.find(files[0])
    assert t0.id == ids[files[0]] and t0.duration == pytest.approx(6.0)
    assert not np.allclose(lib.index.vector(t0.id), old_vec)
    assert lib.find(files[1]) is None and len(lib.track_vectors()[0]) == 4
    lib.remove_folder(tmp_path / "music")
    assert lib.tracks() == [] and len(lib.track_vectors()[0]) == 0 and lib.folders() == []
    lib.close()


def test_new_weights_reembed_everything_once(tmp_path, weights):
    songs(tmp_path / "music", 3)
    with Library(tmp_path / "lib", weights=weights, device="cpu") as lib:
        run_scan(lib, [tmp_path / "music"])
    other = tiny_weights(tmp_path / "other.safetensors", seed=7)
    with Library(tmp_path / "lib", weights=other, device="cpu") as lib:
        assert len(lib.track_vectors()[0]) == 0  # old model's vectors are not mixed in
        assert lib.info()["stale_model"] == 3
        last, _ = run_scan(lib)
        assert (last.total, last.updated) == (3, 3)
        assert len(lib.track_vectors()[0]) == 3
        assert run_scan(lib)[0].total == 0


def test_missing_weights_give_a_clear_error(tmp_path):
    songs(tmp_path / "music", 1)
    lib = Library(tmp_path / "lib", weights=tmp_path / "none.safetensors", device="cpu")
    with pytest.raises(LibraryError, match="none.safetensors: model weights not found"):
        run_scan(lib, [tmp_path / "music"])
    lib.close()


def test_the_window_is_as_long_as_the_models_training_pieces(caplog):
    assert AnalysisPolicy.for_card({}).window == DEFAULT_WINDOW == 5.0
    assert AnalysisPolicy.for_card({"config": {"segment_seconds": 3}}) == AnalysisPolicy(window=3.0)
    for odd in ("long", -1.0, 0.0, float("nan"), 600.0):
        caplog.clear()
        assert AnalysisPolicy.for_card({"config": {"segment_seconds": odd}}).window == DEFAULT_WINDOW
        assert "training window" in caplog.text


def test_the_scan_analyses_the_cards_window_and_rescans_when_it_changes(tmp_path):
    """Weights trained on 3-s pieces are fed 3-s windows; weights of another window length
    re-analyse every track, and until then a track's windows keep the length it was analysed
    with (the timeline and a moment search place them right)."""
    songs(tmp_path / "music", 2, seconds=10.0)
    three = tiny_weights(tmp_path / "w3.safetensors", card={"config": {"segment_seconds": 3.0}})
    with Library(tmp_path / "lib", weights=three, device="cpu") as lib:
        assert lib.policy.window == 3.0
        run_scan(lib, [tmp_path / "music"])
        tid = lib.tracks()[0].id
        tl = lib.timeline(tid)
        np.testing.assert_array_equal(tl.starts, [0.0, 3.0, 6.0])
        np.testing.assert_array_equal(tl.ends - tl.starts, [3.0, 3.0, 3.0])
    with Library(tmp_path / "lib", weights=three, device="cpu", policy=AnalysisPolicy(5.0)) as lib:
        tl = lib.timeline(tid)  # not rescanned yet: the stored 3-s windows
        np.testing.assert_array_equal(tl.ends - tl.starts, [3.0, 3.0, 3.0])
        assert {r.query_start for r in lib.search(tid, [1] * 5, k=1, at=(6.5, 8.5))} == {6.0}
        last, _ = run_scan(lib, [tmp_path / "music"])
        assert last.updated == 2
        tl = lib.timeline(tid)
        np.testing.assert_array_equal(tl.starts, [0.0, 5.0])
        np.testing.assert_array_equal(tl.ends - tl.starts, [5.0, 5.0])


def test_presence_uses_the_cards_norm_bias(tmp_path):
    bias = [0.5, -1.0, 0.0, 2.0, 1.0]
    w = tiny_weights(tmp_path / "w.safetensors", card={"norm_bias": bias})
    songs(tmp_path / "music", 2, seconds=11.0)  # two 5-s windows
    with Library(tmp_path / "lib", weights=w, device="cpu") as lib:
        run_scan(lib, [tmp_path / "music"])
        ids, vecs = lib.track_vectors()
        for tid in ids:
            segs, _ = lib.store.load_segments(lib.store.row(int(tid)))
            assert len(segs) > 1
            # each window's presence (eq. 5 with the card's biases), averaged over the windows
            # (stored as float16: to that precision)
            expect = (1 / (1 + np.exp(-(np.log(part_norms(segs)) + np.array(bias))))).mean(0)
            np.testing.assert_allclose(lib.track(int(tid)).presence, expect, rtol=1e-3)
    v = np.zeros(EMBED_DIM, np.float32)
    v[0], v[128] = 2.0, 1.0
    np.testing.assert_allclose(presence(v), [1, 0.5, 0, 0, 0])


def test_new_biases_in_the_card_refresh_presence_without_reembedding(tmp_path):
    """A calibration changes a card's biases, not its tensors: the next scan recomputes every
    track's presence from its stored windows and re-embeds nothing."""
    w = tiny_weights(tmp_path / "w.safetensors", card={"norm_bias": [0.0] * 5})
    songs(tmp_path / "music", 3, seconds=7.0)
    with Library(tmp_path / "lib", weights=w, device="cpu") as lib:
        run_scan(lib, [tmp_path / "music"])
        before = {t.id: t.presence for t in lib.tracks()}
        revs = [a.tolist() for a in lib.store.ok_revs(None)]
    card = json.loads(w.with_suffix(".json").read_text())
    new_bias = [3.0, -3.0, 1.0, 0.0, -1.0]
    card["card"]["norm_bias"] = new_bias
    w.with_suffix(".json").write_text(json.dumps(card))
    with Library(tmp_path / "lib", weights=w, device="cpu") as lib:
        last, _ = run_scan(lib, [tmp_path / "music"])
        assert (last.added, last.updated) == (0, 0) and [a.tolist() for a in lib.store.ok_revs(None)] == revs
        for t in lib.tracks():
            segs, _ = lib.store.load_segments(lib.store.row(t.id))
            expect = (1 / (1 + np.exp(-(np.log(part_norms(segs)) + np.array(new_bias))))).mean(0)
            np.testing.assert_allclose(t.presence, expect, rtol=1e-5)
            assert not np.allclose(t.presence, before[t.id])
        assert lib.refresh_presence() == 0  # done once


def test_file_deleted_mid_scan(tmp_path, weights):
    files = songs(tmp_path / "music", 8)
    lib = Library(tmp_path / "lib", weights=weights, device="cpu", workers=1)
    it = lib.scan([tmp_path / "music"])
    first = next(it)
    assert first.total == 8
    files[-1].unlink()  # listed by the walk, gone before it is decoded
    last = list(it)[-1]
    assert last.done == 8 and last.added == 7 and last.failed == 0
    assert len(lib.tracks()) == 7 and lib.find(files[-1]) is None
    lib.close()


def test_cancel_keeps_finished_tracks(tmp_path, weights):
    songs(tmp_path / "music", 6)
    lib = Library(tmp_path / "lib", weights=weights, device="cpu", workers=1, batch_size=1)
    cancel = threading.Event()
    done = 0
    for p in lib.scan([tmp_path / "music"], cancel=cancel):
        done = p.done
        if p.done == 2:
            cancel.set()
    assert 2 <= done < 6
    assert len(lib.track_vectors()[0]) == done
    last, _ = run_scan(lib)
    assert last.total == 6 - done and len(lib.track_vectors()[0]) == 6
    lib.close()


KILL_SCRIPT = """
import sys
from app.library import Library
lib = Library(sys.argv[1], weights=sys.argv[2], device="cpu", workers=1, batch_size=1)
for p in lib.scan([sys.argv[3]]):
    pass
"""


def test_kill_9_mid_scan_then_rescan_finishes_cleanly(tmp_path, weights):
    files = songs(tmp_path / "music", 24, seconds=8.0)
    lib_dir = tmp_path / "lib"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(lib_dir), str(weights),
                             str(tmp_path / "music")], cwd=ROOT, stderr=subprocess.DEVNULL)
    killed_at = None
    deadline = time.time() + 60
    import sqlite3

    while time.time() < deadline and proc.poll() is None:
        try:
            con = sqlite3.connect(lib_dir / "library.sqlite", timeout=1)
            n = con.execute("SELECT COUNT(*) FROM tracks WHERE status='ok'").fetchone()[0]
            con.close()
        except sqlite3.Error:
            n = 0
        if n >= 3:
            proc.send_signal(signal.SIGKILL)
            killed_at = n
            break
        time.sleep(0.02)
    proc.wait()
    assert killed_at is not None, "the scan finished before it could be killed"
    with Library(lib_dir, weights=weights, device="cpu") as lib:
        before = {t.id for t in lib.tracks() if t.status == "ok"}
        assert len(before) >= killed_at
        last, _ = run_scan(lib)
        assert last.failed == 0 and last.done == last.total == len(files) - len(before)
        tracks = lib.tracks()
        assert len(tracks) == len(files) and {t.status for t in tracks} == {"ok"}
        assert sorted(lib.track_vectors()[0].tolist()) == sorted(t.id for t in tracks)
        assert before <= {t.id for t in tracks}  # what was stored before the kill is kept
        assert not list((lib_dir / "segments").glob("*/*.tmp"))
        assert run_scan(lib)[0].total == 0
        assert len(lib.search(tracks[0].id, {"drums": 1}, k=30)) == len(files) - 1


def test_queries_from_other_threads_while_scanning(tmp_path, weights):
    songs(tmp_path / "music", 3)
    lib = Library(tmp_path / "lib", weights=weights, device="cpu", batch_size=2)
    run_scan(lib, [tmp_path / "music"])
    songs(tmp_path / "music", 10, start=3)
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader():
        try:
            while not stop.is_set():
                t = lib.tracks()
                ids, vecs = lib.track_vectors()
                assert len(ids) == len(vecs)
                ok = [x for x in t if x.status == "ok"]
                if ok:
                    lib.search(ok[0].id, {"bass": 1, "drums": -0.5}, k=5)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for th in threads:
        th.start()
    scanner = threading.Thread(target=lambda: run_scan(lib))
    scanner.start()
    scanner.join(60)
    stop.set()
    for th in threads:
        th.join(10)
    assert not errors, errors
    assert len(lib.track_vectors()[0]) == 13
    lib.close()


def test_permission_errors_simulated(tmp_path, weights, monkeypatch):
    """The same as above for any user (root reads everything): the OS says no."""
    import app.walk
    import model.audioio

    songs(tmp_path / "music", 2)
    locked = songs(tmp_path / "music" / "locked", 1)
    secret = tmp_path / "music" / "secret.wav"
    sf.write(secret, music(4.0), 22050)
    real_access, real_scandir = os.access, os.scandir
    monkeypatch.setattr(model.audioio.os, "access",
                        lambda p, mode: False if Path(p) == secret else real_access(p, mode))

    def scandir(p):
        if Path(p) == tmp_path / "music" / "locked":
            raise PermissionError(13, "Permission denied", str(p))
        return real_scandir(p)

    monkeypatch.setattr(app.walk.os, "scandir", scandir)
    with Library(tmp_path / "lib", weights=weights, device="cpu") as lib:
        run_scan(lib, [tmp_path / "music"])
        t = lib.find(secret)
        assert t.status == "failed" and "permission denied" in t.error and str(secret) in t.error
        assert any("permission denied" in str(p) for p in lib.scan_problems)
        assert lib.find(locked[0]) is None
        assert len([t for t in lib.tracks() if t.status == "ok"]) == 2


def test_search_from_a_moment_finds_the_tracks_made_of_it(tmp_path):
    """Track A is stretch X then stretch Y; B is X twice, C is Y twice. With the shipped model,
    searching from A's first half finds B first, from its second half C first, and the matched
    windows lie in the stretch asked for."""
    from assets import DEFAULT_WEIGHTS as weights

    sr = 22050
    x, y = music(10.0, sr, seed=11), music(10.0, sr, seed=12)  # two 5-s windows each
    folder = tmp_path / "music"
    folder.mkdir()
    for name, wave in {"a": np.r_[x, y], "b": np.r_[x, x], "c": np.r_[y, y],
                       "d": music(20.0, sr, seed=13), "e": music(20.0, sr, seed=14)}.items():
        sf.write(folder / f"{name}.wav", wave, sr)
    with Library(tmp_path / "lib", weights=weights, device="cpu") as lib:
        run_scan(lib, [folder])
        a = lib.find(folder / "a.wav").id
        first = lib.search(a, [1, 1, 1, 1, 1], k=4, at=(0.0, 10.0))
        second = lib.search(a, [1, 1, 1, 1, 1], k=4, at=(10.0, 20.0))
        whole = lib.search(a, [1, 1, 1, 1, 1], k=4)
        assert first[0].track.path.name == "b.wav" and first[0].score > 0.99
        assert second[0].track.path.name == "c.wav" and second[0].score > 0.99
        assert all(r.query_start < 10.0 for r in first) and all(r.query_start >= 10.0 for r in second)
        assert whole[0].score < first[0].score
        with pytest.raises(ValueError, match="outside the analysed audio"):
            lib.search(a, [1, 1, 1, 1, 1], at=(60.0, 70.0))
