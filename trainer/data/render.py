"""MIDI -> audio, one stem per MIDI instrument, with General MIDI SoundFonts (tinysoundfont).

Rendering is offline: the low-level tinysoundfont SoundFont object renders mono float32 blocks
between MIDI events. A font is loaded once per process and reset between stems. Nothing here
imports the playback side of tinysoundfont (which needs PyAudio).
"""

from __future__ import annotations

import hashlib
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
MAX_RENDER_SECONDS = 600.0  # a longer song is skipped (--max-seconds), not rendered
# Drum-kit-only fonts (AVL Drumkits) map GM drum notes 36-61; the second bass drum is moved
# onto the first so kicks written as 35 still sound.
KIT_ONLY_NOTES = {35: 36}

# Named sets of SoundFonts (file names, found where find_fonts looks): (fonts for every part,
# fonts for drum stems only). "bundled" is the TimGM6mb.sf2 inside pretty_midi, on any machine.
FONT_SETS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "bundled": (("TimGM6mb.sf2",), ()),
    "gm3": (("FluidR3_GM.sf2", "TimGM6mb.sf2", "sf_GMbank.sf2"), ()),
    # sf_GMbank.sf2 is left out: on 70 of the 128 programs it sounds the same as TimGM6mb.sf2
    "debian": (("FluidR3_GM.sf2", "TimGM6mb.sf2", "OPL-3_FM_128M.sf2", "FluidR3Mono_GM.sf3"),
               ("Black_Pearl_4_LV2.sf2", "Red_Zeppelin_4_LV2.sf2")),
    # For evaluation renders only, never training data: timbres no training set has heard.
    # MuseScore General shares FluidR3Mono's samples on most programs, but its acoustic pianos
    # (programs 0, 1 and 3), several strings and synths are its own (docs/data.md).
    "heldout": (("MuseScore_General_Full.sf3",), ()),
}
# The sets whose fonts no training set may use: what a model is measured on as unheard.
HELDOUT_SETS = ("heldout",)
FONT_PACKAGES = {  # the Debian package that installs each font of the named sets
    "FluidR3_GM.sf2": "fluid-soundfont-gm", "TimGM6mb.sf2": "timgm6mb-soundfont",
    "sf_GMbank.sf2": "csound-soundfont", "OPL-3_FM_128M.sf2": "opl3-soundfont",
    "FluidR3Mono_GM.sf3": "fluidr3mono-gm-soundfont", "Black_Pearl_4_LV2.sf2": "avldrums.lv2-soundfont",
    "Red_Zeppelin_4_LV2.sf2": "avldrums.lv2-soundfont",
    "MuseScore_General_Full.sf3": "musescore-general-soundfont",
}


def heldout_fonts() -> frozenset[str]:
    """File names of the fonts kept for evaluation (:data:`HELDOUT_SETS`)."""
    return frozenset(f for name in HELDOUT_SETS for group in FONT_SETS[name] for f in group)


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


def resolve_fonts(fonts: list[str | Path]) -> list[Path]:
    """The SoundFont files given, checked; an error names a missing one."""
    paths = []
    for f in fonts:
        p = Path(f)
        if not p.is_file():
            raise RenderError(f"{p}: SoundFont not found")
        paths.append(p.resolve())
    return paths


def _named_font(name: str, set_name: str) -> Path:
    if set_name == "bundled":
        found = bundled_font()
        if found is None:
            raise RenderError("pretty_midi's TimGM6mb.sf2 is missing: reinstall pretty_midi")
        return found
    for p in find_fonts():
        if p.name == name:
            return p
    raise RenderError(f"font set {set_name!r}: {name} not found; install the Debian package "
                      f"{FONT_PACKAGES.get(name, '?')} (make setup does, as root) or pass --font")


