"""``partwise export``: the results of a query, or the whole library, as M3U or CSV.

Both are written in UTF-8, one entry per track whatever its tags or file name:

- a track's path is written as it is, unless it holds a control character or line break, bytes
  that are not UTF-8, a leading ``#`` or surrounding spaces; then it is written as a ``file://``
  URI with each such byte percent-encoded (RFC 8089), which players (VLC, mpv, foobar2000) open
  and which decodes back to the exact bytes of the name.
- In the M3U, tags on the ``#EXTINF`` line have control characters and line breaks replaced by
  spaces, so no tag can start a line of its own.
- In the CSV, a text cell that begins with ``=``, ``+``, ``-``, ``@``, tab, CR or LF gets a
  leading ``'`` (OWASP's rule against formula injection in spreadsheets); numbers are written
  as plain numbers.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from app.cmdutil import (
    EXIT_OK,
    ArgumentParser,
    add_library_options,
    check_focus,
    check_results,
    command,
    count_arg,
    fail,
    focus_arg,
    has_unsafe,
    one_line,
    open_library,
    parse_query,
)
from app.library import Listed, Result, Track
from model.parts import PARTS
from model.weights import atomic_write

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def path_entry(path: str | os.PathLike) -> str:
    """How a track's path is written: the path, or a ``file://`` URI when a plain line could
    not carry it exactly (see the module docstring)."""
    text = os.fspath(path)
    if text and text == text.strip() and not text.startswith("#") and not has_unsafe(text):
        return text
    return Path(os.path.abspath(text)).as_uri()


def csv_text(text: str) -> str:
    """A text cell a spreadsheet will not run as a formula; lone surrogates become U+FFFD."""
    if not text.isascii():  # only non-ASCII text can hold a lone surrogate
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return "'" + text if text.startswith(_FORMULA_START) else text


def m3u(tracks: Sequence[Track | Listed]) -> str:
    lines = ["#EXTM3U"]
    for t in tracks:
        who = f"{t.artist} - {t.title}" if t.artist else t.title
        lines += [f"#EXTINF:{int(round(t.duration))},{one_line(who).strip()}", path_entry(t.path)]
    return "\n".join(lines) + "\n"


def results_csv(results: Sequence[Result]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["rank", "id", "path", "title", "artist", "album", "duration", "match",
                *[f"similarity_{p}" for p in PARTS], "because", *[f"d_{p}" for p in PARTS],
                "query_start", "match_start"])
    for i, r in enumerate(results, 1):
        t = r.track
        w.writerow([i, t.id, csv_text(path_entry(t.path)), *map(csv_text, (t.title, t.artist, t.album)),
                    f"{t.duration:.2f}", f"{r.score:.6f}", *[f"{s:.6f}" for s in r.similarity],
                    csv_text(r.because), *[f"{d:.6g}" for d in r.part_distances],
                    f"{r.query_start:.2f}", f"{r.match_start:.2f}"])
    return buf.getvalue()


def tracks_csv(tracks: Sequence[Track | Listed]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "path", "title", "artist", "album", "duration", "status", "error",
                *[f"presence_{p}" for p in PARTS]])
    for t in tracks:
        w.writerow([t.id, csv_text(path_entry(t.path)), *map(csv_text, (t.title, t.artist, t.album)),
                    f"{t.duration:.2f}", csv_text(t.status), csv_text(t.error or ""),
                    *[f"{v:.4f}" for v in t.presence]])
    return buf.getvalue()


@command("partwise export")
def main(argv: Sequence[str] | None = None) -> int:
    p = ArgumentParser(prog="partwise export", description=__doc__.replace("`", "").strip(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("query", nargs="?", help="a track id or audio file; without it, the whole library")
    p.add_argument("--focus", type=focus_arg, default=None,
                   help="weights per part in [-1, 1], as for 'partwise query'")
    p.add_argument("-k", type=count_arg, default=25, help="number of results (default 25)")
    p.add_argument("-o", "--output", type=Path, default=None, help="output file (default: standard output)")
    p.add_argument("--format", choices=("m3u", "csv"), default=None,
                   help="m3u playlist or csv table (default: from the output suffix, else m3u)")
    add_library_options(p)
    args = p.parse_args(argv)
    fmt = args.format or ("csv" if args.output is not None and args.output.suffix.lower() == ".csv" else "m3u")
    lib = open_library(args, reader=True)
    try:
        if args.query is not None:
            query = parse_query(args.query)
            w, warnings = check_focus(lib, query, args.focus)
            for warning in warnings:
                print(f"warning: {warning}", file=sys.stderr)
            results = lib.search(query, w, k=args.k)
            check_results(lib, len(results))
            text = results_csv(results) if fmt == "csv" else m3u([r.track for r in results])
        else:
            text = tracks_csv(lib.listing()) if fmt == "csv" else m3u(lib.listing("ok"))
    finally:
        lib.close()
    data = text.encode("utf-8")  # every field above is valid Unicode
    if args.output is None:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        try:
            atomic_write(args.output.expanduser().resolve(), lambda tmp: Path(tmp).write_bytes(data))
        except OSError as e:
            return fail(f"{args.output}: cannot write ({e.strerror or e})", prog="partwise export")
        print(f"wrote {args.output} ({fmt})", file=sys.stderr)
    return EXIT_OK
