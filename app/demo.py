"""``partwise demo``: open the app on the demo collection that ships with Partwise.

The collection travels inside the package (``assets/demo``, found with ``importlib.resources``):
twelve Freedoom songs (BSD-3-Clause, composers in ``CREDITS-MUSIC``) rendered from their MIDI
to tagged stereo Ogg Opus mixes (``partwise-train demo-audio`` made them), and two CC-BY
recordings. The first run copies them into a per-user cache folder and scans that folder into a
library of its own (next to the user's library, never mixed into it) with the shipped model;
later runs keep every intact copy, so the window opens at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.cmdutil import device_arg
from app.library import DEFAULT_WEIGHTS
from app.userdirs import demo_cache_dir, demo_library_dir
from assets import DEMO as DEMO_ASSETS
from model.weights import file_sha256

log = logging.getLogger(__name__)

AUDIO_PATTERNS = ("*.opus", "*.ogg")  # the rendered songs, the recordings
LICENCE_FILES = ("COPYING.adoc", "CREDITS-MUSIC", "README.md")
OLD_RECORD = ".partwise-demo.json"  # left by versions that rendered the songs on the first run
EXIT_OK, EXIT_ERROR = 0, 1

Report = Callable[[str], None]


class DemoError(RuntimeError):
    """The demo cannot be prepared; the message names the file and the problem."""


# ---------------------------------------------------------------- folders

# ---------------------------------------------------------------- the collection

def demo_files(assets: Path = DEMO_ASSETS) -> list[Path]:
    """The collection's audio: the rendered songs (.opus), then the recordings (.ogg)."""
    if not assets.is_dir():
        raise DemoError(f"{assets}: the demo collection is missing (it ships inside the Partwise "
                        "package, under assets/demo): reinstall Partwise")
    files = [f for pattern in AUDIO_PATTERNS for f in sorted(assets.glob(pattern))]
    if not files:
        raise DemoError(f"{assets}: no audio in the demo collection (.opus songs, .ogg recordings)")
    return files


@dataclass
class CollectionReport:
    folder: Path
    copied: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # earlier selections, older renders

    @property
    def files(self) -> list[str]:
        """Every audio file of the collection now in ``folder``."""
        return sorted(self.copied + self.kept)


def prepare_collection(folder: Path, *, assets: Path = DEMO_ASSETS, limit: int | None = None,
                       report: Report | None = None) -> CollectionReport:
    """Copy the demo audio (the first ``limit`` files, or all) into ``folder``; keep intact copies.

    Files of the demo that are not part of this selection, and mixes that older versions of
    Partwise rendered into the folder, are removed, so the folder holds the selection and
    nothing else of the demo's. Licences and credits travel with the audio.
    """
    say = report or (lambda _m: None)
    shipped = demo_files(assets)
    selected = shipped[:limit] if limit is not None else shipped
    folder.mkdir(parents=True, exist_ok=True)
    for tmp in folder.glob(".*.part"):  # left by an interrupted copy
        tmp.unlink(missing_ok=True)
    res = CollectionReport(folder)
    ours = {f.name for f in shipped} | {f"{m.stem}.ogg" for m in assets.glob("*.mid")}
    for name in sorted(ours - {f.name for f in selected}):
        if (folder / name).is_file():
            (folder / name).unlink()
            res.removed.append(name)
    (folder / OLD_RECORD).unlink(missing_ok=True)
    for src in selected:
        (res.copied if _copy_if_changed(src, folder / src.name) else res.kept).append(src.name)
    for extra in [*sorted(assets.glob("*.txt")), *(assets / n for n in LICENCE_FILES)]:
        if extra.is_file():
            _copy_if_changed(extra, folder / extra.name)
    if res.copied:
        say(f"copied {len(res.copied)} demo file(s) into {folder}")
    return res


def _copy_if_changed(src: Path, dst: Path) -> bool:
    """Copy ``src`` to ``dst`` unless an identical copy is there; True when it copied."""
    if (dst.is_file() and dst.stat().st_size == src.stat().st_size
            and file_sha256(dst) == file_sha256(src)):
        return False
    tmp = dst.with_name(f".{dst.name}.part")
    shutil.copyfile(src, tmp)  # not the mode: an installed package's files may be read-only
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
        how = ("The default model ships inside the Partwise package (assets/"
               f"{DEFAULT_WEIGHTS.name}): reinstall Partwise, or train and export one "
               "(partwise-train fit ..., then partwise-train export ...) and pass --weights FILE.")
        raise DemoError(f"{weights}: model weights not found. {how}")
    try:
        read_card(weights)
    except WeightsError as e:
        raise DemoError(f"{e} (pass another model with --weights FILE)") from e


def prepare_demo(weights: Path | None = None, library: Path | None = None,
                 folder: Path | None = None, *, limit: int | None = None, device: str | None = None,
                 report: Report | None = None, progress: bool = False) -> DemoReport:
    """Copy the demo collection into ``folder`` and scan it into ``library``.

    Defaults: the shipped weights, :func:`demo_library_dir`, :func:`demo_cache_dir`.
    ``progress``: a progress bar on stderr while scanning.
    """
    from app.library import Library

    say = report or (lambda _m: None)
    weights = Path(weights or DEFAULT_WEIGHTS).expanduser()
    check_weights(weights)
    folder = Path(folder or demo_cache_dir()).expanduser()
    library = Path(library or demo_library_dir()).expanduser()
    coll = prepare_collection(folder, limit=limit, report=say)
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
        "Copy the demo collection that ships with Partwise into a cache folder, scan it into "
        "the demo library with the shipped model (first run only) and open the window on it."))
    p.add_argument("--weights", type=Path, default=None,
                   help=f"model weights (default: {DEFAULT_WEIGHTS.name}, shipped with Partwise)")
    p.add_argument("--library", type=Path, default=None,
                   help=f"demo library folder (default: {demo_library_dir()})")
    p.add_argument("--folder", type=Path, default=None,
                   help=f"where the demo audio goes (default: {demo_cache_dir()})")
    p.add_argument("--no-gui", action="store_true", help="only prepare the demo library")
    p.add_argument("--limit", type=int, default=None, help="only the first N files of the collection")
    p.add_argument("--device", default=None, type=device_arg,
                   help="torch device for the scan: cpu, cuda, cuda:N or mps (default: CUDA when present)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from app.clitools import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if not args.verbose:
        logging.getLogger("app").setLevel(logging.WARNING)
    if args.limit is not None and args.limit < 1:
        print("partwise demo: --limit must be at least 1", file=sys.stderr)
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
        rep = prepare_demo(args.weights, args.library, args.folder, limit=args.limit,
                           device=args.device, report=say, progress=True)
    except KeyboardInterrupt:
        print("partwise demo: interrupted; what was finished is kept", file=sys.stderr)
        return 130
    except (DemoError, OSError, ValueError, RuntimeError) as e:
        print(f"partwise demo: {e}", file=sys.stderr)
        return EXIT_ERROR
    coll = rep.collection
    say(f"{len(coll.files)} demo file(s) in {coll.folder} ({len(coll.copied)} copied, "
        f"{len(coll.kept)} kept)")
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
    """The app on the demo library; the user's own library stays what a plain ``partwise`` opens
    (the window does not remember the demo as the next start's default)."""
    from app.ui.main import main as gui_main

    return gui_main(["--library", str(library), "--weights", str(weights)] + (["--verbose"] if verbose else []),
                    remember=False)
