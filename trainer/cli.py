"""``partwise-train``: data building, training, evaluation and export."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS: dict[str, tuple[str, str]] = {
    "fit": ("trainer.fit", "train: individual networks, pre-training, CSN (presets paper|cpu|smoke)"),
    "widen": ("trainer.widen", "continue a run's main stage with a wider network that starts out equal"),
    "curves": ("trainer.curves", "a run's log as a table: an epoch a row, each per-part figure as d/b/p/g/o"),
    "export": ("trainer.export", "write a run's best model as a weights file"),
    "average": ("trainer.average", "the weighted mean of exported weights files of one model (a soup)"),
    "calibrate": ("trainer.calibrate", "fit each part's presence bias on real-music validation data"),
    "eval": ("trainer.evaluate.cli", "the paper's tables on a Slakh-layout dataset"),
    "leak": ("trainer.evaluate.leak", "how near the rest of the mix brings pieces in each part's subspace"),
    "compare": ("trainer.evaluate.compare", "two eval reports side by side, Table 2 changed on the same draws"),
    "data": ("trainer.data.cli", "build a Slakh-layout dataset (synth | render-midi | arrange-pop909 ...)"),
    "demo-audio": ("trainer.demo_audio", "render the demo collection's songs to the audio Partwise ships"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand's ``main`` with the arguments after its name (its module is imported
    only then, so ``partwise-train data ...`` never loads the training code)."""
    width = max(map(len, COMMANDS))
    ap = argparse.ArgumentParser(
        prog="partwise-train", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.replace("`", "").strip(),
        epilog="commands:\n" + "\n".join(f"  {n.ljust(width)}  {h}" for n, (_, h) in COMMANDS.items())
               + "\n\n'partwise-train COMMAND --help' for the options of one command.")
    ap.add_argument("command", choices=COMMANDS, metavar="COMMAND")
    ap.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        ap.print_help()
        return 2
    try:
        ns = ap.parse_args(argv)
    except SystemExit as e:  # --help (0) or a wrong command (2): a code, not an exit
        return int(e.code or 0)
    return int(importlib.import_module(COMMANDS[ns.command][0]).main(ns.args) or 0)
