"""A band for a POP909 song: drums and a bass line written from the song's own beats and chords,
and General MIDI programs for its MELODY, BRIDGE and PIANO tracks, all drawn per song.

Nothing here is a fixed pattern library: each song draws the parameters of its groove (step
grid, kick and snare placement, hi-hat voice and rate, ghost notes, open hats, percussion,
fills, swing, dynamics) and of its bass figure (rhythm locked to the kick or not, which chord
tones, approach notes, inversions, register, articulation), and the patterns are generated
from them. Bars where the piano plays denser than usual get the song's "lift" variant (busier
kick, another cymbal), so the drums follow the song's own sections.
"""

from __future__ import annotations

import bisect
import io
import warnings
from dataclasses import dataclass

import numpy as np
import pretty_midi

from trainer.data.pop909 import ChordLabel, Pop909Song

# General MIDI drum notes used here (all inside 36-59, which every kit we render has).
KICK, RIM, SNARE, CLAP, E_SNARE, CHH, PHH, OHH, CRASH, RIDE, BELL, TAMB, SPLASH, COWBELL, CRASH2 = (
    36, 37, 38, 39, 40, 42, 44, 46, 49, 51, 53, 54, 55, 56, 57)
TOMS = (50, 48, 47, 45, 43, 41)  # high to floor
DRUM_KITS = (0, 0, 8, 16, 24, 25, 32, 40)  # GM kit programs (standard twice as likely)
CHANGE_SNAP_S = 0.06  # a grid onset this close to a chord change gives way to it
BASS_PROGRAMS = (32, 33, 33, 34, 35, 36, 37, 38, 39)
PIANO_PROGRAMS = (0, 0, 0, 1, 2, 3, 4, 5, 7)
GUITAR_PROGRAMS = (24, 25, 26, 27, 28, 29, 30)
OTHER_PROGRAMS = (8, 9, 10, 11, 12, 13, 16, 17, 18, 19, 21, 22, 40, 41, 42, 48, 49, 50, 51,
                  52, 53, 54, 56, 57, 58, 59, 60, 61, 62, 64, 65, 66, 67, 68, 69, 70, 71, 72,
                  73, 74, 75, 79, 80, 81, 82, 84, 85, 87, 88, 89, 90, 91, 94, 95, 104, 105, 109)


# -- the beat grid ------------------------------------------------------------------------
@dataclass(frozen=True)
class Grid:
    """Beat times of a song and its bars (runs of beats from one downbeat to the next)."""

    times: np.ndarray  # (n,) s
    bars: tuple[tuple[int, int], ...]  # (first beat index, beats in the bar)

    @classmethod
    def of(cls, times: np.ndarray, downbeats: np.ndarray) -> Grid:
        starts = [int(i) for i in np.flatnonzero(downbeats)]
        if starts[0] != 0:
            starts.insert(0, 0)  # a pickup before the first downbeat
        ends = [*starts[1:], len(times)]
        return cls(np.asarray(times, dtype=np.float64),
                   tuple((s, e - s) for s, e in zip(starts, ends, strict=True) if e > s))

    def time(self, beat: float) -> float:
        """Seconds at a fractional beat position (the last beat length continues past the end)."""
        n = len(self.times)
        i = min(max(int(np.floor(beat)), 0), n - 2)
        return float(self.times[i] + (beat - i) * (self.times[i + 1] - self.times[i]))

    def bar_at(self, seconds: float) -> int:
        """Index of the bar that holds ``seconds`` (0 before the first, the last after the end)."""
        beat = int(np.searchsorted(self.times, seconds, side="right")) - 1
        firsts = [b[0] for b in self.bars]
        return max(0, bisect.bisect_right(firsts, max(beat, 0)) - 1)


class Chords:
    """Chord lookup by time."""

    def __init__(self, chords: tuple[ChordLabel, ...]):
        self.chords = chords
        self._starts = [c.start for c in chords]

    def at(self, t: float) -> ChordLabel | None:
        i = bisect.bisect_right(self._starts, t + 1e-3) - 1
        if i < 0 or t >= self.chords[i].end - 1e-3:
            return None
        return self.chords[i]

    def next_after(self, t: float) -> ChordLabel | None:
        i = bisect.bisect_right(self._starts, t + 1e-3)
        return self.chords[i] if i < len(self.chords) else None


# -- drums --------------------------------------------------------------------------------
def _step_kind(step: int, spb: int) -> str:
    """'beat', 'half' (the 8th between beats) or 'sub' (any finer step)."""
    pos = step % spb
    if pos == 0:
        return "beat"
    return "half" if spb % 2 == 0 and pos == spb // 2 else "sub"


