"""``partwise``: the desktop app (default) and its command line."""

from __future__ import annotations

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


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("partwise", __doc__.replace("`", "").strip(), COMMANDS, argv, default="gui")
