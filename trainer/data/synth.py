"""Building Slakh-layout datasets: generated songs (:func:`build_dataset`) or a folder of real
MIDI files (:func:`render_midi_folder`), rendered in parallel with General MIDI SoundFonts.

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
from trainer.data.compose import generate_song
from trainer.data.dataset import SPLITS, hashed_split
from trainer.data.render import RenderError, render_stems, resolve_fonts
from trainer.data.slakh import midi_tempo
from trainer.data.writer import TMP_PREFIX, track_name, write_track

log = logging.getLogger(__name__)

BUILD_FILE = "partwise-build.json"
# A real MIDI file with fewer notes or a shorter span is a placeholder, not a song.
MIN_NOTES = 8
MIN_SONG_SECONDS = 5.0
MAX_SONG_SECONDS = 1200.0  # longer is a broken file (a stray event far out), not a song


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


def _pick_font(fonts: list[Path], seed: int, index: int) -> Path:
    return fonts[int(np.random.default_rng([seed, index, 31]).integers(len(fonts)))]


def _synth_job(out: str, index: int, split: str, seed: int, song_seconds: float | None,
               fonts: list[Path], sample_rate: int) -> TrackResult:
    name = track_name(index)
    s = song_seed(seed, index)
    song = generate_song(s, song_seconds)
    font = _pick_font(fonts, seed, index)
    stems = render_stems(song.midi, font, sample_rate, song.seconds)
    meta = {"source": "synth", "tempo": song.tempo, "soundfont": font.name, "seed": s,
            **song.describe()}
    write_track(Path(out) / split / name, song.midi, stems, sample_rate, meta)
    return TrackResult(name, split, "built", song.seconds, source=f"seed {s}")


def _midi_job(out: str, index: int, split: str, src: str, rel: str, seed: int,
              fonts: list[Path], sample_rate: int) -> TrackResult:
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
    if midi.get_end_time() > MAX_SONG_SECONDS:
        return TrackResult(name, split, "skipped", reason=(
            f"{rel}: {midi.get_end_time():.0f} s long, more than {MAX_SONG_SECONDS:.0f} s"))
    font = _pick_font(fonts, seed, index)
    try:
        tempo = midi_tempo(path)
    except ValueError:
        tempo = 120.0
    meta = {"source": "midi", "tempo": tempo, "soundfont": font.name, "lmd_midpath": rel}
    try:
        stems = render_stems(midi, font, sample_rate)
        write_track(Path(out) / split / name, midi, stems, sample_rate, meta, source_midi=data)
    except (ValueError, OverflowError, IndexError, RenderError) as exc:
        return TrackResult(name, split, "skipped", reason=f"{rel}: cannot render ({exc})")
    return TrackResult(name, split, "built", stems[0].shape[-1] / sample_rate if stems else 0.0,
                       source=rel)


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


def _check_build_file(out: Path, record: dict) -> None:
    path = out / BUILD_FILE
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except ValueError:
            old = {}
        keys = [k for k in record if k not in ("fonts", "started")]
        diff = [k for k in keys if old.get(k) != record[k]]
        if diff:
            raise ValueError(
                f"{out}: holds a build with other settings ({', '.join(f'{k}={old.get(k)!r}' for k in diff)}); "
                "resume with the same settings or choose another --out folder")
        if old.get("fonts") != record["fonts"]:
            log.warning("%s: the SoundFonts differ from the first run (%s); new tracks pick "
                        "from the fonts found now", out, old.get("fonts"))
    else:
        path.write_text(json.dumps({**record, "complete": False}, indent=2))


def _finish(out: Path, record: dict, results: list[TrackResult], t0: float) -> None:
    built = [r for r in results if r.status == "built"]
    record = {**record, "complete": True, "built": len(built), "kept": sum(r.status == "kept" for r in results),
              "skipped": [r.reason for r in results if r.status == "skipped"],
              "seconds_built": round(sum(r.seconds for r in built), 2),
              "wall_seconds": round(time.perf_counter() - t0, 2)}
    (out / BUILD_FILE).write_text(json.dumps(record, indent=2))
    log.info("%s: %d tracks built, %d kept, %d skipped (%.0f s of audio in %.1f s)", out,
             record["built"], record["kept"], len(record["skipped"]), record["seconds_built"],
             record["wall_seconds"])


def build_dataset(out: str | Path, n_tracks: int, seed: int, *, song_seconds: float | None = None,
                  splits: tuple[float, float, float] = (0.8, 0.1, 0.1), workers: int = 0,
                  fonts: list[str | Path] | None = None, progress: bool = False,
                  sample_rate: int = SAMPLE_RATE) -> Path:
    """Generate ``n_tracks`` songs and render them into ``out/{train,validation,test}/TrackNNNNN``.

    ``song_seconds=None``: each song is 45-90 s (chosen by its seed). ``workers=0``: all cores.
    Deterministic for a given seed (and font list); tracks already complete are kept.
    """
    if n_tracks < 1:
        raise ValueError(f"n_tracks must be at least 1, got {n_tracks}")
    out = Path(out)
    font_paths = resolve_fonts(fonts)
    record = {"kind": "synth", "seed": int(seed), "n_tracks": int(n_tracks),
              "song_seconds": song_seconds, "splits": list(splits), "sample_rate": sample_rate,
              "fonts": [p.name for p in font_paths]}
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
        jobs.append((_synth_job, (str(out), i, split, int(seed), song_seconds, font_paths, sample_rate)))
    if results:
        log.info("%s: resuming; %d of %d tracks already complete", out, len(results), n_tracks)
    results += list(_run(jobs, _workers(workers), progress, "synth"))
    _finish(out, record, results, t0)
    return out


def _midi_files(midi_dir: Path) -> list[Path]:
    return sorted(p for p in midi_dir.rglob("*") if p.is_file() and p.suffix.lower() in (".mid", ".midi", ".kar"))


def render_midi_folder(midi_dir: str | Path, out: str | Path, *,
                       splits: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0,
                       workers: int = 0, fonts: list[str | Path] | None = None,
                       progress: bool = False, sample_rate: int = SAMPLE_RATE) -> Path:
    """Render every MIDI file under ``midi_dir`` into the Slakh layout under ``out``.

    Each distinct song is one track; its split follows from a hash of its content, so a song
    lands in the same split on every build. Exact duplicates, unreadable and note-less files are
    reported (logged and listed in ``partwise-build.json``) and skipped.
    """
    midi_dir, out = Path(midi_dir), Path(out)
    if not midi_dir.is_dir():
        raise FileNotFoundError(f"{midi_dir}: no such folder of MIDI files")
    files = _midi_files(midi_dir)
    if not files:
        raise ValueError(f"{midi_dir}: no MIDI files (.mid, .midi) found")
    font_paths = resolve_fonts(fonts)
    record = {"kind": "midi", "seed": int(seed), "source_dir": midi_dir.name,
              "splits": list(splits), "sample_rate": sample_rate,
              "fonts": [p.name for p in font_paths]}
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
            jobs.append((_midi_job, (str(out), index, split, str(path), rel, int(seed), font_paths, sample_rate)))
        index += 1
    for res in _run(jobs, _workers(workers), progress, "render-midi"):
        if res.status == "skipped":
            log.warning("skipping %s", res.reason)
        results.append(res)
    _finish(out, record, results, t0)
    return out
