"""``partwise journey A B --steps 12 --lock drums``: from track A to track B keeping some parts
close while the rest moves; ``partwise journey A --radio --lock bass``: a radio that keeps them."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from app.cmdutil import (
    EXIT_OK,
    ArgumentParser,
    UsageError,
    add_library_options,
    command,
    count_arg,
    one_line,
    open_library,
)
from app.index import WIDE_ROWS
from app.journey import DEFAULT_FLOOR, Journey, JourneyError, parse_lock
from app.library import Track
from model.parts import PARTS
from model.weights import atomic_write


def _track_id(text: str, what: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise UsageError(f"{what} {text!r}: expected a track id (see 'partwise info --tracks')")
    return int(text)


def journey_dict(j: Journey, tracks: Sequence[Track]) -> dict:
    """The journey as ``--json`` prints it; ``tracks``: its steps' tracks, in order."""

    def sim(v) -> dict | None:
        return None if v is None else dict(zip(PARTS, (round(float(x), 4) for x in v), strict=True))

    steps = []
    for k, (s, t) in enumerate(zip(j.steps, tracks, strict=True)):
        steps.append({"step": k, "id": t.id, "path": str(t.path), "title": t.title,
                      "artist": t.artist, "duration": round(t.duration, 2),
                      "to_previous": sim(s.to_previous), "to_next": sim(s.to_next),
                      "to_reference": sim(s.to_reference), "held": s.held, "why": s.why})
    return {"start": j.start, "end": j.end, "lock": list(j.lock), "follow": j.follow,
            "floor": j.floor, "steps": steps}


def _floor(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return v


@command("partwise journey")
def main(argv: Sequence[str] | None = None) -> int:
    p = ArgumentParser(prog="partwise journey", description=__doc__.replace("`", "").strip())
    p.add_argument("start", help="track id to start from")
    p.add_argument("end", nargs="?", help="track id to arrive at (leave out with --radio)")
    p.add_argument("--radio", action="store_true",
                   help="no destination: keep the locked parts, change the rest, never repeat")
    p.add_argument("--steps", type=count_arg, default=12, help="steps (default 12)")
    p.add_argument("--lock", default="drums",
                   help="parts to keep close, comma-separated (default drums)")
    p.add_argument("--follow", choices=("start", "neighbour"), default=None,
                   help="keep the locked parts close to the start track, or to each step's "
                        "neighbour (default: start for A to B, neighbour for the radio)")
    p.add_argument("--floor", type=_floor, default=DEFAULT_FLOOR,
                   help=f"least similarity of a locked part to its reference (default {DEFAULT_FLOOR})")
    p.add_argument("--m3u", type=Path, help="also write the journey as an M3U playlist")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_library_options(p)
    args = p.parse_args(argv)
    start = _track_id(args.start, "start")
    if args.radio == (args.end is not None):
        raise UsageError("give a destination track, or --radio (not both)")
    end = None if args.radio else _track_id(args.end, "end")
    try:
        lock = parse_lock(args.lock)
    except JourneyError as e:
        raise UsageError(f"--lock: {e}") from None
    follow = args.follow or ("neighbour" if args.radio else "start")
    # a search per step: the graphs pay for their loading beyond the size where exact search
    # works from a float32 copy of the vectors
    lib = open_library(args, reader=True, graphs=True, graphs_above=WIDE_ROWS)
    try:
        for tid in (start, end):
            if tid is not None:
                lib.track(tid)  # KeyError naming the id when there is no such track
        j = lib.journey(start, end, steps=args.steps, lock=lock, follow=follow, floor=args.floor)
        tracks = [lib.track(i) for i in j.ids]
        doc = journey_dict(j, tracks)
    finally:
        lib.close()
    if args.m3u:
        from app.export_cmd import m3u

        atomic_write(args.m3u, lambda tmp: Path(tmp).write_text(m3u(tracks), encoding="utf-8"))
    if args.json:
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    kind = "radio" if end is None else f"to track {end}"
    held = sum(s["held"] for s in doc["steps"][1:])
    print(f"journey from track {start} {kind}: {len(tracks)} tracks, locked {', '.join(lock)} "
          f"(kept at least {args.floor:.0%} like the {follow} on {held} of {len(tracks) - 1} steps); "
          "similar in: per part, to the previous step")
    head = "  ".join(p[:6].rjust(6) for p in PARTS)
    print(f"{'#':>3} {'id':>6}  {head}  title - artist  (why)")
    for s in doc["steps"]:
        parts = ("  ".join(f"{v:6.0%}" for v in s["to_previous"].values()) if s["to_previous"]
                 else "  ".join(f"{'':6}" for _ in PARTS))
        who = one_line(f"{s['title']} - {s['artist']}" if s["artist"] else s["title"])
        mark = "" if s["held"] else " [bound not held]"
        print(f"{s['step']:>3} {s['id']:>6}  {parts}  {who}  ({s['why']}){mark}")
    if args.m3u:
        print(f"wrote {args.m3u}")
    return EXIT_OK
