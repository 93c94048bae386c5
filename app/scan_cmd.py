"""``partwise scan DIR...``: add folders to the library and scan them incrementally.

One scan writes a library at a time: a second one exits with a message naming the first. Failed
files are tried again when they change, when the model changes, with --retry-failed, and on
every scan when the error may be temporary (permission, I/O)."""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from app.cmdutil import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    USER_ERRORS,
    add_library_options,
    error_text,
    fail,
    open_library,
)
from app.walk import shown


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="partwise scan", description=__doc__.replace("`", "").strip(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="*", type=Path,
                   help="music folders (default: rescan every folder already in the library)")
    p.add_argument("--remove", action="store_true", help="remove the given folders and their tracks instead")
    p.add_argument("--retry-failed", action="store_true",
                   help="analyse the files that failed before again, even if they did not change")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_library_options(p)
    args = p.parse_args(argv)
    try:
        lib = open_library(args)
    except USER_ERRORS as e:
        return fail(error_text(e))
    cancel = threading.Event()
    try:
        if args.remove:
            for f in args.folders:
                lib.remove_folder(f)
                print(f"removed {f}")
            return EXIT_OK
        if not args.folders and not lib.folders():
            return fail("no folders to scan: give one, e.g. 'partwise scan ~/Music'", 2)
        last = None
        bar = None
        try:
            for prog in lib.scan(args.folders or None, cancel=cancel, retry_failed=args.retry_failed):
                if bar is None:
                    bar = tqdm(total=prog.total, unit="track", disable=args.no_progress or None,
                               file=sys.stderr, dynamic_ncols=True)
                bar.n = prog.done
                if prog.current is not None:
                    bar.set_postfix_str(shown(prog.current.name)[:40], refresh=False)
                bar.refresh()
                last = prog
        except KeyboardInterrupt:
            cancel.set()
            if bar is not None:
                bar.close()
            print("interrupted: finished tracks are kept; run the scan again to continue",
                  file=sys.stderr)
            return EXIT_INTERRUPTED
        finally:
            if bar is not None:
                bar.close()
        for problem in lib.scan_problems:
            print(f"warning: {problem}", file=sys.stderr)
        failed = [t for t in lib.failures()]
        if last is not None:
            print(f"{last.added} added, {last.updated} updated, {last.removed} removed, "
                  f"{last.failed} failed this scan; library: {len(lib.index)} searchable tracks, "
                  f"{len(failed)} failed in total")
        for t in failed:
            print(f"failed: {t.error}", file=sys.stderr)
        return EXIT_OK
    except USER_ERRORS as e:
        return fail(error_text(e))
    finally:
        lib.close()