def draw_groove_params(rng: np.random.Generator) -> dict:
    """The numbers a song's groove is generated from."""
    spb = int(rng.choice([4, 4, 4, 2, 2, 3]))
    return {
        "steps_per_beat": spb,
        "backbeat": str(rng.choice(["2and4", "2and4", "2and4", "halftime", "3only"])),
        "kick_beat": float(rng.uniform(0.1, 0.75)),
        "kick_half": float(rng.uniform(0.0, 0.55)),
        "kick_sub": float(rng.uniform(0.0, 0.3)) if spb > 2 else 0.0,
        "snare_voice": int(rng.choice([SNARE, SNARE, SNARE, E_SNARE, RIM, CLAP])),
        "ghost": float(rng.uniform(0.0, 0.35)) * (rng.random() < 0.6),
        "hat_voice": int(rng.choice([CHH, CHH, CHH, PHH, RIDE, TAMB])),
        "hat_every": int(rng.choice([1, 1, 2, spb])) if spb > 1 else 1,
        "hat_accent": float(rng.uniform(0.0, 0.5)),
        "open_hat": float(rng.uniform(0.0, 0.5)) * (rng.random() < 0.5),
        "perc": int(rng.choice([0, 0, TAMB, COWBELL, BELL, SPLASH])),
        "perc_rate": float(rng.uniform(0.1, 0.5)),
        "lift_cymbal": int(rng.choice([RIDE, OHH, CHH, CRASH2, BELL])),
        "lift_kick": float(rng.uniform(0.05, 0.3)),
        "phrase": int(rng.choice([4, 8, 8, 16])),
        "fill_beats": int(rng.choice([1, 1, 2])),
        "fill_kind": str(rng.choice(["toms", "snare", "mixed", "sparse"])),
        "swing": float(rng.uniform(0.08, 0.3)) if spb in (2, 4) and rng.random() < 0.25 else 0.0,
        "velocity": int(rng.integers(68, 108)),
        "humanize_ms": float(rng.uniform(0.0, 12.0)),
        "kit": int(rng.choice(DRUM_KITS)),
        "enter_bars_early": int(rng.choice([0, 0, 1, 2, 4])),
    }


