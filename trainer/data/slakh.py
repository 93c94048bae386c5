"""Slakh2100 conventions: instrument classes, the five-part grouping, tempo from MIDI.

Slakh names each stem's ``inst_class`` after the General MIDI program family (16 families of
8 programs) plus ``Drums`` for drum tracks. Partwise groups them as Slakh's recipe does:
drums = drum stems; bass, piano and guitar by instrument class; everything else = others.
"""

from __future__ import annotations

import logging
from pathlib import Path

import mido

from model.parts import PARTS, part_index

log = logging.getLogger(__name__)

# The General MIDI program families, in program order (program // 8), spelled as Slakh does.
GM_FAMILIES: tuple[str, ...] = (
    "Piano", "Chromatic Percussion", "Organ", "Guitar", "Bass", "Strings",
    "Strings (continued)", "Brass", "Reed", "Pipe", "Synth Lead", "Synth Pad",
    "Synth Effects", "Ethnic", "Percussive", "Sound Effects",
)
DRUMS_CLASS = "Drums"

_CLASS_TO_PART = {"drums": "drums", "bass": "bass", "piano": "piano", "guitar": "guitar"}


def inst_class_of(program: int, is_drum: bool) -> str:
    """Slakh ``inst_class`` of a GM program (0-127) or of a drum track."""
    if is_drum:
        return DRUMS_CLASS
    if not 0 <= int(program) <= 127:
        raise ValueError(f"MIDI program {program} out of range 0..127")
    return GM_FAMILIES[int(program) // 8]


def part_of_class(inst_class: str | None, is_drum: bool = False, program: int | None = None) -> int:
    """Index into :data:`model.parts.PARTS` for an instrument class (program as a fallback)."""
    if is_drum:
        return part_index("drums")
    if not inst_class and program is not None:
        inst_class = inst_class_of(program, False)
    name = _CLASS_TO_PART.get(str(inst_class or "").strip().lower(), "others")
    return PARTS.index(name)


def midi_tempo(path: str | Path, default: float = 120.0) -> float:
    """The tempo (BPM) that holds for most of a MIDI file (by beats), ``default`` if none is set.

    Reads only the tempo meta messages (with mido); a broken file raises ``ValueError`` naming it.
    """
    try:
        mid = mido.MidiFile(str(path))
    except Exception as exc:  # mido raises many kinds of errors on broken files
        raise ValueError(f"{path}: cannot read MIDI ({exc})") from exc
    changes: list[tuple[int, int]] = []
    end_tick = 0
    for track in mid.tracks:
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo":
                changes.append((tick, msg.tempo))
        end_tick = max(end_tick, tick)
    if not changes:
        return float(default)
    changes.sort()
    weight: dict[int, int] = {}
    for (tick, tempo), nxt in zip(changes, [c[0] for c in changes[1:]] + [max(end_tick, changes[-1][0] + 1)], strict=True):
        weight[tempo] = weight.get(tempo, 0) + max(nxt - tick, 0)
    tempo_us = max(weight.items(), key=lambda kv: (kv[1], -kv[0]))[0]
    return round(60_000_000 / tempo_us, 3)
