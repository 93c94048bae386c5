"""``partwise``: the desktop app (default) and its command line."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from app.clitools import dispatch

COMMANDS: dict[str, tuple[str, str]] = {
    "gui": ("app.ui.main", "open the desktop app (default)"),
    "scan": ("app.scan_cmd", "add music folders to the library and scan them (incremental)"),
    "query": ("app.query_cmd", "find tracks similar part by part: query TRACK_OR_FILE --focus drums=1"),
    "info": ("app.info_cmd", "what the library holds: tracks, failures, model, index"),
    "journey": ("app.journey_cmd", "a path of tracks that keeps some parts: journey A B --lock drums, or A --radio"),
    "export": ("app.export_cmd", "write query results or the library as an M3U playlist or CSV"),
    "demo": ("app.demo", "open the app on the demo collection that ships with Partwise"),
}
# commands that read the library and exit: their numpy work is a few matrix-vector products,
# which gain less from OpenBLAS's threads than starting one per core costs at numpy's import
READERS = ("query", "info", "journey", "export")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    reader = bool(args) and args[0] in READERS
    if reader and "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    code = dispatch("partwise", __doc__.replace("`", "").strip(), COMMANDS, args, default="gui")
    if reader and argv is None:  # the process is this command: end it now
        exit_now(code)
    return code


def exit_now(code: int) -> None:
    """End a reader's process without tearing its modules down one by one, which takes about a
    sixth of such a command's wall time (bench/commands.py). A reader has closed its library and
    any file it wrote before it returns, and starts no thread; what is left is flushed here."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (partwise query 1 | head)
            pass
    os._exit(code)
