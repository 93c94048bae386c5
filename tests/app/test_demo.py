"""``partwise demo --no-gui``: the demo collection is rendered once, scanned, and reused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mutagen
import pytest
import soundfile as sf

from app import demo
from app.library import Library
from tests.app.library_helpers import tiny_weights

# two short excerpts keep the test fast; the real demo renders whole songs
ARGS = ["--no-gui", "--limit", "2", "--excerpt", "8", "--workers", "1"]


@pytest.fixture
def dirs(tmp_path, monkeypatch) -> dict[str, Path]:
    monkeypatch.setenv("PARTWISE_LIBRARY", str(tmp_path / "data" / "partwise" / "library"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return {"weights": tiny_weights(tmp_path / "tiny.safetensors"),
            "library": tmp_path / "data" / "partwise" / "demo-library",
            "folder": tmp_path / "cache" / "partwise" / "demo"}


def _state(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.glob("*.ogg")}


def test_credits_give_title_composer_and_note():
    credits = demo.parse_credits((demo.DEMO_ASSETS / "CREDITS-MUSIC").read_text(encoding="utf-8"))
    assert credits["d_e3m3"] == demo.Credit("Wrought Havoc", 'Lola "BlueWorrior" Harvey')
    assert credits["d_victor"].title == "Distance" and credits["d_victor"].artist == "Korp"
    assert credits["d_map24"].note.startswith("remix of")
    # the songs replaced in earlier releases do not override the current ones
    assert credits["d_e1m1"].title == "Steel and Brass"
    songs = demo.demo_songs()
    assert len(songs) >= 10
    assert all(s.credit.artist != demo.FREEDOOM_ARTIST for s in songs), "every demo song is credited"


def test_demo_prepares_the_library_once(dirs, capsys):
    assert demo.main([*ARGS, "--weights", str(dirs["weights"])]) == 0
    err = capsys.readouterr().err
    assert "2 song(s) rendered" in err
    folder = dirs["folder"]
    songs = demo.demo_songs()[:2]
    recordings = demo.demo_recordings()
    assert len(recordings) == 2
    expected = sorted([s.name for s in songs] + [r.name for r in recordings])
    assert sorted(_state(folder)) == expected
    for s in songs:  # tagged stereo mixes of the requested length
        info = sf.info(str(folder / s.name))
        assert info.channels == 2 and info.samplerate == demo.SAMPLE_RATE
        assert info.duration == pytest.approx(8.0, abs=0.05)
        tags = mutagen.File(str(folder / s.name), easy=True)
        assert tags["title"] == [s.credit.title]
        assert tags["artist"] == [s.credit.artist]
        assert tags["album"] == ["Freedoom"]
    for name in ("COPYING.adoc", "CREDITS-MUSIC", *(r.with_suffix("").with_suffix(".txt").name
                                                    for r in recordings)):
        assert (folder / name).is_file(), f"{name} travels with the audio"

    lib = Library(dirs["library"], weights=dirs["weights"])
    try:
        tracks = lib.tracks()
        assert sorted(t.path.name for t in tracks) == expected
        assert all(t.status == "ok" for t in tracks), [t.error for t in tracks]
        assert len(lib.index) == len(expected)
        titles = {t.path.name: (t.title, t.album) for t in tracks}
        assert titles[songs[0].name] == (songs[0].credit.title, "Freedoom")
    finally:
        lib.close()
    assert not (dirs["library"].parent / "library").exists(), "the user's own library is untouched"

    # a second run renders nothing and embeds nothing
    before = _state(folder)
    rep = demo.prepare_demo(dirs["weights"], workers=1, limit=2, excerpt=8)
    assert rep.collection.rendered == [] and rep.collection.copied == []
    assert sorted(rep.collection.kept) == expected
    assert (rep.added, rep.updated, rep.removed, rep.failed) == (0, 0, 0, [])
    assert rep.tracks == len(expected)
    assert _state(folder) == before


def test_damaged_or_missing_files_are_redone(dirs):
    rep = demo.prepare_demo(dirs["weights"], workers=1, limit=2, excerpt=8)
    folder = rep.collection.folder
    first, second = (s.name for s in demo.demo_songs()[:2])
    with open(folder / first, "r+b") as f:  # damage the middle, same size
        f.seek(2000)
        f.write(b"\0" * 64)
    (folder / second).unlink()
    (folder / demo.demo_recordings()[0].name).write_bytes(b"not audio")
    rep = demo.prepare_demo(dirs["weights"], workers=1, limit=2, excerpt=8)
    assert sorted(rep.collection.rendered) == sorted([first, second])
    assert rep.collection.copied == [demo.demo_recordings()[0].name]
    assert rep.failed == [] and rep.tracks == 4
    assert json.loads((folder / demo.RECORD_FILE).read_text())["settings"]["excerpt"] == 8
    # other render settings are not mistaken for the cached ones
    rep = demo.prepare_demo(dirs["weights"], workers=1, limit=2, excerpt=5)
    assert sorted(rep.collection.rendered) == sorted([first, second])
    assert sf.info(str(folder / first)).duration == pytest.approx(5.0, abs=0.05)
    assert rep.updated == 2 and rep.tracks == 4
    # a smaller selection drops the songs it no longer holds, from the folder and the library
    rep = demo.prepare_demo(dirs["weights"], workers=1, limit=1, excerpt=5)
    assert rep.collection.removed == [second] and not (folder / second).exists()
    assert rep.removed == 1 and rep.tracks == 3


def test_missing_weights_is_a_clear_error(dirs, capsys):
    missing = dirs["weights"].with_name("nowhere.safetensors")
    assert demo.main([*ARGS, "--weights", str(missing)]) == 1
    err = capsys.readouterr().err
    assert str(missing) in err and "not found" in err and "--weights" in err
    assert not dirs["folder"].exists(), "nothing is rendered without a model"


def test_bad_arguments(dirs):
    assert demo.main(["--no-gui", "--limit", "0", "--weights", str(dirs["weights"])]) == 2


def test_window_leaves_the_users_default_library_alone(tmp_path):
    """The window stores the library it opened as the next start's default; the demo puts the
    user's own choice back when it closes (checked in a child process with its own settings)."""
    code = """
import sys
from pathlib import Path
from PySide6.QtCore import QSettings
import app.ui.main
from app import demo

QSettings("Partwise", "Partwise").setValue("library/path", "/my/music-library")

def fake_gui(argv):
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
