"""Many timbres, reproducibly: named font sets and their record, drum-kit-only fonts, the render
cap, and per-stem production effects drawn per song."""

import hashlib
import json

import numpy as np
import pretty_midi
import pytest
import soundfile as sf
import yaml

from trainer.data import build_dataset
from trainer.data.effects import apply_chain, draw_chain, draw_room, song_chains
from trainer.data.render import (
    FONT_SETS,
    HELDOUT_SETS,
    FontSet,
    RenderError,
    TooLong,
    bundled_font,
    find_fonts,
    heldout_fonts,
    render_instrument,
    render_stems,
)
from trainer.data.synth import BUILD_FILE

SR = 22050


def _font(name):
    return next((p for p in find_fonts() if p.name == name), None)


def test_no_fonts_is_an_error_and_a_named_set_resolves():
    with pytest.raises(RenderError, match="--font-set"):
        FontSet.of([])
    with pytest.raises(RenderError, match="no font set 'nope'"):
        FontSet.of("nope")
    s = FontSet.of("bundled")
    assert s.fonts == (bundled_font(),) and s.drum_fonts == () and s.name == "bundled"
    assert set(FONT_SETS) >= {"bundled", "gm3", "debian", "heldout"}


def test_no_training_font_set_shares_a_font_with_the_heldout_ones():
    held = heldout_fonts()
    assert held == {"MuseScore_General_Full.sf3"}
    for name, (fonts, drums) in FONT_SETS.items():
        if name not in HELDOUT_SETS:
            assert not held & {*fonts, *drums}, name


def test_build_records_each_font_with_size_and_sha256(tmp_path):
    font = bundled_font()
    copy = tmp_path / "Copy.sf2"
    copy.write_bytes(font.read_bytes()[:-4] + b"\0\0\0\0")  # another file, another hash
    out = build_dataset(tmp_path / "ds", 2, 0, song_seconds=3.0, workers=1, fonts=[font])
    record = json.loads((out / BUILD_FILE).read_text())
    assert record["fonts"] == [{"name": font.name, "size": font.stat().st_size, "role": "all parts",
                                "sha256": hashlib.sha256(font.read_bytes()).hexdigest()}]
    assert record["font_set"] is None and record["effects"] is False
    with pytest.raises(ValueError, match="fonts="):  # a resume with other fonts is refused
        build_dataset(out, 2, 0, song_seconds=3.0, workers=1, fonts=[copy])


def test_drum_fonts_voice_only_drum_stems(tmp_path):
    font = bundled_font()
    plan = FontSet((font,), (font,))
    picks = {plan.pick(0, i) for i in range(20)}
    assert all(f == font for f, _ in picks)
    out = build_dataset(tmp_path / "ds", 3, 1, song_seconds=3.0, workers=1, fonts=plan, effects=True)
    record = json.loads((out / BUILD_FILE).read_text())
    assert [f["role"] for f in record["fonts"]] == ["all parts", "drums only"]


@pytest.mark.skipif(_font("Black_Pearl_4_LV2.sf2") is None, reason="avldrums.lv2-soundfont not installed")
def test_a_drum_kit_only_font_renders_gm_drum_notes():
    kit = _font("Black_Pearl_4_LV2.sf2")
    drums = pretty_midi.Instrument(program=0, is_drum=True)
    for k, pitch in enumerate((35, 36, 38, 42, 49)):  # 35: the kit has no second bass drum
        drums.notes.append(pretty_midi.Note(100, pitch, 0.5 * k, 0.5 * k + 0.1))
    audio = render_instrument(drums, kit, 3 * SR, SR)
    for k in range(5):
        assert np.abs(audio[int(0.5 * k * SR): int((0.5 * k + 0.3) * SR)]).max() > 0.01


def test_render_cap_skips_long_songs():
    midi = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=0)
    inst.notes.append(pretty_midi.Note(90, 60, 0.0, 30.0))
    midi.instruments.append(inst)
    with pytest.raises(TooLong, match="32 s long, more than the cap of 20 s"):
        render_stems(midi, bundled_font(), SR, max_seconds=20.0)
    with pytest.raises(ValueError, match="longer than the cap"):
        build_dataset("/nonexistent", 1, 0, song_seconds=50.0, max_seconds=20.0)


# -- effects ------------------------------------------------------------------------------
def test_chains_are_drawn_per_song_and_reproducible():
    parts = ["drums", "bass", "piano", "guitar", "others"]
    a, b = song_chains(parts, 0, 3, SR), song_chains(parts, 0, 3, SR)
    assert a == b and a != song_chains(parts, 0, 4, SR)
    for chain in a:
        types = [fx["type"] for fx in chain]
        assert types[0] == "HighpassFilter" and types[-2:] == ["Reverb", "Level"]
    rooms = {json.dumps({k: v for k, v in c[-2].items() if k in ("room_size", "damping")}) for c in a}
    assert len(rooms) == 1  # every stem of a song sends into the song's one room
    room = draw_room(np.random.default_rng(0))
    drive = [any(fx["type"] == "Distortion" for fx in draw_chain(p, room, SR, np.random.default_rng(i)))
             for p in ("guitar", "drums", "bass", "piano") for i in range(40)]
    assert 10 < sum(drive[:40]) < 35 and not any(drive[40:])  # drive only on guitars


def test_apply_chain_changes_timbre_keeps_loudness_and_level():
    rng = np.random.default_rng(0)
    t = np.arange(2 * SR) / SR
    x = (0.2 * np.sin(2 * np.pi * 220 * t) * (t % 0.5 < 0.25)).astype(np.float32)
    chain = [{"type": "Distortion", "drive_db": 24.0}, {"type": "Reverb", "room_size": 0.5,
             "damping": 0.5, "wet_level": 0.3, "dry_level": 0.8}, {"type": "Level", "gain_db": -6.0}]
    y = apply_chain(x, chain, SR)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.array_equal(y, apply_chain(x, chain, SR))
    rms = lambda v: float(np.sqrt(np.mean(v.astype(np.float64) ** 2)))  # noqa: E731
    assert rms(y) / rms(x) == pytest.approx(10 ** (-6 / 20), rel=1e-3)
    spectrum = lambda v: np.abs(np.fft.rfft(v)) / rms(v)  # noqa: E731
    assert np.abs(spectrum(y) - spectrum(x)).sum() > 0.3 * spectrum(x).sum()  # harmonics added
    silent = np.zeros(SR, np.float32)
    assert not apply_chain(silent, draw_chain("piano", draw_room(rng), SR, rng), SR).any()


def test_build_with_effects_records_them_and_keeps_mix_equal_sum(tmp_path):
    out = build_dataset(tmp_path / "fx", 2, 5, song_seconds=4.0, workers=1, effects=True)
    for track in out.glob("*/Track*"):
        meta = yaml.safe_load((track / "metadata.yaml").read_text())
        chains = song_chains([s["part"] for s in meta["stems"].values()], 5,
                             int(track.name[5:]) - 1, SR)
        assert [s["effects"] for s in meta["stems"].values()] == chains
        mix, _ = sf.read(str(track / "mix.flac"), dtype="int16")
        total = sum(sf.read(str(p), dtype="int16")[0].astype(np.int32) for p in (track / "stems").glob("*.flac"))
        assert np.array_equal(total, mix.astype(np.int32))
    dry = build_dataset(tmp_path / "dry", 2, 5, song_seconds=4.0, workers=1)
    a = sf.read(str(next(out.glob("*/Track00001/mix.flac"))))[0]
    b = sf.read(str(next(dry.glob("*/Track00001/mix.flac"))))[0]
    assert np.abs(a - b).max() > 0.05
