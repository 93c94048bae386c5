"""``partwise-train data``: build a Slakh-layout dataset (synth | render-midi | arrange-pop909),
or look at one (info | check | identity | fonts)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from model.audio import SAMPLE_RATE
from trainer.clitools import setup_logging
from trainer.data.render import FONT_SETS, MAX_RENDER_SECONDS

log = logging.getLogger(__name__)


def _splits(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three numbers like 0.8,0.1,0.1, got {text!r}") from None
    if len(parts) != 3 or min(parts) < 0 or sum(parts) <= 0:
        raise argparse.ArgumentTypeError(f"expected three non-negative fractions, got {text!r}")
    return parts  # type: ignore[return-value]


def _common(p: argparse.ArgumentParser, effects_default: bool = True) -> None:
    p.add_argument("--out", required=True, type=Path, help="dataset folder (created; an "
                   "interrupted build in it resumes)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--workers", type=int, default=0, help="processes (default 0 = all cores)")
    fonts = p.add_mutually_exclusive_group(required=True)
    fonts.add_argument("--font", action="append", type=Path, dest="fonts", metavar="SF2_OR_SF3",
                       help="SoundFont (.sf2 or .sf3) to render with; repeatable, each track "
                            "picks one")
    fonts.add_argument("--font-set", choices=sorted(FONT_SETS), dest="font_set",
                       help="a named set of SoundFonts (see 'partwise-train data fonts')")
    p.add_argument("--drum-font", action="append", type=Path, default=[], metavar="SF2_OR_SF3",
                   help="a drum-kit SoundFont for drum stems only (repeatable; with --font)")
    p.add_argument("--effects", action=argparse.BooleanOptionalAction, default=effects_default,
                   help="per-stem production effects drawn per song (EQ, compression, drive on "
                        f"guitars, reverb, level; default {'on' if effects_default else 'off'})")
    p.add_argument("--max-seconds", type=float, default=MAX_RENDER_SECONDS,
                   help=f"skip songs longer than this (default {MAX_RENDER_SECONDS:g} s)")
    p.add_argument("--sample-rate", type=int, default=SAMPLE_RATE,
                   help=f"sample rate of the written audio (default {SAMPLE_RATE})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true")


def _split_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--splits", type=_splits, default=(0.8, 0.1, 0.1),
                   help="train,validation,test fractions (default 0.8,0.1,0.1)")


def _song_numbers(text: str) -> list[int]:
    from trainer.data.pop909_build import parse_songs

    try:
        return parse_songs(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fonts(args: argparse.Namespace):
    """The FontSet the options name."""
    from trainer.data.render import FontSet, resolve_fonts

    if args.font_set:
        if args.drum_font:
            raise ValueError("--drum-font goes with --font; a --font-set names its own drum fonts")
        return FontSet.named(args.font_set)
    return FontSet(tuple(resolve_fonts(args.fonts)), tuple(resolve_fonts(args.drum_font)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="partwise-train data", description=__doc__.replace("`", "").strip())
    sub = parser.add_subparsers(dest="action", required=True)
    s = sub.add_parser("synth", help="generate songs and render them stem by stem")
    s.add_argument("--tracks", type=int, required=True, help="number of songs")
    s.add_argument("--seconds", type=float, default=None,
                   help="length of every song in seconds (default: 45-90 s, varied)")
    _common(s)
    _split_option(s)
    r = sub.add_parser("render-midi", help="render a folder of MIDI files stem by stem")
    r.add_argument("midi_dir", type=Path, help="folder searched recursively for .mid/.midi files")
    _common(r)
    _split_option(r)
    a = sub.add_parser("arrange-pop909", help="arrange POP909 songs for a band (drums and bass "
                       "from each song's beats and chords) and render them stem by stem")
    a.add_argument("source", type=Path, help="pop909.tar.xz or an extracted POP909 folder")
    a.add_argument("--songs", type=_song_numbers, default=None,
                   help="song numbers, e.g. 1-12,50 (default: all 909); the split of a song is "
                        "fixed by its number (every 10th song is test, every 10th from 5 validation)")
    a.add_argument("--seconds", type=float, default=None,
                   help="render an excerpt this long from where the drums come in (default: "
                        "the whole song)")
    _common(a)
    i = sub.add_parser("info", help="summarize a dataset in the Slakh layout")
    i.add_argument("root", type=Path)
    i.add_argument("-v", "--verbose", action="store_true")
    c = sub.add_parser("check", help="read every track of a dataset and report problems")
    c.add_argument("root", type=Path)
    c.add_argument("--no-mix-sum", action="store_true",
                   help="do not require mix == sum of stems (Slakh2100's mixes are not exact)")
    c.add_argument("-v", "--verbose", action="store_true")
    d = sub.add_parser("identity", help="how much identity each part has: music-ID of song "
                       "halves on the parts' MIDI (a song's first half finds its second half)")
    d.add_argument("root", type=Path)
    d.add_argument("--split", choices=("train", "validation", "test"), default=None,
                   help="one split (default: all tracks)")
    d.add_argument("-v", "--verbose", action="store_true")
    t = sub.add_parser("twins", help="render chosen parts of every track again with another "
                       "program, font and effects (the same notes), for 'fit --twin_prob'")
    t.add_argument("root", type=Path, help="a dataset built by this command (Slakh layout)")
    t.add_argument("--parts", default="piano",
                   help="comma-separated parts to twin (default piano; not drums)")
    t.add_argument("--split", choices=("train", "validation", "test"), default="train",
                   help="the split whose tracks get twins (default train)")
    t.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    t.add_argument("--workers", type=int, default=0, help="processes (default 0 = all cores)")
    t.add_argument("--font-set", choices=sorted(FONT_SETS), default="debian", dest="font_set",
                   help="the fonts the twins are voiced from (default debian, the training set)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("-v", "--verbose", action="store_true")
    sub.add_parser("fonts", help="list the SoundFonts found and the named font sets")
    return parser


def _check(root: Path, tolerance: float | None) -> int:
    from tqdm import tqdm

    from trainer.data.dataset import SPLITS, SlakhDataset, check_track

    problems: list[str] = []
    counts = {}
    for split in SPLITS:
        try:
            ds = SlakhDataset(root, split)
        except FileNotFoundError:
            continue
        counts[split] = len(ds)
        for i in tqdm(range(len(ds)), desc=f"check {split}", unit="track"):
            problems += check_track(ds, i, tolerance)
    if not counts:
        print(f"{root}: no train/validation/test folders", file=sys.stderr)
        return 1
    print(json.dumps({"tracks": counts, "problems": problems}, indent=2))
    return 1 if problems else 0


def _identity(root: Path, split: str | None) -> int:
    from model.parts import PARTS
    from trainer.data.identity import dataset_identity

    tracks = sorted(t for t in root.glob(f"{split or '*'}/Track*") if (t / "metadata.yaml").exists())
    if len(tracks) < 2:
        print(f"{root}: fewer than two tracks{f' in {split}' if split else ''}", file=sys.stderr)
        return 1
    print(json.dumps(dataset_identity(tracks, PARTS), indent=2))
    return 0


def _print_fonts(found: list[Path]) -> int:
    from trainer.data.render import FONT_SETS, FontSet, RenderError

    for f in found:
        print(f)
    for name, (fonts, drums) in FONT_SETS.items():
        try:
            FontSet.named(name)
            state = "ready"
        except RenderError as exc:
            state = f"not ready: {exc}"
        extra = f"; drums only: {', '.join(drums)}" if drums else ""
        print(f"set {name}: {', '.join(fonts)}{extra} ({state})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(getattr(args, "verbose", False))
    from trainer.data.render import RenderError, find_fonts

    try:
        if args.action == "fonts":
            return _print_fonts(find_fonts())
        if args.action == "identity":
            return _identity(args.root, args.split)
        if args.action == "check":
            return _check(args.root, None if args.no_mix_sum else 1e-3)
        if args.action == "twins":
            from trainer.data.twins import build_twins

            summary = build_twins(args.root, parts=[p.strip() for p in args.parts.split(",") if p.strip()],
                                  split=args.split, seed=args.seed, fonts=args.font_set,
                                  workers=args.workers, progress=not args.no_progress)
            print(json.dumps(summary, indent=2))
            return 1 if summary["failed"] else 0
        if args.action == "info":
            from trainer.data.dataset import SPLITS, SlakhDataset

            report = [SlakhDataset(args.root, s).summary() for s in SPLITS if (args.root / s).is_dir()]
            if not report:
                print(f"{args.root}: no train/validation/test folders", file=sys.stderr)
                return 1
            print(json.dumps(report, indent=2))
            return 0
        from trainer.data.synth import BUILD_FILE, build_dataset, render_midi_folder

        common = dict(seed=args.seed, workers=args.workers, fonts=_fonts(args),
                      progress=not args.no_progress, sample_rate=args.sample_rate,
                      effects=args.effects, max_seconds=args.max_seconds)
        if args.action == "synth":
            if args.tracks < 1:
                print("--tracks must be at least 1", file=sys.stderr)
                return 2
            out = build_dataset(args.out, args.tracks, song_seconds=args.seconds,
                                splits=args.splits, **common)
        elif args.action == "render-midi":
            out = render_midi_folder(args.midi_dir, args.out, splits=args.splits, **common)
        else:
            from trainer.data.pop909_build import arrange_pop909

            out = arrange_pop909(args.source, args.out, songs=args.songs,
                                 song_seconds=args.seconds, **common)
        record = json.loads((out / BUILD_FILE).read_text())
        print(json.dumps({k: record[k] for k in ("built", "kept", "skipped", "seconds_built",
                                                 "wall_seconds")}, indent=2))
        return 0
    except (RenderError, ValueError, FileNotFoundError) as exc:
        print(f"partwise-train data: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
