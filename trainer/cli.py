"""``partwise-train``: data building, training, evaluation and export."""

from __future__ import annotations

from collections.abc import Sequence

from model.clitools import dispatch

COMMANDS: dict[str, tuple[str, str]] = {}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("partwise-train", __doc__.strip("` \n"), COMMANDS, argv)
