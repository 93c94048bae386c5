"""A tiny generated dataset, end to end: layout, listen-by-numbers, determinism, resume,
real-MIDI rendering with broken, placeholder and duplicate files, and the CLI."""

import json
import shutil

import mido
import numpy as np
import pretty_midi
import pytest
import soundfile as sf
import yaml

from model.parts import PARTS
from trainer.data import SlakhDataset, activity, build_dataset, render_midi_folder
from trainer.data.cli import main as data_main
from trainer.data.compose import generate_song
from trainer.data.render import bundled_font, find_fonts, render_instrument
from trainer.data.synth import BUILD_FILE, assign_splits, split_counts

SR = 22050
N, SEED, SECONDS = 6, 11, 8.0


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "ds"
    return build_dataset(out, N, SEED, song_seconds=SECONDS, workers=1)


def _tracks(root):
    return sorted((p for p in root.glob("*/Track*") if p.is_dir()), key=lambda p: p.name)


def test_layout_and_metadata(built):
    tracks = _tracks(built)
    assert [t.name for t in tracks] == sorted(f"Track{i:05d}" for i in range(1, N + 1))
    assert {t.parent.name for t in tracks} == {"train", "validation", "test"}
    for t in tracks:
        meta = yaml.safe_load((t / "metadata.yaml").read_text())
        assert meta["source"] == "synth" and 60 <= meta["tempo"] <= 200
        assert meta["sample_rate"] == SR and meta["soundfont"]
        assert (t / "mix.flac").exists() and (t / "all_src.mid").exists()
        for key, stem in meta["stems"].items():
            assert set(stem) >= {"inst_class", "program_num", "is_drum", "midi_program_name",
                                 "audio_rendered", "plugin_name"}
            assert (t / "MIDI" / f"{key}.mid").exists()
            assert (t / "stems" / f"{key}.flac").exists() == stem["audio_rendered"]
        info = sf.info(str(t / "mix.flac"))
        assert info.samplerate == SR and info.channels == 1
        assert info.frames == int(SECONDS * SR)


def test_mix_is_exactly_the_sum_of_the_stems(built):
    for t in _tracks(built):
        mix, _ = sf.read(str(t / "mix.flac"), dtype="int16")
        total = np.zeros(len(mix), np.int32)
        for f in sorted((t / "stems").glob("*.flac")):
            s, _ = sf.read(str(f), dtype="int16")
            total += s
        assert np.array_equal(total, mix.astype(np.int32))
        assert 0.5 < np.abs(mix).max() / 32767 <= 0.81  # one gain per track, no clipping


