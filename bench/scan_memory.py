"""Scan memory: peak resident memory of a first scan of a small and a large library.

    python bench/scan_memory.py [--small 100] [--large 1000] [--seconds 6]

Each first scan runs in a fresh child process (the same model, settings and kind of tracks;
only the number of tracks differs) that reports its own peak RSS. Decoded audio must be let go
batch by batch, so the large library's peak should stay within ``--target`` (1.2x) of the small
one's. Tracks are short synthetic mono WAVs (16 kHz); the model is a random-init one of
``--widths`` (memory is about holding audio, not about model quality). Prints one JSON; exits
1 when the target is missed.

Measured on 2 busy CPU cores (defaults: 6-s tracks, 2 windows each, batch 64, 2 workers):
before the fix 100 tracks 707.8 MB, 1,000 tracks 1,048.9 MB (1.48x, 388 KB per extra track:
the decoded windows); after it 701.2 MB and 714.4 MB (1.02x, 15 KB per extra track).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import stand_in_weights, synth_track  # noqa: E402

RATE = 16000


def _rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(folder: Path, library: Path, weights: Path, batch_size: int, workers: int) -> dict:
    """The measured process: open a new library, load the model, scan ``folder`` once."""
    from app.library import Library

    lib = Library(library, weights=weights, device="cpu", batch_size=batch_size, workers=workers)
    lib.embedder()
    before = _rss_mb()
    t0 = time.perf_counter()
    last = list(lib.scan([folder]))[-1]
    seconds = time.perf_counter() - t0
    lib.close()
    return {"tracks": last.total, "ok": last.added, "failed": last.failed,
            "peak_rss_mb": round(_rss_mb(), 1), "rss_before_scan_mb": round(before, 1),
            "scan_s": round(seconds, 1)}


def write_tracks(folder: Path, n: int, seconds: float) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"track{i:04d}.wav"
        if not p.exists():
            sf.write(p, synth_track(seconds, RATE, seed=i)[:, 0], RATE, subtype="PCM_16")
        out.append(p)
    return out


def measure(folder: Path, tmp: Path, weights: Path, args) -> dict:
    lib = tmp / f"lib_{folder.name}"
    cmd = [sys.executable, __file__, "--child", str(folder), str(lib), str(weights),
           "--batch-size", str(args.batch_size), "--workers", str(args.workers)]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    if run.returncode != 0:
        raise SystemExit(f"child scan of {folder} failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=100)
    ap.add_argument("--large", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=6.0, help="length of each track")
    ap.add_argument("--widths", default="4,8,8,16,16")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--target", type=float, default=1.2, help="large peak / small peak must stay under this")
    ap.add_argument("--keep", type=Path, default=None, help="write the tracks here and keep them")
    ap.add_argument("--child", nargs=3, type=Path, metavar=("FOLDER", "LIBRARY", "WEIGHTS"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if args.child:
        print(json.dumps(child(*args.child, args.batch_size, args.workers)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = stand_in_weights(tmp / "w.safetensors", widths=tuple(int(x) for x in args.widths.split(",")),
                                   sample_rate=RATE)
        t0 = time.perf_counter()
        files = write_tracks(args.keep or tmp / "music", args.large, args.seconds)
        gen_s = time.perf_counter() - t0
        small = tmp / f"small{args.small}"
        small.mkdir()
        for f in files[: args.small]:
            os.link(f, small / f.name)
        large = tmp / f"large{args.large}"
        large.mkdir()
        for f in files:
            os.link(f, large / f.name)
        runs = {"small": measure(small, tmp, weights, args), "large": measure(large, tmp, weights, args)}
    ratio = runs["large"]["peak_rss_mb"] / runs["small"]["peak_rss_mb"]
    grown = runs["large"]["peak_rss_mb"] - runs["small"]["peak_rss_mb"]
    out = {
        "bench": "scan_memory",
        "tracks": {"small": args.small, "large": args.large}, "seconds_per_track": args.seconds,
        "model_widths": args.widths, "batch_size": args.batch_size, "workers": args.workers,
        "small": runs["small"], "large": runs["large"],
        "peak_ratio": round(ratio, 3),
        "growth_per_extra_track_kb": round(grown * 1024 / max(args.large - args.small, 1), 1),
        "target_ratio": args.target, "meets_target": ratio <= args.target,
        "generate_s": round(gen_s, 1), "cpus": os.cpu_count(),
    }
    print(json.dumps(out, indent=2))
    return 0 if out["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
