import csv
import io
import json

import pytest

from app import export_cmd, info_cmd, query_cmd, scan_cmd
from app.cli import COMMANDS
from tests.app.library_helpers import music, tiny_weights, write_bad_files
from tests.app.test_library import songs


@pytest.fixture
def lib_args(tmp_path):
    w = tiny_weights(tmp_path / "w.safetensors")
    return ["--library", str(tmp_path / "lib"), "--weights", str(w), "--device", "cpu"]


def test_commands_are_registered():
    for name in ("scan", "query", "info", "export"):
        assert name in COMMANDS


def test_scan_query_info_export(tmp_path, lib_args, capsys):
    songs(tmp_path / "music" / "a", 5)  # walked first: ids 1-5
    write_bad_files(tmp_path / "music" / "z")
    assert scan_cmd.main([str(tmp_path / "music"), "--no-progress", *lib_args]) == 0
    out, err = capsys.readouterr()
    assert "8 added, 0 updated, 0 removed, 6 failed" in out and "failed: " in err and "text.mp3" in err

    assert query_cmd.main(["1", "--focus", "drums=1,bass=-0.5", "-k", "3", "--json", *lib_args]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["focus"]["bass"] == -0.5 and len(doc["results"]) == 3
    assert 1 not in [r["id"] for r in doc["results"]]
    assert set(doc["results"][0]["part_distances"]) == {"drums", "bass", "piano", "guitar", "others"}
    # the engine's meaning of each hit, the same fields the window and the CSV export show
    top = doc["results"][0]
    assert 0 <= top["match"] <= 1 and top["because"] == "drums"
    assert set(top["similarity"]) == set(top["part_distances"]) and all(0 <= v <= 1 for v in top["similarity"].values())
    assert export_cmd.main(["1", "--focus", "drums=1,bass=-0.5", "-k", "3", "--format", "csv", *lib_args]) == 0
    hits = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [int(h["id"]) for h in hits] == [r["id"] for r in doc["results"]]
    assert [float(h["match"]) for h in hits] == pytest.approx([r["match"] for r in doc["results"]], abs=1e-5)
    assert [h["because"] for h in hits] == [r["because"] for r in doc["results"]]

    assert query_cmd.main([str(tmp_path / "music" / "a" / "song002.wav"), "--focus", "piano", *lib_args]) == 0
    out = capsys.readouterr().out
    assert "focus piano=1" in out and "song002" not in out.split("\n", 2)[2]

    assert info_cmd.main(["--json", "--failures", *lib_args]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["ok"] == 8 and info["failed"] == 6 and len(info["failures"]) == 6

    m3u = tmp_path / "out.m3u"
    assert export_cmd.main(["1", "-k", "4", "-o", str(m3u), *lib_args]) == 0
    lines = m3u.read_text().splitlines()
    assert lines[0] == "#EXTM3U" and len([x for x in lines if x.endswith(".wav") or x.endswith(".flac")]) == 4

    assert export_cmd.main(["--format", "csv", *lib_args]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 14 and {r["status"] for r in rows} == {"ok", "failed"}

    # rescan: nothing to do
    assert scan_cmd.main(["--no-progress", *lib_args]) == 0
    assert "0 added, 0 updated, 0 removed, 0 failed" in capsys.readouterr().out


def test_errors_and_exit_codes(tmp_path, lib_args, capsys):
    assert scan_cmd.main(["--no-progress", *lib_args]) == 2  # nothing to scan yet
    assert query_cmd.main(["7", *lib_args]) == 1
    assert "no track with id 7" in capsys.readouterr().err
    assert query_cmd.main(["1", "--focus", "drums=3", *lib_args]) == 2
    assert "[-1, 1]" in capsys.readouterr().err
    assert scan_cmd.main([str(tmp_path / "nowhere"), "--no-progress", *lib_args]) == 1
    assert "not a folder" in capsys.readouterr().err
    outside = tmp_path / "x.wav"
    import soundfile as sf

    sf.write(outside, music(4.0), 22050)
    missing = ["--library", str(tmp_path / "lib"), "--weights", str(tmp_path / "none.safetensors")]
    assert query_cmd.main([str(outside), *missing]) == 1
    assert "model weights not found" in capsys.readouterr().err
