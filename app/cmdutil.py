"""Shared options and helpers of the library subcommands (scan, query, info, export)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from app.clitools import setup_logging
from app.library import DEFAULT_WEIGHTS, Library, LibraryError
from app.store import StoreError
from app.userdirs import default_library_dir, in_use

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def add_library_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--library", type=Path, default=None,
                   help=f"library folder (default: $PARTWISE_LIBRARY or {default_library_dir()})")
    p.add_argument("--weights", type=Path, default=None,
                   help=f"model weights .safetensors (default: {DEFAULT_WEIGHTS.name} in assets/)")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: CUDA when present)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def open_library(args: argparse.Namespace) -> Library:
    setup_logging(args.verbose)
    if not args.verbose:
        logging.getLogger("app").setLevel(logging.ERROR)
    use = in_use(args.library, args.weights)
    return Library(use.library, weights=use.weights, device=args.device)


def fail(message: str, code: int = EXIT_ERROR) -> int:
    print(f"partwise: {message}", file=sys.stderr)
    return code


USER_ERRORS = (LibraryError, StoreError, KeyError, ValueError, OSError)


def error_text(e: BaseException) -> str:
    return e.args[0] if isinstance(e, KeyError) and e.args else str(e)


def parse_query(text: str) -> int | Path:
    """A track id (digits, when no such file exists) or a file path."""
    p = Path(text).expanduser()
    if text.isdigit() and not p.exists():
        return int(text)
    return p
