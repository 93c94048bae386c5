"""MIDI -> audio, one stem per MIDI instrument, with General MIDI SoundFonts (tinysoundfont).

Rendering is offline: the low-level tinysoundfont SoundFont object renders mono float32 blocks
between MIDI events. A font is loaded once per process and reset between stems. Nothing here
imports the playback side of tinysoundfont (which needs PyAudio).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pretty_midi

log = logging.getLogger(__name__)

# Searched in this order; PARTWISE_SOUNDFONTS (os.pathsep-separated files or folders) first.
FONT_DIRS: tuple[str, ...] = (
    "/usr/share/sounds/sf2", "/usr/share/soundfonts", "/usr/share/sounds/sf3",
    "/usr/local/share/soundfonts", "/usr/share/samples",
)
FONT_EXTS = (".sf2", ".sf3")
DRUM_CHANNEL = 9
TAIL_SECONDS = 1.5  # rendered past the last note-off so releases are not cut


class RenderError(RuntimeError):
    """Rendering failed; the message names the font or MIDI file."""


def bundled_font() -> Path | None:
    """TimGM6mb.sf2 as shipped inside the pretty_midi package, if present."""
    p = Path(pretty_midi.__file__).resolve().parent / "TimGM6mb.sf2"
    return p if p.exists() else None


def find_fonts(extra: list[str | Path] | None = None) -> list[Path]:
    """General MIDI SoundFonts on this machine, one per file name (the first found wins).

    ``extra`` (files or folders) and the ``PARTWISE_SOUNDFONTS`` variable come first, then the
    usual system folders (Debian's fluid-soundfont-gm, timgm6mb-soundfont, csound-soundfont),
    then pretty_midi's bundled TimGM6mb.sf2.
    """
    candidates: list[Path] = []
    env = [p for p in os.environ.get("PARTWISE_SOUNDFONTS", "").split(os.pathsep) if p]
    for item in [*(extra or []), *env, *FONT_DIRS]:
        p = Path(item)
        if p.is_dir():
            candidates += sorted(q for q in p.iterdir() if q.suffix.lower() in FONT_EXTS)
        elif p.is_file():
            candidates.append(p)
    bundled = bundled_font()
    if bundled:
        candidates.append(bundled)
    out: list[Path] = []
    seen: set[str] = set()
    seen_paths: set[Path] = set()
    for c in candidates:
        try:
            real = c.resolve(strict=True)
        except OSError:
            continue
        key = real.name.lower()
        if real in seen_paths or key in seen:
            continue
        seen.add(key)
        seen_paths.add(real)
        out.append(real)
    return out


def resolve_fonts(fonts: list[str | Path] | None) -> list[Path]:
    """The fonts to render with: those given (checked), else all found; an error if none."""
    if fonts:
        paths = []
        for f in fonts:
            p = Path(f)
            if not p.is_file():
                raise RenderError(f"{p}: SoundFont not found")
            paths.append(p.resolve())
        return paths
    found = find_fonts()
    if not found:
        raise RenderError("no General MIDI SoundFont found: install fluid-soundfont-gm or "
                          "timgm6mb-soundfont (make setup does), or pass --font FILE.sf2")
    return found


_FONT_CACHE: dict[str, object] = {}


def _load_font(path: Path, sample_rate: int):
    """A fresh player of the SoundFont at ``path``; the file is read once per process.

    Each call clones the cached font (the samples are shared), so no voice of one stem can
    leak into the next: tinysoundfont's reset() leaves releasing voices playing.
    """
    from tinysoundfont import _tinysoundfont as tsf  # the offline core only (no PyAudio)

    base = _FONT_CACHE.get(str(path))
    if base is None:
        try:
            base = tsf.SoundFont(str(path))
        except Exception as exc:
            raise RenderError(f"{path}: cannot load SoundFont ({exc})") from exc
        _FONT_CACHE[str(path)] = base
        log.debug("loaded SoundFont %s", path)
    font = tsf.SoundFont(base)
    font.set_output(tsf.OutputMode.Mono, sample_rate, 0.0)
    font.set_max_voices(256)
    return font


@dataclass(frozen=True)
class _Event:
    sample: int
    order: int  # at the same sample: controls (0) before note-offs (1) before note-ons (2)
    kind: str
    a: int
    b: float


def _events(inst: pretty_midi.Instrument, sr: int) -> list[_Event]:
    ev: list[_Event] = []
    for cc in inst.control_changes:
        ev.append(_Event(int(round(cc.time * sr)), 0, "cc", cc.number, cc.value))
    for pb in inst.pitch_bends:
        ev.append(_Event(int(round(pb.time * sr)), 0, "pb", int(pb.pitch) + 8192, 0))
    for n in inst.notes:
        start, end = int(round(n.start * sr)), int(round(n.end * sr))
        ev.append(_Event(start, 2, "on", n.pitch, n.velocity / 127.0))
        ev.append(_Event(max(end, start + 1), 1, "off", n.pitch, 0.0))
    ev.sort(key=lambda e: (e.sample, e.order))
    return ev


def _preset(font, program: int, is_drum: bool) -> tuple[int, int]:
    """(bank, preset) to use: the program itself, else its family's first, else 0."""
    bank = 128 if is_drum else 0
    for p in ([program, 0] if is_drum else [program, program - program % 8, 0]):
        if font.get_preset_index(bank, p) >= 0:
            return bank, p
    return bank, program


def render_instrument(inst: pretty_midi.Instrument, font_path: Path, n_samples: int,
                      sample_rate: int) -> np.ndarray:
    """One instrument's notes, controls and bends -> (n_samples,) float32 mono."""
    font = _load_font(font_path, sample_rate)
    chan = DRUM_CHANNEL if inst.is_drum else 0
    bank, program = _preset(font, int(inst.program), bool(inst.is_drum))
    try:
        font.channel_set_bank(chan, bank)
        font.channel_set_preset_number(chan, program, bool(inst.is_drum))
    except RuntimeError as exc:
        raise RenderError(f"{font_path}: no preset {bank}:{program} ({exc})") from exc
    out = np.zeros(n_samples, dtype=np.float32)
    view = memoryview(out).cast("B")
    pos = 0
    for e in _events(inst, sample_rate):
        s = min(e.sample, n_samples)
        if s > pos:
            font.render(view[pos * 4:s * 4])
            pos = s
        if s >= n_samples:
            break
        if e.kind == "on":
            font.channel_note_on(chan, e.a, e.b)
        elif e.kind == "off":
            font.channel_note_off(chan, e.a)
        elif e.kind == "cc":
            font.channel_midi_control(chan, e.a, int(e.b))
        else:
            font.channel_set_pitch_wheel(chan, min(max(e.a, 0), 16383))
    if pos < n_samples:
        font.render(view[pos * 4:])
    return out


def song_samples(midi: pretty_midi.PrettyMIDI, sample_rate: int, seconds: float | None = None) -> int:
    """Length of a rendering: ``seconds`` if given, else the MIDI's end plus a release tail."""
    length = seconds if seconds is not None else midi.get_end_time() + TAIL_SECONDS
    return max(1, int(round(length * sample_rate)))


def render_stems(midi: pretty_midi.PrettyMIDI, font_path: Path, sample_rate: int,
                 seconds: float | None = None) -> list[np.ndarray]:
    """Every instrument of ``midi`` -> list of (n,) float32 stems of one common length."""
    n = song_samples(midi, sample_rate, seconds)
    return [render_instrument(inst, font_path, n, sample_rate) for inst in midi.instruments]
