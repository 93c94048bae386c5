"""Building Slakh-layout datasets: generated songs (:func:`build_dataset`), a folder of real
MIDI files (:func:`render_midi_folder`) or POP909 songs arranged for a band
(:func:`arrange_pop909`), rendered in parallel with an explicit set of SoundFonts and, when
asked, per-stem production effects.

Every track is a pure function of (seed, index, font list), so a build is deterministic and an
interrupted build resumes: folders already complete on disk are kept, the rest are made.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import multiprocessing as mp
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pretty_midi

from model.audio import SAMPLE_RATE
from model.parts import PARTS
from trainer.data.compose import generate_song
from trainer.data.dataset import SPLITS, hashed_split
from trainer.data.effects import apply_chain, song_chains
from trainer.data.render import (
    MAX_RENDER_SECONDS,
    FontSet,
    FontSpec,
    RenderError,
    TooLong,
    render_stems,
)
from trainer.data.slakh import inst_class_of, midi_tempo, part_of_class
from trainer.data.writer import TMP_PREFIX, track_name, write_track

log = logging.getLogger(__name__)

BUILD_FILE = "partwise-build.json"
# A real MIDI file with fewer notes or a shorter span is a placeholder, not a song.
MIN_NOTES = 8
MIN_SONG_SECONDS = 5.0


@dataclass(frozen=True)
class TrackResult:
    """What one job did: ``status`` is "built", "kept" or "skipped" (``reason`` says why)."""

    name: str
    split: str
    status: str
    seconds: float = 0.0
    reason: str = ""
    source: str = ""


# -- splits -------------------------------------------------------------------------------
def split_counts(n: int, fractions: tuple[float, float, float]) -> list[int]:
    """Track counts per split for ``n`` tracks; each split with a share gets one if n allows."""
    f = np.asarray(fractions, dtype=float)
    if f.shape != (3,) or (f < 0).any() or f.sum() <= 0:
        raise ValueError(f"splits must be three non-negative fractions, got {fractions}")
    f = f / f.sum()
    counts = np.floor(n * f).astype(int)
    if n >= int((f > 0).sum()):
        counts[(f > 0) & (counts == 0)] = 1
    while counts.sum() > n:
        counts[int(np.argmax(counts))] -= 1
    while counts.sum() < n:
        counts[int(np.argmax(n * f - counts))] += 1
    return counts.tolist()


def assign_splits(n: int, fractions: tuple[float, float, float], seed: int) -> list[str]:
    """A split name for each of ``n`` indices: exact counts, shuffled by ``seed``."""
    counts = split_counts(n, fractions)
    labels = np.repeat(np.arange(3), counts)
    perm = np.random.default_rng([seed, 104729]).permutation(n)
    out = [""] * n
    for slot, i in enumerate(perm.tolist()):
        out[i] = SPLITS[int(labels[slot])]
    return out


def song_split(key: str, fractions: tuple[float, float, float], seed: int) -> str:
    """Split of a real song, decided by a hash of its identity (stable as the folder grows)."""
    return hashed_split(key, fractions, seed)


# -- jobs (run in worker processes) -------------------------------------------------------
def song_seed(seed: int, index: int) -> int:
    """The generator seed of track ``index`` of a build with ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _stem_parts(midi: pretty_midi.PrettyMIDI) -> list[str]:
    return [PARTS[part_of_class(inst_class_of(int(i.program), bool(i.is_drum)), bool(i.is_drum))]
            for i in midi.instruments]


@dataclass(frozen=True)
class RenderPlan:
    """How every track of a build is rendered (the same for all its jobs)."""

    fonts: FontSet
    sample_rate: int
    effects: bool
    max_seconds: float = MAX_RENDER_SECONDS


