"""Export writes one entry per track whatever its tags or file name, and no formula cells."""

import csv
import io
import os
import urllib.parse
from pathlib import Path

import mutagen
import numpy as np
import pytest
import soundfile as sf

from app import export_cmd
from app.export_cmd import csv_text, m3u, path_entry, results_csv, tracks_csv
from app.library import Result, Track
from model.parts import N_PARTS
from tests.app.library_helpers import music, tiny_weights

INJECTED_TITLE = "Nice song\n/etc/passwd\n#EXTINF:1,pwned"


def track(path: str | Path, title: str = "t", artist: str = "", album: str = "", id: int = 1,
          error: str | None = None) -> Track:
    return Track(id=id, path=Path(path), title=title, artist=artist, album=album, duration=61.4,
                 status="ok" if error is None else "failed", error=error,
                 presence=np.full(N_PARTS, 0.5, np.float32))


def entries(playlist: str) -> list[Path]:
    """What a player reads from an M3U: every line that is not a comment, URIs decoded."""
    out = []
    for line in playlist.split("\n"):
        if not line or line.startswith("#"):
            continue
        if line.startswith("file://"):
            out.append(Path(os.fsdecode(urllib.parse.unquote_to_bytes(line[len("file://"):]))))
        else:
            out.append(Path(line))
    return out


ODD_NAMES = [
    "/music/two\nlines.flac",
    "/music/carriage\rreturn.flac",
    "/music/next\x85line\u2028sep.flac",
    "/music/escape\x1b[31m.flac",
    "/music/" + os.fsdecode(b"latin1_\xe9t\xe9.wav"),  # a name that is not UTF-8
    "/music/#hash/ trailing space .flac ",
    "/music/100% plain é.flac",
]


def test_one_entry_per_track_whatever_the_tags_and_names():
    tracks = [track(p, title=INJECTED_TITLE, artist="A\r\nB", id=i) for i, p in enumerate(ODD_NAMES)]
    text = m3u(tracks)
    text.encode("utf-8")  # valid Unicode: no lone surrogates
    lines = text.split("\n")
    assert lines[0] == "#EXTM3U" and lines[-1] == ""
    assert len(lines) == 2 + 2 * len(tracks)  # header, then #EXTINF + path per track
    assert all(x.startswith("#EXTINF:61,A  B - Nice song /etc/passwd #EXTINF:1,pwned") for x in lines[1::2][:-1])
    assert entries(text) == [Path(p) for p in ODD_NAMES]  # lossless, in order
    assert "/etc/passwd" not in entries(text)


def test_plain_paths_stay_plain():
    assert path_entry("/music/100% plain é.flac") == "/music/100% plain é.flac"
    assert path_entry("/music/two\nlines.flac") == "file:///music/two%0Alines.flac"
    assert path_entry(Path("/m/" + os.fsdecode(b"\xe9.wav"))) == "file:///m/%E9.wav"


@pytest.mark.parametrize("text", ["=HYPERLINK(\"http://x\",\"y\")", "+1+2", "-2+3", "@SUM(A1)",
                                  "\t=1", "\r=1", "\n=1"])
def test_formula_cells_are_neutralised(text):
    assert csv_text(text) == "'" + text


def test_csv_round_trips_one_row_per_track_and_numbers_stay_numbers():
    tracks = [track(p, title="=cmd|' /C calc'!A0", artist="@me", album="-1", id=i,
                    error=None if i % 2 else "+bad\nline") for i, p in enumerate(ODD_NAMES)]
    rows = list(csv.DictReader(io.StringIO(tracks_csv(tracks))))
    assert len(rows) == len(tracks)
    for r, t in zip(rows, tracks, strict=True):
        assert r["title"] == "'=cmd|' /C calc'!A0" and r["artist"] == "'@me" and r["album"] == "'-1"
        assert int(r["id"]) == t.id and float(r["duration"]) == pytest.approx(61.4)
        assert r["error"] in ("", "'+bad\nline")
        assert entries("#EXTM3U\n" + r["path"] + "\n") == [t.path]
    sim = np.array([1.0, 0.5, 0.25, 0.0, 1.0], np.float32)
    d = np.array([-1e-7, 0.5, 1.0, 2.0, 3.0], np.float32)  # float error can make a distance negative
    res = [Result(track=tracks[0], score=0.75, similarity=sim, because="drums", part_distances=d,
                  query_start=3.0, match_start=9.0)]
    (row,) = csv.DictReader(io.StringIO(results_csv(res)))
    assert row["d_drums"] == "-1e-07" and float(row["d_drums"]) == pytest.approx(-1e-7)
    assert float(row["match"]) == 0.75 and row["title"].startswith("'=")


def test_export_command_end_to_end(tmp_path, capsys):
    """A scanned library with a tag injection and a newline in a file name, exported by the
    command to a file and to standard output."""
    music_dir = tmp_path / "music"
    music_dir.mkdir()
    for i, name in enumerate(["a.flac", "b\nc.flac", "=1+1.flac"]):
        p = music_dir / name
        sf.write(p, music(4.0, seed=i), 22050)
        if i == 0:
            f = mutagen.File(str(p), easy=True)
            f["title"], f["artist"] = INJECTED_TITLE, "=evil()"
            f.save()
    w = tiny_weights(tmp_path / "w.safetensors")
    lib = ["--library", str(tmp_path / "lib"), "--weights", str(w), "--device", "cpu"]
    from app import scan_cmd

    assert scan_cmd.main([str(music_dir), "--no-progress", *lib]) == 0
    capsys.readouterr()
    out = tmp_path / "all.m3u"
    assert export_cmd.main(["-o", str(out), *lib]) == 0
    text = out.read_text(encoding="utf-8")
    assert sorted(entries(text)) == sorted(p.resolve() for p in music_dir.iterdir())
    assert sum(1 for x in text.splitlines() if x.startswith("#EXTINF")) == 3
    assert export_cmd.main(["1", "-k", "2", *lib]) == 0
    assert len(entries(capsys.readouterr().out)) == 2
    assert export_cmd.main(["--format", "csv", *lib]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 3
    assert {r["title"] for r in rows} >= {INJECTED_TITLE, "'=1+1"}
    assert "'=evil()" in {r["artist"] for r in rows}
