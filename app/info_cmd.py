"""``partwise info``: what the library holds (tracks, failures, model, index)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from app.cmdutil import EXIT_OK, ArgumentParser, add_library_options, command, open_library
from app.walk import shown


@command("partwise info")
def main(argv: Sequence[str] | None = None) -> int:
    p = ArgumentParser(prog="partwise info", description=__doc__.replace("`", "").strip())
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--failures", action="store_true",
                   help="list the files that could not be analysed and the warnings of the last walk")
    add_library_options(p)
    args = p.parse_args(argv)
    lib = open_library(args, reader=True, index=False)  # counts only: the store answers
    try:
        info = lib.info()
        failures = [{"id": t.id, "path": t.shown_path, "error": t.error} for t in lib.failures()]
        warnings = [{"path": shown(w.path), "warning": w.message} for w in lib.walk_problems()]
    finally:
        lib.close()
    if args.json:
        print(json.dumps({**info, "failures": failures if args.failures else len(failures),
                          "warnings": warnings if args.failures else len(warnings)}, indent=2))
        return EXIT_OK
    for key, value in info.items():
        if key == "folders":
            value = ", ".join(value) or "(none)"
        print(f"{key:>15}: {value}")
    if args.failures:
        for f in failures:
            print(f"failed {f['id']}: {f['error']}")
        for w in warnings:
            print(f"warning: {w['path']}: {w['warning']}")
    return EXIT_OK
