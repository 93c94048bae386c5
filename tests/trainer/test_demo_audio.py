"""``partwise-train demo-audio``: the demo songs rendered to the tagged mixes Partwise ships."""

from __future__ import annotations

import warnings
from pathlib import Path

import mutagen
import numpy as np
import pretty_midi
import pytest
import soundfile as sf

from assets import DEMO
from trainer import demo_audio
from trainer.data.render import bundled_font

CREDITS = """\
--Phase 1--
MAP01: "Test Song" by Some Composer, remix of an older tune
MAP02: Second Song by Another One
--Previously Featured--
MAP01: "Old Song" by Someone Else
"""


def test_credits_give_title_composer_and_note():
    credits = demo_audio.parse_credits((DEMO / "CREDITS-MUSIC").read_text(encoding="utf-8"))
    assert credits["d_e3m3"] == demo_audio.Credit("Wrought Havoc", 'Lola "BlueWorrior" Harvey')
    assert credits["d_victor"].title == "Distance" and credits["d_victor"].artist == "Korp"
    assert credits["d_map24"].note.startswith("remix of")
    # the songs replaced in earlier releases do not override the current ones
    assert credits["d_e1m1"].title == "Steel and Brass"
    assert demo_audio.parse_credits(CREDITS)["d_map01"] == demo_audio.Credit(
        "Test Song", "Some Composer", "remix of an older tune")


def test_every_shipped_song_is_its_midi_rendered_and_tagged():
    credits = demo_audio.parse_credits((DEMO / "CREDITS-MUSIC").read_text(encoding="utf-8"))
    for midi in sorted(DEMO.glob("*.mid")):
        audio = midi.with_suffix(".opus")
        assert audio.is_file(), f"{midi.name} has no rendered mix: partwise-train demo-audio"
        info = sf.info(str(audio))
        assert (info.channels, info.samplerate) == (2, demo_audio.SAMPLE_RATE)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            length = pretty_midi.PrettyMIDI(str(midi)).get_end_time()
        assert info.duration == pytest.approx(length, abs=3.0), midi.name
        tags = mutagen.File(str(audio), easy=True)
        assert tags["title"] == [credits[midi.stem].title]
        assert tags["artist"] == [credits[midi.stem].artist]
        assert tags["album"] == ["Freedoom"]


def _song(path: Path, seconds: float = 3.0) -> None:
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    piano = pretty_midi.Instrument(program=0)
    drums = pretty_midi.Instrument(program=0, is_drum=True)
    for i in range(int(seconds * 2)):
        piano.notes.append(pretty_midi.Note(velocity=90, pitch=60 + i % 5, start=i / 2, end=i / 2 + 0.4))
        drums.notes.append(pretty_midi.Note(velocity=100, pitch=36, start=i / 2, end=i / 2 + 0.1))
    pm.instruments += [piano, drums]
    pm.write(str(path))


def test_render_writes_tagged_stereo_opus(tmp_path):
    (tmp_path / "CREDITS-MUSIC").write_text(CREDITS)
    _song(tmp_path / "d_map01.mid")
    out = tmp_path / "out"
    assert demo_audio.main([str(tmp_path), "--font", str(bundled_font()), "--out", str(out),
                            "--workers", "1"]) == 0
    audio, sr = sf.read(str(out / "d_map01.opus"), dtype="float32")
    assert sr == 48000 and audio.shape[1] == 2
    assert audio.shape[0] / sr == pytest.approx(3.0 + 1.5, abs=0.6)  # the song and its tail
    rms = float(np.sqrt(np.mean(audio ** 2)))
    assert 10 ** (-20 / 20) < rms < 10 ** (-12 / 20)  # levelled near -16 dBFS
    tags = mutagen.File(str(out / "d_map01.opus"), easy=True)
    assert tags["title"] == ["Test Song"] and tags["artist"] == ["Some Composer"]
    assert "remix of an older tune" in tags["comment"][0]


def test_an_uncredited_song_is_named(tmp_path, capsys):
    (tmp_path / "CREDITS-MUSIC").write_text(CREDITS)
    _song(tmp_path / "d_map09.mid")
    assert demo_audio.main([str(tmp_path), "--font", str(bundled_font())]) == 1
    err = capsys.readouterr().err
    assert "d_map09.mid: not credited in CREDITS-MUSIC" in err
