"""Rescan of an unchanged library: open it and scan all its folders again (nothing to embed).

    python bench/rescan.py [--tracks 10000]

The library is filled as a finished scan leaves it (one real little audio file per track, in
100 folders; rows with size, mtime, model checksum and vectors), so the timed scan walks,
stats and compares exactly what a real rescan does. Prints one JSON.
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
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.library import AnalysisPolicy, Library  # noqa: E402
from app.store import Store  # noqa: E402
from bench.common import clustered_vectors, stand_in_weights, synth_track  # noqa: E402
from model.weights import read_card  # noqa: E402


def build(root: Path, music: Path, weights: Path, n: int) -> None:
    proto = music / "proto.wav"
    music.mkdir(parents=True)
    sf.write(proto, synth_track(1.0, 22050), 22050)
    blob = proto.read_bytes()
    proto.unlink()
    sha = read_card(weights)["sha256"]
    vecs = clustered_vectors(n, seed=3)
    store = Store(root)
    store.add_folder(music.resolve())
    rows = []
    now = time.time()
    for i in range(n):
        d = music / f"artist{i % 100:03d}" / f"album{i % 7}"
        d.mkdir(parents=True, exist_ok=True)
        p = (d / f"{i:05d} track.wav").resolve()
        p.write_bytes(blob)
        st = p.stat()
        rows.append((str(p), str(music.resolve()), st.st_size, st.st_mtime_ns, p.stem, sha,
                     AnalysisPolicy().key(), vecs[i].tobytes(), np.full(5, 0.5, np.float32).tobytes(), now))
    with store.transaction() as con:
        con.executemany(
            "INSERT INTO tracks(path, folder, size, mtime_ns, status, title, duration, model_sha, policy, "
            "rev, vector, presence, updated) VALUES(?, ?, ?, ?, 'ok', ?, 1.0, ?, ?, 1, ?, ?, ?)", rows)
    store.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracks", type=int, default=10000)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = stand_in_weights(tmp / "w.safetensors")
        t0 = time.perf_counter()
        build(tmp / "lib", tmp / "music", weights, args.tracks)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        Library(tmp / "lib", weights=weights).close()  # first open builds and saves the index
        first_open_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        lib = Library(tmp / "lib", weights=weights)
        open_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        last = list(lib.scan())[-1]
        scan_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = list(lib.scan())[-1]
        scan2_s = time.perf_counter() - t0
        n_tracks = len(lib.tracks())
        lib.close()
    out = {"bench": "rescan", "tracks": n_tracks, "cpus": os.cpu_count(),
           "open_library_s": round(open_s, 2), "rescan_s": round(scan_s, 2),
           "open_plus_rescan_s": round(open_s + scan_s, 2), "second_rescan_s": round(scan2_s, 2),
           "reembedded": last.total + again.total, "removed": last.removed,
           "first_open_with_index_build_s": round(first_open_s, 1), "setup_s": round(build_s, 1)}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
