"""``partwise demo``: open the app on the demo collection that ships with Partwise.

The collection lives in ``assets/demo``: a dozen Freedoom songs as MIDI (BSD-3-Clause, composers
in ``CREDITS-MUSIC``) and two CC-BY recordings. The first run renders the songs to stereo Ogg
Vorbis mixes with the General MIDI SoundFont that the pretty_midi package carries (TimGM6mb),
tagged with title, composer and album, into a per-user cache folder; the recordings are copied
beside them. A record of what was rendered (source checksum, font, settings, output checksum)
makes later runs keep every file that is still intact and redo only what is missing or damaged.
The folder is then scanned into a library of its own (next to the user's library, never mixed
into it) with the shipped model, and the window opens on it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import multiprocessing as mp
import os
import re
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.library import DEFAULT_WEIGHTS, default_library_dir

log = logging.getLogger(__name__)

DEMO_ASSETS: Path = Path(__file__).resolve().parent.parent / "assets" / "demo"
RECORD_FILE = ".partwise-demo.json"
RENDER_VERSION = 1  # bump when the rendering changes, so caches are redone
SAMPLE_RATE = 44100
ALBUM = "Freedoom"
FREEDOOM_ARTIST = "Freedoom project contributors"
LICENCE_FILES = ("COPYING.adoc", "CREDITS-MUSIC", "README.md")
TARGET_RMS = 10 ** (-16 / 20)  # loudness of the mixes, before the peak limit
PEAK = 10 ** (-1 / 20)
EXIT_OK, EXIT_ERROR = 0, 1

Report = Callable[[str], None]


class DemoError(RuntimeError):
    """The demo cannot be prepared; the message names the file and the problem."""


# ---------------------------------------------------------------- folders

def default_cache_dir() -> Path:
    """Per-user cache folder for the rendered demo: $XDG_CACHE_HOME/partwise/demo and the like."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "partwise" / "cache"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches" / "partwise"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "partwise"
    return base / "demo"


def demo_library_dir() -> Path:
    """The demo's own library folder, beside the user's library (never the same one)."""
    return default_library_dir().parent / "demo-library"


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
        if _MAP_LABEL.match(label):
            lump = "d_" + label.lower()
        else:
            lump = _SPECIAL_LUMPS.get((section, label.lower()), "")
        work = _WORK.match(value)
        if not lump or not work or lump in out:
            continue
        title = work.group("quoted") or work.group("plain").strip()
        parts = _NOTE.split(work.group("rest"), maxsplit=1)
        artist = parts[0].strip()
        note = parts[1].strip() if len(parts) > 1 else ""
        out[lump] = Credit(title=title, artist=artist, note=note)
    return out


# ---------------------------------------------------------------- the collection

@dataclass(frozen=True)
class DemoSong:
    midi: Path
    credit: Credit

    @property
    def name(self) -> str:
        """File name of the rendered mix."""
        return self.midi.stem + ".ogg"


def demo_songs(assets: Path = DEMO_ASSETS) -> list[DemoSong]:
    """The MIDI songs of the demo collection (sorted by file name) with their credits."""
    if not assets.is_dir():
        raise DemoError(f"{assets}: the demo collection is missing (it ships in the Partwise "
                        "source tree under assets/demo)")
    credits_file = assets / "CREDITS-MUSIC"
    credits = parse_credits(credits_file.read_text(encoding="utf-8")) if credits_file.is_file() else {}
    songs = []
    for midi in sorted(assets.glob("*.mid")):
        credit = credits.get(midi.stem.lower()) or Credit(midi.stem, FREEDOOM_ARTIST)
        songs.append(DemoSong(midi, credit))
    if not songs:
        raise DemoError(f"{assets}: no MIDI songs (.mid) in the demo collection")
    return songs


def demo_recordings(assets: Path = DEMO_ASSETS) -> list[Path]:
    """The recordings of the demo collection (.ogg), each with its credit .txt beside it."""
    return sorted(assets.glob("*.ogg"))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- rendering (worker processes)

def _pan_gains(inst) -> tuple[float, float]:
    """Constant-power (left, right) gains from the instrument's pan (CC 10) at its first note."""
    first = min((n.start for n in inst.notes), default=0.0)
    pan = 64
    for cc in sorted(inst.control_changes, key=lambda c: c.time):
        if cc.number == 10 and cc.time <= first + 1e-6:
            pan = cc.value
    angle = (min(max(pan, 0), 127) / 127.0) * (np.pi / 2)
    return float(np.cos(angle)), float(np.sin(angle))


