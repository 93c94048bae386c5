"""POP909 as band songs: chord and beat parsing, the fixed split, drums on the song's beats,
bass on its chord roots, grooves that differ from song to song, and the build end to end."""

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import yaml

from trainer.data.arrange import KICK, Chords, Grid, arrange, step_time
from trainer.data.cli import main as data_main
from trainer.data.dataset import SlakhDataset
from trainer.data.pop909 import (
    N_SONGS,
    Pop909Error,
    load_song,
    parse_beats,
    parse_chord,
    read_collection,
    song_split,
)
from trainer.data.pop909_build import LICENSE_FILE, arrange_pop909, parse_songs
from trainer.data.render import bundled_font
from trainer.data.synth import BUILD_FILE

ARCHIVE = Path(__file__).resolve().parents[3] / "shared" / "data" / "midi" / "pop909.tar.xz"
LICENCE = b"MIT License\n\nCopyright (c) 2020 Music X Lab\n"


# -- a small POP909-shaped song, made here --------------------------------------------------
def _song_files(number: int, bpm: float = 100.0, bars: int = 12, beats_per_bar: int = 4) -> dict[str, bytes]:
    beat = 60.0 / bpm
    n_beats = bars * beats_per_bar
    t0 = 0.1
    beat_rows = [f"{t0 + i * beat:.6f} {float(i % 2 == 0)} {float(i % beats_per_bar == 0)}"
                 for i in range(n_beats)]
    labels = ["N", "C:maj", "A:min/b3", "F:maj7", "G:7", "E:min", "D:sus4(b7)", "Bb:maj/5"]
    chord_rows = []
    for b in range(bars):
        start, end = t0 + b * beats_per_bar * beat, t0 + (b + 1) * beats_per_bar * beat
        label = labels[(b + number) % len(labels)] if b else "N"
        chord_rows.append(f"{start:.6f}\t{end:.6f}\t{label}")
    midi = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    rng = np.random.default_rng(number)
    for name, lo in (("MELODY", 67), ("BRIDGE", 60), ("PIANO", 48)):
        inst = pretty_midi.Instrument(0, name=name)
        for i in range(n_beats * (2 if name == "PIANO" else 1)):
            s = t0 + i * beat / (2 if name == "PIANO" else 1)
            inst.notes.append(pretty_midi.Note(80, int(lo + rng.integers(0, 12)), s, s + beat * 0.4))
        midi.instruments.append(inst)
    buf = io.BytesIO()
    midi.write(buf)
    return {"mid": buf.getvalue(), "beat": "\n".join(beat_rows).encode(),
            "chord": "\n".join(chord_rows).encode()}


def _write_archive(path: Path, numbers: list[int], licence: bool = True) -> Path:
    with tarfile.open(path, "w:xz") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if licence:
            add("pop909/LICENSE", LICENCE)
        for n in numbers:
            files = _song_files(n)
            add(f"pop909/POP909/{n:03d}/{n:03d}.mid", files["mid"])
            add(f"pop909/POP909/{n:03d}/beat_midi.txt", files["beat"])
            add(f"pop909/POP909/{n:03d}/chord_midi.txt", files["chord"])
    return path


@pytest.fixture(scope="module")
def songs():
    """Real POP909 songs when the archive is here, else made ones."""
    if ARCHIVE.exists():
        files, _ = read_collection(ARCHIVE, set(range(1, 21)))
    else:
        files = {n: _song_files(n) for n in range(1, 21)}
    return [load_song(n, f, f"POP909/{n:03d}") for n, f in sorted(files.items())]


# -- parsing ------------------------------------------------------------------------------
@pytest.mark.parametrize("label,root,tones,bass", [
    ("C:maj", 0, (0, 4, 7), 0),
    ("Bb:min/b3", 10, (10, 1, 5), 1),
    ("F#:maj7", 6, (6, 10, 1, 5), 6),
    ("D:sus4(b7)", 2, (2, 7, 9, 0), 2),
    ("Ab:7/b7", 8, (8, 0, 3, 6), 6),
    ("E:hdim7", 4, (4, 7, 10, 2), 4),
    ("N", None, (), None),
])
def test_chord_labels(label, root, tones, bass):
    assert parse_chord(label) == (root, tones, bass)


def test_bad_annotations_name_the_file():
    with pytest.raises(ValueError, match="not a chord label"):
        parse_chord("H:maj")
    with pytest.raises(Pop909Error, match="POP909/007/beat_midi.txt"):
        parse_beats("0.1 1 1\n0.1 0 0\n" * 5, "POP909/007/beat_midi.txt")
    with pytest.raises(Pop909Error, match="missing chord"):
        load_song(7, {"mid": b"", "beat": b""}, "POP909/007")