def render_track(out_dir: Path, midi: pretty_midi.PrettyMIDI, plan: RenderPlan, seed: int, index: int,
                 meta: dict, seconds: float | None = None, source_midi: bytes | None = None) -> float:
    """Render ``midi`` with the track's fonts (and effects), write it to ``out_dir``; its seconds.

    Raises :class:`RenderError` (:class:`TooLong` past the cap) and leaves nothing behind.
    """
    font, drum_font = plan.fonts.pick(seed, index)
    stems = render_stems(midi, font, plan.sample_rate, seconds, drum_font=drum_font,
                         max_seconds=plan.max_seconds)
    extra = [{"plugin_name": (drum_font if i.is_drum else font).name} for i in midi.instruments]
    if plan.effects:
        chains = song_chains(_stem_parts(midi), seed, index, plan.sample_rate)
        stems = [apply_chain(x, c, plan.sample_rate) for x, c in zip(stems, chains, strict=True)]
        for e, c in zip(extra, chains, strict=True):
            e["effects"] = c
    meta = {**meta, "soundfont": font.name, **({"drum_soundfont": drum_font.name} if drum_font != font else {})}
    write_track(out_dir, midi, stems, plan.sample_rate, meta, source_midi, stem_extra=extra)
    return stems[0].shape[-1] / plan.sample_rate if stems else 0.0


def _synth_job(out: str, index: int, split: str, seed: int, song_seconds: float | None,
               plan: RenderPlan) -> TrackResult:
    name = track_name(index)
    s = song_seed(seed, index)
    song = generate_song(s, song_seconds)
    meta = {"source": "synth", "tempo": song.tempo, "seed": s, **song.describe()}
    render_track(Path(out) / split / name, song.midi, plan, seed, index, meta, song.seconds)
    return TrackResult(name, split, "built", song.seconds, source=f"seed {s}")


def _midi_job(out: str, index: int, split: str, src: str, rel: str, seed: int,
              plan: RenderPlan) -> TrackResult:
    name = track_name(index)
    path = Path(src)
    try:
        data = path.read_bytes()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pretty_midi warns about common file quirks
            midi = pretty_midi.PrettyMIDI(io.BytesIO(data))
    except Exception as exc:  # pretty_midi/mido raise many kinds of errors on bad files
        return TrackResult(name, split, "skipped", reason=f"{rel}: not a readable MIDI file ({exc})")
    midi.instruments = [i for i in midi.instruments if i.notes]
    n_notes = sum(len(i.notes) for i in midi.instruments)
    if n_notes < MIN_NOTES or midi.get_end_time() < MIN_SONG_SECONDS:
        return TrackResult(name, split, "skipped", reason=(
            f"{rel}: a placeholder, not a song ({n_notes} notes, {midi.get_end_time():.1f} s)"))
    try:
        tempo = midi_tempo(path)
    except ValueError:
        tempo = 120.0
    meta = {"source": "midi", "tempo": tempo, "lmd_midpath": rel}
    try:
        seconds = render_track(Path(out) / split / name, midi, plan, seed, index, meta, source_midi=data)
    except TooLong as exc:
        return TrackResult(name, split, "skipped", reason=f"{rel}: {exc}")
    except (ValueError, OverflowError, IndexError, RenderError) as exc:
        return TrackResult(name, split, "skipped", reason=f"{rel}: cannot render ({exc})")
    return TrackResult(name, split, "built", seconds, source=rel)


# -- driver -------------------------------------------------------------------------------
def _workers(n: int) -> int:
    """``n`` processes, or (n <= 0) one per core this process may run on."""
    if n > 0:
        return n
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _clean_tmp(out: Path) -> None:
    for split in SPLITS:
        d = out / split
        if d.is_dir():
            for p in d.glob(f"{TMP_PREFIX}*"):
                shutil.rmtree(p, ignore_errors=True)


