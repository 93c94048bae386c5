"""The loader on hand-made tracks in the real Slakh2100 format (44.1 kHz, no tempo in the
metadata, stems not rendered) and on the BabySlakh variant (wav stems)."""

import json
import os
import time

import mido
import numpy as np
import pytest
import soundfile as sf
import yaml

from model.embedder import segment_starts
from model.parts import PARTS
from trainer.data.dataset import (
    ACTIVITY_THRESHOLD_DB,
    MANIFEST_NAME,
    TEMPO_CLASSES,
    SlakhDataset,
    activity,
    part_of_stem,
    tempo_class,
)
from trainer.data.slakh import inst_class_of, midi_tempo

SR = 44100


def test_tempo_classes_cover_the_range_monotonically():
    bpms = np.geomspace(20, 400, 2000)
    classes = [tempo_class(b) for b in bpms]
    assert classes == sorted(classes)
    assert set(classes) == set(range(TEMPO_CLASSES))
    assert tempo_class(10) == 0 and tempo_class(1000) == TEMPO_CLASSES - 1
    # 60-200 BPM (the generator's range) spans most classes
    assert len({tempo_class(b) for b in np.geomspace(60, 200, 500)}) >= 24
    with pytest.raises(ValueError):
        tempo_class(float("nan"))


@pytest.mark.parametrize("stem, part", [
    ({"inst_class": "Drums", "is_drum": True, "program_num": 0, "audio_rendered": True}, "drums"),
    ({"inst_class": "Bass", "is_drum": False, "program_num": 33, "audio_rendered": True}, "bass"),
    ({"inst_class": "Piano", "is_drum": False, "program_num": 4, "audio_rendered": True}, "piano"),
    ({"inst_class": "Guitar", "is_drum": False, "program_num": 30, "audio_rendered": True}, "guitar"),
    ({"inst_class": "Organ", "is_drum": False, "program_num": 16, "audio_rendered": True}, "others"),
    ({"inst_class": "Chromatic Percussion", "is_drum": False, "program_num": 11}, "others"),
    ({"inst_class": "Strings (continued)", "is_drum": False, "program_num": 48}, "others"),
    ({"is_drum": False, "program_num": 35}, "bass"),  # class from the program when missing
])
def test_part_of_stem_follows_slakh_grouping(stem, part):
    assert part_of_stem(stem) == PARTS.index(part)


def test_unrendered_stem_has_no_part():
    assert part_of_stem({"inst_class": "Piano", "is_drum": False, "audio_rendered": False}) is None


def test_inst_class_of_programs():
    assert inst_class_of(0, False) == "Piano"
    assert inst_class_of(33, False) == "Bass"
    assert inst_class_of(27, False) == "Guitar"
    assert inst_class_of(3, True) == "Drums"
    with pytest.raises(ValueError):
        inst_class_of(128, False)


def test_activity_windows_match_segment_starts():
    sr, n = 1000, 10_500
    parts = np.zeros((5, n), np.float32)
    parts[1, :3000] = 0.1  # bass only in the first 3 s
    parts[4] = 0.5 * np.sin(np.arange(n))  # others everywhere
    parts[2, 5000] = 0.05  # a faint click: far below the threshold over a window
    act = activity(parts, sr, window=2.0, hop=1.0)
    starts = segment_starts(n, sr, 2.0, 1.0)
    assert act.shape == (5, len(starts)) and act.dtype == bool
    assert act[4].all() and not act[0].any() and not act[2].any()
    expected_bass = np.array([s < 3000 for s in starts])
    assert (act[1] == expected_bass).all()
    assert ACTIVITY_THRESHOLD_DB < -30


def _sine(freq, seconds, amp, sr=SR, start=0.0):
    n = int(seconds * sr)
    x = np.zeros(n, np.float32)
    t = np.arange(n - int(start * sr)) / sr
    x[int(start * sr):] = amp * np.sin(2 * np.pi * freq * t)
    return x


def _write_midi(path, bpm):
    mid = mido.MidiFile(ticks_per_beat=480)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    tr.append(mido.Message("note_on", note=60, velocity=90, time=0))
    tr.append(mido.Message("note_off", note=60, velocity=0, time=480 * 8))
    mid.save(str(path))


