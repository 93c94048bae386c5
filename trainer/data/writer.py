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
from trainer.data.dataset import power_db
from trainer.data.slakh import inst_class_of, part_of_class

log = logging.getLogger(__name__)

TARGET_PEAK = 0.8
INT16_MAX = 32767
TMP_PREFIX = ".tmp-"


def track_name(index: int) -> str:
    """Slakh's track folder name for a 0-based index: 0 -> Track00001."""
    return f"Track{index + 1:05d}"


def quantize(stems: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, float]:
    """Float stems -> (int16 stems (k, n), int16 mix (n,), gain) with mix == stems.sum(0)."""
    arr = np.stack(stems).astype(np.float64) if stems else np.zeros((0, 1))
    mix = arr.sum(axis=0)
    peak = float(max(np.abs(mix).max(initial=0.0), np.abs(arr).max(initial=0.0)))
    gain = TARGET_PEAK / peak if peak > 1e-9 else 1.0
    q = np.round(arr * gain * INT16_MAX).astype(np.int32)
    qmix = q.sum(axis=0)
    if np.abs(qmix).max(initial=0) > INT16_MAX:  # cannot happen with TARGET_PEAK < 1; be safe
        raise AssertionError("quantized mix overflows 16 bits")
    return q.astype(np.int16), qmix.astype(np.int16), gain


def _single(inst: pretty_midi.Instrument, tempo: float) -> pretty_midi.PrettyMIDI:
    m = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    m.instruments.append(inst)
    return m


def write_track(out_dir: Path, midi: pretty_midi.PrettyMIDI, stems: list[np.ndarray],
                sample_rate: int, meta: dict, source_midi: bytes | None = None) -> Path:
    """Write one track folder ``out_dir`` (its parent must exist) and return it.

    ``stems[k]`` is the rendering of ``midi.instruments[k]``; all stems have one length.
    ``meta`` adds top-level metadata (tempo, soundfont, source, ...). ``source_midi``, when
    given, is stored as ``all_src.mid`` verbatim (real MIDI keeps its own tempo map).
    """
    if len(stems) != len(midi.instruments):
        raise ValueError(f"{len(stems)} stems for {len(midi.instruments)} instruments")
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
        _single(inst, tempo).write(str(tmp / "MIDI" / f"{key}.mid"))
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
        }
        if rendered:
            entry["rms_db"] = round(float(power_db(q[k].astype(np.float32) / INT16_MAX)), 2)
        stem_meta[key] = entry
    sf.write(str(tmp / "mix.flac"), qmix, sample_rate, subtype="PCM_16")
    if source_midi is not None:
        (tmp / "all_src.mid").write_bytes(source_midi)
    else:
        midi.write(str(tmp / "all_src.mid"))
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
