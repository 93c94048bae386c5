"""How much identity a song's parts have, measured on their MIDI: part-roll signatures and a
music-ID score on them.

A part's signature over a stretch of a song is a handful of histograms, each scaled to unit
length: where in the bar notes start (16ths), the shapes of the chords it plays (intervals above
the lowest note of each onset), its melodic steps, its register, note lengths and density; for
drums, which drum is hit on which 16th of the bar. Signatures do not depend on tempo and, but
for the register, not on key, so two songs differ in them when their parts are written
differently.

Music-ID (as Table 1 of the paper, on rolls instead of embeddings): each song's first half
queries the second halves of all songs; a hit is when its own second half is nearest (cosine).
Songs that share patterns confuse each other; songs with identity do not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pretty_midi

STEPS = 24  # 16ths in bars of up to 6 beats
DRUM_LOW, DRUM_HIGH = 35, 60  # GM drum notes kept apart; others share one bin
ONSET_S = 0.03  # notes starting this close together form one chord


@dataclass(frozen=True)
class BeatGrid:
    """Beat times (s) and the beat index of the first downbeat; bars of ``beats_per_bar``."""

    times: np.ndarray
    first_downbeat: int
    beats_per_bar: int

    @classmethod
    def constant(cls, tempo: float, beats_per_bar: int, seconds: float) -> BeatGrid:
        return cls(np.arange(0.0, seconds + 60.0 / tempo, 60.0 / tempo), 0, beats_per_bar)

    def steps(self, t: np.ndarray) -> np.ndarray:
        """Onset times -> 16th index within the bar (0 .. 4 * beats_per_bar - 1)."""
        idx = np.arange(len(self.times), dtype=float)
        beat = np.interp(t, self.times, idx, left=np.nan, right=np.nan)
        last = (t - self.times[-1]) / (self.times[-1] - self.times[-2]) + idx[-1]
        beat = np.where(np.isnan(beat), last, beat) - self.first_downbeat
        return np.mod(np.rint(beat * 4).astype(int), 4 * self.beats_per_bar)


def _unit(x: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(x))
    return x / n if n > 0 else x


def _hist(values: np.ndarray, bins: int, lo: int = 0) -> np.ndarray:
    v = np.clip(np.asarray(values, dtype=int) - lo, 0, bins - 1)
    return np.bincount(v, minlength=bins).astype(float)


def pitched_signature(notes: Sequence[pretty_midi.Note], grid: BeatGrid) -> np.ndarray | None:
    """Signature of a pitched part's notes (None when it has fewer than 4)."""
    if len(notes) < 4:
        return None
    notes = sorted(notes, key=lambda n: (n.start, n.pitch))
    starts = np.array([n.start for n in notes])
    pitches = np.array([n.pitch for n in notes])
    beat_s = float(np.median(np.diff(grid.times)))
    chords = np.split(np.arange(len(notes)), np.flatnonzero(np.diff(starts) > ONSET_S) + 1)
    shapes = np.concatenate([(pitches[c] - pitches[c].min()) % 12 for c in chords])
    tops = np.array([pitches[c].max() for c in chords])
    lengths = np.log2(np.maximum([n.end - n.start for n in notes], 1e-3) / beat_s)
    span = max(starts[-1] - starts[0], beat_s) / beat_s
    return np.concatenate([
        _unit(_hist(grid.steps(starts[[c[0] for c in chords]]), STEPS)),
        _unit(_hist(shapes, 12)),
        _unit(_hist(np.clip(np.diff(tops), -12, 12), 25, -12)) if len(tops) > 1 else np.zeros(25),
        _unit(_hist(pitches // 6, 22)),
        _unit(_hist(np.rint(lengths * 2), 12, -8)),
        _unit(_hist([min(int(np.log2(len(notes) / span + 1) * 4), 15)], 16)),
    ])


def drum_signature(notes: Sequence[pretty_midi.Note], grid: BeatGrid) -> np.ndarray | None:
    """Signature of a drum part: which drum on which 16th of the bar, and density."""
    if len(notes) < 4:
        return None
    starts = np.array([n.start for n in notes])
    drum = np.clip(np.array([n.pitch for n in notes]), DRUM_LOW - 1, DRUM_HIGH) - (DRUM_LOW - 1)
    grid_hist = np.zeros((DRUM_HIGH - DRUM_LOW + 2, STEPS))
    np.add.at(grid_hist, (drum, grid.steps(starts)), 1.0)
    beat_s = float(np.median(np.diff(grid.times)))
    span = max(starts.max() - starts.min(), beat_s) / beat_s
    return np.concatenate([_unit(grid_hist.ravel()),
                           _unit(_hist([min(int(np.log2(len(notes) / span + 1) * 4), 15)], 16))])


def part_signature(insts: Sequence[pretty_midi.Instrument], grid: BeatGrid, t0: float, t1: float,
                   drums: bool) -> np.ndarray | None:
    """Signature of the notes of ``insts`` that start in [t0, t1)."""
    notes = [n for i in insts for n in i.notes if t0 <= n.start < t1]
    return drum_signature(notes, grid) if drums else pitched_signature(notes, grid)


def music_id(first: list[np.ndarray | None], second: list[np.ndarray | None]) -> tuple[float, int]:
    """(accuracy, songs counted): how often a song's first-half signature is nearest (cosine) to
    its own second half among all songs' second halves. Songs missing either half are left out."""
    keep = [i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a is not None and b is not None]
    if len(keep) < 2:
        return float("nan"), len(keep)
    a = np.stack([_unit(first[i]) for i in keep])  # type: ignore[arg-type]
    b = np.stack([_unit(second[i]) for i in keep])  # type: ignore[arg-type]
    sim = a @ b.T
    return float(np.mean(np.argmax(sim, axis=1) == np.arange(len(keep)))), len(keep)


def between_distance(sigs: list[np.ndarray | None]) -> float:
    """Mean cosine distance between the signatures of different songs."""
    s = np.stack([_unit(x) for x in sigs if x is not None])
    if len(s) < 2:
        return float("nan")
    d = 1.0 - s @ s.T
    return float(d[~np.eye(len(s), dtype=bool)].mean())


def _track_rolls(track: Path) -> tuple[dict[str, list[pretty_midi.Instrument]], BeatGrid, float]:
    """A built track's instruments by part (from MIDI/SNN.mid), its beat grid and duration."""
    import warnings

    import yaml

    meta = yaml.safe_load((track / "metadata.yaml").read_text(encoding="utf-8")) or {}
    tempo, duration = float(meta.get("tempo") or 120.0), float(meta.get("duration") or 0.0)
    meter = str(meta.get("meter") or "4/4").split("/")[0]
    parts: dict[str, list[pretty_midi.Instrument]] = {}
    for key, stem in sorted((meta.get("stems") or {}).items()):
        path = track / str(meta.get("midi_dir") or "MIDI") / f"{key}.mid"
        if not stem.get("audio_rendered", True) or not path.exists() or not stem.get("part"):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parts.setdefault(stem["part"], []).extend(pretty_midi.PrettyMIDI(str(path)).instruments)
    return parts, BeatGrid.constant(tempo, int(meter) if meter.isdigit() else 4, duration), duration


def dataset_identity(tracks: Sequence[Path], parts: Sequence[str]) -> dict[str, dict]:
    """Per part: music-ID accuracy (%) of halves of the built ``tracks``, songs counted, chance
    (%) and the mean signature distance between songs (0: alike, 1: nothing in common)."""
    first: dict[str, list] = {p: [] for p in parts}
    second: dict[str, list] = {p: [] for p in parts}
    for track in tracks:
        rolls, grid, duration = _track_rolls(track)
        for p in parts:
            insts = rolls.get(p, [])
            first[p].append(part_signature(insts, grid, 0.0, duration / 2, p == "drums"))
            second[p].append(part_signature(insts, grid, duration / 2, duration + 1.0, p == "drums"))
    out = {}
    for p in parts:
        acc, n = music_id(first[p], second[p])
        whole = [a + b if a is not None and b is not None else None
                 for a, b in zip(first[p], second[p], strict=True)]
        out[p] = {"music_id": round(100 * acc, 1), "songs": n,
                  "chance": round(100 / n, 1) if n else None,
                  "between_distance": round(between_distance(whole), 3) if n > 1 else None}
    return out
