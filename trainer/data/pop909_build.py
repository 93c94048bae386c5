"""``arrange-pop909``: every POP909 song as a band song in the Slakh layout.

PIANO stays the piano part; MELODY and BRIDGE are voiced by a guitar and an "others" program;
drums and bass are written for the song from its own beats and chords
(:mod:`trainer.data.arrange`). Track ``TrackNNNNN`` is POP909 song NNN and its split is fixed by
the song number (:func:`trainer.data.pop909.song_split`), whatever the seed or the selection of
songs. POP909's LICENSE is copied into the dataset folder.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from model.audio import SAMPLE_RATE
from trainer.data.arrange import arrange, crop
from trainer.data.pop909 import N_SONGS, Pop909Error, load_song, read_collection, song_split
from trainer.data.render import MAX_RENDER_SECONDS, FontSet, FontSpec, RenderError, TooLong
from trainer.data.synth import (
    DEFAULT_FONTS,
    RenderPlan,
    TrackResult,
    _check_build_file,
    _clean_tmp,
    _finish,
    _logged,
    _record,
    _run,
    _workers,
    read_build_file,
    render_track,
)
from trainer.data.writer import track_name

log = logging.getLogger(__name__)

LICENSE_FILE = "POP909-LICENSE"
SPLIT_RULE = "fixed by song number: test = number % 10 == 0, validation = number % 10 == 5"


def parse_songs(text: str) -> list[int]:
    """``"1-12,50"`` -> [1, ..., 12, 50]; numbers must lie in 1..909."""
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise ValueError(f"song numbers like 1-12,50 expected, got {text!r}") from None
        if not 1 <= a <= b <= N_SONGS:
            raise ValueError(f"song numbers must lie in 1..{N_SONGS}, got {part.strip()!r}")
        out.update(range(a, b + 1))
    return sorted(out)


def _pop909_job(out: str, number: int, files: dict[str, bytes], seed: int,
                song_seconds: float | None, plan: RenderPlan) -> TrackResult:
    index, split, where = number - 1, song_split(number), f"POP909/{number:03d}"
    name = track_name(index)
    try:
        song = load_song(number, files, where)
        arr = arrange(song, seed)
    except (Pop909Error, ValueError, OSError, EOFError, KeyError, IndexError) as exc:
        return TrackResult(name, split, "skipped", reason=f"{where}: cannot arrange ({exc})")
    meta = {"source": "pop909", "pop909_song": f"{number:03d}", "tempo": arr.tempo, "seed": seed,
            **arr.describe}
    if song_seconds is not None:
        start = arr.describe["drums_enter_s"]
        crop(arr.midi, start, song_seconds)
        meta["excerpt_s"] = [start, song_seconds]
    try:
        seconds = render_track(Path(out) / split / name, arr.midi, plan, seed, index, meta, song_seconds)
    except TooLong as exc:
        return TrackResult(name, split, "skipped", reason=f"{where}: {exc}")
    except (ValueError, OverflowError, IndexError, RenderError) as exc:
        return TrackResult(name, split, "skipped", reason=f"{where}: cannot render ({exc})")
    return TrackResult(name, split, "built", seconds, source=where)


def _songs_built(before: object, wanted: set[int] | None) -> list[int] | str:
    """The songs a folder holds after this build: the earlier selection and this one."""
    if wanted is None or before == "all":
        return "all"
    return sorted(wanted | set(before if isinstance(before, list) else []))


def _write_licence(source: Path, out: Path, licence: bytes | None) -> None:
    if licence is None:
        raise Pop909Error(f"{source}: no LICENSE inside; POP909's MIT licence must travel with "
                          "its copies, so the build stops (use the original archive)")
    (out / LICENSE_FILE).write_bytes(licence)


def arrange_pop909(source: str | Path, out: str | Path, *, seed: int = 0,
                   songs: list[int] | None = None, song_seconds: float | None = None,
                   workers: int = 0, fonts: FontSpec = DEFAULT_FONTS, progress: bool = False,
                   sample_rate: int = SAMPLE_RATE, effects: bool = True,
                   max_seconds: float = MAX_RENDER_SECONDS) -> Path:
    """Arrange and render POP909 songs (``songs``: their numbers, default all) under ``out``.

    ``source``: the archive (pop909.tar.xz) or an extracted folder. ``song_seconds``: render only
    that long an excerpt of each song, from the bar where its drums come in. Resumable and
    deterministic in (seed, fonts); splits do not depend on either.
    """
    source, out = Path(source), Path(out)
    if song_seconds is not None and not 0 < song_seconds <= max_seconds:
        raise ValueError(f"--seconds must lie in (0, {max_seconds:g}], got {song_seconds:g}")
    wanted = set(songs) if songs else None
    collection, licence = read_collection(source, wanted)
    plan = RenderPlan(FontSet.of(fonts), sample_rate, effects, max_seconds)
    record = _record("pop909", seed, plan, source=source.name,
                     songs=_songs_built(read_build_file(out).get("songs"), wanted),
                     song_seconds=song_seconds, splits=SPLIT_RULE)
    out.mkdir(parents=True, exist_ok=True)
    _check_build_file(out, record, free=("songs",))  # a song's track never depends on the others
    _write_licence(source, out, licence)
    _clean_tmp(out)
    t0 = time.perf_counter()
    results: list[TrackResult] = []
    jobs = []
    for number in sorted(wanted or collection):
        split, name = song_split(number), track_name(number - 1)
        if number not in collection:
            results.append(TrackResult(name, split, "skipped", reason=f"POP909/{number:03d}: not in {source.name}"))
            continue
        (out / split).mkdir(exist_ok=True)
        if (out / split / name / "metadata.yaml").exists():
            results.append(TrackResult(name, split, "kept", source=f"POP909/{number:03d}"))
            continue
        jobs.append((_pop909_job, (str(out), number, collection[number], int(seed), song_seconds, plan)))
    if results:
        log.info("%s: %d songs already complete or not in the source", out, len(results))
    results += _logged(_run(jobs, _workers(workers), progress, "arrange-pop909"))
    _finish(out, record, results, t0)
    return out
