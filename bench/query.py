"""Query latency (p50/p99) and recall@10 against exact search, and memory in query mode.

    python bench/query.py [--sizes 10000,100000] [--queries 300] [--memory-at 100000]

Synthetic clustered track vectors (per-part structure, like a real collection's embeddings)
are written into a real library folder (SQLite rows + saved index), so the memory figure is
that of a fresh process opening the library and answering queries. Prints one JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.focus import focused_scores, parse_focus  # noqa: E402
from app.index import IndexParams, VectorIndex  # noqa: E402
from app.store import Store  # noqa: E402
from bench.common import clustered_vectors  # noqa: E402

FOCUSES = {  # name: (kind, focus)
    "solo_drums": ("single_part", {"drums": 1}),
    "solo_guitar": ("single_part", {"guitar": 1}),
    "bass+piano": ("multi_positive", {"bass": 1, "piano": 0.5}),
    "three_parts": ("multi_positive", {"guitar": 1, "others": 0.7, "bass": 0.4}),
    "all_equal": ("multi_positive", [1, 1, 1, 1, 1]),
    "drums_not_rest": ("with_negatives", {"drums": 1, "bass": -0.3, "piano": -0.3, "guitar": -0.3, "others": -0.3}),
    "drums_not_rest_0.5": ("with_negatives", [1, -0.5, -0.5, -0.5, -0.5]),
    "bass_not_drums": ("with_negatives", {"bass": 1, "drums": -1}),
    "mixed_signs": ("with_negatives", [1, 0.5, -0.5, 0, -1]),
}
SHA = "synthetic"


def fill_library(root: Path, vecs: np.ndarray) -> None:
    """Rows as a scan would leave them (ok, vector, presence), without audio behind them."""
    store = Store(root)
    store.set_meta("model_sha", SHA)
    pres = np.full(5, 0.5, np.float32).tobytes()
    now = time.time()
    with store.transaction() as con:
        con.executemany(
            "INSERT INTO tracks(id, path, folder, size, mtime_ns, status, title, duration, model_sha, "
            "policy, rev, vector, presence, updated) VALUES(?, ?, '/music', 1, 1, 'ok', ?, 200, ?, "
            "'win=3;max=10', 1, ?, ?, ?)",
            ((i + 1, f"/music/{i:07d}.mp3", f"t{i}", SHA, vecs[i].tobytes(), pres, now)
             for i in range(len(vecs))))
    store.close()


MEMORY_CHILD = """
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[2])
from app.library import Library
def hwm():  # peak resident memory of this process image (ru_maxrss would include the parent's)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
base = hwm()
t = time.perf_counter()
lib = Library(sys.argv[1], weights=sys.argv[1] + "/none.safetensors")
open_s = time.perf_counter() - t
ids = np.fromiter(lib.index.revs(), np.int64)
rng = np.random.default_rng(5)
lat = []
for i in rng.choice(ids, 100):
    t = time.perf_counter()
    lib.search(int(i), {"drums": 1, "bass": 0.5}, k=10)
    lat.append(time.perf_counter() - t)
print(json.dumps({"open_s": round(open_s, 2), "hnsw_loaded": lib.index.has_hnsw,
                  "library_search_ms_p50": round(1000 * float(np.percentile(lat, 50)), 2),
                  "library_search_ms_p99": round(1000 * float(np.percentile(lat, 99)), 2),
                  "peak_rss_mb": round(hwm()),
                  "rss_after_imports_mb": round(base)}))
