"""Writes one rendered track in the Slakh2100 layout, atomically.

``TrackNNNNN/metadata.yaml``, ``stems/SNN.flac``, ``mix.flac``, ``all_src.mid`` and
``MIDI/SNN.mid``. Stems are scaled by one gain per track so that the mix peaks at
:data:`TARGET_PEAK`, then stored as 16-bit FLAC; the mix is the exact integer sum of the stored
stems, so mix == sum(stems) holds sample for sample. The track is written into a temporary
folder and renamed into place, so a folder named ``TrackNNNNN`` is always complete.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pretty_midi
import soundfile as sf
import yaml

from model.parts import PARTS
from trainer.data.dataset import ACTIVITY_THRESHOLD_DB, power_db
from trainer.data.slakh import inst_class_of, part_of_class

log = logging.getLogger(__name__)

TARGET_PEAK = 0.8
INT16_MAX = 32767
TMP_PREFIX = ".tmp-"


def track_name(index: int) -> str:
    """Slakh's track folder name for a 0-based index: 0 -> Track00001."""
    return f"Track{index + 1:05d}"


def quantize(stems: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray, float]:
    """Float stems -> (int16 stems, int16 mix (n,), gain) with mix == sum of the int16 stems.

    One gain for the whole track puts the louder of the mix and the loudest stem at
    :data:`TARGET_PEAK`. Works stem by stem, so a long song needs little memory beyond its stems.
    """
    n = stems[0].shape[-1] if stems else 1
    mix = np.zeros(n, dtype=np.float32)
    peak = 0.0
    for s in stems:
        mix += s
        peak = max(peak, float(np.abs(s).max(initial=0.0)))
    peak = max(peak, float(np.abs(mix).max(initial=0.0)))
    gain = TARGET_PEAK / peak if peak > 1e-9 else 1.0
    scale = np.float32(gain * INT16_MAX)
    q = [np.rint(s * scale).astype(np.int16) for s in stems]
    qmix = np.zeros(n, dtype=np.int32)
    for s in q:
        qmix += s
    if np.abs(qmix).max(initial=0) > INT16_MAX:  # cannot happen with TARGET_PEAK < 1; be safe
        raise AssertionError("quantized mix overflows 16 bits")
    return q, qmix.astype(np.int16), gain


def activity_seconds(x: np.ndarray, sample_rate: int) -> int:
    """How many whole seconds of ``x`` (n,) have a time-average power above the threshold."""
    n = len(x) // sample_rate
    if n == 0:
        return int(power_db(x, sample_rate) > ACTIVITY_THRESHOLD_DB)
    return int((power_db(x[: n * sample_rate].reshape(n, sample_rate)) > ACTIVITY_THRESHOLD_DB).sum())