def render_mix(midi_path: Path, font: Path, sample_rate: int = SAMPLE_RATE,
               seconds: float | None = None) -> np.ndarray:
    """A MIDI song -> (n, 2) float32 stereo mix, levelled to TARGET_RMS under a -1 dBFS peak.

    ``seconds``: only the first ``seconds`` of the song (a short excerpt), else all of it.
    """
    import pretty_midi

    from trainer.data.render import TAIL_SECONDS, RenderError, render_stems

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pretty_midi warns about common file quirks
            midi = pretty_midi.PrettyMIDI(str(midi_path))
    except Exception as e:  # pretty_midi/mido raise many kinds of errors on bad files
        raise DemoError(f"{midi_path}: not a readable MIDI file ({e})") from e
    midi.instruments = [i for i in midi.instruments if i.notes]
    if not midi.instruments:
        raise DemoError(f"{midi_path}: no notes to render")
    length = midi.get_end_time() + TAIL_SECONDS
    if seconds is not None:
        length = min(length, seconds)
    try:
        stems = render_stems(midi, font, sample_rate, length)
    except (RenderError, ValueError, OverflowError, IndexError) as e:
        raise DemoError(f"{midi_path}: cannot render with {font.name} ({e})") from e
    mix = np.zeros((stems[0].shape[0], 2), np.float32)
    for inst, stem in zip(midi.instruments, stems, strict=True):
        left, right = _pan_gains(inst)
        mix[:, 0] += left * stem
        mix[:, 1] += right * stem
    peak = float(np.abs(mix).max())
    rms = float(np.sqrt(np.mean(mix.astype(np.float64) ** 2)))
    if peak <= 0 or rms <= 0:
        raise DemoError(f"{midi_path}: renders to silence with {font.name}")
    return (mix * min(TARGET_RMS / rms, PEAK / peak)).astype(np.float32)


def write_ogg(path: Path, audio: np.ndarray, sample_rate: int, tags: dict[str, str]) -> None:
    """(n, channels) float32 -> Ogg Vorbis at ``path`` with Vorbis comment ``tags``, atomically."""
    import soundfile as sf

    tmp = path.with_name(f".{path.name}.part")
    try:
        with sf.SoundFile(str(tmp), "w", sample_rate, audio.shape[1], format="OGG",
                          subtype="VORBIS") as out:
            for key, value in tags.items():
                if value:
                    setattr(out, key, value)
            # libsndfile's Vorbis encoder crashes on very large single writes: feed blocks
            for i in range(0, audio.shape[0], 1 << 16):
                out.write(audio[i:i + (1 << 16)])
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _render_job(midi: str, out: str, font: str, sample_rate: int, seconds: float | None,
                tags: dict[str, str]) -> tuple[str, float, float]:
    """Runs in a worker: render one song to ``out``; (file name, audio seconds, wall seconds)."""
    t0 = time.perf_counter()
    mix = render_mix(Path(midi), Path(font), sample_rate, seconds)
    write_ogg(Path(out), mix, sample_rate, tags)
    return Path(out).name, mix.shape[0] / sample_rate, time.perf_counter() - t0


# ---------------------------------------------------------------- preparing the folder

@dataclass
class CollectionReport:
    folder: Path
    rendered: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # messages
    removed: list[str] = field(default_factory=list)
    render_seconds: float = 0.0

    @property
    def files(self) -> list[str]:
        """Every audio file of the collection now in ``folder``."""
        return sorted(self.rendered + self.kept + self.copied)


def bundled_soundfont() -> Path:
    """pretty_midi's TimGM6mb.sf2; a DemoError naming the problem when it is not there."""
    from trainer.data.render import bundled_font

    font = bundled_font()
    if font is None:
        raise DemoError("TimGM6mb.sf2 is missing from the pretty_midi package: reinstall it "
                        "(pip install --force-reinstall pretty_midi) or pass --font FILE.sf2")
    return font


def _check_renderer() -> None:
    try:
        from tinysoundfont import _tinysoundfont  # noqa: F401
    except ImportError as e:
        raise DemoError("the demo songs are rendered with tinysoundfont, which is not installed "
                        f"({e}): run 'make setup', or pip install --no-deps tinysoundfont") from e


def _load_record(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_record(path: Path, settings: dict, entries: dict[str, dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"settings": settings, "songs": entries}, indent=2))
    os.replace(tmp, path)


