"""Shared options and helpers of the library subcommands (scan, query, info, export).

Exit codes: 0 done; 1 the request could not be carried out (a file, the library, the model,
nothing to compare); 2 the command line is wrong (an option's value, a focus, a track id out of
range, a library that does not exist); 130 interrupted. Every error is one line on standard
error naming the input; ``-v`` adds the traceback of an unexpected one.
"""

from __future__ import annotations

import argparse
import functools
import logging
import re
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from app.clitools import setup_logging
from app.focus import absent_parts, format_focus, parse_focus
from app.library import DEFAULT_WEIGHTS, Library, LibraryError
from app.store import DB_NAME, StoreError
from app.userdirs import default_library_dir, in_use
from model.parts import PARTS

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
MAX_RESULTS = 1_000_000
SQLITE_MAX_ID = 2**63 - 1  # track ids are SQLite integers


class UsageError(ValueError):
    """The command line is wrong (exit code 2); the message names the option or input."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors raise :class:`UsageError`, so ``main(argv)`` returns 2 instead of
    exiting (tests call it) and the message is one line."""

    def error(self, message: str):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def add_library_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--library", type=Path, default=None,
                   help=f"library folder (default: $PARTWISE_LIBRARY or {default_library_dir()})")
    p.add_argument("--weights", type=Path, default=None,
                   help=f"model weights .safetensors (default: {DEFAULT_WEIGHTS.name} in assets/)")
    p.add_argument("--device", default=None, type=device_arg,
                   help="torch device: cpu, cuda, cuda:N or mps (default: CUDA when present)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def device_arg(text: str) -> str:
    """``--device``: a torch device that this machine has (``cpu`` is checked without loading
    torch, so commands that never run the model stay quick)."""
    if text.strip() == "cpu":
        return "cpu"
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device; use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text!r}: this machine has no usable CUDA device; "
                                             "use --device cpu or leave the option out")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(
                f"{text!r}: there is no CUDA device {dev.index} (this machine has "
                f"{torch.cuda.device_count()})")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise argparse.ArgumentTypeError(f"{text!r}: MPS is not available on this machine")
    elif dev.type != "cpu":
        raise argparse.ArgumentTypeError(f"{text!r}: Partwise runs on cpu, cuda or mps")
    return text


def count_arg(text: str) -> int:
    """``-k``: a number of results, 1 to :data:`MAX_RESULTS`."""
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= k <= MAX_RESULTS:
        raise argparse.ArgumentTypeError(f"{text} is out of range: give 1 to {MAX_RESULTS} results")
    return k


def focus_arg(text: str) -> np.ndarray:
    """``--focus``: part=weight pairs (see :func:`app.focus.parse_focus`) -> (5,) float32."""
    try:
        with np.errstate(all="ignore"):  # 1e40 is reported as not finite, without a numpy warning
            return parse_focus(text)
    except (ValueError, KeyError) as e:
        raise argparse.ArgumentTypeError(error_text(e)) from None


def open_library(args: argparse.Namespace, reader: bool = False, graphs: bool | None = None,
                 graphs_above: int = 0, index: bool = True) -> Library:
    """The library the options name. A ``reader`` (a command that reads the library and exits)
    gets UsageError when there is none yet (it must not create an empty library at a mistyped
    path), and by default its index without the HNSW graphs: a search or two, each exact, take
    less time than loading them (``Library(graphs=False)``); a command that searches a dozen
    times (a journey) asks for ``graphs``, loaded only for an index of more than
    ``graphs_above`` rows (bench/commands.py times both). A command that only counts passes
    ``index=False`` and the index stays unread (``Library(index=False)``)."""
    setup_logging(args.verbose)
    if not args.verbose:
        logging.getLogger("app").setLevel(logging.ERROR)
    use = in_use(args.library, args.weights)
    if reader and not (use.library / DB_NAME).is_file():
        if args.library is not None:
            raise UsageError(f"--library {args.library}: no Partwise library there; create it with "
                             f"'partwise scan --library {args.library} MUSIC_FOLDER'")
        raise UsageError(f"no library yet at {use.library}: scan a folder first, e.g. 'partwise scan ~/Music'")
    return Library(use.library, weights=use.weights, device=args.device,
                   graphs=not reader if graphs is None else graphs, graphs_above=graphs_above,
                   index=index)


def fail(message: str, code: int = EXIT_ERROR, prog: str = "partwise") -> int:
    print(f"{prog}: {one_line(message)}", file=sys.stderr)
    return code


USER_ERRORS = (LibraryError, StoreError, KeyError, ValueError, OSError)


def error_text(e: BaseException) -> str:
    return e.args[0] if isinstance(e, KeyError) and e.args else str(e)


