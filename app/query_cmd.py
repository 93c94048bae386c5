"""``partwise query TRACK_OR_FILE --focus drums=1,bass=0.5``: tracks similar part by part."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from app.cmdutil import (
    EXIT_OK,
    ArgumentParser,
    add_library_options,
    check_focus,
    check_results,
    command,
    count_arg,
    focus_arg,
    one_line,
    open_library,
    parse_query,
)
from app.focus import format_focus
from app.library import Result
from app.timeline import format_time, parse_span
from model.parts import PARTS


def result_dict(rank: int, r: Result) -> dict:
    """One hit as ``--json`` prints it: the same fields the window and ``export`` show."""
    t = r.track
    return {"rank": rank, "id": t.id, "path": str(t.path), "title": t.title, "artist": t.artist,
            "album": t.album, "duration": round(t.duration, 2), "match": round(r.score, 6),
            "similarity": dict(zip(PARTS, (round(float(v), 6) for v in r.similarity), strict=True)),
            "because": r.because,
            "part_distances": dict(zip(PARTS, map(float, r.part_distances), strict=True)),
            "query_start": r.query_start, "match_start": r.match_start,
            "presence": dict(zip(PARTS, map(float, t.presence), strict=True))}


def span_arg(text: str) -> tuple[float, float]:
    """``--at``: START-END in seconds or minutes:seconds."""
    try:
        return parse_span(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _mmss(s: float) -> str:
    return f"{int(s) // 60}:{int(s) % 60:02d}"


@command("partwise query")
def main(argv: Sequence[str] | None = None) -> int:
    p = ArgumentParser(prog="partwise query", description=__doc__.replace("`", "").strip())
    p.add_argument("query", help="a track id in the library, or an audio file")
    p.add_argument("--focus", type=focus_arg, default=None,
                   help="weights per part in [-1, 1], e.g. drums=1,bass=0.5 or drums=1,others=-0.5 "
                        "(negative: different in that part); default: all parts equally")
    p.add_argument("-k", type=count_arg, default=10, help="number of results (default 10)")
    p.add_argument("--at", type=span_arg, default=None, metavar="START-END",
                   help="search from this stretch of the query track only, e.g. 1:10-1:25")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_library_options(p)
    args = p.parse_args(argv)
    query = parse_query(args.query)
    lib = open_library(args, reader=True)
    try:
        w, warnings = check_focus(lib, query, args.focus)
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        results = lib.search(query, w, k=args.k, at=args.at)
        check_results(lib, len(results))
    finally:
        lib.close()
    if args.json:
        print(json.dumps({"query": args.query, "at": list(args.at) if args.at else None, "focus": dict(zip(PARTS, map(float, w), strict=True)),
                          "results": [result_dict(i + 1, r) for i, r in enumerate(results)]}, indent=2))
        return EXIT_OK
    where = f" from {format_time(args.at[0])}-{format_time(args.at[1])}" if args.at else ""
    print(f"focus {format_focus(w)}{where}: {len(results)} results; match 100% = the same in every part "
          "weighted up, nothing alike in every part weighted down; similar in: per part, 100% = identical")
    head = "  ".join(p[:6].rjust(6) for p in PARTS)
    print(f"{'#':>3} {'match':>6}  {head}  {'because':>7}  {'at':>5} {'from':>5}  title - artist")
    for i, r in enumerate(results, 1):
        parts = "  ".join(f"{s:6.0%}" for s in r.similarity)
        who = one_line(f"{r.track.title} - {r.track.artist}" if r.track.artist else r.track.title)
        print(f"{i:>3} {r.score:6.1%}  {parts}  {r.because:>7}  {_mmss(r.match_start):>5} "
              f"{_mmss(r.query_start):>5}  {who}")
    return EXIT_OK