def test_test_split_is_fixed_by_song_number():
    splits = [song_split(n) for n in range(1, N_SONGS + 1)]
    assert splits.count("test") == 90 and splits.count("validation") == 91
    assert [n for n in range(1, 41) if song_split(n) == "test"] == [10, 20, 30, 40]
    assert parse_songs("1-3,10") == [1, 2, 3, 10]
    with pytest.raises(ValueError):
        parse_songs("0-4")


# -- the arrangement ----------------------------------------------------------------------
def _played_bars(grid: Grid, drums: pretty_midi.Instrument) -> list[int]:
    starts = np.array([n.start for n in drums.notes])
    return [b for b, (f, n) in enumerate(grid.bars)
            if ((starts >= grid.time(f) - 0.05) & (starts < grid.time(f + n) - 0.05)).any()]


def test_drums_land_on_the_songs_beats(songs):
    for song in songs:
        arr = arrange(song, 0)
        grid = Grid.of(song.beats, song.downbeats)
        drums = next(i for i in arr.midi.instruments if i.is_drum)
        g = arr.describe["groove"]
        spb, tol = g["steps_per_beat"], 4 * g["humanize_ms"] / 1000 + 0.002
        steps = np.array(sorted(step_time(grid, f, s, spb, g["swing"])
                                for f, n in grid.bars for s in range(n * spb)))
        onsets = np.array([n.start for n in drums.notes])
        gaps = np.abs(onsets[:, None] - steps[None, :]).min(axis=1)
        assert (gaps <= tol).mean() > 0.99, f"song {song.number}: drum notes off the beat grid"
        kicks = np.array([n.start for n in drums.notes if n.pitch == KICK])
        played = _played_bars(grid, drums)
        assert len(played) > len(grid.bars) // 2
        for b in played:
            down = song.beats[grid.bars[b][0]]
            assert np.abs(kicks - down).min() <= tol, f"song {song.number}: no kick on bar {b}'s downbeat"


def test_bass_starts_every_chord_on_its_root_or_bass_note(songs):
    for song in songs:
        arr = arrange(song, 0)
        bass = next(i for i in arr.midi.instruments if i.name == "BASS")
        grid, chords = Grid.of(song.beats, song.downbeats), Chords(song.chords)
        drums = next(i for i in arr.midi.instruments if i.is_drum)
        played = set(_played_bars(grid, drums))
        starts = np.array([n.start for n in bass.notes])
        checked = 0
        for c in song.chords:
            if c.root is None or grid.bar_at(c.start) not in played:
                continue
            hit = [n for n in bass.notes if abs(n.start - c.start) < 1e-3]
            assert len(hit) == 1, f"song {song.number}: no bass note at the {c.label} at {c.start:.2f} s"
            assert hit[0].pitch % 12 in (c.root, c.bass), f"song {song.number}: {c.label}"
            assert 24 <= hit[0].pitch <= 60
            checked += 1
        assert checked >= 5
        for n in bass.notes:  # never a note where the song has no chord
            chord = chords.at(n.start)
            assert chord is not None and chord.root is not None
            assert n.pitch % 12 in range(12) and n.end > n.start
        assert len(starts) > checked  # a figure, not only one note per chord


