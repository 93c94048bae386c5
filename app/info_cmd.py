"""``partwise info``: what the library holds (tracks, failures, model, index)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from app.cmdutil import EXIT_OK, USER_ERRORS, add_library_options, error_text, fail, open_library


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="partwise info", description=__doc__.replace("`", "").strip())
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--failures", action="store_true", help="list the files that could not be analysed")
    add_library_options(p)
    args = p.parse_args(argv)
    try:
        lib = open_library(args)
    except USER_ERRORS as e:
        return fail(error_text(e))
    try:
        info = lib.info()
        failures = [{"id": t.id, "path": str(t.path), "error": t.error} for t in lib.failures()]
    finally:
        lib.close()
    if args.json:
        print(json.dumps({**info, "failures": failures if args.failures else len(failures)}, indent=2))
        return EXIT_OK
    for key, value in info.items():
        if key == "folders":
            value = ", ".join(value) or "(none)"
        print(f"{key:>15}: {value}")
    if args.failures:
        for f in failures:
            print(f"failed {f['id']}: {f['error']}")
    return EXIT_OK
