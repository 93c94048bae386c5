"""POP909 as source material: read the songs (from the archive or an extracted folder), parse
their beat and chord annotations, and give each song a fixed split.

POP909 (Wang, Chen et al., ISMIR 2020; MIT licence, ``LICENSE`` in the archive) has one folder
per song, ``POP909/NNN/`` with ``NNN.mid`` (tracks MELODY, BRIDGE and PIANO),
``beat_midi.txt`` (time in s, beat flag, downbeat flag; one row per beat) and
``chord_midi.txt`` (start s, end s, label such as ``C:maj7``, ``Bb:min/b3`` or ``N``).
"""

from __future__ import annotations

import logging
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

N_SONGS = 909
LICENSE_NAME = "LICENSE"
# The split of a song depends on its number only: never on --seed, --splits or how many songs
# a build takes, so no training run ever sees a test song.
TEST_EVERY, TEST_REMAINDER = 10, 0  # songs 10, 20, ..., 900: 90 songs
VALIDATION_REMAINDER = 5  # songs 5, 15, ..., 905: 91 songs

PITCH_CLASSES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
QUALITIES: dict[str, tuple[int, ...]] = {
    "maj": (0, 4, 7), "min": (0, 3, 7), "dim": (0, 3, 6), "aug": (0, 4, 8),
    "sus2": (0, 2, 7), "sus4": (0, 5, 7), "sus4(b7)": (0, 5, 7, 10), "maj6": (0, 4, 7, 9),
    "min6": (0, 3, 7, 9), "7": (0, 4, 7, 10), "maj7": (0, 4, 7, 11), "min7": (0, 3, 7, 10),
    "minmaj7": (0, 3, 7, 11), "dim7": (0, 3, 6, 9), "hdim7": (0, 3, 6, 10),
}
DEGREES = {"1": 0, "b2": 1, "2": 2, "#2": 3, "b3": 3, "3": 4, "4": 5, "#4": 6, "b5": 6, "5": 7,
           "#5": 8, "b6": 8, "6": 9, "bb7": 9, "b7": 10, "7": 11, "9": 2, "b9": 1, "11": 5, "13": 9}
_LABEL = re.compile(r"^([A-G])([#b]*):([^/]+)(?:/(.+))?$")


class Pop909Error(ValueError):
    """A POP909 song or archive cannot be used; the message names the file."""


@dataclass(frozen=True)
class ChordLabel:
    """One chord of a song: pitch classes with the root first, the bass note (inversion)."""

    start: float
    end: float
    label: str
    root: int | None  # None for "N" (no chord)
    tones: tuple[int, ...]
    bass: int | None


def parse_chord(label: str) -> tuple[int | None, tuple[int, ...], int | None]:
    """``"Bb:min/b3"`` -> (root 10, tones (10, 1, 5), bass 1); ``"N"`` -> (None, (), None).

    An unknown quality keeps the root and fifth (and logs it); a bad label raises ValueError.
    """
    if label in ("N", "X", ""):
        return None, (), None
    m = _LABEL.match(label)
    if not m:
        raise ValueError(f"not a chord label: {label!r}")
    letter, accidentals, quality, inversion = m.groups()
    root = (PITCH_CLASSES[letter] + accidentals.count("#") - accidentals.count("b")) % 12
    intervals = QUALITIES.get(quality)
    if intervals is None:
        log.debug("unknown chord quality %r; using root and fifth", quality)
        intervals = (0, 7)
    bass = root
    if inversion:
        if inversion not in DEGREES:
            raise ValueError(f"not a chord label (bass {inversion!r}): {label!r}")
        bass = (root + DEGREES[inversion]) % 12
    return root, tuple((root + i) % 12 for i in intervals), bass


