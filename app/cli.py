"""``partwise``: the desktop app (default) and its command line."""

from __future__ import annotations

from collections.abc import Sequence

from model.clitools import dispatch

COMMANDS: dict[str, tuple[str, str]] = {}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("partwise", __doc__.replace("`", "").strip(), COMMANDS, argv)
