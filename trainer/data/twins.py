"""``partwise-train data twins ROOT``: each track's chosen parts played again in another timbre.

A *twin* of a stem is the same notes (the stem's own MIDI, ``MIDI/SNN.mid``) rendered with
another program of the same General MIDI family, another SoundFont of the set and a freshly
drawn effects chain (:mod:`trainer.data.effects`), brought to the stem's own loudness. Two
songs' pianos in a build differ by notes *and* by a per-song sound (program, font, EQ, room),
and a network can tell them apart by the sound alone; on a person's music, where most pianos
sound alike, that tells nothing. A triplet whose positive takes the anchor's part from its twin
(``fit --twin_prob``) shares the notes and not the sound, so the sound stops naming the song.

Twins live beside the stems: ``TrackNNNNN/twins/SNN.flac`` and ``twins/twins.json`` (what was
drawn for each stem: program, font, effects, gain). The JSON is written last, so a track without
it is rebuilt and an interrupted build resumes; a track whose twins were drawn with other
settings (parts, seed, fonts) is rebuilt too. Deterministic for a given seed and font set.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.parts import PARTS

log = logging.getLogger(__name__)

TWINS_DIR = "twins"
TWINS_FILE = "twins.json"
TWINS_VERSION = 1
PEAK = 0.99  # a twin louder than this at its stem's loudness is turned down to it


@dataclass(frozen=True)
class TwinResult:
    track: str
    status: str  # "built" | "kept" | "none" (no stem of the parts) | "failed"
    stems: int = 0
    reason: str = ""


def twin_program(program: int, rng: np.random.Generator) -> int:
    """Another program of ``program``'s family of eight (General MIDI's instrument groups)."""
    family = program - program % 8
    return int(rng.choice([p for p in range(family, family + 8) if p != program]))


def _settings(parts: Sequence[str], seed: int, fonts: Sequence[Path]) -> dict:
    return {"version": TWINS_VERSION, "parts": list(parts), "seed": seed,
            "fonts": [f.name for f in fonts]}


def read_twins(track: Path) -> dict | None:
    """A track's ``twins/twins.json``, or None when it has no (complete) twins."""
    try:
        doc = json.loads((track / TWINS_DIR / TWINS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("version") == TWINS_VERSION else None


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def twin_track(track: Path, index: int, parts: Sequence[str], seed: int,
               fonts: Sequence[Path]) -> TwinResult:
    """Render the twins of one track folder (see the module's docstring), each at its stem's
    own sample rate."""
    import pretty_midi
    import soundfile as sf

    from model import audioio
    from trainer.data.dataset import read_metadata
    from trainer.data.effects import apply_chain, draw_chain, draw_room
    from trainer.data.render import RenderError, render_instrument

    settings = _settings(parts, seed, fonts)
    old = read_twins(track)
    if old is not None and old.get("settings") == settings:
        return TwinResult(track.name, "kept", len(old.get("stems", {})))
    try:
        meta = read_metadata(track)
    except ValueError as exc:
        return TwinResult(track.name, "failed", reason=str(exc))
    stems = meta.get("stems") or {}
    audio_dir, midi_dir = track / meta.get("audio_dir", "stems"), track / meta.get("midi_dir", "MIDI")
    todo = [(k, s) for k, s in stems.items() if isinstance(s, dict) and s.get("part") in parts
            and s.get("audio_rendered") and not s.get("is_drum")]
    tmp = track / f".{TWINS_DIR}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    room = draw_room(np.random.default_rng([seed, index, 91]))
    out: dict[str, dict] = {}
    try:
        for k, (key, stem) in enumerate(todo):
            rng = np.random.default_rng([seed, index, 91, k])
            try:
                orig, sr = audioio.read(audio_dir / f"{key}.flac", mono=True)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    midi = pretty_midi.PrettyMIDI(str(midi_dir / f"{key}.mid"))
            except Exception as exc:  # soundfile and pretty_midi raise many kinds of errors
                return TwinResult(track.name, "failed", reason=f"{key}: cannot read the stem ({exc})")
            insts = [i for i in midi.instruments if i.notes]
            if not insts:
                continue
            inst = insts[0]
            program = twin_program(int(stem.get("program_num", inst.program)), rng)
            inst.program = program
            own = stem.get("plugin_name")
            choices = [f for f in fonts if f.name != own] or list(fonts)
            font = choices[int(rng.integers(len(choices)))]
            try:
                x = render_instrument(inst, font, len(orig), sr)
            except RenderError as exc:
                return TwinResult(track.name, "failed", reason=f"{key}: {exc}")
            chain = draw_chain(stem["part"], room, sr, rng)
            chain = [fx for fx in chain if fx["type"] != "Level"]
            x = apply_chain(x, chain, sr)
            target, have = _rms(orig), _rms(x)
            if have < 1e-9 or target < 1e-9:
                continue  # the program is silent in this font, or the stem is
            gain = target / have
            peak = float(np.max(np.abs(x))) * gain
            if peak > PEAK:
                gain *= PEAK / peak
            sf.write(str(tmp / f"{key}.flac"), np.clip(x * gain, -1.0, 1.0), sr,
                     subtype="PCM_16")
            out[key] = {"part": stem["part"], "program": program, "font": font.name,
                        "effects": chain, "gain_db": round(20 * float(np.log10(gain)), 2)}
        (tmp / TWINS_FILE).write_text(json.dumps({"version": TWINS_VERSION, "settings": settings,
                                                  "stems": out}, indent=1))
        dest = track / TWINS_DIR
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return TwinResult(track.name, "built" if out else "none", len(out))


def _job(args: tuple) -> TwinResult:
    return twin_track(*args)


def build_twins(root: str | Path, *, parts: Sequence[str] = ("piano",), split: str = "train",
                seed: int = 0, fonts=None, workers: int = 0, progress: bool = False) -> dict:
    """Twins for every track of ``root``'s ``split``; a summary (counts, seconds, failures)."""
    from tqdm import tqdm

    from trainer.data.dataset import SlakhDataset
    from trainer.data.render import FontSet, heldout_fonts

    bad = [p for p in parts if p not in PARTS or p == "drums"]
    if bad or not parts:
        raise ValueError(f"twin parts must be among {', '.join(PARTS[1:])}, got {list(parts)}")
    fontset = FontSet.of(fonts if fonts is not None else "debian")
    kept = sorted({f.name for f in fontset.fonts} & heldout_fonts())
    if kept and split == "train":
        raise ValueError(f"{', '.join(kept)} is kept for evaluation (font set 'heldout'); it "
                         "cannot voice training twins")
    ds = SlakhDataset(root, split)
    jobs = [(t.path, i, tuple(parts), seed, fontset.fonts) for i, t in enumerate(ds.tracks)]
    t0 = time.perf_counter()
    workers = workers or os.cpu_count() or 1
    results: list[TwinResult] = []
    with ProcessPoolExecutor(workers) as pool:
        for r in tqdm(pool.map(_job, jobs, chunksize=4), total=len(jobs), disable=not progress,
                      desc=f"twins {split}", unit="track"):
            if r.status == "failed":
                log.warning("%s: no twins (%s)", r.track, r.reason)
            results.append(r)
    summary = {status: sum(r.status == status for r in results) for status in ("built", "kept", "none", "failed")}
    summary |= {"stems": sum(r.stems for r in results), "parts": list(parts), "split": split,
                "fonts": [f.name for f in fontset.fonts], "wall_seconds": round(time.perf_counter() - t0, 1),
                "failures": [f"{r.track}: {r.reason}" for r in results if r.status == "failed"][:20]}
    return summary