def parse_chords(text: str, where: str) -> list[ChordLabel]:
    """The rows of a ``chord_midi.txt`` -> chords in time order; errors name ``where``."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            start, end, label = float(fields[0]), float(fields[1]), fields[2]
            root, tones, bass = parse_chord(label)
        except (IndexError, ValueError) as exc:
            raise Pop909Error(f"{where}, line {n}: cannot read a chord ({exc})") from None
        if end > start:
            out.append(ChordLabel(start, end, label, root, tones, bass))
    return sorted(out, key=lambda c: c.start)


def parse_beats(text: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """The rows of a ``beat_midi.txt`` -> (beat times (n,) float64 s, downbeat flags (n,) bool)."""
    try:
        rows = np.array([[float(x) for x in line.split()[:3]] for line in text.splitlines()
                         if line.strip()], dtype=np.float64)
    except ValueError as exc:
        raise Pop909Error(f"{where}: cannot read the beats ({exc})") from None
    if rows.ndim != 2 or rows.shape[1] != 3 or len(rows) < 8:
        raise Pop909Error(f"{where}: expected at least 8 rows of 'time beat downbeat'")
    order = np.argsort(rows[:, 0], kind="stable")
    times, down = rows[order, 0], rows[order, 2] > 0.5
    if np.any(np.diff(times) <= 0):
        raise Pop909Error(f"{where}: two beats at the same time")
    if not down.any():
        down[0] = True
    return times, down


@dataclass(frozen=True)
class Pop909Song:
    """One POP909 song as read from the archive: its number, MIDI bytes and annotations."""

    number: int
    midi: bytes
    beats: np.ndarray  # (n,) float64 s
    downbeats: np.ndarray  # (n,) bool
    chords: tuple[ChordLabel, ...]

    @property
    def name(self) -> str:
        return f"{self.number:03d}"


def song_split(number: int) -> str:
    """The fixed split of POP909 song ``number`` (1-909)."""
    r = number % TEST_EVERY
    if r == TEST_REMAINDER:
        return "test"
    return "validation" if r == VALIDATION_REMAINDER else "train"


_SONG_FILE = re.compile(r"(?:^|/)POP909/(\d{3})/(\d{3}\.mid|beat_midi\.txt|chord_midi\.txt)$")


def _members(source: Path) -> Iterator[tuple[str, bytes]]:
    """(path inside the collection, bytes) of every file of ``source`` (archive or folder)."""
    if source.is_dir():
        for p in sorted(source.rglob("*")):
            if p.is_file():
                yield p.relative_to(source).as_posix(), p.read_bytes()
        return
    try:
        with tarfile.open(source, "r:*") as tar:
            for member in tar:
                if member.isfile():
                    fh = tar.extractfile(member)
                    if fh is not None:
                        yield member.name, fh.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise Pop909Error(f"{source}: cannot read the archive ({exc})") from exc


def read_collection(source: str | Path, numbers: set[int] | None = None
                    ) -> tuple[dict[int, dict[str, bytes]], bytes | None]:
    """Every song's files (``{number: {"mid"|"beat"|"chord": bytes}}``) and the LICENSE text.

    ``source``: the POP909 archive (.tar.xz) or a folder holding ``POP909/NNN/`` (or one above
    it). ``numbers`` keeps only those songs.
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such POP909 archive or folder")
    songs: dict[int, dict[str, bytes]] = {}
    licence = None
    for name, data in _members(source):
        if name.rsplit("/", 1)[-1] == LICENSE_NAME and licence is None:
            licence = data
            continue
        m = _SONG_FILE.search(name)
        if not m or (numbers is not None and int(m.group(1)) not in numbers):
            continue
        kind = "mid" if m.group(2).endswith(".mid") else m.group(2).split("_")[0]
        songs.setdefault(int(m.group(1)), {})[kind] = data
    if not songs and numbers is None:
        raise Pop909Error(f"{source}: no POP909 songs (POP909/NNN/NNN.mid) inside")
    return songs, licence


def load_song(number: int, files: dict[str, bytes], where: str) -> Pop909Song:
    """One song from its files; a missing or broken file raises :class:`Pop909Error`."""
    missing = [k for k in ("mid", "beat", "chord") if k not in files]
    if missing:
        raise Pop909Error(f"{where}: missing {', '.join(missing)} file(s)")
    times, down = parse_beats(files["beat"].decode("utf-8", "replace"), f"{where}/beat_midi.txt")
    chords = parse_chords(files["chord"].decode("utf-8", "replace"), f"{where}/chord_midi.txt")
    return Pop909Song(number, files["mid"], times, down, tuple(chords))