def make_slakh_track(track, ext=".flac", sr=SR, bpm=93.0, seconds=4.0):
    """A track laid out and described exactly like Slakh2100's (no tempo key)."""
    (track / "stems").mkdir(parents=True)
    (track / "MIDI").mkdir()
    stems = {
        "S00": ({"inst_class": "Guitar", "is_drum": False, "program_num": 30,
                 "midi_program_name": "Distortion Guitar", "plugin_name": "elektrik_guitar.nkm"},
                _sine(330, seconds, 0.2, sr)),
        "S01": ({"inst_class": "Bass", "is_drum": False, "program_num": 33,
                 "midi_program_name": "Electric Bass (finger)", "plugin_name": "scarbee_jay_bass.nkm"},
                _sine(55, seconds, 0.3, sr, start=2.0)),
        "S02": ({"inst_class": "Drums", "is_drum": True, "program_num": 128,
                 "midi_program_name": "Drums", "plugin_name": "session_kit_full.nkm"},
                _sine(200, seconds, 0.1, sr)),
        "S03": ({"inst_class": "Piano", "is_drum": False, "program_num": 0,
                 "midi_program_name": "Acoustic Grand Piano", "plugin_name": "None",
                 "audio_rendered": False}, None),
        "S04": ({"inst_class": "Strings", "is_drum": False, "program_num": 48,
                 "midi_program_name": "String Ensemble 1", "plugin_name": "chamber_strings.nkm"},
                _sine(440, seconds, 0.05, sr)),
        "S05": ({"inst_class": "Organ", "is_drum": False, "program_num": 17,
                 "midi_program_name": "Percussive Organ", "plugin_name": "b3.nkm"},
                _sine(660, seconds, 0.05, sr)),
    }
    meta = {"UUID": "0f1e2d3c4b5a69788796a5b4c3d2e1f0", "audio_dir": "stems",
            "lmd_midpath": "lmd_matched/X/Y/Z/abc.mid", "midi_dir": "MIDI",
            "normalization_factor": -13.0, "normalized": True, "overall_gain": 0.18,
            "target_peak": -1.0, "stems": {}}
    mix = np.zeros(int(seconds * sr), np.float32)
    for key, (entry, audio) in stems.items():
        entry = {"audio_rendered": True, "integrated_loudness": -20.0, "midi_saved": True, **entry}
        meta["stems"][key] = entry
        if audio is not None:
            sf.write(str(track / "stems" / f"{key}{ext}"), audio, sr, subtype="PCM_16")
            mix += audio
        _write_midi(track / "MIDI" / f"{key}.mid", bpm)
    sf.write(str(track / f"mix{ext}"), mix, sr, subtype="PCM_16")
    _write_midi(track / "all_src.mid", bpm)
    (track / "metadata.yaml").write_text(yaml.safe_dump(meta))
    return stems


@pytest.fixture()
def slakh_root(tmp_path):
    root = tmp_path / "slakh2100"
    make_slakh_track(root / "train" / "Track00001", bpm=93.0)
    make_slakh_track(root / "train" / "Track00007", bpm=150.0, seconds=3.0)
    (root / "validation").mkdir()
    return root


def test_info_names_the_plugins_of_real_slakh_metadata(slakh_root, capsys):
    from trainer.data.cli import main as data_main

    plugins = ["b3.nkm", "chamber_strings.nkm", "elektrik_guitar.nkm", "scarbee_jay_bass.nkm",
               "session_kit_full.nkm"]  # S03 ("None") was not rendered
    assert SlakhDataset(slakh_root, "train").summary()["fonts"] == plugins
    assert data_main(["info", str(slakh_root)]) == 0
    train = next(s for s in json.loads(capsys.readouterr().out) if s["split"] == "train")
    assert train["fonts"] == plugins


def test_loads_real_slakh_format(slakh_root):
    ds = SlakhDataset(slakh_root, "train")
    assert len(ds) == 2 and [t.name for t in ds.tracks] == ["Track00001", "Track00007"]
    t = ds.tracks[0]
    assert t.source == "slakh" and t.font is None and t.split == "train"
    assert t.tempo == pytest.approx(93.0, abs=0.01)  # from all_src.mid
    assert t.tempo_class == tempo_class(93.0)
    assert t.duration == pytest.approx(4.0) and t.sample_rate == 22050
    assert t.present == (True, True, False, True, True)  # piano's only stem is not rendered
    parts = ds.load_parts(0)
    mix = ds.load_mix(0)
    assert parts.shape == (5, 4 * 22050) and parts.dtype == np.float32
    assert mix.shape == (4 * 22050,) and mix.dtype == np.float32
    assert not parts[2].any()
    # others = strings + organ, resampled; the mix is the sum of all stems
    assert np.abs(parts.sum(axis=0) - mix).max() < 2e-3
    spec = np.abs(np.fft.rfft(parts[4]))
    freqs = np.fft.rfftfreq(parts.shape[1], 1 / 22050)
    peaks = sorted(freqs[np.argsort(spec)[-2:]].round())
    assert peaks == [440.0, 660.0]
    # bass enters at 2 s: silent then audible
    act = ds.activity(0, window=1.0)
    assert act.shape == (5, 4)
    assert list(act[1]) == [False, False, True, True]
    assert act[0].all() and act[3].all() and not act[2].any()
    assert len(SlakhDataset(slakh_root, "validation")) == 0