def _varlen(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _chunk(events: list[tuple[int, int, bytes]]) -> bytes:
    """(tick, order, message bytes) -> an MTrk chunk with delta times and end of track."""
    body = bytearray()
    last = 0
    for tick, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
        body += _varlen(tick - last) + msg
        last = tick
    body += b"\x00\xff\x2f\x00"
    return b"MTrk" + len(body).to_bytes(4, "big") + bytes(body)


def midi_bytes(instruments: list[pretty_midi.Instrument], tempo: float, ppq: int = 480) -> bytes:
    """A type-1 Standard MIDI File: a tempo track, then one track per instrument.

    Times are kept in seconds through one constant tempo; drums go to channel 10 (index 9),
    the other instruments to channels 1-9, 11-16 in turn.
    """
    ticks_per_s = ppq * tempo / 60.0

    def tick(t: float) -> int:
        return max(0, int(round(t * ticks_per_s)))

    us = int(round(60_000_000 / tempo))
    tracks = [_chunk([(0, 0, b"\xff\x51\x03" + us.to_bytes(3, "big")),
                      (0, 0, b"\xff\x58\x04\x04\x02\x18\x08")])]
    melodic = [c for c in range(16) if c != 9]
    k = 0
    for inst in instruments:
        if inst.is_drum:
            ch = 9
        else:
            ch = melodic[k % len(melodic)]
            k += 1
        name = (inst.name or "").encode("latin-1", "replace")[:127]
        ev: list[tuple[int, int, bytes]] = [(0, 0, b"\xff\x03" + _varlen(len(name)) + name),
                                            (0, 1, bytes([0xC0 | ch, inst.program & 0x7F]))]
        for cc in inst.control_changes:
            ev.append((tick(cc.time), 2, bytes([0xB0 | ch, cc.number & 0x7F, cc.value & 0x7F])))
        for pb in inst.pitch_bends:
            v = min(max(int(pb.pitch) + 8192, 0), 16383)
            ev.append((tick(pb.time), 2, bytes([0xE0 | ch, v & 0x7F, v >> 7])))
        for n in inst.notes:
            on, off = tick(n.start), tick(n.end)
            ev.append((on, 4, bytes([0x90 | ch, n.pitch & 0x7F, max(1, n.velocity & 0x7F)])))
            ev.append((max(off, on + 1), 3, bytes([0x80 | ch, n.pitch & 0x7F, 0])))
        tracks.append(_chunk(ev))
    header = b"MThd" + (6).to_bytes(4, "big") + (1).to_bytes(2, "big") + \
        len(tracks).to_bytes(2, "big") + ppq.to_bytes(2, "big")
    return header + b"".join(tracks)


def write_track(out_dir: Path, midi: pretty_midi.PrettyMIDI, stems: list[np.ndarray],
                sample_rate: int, meta: dict, source_midi: bytes | None = None,
                stem_extra: list[dict] | None = None) -> Path:
    """Write one track folder ``out_dir`` (its parent must exist) and return it.

    ``stems[k]`` is the rendering of ``midi.instruments[k]``; all stems have one length.
    ``meta`` adds top-level metadata (tempo, soundfont, source, ...). ``source_midi``, when
    given, is stored as ``all_src.mid`` verbatim (real MIDI keeps its own tempo map).
    ``stem_extra[k]`` adds to (or overrides) stem k's metadata, e.g. its own ``plugin_name``
    (font) or the ``effects`` applied to it.
    """
    if len(stems) != len(midi.instruments):
        raise ValueError(f"{len(stems)} stems for {len(midi.instruments)} instruments")
    if stem_extra is not None and len(stem_extra) != len(stems):
        raise ValueError(f"{len(stem_extra)} stem metadata entries for {len(stems)} stems")
    tmp = out_dir.parent / f"{TMP_PREFIX}{out_dir.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "stems").mkdir(parents=True)
    (tmp / "MIDI").mkdir()
    q, qmix, gain = quantize(stems)
    tempo = float(meta.get("tempo", 120.0))
    font = meta.get("soundfont")
    stem_meta: dict[str, dict] = {}
    for k, inst in enumerate(midi.instruments):
        key = f"S{k:02d}"
        rendered = bool(inst.notes) and bool(np.any(q[k]))
        if rendered:
            sf.write(str(tmp / "stems" / f"{key}.flac"), q[k], sample_rate, subtype="PCM_16")
        (tmp / "MIDI" / f"{key}.mid").write_bytes(midi_bytes([inst], tempo))
        inst_class = inst_class_of(inst.program, inst.is_drum)
        entry = {
            "audio_rendered": rendered,
            "inst_class": inst_class,
            "is_drum": bool(inst.is_drum),
            "midi_program_name": "Drums" if inst.is_drum else pretty_midi.program_to_instrument_name(inst.program),
            "midi_saved": True,
            "program_num": int(inst.program),
            "plugin_name": font,
            "name": inst.name or None,
            "part": PARTS[part_of_class(inst_class, inst.is_drum)],
            "n_notes": len(inst.notes),
            **(stem_extra[k] if stem_extra else {}),
        }
        if rendered:
            x = q[k].astype(np.float32) / INT16_MAX
            entry["rms_db"] = round(float(power_db(x)), 2)
            entry["active_seconds"] = int(activity_seconds(x, sample_rate))
        stem_meta[key] = entry
    sf.write(str(tmp / "mix.flac"), qmix, sample_rate, subtype="PCM_16")
    if source_midi is not None:
        (tmp / "all_src.mid").write_bytes(source_midi)
    else:
        (tmp / "all_src.mid").write_bytes(midi_bytes(midi.instruments, tempo))
    n = qmix.shape[-1]
    uuid = hashlib.sha1(repr((out_dir.name, sorted(meta.items(), key=str))).encode()).hexdigest()
    top = {
        "UUID": uuid, "audio_dir": "stems", "midi_dir": "MIDI", "normalized": True,
        "overall_gain": round(gain, 6), "target_peak": TARGET_PEAK, "sample_rate": sample_rate,
        "duration": round(n / sample_rate, 4), **meta, "stems": stem_meta,
    }
    with open(tmp / "metadata.yaml", "w", encoding="utf-8") as fh:
        yaml.safe_dump(top, fh, sort_keys=False, allow_unicode=True)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir
