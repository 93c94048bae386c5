"""Search indices over the track vectors: exact below a size, HNSW graphs above it.

:class:`VectorIndex` keeps every track vector (N, 640) as float16 with its part squared norms
(float32), memory-mapped from the saved index until the first change, and, once the library is
large enough, hnswlib graphs, one per part subspace, and from ``codes_above`` tracks the part
codes that a focus on several parts scans (:mod:`app.codes`). Each part's graph holds the part
projected on the principal axes that keep 99 % of its variance (:class:`Projection`; the
shipped model's vectors of real music need 23-76 of the 128 dimensions), which makes the graphs smaller and quicker to build without
changing an answer: a projected distance is a lower bound of the true one, and candidates are
re-ranked on the full vectors. HNSW labels are row numbers in the arrays; rows are only ever
appended, a replaced or removed track's row is marked dead (and ``mark_deleted`` in HNSW). Rows
added after the last HNSW update form a *tail* that every query scans exactly, so the index is
always in step with the store even while a scan is adding tracks.

A focused query (see :mod:`app.focus`: per-part similarity, match) on one part takes candidates
from that part's graph, doubling the list until a bound proves the answer exact; so does a focus
on several parts in a library of under ``codes_above`` tracks. In a larger one such a bound
needs lists of thousands (the best rows are moderately close in every part, far down each
part's list), so the focus scans every row's part codes instead (one byte per part: an
estimate of the match, "different" parts included), scores the best few thousand again on
their projected parts and the best few hundred of those exactly. Libraries under ``exact_below``
tracks, and queries with no positive weight, are answered by exact brute force. All methods are
thread-safe (one re-entrant lock).

On disk (``save``/``load``) each version lives in its own ``gen-*`` folder and a ``CURRENT``
file, replaced atomically, names the valid one.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from app.codes import PartCodes, kernels
from app.focus import match, match_from_raw, part_scales, similarity
from model.parts import (
    EMBED_DIM,
    N_PARTS,
    SUBSPACE_DIM,
    part_slice,
    part_sq_distances,
    part_sq_norms,
)

if TYPE_CHECKING:
    import hnswlib

log = logging.getLogger(__name__)

INDEX_FORMAT = 2  # 2: vectors.npy holds float16 (1: float32, still read)
VEC_DTYPE = np.float16  # what a track vector costs: 1.25 KB (exact re-rank in float32)
CHUNK = 16384  # rows scored at a time by a brute-force search (bounds its float32 copies)
BUILD_CHUNK = 20000  # rows projected and added to a graph at a time
# up to this many rows, the first brute-force search keeps a float32 copy for the next ones
# (10k tracks: 26 MB; a journey's dozen exact searches then skip widening every row each time),
# and a saved index carries that copy (wide.npy, memory-mapped on load), so that a command's
# first exact search does not widen every row either (about 25 ms of ``partwise query`` at 10k)
WIDE_ROWS = 32768


@dataclass(frozen=True)
class IndexParams:
    """Tuning of the index; ``bench/query.py`` measures what the defaults give (docs/desktop-app.md)."""

    exact_below: int = 3000  # brute force while the library has fewer tracks than this
    m: int = 16  # HNSW graph degree
    ef_construction: int = 120
    ef_search: int = 160
    candidates: int = 100  # shortest list per positively weighted part (at least 10 * k)
    max_candidates: int = 6400  # beyond this many per part, brute force instead
    negative_growth: int = 1  # with negative weights, double the lists at most this often
    hnsw_cost: float = 6.0  # one HNSW beam slot costs about this many rows of a brute-force scan
    # brute force when the "different in" weights outweigh the "same in" weights this much:
    # the nearest rows of the positive parts then say little about the answer
    negative_dominance: float = 2.5
    fold_every: int = 2048  # tail rows that trigger adding them to HNSW
    fold_chunk: int = 1024  # rows added per lock hold, so queries are not starved
    compact_above: float = 0.25  # dead row share that triggers a rebuild
    threads: int = 0  # hnswlib build threads; 0 = all cores
    # each part's graph holds its rows projected on the principal axes that keep this share of
    # the part's variance (real embeddings: 23-76 of 128 dimensions for 0.99); 1.0 keeps all 128
    keep_variance: float = 0.99
    projection_sample: int = 20000  # rows the principal axes are measured on
    # part codes answer focuses on several parts (app.codes) ...
    codes: bool = True
    # ... from this many tracks: below it, the per-part lists with their bound are exact and quick
    codes_above: int = 50000
    codes_keep_variance: float = 0.95  # share of each part's variance the codes' projection keeps
    codes_scan: int = 4000  # rows scored again on their projected parts: at least this many ...
    codes_scan_share: float = 1 / 64  # ... and at least this share of the rows
    codes_refine: int = 300  # of those, rows scored exactly


class _Memo:
    """What searches worked out for one query vector, kept for the next search with the same
    vector: a fader move asks again with new weights, and the per-part HNSW lists and exact part
    distances it needs are mostly known already. Dropped when the query or the index changes."""

    def __init__(self, key: tuple):
        self.key = key
        self.lists: dict[int, tuple[int, int, np.ndarray, np.ndarray]] = {}  # part -> kk, widen, labels, dists
        self.coded: dict[bytes, np.ndarray] = {}  # focus -> the rows its part-code scan chose
        self.rows = np.zeros(0, np.int64)  # sorted rows whose part distances are known ...
        self.pd = np.zeros((0, N_PARTS), np.float32)  # ... these (squared, per part) ...
        self.have = np.zeros((0, N_PARTS), bool)  # ... for these parts
        self.full: np.ndarray | None = None  # (n, 5) part distances of every row (an exact search)
        self.full_have = np.zeros(N_PARTS, bool)


@dataclass
class Hits:
    """ids (k,) int64; scores (k,) float32 match in [0, 1], best first; parts (k, 5) squared
    distances; similarity (k, 5) per-part similarity in [0, 1]."""

    ids: np.ndarray
    scores: np.ndarray
    parts: np.ndarray
    exact: bool
    similarity: np.ndarray


def _hnswlib():
    """hnswlib, imported where graphs are built or loaded: a command that searches without
    them (``graphs=False``) does not pay for its import."""
    import hnswlib

    return hnswlib


def _new_hnsw(dim: int, capacity: int, p: IndexParams) -> hnswlib.Index:
    idx = _hnswlib().Index(space="l2", dim=dim)
    idx.init_index(max_elements=max(capacity, 16), ef_construction=p.ef_construction, M=p.m)
    idx.set_ef(p.ef_search)
    return idx


def _sq_norms(vecs: np.ndarray) -> np.ndarray:
    """(n, 5) float32 part squared norms of (n, 640) vectors, a chunk at a time."""
    out = np.zeros((len(vecs), N_PARTS), np.float32)
    for a in range(0, len(vecs), CHUNK):
        out[a:a + CHUNK] = part_sq_norms(vecs[a:a + CHUNK])
    return out


def _load_wide(path: Path, vecs: np.ndarray) -> np.ndarray | None:
    """The saved float32 copy of ``vecs`` (memory-mapped), or None when it is absent, does not
    fit, or differs from them on the rows checked (then the first exact search widens anew)."""
    try:
        wide = np.asarray(np.load(path, mmap_mode="r"))
    except (OSError, ValueError):
        return None
    if wide.dtype != np.float32 or wide.shape != vecs.shape:
        log.warning("%s: does not match the index's vectors; not used", path)
        return None
    check = np.linspace(0, len(vecs) - 1, 64).astype(np.int64)  # (np.unique would import numpy.ma)
    if not np.array_equal(wide[check], vecs[check].astype(np.float32)):
        log.warning("%s: differs from the index's vectors; not used", path)
        return None
    return wide


class Projection:
    """One part's graph space: its rows centred and projected on the principal axes that keep a
    share of the part's variance. An orthogonal projection never lengthens a distance, so a
    distance in the graph is a lower bound of the true one: the search's stopping bound stays
    valid, a graph of fewer dimensions is smaller and quicker to build, and the exact re-rank
    restores the true order."""

    def __init__(self, mean: np.ndarray, basis: np.ndarray):
        self.mean = np.asarray(mean, np.float32).reshape(SUBSPACE_DIM)
        self.basis = np.ascontiguousarray(basis, np.float32).reshape(SUBSPACE_DIM, -1)  # (128, d)

    @property
    def dim(self) -> int:
        return self.basis.shape[1]

    @classmethod
    def identity(cls) -> Projection:
        return cls(np.zeros(SUBSPACE_DIM, np.float32), np.eye(SUBSPACE_DIM, dtype=np.float32))

    @classmethod
    def fit(cls, rows: np.ndarray, keep: float) -> Projection:
        """Principal axes of (n, 128) rows keeping ``keep`` of their variance, a multiple of 8."""
        x = np.asarray(rows, np.float64)
        mean = x.mean(axis=0) if len(x) else np.zeros(SUBSPACE_DIM)
        if keep >= 1.0 or len(x) < 2 * SUBSPACE_DIM:
            return cls(np.zeros(SUBSPACE_DIM), np.eye(SUBSPACE_DIM))
        lam, vec = np.linalg.eigh(np.cov((x - mean).T))
        lam, vec = np.clip(lam[::-1], 0, None), vec[:, ::-1]
        share = np.cumsum(lam) / max(float(lam.sum()), 1e-12)
        d = min(SUBSPACE_DIM, -(-(int(np.searchsorted(share, keep)) + 1) // 8) * 8)
        return cls(mean, vec[:, :d])

    def __call__(self, part_rows: np.ndarray) -> np.ndarray:
        """(n, 128) -> (n, d) float32, contiguous for hnswlib."""
        x = np.asarray(part_rows).astype(np.float32, copy=False)
        return np.ascontiguousarray((x - self.mean) @ self.basis, dtype=np.float32)

    def to_array(self) -> np.ndarray:
        return np.vstack([self.mean[None, :], self.basis.T])  # (1 + d, 128)

    @classmethod
    def from_array(cls, a: np.ndarray) -> Projection:
        if a.ndim != 2 or a.shape[1] != SUBSPACE_DIM or not 2 <= len(a) <= SUBSPACE_DIM + 1:
            raise ValueError(f"projection of shape {a.shape}")
        return cls(a[0], a[1:].T)


def _sample(vecs: np.ndarray, rows: np.ndarray, p: IndexParams) -> np.ndarray:
    """At most ``projection_sample`` of ``rows``, evenly spread, as float32: what the graphs'
    projections are measured on."""
    if len(rows) > p.projection_sample:
        rows = rows[np.linspace(0, len(rows) - 1, p.projection_sample).astype(np.int64)]
    return np.asarray(vecs[rows], np.float32)


def _fit_projections(sample: np.ndarray, keep: float) -> list[Projection]:
    return [Projection.fit(sample[:, part_slice(c)], keep) for c in range(N_PARTS)]


def _graph_room(rows: int, growing: bool = False) -> int:
    """Capacity of a graph over ``rows`` rows: a graph allocates its capacity up front (some 2.3
    KB a track for the five), so a build leaves a thirty-second for the tracks a scan adds next
    (about 70 MB at a million tracks; a sixteenth kept the peak of a million-track build over 4 GB),
    and a graph that fills grows by half (each growth copies it once)."""
    return int(rows * 1.5) + 1024 if growing else rows + max(rows // 32, 4096)


def _build_codes(vecs: np.ndarray, n0: int, sample: np.ndarray, p: IndexParams) -> PartCodes:
    """Part codes of rows [0, n0) of ``vecs`` (dead rows too: codes are addressed by row), their
    projections, scales and codebooks measured on ``sample`` (:func:`_sample`)."""
    codes = PartCodes.fit(sample, _fit_projections(sample, p.codes_keep_variance), part_scales(sample))
    codes.reserve(_graph_room(n0))  # the graphs' spare room, for the rows a scan adds next
    for s in range(0, n0, BUILD_CHUNK):
        codes.append(vecs[s:min(n0, s + BUILD_CHUNK)])
    return codes


def _top_hits(q: np.ndarray, w: np.ndarray, k: int, rows: np.ndarray, scores: np.ndarray, vecs: np.ndarray,
              sq: np.ndarray, ids: np.ndarray, scales: np.ndarray, exact: bool) -> Hits:
    """The k best of ``rows`` by ``scores`` (-inf: not eligible), their part distances and
    match computed again on the full vectors, best first (ties by id)."""
    top = min(k, int(np.isfinite(scores).sum()))
    if top == 0:
        z = np.zeros((0, N_PARTS), np.float32)
        return Hits(np.zeros(0, np.int64), np.zeros(0, np.float32), z, exact, z)
    best = np.argpartition(-scores, top - 1)[:top] if top < len(rows) else np.arange(len(rows))
    best_rows = rows[best]
    pd = part_sq_distances(q, vecs[best_rows], sq[best_rows])
    sim = similarity(pd, scales)
    final = match(sim, w)
    order = np.lexsort((ids[best_rows], -final))
    return Hits(ids=ids[best_rows[order]].copy(), scores=final[order], parts=pd[order], exact=exact,
                similarity=sim[order])


class Between:
    """Exact searches for blends of two vectors (:meth:`VectorIndex.between`): the target's part
    c is (1 - t_c) a_c + t_c b_c, so its squared distance to row x is
    |target_c|^2 + |x_c|^2 - 2 ((1 - t_c) x_c.a_c + t_c x_c.b_c), from products known."""

    def __init__(self, index: VectorIndex, a: np.ndarray, b: np.ndarray, cross: np.ndarray,
                 sq: np.ndarray, alive: np.ndarray, ids: np.ndarray, gen: int, scales: np.ndarray):
        self.index, self.a, self.b, self.cross = index, a, b, cross
        self.sq, self.alive, self.ids, self.gen, self.scales = sq, alive, ids, gen, scales

    def target(self, t: np.ndarray) -> np.ndarray:
        """(5,) blend per part -> the (640,) target vector."""
        tw = np.repeat(np.asarray(t, np.float32), SUBSPACE_DIM)
        return ((1.0 - tw) * self.a + tw * self.b).astype(np.float32)

    def search(self, t: np.ndarray, w: np.ndarray, k: int, exclude: Iterable[int] = ()) -> Hits:
        """What ``index.search(self.target(t), w, k, exclude)`` answers by brute force, unless
        the index changed since (then it asks the index)."""
        t = np.asarray(t, np.float32).reshape(N_PARTS)
        w = np.asarray(w, np.float32).reshape(N_PARTS)
        target = self.target(t)
        if self.gen != self.index._gen:
            return self.index.search(target, w, k, exclude)
        tn = part_sq_norms(target[None, :])[0]
        pd = np.maximum(tn + self.sq - 2.0 * ((1.0 - t) * self.cross[0] + t * self.cross[1]), 0.0)
        scores = match(similarity(pd, self.scales), w)
        scores[~self.alive] = -np.inf
        excl = np.fromiter((int(i) for i in exclude), np.int64)
        if len(excl):
            scores[np.isin(self.ids, excl)] = -np.inf
        return _top_hits(target, w, k, np.arange(len(scores)), scores, self.index._vecs, self.sq, self.ids,
                         self.scales, True)


class RowMap:
    """Track id -> its live row. Library ids are SQLite row ids (1, 2, 3, ...), so the rows sit
    in an array indexed by id, 8 bytes a possible id, where a dict took about 110 bytes a track
    (110 MB at a million); an id far beyond the others (over four times as many as held, plus
    64k) goes to a small dict, so no id can make the array huge."""

    FAR = 65536

    def __init__(self, ids: np.ndarray | None = None, rows: np.ndarray | None = None):
        self._rows = np.full(0, -1, np.int64)
        self._far: dict[int, int] = {}
        self._n = 0
        if ids is not None:
            self.put(ids, rows)

    def __len__(self) -> int:
        return self._n

    def __contains__(self, i: int) -> bool:
        return self.get(i) is not None

    def __iter__(self):
        yield from np.flatnonzero(self._rows >= 0).tolist()
        yield from list(self._far)

    def get(self, i: int) -> int | None:
        if 0 <= i < len(self._rows):
            r = int(self._rows[i])
            return r if r >= 0 else None
        return self._far.get(i)

    def pop(self, i: int) -> int | None:
        if 0 <= i < len(self._rows):
            r = int(self._rows[i])
            if r < 0:
                return None
            self._rows[i] = -1
        else:
            r = self._far.pop(i, None)
            if r is None:
                return None
        self._n -= 1
        return r

    def put(self, ids: np.ndarray, rows: np.ndarray) -> None:
        """Map each of ``ids`` (none of them held, no repeats) to its row."""
        ids, rows = np.asarray(ids, np.int64), np.asarray(rows, np.int64)
        near = (ids >= 0) & (ids < max(len(self._rows), 4 * (self._n + len(ids))) + self.FAR)
        top = int(ids[near].max(initial=-1)) + 1
        if top > len(self._rows):
            grown = np.full(max(top, int(len(self._rows) * 1.5)), -1, np.int64)
            grown[:len(self._rows)] = self._rows
            self._rows = grown
        self._rows[ids[near]] = rows[near]
        self._far.update(zip(ids[~near].tolist(), rows[~near].tolist(), strict=True))
        self._n += len(ids)


class VectorIndex:
    """Track vectors + HNSW per part; see the module docstring."""

    def __init__(self, params: IndexParams | None = None):
        self.params = params or IndexParams()
        self._lock = threading.RLock()
        self._vecs = np.zeros((0, EMBED_DIM), VEC_DTYPE)
        self._sq = np.zeros((0, N_PARTS), np.float32)
        self._ids = np.zeros(0, np.int64)
        self._revs = np.zeros(0, np.int64)
        self._alive = np.zeros(0, bool)
        self._n = 0
        self._pos = RowMap()  # track id -> its live row
        self._hnsw: list[hnswlib.Index] | None = None
        self._proj: list[Projection] = []  # each graph's space (with the graphs)
        self._codes: PartCodes | None = None  # what a focus on several parts scans
        self._scratch = np.zeros(0, np.float32)  # the code scan's estimates
        self._n_indexed = 0  # rows [0, n_indexed) are in HNSW
        self._epoch = 0  # bumped when rows are renumbered (compaction)
        self._maint_lock = threading.Lock()  # one maintenance at a time
        self._kk_seen: dict[tuple, deque] = {}  # candidate list lengths recent queries needed
        self._scales: np.ndarray | None = None
        self._scales_n = 0  # live tracks when the scales were measured
        self._wide: np.ndarray | None = None  # float32 copy of the rows, small libraries only
        self._gen = 0  # bumped by every change of rows, liveness or graphs (drops the memo)
        self._memo: _Memo | None = None

    # ------------------------------------------------------------ state
    def __len__(self) -> int:
        with self._lock:
            return len(self._pos)

    @property
    def has_hnsw(self) -> bool:
        return self._hnsw is not None

    def prepare_search(self) -> None:
        """Load what the first searches of a large library would otherwise wait for: the
        compiled loops (:mod:`app.kernels`, about half a second on first use) that scan the
        part codes and widen float16 rows. The window calls it from a worker when it opens a
        library; a command does not."""
        if self._codes is not None or self._n > WIDE_ROWS:  # without a float32 copy: widened by table
            kernels()

    def scales(self) -> np.ndarray:
        """(5,) typical squared distance per part between two live tracks (the similarity's
        scale, :func:`app.focus.part_scales` on up to 4000 rows); measured again once the number
        of live tracks has changed by more than a tenth, so scores stay put while browsing."""
        with self._lock:
            live = len(self._pos)
            if self._scales is None or abs(live - self._scales_n) > 0.1 * self._scales_n:
                rows = np.flatnonzero(self._alive[:self._n])
                if len(rows) > 4000:
                    rows = rows[np.linspace(0, len(rows) - 1, 4000).astype(np.int64)]
                self._scales, self._scales_n = part_scales(self._vecs[rows]), live
            return self._scales

    def revs(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, revs), int64 and ordered by id, of every live track."""
        with self._lock:
            rows = np.flatnonzero(self._alive[: self._n])
            ids, revs = self._ids[rows], self._revs[rows].astype(np.int64)
        order = np.argsort(ids, kind="stable")
        return ids[order].astype(np.int64), revs[order]

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the live ids (N,) int64 and vectors (N, 640) float32, ordered by id.

        The lock is held only to pick the rows: a row below ``_n`` is never written again (new
        rows are appended; growth and compaction make new arrays), so the N x 640 gather runs
        beside the searches rather than in their way.
        """
        with self._lock:
            vecs = self._vecs
            rows = np.flatnonzero(self._alive[: self._n])
            ids = self._ids[rows]
        order = np.argsort(ids, kind="stable")
        return ids[order], vecs[rows[order]].astype(np.float32)

    def vector(self, track_id: int) -> np.ndarray | None:
        with self._lock:
            r = self._pos.get(int(track_id))
            return None if r is None else self._vecs[r].astype(np.float32)

    # ------------------------------------------------------------ updates
    def reserve(self, more: int) -> None:
        """Make room for ``more`` rows beyond those held, so that adding them in steps copies
        the arrays once (a library rebuilding its index from the store knows how many it adds)."""
        with self._lock:
            self._grow(self._n + int(more), exact=True)

    def _grow(self, need: int, exact: bool = False) -> None:
        cap = len(self._ids)
        if need <= cap:
            return
        new = need if exact else max(need, int(cap * 1.5) + 64)

        def grow(a: np.ndarray) -> np.ndarray:
            b = np.zeros((new, *a.shape[1:]), a.dtype)
            b[: self._n] = a[: self._n]
            return b

        self._vecs, self._sq = grow(self._vecs), grow(self._sq)
        self._ids, self._revs, self._alive = grow(self._ids), grow(self._revs), grow(self._alive)

    def _writable(self) -> None:
        """The first change after a load copies the memory-mapped vectors into memory."""
        if not self._vecs.flags.writeable:
            self._vecs = np.array(self._vecs)

    def _graphs(self) -> list[hnswlib.Index]:
        return list(self._hnsw or ())

    def _kill(self, row: int) -> None:
        self._alive[row] = False
        if self._hnsw is not None and row < self._n_indexed:
            for h in self._graphs():
                try:
                    h.mark_deleted(row)
                except RuntimeError:  # already deleted
                    pass

    def upsert(self, ids: Iterable[int], revs: Iterable[int], vecs: np.ndarray) -> None:
        """Add or replace tracks. vecs: (n, 640) float32."""
        ids = np.asarray(list(ids), np.int64)
        revs = np.asarray(list(revs), np.int64)
        vecs = np.asarray(vecs, np.float32).reshape(len(ids), EMBED_DIM)
        if not len(ids):
            return
        if len(np.unique(ids)) < len(ids):
            raise ValueError("upsert: a track id given twice")
        with self._lock:
            for i in ids.tolist():
                r = self._pos.pop(i)
                if r is not None:
                    self._kill(r)
            n0 = self._n
            self._grow(n0 + len(ids))
            self._writable()
            self._wide = None
            self._vecs[n0:n0 + len(ids)] = vecs
            self._sq[n0:n0 + len(ids)] = part_sq_norms(self._vecs[n0:n0 + len(ids)])
            self._ids[n0:n0 + len(ids)] = ids
            self._revs[n0:n0 + len(ids)] = revs
            self._alive[n0:n0 + len(ids)] = True
            self._n = n0 + len(ids)
            self._pos.put(ids, np.arange(n0, n0 + len(ids)))
            self._gen += 1

    def remove(self, ids: Iterable[int]) -> int:
        n = 0
        with self._lock:
            for i in ids:
                r = self._pos.pop(int(i))
                if r is not None:
                    self._kill(r)
                    n += 1
            self._gen += 1
        return n

    def maintain(self, force: bool = False) -> None:
        """Bring HNSW up to date: compact when many rows are dead, build when the library has
        grown past ``exact_below``, add the tail when it is long (or ``force``)."""
        with self._maint_lock:
            self._maintain(force)

    def _maintain(self, force: bool) -> None:
        p = self.params
        with self._lock:
            dead = self._n - len(self._pos)
            if self._n and dead / self._n > p.compact_above:
                self._compact()
            big = len(self._pos) >= p.exact_below
            if not big:
                if self._hnsw is not None and len(self._pos) < p.exact_below // 2:
                    self._hnsw, self._codes, self._n_indexed = None, None, 0
                    self._gen += 1
                return
            need_build = self._hnsw is None
            need_codes = not need_build and p.codes and self._codes is None and len(self._pos) >= p.codes_above
            n0 = self._n
            tail = n0 - self._n_indexed
            if not need_build and not need_codes and not force and tail < p.fold_every:
                return
            vecs, alive, epoch = self._vecs, self._alive[:n0].copy(), self._epoch
            n_idx = self._n_indexed
        if need_build:
            self._build(vecs, alive, n0, epoch)
        elif need_codes:  # an index saved before the part codes, or one that grew past codes_above
            self._add_codes(vecs, alive[:n_idx], n_idx, epoch)
        self._fold()

    def _compact(self) -> None:
        rows = np.flatnonzero(self._alive[: self._n])
        self._writable()
        self._wide = None
        log.info("compacting the index: %d live of %d rows", len(rows), self._n)
        self._vecs, self._sq = self._vecs[rows].copy(), self._sq[rows].copy()
        self._ids, self._revs = self._ids[rows].copy(), self._revs[rows].copy()
        self._alive = np.ones(len(rows), bool)
        self._n = len(rows)
        self._pos = RowMap(self._ids, np.arange(self._n))
        self._hnsw, self._codes, self._n_indexed = None, None, 0
        self._epoch += 1
        self._gen += 1

    def _build(self, vecs: np.ndarray, alive: np.ndarray, n0: int, epoch: int) -> None:
        """Build HNSW over rows [0, n0) outside the lock, then swap it in."""
        p = self.params
        t = time.perf_counter()
        rows = np.flatnonzero(alive)
        threads = p.threads or (os.cpu_count() or 1)
        sample = _sample(vecs, rows, p)
        built, proj = [], _fit_projections(sample, p.keep_variance)
        for which in range(N_PARTS):
            h = _new_hnsw(proj[which].dim, _graph_room(n0), p)
            for s in range(0, len(rows), BUILD_CHUNK):
                r = rows[s:s + BUILD_CHUNK]
                h.add_items(proj[which](vecs[r, part_slice(which)]), r, num_threads=threads)
            built.append(h)
        codes = _build_codes(vecs, n0, sample, p) if p.codes and len(rows) >= p.codes_above else None
        with self._lock:
            if epoch != self._epoch:
                return
            for r in np.flatnonzero(~self._alive[:n0] & alive):  # killed while we built
                for h in built:
                    h.mark_deleted(int(r))
            self._hnsw, self._proj, self._codes, self._n_indexed = built, proj, codes, n0
            self._gen += 1
        log.info("built HNSW over %d tracks in %.1f s (graph dimensions %s)", len(rows),
                 time.perf_counter() - t, [pr.dim for pr in proj])

    def _add_codes(self, vecs: np.ndarray, alive: np.ndarray, n_idx: int, epoch: int) -> None:
        t = time.perf_counter()
        codes = _build_codes(vecs, n_idx, _sample(vecs, np.flatnonzero(alive), self.params), self.params)
        with self._lock:
            if epoch != self._epoch or self._hnsw is None or self._n_indexed < n_idx:
                return
            if self._n_indexed > n_idx:  # rows indexed in the graphs since: the codes take them too
                codes.append(self._vecs[n_idx:self._n_indexed])
            self._codes = codes
            self._gen += 1
        log.info("encoded the part codes of %d tracks in %.1f s", n_idx, time.perf_counter() - t)

    def _fold(self) -> None:
        p = self.params
        threads = p.threads or (os.cpu_count() or 1)
        while True:
            with self._lock:
                if self._hnsw is None or self._n_indexed >= self._n:
                    return
                a, b = self._n_indexed, min(self._n, self._n_indexed + p.fold_chunk)
                rows = a + np.flatnonzero(self._alive[a:b])
                for h in self._graphs():
                    if h.get_max_elements() < b:
                        h.resize_index(_graph_room(b, growing=True))
                for which, h in enumerate(self._hnsw):
                    if len(rows):
                        h.add_items(self._proj[which](self._vecs[rows, part_slice(which)]), rows,
                                    num_threads=threads)
                if self._codes is not None:  # every row, dead ones too: codes are addressed by row
                    self._codes.append(self._vecs[a:b])
                self._n_indexed = b
                self._gen += 1

    # ------------------------------------------------------------ search
    def search(self, q: np.ndarray, w: np.ndarray, k: int,
               exclude: Iterable[int] = ()) -> Hits:
        """The k live tracks that match q (640,) best under focus w (5,)."""
        q = np.asarray(q, np.float32).reshape(EMBED_DIM)
        w = np.asarray(w, np.float32).reshape(N_PARTS)
        excl = {int(i) for i in exclude}
        with self._lock:
            n = self._n
            scales = self.scales()
            memo = self._memo_for(q)
            weighed = w != 0
            exact = True
            found = None
            # a search that scored every row for these parts already: re-scoring is exact and cheap
            known = memo.full is not None and bool(memo.full_have[weighed].all())
            if self._hnsw is not None and (w > 0).any() and not known:
                found = self._candidates(q, w, k + len(excl), scales, self._own_row(q, excl), memo)
                exact = found is None
            if found is None:  # exact: score every row, a chunk at a time; mask the dead
                scores = match(similarity(self._all_part_distances(memo, q, w), scales), w) \
                    if n else np.zeros(0, np.float32)
                scores[~self._alive[:n]] = -np.inf
                rows = np.arange(n)
                for i in excl:
                    r = self._pos.get(i)
                    if r is not None:
                        scores[r] = -np.inf
            else:
                rows, scores = found
                if excl:
                    scores[np.isin(self._ids[rows], np.fromiter(excl, np.int64, len(excl)))] = -np.inf
            return _top_hits(q, w, k, rows, scores, self._vecs, self._sq, self._ids, scales, exact)

    def between(self, a: np.ndarray, b: np.ndarray) -> Between | None:
        """Exact searches for targets that blend ``a`` and ``b`` (640,) part by part (a journey
        from A to B), each answered from every row's part products with a and b worked out once
        here: the dozen steps of a journey cost two passes over the vectors instead of a dozen.
        None where the index answers with its graphs (searches are then cheap one by one)."""
        with self._lock:
            if self._hnsw is not None:
                return None
            n = self._n
            a = np.asarray(a, np.float32).reshape(EMBED_DIM)
            b = np.asarray(b, np.float32).reshape(EMBED_DIM)
            self._widen(n)
            cross = np.zeros((2, n, N_PARTS), np.float32)
            for s in range(0, n, CHUNK):
                e = min(n, s + CHUNK)
                x = self._wide[s:e] if n <= WIDE_ROWS else self._vecs[s:e].astype(np.float32)
                for c in range(N_PARTS):
                    sl = part_slice(c)
                    cross[:, s:e, c] = (x[:, sl] @ np.stack([a[sl], b[sl]], axis=1)).T
            return Between(self, a, b, cross, self._sq[:n], self._alive[:n].copy(), self._ids[:n],
                           self._gen, self.scales())

    def _widen(self, n: int) -> None:
        """Keep the float32 copy of the rows that exact searches read, in a small library."""
        if n <= WIDE_ROWS and (self._wide is None or len(self._wide) != n):
            self._wide = self._vecs[:n].astype(np.float32)

    def _memo_for(self, q: np.ndarray) -> _Memo:
        """The memo of this query vector (a new one when the query or the index changed)."""
        key = (q.tobytes(), self._gen, self._n)
        if self._memo is None or self._memo.key != key:
            self._memo = _Memo(key)
        return self._memo

    def _all_part_distances(self, memo: _Memo, q: np.ndarray, w: np.ndarray) -> np.ndarray:
        """(n, 5) squared part distances from q to every row, in the parts w weighs (the others
        as the memo has them), computed a chunk at a time for the parts the memo lacks."""
        n = self._n
        if memo.full is None:
            memo.full = np.zeros((n, N_PARTS), np.float32)
        missing = (w != 0) & ~memo.full_have
        if missing.any():
            self._widen(n)
            src = self._wide if n <= WIDE_ROWS else None
            wm = missing.astype(np.float32)
            cols = np.flatnonzero(missing)
            for a in range(0, n, CHUNK):
                b = min(n, a + CHUNK)
                memo.full[a:b, cols] = self._weighed_sq_distances(q, slice(a, b), wm, src)[:, cols]
            memo.full_have |= missing
        return memo.full

    def _rows_part_distances(self, memo: _Memo, q: np.ndarray, rows: np.ndarray,
                             w: np.ndarray) -> np.ndarray:
        """(m, 5) squared part distances from q to ``rows`` (sorted, unique) in the parts w
        weighs, 0 in the others: what the memo knows is taken, the rest computed and kept."""
        cols = np.flatnonzero(w != 0)
        out = np.zeros((len(rows), N_PARTS), np.float32)
        if memo.full is not None and memo.full_have[cols].all():
            out[:, cols] = memo.full[rows][:, cols]
            return out
        pos = np.searchsorted(memo.rows, rows)
        found = pos < len(memo.rows)
        found[found] = memo.rows[pos[found]] == rows[found]
        new = rows[~found]
        lacking = np.zeros(N_PARTS, bool)  # parts some known row lacks
        lacking[cols] = ~memo.have[pos[found]][:, cols].all(axis=0) if found.any() else False
        if len(new) or lacking.any():
            union = np.union1d(memo.rows, new)
            pd = np.zeros((len(union), N_PARTS), np.float32)
            have = np.zeros((len(union), N_PARTS), bool)
            old = np.searchsorted(union, memo.rows)
            pd[old], have[old] = memo.pd, memo.have
            if len(new):  # rows not seen: every weighed part
                at = np.searchsorted(union, new)
                pd[at[:, None], cols] = self._weighed_sq_distances(q, new, (w != 0).astype(np.float32))[:, cols]
                have[at[:, None], cols] = True
            if lacking.any():  # rows seen: the parts they lack
                known = rows[found]
                at = np.searchsorted(union, known)
                lc = np.flatnonzero(lacking)
                pd[at[:, None], lc] = self._weighed_sq_distances(q, known, lacking.astype(np.float32))[:, lc]
                have[at[:, None], lc] = True
            memo.rows, memo.pd, memo.have = union, pd, have
            pos = np.searchsorted(memo.rows, rows)
        out[:, cols] = memo.pd[pos][:, cols]
        return out

    def _own_row(self, q: np.ndarray, excl: set[int]) -> int:
        """The indexed row of the query itself (an excluded track whose vector is ``q``), or -1.
        Its distance to ``q`` is 0 in every part, so every list must hold it: a list without it
        means HNSW lost its way for this query."""
        for i in excl:
            r = self._pos.get(i)
            if r is not None and r < self._n_indexed and np.array_equal(self._vecs[r], q):
                return r
        return -1

    def _start_kk(self, key: tuple, kk0: int) -> int:
        """Where a query of this kind starts: a high quantile of what recent ones needed."""
        seen = self._kk_seen.get(key)
        if not seen:
            return kk0
        return max(kk0, int(np.quantile(np.fromiter(seen, np.int64, len(seen)), 0.9)))

    def _learn_kk(self, key: tuple, kk: int) -> None:
        seen = self._kk_seen.setdefault(key, deque(maxlen=64))
        seen.append(int(kk))

    def _weighed_sq_distances(self, q: np.ndarray, rows: np.ndarray | slice, w: np.ndarray,
                              wide: np.ndarray | None = None) -> np.ndarray:
        """(m, 5) squared part distances from q to ``rows`` (row numbers or a slice), 0 in the
        parts w leaves out: only the weighed parts' columns are read and widened from float16,
        the costly step of a re-rank or a brute-force scan."""
        if wide is None and self._wide is not None and len(self._wide) == self._n:
            wide = self._wide  # a small library's float32 copy: nothing to widen
        if wide is None and self._vecs.dtype == np.float16 and "app.kernels" in sys.modules:
            return self._compiled_sq_distances(q, rows, w)
        src = self._vecs if wide is None else wide
        sq = self._sq[rows]
        out = np.zeros((len(sq), N_PARTS), np.float32)
        for c in np.flatnonzero(w).tolist():
            sl = part_slice(c)
            qc = q[sl]
            cross = np.asarray(src[rows, sl]).astype(np.float32, copy=False) @ qc  # no copy when ``wide``
            out[:, c] = np.maximum(float(qc @ qc) + sq[:, c] - 2.0 * cross, 0.0)
        return out

    def _compiled_sq_distances(self, q: np.ndarray, rows: np.ndarray | slice, w: np.ndarray) -> np.ndarray:
        """What :meth:`_weighed_sq_distances` gives, from the float16 rows through
        :func:`app.kernels.part_sq_distances` (a third of the time). Used once the compiled loops
        are loaded (a window's :meth:`prepare_search`, or a scan of the part codes): a command
        would spend more importing them than they save."""
        ck = kernels()
        rows = np.arange(rows.start or 0, rows.stop) if isinstance(rows, slice) else \
            np.ascontiguousarray(rows, np.int64)
        out = np.zeros((len(rows), N_PARTS), np.float32)
        ck.part_sq_distances(self._vecs.view(np.uint16), ck.WIDEN, rows,
                             np.ascontiguousarray(q, np.float32), self._sq, np.flatnonzero(w).astype(np.int64), out)
        return out

    def _candidates(self, q: np.ndarray, w: np.ndarray, k: int, scales: np.ndarray,
                    own: int, memo: _Memo) -> tuple[np.ndarray, np.ndarray] | None:
        """Rows to answer from and their exact match, or None when brute force is the answer.

        Each positively weighted part's HNSW index lists its kk nearest rows; their union, plus
        the tail, is scored exactly (one gather and matrix product; negative weights only
        re-rank). In raw units (sum_c w_c s_c) a row in no list scores at most UB =
        sum_{w_c > 0} w_c exp(-d_c(kk) / scale_c) + sum_{w_c < 0} w_c exp(-D_c / scale_c), with
        d_c(kk) the end of part c's list and D_c the largest distance in part c among the
        candidates (a heuristic for the parts we want different; without it, 0, the bound is
        exact up to HNSW's own recall). While the k-th best is below UB, kk doubles; past
        ``max_candidates``, or where the beam would cost more than scanning every row, brute
        force takes over. With negative weights LB is only a guess, so once queries of that
        kind have taught where to start, the lists double at most ``negative_growth`` times and
        the best candidates are the answer.

        kk starts where recent queries of the same kind (same positive parts, negatives or
        not) could have stopped: each answered query works out from its sorted lists the
        smallest kk at which its bound held, and the next one starts at a high quantile of
        those, so most queries take one HNSW pass per part instead of a growing series.

        ``own``: the query's own row when the query is a library track (see :meth:`_own_row`).
        A list that lacks it came from a search that lost its way (HNSW on clustered data can
        end in the wrong cluster, and then every row of the answer is wrong): the lists are
        asked again with a 4x wider beam, and when that fails too, brute force answers.

        ``memo``: what earlier searches with the same query vector found (:class:`_Memo`): a
        list at least as long and wide is cut to kk rather than asked again, and the exact
        distances known are not computed again.
        """
        p = self.params
        tail = self._n_indexed + np.flatnonzero(self._alive[self._n_indexed:self._n])
        n_live_indexed = len(self._pos) - len(tail)  # every live track has one live row (not a sum over them)
        kk0 = min(max(p.candidates, 10 * k), n_live_indexed)
        if kk0 <= 0:
            return None
        which = np.flatnonzero(w > 0).tolist()
        wp = w[which]
        negs = np.flatnonzero(w < 0)
        # one beam slot costs about hnsw_cost rows of a brute-force scan
        afford = int(n_live_indexed / (p.hnsw_cost * len(which)))
        limit = min(n_live_indexed, max(p.max_candidates, kk0), max(afford, 0))
        if kk0 > limit:
            return None
        if self._codes is not None and int((w != 0).sum()) >= 2:
            return self._coded_candidates(q, w, k, scales, memo, tail, n_live_indexed)
        if len(negs) and -float(w[negs].sum()) >= p.negative_dominance * float(w[w > 0].sum()):
            return None
        key = (tuple(which), bool(len(negs)))
        kk, grown, widen = min(self._start_kk(key, kk0), limit), 0, 1
        while True:
            try:
                labels, dists = zip(*(self._part_list(memo, q, c, kk, widen) for c in which), strict=True)
            except RuntimeError as e:  # too many deleted neighbours to return kk
                log.debug("HNSW query fell back to exact search (%s)", e)
                return None
            if own >= 0 and not all((lab == own).any() for lab in labels):
                if widen > 1:
                    log.debug("HNSW lost its way twice for one query: exact search")
                    return None
                widen = 4
                continue
            rows = np.unique(np.concatenate([*labels, tail]))
            rows = rows[self._alive[rows]]
            if len(rows) < k:
                return None
            pd = self._rows_part_distances(memo, q, rows, w)  # (m, 5)
            raw = similarity(pd, scales) @ w
            kth = float(-np.partition(-raw, k - 1)[k - 1])
            ends = np.stack(dists)  # (lists, kk) rising distances
            # (kk,) falling: the bound had the lists stopped there
            bound_by_kk = wp @ np.exp(-ends / scales[which][:, None])
            if len(negs):
                dmax = pd[:, negs].max(axis=0)
                bound_by_kk = bound_by_kk + float(w[negs] @ np.exp(-dmax / scales[negs]))
            if kk >= n_live_indexed or kth >= float(bound_by_kk[-1]):
                need = int(np.searchsorted(-bound_by_kk, -kth)) + 1  # where the bound first held
                self._learn_kk(key, min(max(kk0, need + need // 4), kk))
                return rows, match_from_raw(raw, w)
            if len(negs) and grown >= p.negative_growth and self._kk_seen.get(key):
                # the bound is a guess here: keep the best of a generous list rather than
                # paying for a scan (bench/query.py measures what this costs in recall)
                return rows, match_from_raw(raw, w)
            if kk >= limit:
                return None
            kk, grown = min(kk * 2, limit), grown + 1

    def _part_list(self, memo: _Memo, q: np.ndarray, c: int, kk: int, widen: int) -> tuple[np.ndarray, np.ndarray]:
        """Part c's kk nearest rows and their graph distances, from the memo when it holds a list
        at least as long and wide (RuntimeError when HNSW cannot return kk)."""
        got = memo.lists.get(c)
        if got is None or got[0] < kk or got[1] < widen:
            h = self._hnsw[c]
            h.set_ef(max(self.params.ef_search, kk) * widen)
            lab, dist = h.knn_query(self._proj[c](q[None, part_slice(c)]), k=kk, num_threads=1)
            got = memo.lists[c] = (kk, widen, lab[0].astype(np.int64), dist[0].astype(np.float32))
        return got[2][:kk], got[3][:kk]

    def _coded_candidates(self, q: np.ndarray, w: np.ndarray, k: int, scales: np.ndarray, memo: _Memo,
                          tail: np.ndarray, n_live: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Rows to answer a focus on several parts from, and their exact match: the part codes'
        scan of every indexed row (:class:`app.codes.PartCodes`), its best rows scored again on
        their projected parts, the best of those and the tail scored exactly. One pass, no
        bound: ``bench/query.py`` measures its recall against brute force."""
        p, codes = self.params, self._codes
        rows = memo.coded.get(w.tobytes())
        if rows is None:
            zq = codes.query_parts(q)
            if len(self._scratch) < codes.n:
                self._scratch = np.empty(int(codes.n * 1.25) + 1024, np.float32)
            scan = max(p.codes_scan, int(p.codes_scan_share * codes.n), 10 * k)
            rows = codes.scan(zq, w, scales, scan + (codes.n - n_live), self._scratch)
            rows = rows[self._alive[rows]]
            rows = memo.coded[w.tobytes()] = codes.refine(rows, zq, w, scales, max(p.codes_refine, 10 * k))
        rows = np.union1d(rows, tail[self._alive[tail]])
        if len(rows) < k:
            return None
        pd = self._rows_part_distances(memo, q, rows, w)
        return rows, match_from_raw(similarity(pd, scales) @ w, w)

    # ------------------------------------------------------------ persistence
    def save(self, folder: str | os.PathLike, meta: dict) -> None:
        """Write the arrays and HNSW files to a new generation folder, then switch CURRENT."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        gen = folder / f"gen-{time.time_ns()}"
        gen.mkdir()
        try:
            with self._lock:
                n = self._n
                codes_doc = None
                np.save(gen / "vectors.npy", self._vecs[:n])
                np.save(gen / "sq.npy", self._sq[:n])
                np.save(gen / "ids.npy", self._ids[:n])
                np.save(gen / "revs.npy", self._revs[:n])
                np.save(gen / "alive.npy", self._alive[:n])
                if 0 < n <= WIDE_ROWS:  # float16 widened: the same numbers, read without work
                    np.save(gen / "wide.npy", self._vecs[:n].astype(np.float32))
                if self._hnsw is not None:
                    for which, h in enumerate(self._hnsw):
                        h.save_index(str(gen / f"hnsw-{which}.bin"))
                        np.save(gen / f"proj-{which}.npy", self._proj[which].to_array())
                    if self._codes is not None:
                        codes_doc = self._codes.save(gen)
                doc = {"format": INDEX_FORMAT, "rows": n, "n_indexed": self._n_indexed if self._hnsw else 0,
                       "graph_dims": [pr.dim for pr in self._proj] if self._hnsw else [],
                       "codes": codes_doc,
                       "live": len(self._pos), "params": asdict(self.params),
                       # measured once by the writer, so a reading command does not (60 ms at 10k)
                       "scales": self.scales().tolist(), "scales_n": self._scales_n, **meta}
            (gen / "meta.json").write_text(json.dumps(doc, indent=1))
            tmp = folder / "CURRENT.tmp"
            tmp.write_text(gen.name)
            os.replace(tmp, folder / "CURRENT")
        except BaseException:
            import shutil

            shutil.rmtree(gen, ignore_errors=True)
            raise
        import shutil  # here: its import (bz2, lzma) costs a reading command ~5 ms

        for old in folder.glob("gen-*"):
            if old.name != gen.name:
                shutil.rmtree(old, ignore_errors=True)

    @staticmethod
    def saved_meta(folder: str | os.PathLike) -> dict | None:
        """The saved index's meta.json (its model, rows, graphs) without reading the index, or
        None when there is none or it cannot be read."""
        folder = Path(folder)
        try:
            gen = folder / (folder / "CURRENT").read_text().strip()
            doc = json.loads((gen / "meta.json").read_text())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    @classmethod
    def load(cls, folder: str | os.PathLike, params: IndexParams | None = None,
             graphs: bool = True, graphs_above: int = 0) -> tuple[VectorIndex, dict] | None:
        """The saved index and its meta, or None when absent or damaged (then rebuild).
        ``graphs=False``, or an index of at most ``graphs_above`` rows, leaves the HNSW graphs
        on disk: every search is then exact."""
        folder = Path(folder)
        cur = folder / "CURRENT"
        if not cur.is_file():
            return None
        gen = folder / cur.read_text().strip()
        try:
            doc = json.loads((gen / "meta.json").read_text())
            if doc.get("format") not in (1, INDEX_FORMAT):
                return None
            self = cls(params)
            if doc["format"] == 1:  # float32 vectors: quantised now, saved as format 2 on the next save
                vecs = np.load(gen / "vectors.npy").astype(VEC_DTYPE)
                sq = _sq_norms(vecs)
            else:  # read where they lie: a query touches only the rows it re-ranks
                # a plain (read-only) view of the map: indexing skips np.memmap's Python layer
                vecs = np.asarray(np.load(gen / "vectors.npy", mmap_mode="r"))
                sq = np.load(gen / "sq.npy")
                if vecs.dtype != VEC_DTYPE or sq.shape != (len(vecs), N_PARTS):
                    raise ValueError("vectors.npy and sq.npy do not match")
            ids = np.load(gen / "ids.npy")
            revs = np.load(gen / "revs.npy")
            alive = np.load(gen / "alive.npy")
            n = int(doc["rows"])
            if not (vecs.shape == (n, EMBED_DIM) and ids.shape == revs.shape == alive.shape == (n,)):
                raise ValueError("array shapes do not match meta.json")
            self._vecs, self._ids, self._revs, self._alive = vecs, ids, revs, alive.astype(bool)
            self._sq = sq
            if doc["format"] != 1 and 0 < n <= WIDE_ROWS:
                self._wide = _load_wide(gen / "wide.npy", vecs)
            if len(doc.get("scales", ())) == N_PARTS:
                self._scales = np.asarray(doc["scales"], np.float32)
                self._scales_n = int(doc["scales_n"])
            self._n = n
            live = np.flatnonzero(self._alive)
            self._pos = RowMap(ids[live], live)
            n_idx = int(doc.get("n_indexed", 0))
            if n_idx and graphs and n > graphs_above:
                hs, proj = [], []
                for which in range(N_PARTS):  # an older index's 640-d hnsw-5.bin is not read
                    pf = gen / f"proj-{which}.npy"  # absent in older indices: graphs of all 128
                    proj.append(Projection.from_array(np.load(pf)) if pf.is_file() else Projection.identity())
                    if proj[-1].dim != doc.get("graph_dims", [SUBSPACE_DIM] * N_PARTS)[which]:
                        raise ValueError(f"{pf.name} does not match the graph it projects for")
                    h = _hnswlib().Index(space="l2", dim=proj[-1].dim)
                    h.load_index(str(gen / f"hnsw-{which}.bin"), max_elements=max(n_idx, n) + 1024,
                                 allow_replace_deleted=False)
                    h.set_ef(self.params.ef_search)
                    hs.append(h)
                self._hnsw, self._proj, self._n_indexed = hs, proj, n_idx
                # absent in older indices (which had a several-parts graph): maintain() adds them
                if doc.get("codes"):
                    self._codes = PartCodes.load(gen, doc["codes"], Projection)
                    if self._codes.n != n_idx:
                        raise ValueError("the part codes do not cover the indexed rows")
            return self, doc
        except (OSError, ValueError, KeyError, RuntimeError, json.JSONDecodeError) as e:
            log.warning("%s: search index unreadable (%s); it will be rebuilt", gen, e)
            return None