def test_keeps_the_file_rate_when_asked(slakh_root):
    ds = SlakhDataset(slakh_root, "train", sample_rate=SR)
    assert ds.load_parts(1).shape == (5, 3 * SR)


def test_babyslakh_wav_stems(tmp_path):
    root = tmp_path / "baby"
    make_slakh_track(root / "test" / "Track00003", ext=".wav", sr=16000)
    ds = SlakhDataset(root, "test")
    assert ds.load_parts(0).shape == (5, 4 * 22050)
    assert ds.tracks[0].present == (True, True, False, True, True)


def test_manifest_is_cached_and_notices_changes(slakh_root):
    SlakhDataset(slakh_root, "train")
    manifest = slakh_root / "train" / MANIFEST_NAME
    assert manifest.exists()
    before = manifest.stat().st_mtime_ns
    ds = SlakhDataset(slakh_root, "train")  # nothing changed: not rewritten
    assert manifest.stat().st_mtime_ns == before and len(ds) == 2
    # a new track appears
    make_slakh_track(slakh_root / "train" / "Track00009", bpm=120.0)
    assert [t.name for t in SlakhDataset(slakh_root, "train").tracks][-1] == "Track00009"
    # a track's metadata changes (tempo written in by hand)
    meta_path = slakh_root / "train" / "Track00001" / "metadata.yaml"
    meta = yaml.safe_load(meta_path.read_text())
    meta["tempo"] = 61.0
    time.sleep(0.01)
    meta_path.write_text(yaml.safe_dump(meta))
    os.utime(meta_path)
    assert SlakhDataset(slakh_root, "train").tracks[0].tempo == 61.0
    # a track disappears
    import shutil

    shutil.rmtree(slakh_root / "train" / "Track00007")
    assert [t.name for t in SlakhDataset(slakh_root, "train").tracks] == ["Track00001", "Track00009"]


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="unknown split"):
        SlakhDataset(tmp_path, "dev")
    with pytest.raises(FileNotFoundError, match="train"):
        SlakhDataset(tmp_path, "train")
    bad = tmp_path / "train" / "Track00001"
    bad.mkdir(parents=True)
    (bad / "metadata.yaml").write_text("stems: [unclosed")
    assert len(SlakhDataset(tmp_path, "train")) == 0  # logged and skipped


def test_midi_tempo_weighted_by_duration(tmp_path):
    mid = mido.MidiFile(ticks_per_beat=480)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(80), time=0))
    tr.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(140), time=480))
    tr.append(mido.Message("note_on", note=60, velocity=90, time=480 * 20))
    mid.save(str(tmp_path / "a.mid"))
    assert midi_tempo(tmp_path / "a.mid") == pytest.approx(140, abs=0.01)
    (tmp_path / "b.mid").write_bytes(b"not midi")
    with pytest.raises(ValueError, match="b.mid"):
        midi_tempo(tmp_path / "b.mid")


def test_flat_root_is_split_by_name(tmp_path):
    """BabySlakh keeps its tracks directly under the root, without split folders."""
    root = tmp_path / "babyslakh_16k"
    for k in range(1, 13):
        make_slakh_track(root / f"Track{k:05d}", ext=".wav", sr=16000, seconds=1.0)
    names = {s: [t.name for t in SlakhDataset(root, s).tracks] for s in ("train", "validation", "test")}
    assert sorted(sum(names.values(), [])) == [f"Track{k:05d}" for k in range(1, 13)]
    assert len(names["train"]) >= 6
    assert names == {s: [t.name for t in SlakhDataset(root, s).tracks] for s in names}


def test_broken_files_are_reported_not_fatal(slakh_root, caplog):
    (slakh_root / "train" / "Track00001" / "all_src.mid").write_bytes(b"garbage")
    (slakh_root / "train" / "Track00007" / "mix.flac").write_bytes(b"not flac at all")
    ds = SlakhDataset(slakh_root, "train")
    assert [t.name for t in ds.tracks] == ["Track00001"]
    assert ds.tracks[0].tempo == 120.0
    assert "all_src.mid" in caplog.text and "mix.flac" in caplog.text
