"""``partwise-train demo-audio``: render the demo collection's songs, the audio Partwise ships.

The demo songs are kept as MIDI in ``assets/demo`` (their source) beside the audio rendered from
them, which is what ``partwise demo`` analyses and plays: each song becomes a stereo Ogg Opus
mix (48 kHz, about 48 kbit/s), tagged with its title and composer from Freedoom's
``CREDITS-MUSIC``, album "Freedoom". Run it again after changing a song or the SoundFont:

    partwise-train demo-audio assets/demo --font /usr/share/sounds/sf2/FluidR3_GM.sf2
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE = 48000  # Opus's own rate
OPUS_LEVEL = 0.93  # libsndfile's compression level: about 48 kbit/s for a stereo mix
TARGET_RMS = 10 ** (-16 / 20)  # loudness of the mixes, before the peak limit
PEAK = 10 ** (-1 / 20)
ALBUM = "Freedoom"


class DemoAudioError(RuntimeError):
    """A song cannot be rendered; the message names the file and the problem."""


# ---------------------------------------------------------------- credits

@dataclass(frozen=True)
class Credit:
    title: str
    artist: str
    note: str = ""  # "remix of ...", "based on ..." when the credits say so


# Standard Doom music lumps that are not named after a map, by (credits section, label).
_SPECIAL_LUMPS = {
    ("phase 1", "title"): "d_intro", ("phase 1", "intermission"): "d_inter",
    ("phase 1", "victory"): "d_victor", ("phase 1", "bunny"): "d_bunny",
    ("phase 2", "title"): "d_dm2ttl", ("phase 2", "intermission"): "d_dm2int",
    ("phase 2", "story"): "d_read_m",
}
_MAP_LABEL = re.compile(r"^(E\dM\d|MAP\d\d|DM\d\d)$", re.IGNORECASE)
_ENTRY = re.compile(r"^\s*([A-Za-z0-9 ]+?):\s*(.+?)\s*$")
_SECTION = re.compile(r"^--(.+)--\s*$")
_WORK = re.compile(r'^(?:"(?P<quoted>[^"]+)"|(?P<plain>.+?))\s+by\s+(?P<rest>.+)$')
_NOTE = re.compile(r",\s+(?=(?:remix of|based on|originally by|modified by)\b)", re.IGNORECASE)


def parse_credits(text: str) -> dict[str, Credit]:
    """Freedoom's CREDITS-MUSIC -> {lump name like "d_e3m3": Credit} for the current songs.

    Only the sections before "Previously Featured" count (those list songs that were replaced).
    """
    out: dict[str, Credit] = {}
    section = ""
    for line in text.splitlines():
        m = _SECTION.match(line.strip())
        if m:
            section = m.group(1).strip().lower()
            if section.startswith("previously"):
                break
            continue
        m = _ENTRY.match(line)
        if not m:
            continue
        label, value = m.group(1).strip(), m.group(2)
        lump = "d_" + label.lower() if _MAP_LABEL.match(label) else _SPECIAL_LUMPS.get(
            (section, label.lower()), "")
        work = _WORK.match(value)
        if not lump or not work or lump in out:
            continue
        title = work.group("quoted") or work.group("plain").strip()
        parts = _NOTE.split(work.group("rest"), maxsplit=1)
        out[lump] = Credit(title=title, artist=parts[0].strip(),
                           note=parts[1].strip() if len(parts) > 1 else "")
    return out


def song_tags(midi: Path, credit: Credit, font: Path) -> dict[str, str]:
    comment = f"{credit.note}; " if credit.note else ""
    return {"title": credit.title, "artist": credit.artist, "album": ALBUM,
            "comment": f"{comment}rendered from {midi.name} with {font.name} by Partwise",
            "copyright": "Contributors to the Freedoom project, BSD-3-Clause (see COPYING.adoc)"}


# ---------------------------------------------------------------- rendering

def _pan_gains(inst) -> tuple[float, float]:
    """Constant-power (left, right) gains from the instrument's pan (CC 10) at its first note."""
    first = min((n.start for n in inst.notes), default=0.0)
    pan = 64
    for cc in sorted(inst.control_changes, key=lambda c: c.time):
        if cc.number == 10 and cc.time <= first + 1e-6:
            pan = cc.value
    angle = (min(max(pan, 0), 127) / 127.0) * (np.pi / 2)
    return float(np.cos(angle)), float(np.sin(angle))