def test_each_song_gets_its_own_groove_bass_and_programs(songs):
    grooves, figures, programs = set(), set(), []
    for song in songs:
        arr = arrange(song, 0)
        grid = Grid.of(song.beats, song.downbeats)
        drums = next(i for i in arr.midi.instruments if i.is_drum)
        g = arr.describe["groove"]
        # the groove as it sounds: (pitch, step) of the notes of the first bars the drums play
        b0 = _played_bars(grid, drums)[0]
        f, n = grid.bars[b0]
        t0, beat = grid.time(f), grid.time(f + 1) - grid.time(f)
        grooves.add(frozenset((x.pitch, round((x.start - t0) / beat * g["steps_per_beat"]))
                              for x in drums.notes if t0 - 0.05 <= x.start < grid.time(f + n) - 0.05))
        figures.add(json.dumps(arr.describe["bass_figure"], sort_keys=True))
        p = arr.describe["programs"]
        assert {p["MELODY"] // 8, p["BRIDGE"] // 8} & {3}, "one of MELODY/BRIDGE is a guitar"
        assert {p["MELODY"] // 8, p["BRIDGE"] // 8} - {3} - {0, 4}, "the other is an 'others' program"
        assert p["PIANO"] // 8 == 0 and p["BASS"] // 8 == 4
        programs.append((p["MELODY"], p["BRIDGE"]))
    assert len(grooves) == len(songs) and len(figures) == len(songs)
    assert len(set(programs)) >= len(songs) - 3


def test_arrangement_is_deterministic_per_seed(songs):
    song = songs[0]

    def notes(seed):
        return [(i.name, i.program, [(n.pitch, round(n.start, 6)) for n in i.notes])
                for i in arrange(song, seed).midi.instruments]

    assert notes(3) == notes(3)
    assert notes(3) != notes(4)


# -- the build ----------------------------------------------------------------------------
def test_build_layout_licence_fonts_and_fixed_splits(tmp_path, capsys):
    archive = _write_archive(tmp_path / "pop909.tar.xz", [1, 5, 10])
    out = arrange_pop909(archive, tmp_path / "a", seed=1, song_seconds=6.0, workers=1)
    assert (out / LICENSE_FILE).read_bytes() == LICENCE
    tracks = {p.parent.name + "/" + p.name for p in out.glob("*/Track*")}
    assert tracks == {"train/Track00001", "validation/Track00005", "test/Track00010"}
    record = json.loads((out / BUILD_FILE).read_text())
    font = bundled_font()
    assert record["fonts"] == [{"name": font.name, "size": font.stat().st_size, "role": "all parts",
                                "sha256": hashlib.sha256(font.read_bytes()).hexdigest()}]
    assert record["built"] == 3 and record["skipped"] == []
    meta = yaml.safe_load((out / "test" / "Track00010" / "metadata.yaml").read_text())
    assert meta["source"] == "pop909" and meta["pop909_song"] == "010" and meta["duration"] == 6.0
    parts = {s["name"]: s["part"] for s in meta["stems"].values()}
    assert parts["PIANO"] == "piano" and parts["DRUMS"] == "drums" and parts["BASS"] == "bass"
    assert sorted([parts["MELODY"], parts["BRIDGE"]]) == ["guitar", "others"]
    assert all(s["effects"] and s["plugin_name"] == font.name for s in meta["stems"].values())
    # another seed, only two songs, through the CLI: the same songs land in the same splits
    assert data_main(["arrange-pop909", str(archive), "--out", str(tmp_path / "b"), "--songs", "5,10",
                      "--seed", "7", "--seconds", "4", "--workers", "1", "--no-progress",
                      "--font-set", "bundled"]) == 0
    assert json.loads(capsys.readouterr().out)["built"] == 2
    assert {p.parent.name + "/" + p.name for p in (tmp_path / "b").glob("*/Track*")} == \
        {"validation/Track00005", "test/Track00010"}
    # no song fell into train: its folder is there, empty, so the set pools with others for training
    assert (tmp_path / "b" / "train").is_dir() and SlakhDataset(tmp_path / "b", "train").tracks == []


def test_build_resumes_and_refuses_other_settings(tmp_path):
    archive = _write_archive(tmp_path / "pop909.tar.xz", [1, 2])
    out = arrange_pop909(archive, tmp_path / "a", song_seconds=4.0, workers=1)
    (out / "train" / "Track00002" / "metadata.yaml").unlink()
    arrange_pop909(archive, out, song_seconds=4.0, workers=1)
    record = json.loads((out / BUILD_FILE).read_text())
    assert record["kept"] == 1 and record["built"] == 1
    with pytest.raises(ValueError, match="other settings"):
        arrange_pop909(archive, out, song_seconds=4.0, workers=1, seed=9)
    # a selection may grow: the songs already built are kept, the record names them all
    small = arrange_pop909(archive, tmp_path / "b", songs=[2], song_seconds=4.0, workers=1)
    arrange_pop909(archive, small, songs=[1], song_seconds=4.0, workers=1)
    assert json.loads((small / BUILD_FILE).read_text())["songs"] == [1, 2]
    assert {p.name for p in small.glob("*/Track*")} == {"Track00001", "Track00002"}


def test_build_needs_the_licence_and_skips_long_songs(tmp_path):
    bare = _write_archive(tmp_path / "bare.tar.xz", [1], licence=False)
    with pytest.raises(Pop909Error, match="LICENSE"):
        arrange_pop909(bare, tmp_path / "x", song_seconds=4.0, workers=1)
    archive = _write_archive(tmp_path / "pop909.tar.xz", [1])
    out = arrange_pop909(archive, tmp_path / "y", workers=1, max_seconds=10.0)  # songs are ~29 s
    record = json.loads((out / BUILD_FILE).read_text())
    assert record["built"] == 0 and "more than the cap of 10 s" in record["skipped"][0]
    assert record["skipped"][0].startswith("POP909/001")


def test_archive_and_folder_build_the_same_audio(tmp_path):
    archive = _write_archive(tmp_path / "pop909.tar.xz", [3, 20])
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "src", filter="data")
    a = arrange_pop909(archive, tmp_path / "a", song_seconds=4.0, workers=1, seed=2)
    b = arrange_pop909(tmp_path / "src", tmp_path / "b", song_seconds=4.0, workers=2, seed=2)
    for rel in ("train/Track00003", "test/Track00020"):
        assert (a / rel / "mix.flac").read_bytes() == (b / rel / "mix.flac").read_bytes()
        assert (a / rel / "metadata.yaml").read_text() == (b / rel / "metadata.yaml").read_text()
