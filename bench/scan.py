"""Scan throughput: tracks/s and x realtime of a full scan, beside decode-only of the same files.

    python bench/scan.py [--tracks 12] [--format flac] [--weights W] [--device cpu]

Without --weights, a random-init model of the trainer's ``cpu`` preset size stands in (same
compute as a trained one). Tracks are 3-5 min synthetic stereo at 44.1 kHz. Prints one JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.library import AnalysisPolicy, Library  # noqa: E402
from bench.common import CPU_WIDTHS, stand_in_weights, write_tracks  # noqa: E402
from model.audioio import probe, read_all, read_clips  # noqa: E402
from model.weights import read_card  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracks", type=int, default=12)
    ap.add_argument("--format", default="flac", choices=("flac", "mp3", "ogg", "wav"))
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--widths", default=",".join(map(str, CPU_WIDTHS)))
    ap.add_argument("--device", default=None)
    ap.add_argument("--max-windows", type=int, default=AnalysisPolicy.max_windows)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--keep", type=Path, default=None, help="write the tracks here and keep them")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = args.weights or stand_in_weights(tmp / "w.safetensors",
                                                   widths=tuple(int(x) for x in args.widths.split(",")))
        rate = read_card(weights)["spec"]["audio"]["sample_rate"]
        folder = args.keep or tmp / "music"
        t0 = time.perf_counter()
        files = sorted(folder.glob(f"*.{args.format}")) if folder.is_dir() else []
        if len(files) < args.tracks:
            files = write_tracks(folder, args.tracks, args.format)
        files = files[: args.tracks]
        gen_s = time.perf_counter() - t0
        audio_s = sum(probe(f).duration for f in files)
        policy = AnalysisPolicy(max_windows=args.max_windows)

        t0 = time.perf_counter()
        clips = [read_clips(f, rate, policy.window, policy.max_windows) for f in files]
        dec_win_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for f in files:
            read_all(f, probe(f).sample_rate)
        dec_full_s = time.perf_counter() - t0

        lib = Library(tmp / "lib", weights=weights, device=args.device, policy=policy,
                      workers=args.workers, batch_size=args.batch_size)
        emb = lib.embedder()
        allclips = np.concatenate([c.clips for c in clips])
        emb.embed_clips(allclips[:8])  # warm-up
        t0 = time.perf_counter()
        emb.embed_clips(allclips)
        embed_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        last = list(lib.scan([folder]))[-1]
        scan_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = list(lib.scan())[-1]
        rescan_s = time.perf_counter() - t0
        lib.close()
        n = len(files)
        out = {
            "bench": "scan",
            "tracks": n, "format": args.format, "audio_minutes": round(audio_s / 60, 1),
            "model": {"widths": args.widths if args.weights is None else str(weights), "sample_rate": rate,
                      "device": str(emb.device), "torch_threads": torch.get_num_threads()},
            "cpus": os.cpu_count(), "policy": policy.key(), "windows": int(len(allclips)),
            "scan": {"seconds": round(scan_s, 2), "tracks_per_s": round(n / scan_s, 2),
                     "x_realtime": round(audio_s / scan_s, 1), "ok": last.added, "failed": last.failed},
            "decode_windows_only": {"seconds": round(dec_win_s, 2), "tracks_per_s": round(n / dec_win_s, 2)},
            "decode_full_files": {"seconds": round(dec_full_s, 2), "tracks_per_s": round(n / dec_full_s, 2),
                                  "x_realtime": round(audio_s / dec_full_s, 1)},
            "embed_only": {"seconds": round(embed_s, 2), "clips_per_s": round(len(allclips) / embed_s, 1)},
            "scan_over_decode_windows": round(scan_s / dec_win_s, 2),
            "scan_over_decode_full": round(scan_s / dec_full_s, 2),
            "rescan_unchanged_s": round(rescan_s, 3), "rescan_total": again.total,
            "generate_s": round(gen_s, 1),
        }
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
