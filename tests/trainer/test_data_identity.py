"""Part-roll signatures and music-ID: key- and tempo-free, and able to tell songs apart."""

import json

import numpy as np
import pretty_midi
import pytest

from trainer.data.cli import main as data_main
from trainer.data.identity import BeatGrid, between_distance, music_id, part_signature
from trainer.data.synth import build_dataset


def _part(pattern, pitches, tempo=100.0, bars=8, shift=0, drums=False):
    grid = BeatGrid.constant(tempo, 4, bars * 4 * 60 / tempo)
    inst = pretty_midi.Instrument(0, is_drum=drums)
    for b in range(bars):
        for step, pitch in zip(pattern, pitches, strict=True):
            t = grid.times[b * 4] + step * 15 / tempo
            inst.notes.append(pretty_midi.Note(90, pitch + shift, t, t + 10 / tempo))
    return inst, grid


def test_signatures_ignore_tempo_and_key_but_not_rhythm():
    parts = [_part([0, 4, 8, 10], [60, 64, 67, 64]),
             _part([0, 4, 8, 10], [60, 64, 67, 64], tempo=137.0),
             _part([0, 4, 8, 10], [60, 64, 67, 64], shift=5),  # another key: only register moves
             _part([0, 3, 6, 11], [60, 64, 67, 64])]  # another rhythm
    sig = [part_signature([x], g, 0, 1e9, False) for x, g in parts]
    cos = [float(sig[0] @ s / np.linalg.norm(sig[0]) / np.linalg.norm(s)) for s in sig]
    assert cos[1] > 0.999 and cos[2] > 0.9 > cos[3]
    assert part_signature([pretty_midi.Instrument(0)], parts[0][1], 0, 1e9, False) is None


def test_music_id_counts_own_halves():
    rng = np.random.default_rng(0)
    halves = [rng.random(30) for _ in range(5)]
    assert music_id(halves, [h + 0.01 for h in halves]) == (1.0, 5)
    assert music_id(halves, halves[1:] + halves[:1]) == (0.0, 5)  # each finds its neighbour
    acc, n = music_id([halves[0], None], [halves[1], halves[0]])  # one song left: no score
    assert n == 1 and np.isnan(acc)
    assert between_distance([halves[0], halves[0]]) == pytest.approx(0.0, abs=1e-9)


def test_cli_reports_identity_of_a_built_set(tmp_path, capsys):
    out = build_dataset(tmp_path / "ds", 4, 2, song_seconds=12.0, workers=1, splits=(1, 0, 0))
    assert data_main(["identity", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"drums", "bass", "piano", "guitar", "others"}
    counted = [r for r in report.values() if r["songs"] >= 2]
    assert counted and all(0 <= r["music_id"] <= 100 and r["chance"] == round(100 / r["songs"], 1)
                           for r in counted)
    assert data_main(["identity", str(out), "--split", "test"]) == 1