def render_mix(midi_path: Path, font: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A MIDI song -> (n, 2) float32 stereo mix, levelled to TARGET_RMS under a -1 dBFS peak."""
    import pretty_midi

    from trainer.data.render import TAIL_SECONDS, RenderError, render_stems

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pretty_midi warns about common file quirks
            midi = pretty_midi.PrettyMIDI(str(midi_path))
    except Exception as e:  # pretty_midi/mido raise many kinds of errors on bad files
        raise DemoAudioError(f"{midi_path}: not a readable MIDI file ({e})") from e
    midi.instruments = [i for i in midi.instruments if i.notes]
    if not midi.instruments:
        raise DemoAudioError(f"{midi_path}: no notes to render")
    try:
        stems = render_stems(midi, font, sample_rate, midi.get_end_time() + TAIL_SECONDS)
    except (RenderError, ValueError, OverflowError, IndexError) as e:
        raise DemoAudioError(f"{midi_path}: cannot render with {font.name} ({e})") from e
    mix = np.zeros((stems[0].shape[0], 2), np.float32)
    for inst, stem in zip(midi.instruments, stems, strict=True):
        left, right = _pan_gains(inst)
        mix[:, 0] += left * stem
        mix[:, 1] += right * stem
    peak = float(np.abs(mix).max())
    rms = float(np.sqrt(np.mean(mix.astype(np.float64) ** 2)))
    if peak <= 0 or rms <= 0:
        raise DemoAudioError(f"{midi_path}: renders to silence with {font.name}")
    return (mix * min(TARGET_RMS / rms, PEAK / peak)).astype(np.float32)


def write_opus(path: Path, audio: np.ndarray, sample_rate: int, tags: dict[str, str]) -> None:
    """(n, channels) float32 -> Ogg Opus at ``path`` with comment ``tags``, atomically."""
    import soundfile as sf

    tmp = path.with_name(f".{path.name}.part")
    try:
        with sf.SoundFile(str(tmp), "w", sample_rate, audio.shape[1], format="OGG",
                          subtype="OPUS", compression_level=OPUS_LEVEL) as out:
            for key, value in tags.items():
                if value:
                    setattr(out, key, value)
            for i in range(0, audio.shape[0], 1 << 16):  # blocks: the encoders dislike huge writes
                out.write(audio[i:i + (1 << 16)])
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def render_song(midi: Path, out: Path, font: Path, tags: dict[str, str]) -> tuple[float, float]:
    """Render one song to ``out``; (audio seconds, wall seconds)."""
    t0 = time.perf_counter()
    mix = render_mix(midi, font)
    write_opus(out, mix, SAMPLE_RATE, tags)
    return mix.shape[0] / SAMPLE_RATE, time.perf_counter() - t0


def demo_midi(folder: Path) -> list[tuple[Path, Credit]]:
    """The songs of a demo folder (every .mid) with their credits; every song must be credited."""
    credits_file = folder / "CREDITS-MUSIC"
    if not credits_file.is_file():
        raise DemoAudioError(f"{credits_file}: missing (titles and composers come from it)")
    credits = parse_credits(credits_file.read_text(encoding="utf-8"))
    songs = []
    for midi in sorted(folder.glob("*.mid")):
        if midi.stem not in credits:
            raise DemoAudioError(f"{midi}: not credited in {credits_file.name}")
        songs.append((midi, credits[midi.stem]))
    if not songs:
        raise DemoAudioError(f"{folder}: no MIDI songs (.mid)")
    return songs


# ---------------------------------------------------------------- command line

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="partwise-train demo-audio", description=(
        "Render the demo collection's MIDI songs to the tagged Ogg Opus mixes Partwise ships."))
    p.add_argument("folder", type=Path, help="the demo folder (assets/demo): MIDI + CREDITS-MUSIC")
    p.add_argument("--font", type=Path, required=True,
                   help="General MIDI SoundFont (.sf2/.sf3); the shipped audio uses FluidR3_GM.sf2")
    p.add_argument("--out", type=Path, default=None, help="where the mixes go (default: FOLDER)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="render processes")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from trainer.clitools import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    out = args.out or args.folder
    try:
        if not args.font.is_file():
            raise DemoAudioError(f"{args.font}: SoundFont not found")
        songs = demo_midi(args.folder)
        out.mkdir(parents=True, exist_ok=True)
        with ProcessPoolExecutor(max_workers=max(1, args.workers)) as pool:
            futures = {midi: pool.submit(render_song, midi, out / f"{midi.stem}.opus", args.font,
                                         song_tags(midi, credit, args.font))
                       for midi, credit in songs}
            for midi, fut in futures.items():
                audio_s, wall_s = fut.result()
                log.info("%s: %.0f s of audio in %.1f s", midi.name, audio_s, wall_s)
    except (DemoAudioError, OSError) as e:
        print(f"partwise-train demo-audio: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
