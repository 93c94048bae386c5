"""Wall time of the commands that do not embed, as a user pays it: one ``partwise`` process each.

    python bench/commands.py [--tracks 10000] [--runs 7] [--workdir DIR]

The library is the one ``bench/query.py`` writes (SQLite rows as a scan leaves them, each
track's analysis windows, the saved index with its HNSW graphs), its rows made with the shipped
model, so every command opens it with the default weights as a user would. Each command runs
``--runs`` times as a subprocess of the installed ``partwise`` script, start-up and imports
included; the runs go round the commands in turn, so a change in the machine's load falls on all
of them alike. A warm-up round goes first, after which the page cache holds the library and
Python has written its bytecode caches, as on a user's machine after the first command
(``PYTHONDONTWRITEBYTECODE`` is dropped for the commands, else the project's changed modules
would be compiled again by every timed run). Beside them, two floors timed the same way: the
interpreter alone, and the interpreter importing numpy (which every command that opens a
library needs). One more run of each command, not timed, checks that it leaves torch unloaded.

Prints one JSON; the target is in it: each command's median under 0.3 s at 10k tracks (issue
17), with torch never imported.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench.query as bench_query  # noqa: E402
from app.index import IndexParams  # noqa: E402
from assets import DEFAULT_WEIGHTS  # noqa: E402
from model.weights import read_card  # noqa: E402

TARGET_S = 0.3
TARGET_TEXT = ("each command's median wall time under 0.3 s at 10k tracks, start-up included, "
               "torch never imported (issue 17)")
TORCH_PROBE = ("import sys; from app.cli import main; rc = main(sys.argv[1:]); "
               "print('TORCH', 'torch' in sys.modules, file=sys.stderr); sys.exit(rc)")


def commands(n: int) -> dict[str, list[str]]:
    """name -> arguments after ``partwise`` (``--library`` is added to all but --help)."""
    return {
        "help": ["--help"],
        "info": ["info"],
        "query": ["query", "1"],
        "query_focus": ["query", "1", "--focus", "drums=1,bass=-0.5"],
        "export_query": ["export", "1", "--format", "csv"],
        "export_library": ["export"],
        "journey": ["journey", "1", str(n // 2)],
        "radio": ["journey", "1", "--radio"],
    }


def partwise() -> list[str]:
    """The installed ``partwise`` script beside this interpreter, else ``python -m app``."""
    script = Path(sys.executable).parent / "partwise"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "app"]


def make_library(n: int, root: Path) -> dict:
    """The library of ``n`` synthetic tracks at ``root`` (written and indexed on first use),
    its rows tagged with the shipped model's checksum."""
    bench_query.SHA = read_card(DEFAULT_WEIGHTS)["sha256"]  # what fill_library stores as the model
    lib, _, took = bench_query.open_library(n, root, IndexParams())
    lib.close()
    return took


# the commands' environment: bytecode caches written, as Python does by default
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(argv: list[str]) -> float:
    t = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    took = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    return took


def loads_torch(args: list[str]) -> bool:
    r = subprocess.run([sys.executable, "-c", TORCH_PROBE, *args], capture_output=True, text=True,
                       env=ENV)
    if r.returncode != 0:
        raise RuntimeError(f"partwise {' '.join(args)} failed: {r.stderr.strip()[-500:]}")
    return "TORCH True" in r.stderr


def stats(times: list[float]) -> dict:
    return {"median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3),
            "min_s": round(min(times), 3)}


def bench(n: int, runs: int, root: Path) -> dict:
    took = make_library(n, root)
    lib_args = ["--library", str(root)]
    cmds = {k: v if k == "help" else [*v, *lib_args] for k, v in commands(n).items()}
    floors = {"python": [sys.executable, "-c", "pass"],
              "python_import_numpy": [sys.executable, "-c", "import numpy"]}
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {k: [] for k in (*floors, *cmds)}
    for args in cmds.values():  # warm-up: library in the page cache, bytecode cached
        timed([*partwise(), *args])
    for _ in range(runs):
        for k, argv in floors.items():
            times[k].append(timed(argv))
        for k, args in cmds.items():
            times[k].append(timed([*partwise(), *args]))
    out = {}
    for k, args in cmds.items():
        s = stats(times[k])
        torch = loads_torch(args)
        out[k] = {"command": "partwise " + " ".join(commands(n)[k]) + ("" if k == "help" else " --library LIB"),
                  **s, "torch_imported": torch, "meets_target": s["median_s"] < TARGET_S and not torch}
    return {"tracks": n, "runs": runs, "library": took, "cpus": os.cpu_count(),
            "loadavg_1min": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
            "floors": {k: stats(times[k]) for k in floors}, "commands": out,
            "target_met": all(c["meets_target"] for c in out.values())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracks", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=7, help="timed runs of each command (default 7)")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="keep the library here and reuse it on the next run (default: a temp dir)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        root = (args.workdir or Path(tmp)) / f"cmdlib{args.tracks}"
        res = bench(args.tracks, args.runs, root)
    print(json.dumps({"bench": "commands", "target": TARGET_TEXT, "target_s": TARGET_S, **res}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
