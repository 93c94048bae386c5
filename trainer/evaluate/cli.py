"""``partwise-train eval``: the paper's tables on a Slakh-layout dataset, as a report folder."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from model.weights import WeightsError
from trainer.clitools import setup_logging
from trainer.evaluate.report import EvalConfig, run
from trainer.evaluate.segments import PLANS

log = logging.getLogger(__name__)


def _positive_int(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return v


def parser() -> argparse.ArgumentParser:
    d = EvalConfig()
    ap = argparse.ArgumentParser(
        prog="partwise-train eval",
        description="Evaluate a weights file with the paper's protocol (Tables 1-5) on one split "
                    "of a Slakh-layout dataset; writes report.json, report.md and plots.")
    ap.add_argument("--data", required=True, help="dataset root (holds train/ validation/ test/)")
    ap.add_argument("--weights", required=True, help="CSN weights file (.safetensors + .json)")
    ap.add_argument("--out", required=True, help="report folder to write")
    ap.add_argument("--individual", help="training run folder (or its individual/ folder) with "
                    "the five individual networks, for the baselines")
    ap.add_argument("--split", default=d.split, choices=("train", "validation", "test"))
    ap.add_argument("--seconds", type=float, nargs="+", default=list(d.seconds),
                    help="Table 1 segment lengths (default: %(default)s)")
    ap.add_argument("--main-seconds", type=float, default=d.main_seconds,
                    help="segment length of Tables 2-5 and the figures (default: %(default)s)")
    ap.add_argument("--k", type=_positive_int, default=d.k, help="kNN neighbours")
    ap.add_argument("--labels", type=_positive_int, default=d.n_labels,
                    help="Table 2 labels per part (default: %(default)s)")
    ap.add_argument("--per-label", type=_positive_int, default=d.per_label,
                    help="Table 2 pseudo pieces per label (default: %(default)s)")
    ap.add_argument("--draws", type=_positive_int, default=d.draws,
                    help="Table 2: seeded draws of pseudo pieces, averaged, with their spread "
                         "(default: %(default)s)")
    ap.add_argument("--plan", choices=PLANS, default=d.plan,
                    help="Table 2's pseudo pieces: 'drawn' (--labels x --per-label, --draws "
                         "seeded draws), 'every' (every label track with every other track, "
                         "whole pieces, once, with its error over label tracks) or 'auto' "
                         "(every pair when no part has more label tracks than --labels, where "
                         "the draws would repeat the same pieces; default)")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--all-segments", action="store_true",
                    help="score parts on silent segments too (default: audible segments only)")
    ap.add_argument("--max-tracks", type=_positive_int, help="evaluate a seeded subset of tracks")
    ap.add_argument("--max-segments", type=_positive_int,
                    help="at most this many segments per track and length (spread evenly)")
    ap.add_argument("--max-pseudo-seconds", type=float, default=d.max_pseudo_seconds,
                    help="cap the length of each pseudo piece (default: %(default)s s)")
    ap.add_argument("--full", action="store_true",
                    help="the paper's full protocol: whole pseudo pieces and the baselines at "
                         "every segment length (slower)")
    ap.add_argument("--twins", action="store_true",
                    help="Table 2 across timbres: every other pseudo piece of a label takes the "
                         "label part from its twin, the same notes in another program, font and "
                         "effects (render them first: 'partwise-train data twins ROOT --split ...')")
    ap.add_argument("--batch-size", type=_positive_int, default=d.batch_size)
    ap.add_argument("--device", help="torch device (default: cuda when present, else cpu)")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        cfg = EvalConfig(split=args.split, seconds=tuple(args.seconds),
                         main_seconds=args.main_seconds, k=args.k, n_labels=args.labels,
                         per_label=args.per_label, draws=args.draws, plan=args.plan,
                         seed=args.seed,
                         audible_only=not args.all_segments, max_tracks=args.max_tracks,
                         max_segments=args.max_segments,
                         max_pseudo_seconds=None if args.full else args.max_pseudo_seconds,
                         baselines_all_lengths=args.full,
                         batch_size=args.batch_size, plots=not args.no_plots, twins=args.twins)
        report = run(args.data, args.weights, args.out, individual=args.individual, config=cfg,
                     device=args.device, progress=not args.no_progress)
    except (WeightsError, FileNotFoundError, ValueError) as e:
        print(f"partwise-train eval: {e}", file=sys.stderr)
        return 1
    t = report["tables"]
    main_s = f"{cfg.main_seconds:g}"
    print(f"report: {args.out}/report.md")
    for name, row in ((f"Table 1 (proposed, {main_s} s)", t["table1"]["proposed"][main_s]),
                      ("Table 2 (proposed)", t["table2"]["proposed"]),
                      ("Table 3 (proposed)", t["table3"]["proposed"]),
                      ("Table 4 (proposed)", t["table4"]["proposed"])):
        cells = "  ".join(f"{p} {'-' if v is None else f'{v:.2f}'}" for p, v in row.items())
        print(f"{name:26s} {cells}")
    std = {p: s["std"] for p, s in t["table2_spread"]["proposed"].items()}
    every = report["config"]["plan"] == "every"
    spread_name = "Table 2 se (labels)" if every else f"Table 2 std ({cfg.draws} draws)"
    dims = report["effective_dimension"]
    rows = [(spread_name, std), ("Effective dim. (mix)", dims["proposed_mix"])]
    if "shape_stem" in dims:
        rows.append(("  reference: stem shapes", dims["shape_stem"]))
    for name, row in rows:
        cells = "  ".join(f"{p} {'-' if v is None else f'{v:.2f}'}" for p, v in row.items())
        print(f"{name:26s} {cells}")
    return 0