def _font_can_sound(program: int, pitch: int, is_drum: bool) -> bool:
    """Whether the bundled font sounds this note on its own (some presets have holes: the
    TimGM6mb.sf2 inside pretty_midi has no alto sax sample at E4)."""
    inst = pretty_midi.Instrument(program=program, is_drum=is_drum)
    inst.notes.append(pretty_midi.Note(100, pitch, 0.0, 0.3))
    return float(np.abs(render_instrument(inst, bundled_font(), SR // 2, SR)).max()) > 1e-3


def test_stems_sound_where_their_midi_has_notes(built):
    """Listen by numbers: energy under notes, silence away from them."""
    hop = 2048
    for t in _tracks(built):
        meta = yaml.safe_load((t / "metadata.yaml").read_text())
        for key, stem in meta["stems"].items():
            if not stem["audio_rendered"]:
                continue
            audio, _ = sf.read(str(t / "stems" / f"{key}.flac"), dtype="float32")
            midi = pretty_midi.PrettyMIDI(str(t / "MIDI" / f"{key}.mid"))
            covered = np.zeros(len(audio) // hop + 1, bool)
            for n in midi.instruments[0].notes:
                # a note sounds from its start until its release has decayed
                covered[int(n.start * SR) // hop: int((n.end + 1.5) * SR) // hop + 1] = True
            frames = np.array([np.sqrt(np.mean(audio[i * hop:(i + 1) * hop] ** 2) + 1e-12)
                               for i in range(len(covered))])
            assert frames[~covered].max(initial=0) < 1e-4, f"{t.name}/{key} sounds without notes"
            inst = midi.instruments[0]
            starts = [int(n.start * SR) // hop for n in inst.notes
                      if _font_can_sound(inst.program, n.pitch, inst.is_drum)]
            heard = np.mean([frames[s:s + 2].max() > 1e-3 for s in starts if s < len(frames)])
            assert heard > 0.9, f"{t.name}/{key}: notes without sound"


def test_drums_come_from_channel_10(built):
    for t in _tracks(built):
        meta = yaml.safe_load((t / "metadata.yaml").read_text())
        drum_keys = [k for k, s in meta["stems"].items() if s["is_drum"]]
        for k in drum_keys:
            assert meta["stems"][k]["inst_class"] == "Drums"
            mid = mido.MidiFile(str(t / "MIDI" / f"{k}.mid"))
            channels = {m.channel for tr in mid.tracks for m in tr if m.type == "note_on"}
            assert channels == {9}
        src = pretty_midi.PrettyMIDI(str(t / "all_src.mid"))
        assert sum(i.is_drum for i in src.instruments) == len(drum_keys)


def test_loader_reads_the_build(built):
    total = 0
    for split in ("train", "validation", "test"):
        ds = SlakhDataset(built, split)
        total += len(ds)
        for i, t in enumerate(ds.tracks):
            assert t.source == "synth" and t.font and t.duration == SECONDS
            parts, mix = ds.load_parts(i), ds.load_mix(i)
            assert parts.shape == (len(PARTS), int(SECONDS * SR))
            assert np.abs(parts.sum(axis=0) - mix).max() < 1e-3
            heard = activity(parts, SR, 1.0).any(axis=1)
            for c in range(len(PARTS)):
                assert t.present[c] == bool(heard[c])
    assert total == N


def test_deterministic_and_workers_do_not_matter(built, tmp_path):
    again = build_dataset(tmp_path / "again", N, SEED, song_seconds=SECONDS, workers=2)
    for a in _tracks(built):
        b = again / a.parent.name / a.name
        assert (a / "metadata.yaml").read_text() == (b / "metadata.yaml").read_text()
        x, _ = sf.read(str(a / "mix.flac"), dtype="int16")
        y, _ = sf.read(str(b / "mix.flac"), dtype="int16")
        assert np.array_equal(x, y)
    other = build_dataset(tmp_path / "other", 2, SEED + 1, song_seconds=4, workers=1)
    assert (other / BUILD_FILE).exists()


def test_resume_keeps_complete_tracks(built, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(built, out)
    victim = _tracks(out)[2]
    kept = _tracks(out)[0]
    mtime = (kept / "mix.flac").stat().st_mtime_ns
    shutil.rmtree(victim)
    (victim.parent / ".tmp-Track99999-1").mkdir()  # debris of an interrupted write
    build_dataset(out, N, SEED, song_seconds=SECONDS, workers=1)
    record = json.loads((out / BUILD_FILE).read_text())
    assert record["built"] == 1 and record["kept"] == N - 1
    assert (victim / "metadata.yaml").exists()
    assert (kept / "mix.flac").stat().st_mtime_ns == mtime
    assert not list(out.glob("*/.tmp-*"))
    with pytest.raises(ValueError, match="other settings"):
        build_dataset(out, N, SEED + 5, song_seconds=SECONDS, workers=1)


def test_split_counts():
    assert split_counts(6, (0.8, 0.1, 0.1)) == [4, 1, 1]
    assert split_counts(1500, (0.8, 0.1, 0.1)) == [1200, 150, 150]
    assert split_counts(2, (0.8, 0.1, 0.1)) == [2, 0, 0]
    assert split_counts(10, (1, 0, 0)) == [10, 0, 0]
    assert sorted(assign_splits(6, (0.8, 0.1, 0.1), 3)).count("train") == 4


def _midi_file(path, seed, seconds=10.0):
    generate_song(seed, seconds).midi.write(str(path))


def test_render_midi_folder_skips_bad_files(tmp_path):
    src = tmp_path / "midi"
    (src / "sub").mkdir(parents=True)
    _midi_file(src / "a.mid", 1)
    _midi_file(src / "sub" / "b.mid", 2)
    shutil.copy(src / "a.mid", src / "a_copy.mid")  # exact duplicate
    (src / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")
    placeholder = mido.MidiFile()
    tr = mido.MidiTrack()
    placeholder.tracks.append(tr)
    tr.append(mido.Message("note_on", channel=9, note=35, velocity=92, time=0))
    tr.append(mido.Message("note_off", channel=9, note=35, velocity=0, time=20))
    placeholder.save(str(src / "dummy.mid"))
    (src / "notes.txt").write_text("not midi")
    out = render_midi_folder(src, tmp_path / "out", workers=1, splits=(1, 0, 0))
    record = json.loads((out / BUILD_FILE).read_text())
    assert record["built"] == 2
    reasons = " | ".join(record["skipped"])
    assert "a_copy.mid: exact duplicate of a.mid" in reasons
    assert "broken.mid" in reasons and "dummy.mid" in reasons and "placeholder" in reasons
    ds = SlakhDataset(out, "train")
    assert len(ds) == 2 and all(t.source == "midi" for t in ds.tracks)
    t = ds.tracks[0]
    meta = yaml.safe_load((t.path / "metadata.yaml").read_text())
    assert meta["lmd_midpath"] == "a.mid"
    assert t.tempo == pytest.approx(generate_song(1, 10.0).tempo, abs=0.05)
    assert (t.path / "all_src.mid").read_bytes() == (src / "a.mid").read_bytes()


def test_songs_split_by_identity(tmp_path):
    src = tmp_path / "midi"
    src.mkdir()
    for k in range(6):
        _midi_file(src / f"s{k}.mid", 100 + k, seconds=6.0)
    a = render_midi_folder(src, tmp_path / "a", workers=1)
    b = render_midi_folder(src, tmp_path / "b", workers=1)

    def where(root):
        out = {}
        for t in root.glob("*/Track*"):
            out[yaml.safe_load((t / "metadata.yaml").read_text())["lmd_midpath"]] = t.parent.name
        return out

    assert where(a) == where(b) and len(where(a)) == 6


def test_renderer_respects_length_and_silence():
    fonts = find_fonts()
    assert fonts, "at least pretty_midi's bundled TimGM6mb.sf2 must be found"
    inst = pretty_midi.Instrument(program=33)
    inst.notes.append(pretty_midi.Note(100, 40, 0.5, 1.0))
    audio = render_instrument(inst, fonts[-1], SR * 3, SR)
    assert audio.shape == (SR * 3,) and audio.dtype == np.float32
    assert np.abs(audio[: SR // 2 - 10]).max() == 0.0
    assert np.abs(audio[SR // 2: SR]).max() > 0.01
    assert np.abs(audio[-SR // 2:]).max() < 1e-3


def test_cli_synth_info_and_errors(tmp_path, capsys):
    out = tmp_path / "cli"
    with pytest.raises(SystemExit):  # no silent "every font found": the fonts must be named
        data_main(["synth", "--out", str(out), "--tracks", "3"])
    assert "--font-set" in capsys.readouterr().err
    assert data_main(["synth", "--out", str(out), "--tracks", "3", "--seconds", "4", "--workers",
                      "1", "--no-progress", "--seed", "5", "--font-set", "bundled"]) == 0
    assert json.loads(capsys.readouterr().out)["built"] == 3
    assert data_main(["info", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert sum(s["tracks"] for s in info) == 3
    assert data_main(["check", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["problems"] == []
    stem = sorted(out.glob("*/Track*/stems/S00.flac"))[0]
    audio, sr = sf.read(str(stem), dtype="int16")
    sf.write(str(stem), audio // 2, sr, subtype="PCM_16")  # the mix no longer adds up
    assert data_main(["check", str(out)]) == 1
    assert "sum of the stems" in capsys.readouterr().out
    assert data_main(["check", str(out), "--no-mix-sum"]) == 0
    capsys.readouterr()
    assert data_main(["render-midi", str(tmp_path / "nowhere"), "--out", str(out),
                      "--font-set", "bundled"]) == 1
    assert "nowhere" in capsys.readouterr().err
    assert data_main(["synth", "--out", str(out), "--tracks", "3", "--font",
                      str(tmp_path / "missing.sf2")]) == 1
    assert "missing.sf2" in capsys.readouterr().err


def _slow_job(folder, i):
    import time

    from trainer.data.synth import TrackResult

    if i == 1:
        raise RuntimeError("job 1 fails")
    time.sleep(0.2)
    (folder / f"{i}").touch()
    return TrackResult(str(i), "train", "built")


def test_a_failing_build_stops_its_queued_jobs(tmp_path):
    from trainer.data.synth import _run

    jobs = [(_slow_job, (tmp_path, i)) for i in range(30)]
    with pytest.raises(RuntimeError, match="job 1 fails"):
        list(_run(jobs, workers=2, progress=False, desc="test"))
    assert len(list(tmp_path.iterdir())) < 10


def test_quantize_keeps_the_sum_exact():
    from trainer.data.writer import TARGET_PEAK, quantize

    rng = np.random.default_rng(0)
    stems = [rng.normal(0, s, 5000).astype(np.float32) for s in (0.5, 2.0, 0.01)]
    q, mix, gain = quantize(stems)
    assert all(x.dtype == np.int16 for x in q) and mix.dtype == np.int16
    assert np.array_equal(np.sum(q, axis=0, dtype=np.int32), mix.astype(np.int32))
    peak = max(np.abs(mix).max(), max(np.abs(x).max() for x in q)) / 32767
    assert abs(peak - TARGET_PEAK) < 1e-3
    q, mix, gain = quantize([np.zeros(10, np.float32)])
    assert gain == 1.0 and not mix.any()


def test_midi_writer_round_trip():
    import io

    from trainer.data.writer import midi_bytes

    song = generate_song(21, 20.0)
    back = pretty_midi.PrettyMIDI(io.BytesIO(midi_bytes(song.midi.instruments, song.tempo)))
    assert back.get_tempo_changes()[1][0] == pytest.approx(song.tempo, abs=0.01)
    assert len(back.instruments) == len(song.midi.instruments)
    for a, b in zip(song.midi.instruments, back.instruments, strict=True):
        assert (a.program, a.is_drum, a.name, len(a.notes)) == (b.program, b.is_drum, b.name, len(b.notes))
        starts = {}
        for n in b.notes:
            starts.setdefault(n.pitch, []).append(n.start)
        assert max(min(abs(n.start - t) for t in starts[n.pitch]) for n in a.notes) < 2e-3
        assert len(a.pitch_bends) == len(b.pitch_bends)
        assert len(a.control_changes) == len(b.control_changes)
