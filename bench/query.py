"""Query latency a user waits for (p50/p99 per focus kind) and recall@10 against exact search.

    python bench/query.py [--sizes 10000,100000] [--queries 300] [--memory-at 100000] [--workdir DIR]

Each size is a real library folder: SQLite rows as a scan leaves them (ok, track vector,
presence, and each track's 10 windows in the segments table, written as ``Store.finish_ok``
writes them), opened with :class:`app.library.Library`, which builds and
saves the index as it does for a user. Vectors are synthetic: ``--vectors model`` (default)
draws them with the per-part spectra and neighbour structure the shipped model gives real music
(:func:`bench.common.model_like_vectors`), ``--vectors isotropic`` fills every part's 128
dimensions evenly, a far harder stress case. A track vector is the mean of its windows.

A warm-up (``--warmup`` tracks, every focus, reported apart) first faults in the files a
library just opened maps; then, timed per query, back to back: ``whole_query`` is ``Library.search(track_id, focus, k=10)``,
everything a user waits for (index search, the hits' rows, each hit's windows read for its
best-matching window pair); ``index_only`` is ``VectorIndex.search`` alone, for reference.
Recall@10 compares the whole query's tracks with brute force over every track, worked out after
every focus is timed (its passes over every vector would evict what the searches use, which
no user's session does between two searches). Focus kinds:
one part, several positive parts, the all-equal focus, and focuses with negative weights.
The database has just been written, but how much of it the page cache still holds when the
queries run is up to the system: at a million tracks part of it comes from the disk, more on the
first open (which builds the index) than on a rerun with the same ``--workdir`` (which loads it).
``--index-only`` skips the store and the windows (sizes they would take too long to write
for): the index's time is then a lower bound of the whole query's.
Prints one JSON; the targets are in it.
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
from app.library import AnalysisPolicy, Library  # noqa: E402
from app.store import DB_NAME, SEGMENTS_INSERT, Store, segment_params  # noqa: E402
from bench.common import VECTOR_KINDS, parse_params  # noqa: E402
from model.parts import EMBED_DIM, part_sq_norms  # noqa: E402

FOCUSES = {  # name: (kind, focus)
    "solo_drums": ("single_part", {"drums": 1}),
    "solo_guitar": ("single_part", {"guitar": 1}),
    "bass+piano": ("multi_positive", {"bass": 1, "piano": 0.5}),
    "three_parts": ("multi_positive", {"guitar": 1, "others": 0.7, "bass": 0.4}),
    "all_equal": ("all_equal", [1, 1, 1, 1, 1]),
    "drums_not_rest": ("with_negatives", {"drums": 1, "bass": -0.3, "piano": -0.3, "guitar": -0.3, "others": -0.3}),
    "drums_not_rest_0.5": ("with_negatives", [1, -0.5, -0.5, -0.5, -0.5]),
    "bass_not_drums": ("with_negatives", {"bass": 1, "drums": -1}),
    "mixed_signs": ("with_negatives", [1, 0.5, -0.5, 0, -1]),
}
TARGETS = {"p99_ms": 10.0, "recall_at_10": 0.99}
TARGET_TEXT = "whole query p99 < 10 ms and recall@10 >= 0.99 for every focus kind (issue 17, at 1M tracks)"
SHA = "synthetic"
WINDOWS = 10  # analysis windows per track (AnalysisPolicy.max_windows)


def fill_library(root: Path, vecs: np.ndarray, seed: int = 0) -> None:
    """Rows and windows as a scan leaves them (ok, vector, presence, windows), without audio
    behind them. Each track's windows scatter around its vector and average to it."""
    store = Store(root)
    store.set_meta("model_sha", SHA)
    pres = np.full(5, 0.5, np.float32).tobytes()
    policy = AnalysisPolicy().key()
    rng = np.random.default_rng(seed)
    starts = (np.arange(WINDOWS) * 18.0).astype(np.float32)
    now = time.time()
    for s in range(0, len(vecs), 5000):
        chunk = range(s, min(len(vecs), s + 5000))
        windows = []
        for i in chunk:
            noise = 0.3 * rng.standard_normal((WINDOWS, EMBED_DIM)).astype(np.float32)
            windows.append(segment_params(i + 1, vecs[i] + noise - noise.mean(axis=0), starts))
        with store.transaction() as con:
            con.executemany(
                "INSERT INTO tracks(id, path, folder, size, mtime_ns, status, title, duration, model_sha, "
                "policy, rev, vector, presence, updated) VALUES(?, ?, '/music', 1, 1, 'ok', ?, 200, ?, "
                "?, 1, ?, ?, ?)",
                ((i + 1, f"/music/{i:07d}.mp3", f"t{i}", SHA, policy, vecs[i].tobytes(), pres, now)
                 for i in chunk))
            con.executemany(SEGMENTS_INSERT, windows)
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
ids = lib.index.revs()[0]
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