def _run(jobs: list[tuple[Callable[..., TrackResult], tuple]], workers: int,
         progress: bool, desc: str) -> Iterator[TrackResult]:
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc=desc, unit="track")
    try:
        if workers == 1 or len(jobs) <= 1:
            for fn, args in jobs:
                res = fn(*args)
                if bar:
                    bar.update(1)
                yield res
            return
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as pool:
            futures = [pool.submit(fn, *args) for fn, args in jobs]
            try:
                for fut in as_completed(futures):
                    res = fut.result()
                    if bar:
                        bar.update(1)
                    yield res
            except BaseException:
                # interrupted or failed: drop the queued jobs (the running ones finish);
                # complete tracks stay on disk for a resume
                for fut in futures:
                    fut.cancel()
                raise
    finally:
        if bar:
            bar.close()


def read_build_file(out: Path) -> dict:
    """The ``partwise-build.json`` of ``out`` ({} if there is none or it is unreadable)."""
    try:
        return json.loads((out / BUILD_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _check_build_file(out: Path, record: dict, free: tuple[str, ...] = ()) -> None:
    """Refuse to resume a build made with other settings (``free`` keys may differ)."""
    path = out / BUILD_FILE
    if path.exists():
        old = read_build_file(out)
        diff = [k for k in record if k not in ("started", *free) and old.get(k) != record[k]]
        if diff:
            shown = ", ".join(f"{k}={_short(old.get(k))}" for k in diff)
            raise ValueError(f"{out}: holds a build with other settings ({shown}); resume with "
                             "the same settings (and SoundFonts) or choose another --out folder")
    else:
        path.write_text(json.dumps({**record, "complete": False}, indent=2))


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _record(kind: str, seed: int, plan: RenderPlan, **settings: object) -> dict:
    """The settings of a build as ``partwise-build.json`` keeps them (fonts with size and sha256)."""
    return {"kind": kind, "seed": int(seed), **settings, "sample_rate": plan.sample_rate,
            "font_set": plan.fonts.name, "fonts": plan.fonts.describe(), "effects": plan.effects,
            "max_seconds": plan.max_seconds}


def _finish(out: Path, record: dict, results: list[TrackResult], t0: float) -> None:
    built = [r for r in results if r.status == "built"]
    record = {**record, "complete": True, "built": len(built), "kept": sum(r.status == "kept" for r in results),
              "skipped": [r.reason for r in results if r.status == "skipped"],
              "seconds_built": round(sum(r.seconds for r in built), 2),
              "wall_seconds": round(time.perf_counter() - t0, 2)}
    for split in SPLITS:  # a split no track fell into is there, empty, as a dataset has all three
        (out / split).mkdir(exist_ok=True)
    (out / BUILD_FILE).write_text(json.dumps(record, indent=2))
    log.info("%s: %d tracks built, %d kept, %d skipped (%.0f s of audio in %.1f s)", out,
             record["built"], record["kept"], len(record["skipped"]), record["seconds_built"],
             record["wall_seconds"])


DEFAULT_FONTS = "bundled"  # the Python API's default: one font, the same file on every machine


def build_dataset(out: str | Path, n_tracks: int, seed: int, *, song_seconds: float | None = None,
                  splits: tuple[float, float, float] = (0.8, 0.1, 0.1), workers: int = 0,
                  fonts: FontSpec = DEFAULT_FONTS, progress: bool = False,
                  sample_rate: int = SAMPLE_RATE, effects: bool = False,
                  max_seconds: float = MAX_RENDER_SECONDS) -> Path:
    """Generate ``n_tracks`` songs and render them into ``out/{train,validation,test}/TrackNNNNN``.

    ``song_seconds=None``: each song is 45-90 s (chosen by its seed). ``workers=0``: all cores.
    ``fonts``: a named set (see :data:`trainer.data.render.FONT_SETS`), font files or a FontSet.
    Deterministic for a given seed (and font list); tracks already complete are kept.
    """
    if n_tracks < 1:
        raise ValueError(f"n_tracks must be at least 1, got {n_tracks}")
    if song_seconds is not None and song_seconds > max_seconds:
        raise ValueError(f"songs of {song_seconds:g} s are longer than the cap of {max_seconds:g} s")
    out = Path(out)
    plan = RenderPlan(FontSet.of(fonts), sample_rate, effects, max_seconds)
    record = _record("synth", seed, plan, n_tracks=int(n_tracks), song_seconds=song_seconds,
                     splits=list(splits))
    out.mkdir(parents=True, exist_ok=True)
    _check_build_file(out, record)
    _clean_tmp(out)
    t0 = time.perf_counter()
    labels = assign_splits(n_tracks, splits, seed)
    results: list[TrackResult] = []
    jobs = []
    for i, split in enumerate(labels):
        (out / split).mkdir(exist_ok=True)
        if (out / split / track_name(i) / "metadata.yaml").exists():
            results.append(TrackResult(track_name(i), split, "kept"))
            continue
        jobs.append((_synth_job, (str(out), i, split, int(seed), song_seconds, plan)))
    if results:
        log.info("%s: resuming; %d of %d tracks already complete", out, len(results), n_tracks)
    results += list(_run(jobs, _workers(workers), progress, "synth"))
    _finish(out, record, results, t0)
    return out


def _midi_files(midi_dir: Path) -> list[Path]:
    return sorted(p for p in midi_dir.rglob("*") if p.is_file() and p.suffix.lower() in (".mid", ".midi", ".kar"))


def render_midi_folder(midi_dir: str | Path, out: str | Path, *,
                       splits: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0,
                       workers: int = 0, fonts: FontSpec = DEFAULT_FONTS,
                       progress: bool = False, sample_rate: int = SAMPLE_RATE,
                       effects: bool = False, max_seconds: float = MAX_RENDER_SECONDS) -> Path:
    """Render every MIDI file under ``midi_dir`` into the Slakh layout under ``out``.

    Each distinct song is one track; its split follows from a hash of its content, so a song
    lands in the same split on every build. Exact duplicates, unreadable and note-less files and
    songs longer than ``max_seconds`` are reported (logged and listed in ``partwise-build.json``)
    and skipped.
    """
    midi_dir, out = Path(midi_dir), Path(out)
    if not midi_dir.is_dir():
        raise FileNotFoundError(f"{midi_dir}: no such folder of MIDI files")
    files = _midi_files(midi_dir)
    if not files:
        raise ValueError(f"{midi_dir}: no MIDI files (.mid, .midi) found")
    plan = RenderPlan(FontSet.of(fonts), sample_rate, effects, max_seconds)
    record = _record("midi", seed, plan, source_dir=midi_dir.name, splits=list(splits))
    out.mkdir(parents=True, exist_ok=True)
    _check_build_file(out, record)
    _clean_tmp(out)
    t0 = time.perf_counter()
    seen: dict[str, str] = {}
    results: list[TrackResult] = []
    jobs = []
    index = 0
    for path in files:
        rel = str(path.relative_to(midi_dir))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest in seen:
            reason = f"{rel}: exact duplicate of {seen[digest]}"
            log.warning("skipping %s", reason)
            results.append(TrackResult("", "", "skipped", reason=reason))
            continue
        seen[digest] = rel
        split = song_split(digest, splits, seed)
        name = track_name(index)
        (out / split).mkdir(exist_ok=True)
        if (out / split / name / "metadata.yaml").exists():
            results.append(TrackResult(name, split, "kept", source=rel))
        else:
            jobs.append((_midi_job, (str(out), index, split, str(path), rel, int(seed), plan)))
        index += 1
    results += _logged(_run(jobs, _workers(workers), progress, "render-midi"))
    _finish(out, record, results, t0)
    return out


def _logged(results: Iterator[TrackResult]) -> list[TrackResult]:
    out = []
    for res in results:
        if res.status == "skipped":
            log.warning("skipping %s", res.reason)
        out.append(res)
    return out
