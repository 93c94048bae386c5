"""Scan throughput against its floor: what a user waits for, beside the decoding it cannot skip.

    python bench/scan.py [--tracks 12] [--format flac] [--weights W] [--window S] [--keep DIR] [--cli]

- ``decode_floor``: decoding only the windows the scanner reads (``read_clips``, same analysis
  policy), on as many threads as the scan decodes with (``Library.workers``): the least a scan
  can take on this machine.
- ``scan``: ``Library.scan`` of the same files into a fresh library, the model already loaded
  (start-up excluded). The target: ``scan_over_floor`` at most 1.3.
- ``scan_cli`` (with ``--cli``): ``partwise scan`` in a fresh process into another fresh
  library, start-up (imports, model loading) included.
- ``embed_only``: the model alone on the decoded windows, for reference.

Wall seconds and CPU seconds (all threads of this process) are both reported: on a machine
shared with other work the wall ratio is noisy; the CPU ratio says what the work costs.

Without --weights, a random-init model of the trainer's ``cpu`` preset size stands in (same
compute as a trained one). Tracks are 3-5 min synthetic stereo at 44.1 kHz; ``--keep DIR``
writes them once and reuses them, so runs before and after a change read the same files.
Prints one JSON.
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.library import AnalysisPolicy, Library  # noqa: E402
from bench.common import CPU_WIDTHS, stand_in_weights, write_tracks  # noqa: E402
from model.audioio import probe, read_clips  # noqa: E402
from model.weights import read_card  # noqa: E402

TARGET = "scan within 1.3x of the windows-only decode floor at equal parallelism, start-up excluded"


def cpu_s() -> float:
    """CPU seconds this process has used (all threads): the work, whatever else the machine runs."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def decode_floor(files: list[Path], rate: int, policy: AnalysisPolicy, workers: int) -> tuple[float, float, int]:
    """Wall and CPU seconds to decode the scanner's windows of ``files`` on ``workers``
    threads; the number of windows."""
    t0, c0 = time.perf_counter(), cpu_s()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        got = list(pool.map(lambda f: len(read_clips(f, rate, policy.window, policy.max_windows).clips), files))
    return time.perf_counter() - t0, cpu_s() - c0, sum(got)


def scan_cli(folder: Path, lib: Path, weights: Path) -> float:
    """Wall seconds of ``partwise scan`` in a fresh process (start-up included)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "app", "scan", str(folder), "--library", str(lib),
                    "--weights", str(weights), "--no-progress"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _rate(n: int, s: float) -> dict:
    return {"seconds": round(s, 2), "tracks_per_s": round(n / s, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracks", type=int, default=12)
    ap.add_argument("--format", default="flac", choices=("flac", "mp3", "ogg", "wav"))
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--widths", default=",".join(map(str, CPU_WIDTHS)))
    ap.add_argument("--device", default=None)
    ap.add_argument("--max-windows", type=int, default=AnalysisPolicy.max_windows)
    ap.add_argument("--window", type=float, default=None,
                    help="analysis window in seconds (default: the app's, the model's training pieces)")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--keep", type=Path, default=None, help="write the tracks here and keep them")
    ap.add_argument("--cli", action="store_true", help="also time 'partwise scan' with its start-up")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = args.weights or stand_in_weights(tmp / "w.safetensors",
                                                   widths=tuple(int(x) for x in args.widths.split(",")))
        doc = read_card(weights)
        rate = doc["spec"]["audio"]["sample_rate"]
        folder = args.keep or tmp / "music"
        t0 = time.perf_counter()
        files = sorted(folder.glob(f"*.{args.format}")) if folder.is_dir() else []
        if len(files) < args.tracks:
            files = write_tracks(folder, args.tracks, args.format)
        files = files[: args.tracks]
        gen_s = time.perf_counter() - t0
        if args.keep is not None:  # scan exactly these files
            folder = tmp / "scanned"
            folder.mkdir()
            for f in files:
                (folder / f.name).symlink_to(f.resolve())
        audio_s = sum(probe(f).duration for f in files)
        # the app's policy for these weights (windows as long as their training pieces)
        policy = replace(AnalysisPolicy.for_card(doc.get("card") or {}, weights),
                         max_windows=args.max_windows)
        if args.window:
            policy = replace(policy, window=args.window)

        lib = Library(tmp / "lib", weights=weights, device=args.device, policy=policy,
                      workers=args.workers, batch_size=args.batch_size)
        emb = lib.embedder()  # start-up paid here, outside the timings below
        floor_s, floor_cpu, windows = decode_floor(files, rate, policy, lib.workers)
        allclips = np.concatenate([read_clips(f, rate, policy.window, policy.max_windows).clips
                                   for f in files[:4]])
        emb.embed_clips(allclips[:8])  # warm-up
        t0 = time.perf_counter()
        emb.embed_clips(allclips)
        embed_s = time.perf_counter() - t0

        t0, c0 = time.perf_counter(), cpu_s()
        last = list(lib.scan([folder]))[-1]
        scan_s, scan_cpu = time.perf_counter() - t0, cpu_s() - c0
        t0 = time.perf_counter()
        again = list(lib.scan())[-1]
        rescan_s = time.perf_counter() - t0
        lib.close()
        n = len(files)
        out = {
            "bench": "scan", "target": TARGET,
            "tracks": n, "format": args.format, "audio_minutes": round(audio_s / 60, 1),
            "model": {"widths": args.widths if args.weights is None else str(weights), "sample_rate": rate,
                      "device": str(emb.device), "torch_threads": torch.get_num_threads()},
            "cpus": os.cpu_count(), "decode_workers": lib.workers, "policy": policy.key(), "windows": windows,
            "decode_floor": {**_rate(n, floor_s), "cpu_s": round(floor_cpu, 2)},
            "scan": {**_rate(n, scan_s), "x_realtime": round(audio_s / scan_s, 1), "cpu_s": round(scan_cpu, 2),
                     "ok": last.added, "failed": last.failed},
            "scan_over_floor": round(scan_s / floor_s, 2),
            # the same in CPU time: what the ratio tends to on an otherwise idle machine
            "scan_over_floor_cpu": round(scan_cpu / floor_cpu, 2),
            "embed_only": {"seconds_for_4_tracks": round(embed_s, 2),
                           "clips_per_s": round(len(allclips) / embed_s, 1)},
            "rescan_unchanged_s": round(rescan_s, 3), "rescan_total": again.total,
            "generate_s": round(gen_s, 1),
        }
        if args.cli:
            cli_s = scan_cli(folder, tmp / "lib-cli", weights)
            out["scan_cli"] = {**_rate(n, cli_s), "note": "partwise scan in a fresh process, start-up included"}
        out["target_met"] = out["scan_over_floor"] <= 1.3
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
