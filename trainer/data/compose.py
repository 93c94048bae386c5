"""A song generator: varied multi-instrument General MIDI songs, deterministic per seed.

A song has a style, a tempo (60-200 BPM, log-uniform so the tempo classes are evenly used), a
key and mode, a form of sections (intro, verse, chorus, bridge, ...) each with its chord
progression, and five parts written for their instruments: drum grooves with fills, bass lines
that follow the harmony, piano comping, guitar strums, arpeggios and riffs, and "others"
(pads, leads, brass stabs, arpeggiators, counter lines). Parts drop in and out by section and
some songs leave a part out entirely, so every part is silent in a fair share of the audio.

Repeated sections replay the same material (the generator for a section type is seeded by the
song seed and that type), so songs have recognisable structure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pretty_midi

from model.parts import PARTS

# -- harmony ------------------------------------------------------------------------------
MODES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "harmonic minor": (0, 2, 3, 5, 7, 8, 11),
}
MINORISH = {"minor", "dorian", "phrygian", "harmonic minor"}
NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

# Progressions as 0-based scale degrees, one chord per bar (a pair = two chords in the bar).
PROG_MAJOR: tuple[tuple, ...] = (
    (0, 4, 5, 3), (0, 5, 3, 4), (5, 3, 0, 4), (0, 3, 4, 3), (0, 3, 0, 4), (3, 4, 0, 0),
    (0, 1, 3, 4), (0, 4, 3, 3), (0, 2, 3, 4), (1, 4, 0, 5), (0, (3, 4), 0, (3, 4)),
)
PROG_MINOR: tuple[tuple, ...] = (
    (0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 5, 3, 4), (0, 3, 6, 2), (5, 6, 0, 0),
    (0, 0, 3, 4), (0, 2, 6, 3), (0, (5, 6), 0, (5, 6)),
)
PROG_JAZZ: tuple[tuple, ...] = ((1, 4, 0, 0), (0, 5, 1, 4), (2, 5, 1, 4), (0, 3, 1, 4))
PROG_BLUES: tuple[tuple, ...] = ((0, 0, 0, 0, 3, 3, 0, 0, 4, 3, 0, 4), (0, 3, 0, 0, 3, 3, 0, 0, 4, 3, 0, 4))
PROG_MODAL: tuple[tuple, ...] = ((0, 0, 6, 6), (0, 6, 0, 6), (0, 0, 3, 3), (0, 1, 0, 1))


@dataclass(frozen=True)
class Chord:
    root: int  # pitch class 0-11
    tones: tuple[int, ...]  # pitch classes, root first (triad, or seventh chord)

    def name(self) -> str:
        third = (self.tones[1] - self.root) % 12
        q = "m" if third == 3 else ""
        if len(self.tones) > 3:
            q += "7" if (self.tones[3] - self.root) % 12 == 10 else "maj7"
        return NOTE_NAMES[self.root] + q


def chord_on(key: int, mode: str, degree: int, seventh: bool) -> Chord:
    scale = MODES[mode]
    idx = [degree, degree + 2, degree + 4] + ([degree + 6] if seventh else [])
    pcs = tuple((key + scale[i % 7]) % 12 for i in idx)
    return Chord(pcs[0], pcs)


def nearest(pcs, target: int, lo: int = 0, hi: int = 127) -> int:
    """The MIDI note of one of the pitch classes ``pcs`` nearest ``target`` within [lo, hi]."""
    best = None
    for pc in pcs:
        base = target - ((target - pc) % 12)
        for cand in (base, base + 12):
            if lo <= cand <= hi and (best is None or abs(cand - target) < abs(best - target)):
                best = cand
    return best if best is not None else min(max(target, lo), hi)


def voicing(chord: Chord, center: int, n: int = 4, spread: int = 12) -> list[int]:
    """A close voicing of ``n`` notes of ``chord`` around ``center`` (voice leading)."""
    notes: set[int] = set()
    for pc in chord.tones:
        notes.add(nearest([pc], center, center - spread, center + spread))
    k = 0
    while len(notes) < n and k < 8:
        pc = chord.tones[k % len(chord.tones)]
        notes.add(nearest([pc], center + (7 if k % 2 else -7), center - spread - 5, center + spread + 5))
        k += 1
    return sorted(notes)[:n] if len(notes) > n else sorted(notes)


# -- styles -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Style:
    name: str
    tempo: tuple[float, float]
    modes: tuple[str, ...]
    progressions: tuple[tuple, ...]
    drums: tuple[str, ...]
    kits: tuple[int, ...]
    bass: tuple[str, ...]
    bass_programs: tuple[int, ...]
    piano: tuple[str, ...]
    piano_programs: tuple[int, ...]
    guitar: tuple[str, ...]
    guitar_programs: tuple[int, ...]
    others: tuple[tuple[str, tuple[int, ...]], ...]  # (role, programs)
    swing: float = 0.0
    sevenths: float = 0.0  # probability of seventh chords
    beats: int = 4
    presence: tuple[float, float, float, float, float] = (0.9, 0.9, 0.6, 0.65, 0.75)


PADS = (48, 49, 50, 52, 88, 89, 90, 91, 94, 95, 19, 16)
LEADS = (80, 81, 84, 56, 65, 66, 73, 71, 68, 40, 64, 72)
STYLES: dict[str, Style] = {s.name: s for s in (
    Style("rock", (90, 170), ("major", "mixolydian", "minor"), PROG_MAJOR + PROG_MINOR,
          ("rock", "rock2", "halftime"), (0, 8, 16), ("root8", "root_fifth", "syncopated"),
          (33, 34, 35, 32), ("block", "pulse8", "half"), (0, 1, 2), ("power", "strum", "riff"),
          (29, 30, 27, 25), (("pad", (48, 16, 18, 50)), ("lead", (80, 81, 56, 65)), ("counter", (48, 61)))),
    Style("pop", (80, 140), ("major", "minor"), PROG_MAJOR + PROG_MINOR,
          ("pop", "rock", "halftime", "four"), (0, 8, 24), ("syncopated", "root8", "octave", "root_fifth"),
          (33, 38, 34, 39, 36), ("block", "pulse8", "arpeggio", "half"), (0, 1, 4, 5),
          ("strum", "arpeggio", "clean"), (24, 25, 26, 27),
          (("pad", PADS), ("lead", LEADS), ("stabs", (61, 62, 56)), ("arp", (8, 11, 12, 81)))),
    Style("funk", (85, 125), ("dorian", "mixolydian", "minor"), PROG_MODAL + PROG_MINOR,
          ("funk", "funk2"), (0, 8, 16), ("funk", "octave", "syncopated"), (33, 36, 37, 38),
          ("clav", "jazz", "pulse8"), (7, 4, 5, 0), ("chicken", "riff", "skank"), (27, 28, 26),
          (("stabs", (61, 62, 56, 65)), ("lead", (80, 65, 66, 56)), ("pad", (16, 17, 89)))),
    Style("jazz", (70, 200), ("major", "dorian", "minor"), PROG_JAZZ + PROG_MAJOR,
          ("jazz", "jazz_brush"), (32, 40, 0), ("walking", "root_fifth"), (32, 33, 35),
          ("jazz", "half", "arpeggio"), (0, 1, 4), ("jazz_comp", "arpeggio", "clean"), (26, 24, 25),
          (("lead", (65, 66, 56, 57, 73, 71)), ("counter", (48, 42, 57)), ("pad", (48, 11))),
          swing=0.7, sevenths=0.9),
    Style("ballad", (60, 90), ("major", "minor"), PROG_MAJOR + PROG_MINOR,
          ("halftime", "ballad", "pop"), (0, 40, 8), ("pedal", "root_fifth", "syncopated"),
          (32, 33, 35, 38), ("arpeggio", "half", "block"), (0, 1, 2, 4), ("arpeggio", "clean", "strum"),
          (24, 25, 26), (("pad", (48, 49, 89, 88, 52)), ("lead", (73, 71, 40, 68, 56)), ("counter", (42, 48, 70))),
          sevenths=0.3, presence=(0.7, 0.85, 0.8, 0.6, 0.85)),
    Style("latin", (90, 200), ("minor", "major", "dorian"), PROG_MINOR + PROG_MAJOR,
          ("bossa", "samba", "salsa"), (0, 8, 25), ("tumbao", "root_fifth", "syncopated"),
          (32, 33, 35), ("montuno", "jazz", "arpeggio"), (0, 1, 4), ("arpeggio", "strum", "clean"),
          (24, 25), (("lead", (56, 73, 65, 71, 22, 114)), ("stabs", (61, 56, 57)), ("pad", (48, 49, 11, 12))),
          sevenths=0.6),
    Style("electronic", (100, 150), ("minor", "phrygian", "dorian", "major"), PROG_MINOR + PROG_MODAL,
          ("four", "electro", "breakbeat"), (24, 25, 16, 0), ("octave", "root8", "pedal", "syncopated"),
          (38, 39, 36, 33), ("pulse8", "block", "half"), (4, 5, 2, 0), ("riff", "skank", "clean"),
          (27, 28, 30), (("arp", (81, 80, 87, 84, 98)), ("pad", (88, 89, 90, 91, 94, 95, 99, 100)), ("lead", (80, 81, 84, 87, 82))),
          presence=(0.95, 0.9, 0.5, 0.45, 0.95)),
    Style("metal", (100, 200), ("minor", "phrygian", "harmonic minor"), PROG_MINOR + PROG_MODAL,
          ("metal", "rock2", "halftime"), (0, 16, 8), ("root8", "gallop"), (34, 33, 35),
          ("half", "block"), (0, 1), ("power", "gallop", "riff"), (30, 29),
          (("pad", (48, 19, 52, 89)), ("lead", (81, 80, 87, 84))),
          presence=(0.95, 0.9, 0.35, 0.95, 0.6)),
    Style("reggae", (60, 90), ("major", "minor", "mixolydian"), PROG_MAJOR + PROG_MINOR,
          ("onedrop", "rock"), (0, 8), ("reggae", "syncopated"), (33, 32, 38),
          ("skank", "block"), (0, 4, 5), ("skank", "clean"), (27, 28, 26),
          (("stabs", (61, 56, 65)), ("pad", (16, 17, 18)), ("lead", (73, 65, 56)))),
    Style("disco", (105, 135), ("minor", "major", "dorian"), PROG_MINOR + PROG_MAJOR + PROG_MODAL,
          ("disco", "four"), (0, 8, 24), ("octave", "funk"), (33, 38, 36),
          ("pulse8", "block", "clav"), (0, 4, 7), ("chicken", "strum"), (27, 28),
          (("pad", (48, 49, 50)), ("stabs", (61, 62, 56)), ("lead", (80, 81, 73)))),
    Style("blues", (60, 140), ("mixolydian",), PROG_BLUES,
          ("shuffle", "ballad"), (0, 8, 32), ("walking", "boogie", "root_fifth"), (32, 33, 34),
          ("block", "jazz", "half"), (0, 1, 3), ("riff", "strum", "clean"), (26, 27, 29, 25),
          (("lead", (65, 66, 22, 56, 61)), ("pad", (16, 17, 18, 48))),
          swing=0.8, sevenths=0.8),
    Style("folk", (70, 160), ("major", "mixolydian", "minor"), PROG_MAJOR + PROG_MINOR,
          ("rock", "pop", "ballad"), (0, 8, 40), ("root_fifth", "pedal", "walking"), (32, 33, 35),
          ("half", "arpeggio", "block"), (0, 1, 3), ("strum", "arpeggio"), (25, 24, 26),
          (("lead", (40, 73, 72, 22, 105, 110)), ("counter", (42, 41, 70, 48)), ("pad", (48, 21, 23))),
          presence=(0.6, 0.8, 0.5, 0.9, 0.8)),
    Style("waltz", (70, 190), ("major", "minor", "harmonic minor"), PROG_MAJOR + PROG_MINOR,
          ("waltz",), (0, 40, 32), ("waltz", "root_fifth"), (32, 33, 35),
          ("waltz", "arpeggio", "half"), (0, 1, 4, 6), ("waltz", "arpeggio"), (24, 25, 26),
          (("lead", (40, 73, 68, 71, 21)), ("pad", (48, 49, 52)), ("counter", (42, 70, 58))),
          beats=3, presence=(0.65, 0.85, 0.75, 0.6, 0.85)),
)}

# -- drums --------------------------------------------------------------------------------
KICK, RIM, SNARE, CLAP, CHH, PHH, OHH, RIDE, BELL, CRASH, TAMB, COWBELL = (
    36, 37, 38, 39, 42, 44, 46, 51, 53, 49, 54, 56)
TOMS = (50, 48, 47, 45, 43, 41)  # high to floor
SHAKER, CLAVES, CONGA_HI, CONGA_LO, TIMBALE, CHINA = 70, 75, 62, 64, 65, 52

# step patterns on a 16th grid (12 steps for 3/4): X accent, x normal, o ghost.
GROOVES: dict[str, dict[int, str]] = {
    "rock": {KICK: "x.......x.x.....", SNARE: "....X.......X...", CHH: "x.x.x.x.x.x.x.x."},
    "rock2": {KICK: "x.x.....x.x..x..", SNARE: "....X.......X...", CHH: "X.x.X.x.X.x.X.x."},
    "pop": {KICK: "x.....x...x.....", SNARE: "....X.......X...", CHH: "xxxxxxxxxxxxxxxx"},
    "halftime": {KICK: "x.....x...x.....", SNARE: "........X.......", CHH: "x.x.x.x.x.x.x.x."},
    "four": {KICK: "x...x...x...x...", CLAP: "....x.......x...", OHH: "..x...x...x...x.", CHH: "x.x.x.x.x.x.x.x."},
    "funk": {KICK: "x..x..x...x..x..", SNARE: "....X..o.o..X..o", CHH: "XxxxXxxxXxxxXxxx"},
    "funk2": {KICK: "x.x...x..x.x....", SNARE: "....X.o..o.oX...", CHH: "x.xxx.xxx.xxx.x.", OHH: "..............x."},
    "jazz": {RIDE: "x...x.x.x...x.x.", PHH: "....x.......x...", KICK: "x..........o....", SNARE: "......o.....o..o"},
    "jazz_brush": {RIDE: "x...x.x.x...x.x.", PHH: "....x.......x...", SNARE: "o.o.o.o.o.o.o.o."},
    "ballad": {KICK: "x.......x.......", RIM: "....x.......x...", CHH: "x.x.x.x.x.x.x.x."},
    "bossa": {KICK: "x..xx..xx..xx..x", RIM: "x..x..x...x..x..", CHH: "xxxxxxxxxxxxxxxx"},
    "samba": {KICK: "x..xx..xx..xx..x", SNARE: "o.oo.o.oo.o.o.oo", SHAKER: "XxxxXxxxXxxxXxxx", TAMB: "..x...x...x...x."},
    "salsa": {COWBELL: "x.x.x.x.x.x.x.x.", CLAVES: "x..x..x...x.x...", CONGA_HI: "......xx......xx", CONGA_LO: "....x.......x...", KICK: "...x.......x...."},
    "electro": {KICK: "x.....x...x.....", CLAP: "....x.......x...", CHH: "xxXxxxXxxxXxxxXx"},
    "breakbeat": {KICK: "x.x.......x.....", SNARE: "....X..o.o..X...", CHH: "x.x.x.x.x.x.x.x.", OHH: "..............x."},
    "metal": {KICK: "xxxxxxxxxxxxxxxx", SNARE: "....X.......X...", CHINA: "x...x...x...x..."},
    "onedrop": {KICK: "........x.......", RIM: "........x.......", CHH: "x.x.x.x.x.x.x.x.", OHH: "......x.......x."},
    "disco": {KICK: "x...x...x...x...", SNARE: "....X.......X...", OHH: "..x...x...x...x.", CHH: "x.x.x.x.x.x.x.x."},
    "shuffle": {KICK: "x.......x.......", SNARE: "....X.......X...", RIDE: "x.xxx.xxx.xxx.xx"},
    "waltz": {KICK: "x...........", SNARE: "....o...o...", CHH: "x.x.x.x.x.x."},
}
STEP_VEL = {"X": 112, "x": 90, "o": 42}


@dataclass
class Note:
    pitch: int
    start: float  # beats from the start of the song
    dur: float  # beats
    vel: int


@dataclass
class Section:
    kind: str
    bars: int
    chords: list[list[Chord]]  # per bar: one or two chords
    parts: tuple[bool, bool, bool, bool, bool]
    key: int = 0  # the key of this section (a late chorus may modulate up)


@dataclass
class PartPlan:
    part: str
    role: str
    pattern: str
    program: int
    is_drum: bool = False
    notes: list[Note] = field(default_factory=list)
    controls: list[tuple[float, int, int]] = field(default_factory=list)  # (beat, cc, value)
    bends: list[tuple[float, int]] = field(default_factory=list)  # (beat, -8192..8191)


@dataclass
class Song:
    """A generated song: its description and its MIDI."""

    seed: int
    style: str
    tempo: float
    key: int
    mode: str
    beats: int
    sections: list[Section]
    plans: list[PartPlan]
    midi: pretty_midi.PrettyMIDI
    seconds: float
    identity: Identity | None = None

    def describe(self) -> dict:
        return {
            **({"identity": self.identity.describe()} if self.identity else {}),
            "style": self.style, "tempo": round(self.tempo, 3),
            "key": f"{NOTE_NAMES[self.key]} {self.mode}", "meter": f"{self.beats}/4",
            "form": [f"{s.kind}:{s.bars}" for s in self.sections],
            "arrangement": [f"{p.part}: {p.role}/{p.pattern}, program {p.program}"
                            for p in self.plans],
        }


# -- form ---------------------------------------------------------------------------------
FORMS = (
    ("intro", "verse", "chorus", "verse", "chorus", "bridge", "chorus", "outro"),
    ("intro", "verse", "verse", "chorus", "breakdown", "chorus", "outro"),
    ("intro", "a", "a", "b", "a", "solo", "a", "outro"),
    ("verse", "chorus", "verse", "chorus", "bridge", "chorus"),
    ("intro", "build", "drop", "breakdown", "build", "drop", "outro"),
)
SECTION_PLAY = {  # probability that a part present in the song plays in such a section
    "intro": 0.45, "verse": 0.75, "chorus": 0.95, "bridge": 0.6, "breakdown": 0.35,
    "outro": 0.5, "a": 0.8, "b": 0.7, "solo": 0.7, "build": 0.6, "drop": 0.95,
}

SECTION_DYNAMICS = {"intro": -10, "breakdown": -14, "outro": -8, "chorus": 8, "drop": 10, "build": 2}


def _section_bars(kind: str, rng: np.random.Generator) -> int:
    if kind in ("intro", "outro", "breakdown"):
        return int(rng.choice([2, 4, 4]))
    return int(rng.choice([4, 8, 8]))


def _progression(style: Style, mode: str, rng: np.random.Generator) -> tuple:
    pool = style.progressions
    if style.name not in ("jazz", "blues", "funk"):
        pool = PROG_MINOR if mode in MINORISH else PROG_MAJOR
        if style.name in ("electronic", "metal", "funk"):
            pool = pool + PROG_MODAL
    return pool[int(rng.integers(len(pool)))]


def _chords(prog: tuple, bars: int, key: int, mode: str, sevenths: bool) -> list[list[Chord]]:
    out = []
    for b in range(bars):
        deg = prog[b % len(prog)]
        degs = deg if isinstance(deg, tuple) else (deg,)
        out.append([chord_on(key, mode, d, sevenths) for d in degs])
    return out


def _chord_at(bar: list[Chord], beat: float, beats: int) -> Chord:
    return bar[min(int(beat / (beats / len(bar))), len(bar) - 1)]


# -- part writers (one bar at a time, beats relative to the bar) --------------------------
def _steps(pattern: str, beats: int) -> list[tuple[float, int]]:
    steps = len(pattern)
    return [(i * beats / steps, STEP_VEL[c]) for i, c in enumerate(pattern) if c in STEP_VEL]


def drum_bar(groove: str | dict[int, str], beats: int, fill: bool, crash: bool,
             rng: np.random.Generator) -> list[Note]:
    """One bar of a groove (a name in :data:`GROOVES` or a song's own pattern dict)."""
    notes = []
    fill_from = beats - (2 if rng.random() < 0.3 else 1) if fill else beats + 1
    for pitch, pat in (GROOVES[groove] if isinstance(groove, str) else groove).items():
        for beat, vel in _steps(pat, beats):
            if beat >= fill_from and pitch not in (KICK, PHH):
                continue
            notes.append(Note(pitch, beat, 0.25, vel))
    if fill:
        toms = list(TOMS[int(rng.integers(0, 2)):])
        n = int((beats - fill_from) * 4)
        for k in range(n):
            pitch = SNARE if rng.random() < 0.3 else toms[min(k * len(toms) // max(n, 1), len(toms) - 1)]
            notes.append(Note(pitch, fill_from + k * 0.25, 0.25, int(80 + 30 * k / max(n, 1))))
    if crash:
        notes.append(Note(CRASH, 0.0, 1.0, 110))
        notes.append(Note(KICK, 0.0, 0.25, 110))
    return notes


BASS_GRIDS = {"funk": "x..x..x.x.x..xo.", "syncopated": "x..x..x.x..x..x.",
              "reggae": "x.....x.x.......", "tumbao": "......x.....x...",
              "gallop": "x.xxx.xxx.xxx.xx", "boogie": "x.x.x.x.x.x.x.x."}


def bass_bar(pattern: str, bar: list[Chord], nxt: Chord, beats: int, rng: np.random.Generator,
             center: int = 38, grid: str | None = None) -> list[Note]:
    """One bar of a bass figure around ``center``; ``grid`` replaces the figure's step grid."""
    def root(c: Chord) -> int:
        return nearest([c.root], center, 28, 50)

    def fifth(c: Chord) -> int:
        return nearest([c.tones[2]], root(c) + 7, 28, 55)

    out: list[Note] = []
    if pattern == "pedal":
        for i, c in enumerate(bar):
            d = beats / len(bar)
            out.append(Note(root(c), i * d, d * 0.95, 95))
    elif pattern == "root8":
        for k in range(beats * 2):
            c = _chord_at(bar, k / 2, beats)
            out.append(Note(root(c), k / 2, 0.45, 100 if k % 2 == 0 else 85))
    elif pattern == "root_fifth":
        for b in range(beats):
            c = _chord_at(bar, b, beats)
            out.append(Note(root(c) if b % 2 == 0 else fifth(c), b, 0.9, 95))
    elif pattern == "waltz":
        c = bar[0]
        out.append(Note(root(c) if rng.random() < 0.7 else fifth(c), 0, 0.95, 98))
    elif pattern == "octave":
        for k in range(beats * 2):
            c = _chord_at(bar, k / 2, beats)
            out.append(Note(root(c) + (12 if k % 2 else 0), k / 2, 0.4, 100 if k % 2 == 0 else 90))
    elif pattern == "walking":
        for b in range(beats):
            c = _chord_at(bar, b, beats)
            if b == 0:
                p = root(c)
            elif b == beats - 1:
                target = root(nxt)
                p = target + (1 if rng.random() < 0.5 else -1)
            else:
                p = nearest(c.tones if rng.random() < 0.7 else MODES["major"], out[-1].pitch + int(rng.choice([-4, -3, 2, 3, 4])), 28, 55)
            out.append(Note(p, b, 0.95, 92))
    elif pattern in ("funk", "syncopated", "reggae", "tumbao", "gallop", "boogie"):
        grid = grid or BASS_GRIDS[pattern]
        boogie = [0, 4, 7, 9, 10, 9, 7, 4]
        for k, (beat, vel) in enumerate(_steps(grid, beats)):
            c = _chord_at(bar, beat, beats)
            if pattern == "boogie":
                p = root(c) + boogie[k % 8] - (12 if root(c) + boogie[k % 8] > 52 else 0)
            elif pattern == "tumbao":
                p = fifth(c) if beat < 2 else root(nxt)
            elif pattern == "funk" and vel == STEP_VEL["x"] and rng.random() < 0.35:
                p = root(c) + 12
            elif pattern == "reggae" and k == 1:
                p = fifth(c)
            else:
                p = root(c)
            dur = 0.2 if vel == STEP_VEL["o"] else (0.7 if pattern in ("reggae", "tumbao") else 0.22)
            out.append(Note(p, beat, dur, max(vel, 70)))
    return out


def comp_bar(pattern: str, bar: list[Chord], beats: int, center: int, rng: np.random.Generator,
             n_voices: int = 4, variant: int = 0, arp: tuple[int, ...] | None = None,
             strum: str | None = None) -> list[Note]:
    """Chordal accompaniment (piano, guitar, pads, stabs) in one bar.

    ``variant`` picks among rhythm variants (a strum pattern) and stays fixed over a section;
    a song's own arpeggio order ``arp`` and strum pattern ``strum`` replace the shared ones.
    """
    out: list[Note] = []

    def chord_notes(c: Chord, beat: float, dur: float, vel: int, n: int = n_voices, strum: float = 0.0):
        for i, p in enumerate(voicing(c, center, n)):
            out.append(Note(p, beat + i * strum, max(dur - i * strum, 0.05), vel))

    if pattern in ("half", "clean", "pad"):
        for i, c in enumerate(bar):
            d = beats / len(bar)
            chord_notes(c, i * d, d * 0.98, 72 if pattern == "pad" else 80)
        if pattern == "half":  # left hand roots
            for i, c in enumerate(bar):
                d = beats / len(bar)
                out.append(Note(nearest([c.root], center - 14, 36, 60), i * d, d * 0.9, 80))
    elif pattern in ("block", "jazz_comp"):
        for b in range(beats):
            chord_notes(_chord_at(bar, b, beats), b, 0.9 if pattern == "block" else 0.45,
                        85 if b % 2 == 0 else 75, 3 if pattern == "jazz_comp" else n_voices)
    elif pattern == "pulse8":
        for k in range(beats * 2):
            chord_notes(_chord_at(bar, k / 2, beats), k / 2, 0.42, 88 if k % 2 == 0 else 70)
    elif pattern == "arpeggio":
        seq = arp or (0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1)
        for k in range(beats * 2):
            c = _chord_at(bar, k / 2, beats)
            v = voicing(c, center, 4)
            out.append(Note(v[seq[k % len(seq)] % len(v)], k / 2, 0.9, 78 if k % 2 else 88))
    elif pattern == "jazz":
        hits = [(0.0, 1.2), (1.5, 0.4)] if rng.random() < 0.5 else [(1.5, 1.0), (3.5, 0.4)]
        for beat, dur in hits:
            if beat < beats:
                c = _chord_at(bar, beat, beats)
                shell = [c.tones[1], c.tones[-1], (c.tones[0] + 2) % 12]
                for p in sorted({nearest([pc], center, center - 9, center + 9) for pc in shell}):
                    out.append(Note(p, beat, dur, 75))
    elif pattern in ("montuno", "clav", "skank", "chicken"):
        grid = {"montuno": "x.xx.x.xx.xx.x.x", "clav": "x..x..x.x.x..x.x",
                "skank": "....x.......x...", "chicken": "oxoxoxxoxoxoxxox"}[pattern]
        for beat, vel in _steps(grid, beats):
            c = _chord_at(bar, beat, beats)
            if pattern == "chicken" and vel == STEP_VEL["o"]:
                out.append(Note(nearest([c.tones[1]], center + 5, 48, 88), beat, 0.08, 50))
                continue
            n = 2 if pattern == "montuno" else 3
            chord_notes(c, beat, 0.2 if pattern != "montuno" else 0.24, vel, n)
    elif pattern == "waltz":
        for b in range(1, beats):
            chord_notes(_chord_at(bar, b, beats), b, 0.8, 72, 3)
    elif pattern == "strum":
        strums = strum or ("D.DU.UDU", "D.D.D.DU", "D..UD.DU", "D.DUDUDU")[variant % 4]
        for k, s in enumerate(strums[: beats * 2]):
            if s == ".":
                continue
            c = _chord_at(bar, k / 2, beats)
            gap = 0.02 if s == "D" else -0.015
            v = voicing(c, center, 6, 14)
            if s == "U":
                v = v[::-1][:4]
            for i, p in enumerate(v):
                out.append(Note(p, k / 2 + i * abs(gap), 0.48, 85 if s == "D" else 68))
    elif pattern in ("power", "gallop"):
        grid = "x.x.x.x.x.x.x.x." if pattern == "power" else "x.xxx.xxx.xxx.xx"
        for beat, vel in _steps(grid[: beats * 4], beats):
            c = _chord_at(bar, beat, beats)
            r = nearest([c.root], 45, 40, 52)
            for p in (r, r + 7, r + 12):
                out.append(Note(p, beat, 0.2, vel))
    return out


MELODY_RHYTHMS = ((0, 1, 2, 3), (0, 0.5, 1, 2, 2.5, 3), (0, 1.5, 2, 3), (0, 2), (0.5, 1, 1.5, 2, 3),
                  (0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5), (0, 0.75, 1.5, 2, 3))


def melody_bar(bar: list[Chord], key: int, mode: str, beats: int, lo: int, hi: int,
               prev: int, rng: np.random.Generator, phrase_end: bool, dense: float = 0.5,
               rhythms: tuple[tuple[float, ...], ...] = MELODY_RHYTHMS,
               steps: tuple[int, ...] = (-2, -1, -1, 1, 1, 2, 0, 3, -3)) -> list[Note]:
    """A melodic line over one bar: scale steps, chord tones on strong beats; ``rhythms`` are
    the bar rhythms to choose from and ``steps`` the moves (a song's own, or the shared ones)."""
    scale = [(key + s) % 12 for s in MODES[mode]]
    if phrase_end:
        onsets = [0.0, 1.0] if rng.random() < 0.5 else [0.0]
    else:
        onsets = rhythms[int(rng.integers(len(rhythms)))] if rng.random() < 0.5 + dense * 0.4 else [0, 2]
    onsets = [o for o in onsets if o < beats]
    out: list[Note] = []
    p = prev
    for j, o in enumerate(onsets):
        c = _chord_at(bar, o, beats)
        step = int(rng.choice(steps))
        target = min(max(p + step * 2, lo + 2), hi - 2)
        p = nearest(c.tones, target, lo, hi) if o in (0, 2) else nearest(scale, target, lo, hi)
        end = onsets[j + 1] if j + 1 < len(onsets) else beats
        out.append(Note(p, o, max((end - o) * 0.92, 0.2), int(rng.integers(78, 105))))
    return out


def answer_bar(call: list[Note], bar: list[Chord], key: int, mode: str, beats: int,
               lo: int, hi: int) -> list[Note]:
    """Replay ``call`` (one bar of melody) over ``bar``: same rhythm, same contour, moved to
    the new chord and kept in the scale."""
    if not call:
        return []
    scale = [(key + s) % 12 for s in MODES[mode]]
    first = nearest(_chord_at(bar, call[0].start, beats).tones, call[0].pitch, lo, hi)
    shift = first - call[0].pitch
    out = []
    for j, n in enumerate(call):
        pcs = _chord_at(bar, n.start, beats).tones if j == 0 else scale
        out.append(Note(nearest(pcs, n.pitch + shift, lo, hi), n.start, n.dur, n.vel))
    return out


def arp_bar(bar: list[Chord], beats: int, center: int, rng: np.random.Generator,
            shape: tuple[int, ...] | None = None) -> list[Note]:
    """Sixteenths over the chord in the order ``shape`` (a song's own, else one of two)."""
    out = []
    if shape is None:
        shape = (0, 1, 2, 3, 4, 3, 2, 1) if rng.random() < 0.5 else (0, 2, 1, 3, 2, 4, 3, 1)
    for k in range(beats * 4):
        c = _chord_at(bar, k / 4, beats)
        v = voicing(c, center, 5, 14)
        out.append(Note(v[shape[k % len(shape)] % len(v)], k / 4, 0.22, 92 if k % 4 == 0 else 76))
    return out


# -- song identity ------------------------------------------------------------------------
HAT_VOICES = (CHH, CHH, PHH, RIDE, TAMB, SHAKER, CHH)
SNARE_VOICES = (SNARE, SNARE, SNARE, 40, RIM, CLAP)  # 40: electric snare
PERC_VOICES = (TAMB, COWBELL, SHAKER, CLAVES, CONGA_HI, BELL)
ALL_KITS = (0, 8, 16, 24, 25, 32, 40, 48)
FAMILY_PROGRAMS = {"bass": tuple(range(32, 40)), "piano": tuple(range(0, 8)),
                   "guitar": tuple(range(24, 31))}


@dataclass(frozen=True)
class Identity:
    """What makes a generated song its own beyond its style, drawn once per song: its drum
    voices, kick variations, ghost notes and percussion, its bass register and figure grid,
    its voicings, arpeggio order and strum, its melodic rhythms, and wider program choices."""

    seed: int
    hat: int
    hat_rate: int  # 0: as the groove has it, else hits every 4 / 2 / 1 sixteenths
    snare: int
    ghosts: float
    kick_flips: int
    perc: tuple[int, str] | None
    bass_center: int
    bass_flips: int
    comp_shift: int
    voices: int
    arp: tuple[int, ...]
    strum: str
    rhythms: tuple[tuple[float, ...], ...]
    steps: tuple[int, ...]  # melodic moves, in scale steps
    arp_shape: tuple[int, ...]
    stab: str
    free_programs: float  # chance that a part's program comes from its whole GM family

    def describe(self) -> dict:
        return {"hat": self.hat, "snare": self.snare, "bass_center": self.bass_center,
                "comp_shift": self.comp_shift, "voices": self.voices, "strum": self.strum,
                "arp": list(self.arp), "arp_shape": list(self.arp_shape), "stab": self.stab,
                "steps": list(self.steps), "rhythms": [list(r) for r in self.rhythms]}


def _steps_string(rng: np.random.Generator, n: int, p: float, first: str = "x") -> str:
    return first + "".join("x" if rng.random() < p else "." for _ in range(n - 1))


def _rhythm(rng: np.random.Generator, beats: int) -> tuple[float, ...]:
    grid = 0.25 if rng.random() < 0.35 else 0.5
    slots = np.arange(0.0, beats, grid)
    keep = rng.random(len(slots)) < rng.uniform(0.25, 0.7)
    keep[0] = rng.random() < 0.85
    if not keep.any():
        keep[0] = True
    return tuple(float(x) for x in slots[keep])


def draw_identity(seed: int, beats: int) -> Identity:
    rng = np.random.default_rng([seed, 4243])
    perc = None
    if rng.random() < 0.35:
        perc = (int(rng.choice(PERC_VOICES)), _steps_string(rng, beats * 4, 0.3, "."))
    strum = "D" + "".join(str(rng.choice(["D", "U", "."], p=[0.35, 0.35, 0.3])) for _ in range(7))
    return Identity(
        seed=seed, hat=int(rng.choice(HAT_VOICES)), hat_rate=int(rng.choice([0, 0, 4, 2, 1])),
        snare=int(rng.choice(SNARE_VOICES)), ghosts=float(rng.uniform(0, 0.3)) * (rng.random() < 0.5),
        kick_flips=int(rng.integers(0, 4)), perc=perc, bass_center=int(rng.integers(34, 43)),
        bass_flips=int(rng.integers(0, 3)), comp_shift=int(rng.integers(-5, 7)),
        voices=int(rng.integers(3, 6)), arp=tuple(int(x) for x in rng.integers(0, 4, 8)),
        strum=strum, rhythms=tuple(_rhythm(rng, beats) for _ in range(int(rng.integers(2, 5)))),
        steps=tuple(int(x) for x in rng.choice([-3, -2, -1, 0, 1, 2, 3, 4, -4], 9, p=_step_weights(rng))),
        arp_shape=tuple(int(x) for x in rng.integers(0, 5, int(rng.choice([4, 6, 8])))),
        stab=str(rng.choice(["clav", "skank", "montuno", "chicken"])),
        free_programs=float(rng.uniform(0.2, 0.6)))


def _step_weights(rng: np.random.Generator) -> np.ndarray:
    """A song's preference among melodic moves -3..4 (small steps favoured, by a drawn amount)."""
    moves = np.array([-3, -2, -1, 0, 1, 2, 3, 4, -4])
    w = np.exp(-np.abs(moves) * rng.uniform(0.2, 1.0)) * rng.uniform(0.3, 1.0, len(moves))
    return w / w.sum()


def _flip(pattern: str, n: int, rng: np.random.Generator, keep: set[int]) -> str:
    """``pattern`` with ``n`` of its steps (not those in ``keep``) turned on or off."""
    cells = list(pattern)
    free = [i for i in range(len(cells)) if i not in keep]
    for i in rng.permutation(free)[:n].tolist():
        cells[i] = "." if cells[i] != "." else "x"
    return "".join(cells)


def song_groove(name: str, ident: Identity) -> dict[int, str]:
    """The song's own version of groove ``name``: its hat and snare voices, hat rate, kick
    variations, ghost notes and percussion (the same every time the song plays the groove)."""
    rng = np.random.default_rng([ident.seed, 3571, sum(map(ord, name)), len(name)])
    out: dict[int, str] = {}
    for pitch, pat in GROOVES[name].items():
        if pitch == CHH:
            pitch = ident.hat
            if ident.hat_rate:
                pat = "".join("x" if i % ident.hat_rate == 0 else "." for i in range(len(pat)))
        elif pitch == SNARE:
            pitch = ident.snare
            pat = "".join("o" if c == "." and i % 2 and rng.random() < ident.ghosts else c
                          for i, c in enumerate(pat))
        elif pitch == KICK:
            backbeat = {i for i, c in enumerate(GROOVES[name].get(SNARE, "")) if c == "X"}
            pat = _flip(pat, ident.kick_flips, rng, {0} | backbeat)
        out[pitch] = pat
    if ident.perc and ident.perc[0] not in out:
        out[ident.perc[0]] = ident.perc[1][: len(next(iter(GROOVES[name].values())))]
    return out


def song_bass_grid(pattern: str, ident: Identity) -> str | None:
    """The song's own step grid for a grid-based bass figure (None for the others)."""
    if pattern not in BASS_GRIDS:
        return None
    rng = np.random.default_rng([ident.seed, 2393, sum(map(ord, pattern))])
    return _flip(BASS_GRIDS[pattern], ident.bass_flips, rng, {0})


# -- the song -----------------------------------------------------------------------------
def _section_rng(seed: int, kind: str, part: str) -> np.random.Generator:
    return np.random.default_rng([seed, sum(map(ord, kind)) * 131 + len(kind), sum(map(ord, part))])


def _choose_parts(style: Style, rng: np.random.Generator) -> list[bool]:
    """Which of the five parts the song has: at least two, each missing in a fair share."""
    while True:
        have = [bool(rng.random() < p) for p in style.presence]
        if sum(have) >= 2:
            return have


def _plans(style: Style, have: list[bool], rng: np.random.Generator, free: float = 0.0) -> list[PartPlan]:
    """The song's parts; with chance ``free`` a part's program (or kit) comes from its whole
    General MIDI family instead of the style's list."""
    def pick(seq):
        return seq[int(rng.integers(len(seq)))]

    def program(part: str, styled: tuple[int, ...]) -> int:
        wide = ALL_KITS if part == "drums" else FAMILY_PROGRAMS[part]
        return pick(wide) if rng.random() < free else pick(styled)

    plans = []
    if have[0]:
        plans.append(PartPlan("drums", "groove", pick(style.drums), program("drums", style.kits), True))
    if have[1]:
        plans.append(PartPlan("bass", "bass", pick(style.bass), program("bass", style.bass_programs)))
    if have[2]:
        plans.append(PartPlan("piano", "comp", pick(style.piano), program("piano", style.piano_programs)))
    if have[3]:
        plans.append(PartPlan("guitar", "guitar", pick(style.guitar), program("guitar", style.guitar_programs)))
    if have[4]:
        n = 1 if rng.random() < 0.55 else 2
        order = rng.permutation(len(style.others))[:n]
        for k in order:
            role, programs = style.others[int(k)]
            plans.append(PartPlan("others", role, role, pick(programs)))
    return plans


def _write_part(plan: PartPlan, sec: Section, bar_i: int, song: dict, rng: np.random.Generator,
                state: dict) -> list[Note]:
    beats, mode, ident = song["beats"], song["mode"], song["identity"]
    bar = sec.chords[bar_i]
    nxt = sec.chords[(bar_i + 1) % sec.bars][0]
    last = bar_i == sec.bars - 1
    if plan.part == "drums":
        groove = plan.pattern if plan.pattern in GROOVES else "rock"
        if beats == 3:
            groove = "waltz"
        if sec.kind in ("intro", "breakdown") and groove not in ("jazz", "jazz_brush", "waltz") and rng.random() < 0.5:
            groove = "halftime"
        own = song["grooves"].setdefault(groove, song_groove(groove, ident))
        notes = drum_bar(own, beats, fill=last and state["fill"], crash=bar_i == 0 and state["crash"], rng=rng)
        if state.get("ride") and sec.kind in ("chorus", "drop", "solo"):
            notes = [Note(RIDE, n.start, n.dur, n.vel) if n.pitch == ident.hat else n for n in notes]
        if bar_i % 4 == 3 and not last and beats == 4 and rng.random() < 0.5:
            notes = [n for n in notes if not (n.pitch == ident.hat and n.start == 3.5)]
            notes.append(Note(OHH, 3.5, 0.5, 95))
        return notes
    if plan.part == "bass":
        return bass_bar(plan.pattern, bar, nxt, beats, rng, ident.bass_center,
                        song_bass_grid(plan.pattern, ident))
    if plan.part == "piano":
        return comp_bar(plan.pattern, bar, beats, 64 + ident.comp_shift, rng, ident.voices,
                        arp=ident.arp)
    if plan.part == "guitar":
        if plan.pattern == "riff":
            motif = state.setdefault("riff", _riff(rng, beats))
            root = nearest([bar[0].root], 45, 40, 52)
            minor_chord = (bar[0].tones[1] - bar[0].root) % 12 == 3
            scale = RIFF_SCALES["blues" if song["style"] == "blues" else
                                "minor" if minor_chord else "major"]
            return [Note(root + scale[d], o, 0.3, v) for o, d, v in motif]
        if plan.pattern == "arpeggio":
            return comp_bar("arpeggio", bar, beats, 60 + ident.comp_shift // 2, rng, arp=ident.arp[::-1])
        return comp_bar(plan.pattern, bar, beats, 58 + ident.comp_shift // 2, rng, 4,
                        variant=state.setdefault("variant", int(rng.integers(4))), strum=ident.strum)
    # others
    if plan.role == "pad":
        return comp_bar("pad", bar, beats, 67 - ident.comp_shift, rng, ident.voices)
    if plan.role == "stabs":
        stab = state.setdefault("stab", ident.stab)
        return comp_bar(stab, bar, beats, 68 - ident.comp_shift, rng, 3)
    if plan.role == "arp":
        return arp_bar(bar, beats, 72, rng, ident.arp_shape)
    lo, hi = (62, 86) if plan.role == "lead" else (45, 67)
    motifs = state.setdefault("motifs", {})
    if bar_i % 4 == 2 and bar_i - 2 in motifs and rng.random() < 0.7:
        # the answer of a phrase replays its call's rhythm and contour on the new harmony
        notes = answer_bar(motifs[bar_i - 2], bar, sec.key, mode, beats, lo, hi)
    else:
        notes = melody_bar(bar, sec.key, mode, beats, lo, hi, state.get("prev", (lo + hi) // 2),
                           rng, phrase_end=(bar_i % 4 == 3), dense=0.6 if plan.role == "lead" else 0.1,
                           rhythms=ident.rhythms, steps=ident.steps)
    motifs[bar_i] = notes
    if notes:
        state["prev"] = notes[-1].pitch
    return notes


def _expression(plan: PartPlan, sec: Section, bar0: int, beats: int, rng: np.random.Generator) -> None:
    """Controller gestures: pads swell in at a section start; leads sometimes slide into notes."""
    start = bar0 * beats
    if plan.role == "pad" and rng.random() < 0.5:
        for k in range(9):
            plan.controls.append((start + k * beats / 8, 11, int(50 + 77 * k / 8)))
    elif plan.role == "pad":
        plan.controls.append((start, 11, 127))
    if (plan.role == "lead" and plan.program >= 80) or plan.pattern == "riff":
        for n in plan.notes:
            if n.start >= start and n.dur >= 0.75 and rng.random() < 0.25:
                plan.bends.append((n.start - 0.01, -4096))  # slide up from a semitone below
                plan.bends.append((n.start + min(n.dur / 3, 0.25), 0))


RIFF_SCALES = {"minor": (0, 3, 5, 7, 10, 12, 15), "major": (0, 2, 4, 7, 9, 12, 14),
               "blues": (0, 3, 5, 6, 7, 10, 12)}


def _riff(rng: np.random.Generator, beats: int) -> list[tuple[float, int, int]]:
    grid = rng.random(beats * 4) < 0.45
    grid[0] = True
    out = []
    d = 0
    for k in np.flatnonzero(grid):
        d = int(min(max(d + int(rng.choice([-2, -1, 0, 1, 2])), 0), 6))
        out.append((k / 4, d, 100 if k % 4 == 0 else 85))
    return out


def generate_song(seed: int, seconds: float | None = None, style: str | None = None) -> Song:
    """A new song, fully determined by ``seed`` (and ``seconds``/``style`` if given).

    ``seconds=None`` picks a length of 45-90 s. The MIDI holds one instrument per part voice
    (drums on channel 10 as a drum track).
    """
    rng = np.random.default_rng([seed, 7919])
    tempo = float(math.exp(rng.uniform(math.log(60.0), math.log(200.0))))
    if style is None:
        # styles with a narrow tempo range are weighted up, so all styles are about as common
        fits = [s for s in STYLES.values() if s.tempo[0] <= tempo <= s.tempo[1]]
        w = np.array([1.0 / math.log(s.tempo[1] / s.tempo[0]) for s in fits])
        st = fits[int(rng.choice(len(fits), p=w / w.sum()))]
    else:
        if style not in STYLES:
            raise ValueError(f"unknown style {style!r}; expected one of {', '.join(STYLES)}")
        st = STYLES[style]
        tempo = float(np.clip(tempo, *st.tempo))
    tempo = round(tempo, 2)
    seconds = float(rng.uniform(45.0, 90.0)) if seconds is None else float(seconds)
    key = int(rng.integers(12))
    mode = st.modes[int(rng.integers(len(st.modes)))]
    beats = st.beats
    sevenths = bool(rng.random() < st.sevenths)
    have = _choose_parts(st, rng)
    ident = draw_identity(seed, beats)
    plans = _plans(st, have, rng, ident.free_programs)

    # form: repeat the template until the song is long enough, then cut the last section
    bar_s = beats * 60.0 / tempo
    need = max(1, math.ceil(seconds / bar_s))
    form = FORMS[int(rng.integers(len(FORMS)))]
    if need < 16:  # a short song starts in the thick of it
        form = tuple(k for k in form if k not in ("intro", "outro", "breakdown")) or form
    head = [k for k in form[:1] if k == "intro"]
    tail = [k for k in form[-1:] if k == "outro"]
    body = [k for k in form if k not in ("intro", "outro")]
    progs: dict[str, tuple[tuple, int]] = {}

    def plan_of(kind: str) -> tuple[tuple, int]:
        if kind not in progs:
            bars = _section_bars(kind, rng)
            if st.name == "blues" and kind not in ("intro", "outro", "breakdown"):
                bars = 12
            progs[kind] = (_progression(st, mode, rng), bars)
        return progs[kind]

    tail_bars = sum(plan_of(k)[1] for k in tail)
    if need < tail_bars + 8:
        tail, tail_bars = [], 0
    layout: list[tuple[str, int]] = []
    used, k = 0, 0
    cycle = head + body * (need // 2 + 1)
    while used < need - tail_bars:
        kind = cycle[k]
        k += 1
        bars = min(plan_of(kind)[1], need - tail_bars - used)
        if bars < 2 and layout:  # no one-bar stubs: the previous section runs on instead
            layout[-1] = (layout[-1][0], layout[-1][1] + bars)
        else:
            layout.append((kind, bars))
        used += bars
    for kind in tail:
        layout.append((kind, min(plan_of(kind)[1], need - used)))
        used += layout[-1][1]
    modulate = int(rng.choice([1, 2])) if rng.random() < 0.2 else 0
    sections: list[Section] = []
    total = 0
    for kind, bars in layout:
        prog = plan_of(kind)[0]
        play = [h and bool(rng.random() < SECTION_PLAY.get(kind, 0.7)) for h in have]
        while sum(play) < min(2, sum(have)):
            play[int(rng.choice([i for i in range(len(have)) if have[i] and not play[i]]))] = True
        sec_key = key
        if modulate and total > 0.6 * need and kind in ("chorus", "drop", "a"):
            sec_key = (key + modulate) % 12
        sections.append(Section(kind, bars, _chords(prog, bars, sec_key, mode, sevenths),
                                tuple(play), sec_key))
        total += bars

    # write the parts bar by bar
    song_ctx = {"beats": beats, "key": key, "mode": mode, "style": st.name, "identity": ident,
                "grooves": {}}
    bar0 = 0
    for sec in sections:
        for plan in plans:
            if not sec.parts[PARTS.index(plan.part)]:
                continue
            prng = _section_rng(seed, sec.kind, plan.part + plan.role + str(plan.program))
            fill, crash, ride = (bool(x) for x in prng.random(3) < (0.75, 0.8, 0.4))
            state = {"fill": fill, "crash": crash and bar0 > 0, "ride": ride}
            for b in range(sec.bars):
                for n in _write_part(plan, sec, b, song_ctx, prng, state):
                    vel = n.vel + SECTION_DYNAMICS.get(sec.kind, 0)
                    plan.notes.append(Note(n.pitch, (bar0 + b) * beats + n.start, n.dur, vel))
            _expression(plan, sec, bar0, beats, prng)
        bar0 += sec.bars

    midi = _to_midi(plans, tempo, st.swing, seconds, rng)
    return Song(seed, st.name, tempo, key, mode, beats, sections, plans, midi, seconds, ident)


def _to_midi(plans: list[PartPlan], tempo: float, swing: float, seconds: float,
             rng: np.random.Generator) -> pretty_midi.PrettyMIDI:
    midi = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    spb = 60.0 / tempo
    for plan in plans:
        inst = pretty_midi.Instrument(program=plan.program, is_drum=plan.is_drum,
                                      name=f"{plan.part}:{plan.role}")
        for n in plan.notes:
            beat = n.start
            frac = beat % 1.0
            if swing and abs(frac - 0.5) < 1e-6:
                beat += swing / 6.0
            start = beat * spb + float(rng.normal(0, 0.004))
            start = max(start, 0.0)
            if start >= seconds:
                continue
            end = min(start + max(n.dur * spb, 0.03), seconds)
            vel = int(np.clip(n.vel + rng.integers(-6, 7), 1, 127))
            inst.notes.append(pretty_midi.Note(vel, int(np.clip(n.pitch, 0, 127)), start, end))
        for beat, number, value in plan.controls:
            if beat * spb < seconds:
                inst.control_changes.append(pretty_midi.ControlChange(number, value, max(beat * spb, 0.0)))
        for beat, value in plan.bends:
            if beat * spb < seconds:
                inst.pitch_bends.append(pretty_midi.PitchBend(value, max(beat * spb, 0.0)))
        if inst.notes:
            inst.notes.sort(key=lambda x: (x.start, x.pitch))
            inst.control_changes.sort(key=lambda c: c.time)
            inst.pitch_bends.sort(key=lambda b: b.time)
            midi.instruments.append(inst)
    return midi
