"""``partwise demo --no-gui``: the shipped demo collection is copied once, scanned, and reused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mutagen
import pytest

from app import demo
from app.library import Library
from tests.app.library_helpers import tiny_weights

ARGS = ["--no-gui", "--limit", "2"]  # the first two songs keep the test short


@pytest.fixture
def dirs(tmp_path, monkeypatch) -> dict[str, Path]:
    monkeypatch.setenv("PARTWISE_LIBRARY", str(tmp_path / "data" / "partwise" / "library"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return {"weights": tiny_weights(tmp_path / "tiny.safetensors"),
            "library": tmp_path / "data" / "partwise" / "demo-library",
            "folder": tmp_path / "cache" / "partwise" / "demo"}


def _state(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns)
            for pattern in demo.AUDIO_PATTERNS for p in folder.glob(pattern)}


def test_the_collection_ships_songs_and_recordings():
    files = demo.demo_files()
    songs = [f for f in files if f.suffix == ".opus"]
    assert len(songs) == len(list(demo.DEMO_ASSETS.glob("*.mid"))) == 12
    assert [f.name for f in files if f.suffix == ".ogg"] == [
        "Karissa_Hobbs_-_Lets_Go_Fishin.hq.ogg", "Kevin_MacLeod_-_Vibe_Ace.hq.ogg"]
    assert files[:12] == songs, "songs first, so --limit picks songs"


def test_demo_prepares_the_library_once(dirs, capsys):
    assert demo.main([*ARGS, "--weights", str(dirs["weights"])]) == 0
    err = capsys.readouterr().err
    assert "2 demo file(s)" in err and "2 copied" in err
    folder = dirs["folder"]
    songs = demo.demo_files()[:2]
    assert sorted(_state(folder)) == sorted(s.name for s in songs)
    for s in songs:  # the shipped files, byte for byte
        assert (folder / s.name).read_bytes() == s.read_bytes()
    for name in ("COPYING.adoc", "CREDITS-MUSIC", "README.md"):
        assert (folder / name).is_file(), f"{name} travels with the audio"

    lib = Library(dirs["library"], weights=dirs["weights"])
    try:
        tracks = lib.tracks()
        assert sorted(t.path.name for t in tracks) == sorted(s.name for s in songs)
        assert all(t.status == "ok" for t in tracks), [t.error for t in tracks]
        assert len(lib.index) == 2
        for t in tracks:  # titles and composers from the tags the files carry
            tags = mutagen.File(str(t.path), easy=True)
            assert (t.title, t.artist, t.album) == (tags["title"][0], tags["artist"][0], "Freedoom")
            assert t.title != t.path.stem
    finally:
        lib.close()
    assert not (dirs["library"].parent / "library").exists(), "the user's own library is untouched"

    # a second run copies nothing and embeds nothing
    before = _state(folder)
    rep = demo.prepare_demo(dirs["weights"], limit=2)
    assert rep.collection.copied == [] and sorted(rep.collection.kept) == sorted(before)
    assert (rep.added, rep.updated, rep.removed, rep.failed) == (0, 0, 0, [])
    assert rep.tracks == 2
    assert _state(folder) == before


def test_damaged_missing_and_stale_files(dirs):
    rep = demo.prepare_demo(dirs["weights"], limit=2)
    folder = rep.collection.folder
    first, second = (f.name for f in demo.demo_files()[:2])
    with open(folder / first, "r+b") as f:  # damage the middle, same size
        f.seek(2000)
        f.write(b"\0" * 64)
    (folder / second).unlink()
    # what an older Partwise rendered here, and a file of the user's own
    (folder / "d_e3m3.ogg").write_bytes(b"an old render")
    (folder / demo.OLD_RECORD).write_text("{}")
    (folder / "mine.ogg").write_bytes(b"not ours")
    rep = demo.prepare_demo(dirs["weights"], limit=2)
    assert sorted(rep.collection.copied) == sorted([first, second])
    assert rep.collection.removed == ["d_e3m3.ogg"]
    assert not (folder / demo.OLD_RECORD).exists()
    assert (folder / "mine.ogg").read_bytes() == b"not ours"
    assert (folder / first).read_bytes() == (demo.DEMO_ASSETS / first).read_bytes()
    # a smaller selection drops the songs it no longer holds, from the folder and the library
    rep = demo.prepare_demo(dirs["weights"], limit=1)
    assert rep.collection.removed == [second] and not (folder / second).exists()
    assert rep.removed == 1


def test_missing_weights_is_a_clear_error(dirs, capsys):
    missing = dirs["weights"].with_name("nowhere.safetensors")
    assert demo.main([*ARGS, "--weights", str(missing)]) == 1
    err = capsys.readouterr().err
    assert str(missing) in err and "not found" in err and "--weights" in err
    assert not dirs["folder"].exists(), "nothing is copied without a model"


def test_bad_arguments(dirs):
    assert demo.main(["--no-gui", "--limit", "0", "--weights", str(dirs["weights"])]) == 2


def test_window_leaves_the_users_default_library_alone(tmp_path):
    """The window stores the library it opened as the next start's default; the demo opens it
    without that, so the user's own choice stays (checked in a child process with its own settings)."""
    code = """
import sys
from pathlib import Path
from PySide6.QtCore import QSettings
import app.ui.main
from app import demo

QSettings("Partwise", "Partwise").setValue("library/path", "/my/music-library")

def fake_gui(argv, remember=True):
    if remember:  # what the window stores when it may
        s = QSettings("Partwise", "Partwise")
        s.setValue("library/path", argv[argv.index("--library") + 1])
        s.setValue("library/weights", argv[argv.index("--weights") + 1])
    return 0

app.ui.main.main = fake_gui
assert demo._open_window(Path("/demo/lib"), Path("/demo/w.safetensors"), False) == 0
s = QSettings("Partwise", "Partwise")
print(s.value("library/path"), s.contains("library/weights"))
"""
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["/my/music-library", "False"]