"""


def bench_size(n: int, n_queries: int, root: Path, params: IndexParams) -> dict:
    t0 = time.perf_counter()
    vecs = clustered_vectors(n, seed=n)
    ids = np.arange(1, n + 1, dtype=np.int64)
    loaded = VectorIndex.load(root / "index", params) if (root / "index").is_dir() else None
    fill_s = build_s = 0.0
    if loaded is not None:  # --workdir kept from an earlier run: same vectors, same index
        idx = loaded[0]
    else:
        fill_library(root, vecs)
        fill_s = time.perf_counter() - t0
        idx = VectorIndex(params)
        t0 = time.perf_counter()
        idx.upsert(ids, np.ones(n, np.int64), vecs)
        idx.maintain(force=True)
        build_s = time.perf_counter() - t0
        idx.save(root / "index", {"model_sha": SHA})
    sq = idx._sq[:n]  # the same part norms the exact path uses
    scales = idx.scales()
    rng = np.random.default_rng(1)
    qrows = rng.choice(n, n_queries, replace=False)
    out = {"tracks": n, "hnsw": idx.has_hnsw, "build_s": round(build_s, 1), "fill_store_s": round(fill_s, 1),
           "focus": {}}
    all_lat, all_exact, all_rec = [], [], []
    kinds: dict[str, tuple[list, list]] = {}
    for name, (kind, f) in FOCUSES.items():
        w = parse_focus(f)
        lat, exact_lat, rec, answers, brute = [], [], [], [], 0
        for r in qrows.tolist():  # timing pass: queries back to back, as a user's would be
            t = time.perf_counter()
            hits = idx.search(vecs[r], w, 10, exclude=[int(ids[r])])
            lat.append(time.perf_counter() - t)
            answers.append(hits.ids)
            brute += hits.exact
        for r, got in zip(qrows.tolist(), answers, strict=True):  # truth pass: brute force
            t = time.perf_counter()
            s = focused_scores(vecs[r], w, vecs, scales, sq)
            s[r] = -np.inf
            truth = np.argpartition(-s, 10)[:10]
            exact_lat.append(time.perf_counter() - t)
            rec.append(len(set(ids[truth].tolist()) & set(got.tolist())) / 10)
        out["focus"][name] = {"p50_ms": round(1000 * float(np.percentile(lat, 50)), 2),
                              "p99_ms": round(1000 * float(np.percentile(lat, 99)), 2),
                              "recall_at_10": round(float(np.mean(rec)), 4),
                              "brute_force_share": round(brute / len(qrows), 3)}
        all_lat += lat
        all_exact += exact_lat
        all_rec += rec
        kinds.setdefault(kind, ([], []))[0].extend(lat)
        kinds[kind][1].extend(rec)
    out["kind"] = {kind: {"p50_ms": round(1000 * float(np.percentile(lat, 50)), 2),
                          "p99_ms": round(1000 * float(np.percentile(lat, 99)), 2),
                          "recall_at_10": round(float(np.mean(rec)), 4),
                          "min_recall_at_10": round(float(np.min(rec)), 2)}
                   for kind, (lat, rec) in kinds.items()}
    out["all"] = {"p50_ms": round(1000 * float(np.percentile(all_lat, 50)), 2),
                  "p99_ms": round(1000 * float(np.percentile(all_lat, 99)), 2),
                  "recall_at_10": round(float(np.mean(all_rec)), 4),
                  "min_recall_at_10": round(float(np.min(all_rec)), 2),
                  "brute_force_p50_ms": round(1000 * float(np.percentile(all_exact, 50)), 2)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--memory-at", type=int, default=100000, help="size whose memory is measured (0: none)")
    ap.add_argument("--workdir", "--index-cache", type=Path, default=None,
                    help="keep the libraries (store and saved index) here and reuse them on the next run "
                         "(default: a temp dir)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    params = IndexParams()
    results = {"bench": "query", "cpus": os.cpu_count(), "params": params.__dict__, "sizes": []}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            root = (args.workdir or Path(tmp)) / f"lib{n}"
            res = bench_size(n, args.queries, root, params)
            if n == args.memory_at:
                child = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(root),
                                        str(Path(__file__).resolve().parent.parent)],
                                       capture_output=True, text=True, check=True)
                res["query_mode_process"] = json.loads(child.stdout.strip().splitlines()[-1])
            results["sizes"].append(res)
            print(json.dumps(res), file=sys.stderr)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