def _ms(lat: list[float]) -> dict:
    return {"p50_ms": round(1000 * float(np.percentile(lat, 50)), 2),
            "p99_ms": round(1000 * float(np.percentile(lat, 99)), 2)}


def _recall(rec: list[float]) -> dict:
    return {"recall_at_10": round(float(np.mean(rec)), 4), "min_recall_at_10": round(float(np.min(rec)), 2)}


def open_library(n: int, root: Path, params: IndexParams, kind: str = "model") -> tuple[Library, np.ndarray, dict]:
    """The library of ``n`` synthetic tracks at ``root`` (written on first use), opened as a user
    would open it; its track vectors (n, 640) and how long making it took."""
    vecs = VECTOR_KINDS[kind](n, seed=n)
    took = {}
    if not (root / DB_NAME).exists():
        t0 = time.perf_counter()
        fill_library(root, vecs, seed=n)
        took["fill_store_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    lib = Library(root, weights=root / "none.safetensors", index_params=params)
    took["open_s"] = round(time.perf_counter() - t0, 1)  # includes the HNSW build on first use
    assert len(lib.index) == n, (len(lib.index), n)
    return lib, vecs, took


def open_index(n: int, root: Path, params: IndexParams, kind: str = "model") -> tuple[VectorIndex, np.ndarray, dict]:
    """Only the index of ``n`` synthetic tracks (built and saved at ``root`` on first use), for
    sizes whose store and windows would take too long to write here."""
    vecs = VECTOR_KINDS[kind](n, seed=n)
    took = {}
    loaded = VectorIndex.load(root / "index", params)
    if loaded is None:
        t0 = time.perf_counter()
        index = VectorIndex(params)
        index.upsert(np.arange(1, n + 1), np.ones(n, np.int64), vecs)
        index.maintain(force=True)
        took["build_s"] = round(time.perf_counter() - t0, 1)
        index.save(root / "index", {"model_sha": SHA})
    else:
        index = loaded[0]
    return index, vecs, took


def bench_size(n: int, n_queries: int, root: Path, params: IndexParams, index_only: bool = False,
               kind: str = "model", warmup: int = 0) -> dict:
    if index_only:
        lib, (index, vecs, took) = None, open_index(n, root, params, kind)
    else:
        lib, vecs, took = open_library(n, root, params, kind)
        index = lib.index
    ids = np.arange(1, n + 1, dtype=np.int64)
    sq = part_sq_norms(vecs)  # the part norms the exact path uses
    scales = index.scales()
    rng = np.random.default_rng(1)
    picked = rng.choice(n, n_queries + warmup, replace=False)
    qrows, wrows = picked[:n_queries], picked[n_queries:]
    out = {"tracks": n, "hnsw": index.has_hnsw, **took, "focus": {}}
    if warmup:  # other tracks, every focus: what a library just opened pays before it is warm
        lat = []
        for r in wrows.tolist():
            for _, f in FOCUSES.values():
                t = time.perf_counter()
                if lib is not None:
                    lib.search(int(ids[r]), parse_focus(f), k=10)
                else:
                    index.search(vecs[r], parse_focus(f), 10, exclude=[int(ids[r])])
                lat.append(time.perf_counter() - t)
        out["warmup"] = {"queries": len(lat), "first_ms": round(1000 * lat[0], 2), "total_s": round(sum(lat), 2),
                         **_ms(lat)}
    kinds: dict[str, dict[str, list]] = {}
    timed = {}
    # every focus timed first, back to back as a user's queries come; the brute-force truths
    # after, so that their passes over every vector do not evict what the timed queries use
    for name, (_, f) in FOCUSES.items():
        w = parse_focus(f)
        whole, alone, answers, brute = [], [], [], 0
        for r in qrows.tolist() if lib is not None else ():  # queries back to back, as a user's
            t = time.perf_counter()
            got = lib.search(int(ids[r]), w, k=10)
            whole.append(time.perf_counter() - t)
            answers.append([x.track.id for x in got])
        for r in qrows.tolist():  # the index alone, for reference
            t = time.perf_counter()
            hits = index.search(vecs[r], w, 10, exclude=[int(ids[r])])
            alone.append(time.perf_counter() - t)
            brute += hits.exact
            if lib is None:
                answers.append(hits.ids.tolist())
        timed[name] = (whole, alone, answers, brute)
    for name, (kind, f) in FOCUSES.items():
        w = parse_focus(f)
        whole, alone, answers, brute = timed[name]
        rec = []
        for r, got in zip(qrows.tolist(), answers, strict=True):  # truth: brute force
            s = focused_scores(vecs[r], w, vecs, scales, sq)
            s[r] = -np.inf
            truth = np.argpartition(-s, 10)[:10]
            rec.append(len(set(ids[truth].tolist()) & set(got)) / 10)
        out["focus"][name] = {"kind": kind, "whole_query": _ms(whole) if whole else None,
                              "index_only": _ms(alone), **_recall(rec),
                              "brute_force_share": round(brute / len(qrows), 3)}
        acc = kinds.setdefault(kind, {"whole": [], "alone": [], "rec": []})
        acc["whole"] += whole
        acc["alone"] += alone
        acc["rec"] += rec
    out["kind"] = {}
    for kind, acc in kinds.items():
        row = {"whole_query": _ms(acc["whole"]) if acc["whole"] else None, "index_only": _ms(acc["alone"]),
               **_recall(acc["rec"])}
        row["recall_meets_target"] = row["recall_at_10"] >= TARGETS["recall_at_10"]
        # without the whole query (--index-only), whether the latency target is met is unknown
        row["meets_target"] = (None if row["whole_query"] is None else
                               row["recall_meets_target"] and row["whole_query"]["p99_ms"] < TARGETS["p99_ms"])
        out["kind"][kind] = row
    if lib is not None:
        lib.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--memory-at", type=int, default=100000, help="size whose memory is measured (0: none)")
    ap.add_argument("--workdir", "--index-cache", type=Path, default=None,
                    help="keep the libraries (store with windows, saved index) here and reuse them on "
                         "the next run (default: a temp dir)")
    ap.add_argument("--index-only", action="store_true",
                    help="no store or windows: time and check the index alone (large sizes)")
    ap.add_argument("--vectors", choices=sorted(VECTOR_KINDS), default="model",
                    help="model: drawn like the shipped model's vectors of real music; isotropic: stress case")
    ap.add_argument("--warmup", type=int, default=20,
                    help="tracks queried with every focus before the timed queries, reported apart "
                         "(a library just opened faults its files in; default 20)")
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                    help="an IndexParams field other than its default, e.g. codes_scan=8000 (repeatable)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    params = parse_params(ap, args.param)
    results = {"bench": "query", "target": TARGET_TEXT, "cpus": os.cpu_count(), "vectors": args.vectors,
               "params": params.__dict__, "sizes": []}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            name = f"{'idx' if args.index_only else 'lib'}{n}-{args.vectors}"
            root = (args.workdir or Path(tmp)) / name
            res = bench_size(n, args.queries, root, params, args.index_only, args.vectors, args.warmup)
            if n == args.memory_at and not args.index_only:
                child = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(root),
                                        str(Path(__file__).resolve().parent.parent)],
                                       capture_output=True, text=True, check=True)
                res["query_mode_process"] = json.loads(child.stdout.strip().splitlines()[-1])
            met = [k["meets_target"] for k in res["kind"].values()]
            res["target_met"] = None if None in met else all(met)
            results["sizes"].append(res)
            print(json.dumps(res), file=sys.stderr)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
