"""``partwise export``: the results of a query, or the whole library, as M3U or CSV."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Sequence
from pathlib import Path

from app.cmdutil import (
    EXIT_OK,
    USER_ERRORS,
    add_library_options,
    error_text,
    fail,
    open_library,
    parse_query,
)
from app.library import Result, Track
from model.parts import PARTS
from model.weights import atomic_write


def m3u(tracks: Sequence[Track]) -> str:
    lines = ["#EXTM3U"]
    for t in tracks:
        who = f"{t.artist} - {t.title}" if t.artist else t.title
        lines += [f"#EXTINF:{int(round(t.duration))},{who}", str(t.path)]
    return "\n".join(lines) + "\n"


def results_csv(results: Sequence[Result]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["rank", "id", "path", "title", "artist", "album", "duration", "match",
                *[f"similarity_{p}" for p in PARTS], "because", *[f"d_{p}" for p in PARTS],
                "query_start", "match_start"])
    for i, r in enumerate(results, 1):
        t = r.track
        w.writerow([i, t.id, t.path, t.title, t.artist, t.album, f"{t.duration:.2f}", f"{r.score:.6f}",
                    *[f"{s:.6f}" for s in r.similarity], r.because,
                    *[f"{d:.6g}" for d in r.part_distances], f"{r.query_start:.2f}", f"{r.match_start:.2f}"])
    return buf.getvalue()


def tracks_csv(tracks: Sequence[Track]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "path", "title", "artist", "album", "duration", "status", "error",
                *[f"presence_{p}" for p in PARTS]])
    for t in tracks:
        w.writerow([t.id, t.path, t.title, t.artist, t.album, f"{t.duration:.2f}", t.status, t.error or "",
                    *[f"{v:.4f}" for v in t.presence]])
    return buf.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="partwise export", description=__doc__.replace("`", "").strip())
    p.add_argument("query", nargs="?", help="a track id or audio file; without it, the whole library")
    p.add_argument("--focus", default="drums=1,bass=1,piano=1,guitar=1,others=1",
                   help="weights per part in [-1, 1], as for 'partwise query'")
    p.add_argument("-k", type=int, default=25, help="number of results (default 25)")
    p.add_argument("-o", "--output", type=Path, default=None, help="output file (default: standard output)")
    p.add_argument("--format", choices=("m3u", "csv"), default=None,
                   help="m3u playlist or csv table (default: from the output suffix, else m3u)")
    add_library_options(p)
    args = p.parse_args(argv)
    fmt = args.format or ("csv" if args.output is not None and args.output.suffix.lower() == ".csv" else "m3u")
    try:
        lib = open_library(args)
    except USER_ERRORS as e:
        return fail(error_text(e))
    try:
        if args.query is not None:
            results = lib.search(parse_query(args.query), args.focus, k=args.k)
            text = results_csv(results) if fmt == "csv" else m3u([r.track for r in results])
        else:
            tracks = lib.tracks()
            text = tracks_csv(tracks) if fmt == "csv" else m3u([t for t in tracks if t.status == "ok"])
    except USER_ERRORS as e:
        return fail(error_text(e))
    finally:
        lib.close()
    if args.output is None:
        sys.stdout.write(text)
    else:
        try:
            atomic_write(args.output.expanduser().resolve(), lambda tmp: Path(tmp).write_text(text))
        except OSError as e:
            return fail(f"{args.output}: cannot write ({e.strerror or e})")
        print(f"wrote {args.output} ({fmt})", file=sys.stderr)
    return EXIT_OK
