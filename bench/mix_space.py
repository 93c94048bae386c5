"""Where the several-parts graph loses recall: its space, or the graph over it.

    python bench/mix_space.py [--tracks 100000] [--queries 40] [--candidates 100,400,1000]
                              [--graphs l2:16:120,l2:32:200,ip:16:120]

A focus on several parts takes its candidates from one HNSW graph over the index's
:class:`app.index.MixSpace` rows (each track's projected parts and their squared lengths, put on a
sphere), then re-ranks them exactly. Two things can lose a true top-10 track: the space (the
weighted squared distance the rows encode is a first-order stand-in for the match score) and
the graph (an approximate nearest-row search). This benchmark separates them, on the model-like
vectors of ``bench/query.py`` and its focuses on several parts (all parts equal, positive parts,
"different" parts):

- ``space``: the rows ranked exactly (every row's inner product with the focus's query row),
  the first ``c`` re-ranked as the index re-ranks them: the recall@10 a perfect graph would give
  with ``c`` candidates;
- ``graphs``: the same with each graph variant's ``c`` nearest rows (``metric:M:ef_construction``;
  ``l2`` the sphere rows the index uses, ``ip`` the rows without their sphere coordinate in
  hnswlib's inner-product space), with its build time (one thread) and search time.

Recall is against brute force over every track (``app.focus.focused_scores``). The per-part lists
the index adds to the graph's (``IndexParams.candidates``) are left out: this measures the graph's
list alone. Prints one JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.focus import focused_scores, parse_focus, part_scales  # noqa: E402
from app.index import IndexParams, _fit_mix_space, _sample  # noqa: E402
from bench.common import model_like_vectors  # noqa: E402
from bench.query import FOCUSES  # noqa: E402
from model.parts import part_sq_norms  # noqa: E402

CHUNK = 20000


def top10(vecs, sq, scales, q_row: int, w: np.ndarray, rows: np.ndarray) -> set[int]:
    """The best 10 of ``rows`` for the query track ``q_row`` under ``w``, scored exactly."""
    s = focused_scores(vecs[q_row], w, vecs[rows], scales, sq[rows])
    s[rows == q_row] = -np.inf
    return set(rows[np.argpartition(-s, 10)[:10]].tolist())


def _stats(lat: list[float], rec: list[float]) -> dict:
    out = {"recall_at_10": round(float(np.mean(rec)), 4), "worst": round(float(np.min(rec)), 2)}
    if lat:
        out |= {"p50_ms": round(float(np.percentile(lat, 50)), 2),
                "p99_ms": round(float(np.percentile(lat, 99)), 2)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracks", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--candidates", default="100,400,1000")
    ap.add_argument("--graphs", default="l2:16:120,l2:32:200,ip:16:120", help="'' for none")
    ap.add_argument("--mix-negative", type=float, default=None,
                    help="weight of a 'different' part in the query row (default: IndexParams')")
    args = ap.parse_args(argv)
    import hnswlib

    n, p = args.tracks, IndexParams()
    if args.mix_negative is not None:
        p = dataclasses.replace(p, mix_negative=args.mix_negative)
    counts = [int(c) for c in args.candidates.split(",")]
    vecs = model_like_vectors(n)
    sq = part_sq_norms(vecs)
    all_rows = np.arange(n)
    sample = _sample(vecs, all_rows, p)
    space = _fit_mix_space(vecs, all_rows, sample, p)  # as the index fits it
    scales = part_scales(sample)
    X = np.concatenate([space.rows(vecs[s:s + CHUNK]) for s in range(0, n, CHUNK)])
    norms = np.sqrt((X[:, :-1] ** 2).sum(axis=1))
    qrows = np.random.default_rng(1).choice(n, args.queries, replace=False)
    focuses = {name: (kind, parse_focus(f)) for name, (kind, f) in FOCUSES.items() if kind != "single_part"}
    truth = {name: [top10(vecs, sq, scales, int(r), w, all_rows) for r in qrows]
             for name, (_, w) in focuses.items()}
    out = {"bench": "mix_space", "cpus": os.cpu_count(), "tracks": n, "queries": args.queries,
           "mix_negative": p.mix_negative,
           "dim": space.dim, "row_norm_over_radius": {
               "median": round(float(np.median(norms) / space.radius), 3),
               "p99": round(float(np.percentile(norms, 99) / space.radius), 3)},
           "space": {}, "graphs": {}}
    for name, (kind, w) in focuses.items():
        rec: dict[int, list[float]] = {c: [] for c in counts}
        for r, t in zip(qrows.tolist(), truth[name], strict=True):
            ip = X @ space.query(vecs[r], w, p.mix_negative)[0]
            ip[r] = -np.inf
            order = np.argsort(-ip)
            for c in counts:
                rec[c].append(len(top10(vecs, sq, scales, r, w, order[:c]) & t) / 10)
        out["space"][name] = {"kind": kind, **{str(c): _stats([], v) for c, v in rec.items()}}
        print(json.dumps({"space": name, **out["space"][name]}), file=sys.stderr)
    for g in filter(None, args.graphs.split(",")):
        metric, m, efc = g.split(":")
        data = X if metric == "l2" else np.ascontiguousarray(X[:, :-1])
        h = hnswlib.Index(space=metric, dim=data.shape[1])
        h.init_index(max_elements=n, ef_construction=int(efc), M=int(m))
        t0 = time.perf_counter()
        for s in range(0, n, CHUNK):
            h.add_items(data[s:s + CHUNK], all_rows[s:s + CHUNK], num_threads=1)
        res: dict = {"build_s_one_thread": round(time.perf_counter() - t0, 1), "focus": {}}
        for name, (kind, w) in focuses.items():
            row = {"kind": kind}
            for c in counts:
                h.set_ef(max(c, 10))
                lat, rec_c = [], []
                for r, t in zip(qrows.tolist(), truth[name], strict=True):
                    a = space.query(vecs[r], w, p.mix_negative)
                    a = a if metric == "l2" else np.ascontiguousarray(a[:, :-1])
                    t1 = time.perf_counter()
                    lab, _ = h.knn_query(a, k=c, num_threads=1)
                    lat.append((time.perf_counter() - t1) * 1000)
                    rec_c.append(len(top10(vecs, sq, scales, r, w, lab[0].astype(np.int64)) & t) / 10)
                row[str(c)] = _stats(lat, rec_c)
            res["focus"][name] = row
        out["graphs"][g] = res
        print(json.dumps({"graph": g, **res}), file=sys.stderr)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