def _tags(song: DemoSong) -> dict[str, str]:
    c = song.credit
    comment = f"{c.note}; " if c.note else ""
    return {"title": c.title, "artist": c.artist, "album": ALBUM,
            "comment": f"{comment}rendered from {song.midi.name} by Partwise",
            "copyright": "Contributors to the Freedoom project, BSD-3-Clause (see COPYING.adoc)"}


def _workers(n: int, jobs: int) -> int:
    if n <= 0:
        try:
            n = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            n = os.cpu_count() or 1
    return max(1, min(n, jobs))


def prepare_collection(folder: Path, *, assets: Path = DEMO_ASSETS, font: Path | None = None,
                       limit: int | None = None, excerpt: float | None = None,
                       workers: int = 0, report: Report | None = None) -> CollectionReport:
    """Render the demo songs and copy the recordings into ``folder``; keep what is intact.

    A rendered file is kept when the record says it came from the same MIDI (checksum) with the
    same font and settings and the file still has the recorded checksum; otherwise it is
    rendered again. ``limit``: only the first ``limit`` songs; ``excerpt``: only the first
    ``excerpt`` seconds of each (for quick checks); ``workers=0``: one process per core.
    """
    say = report or (lambda _m: None)
    songs = demo_songs(assets)[:limit] if limit is not None else demo_songs(assets)
    font = Path(font) if font is not None else bundled_soundfont()
    if not font.is_file():
        raise DemoError(f"{font}: SoundFont not found")
    folder.mkdir(parents=True, exist_ok=True)
    for tmp in folder.glob(".*.part"):  # left by an interrupted run
        tmp.unlink(missing_ok=True)
    record_path = folder / RECORD_FILE
    old = _load_record(record_path)
    settings = {"version": RENDER_VERSION, "font": font.name, "font_bytes": font.stat().st_size,
                "sample_rate": SAMPLE_RATE, "excerpt": excerpt}
    same_settings = old.get("settings") == settings
    old_songs: dict = old.get("songs", {}) if same_settings else {}
    res = CollectionReport(folder)
    entries: dict[str, dict] = {}
    todo: list[tuple[DemoSong, str]] = []
    for song in songs:
        src = _sha256(song.midi)
        out = folder / song.name
        prev = old_songs.get(song.name) or {}
        if (prev.get("source_sha256") == src and out.is_file()
                and out.stat().st_size == prev.get("bytes") and _sha256(out) == prev.get("sha256")):
            res.kept.append(song.name)
            entries[song.name] = prev
        else:
            todo.append((song, src))
    # files of an earlier selection (another --limit) that are no longer part of the demo
    for name in set(old.get("songs", {})) - {s.name for s in songs}:
        if (folder / name).exists():
            (folder / name).unlink()
            res.removed.append(name)
    _save_record(record_path, settings, entries)
    if todo:
        _check_renderer()
        for song, _src in todo:  # a stale file must not stay behind if its render fails
            (folder / song.name).unlink(missing_ok=True)
        what = f"the first {excerpt:g} s of " if excerpt is not None else ""
        why = ("first run only; later runs reuse them" if not old
               else "the render settings changed" if not same_settings
               else "missing or changed since the last run")
        say(f"rendering {what}{len(todo)} demo song(s) with {font.name} into {folder} ({why})")
        t0 = time.perf_counter()
        by_name = {s.name: (s, src) for s, src in todo}
        jobs = [(str(s.midi), str(folder / s.name), str(font), SAMPLE_RATE, excerpt, _tags(s))
                for s, _src in todo]
        n_workers = _workers(workers, len(jobs))
        for i, outcome in enumerate(_run_jobs(jobs, n_workers), 1):
            name, value = outcome
            song, src = by_name[name]
            if isinstance(value, BaseException):
                res.failed.append(str(value))
                say(f"  [{i}/{len(jobs)}] {song.midi.name}: FAILED: {value}")
                continue
            audio_s, wall_s = value
            out = folder / name
            entries[name] = {"source": song.midi.name, "source_sha256": src, "title": song.credit.title,
                             "artist": song.credit.artist, "seconds": round(audio_s, 3),
                             "bytes": out.stat().st_size, "sha256": _sha256(out)}
            _save_record(record_path, settings, entries)  # an interrupted run keeps what it made
            res.rendered.append(name)
            say(f"  [{i}/{len(jobs)}] {song.credit.title} ({song.credit.artist}): "
                f"{audio_s:.0f} s of audio in {wall_s:.1f} s")
        res.render_seconds = time.perf_counter() - t0
    for rec in demo_recordings(assets):
        (res.copied if _copy_if_changed(rec, folder / rec.name) else res.kept).append(rec.name)
    # licences and credits travel with the audio
    for extra in [*sorted(assets.glob("*.txt")), *(assets / n for n in LICENCE_FILES)]:
        if extra.is_file():
            _copy_if_changed(extra, folder / extra.name)
    return res