def _backbeats(beats: int, mode: str) -> set[int]:
    """Beat indices (0-based) of the snare backbeat in a bar of ``beats`` beats."""
    if beats <= 1:
        return set()
    if mode == "halftime":
        return {beats // 2}
    if mode == "3only" and beats >= 4:
        return {2} | ({6} if beats >= 8 else set())
    if beats % 3 == 0 and beats >= 6:  # compound metre: the backbeat on the second pulse
        return set(range(3, beats, 6))
    return set(range(1, beats, 2))


def _bar_pattern(beats: int, p: dict, rng: np.random.Generator, lift: bool) -> dict[int, dict[int, int]]:
    """pitch -> {step: velocity} for one bar length, drawn once per song and variant."""
    spb = p["steps_per_beat"]
    v = p["velocity"]
    back = _backbeats(beats, p["backbeat"])
    pat: dict[int, dict[int, int]] = {KICK: {0: v + 12}, p["snare_voice"]: {}}
    prob = {"beat": p["kick_beat"], "half": p["kick_half"], "sub": p["kick_sub"]}
    for s in range(1, beats * spb):
        beat, kind = divmod(s, spb)[0], _step_kind(s, spb)
        if kind == "beat" and beat in back:
            continue
        if rng.random() < prob[kind] + (p["lift_kick"] if lift else 0.0):
            pat[KICK][s] = v
    for b in back:
        pat[p["snare_voice"]][b * spb] = min(127, v + 18)
    for s in range(beats * spb):
        if s not in pat[p["snare_voice"]] and _step_kind(s, spb) == "sub" and rng.random() < p["ghost"]:
            pat[p["snare_voice"]][s] = int(v * 0.4)
    cym = p["lift_cymbal"] if lift else p["hat_voice"]
    pat[cym] = {s: int(v * (1.0 if s % spb == 0 else 1.0 - p["hat_accent"]))
                for s in range(0, beats * spb, p["hat_every"])}
    if p["open_hat"] and not lift:
        for s in range(beats * spb):
            if _step_kind(s, spb) == "half" and rng.random() < p["open_hat"]:
                pat[cym].pop(s, None)
                pat.setdefault(OHH, {})[s] = v
    if p["perc"]:
        pat.setdefault(p["perc"], {}).update(
            {s: int(v * 0.7) for s in range(beats * spb) if rng.random() < p["perc_rate"]})
    return pat


def _fill(beats: int, p: dict, rng: np.random.Generator) -> dict[int, dict[int, int]]:
    """A fill over the last ``fill_beats`` beats of a bar: pitch -> {step: velocity}."""
    spb = p["steps_per_beat"]
    first = max(0, beats - p["fill_beats"]) * spb
    n = beats * spb - first
    out: dict[int, dict[int, int]] = {}
    toms = TOMS[int(rng.integers(0, 3)):]
    for k in range(n):
        if p["fill_kind"] == "sparse" and k % 2:
            continue
        if p["fill_kind"] == "snare" or (p["fill_kind"] == "mixed" and rng.random() < 0.4):
            pitch = SNARE
        else:
            pitch = toms[min(k * len(toms) // n, len(toms) - 1)]
        out.setdefault(pitch, {})[first + k] = int(p["velocity"] * (0.75 + 0.35 * k / max(n - 1, 1)))
    return out


def _hit(inst: pretty_midi.Instrument, pitch: int, t: float, vel: int, rng: np.random.Generator,
         humanize_ms: float) -> None:
    t = max(0.0, t + rng.normal(0.0, humanize_ms / 1000.0) if humanize_ms else t)
    vel = int(min(127, max(1, vel + rng.integers(-6, 7))))
    inst.notes.append(pretty_midi.Note(velocity=vel, pitch=pitch, start=t, end=t + 0.1))


def step_time(grid: Grid, first_beat: int, step: int, spb: int, swing: float) -> float:
    """Seconds of ``step`` (on a grid of ``spb`` steps per beat) in the bar from ``first_beat``."""
    beat, pos = divmod(step, spb)
    frac = pos / spb
    if swing and pos % 2 == 1 and spb in (2, 4):
        frac += swing / spb
    return grid.time(first_beat + beat + frac)


Patterns = dict[tuple[int, bool], dict[int, dict[int, int]]]


def groove_patterns(grid: Grid, lifted: list[bool], p: dict, rng: np.random.Generator) -> Patterns:
    """The song's bar patterns, one per (beats in the bar, lifted) that occurs in the song."""
    keys = sorted({(beats, lift) for (_, beats), lift in zip(grid.bars, lifted, strict=True)})
    return {k: _bar_pattern(k[0], p, rng, k[1]) for k in keys}


def write_drums(grid: Grid, play: list[bool], lifted: list[bool], patterns: Patterns, p: dict,
                rng: np.random.Generator) -> pretty_midi.Instrument:
    """The drum part: the song's groove on every bar where ``play``, fills at phrase ends."""
    inst = pretty_midi.Instrument(program=p["kit"], is_drum=True, name="DRUMS")
    spb = p["steps_per_beat"]
    for b, (first, beats) in enumerate(grid.bars):
        if not play[b]:
            continue
        pat = {k: dict(v) for k, v in patterns[(beats, lifted[b])].items()}
        phrase_end = (b + 1) % p["phrase"] == 0 or (b + 1 < len(lifted) and lifted[b + 1] != lifted[b])
        if phrase_end and b + 1 < len(play) and play[b + 1]:
            fill = _fill(beats, p, rng)
            start = min(min(s) for s in fill.values())
            pat = {k: {s: v for s, v in steps.items() if s < start or k == KICK} for k, steps in pat.items()}
            for k, steps in fill.items():
                pat.setdefault(k, {}).update(steps)
        if b == 0 or not play[b - 1] or lifted[b] != lifted[b - 1] or b % p["phrase"] == 0:
            pat.setdefault(CRASH, {})[0] = min(127, p["velocity"] + 15)
        for pitch, steps in pat.items():
            for s, vel in steps.items():
                _hit(inst, pitch, step_time(grid, first, s, spb, p["swing"]), vel, rng, p["humanize_ms"])
    inst.notes.sort(key=lambda n: (n.start, n.pitch))
    return inst


# -- bass ---------------------------------------------------------------------------------
def draw_bass_params(rng: np.random.Generator) -> dict:
    """The numbers a song's bass figure is generated from."""
    w = rng.dirichlet([3.0, 1.5, 1.0, 0.8])
    return {
        "program": int(rng.choice(BASS_PROGRAMS)),
        "low": int(rng.integers(28, 38)),  # lowest root note
        "lock_to_kick": float(rng.uniform(0.0, 1.0)),
        "extra_half": float(rng.uniform(0.0, 0.6)),
        "extra_sub": float(rng.uniform(0.0, 0.25)),
        "tones": {"root": float(w[0]), "fifth": float(w[1]), "octave": float(w[2]), "third": float(w[3])},
        "approach": float(rng.uniform(0.0, 0.7)),
        "inversion": float(rng.uniform(0.3, 1.0)),
        "legato": float(rng.uniform(0.45, 0.98)),
        "velocity": int(rng.integers(70, 110)),
        "accent": int(rng.integers(0, 20)),
    }


def _bass_rhythm(beats: int, spb: int, kick: dict[int, int] | None, p: dict,
                 rng: np.random.Generator) -> list[int]:
    """Onset steps of one bar of the bass figure."""
    steps = {0}
    for s in range(1, beats * spb):
        kind = _step_kind(s, spb)
        if kick and s in kick and rng.random() < p["lock_to_kick"]:
            steps.add(s)
        elif kind == "beat" and rng.random() < 0.5 + 0.4 * (1 - p["lock_to_kick"]):
            steps.add(s)
        elif kind == "half" and rng.random() < p["extra_half"]:
            steps.add(s)
        elif kind == "sub" and rng.random() < p["extra_sub"]:
            steps.add(s)
    return sorted(steps)


def _bass_pitch(chord: ChordLabel, first_of_chord: bool, nxt: ChordLabel | None, last_before_change: bool,
                p: dict, rng: np.random.Generator) -> int:
    root = p["low"] + (chord.root - p["low"]) % 12  # type: ignore[operator]
    if first_of_chord:
        if chord.bass is not None and chord.bass != chord.root and rng.random() < p["inversion"]:
            return root + (chord.bass - chord.root) % 12 - (12 if (chord.bass - chord.root) % 12 > 7 else 0)
        return root
    if last_before_change and nxt is not None and nxt.root is not None and rng.random() < p["approach"]:
        target = p["low"] + (nxt.root - p["low"]) % 12
        return target + int(rng.choice([-1, 1, -2, 2]))
    names = list(p["tones"])
    pick = names[int(rng.choice(len(names), p=list(p["tones"].values())))]
    if pick == "fifth":
        return root + 7 if root + 7 <= p["low"] + 19 else root - 5
    if pick == "octave":
        return root + 12
    if pick == "third" and len(chord.tones) > 1:
        return root + (chord.tones[1] - chord.root) % 12  # type: ignore[operator]
    return root


def write_bass(grid: Grid, chords: Chords, play: list[bool], patterns: Patterns, spb: int,
               swing: float, p: dict, rng: np.random.Generator) -> pretty_midi.Instrument:
    """The bass line: the song's figure over its chords; every chord change starts on its root
    (or the labelled bass note of an inversion); no notes under "N"."""
    inst = pretty_midi.Instrument(program=p["program"], name="BASS")
    figures: dict[int, list[int]] = {}
    onsets: list[float] = []
    for b, (first, beats) in enumerate(grid.bars):
        if not play[b]:
            continue
        if beats not in figures:
            kick = patterns.get((beats, False), patterns.get((beats, True), {})).get(KICK)
            figures[beats] = _bass_rhythm(beats, spb, kick, p, rng)
        onsets += [step_time(grid, first, s, spb, swing) for s in figures[beats]]
    playing = [c for c in chords.chords if c.root is not None and play[grid.bar_at(c.start)]]
    changes = sorted(c.start for c in playing)
    onsets = sorted(
        [t for t in onsets if not _near(changes, t, CHANGE_SNAP_S)] + changes)
    for i, t in enumerate(onsets):
        chord = chords.at(t)
        if chord is None or chord.root is None:
            continue
        end = min(onsets[i + 1] if i + 1 < len(onsets) else t + 0.5, chord.end)
        first = abs(t - chord.start) < 2e-3 or (i > 0 and chords.at(onsets[i - 1]) is not chord)
        last = i + 1 < len(onsets) and onsets[i + 1] >= chord.end - 1e-3
        pitch = _bass_pitch(chord, first, chords.next_after(t), last, p, rng)
        vel = p["velocity"] + (p["accent"] if first else 0) + int(rng.integers(-5, 6))
        inst.notes.append(pretty_midi.Note(
            velocity=int(min(127, max(1, vel))), pitch=int(pitch), start=t,
            end=t + max(0.05, (end - t) * p["legato"])))
    return inst


def _near(sorted_times: list[float], t: float, tol: float) -> bool:
    i = bisect.bisect_left(sorted_times, t)
    return any(abs(sorted_times[j] - t) < tol for j in (i - 1, i) if 0 <= j < len(sorted_times))


# -- the whole arrangement ----------------------------------------------------------------
@dataclass
class Arrangement:
    """A POP909 song as a band: its MIDI (MELODY, BRIDGE, PIANO, DRUMS, BASS) and what was drawn."""

    number: int
    midi: pretty_midi.PrettyMIDI
    tempo: float
    describe: dict


def _programs(rng: np.random.Generator) -> dict[str, int]:
    guitar = int(rng.choice(GUITAR_PROGRAMS))
    other = int(rng.choice(OTHER_PROGRAMS))
    melody_on_guitar = bool(rng.random() < 0.5)
    return {"MELODY": guitar if melody_on_guitar else other,
            "BRIDGE": other if melody_on_guitar else guitar,
            "PIANO": int(rng.choice(PIANO_PROGRAMS))}


def _read_midi(song: Pop909Song) -> pretty_midi.PrettyMIDI:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pretty_midi.PrettyMIDI(io.BytesIO(song.midi))


def _lifted(grid: Grid, piano: pretty_midi.Instrument | None) -> list[bool]:
    """Bars whose piano plays more notes per beat than the song's 60th percentile, judged by
    pairs of bars (so a lift lasts at least two bars)."""
    starts = np.array(sorted(n.start for n in piano.notes)) if piano else np.zeros(0)
    dens = np.array([np.searchsorted(starts, grid.time(f + n)) - np.searchsorted(starts, grid.time(f))
                     for f, n in grid.bars], dtype=float) / np.array([n for _, n in grid.bars])
    if not dens.any():
        return [False] * len(grid.bars)
    pairs = np.array([dens[b - b % 2: b - b % 2 + 2].mean() for b in range(len(dens))])
    return (pairs > np.quantile(pairs, 0.6)).tolist()


def arrange(song: Pop909Song, seed: int) -> Arrangement:
    """Arrange one POP909 song; deterministic in (song, seed)."""
    rng = np.random.default_rng([seed, song.number, 909])
    midi = _read_midi(song)
    tracks = {(i.name or "").strip().upper(): i for i in midi.instruments}
    programs = _programs(rng)
    for name, inst in tracks.items():
        if name in programs:
            inst.program, inst.is_drum = programs[name], False
    grid, chords = Grid.of(song.beats, song.downbeats), Chords(song.chords)
    melody = tracks.get("MELODY")
    first_note = min((n.start for n in melody.notes), default=0.0) if melody and melody.notes else 0.0
    gp, bp = draw_groove_params(rng), draw_bass_params(rng)
    enter = max(0, grid.bar_at(first_note) - gp["enter_bars_early"])
    last_chord = max((c.end for c in song.chords if c.root is not None), default=grid.times[-1])
    play = [enter <= b and grid.time(f) < last_chord for b, (f, _) in enumerate(grid.bars)]
    lifted = _lifted(grid, tracks.get("PIANO"))
    patterns = groove_patterns(grid, lifted, gp, rng)
    drums = write_drums(grid, play, lifted, patterns, gp, rng)
    bass = write_bass(grid, chords, play, patterns, gp["steps_per_beat"], gp["swing"], bp, rng)
    midi.instruments = [i for i in midi.instruments if (i.name or "").strip().upper() in programs]
    midi.instruments += [drums, bass]
    tempo = 60.0 / float(np.median(np.diff(song.beats)))
    describe = {
        "programs": {**programs, "DRUMS": gp["kit"], "BASS": bp["program"]},
        "groove": {k: v for k, v in gp.items() if k != "kit"},
        "bass_figure": {k: v for k, v in bp.items() if k != "program"},
        "drums_enter_s": round(grid.time(grid.bars[enter][0]), 3),
        "lifted_bars": int(sum(lifted)),
    }
    return Arrangement(song.number, midi, round(tempo, 3), _rounded(describe))


def _rounded(x):
    if isinstance(x, float):
        return round(x, 4)
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    return x


def crop(midi: pretty_midi.PrettyMIDI, start: float, seconds: float) -> None:
    """Keep ``seconds`` of ``midi`` from ``start`` (in place): notes starting in the window,
    moved to begin at 0 and cut at its end; controls and bends likewise."""
    end = start + seconds
    for inst in midi.instruments:
        inst.notes = [pretty_midi.Note(n.velocity, n.pitch, n.start - start, min(n.end, end) - start)
                      for n in inst.notes if start <= n.start < end - 0.01]
        inst.control_changes = [pretty_midi.ControlChange(c.number, c.value, c.time - start)
                                for c in inst.control_changes if start <= c.time < end]
        inst.pitch_bends = [pretty_midi.PitchBend(b.pitch, b.time - start)
                            for b in inst.pitch_bends if start <= b.time < end]
