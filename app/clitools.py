"""Small helpers of the ``partwise`` command line.

Each subcommand lives in its own module exposing ``main(argv=None) -> int``; the top-level
command only dispatches, importing a subcommand's module when it is used.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def dispatch(prog: str, description: str, commands: dict[str, tuple[str, str]],
             argv: Sequence[str] | None, default: str | None = None) -> int:
    """Run ``commands[name] = (module, help)``'s ``main`` with the remaining arguments."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args and default is not None:
        args = [default]
    if not args or args[0] in ("-h", "--help"):
        width = max(len(n) for n in commands)
        lines = [f"usage: {prog} COMMAND [options]", "", description, "", "commands:"]
        lines += [f"  {n.ljust(width)}  {h}" for n, (_, h) in commands.items()]
        lines += ["", f"'{prog} COMMAND --help' for the options of one command."]
        print("\n".join(lines))
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in commands:
        print(f"{prog}: unknown command {name!r}; try '{prog} --help'", file=sys.stderr)
        return 2
    module = importlib.import_module(commands[name][0])
    return int(module.main(rest) or 0)