def _worker_init(parent: int) -> None:
    """Render workers end with the command, even when it is killed (Linux: parent-death signal)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            log.debug("no parent-death signal for render workers")
    if os.getppid() != parent:  # the command is already gone
        os._exit(1)


def _run_jobs(jobs: list[tuple], workers: int):
    """Yield (file name, (audio s, wall s) or the exception) per job, as they finish."""
    if workers == 1:
        for job in jobs:
            name = Path(job[1]).name
            try:
                _, audio_s, wall_s = _render_job(*job)
                yield name, (audio_s, wall_s)
            except DemoError as e:
                yield name, e
        return
    # fork is quick and safe here (no threads yet); elsewhere the platform's safe default
    ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(_render_job, *job): Path(job[1]).name for job in jobs}
        try:
            for fut in as_completed(futures):
                try:
                    _, audio_s, wall_s = fut.result()
                    yield futures[fut], (audio_s, wall_s)
                except DemoError as e:
                    yield futures[fut], e
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


def _copy_if_changed(src: Path, dst: Path) -> bool:
    """Copy ``src`` to ``dst`` unless an identical copy is there; True when it copied."""
    if dst.is_file() and dst.stat().st_size == src.stat().st_size and _sha256(dst) == _sha256(src):
        return False
    tmp = dst.with_name(f".{dst.name}.part")
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)
    return True


# ---------------------------------------------------------------- the demo library

@dataclass
class DemoReport:
    collection: CollectionReport
    library: Path
    weights: Path
    tracks: int = 0  # searchable tracks after the scan
    added: int = 0
    updated: int = 0
    removed: int = 0
    failed: list[str] = field(default_factory=list)  # failed tracks' errors
    scan_seconds: float = 0.0


def check_weights(weights: Path) -> None:
    """A DemoError that names the file and how to get it, unless ``weights`` is a readable model."""
    from model.weights import WeightsError, read_card

    if not weights.is_file():
        how = ("The default model ships as assets/partwise-default.safetensors in the Partwise "
               "source tree: update your copy (git pull), or train and export one "
               "(partwise-train fit ..., then partwise-train export ...) and pass --weights FILE.")
        raise DemoError(f"{weights}: model weights not found. {how}")
    try:
        read_card(weights)
    except WeightsError as e:
        raise DemoError(f"{e} (pass another model with --weights FILE)") from e


def prepare_demo(weights: Path | None = None, library: Path | None = None,
                 folder: Path | None = None, *, font: Path | None = None, limit: int | None = None,
                 excerpt: float | None = None, workers: int = 0, device: str | None = None,
                 report: Report | None = None, progress: bool = False) -> DemoReport:
    """Render/copy the demo collection into ``folder`` and scan it into ``library``.

    Defaults: the shipped weights, :func:`demo_library_dir`, :func:`default_cache_dir`.
    ``progress``: a progress bar on stderr while scanning.
    """
    from app.library import Library

    say = report or (lambda _m: None)
    weights = Path(weights or DEFAULT_WEIGHTS).expanduser()
    check_weights(weights)
    folder = Path(folder or default_cache_dir()).expanduser()
    library = Path(library or demo_library_dir()).expanduser()
    coll = prepare_collection(folder, font=font, limit=limit, excerpt=excerpt, workers=workers,
                              report=say)
    out = DemoReport(coll, library, weights)
    t0 = time.perf_counter()
    lib = Library(library, weights=weights, device=device)
    try:
        bar = None
        for prog in lib.scan([folder]):
            if progress and bar is None and prog.total:
                from tqdm import tqdm

                say(f"scanning {prog.total} track(s) into the demo library {library}")
                bar = tqdm(total=prog.total, unit="track", file=sys.stderr, dynamic_ncols=True)
            if bar is not None:
                bar.n = prog.done
                bar.refresh()
            out.added, out.updated, out.removed = prog.added, prog.updated, prog.removed
        if bar is not None:
            bar.close()
        out.failed = [t.error or str(t.path) for t in lib.failures()]
        out.tracks = len(lib.index)
    finally:
        lib.close()
    out.scan_seconds = time.perf_counter() - t0
    return out


# ---------------------------------------------------------------- command line

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="partwise demo", description=(
        "Render the demo songs (first run only), scan them into the demo library with the "
        "shipped model and open the window on it."))
    p.add_argument("--weights", type=Path, default=None,
                   help=f"model weights (default: {DEFAULT_WEIGHTS.name} shipped in assets/)")
    p.add_argument("--library", type=Path, default=None,
                   help=f"demo library folder (default: {demo_library_dir()})")
    p.add_argument("--folder", type=Path, default=None,
                   help=f"where the demo audio goes (default: {default_cache_dir()})")
    p.add_argument("--font", type=Path, default=None,
                   help="General MIDI SoundFont to render with (default: pretty_midi's TimGM6mb.sf2)")
    p.add_argument("--no-gui", action="store_true", help="only prepare the demo library")
    p.add_argument("--limit", type=int, default=None, help="only the first N songs")
    p.add_argument("--excerpt", type=float, default=None,
                   help="render only the first SECONDS of each song (quick checks)")
    p.add_argument("--workers", type=int, default=0, help="render processes (default: one per core)")
    p.add_argument("--device", default=None, help="torch device for the scan (default: CUDA when present)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from model.clitools import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if not args.verbose:
        logging.getLogger("app").setLevel(logging.WARNING)
    if args.limit is not None and args.limit < 1:
        print("partwise demo: --limit must be at least 1", file=sys.stderr)
        return 2
    if args.excerpt is not None and args.excerpt <= 0:
        print("partwise demo: --excerpt must be positive", file=sys.stderr)
        return 2

    if not args.no_gui:  # before minutes of preparation, not after: Qt would abort
        from app.ui.qtdeps import display_problem

        if (problem := display_problem()) is not None:
            print(f"partwise demo: cannot open the window: {problem} (partwise demo --no-gui "
                  "prepares the demo library without one)", file=sys.stderr)
            return EXIT_ERROR

    def say(message: str) -> None:
        print(f"demo: {message}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    try:
        rep = prepare_demo(args.weights, args.library, args.folder, font=args.font,
                           limit=args.limit, excerpt=args.excerpt, workers=args.workers,
                           device=args.device, report=say, progress=True)
    except KeyboardInterrupt:
        print("partwise demo: interrupted; what was finished is kept", file=sys.stderr)
        return 130
    except (DemoError, OSError, ValueError, RuntimeError) as e:
        print(f"partwise demo: {e}", file=sys.stderr)
        return EXIT_ERROR
    coll = rep.collection
    rendered = (f"{len(coll.rendered)} song(s) rendered in {coll.render_seconds:.1f} s"
                if coll.rendered else "nothing to render")
    say(f"{rendered}, {len(coll.kept)} file(s) kept, {len(coll.copied)} recording(s) copied "
        f"in {coll.folder}")
    for msg in coll.failed:
        say(f"warning: {msg}")
    say(f"library {rep.library}: {rep.tracks} searchable track(s) ({rep.added} added, "
        f"{rep.updated} updated, {rep.removed} removed; scan {rep.scan_seconds:.1f} s); "
        f"ready in {time.perf_counter() - t0:.1f} s")
    for err in rep.failed:
        say(f"warning: failed track: {err}")
    if rep.tracks == 0:
        print(f"partwise demo: no track of {coll.folder} could be analysed", file=sys.stderr)
        return EXIT_ERROR
    if args.no_gui:
        return EXIT_OK
    say("opening the window")
    return _open_window(rep.library, rep.weights.resolve(), args.verbose)


def _open_window(library: Path, weights: Path, verbose: bool) -> int:
    """The app on the demo library; the user's own library stays what a plain ``partwise`` opens.

    The window remembers the library and weights it was opened with as the next start's
    default; for the demo that would replace the user's choice, so it is put back afterwards.
    """
    from app.ui.main import main as gui_main

    try:
        from PySide6.QtCore import QSettings
    except ImportError:  # gui_main explains what is missing
        return gui_main(["--library", str(library), "--weights", str(weights)])
    keys = ("library/path", "library/weights")
    settings = QSettings("Partwise", "Partwise")
    before = {k: settings.value(k) for k in keys if settings.contains(k)}
    try:
        return gui_main(["--library", str(library), "--weights", str(weights)]
                        + (["--verbose"] if verbose else []))
    finally:
        settings = QSettings("Partwise", "Partwise")
        for k in keys:
            if k in before:
                settings.setValue(k, before[k])
            else:
                settings.remove(k)
        settings.sync()