@dataclass(frozen=True)
class FontSet:
    """The SoundFonts a build renders with: ``fonts`` voice every part of a track (one font per
    track), ``drum_fonts`` (drum kits only) join them as choices for drum stems."""

    fonts: tuple[Path, ...]
    drum_fonts: tuple[Path, ...] = ()
    name: str | None = None

    @classmethod
    def named(cls, name: str) -> FontSet:
        if name not in FONT_SETS:
            raise RenderError(f"no font set {name!r}; choose one of {', '.join(FONT_SETS)}")
        fonts, drums = FONT_SETS[name]
        return cls(tuple(_named_font(f, name) for f in fonts),
                   tuple(_named_font(f, name) for f in drums), name)

    @classmethod
    def of(cls, spec: FontSpec) -> FontSet:
        """A FontSet from a set name, a list of font files, or a FontSet."""
        if isinstance(spec, FontSet):
            return spec
        if isinstance(spec, str):
            return cls.named(spec)
        if not spec:
            raise RenderError("no SoundFonts chosen: pass --font FILE (repeatable) or "
                              f"--font-set NAME ({', '.join(FONT_SETS)})")
        return cls(tuple(resolve_fonts(list(spec))))

    def pick(self, seed: int, index: int) -> tuple[Path, Path]:
        """(font for the track, font for its drum stems), drawn from (seed, index)."""
        rng = np.random.default_rng([seed, index, 31])
        font = self.fonts[int(rng.integers(len(self.fonts)))]
        kits = self.fonts + self.drum_fonts
        return font, kits[int(rng.integers(len(kits)))] if self.drum_fonts else font

    def describe(self) -> list[dict]:
        """Name, size, sha256 and role of every font (for a build's record)."""
        return [{**font_identity(p), "role": role}
                for role, group in (("all parts", self.fonts), ("drums only", self.drum_fonts))
                for p in group]


FontSpec = str | list[str | Path] | tuple[str | Path, ...] | FontSet  # a set name, files, or a set
_HASHES: dict[tuple[str, int, int], str] = {}


def font_identity(path: Path) -> dict:
    """``{"name", "size", "sha256"}`` of a font file (hashed once per process)."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _HASHES[key] = h.hexdigest()
    return {"name": path.name, "size": st.st_size, "sha256": _HASHES[key]}


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


def _preset(font, program: int, is_drum: bool) -> tuple[int, int, bool]:
    """(bank, preset, as drums) to use: the program itself, else its family's first, else 0.

    A drum stem on a font without a drum bank (a drum-kit-only font such as AVL Drumkits keeps
    its kit as preset 0:0) plays that preset as a melodic one; its keys follow the GM drum map.
    """
    if is_drum:
        for p in (program, 0):
            if font.get_preset_index(128, p) >= 0:
                return 128, p, True
        if font.get_preset_index(0, 0) >= 0 and font.get_preset_index(0, 1) < 0:
            return 0, 0, False
        return 128, program, True
    for p in (program, program - program % 8, 0):
        if font.get_preset_index(0, p) >= 0:
            return 0, p, False
    return 0, program, False


def render_instrument(inst: pretty_midi.Instrument, font_path: Path, n_samples: int,
                      sample_rate: int) -> np.ndarray:
    """One instrument's notes, controls and bends -> (n_samples,) float32 mono."""
    font = _load_font(font_path, sample_rate)
    chan = DRUM_CHANNEL if inst.is_drum else 0
    bank, program, as_drums = _preset(font, int(inst.program), bool(inst.is_drum))
    try:
        font.channel_set_bank(chan, bank)
        font.channel_set_preset_number(chan, program, as_drums)
    except RuntimeError as exc:
        raise RenderError(f"{font_path}: no preset {bank}:{program} ({exc})") from exc
    remap = KIT_ONLY_NOTES if inst.is_drum and not as_drums else {}
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
            font.channel_note_on(chan, remap.get(e.a, e.a), e.b)
        elif e.kind == "off":
            font.channel_note_off(chan, remap.get(e.a, e.a))
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


class TooLong(RenderError):
    """A song longer than the render cap."""


def render_stems(midi: pretty_midi.PrettyMIDI, font_path: Path, sample_rate: int,
                 seconds: float | None = None, *, drum_font: Path | None = None,
                 max_seconds: float = MAX_RENDER_SECONDS) -> list[np.ndarray]:
    """Every instrument of ``midi`` -> list of (n,) float32 stems of one common length.

    Drum instruments use ``drum_font`` when given. A song longer than ``max_seconds`` raises
    :class:`TooLong` before anything is rendered.
    """
    n = song_samples(midi, sample_rate, seconds)
    if n > max_seconds * sample_rate:
        raise TooLong(f"{n / sample_rate:.0f} s long, more than the cap of {max_seconds:.0f} s "
                      "(--max-seconds)")
    return [render_instrument(inst, drum_font if inst.is_drum and drum_font else font_path, n,
                              sample_rate) for inst in midi.instruments]