def command(prog: str) -> Callable[[Callable[[Sequence[str] | None], int]], Callable[[Sequence[str] | None], int]]:
    """Wrap a subcommand's ``main``: every error becomes one line on standard error and an exit
    code (see the module docstring), never a traceback."""

    def wrap(main: Callable[[Sequence[str] | None], int]) -> Callable[[Sequence[str] | None], int]:
        @functools.wraps(main)
        def run(argv: Sequence[str] | None = None) -> int:
            try:
                return main(argv)
            except UsageError as e:
                return fail(str(e), EXIT_USAGE, prog)
            except USER_ERRORS as e:
                return fail(error_text(e), EXIT_ERROR, prog)
            except sqlite3.Error as e:
                return fail(f"the library database cannot be read ({e}); was it written by another "
                            "version of Partwise?", EXIT_ERROR, prog)
            except KeyboardInterrupt:
                return fail("interrupted", EXIT_INTERRUPTED, prog)
            except Exception as e:  # the last line of defence: one line, details with -v
                log.debug("unexpected error", exc_info=True)
                return fail(f"unexpected {type(e).__name__}: {e} (a bug; run again with -v for the "
                            "traceback)", EXIT_ERROR, prog)

        return run

    return wrap


def parse_query(text: str) -> int | Path:
    """A track id (digits, when no such file exists) or a file path."""
    if not text.strip():
        raise UsageError("the query is empty: give a track id or an audio file")
    p = Path(text).expanduser()
    if text.isascii() and text.isdigit() and not p.exists():
        if int(text) > SQLITE_MAX_ID:
            raise UsageError(f"{text}: no such file, and too large for a track id")
        return int(text)
    return p


def check_focus(lib: Library, query: int | Path, w: np.ndarray | None) -> tuple[np.ndarray, list[str]]:
    """The focus to use (``w``, or every part equally when None) and warnings when it weighs
    up parts the query track lacks (none for the default focus: most tracks lack some part);
    LibraryError when such parts are all it weighs (it would compare nothing). Queries by an
    outside file are not checked (their presence is known only once embedded)."""
    if w is None:
        return np.ones(len(PARTS), np.float32), []
    t = lib.track(query) if isinstance(query, int) else lib.find(query)
    if t is None or t.status != "ok":
        return w, []
    absent = absent_parts(w, t.presence)
    if not absent:
        return w, []
    lacks = ", ".join(f"{p} ({t.presence[PARTS.index(p)]:.0%})" for p in absent)
    if len(absent) == int((w > 0).sum()) and not (w < 0).any():
        has = [f"{p} ({v:.0%})" for p, v in zip(PARTS, t.presence, strict=True) if p not in absent]
        raise LibraryError(f"focus {format_focus(w)} compares nothing: track {t.id} "
                           f"({one_line(t.title)}) has (nearly) no {lacks}; weight a part it has: "
                           f"{', '.join(has) or 'none is present'}")
    return w, [f"track {t.id} ({one_line(t.title)}) has (nearly) no {lacks}: similarity in "
               f"{'that part' if len(absent) == 1 else 'those parts'} means little"]


def check_results(lib: Library, n: int) -> None:
    """LibraryError when a search found nothing, saying why: the library holds no other track
    analysed by the model in use (none at all, or only by another model)."""
    if n:
        return
    stale = lib.info().get("stale_model", 0)
    if stale:
        raise LibraryError(f"nothing to compare with: the library's {stale} analysed tracks were made "
                           f"with another model than {lib.weights_path.name}; rescan with this one "
                           "('partwise scan' with the same --library and --weights) or pass the "
                           "--weights they were made with")
    raise LibraryError(f"nothing to compare with: the library {lib.root} holds no other analysed "
                       "track; scan a music folder into it first")


# the characters a one-line field cannot carry, Unicode categories Cc (C0, DEL, C1 incl. NEL),
# Zl, Zp and Cs (lone surrogates: bytes of a non-UTF-8 file name), as one pattern: a regular
# expression scans a path at C speed (tests/app/test_one_line.py checks it against unicodedata)
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def unsafe_char(ch: str) -> bool:
    """A character a one-line field cannot carry: control (C0, DEL, C1 incl. NEL), line or
    paragraph separator, or a lone surrogate (a byte of a non-UTF-8 file name)."""
    return _UNSAFE.fullmatch(ch) is not None


def has_unsafe(text: str) -> bool:
    """Whether ``text`` holds a character :func:`unsafe_char` refuses."""
    return _UNSAFE.search(text) is not None


def one_line(text: str) -> str:
    """``text`` for one line of a terminal or a playlist: control characters and line breaks
    become spaces, lone surrogates U+FFFD."""
    return _UNSAFE.sub(lambda m: "\ufffd" if "\ud800" <= m[0] <= "\udfff" else " ", text)
