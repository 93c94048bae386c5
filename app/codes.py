"""Part codes: a compact copy of every indexed track that a focus on several parts scans whole.

The best tracks for a focus on several parts are moderately close in every weighed part, far
down each part's own nearest-neighbour list, so per-part lists and graphs miss them. The
match is a sum over parts of w_c exp(-d_c / scale_c) (:mod:`app.focus`), and a sum over parts is
what a product quantiser whose sub-spaces are the parts estimates in one pass. Each part is
projected on its principal axes (:class:`app.index.Projection`), divided by the square root of
its scale (z_c), and quantised to the nearest of 256 centroids: one byte per part per track.
A query builds one table per weighed part, e_c[k] = w_c exp(-||q_c - mu_ck||^2), and every
track's estimate is the sum of its parts' entries: a gather per part over one byte per track,
"different" parts (w_c < 0) included, with no linear stand-in for the match.

The estimate is coarse (a track is its centroid), so it only chooses which tracks to look at
more closely: the best ``scan`` tracks by estimate are scored again on their projected parts
(8 bits a dimension, kept beside the codes), and the best ``refine`` of those are scored exactly
on the full vectors by the index. ``bench/query.py`` measures the recall this keeps against
brute force.

Speed, as measured on two cores at a million tracks: the gathers are the cost, so two weighed
parts share one 16-bit gather from a table of their 65,536 sums; a compiled loop
(:mod:`app.kernels`) sums each track's entries and keeps the track when it clears a
threshold taken from a sample, in one pass; and in large libraries two threads scan half the
tracks each.

Rows are the index's row numbers; codes are appended as the index grows (the codebooks stay
those of the build, measured on a sample) and rebuilt when it is compacted.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from model.parts import N_PARTS, part_slice

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

CENTROIDS = 256  # per part: one byte per track
TRAIN_PER_CENTROID = 64  # k-means trains on at most this many sample rows a centroid
KMEANS_ITERATIONS = 12
CHUNK = 8192  # rows encoded at a time (bounds the float32 copies: 21 MB of rows, beside the index being built)
# exp(-FAR) is the least similarity an estimate uses: smaller ones would be subnormal floats,
# which many CPUs add far more slowly
FAR = 80.0
THREADS_ABOVE = 200_000  # rows from which two threads share a scan ...
REFINE_THREADS_ABOVE = 8000  # ... and a refinement
_NO_CODES8, _NO_CODES16, _NO_TABLE = np.zeros(0, np.uint8), np.zeros(0, np.uint16), np.zeros(0, np.float32)
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:  # imported here: a command that never scans does not pay for it
            from concurrent.futures import ThreadPoolExecutor

            _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="partwise-scan")
        return _POOL


def _in_halves(run, n: int, above: int) -> None:
    """``run(a, b)`` over [0, n): on two threads, half each, from ``above`` rows on a machine
    with more than one core; else in one call."""
    if n >= above and (os.cpu_count() or 1) > 1:
        list(_pool().map(lambda ab: run(*ab), [(0, n // 2), (n // 2, n)]))
    else:
        run(0, n)


def kernels():
    """:mod:`app.kernels`, imported (compiled, or read from numba's cache) on first use."""
    from app import kernels as compiled

    return compiled


def kmeans(x: np.ndarray, k: int, iterations: int = KMEANS_ITERATIONS, seed: int = 0) -> np.ndarray:
    """(k, d) float32 centroids of the rows of ``x`` (n, d) by Lloyd's algorithm from k random
    rows; an emptied centroid restarts at a random row. Fewer distinct rows than k: those rows."""
    x = np.asarray(x, np.float32)
    rng = np.random.default_rng(seed)
    if len(x) > k * TRAIN_PER_CENTROID:
        x = x[rng.choice(len(x), k * TRAIN_PER_CENTROID, replace=False)]
    if len(x) <= k:
        return np.ascontiguousarray(np.resize(x, (k, x.shape[1])) if len(x) else
                                    np.zeros((k, x.shape[1]), np.float32))
    cen = x[rng.choice(len(x), k, replace=False)].copy()
    for _ in range(iterations):
        a = nearest(x, cen)
        count = np.bincount(a, minlength=k)
        sums = np.zeros_like(cen)
        np.add.at(sums, a, x)
        full = count > 0
        cen[full] = sums[full] / count[full, None]
        if not full.all():
            cen[~full] = x[rng.choice(len(x), int((~full).sum()))]
    return cen


def nearest(x: np.ndarray, cen: np.ndarray) -> np.ndarray:
    """(n,) index of each row's nearest centroid."""
    cn = (cen * cen).sum(axis=1)
    out = np.empty(len(x), np.int64)
    for a in range(0, len(x), CHUNK):
        out[a:a + CHUNK] = np.argmin(cn[None, :] - 2.0 * (x[a:a + CHUNK] @ cen.T), axis=1)
    return out


class PartCodes:
    """One byte per part per row and the projected parts (8 bits a dimension) of rows
    [0, len): see the module docstring. ``projections`` are :class:`app.index.Projection`
    objects, ``scales`` the part scales the z space was divided by when it was built, ``steps``
    the quantisation step of each part's projected dimensions."""

    def __init__(self, projections: list, scales: np.ndarray, books: list[np.ndarray], steps: np.ndarray):
        self.projections = projections
        self.scales = np.asarray(scales, np.float32).reshape(N_PARTS)
        self.inv = (1.0 / np.sqrt(np.maximum(self.scales.astype(np.float64), 1e-12))).astype(np.float32)
        self.books = [np.ascontiguousarray(b, np.float32) for b in books]
        self.steps = np.asarray(steps, np.float32).reshape(N_PARTS)
        dims = [pr.dim for pr in projections]
        if any(b.shape != (CENTROIDS, d) for b, d in zip(self.books, dims, strict=True)):
            raise ValueError("codebooks do not match the projections")
        if not (np.isfinite(self.steps).all() and (self.steps > 0).all()):
            raise ValueError("bad quantisation steps of the part codes")
        self.offsets = np.concatenate([[0], np.cumsum(dims)]).astype(np.int64)
        self.step_by_dim = np.repeat(self.steps, dims).astype(np.float32)
        self.codes = np.zeros((N_PARTS, 0), np.uint8)  # (5, capacity): each part's codes contiguous
        self.z = np.zeros((0, self.dim), np.int8)  # (capacity, dim) projected, scaled parts / step
        self.zn = np.zeros((0, N_PARTS), np.float32)  # their squared norms per part (as quantised)
        self.n = 0
        self._pairs: dict[tuple[int, int], np.ndarray] = {}  # (i, j) -> 16-bit codes of two parts

    @property
    def dim(self) -> int:
        return int(self.offsets[-1])

    # ------------------------------------------------------------ building
    @classmethod
    def fit(cls, sample: np.ndarray, projections: list, scales: np.ndarray) -> PartCodes:
        """Codebooks measured on ``sample`` (m, 640) float32 rows; no rows encoded yet."""
        inv = 1.0 / np.sqrt(np.maximum(np.asarray(scales, np.float64), 1e-12))
        zs = [projections[c](sample[:, part_slice(c)]) * np.float32(inv[c]) for c in range(N_PARTS)]
        books = [kmeans(zs[c], CENTROIDS, seed=c) for c in range(N_PARTS)]
        # 8 bits a dimension: the sample's largest coordinate, with room, at 127
        steps = [max(float(np.abs(z).max(initial=0.0)), 1e-6) * 1.25 / 127.0 for z in zs]
        return cls(projections, scales, books, np.asarray(steps, np.float32))

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, 640) rows -> their codes (5, n) uint8 and projected parts (n, dim) int8."""
        codes = np.empty((N_PARTS, len(x)), np.uint8)
        z = np.empty((len(x), self.dim), np.int8)
        for a in range(0, len(x), CHUNK):
            xs = np.asarray(x[a:a + CHUNK], np.float32)
            for c in range(N_PARTS):
                zc = self.projections[c](xs[:, part_slice(c)]) * self.inv[c]
                codes[c, a:a + len(xs)] = nearest(zc, self.books[c])
                z[a:a + len(xs), self.offsets[c]:self.offsets[c + 1]] = np.clip(
                    np.rint(zc / self.steps[c]), -127, 127)
        return codes, z

    def reserve(self, capacity: int) -> None:
        """Room for ``capacity`` rows in all, allocated once (a build knows how many rows it
        encodes: growing a quarter at a time would copy the arrays again and again)."""
        if capacity <= self.codes.shape[1] and self.z.flags.writeable and self.codes.flags.writeable:
            return
        cap = max(capacity, self.n)
        c2 = np.zeros((N_PARTS, cap), np.uint8)
        c2[:, :self.n] = self.codes[:, :self.n]
        z2 = np.zeros((cap, self.dim), np.int8)
        z2[:self.n] = self.z[:self.n]
        zn2 = np.zeros((cap, N_PARTS), np.float32)
        zn2[:self.n] = self.zn[:self.n]
        self.codes, self.z, self.zn = c2, z2, zn2

    def append(self, x: np.ndarray) -> None:
        """Encode rows ``len .. len + n`` (the next rows of the index)."""
        codes, z = self.encode(x)
        need = self.n + len(x)
        if need > self.codes.shape[1] or not self.z.flags.writeable or not self.codes.flags.writeable:
            self.reserve(max(need, int(self.codes.shape[1] * 1.25) + 1024))
        self.codes[:, self.n:need] = codes
        self.z[self.n:need] = z
        self.zn[self.n:need] = self._norms(z)
        self.n = need
        self._pairs = {}

    def _norms(self, z: np.ndarray) -> np.ndarray:
        zf = z.astype(np.float32) * self.step_by_dim
        return np.stack([(zf[:, a:b] ** 2).sum(axis=1) for a, b in zip(self.offsets[:-1], self.offsets[1:],
                                                                          strict=True)], axis=1)

    # ------------------------------------------------------------ searching
    def query_parts(self, q: np.ndarray) -> list[np.ndarray]:
        """The query's projected, scaled parts z_c."""
        return [self.projections[c](q[None, part_slice(c)])[0] * self.inv[c] for c in range(N_PARTS)]

    def _pair_codes(self, i: int, j: int) -> np.ndarray:
        got = self._pairs.get((i, j))
        if got is None:
            got = self._pairs[(i, j)] = (self.codes[i, :self.n].astype(np.uint16) << 8) | self.codes[j, :self.n]
        return got

    def scan(self, zq: list[np.ndarray], w: np.ndarray, scales: np.ndarray, keep: int,
             buf: np.ndarray | None = None) -> np.ndarray:
        """About the ``keep`` rows (sorted row numbers) with the best estimate under focus ``w``;
        ``scales`` are the similarity's scales now (the z space was divided by those of the
        build). ``buf``: a float32 scratch array of at least ``len`` rows."""
        n = self.n
        if keep >= n:
            return np.arange(n)
        ck = kernels()
        gathers = self._gathers(zq, w, scales)
        # a threshold from every step-th row, then one pass that keeps the rows over it (about
        # keep of them: a quarter more cost the refinement a fifth more, at a million tracks,
        # for recall@10 of a focus on several parts 0.9995 instead of 0.998)
        step = max(1, n // 16384)
        probe = np.empty(len(range(0, n, step)), np.float32)
        ck.estimate(*gathers, 0, n, step, probe)
        at = min(len(probe) - 1, max(0, int(len(probe) * (1.0 - keep / n))))
        threshold = np.float32(np.partition(probe, at)[at])
        found: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}

        def run(a: int, b: int) -> None:
            rows, est = np.empty(2 * keep, np.int64), np.empty(2 * keep, np.float32)
            m = ck.select(*gathers, threshold, a, b, rows, est)
            found[a] = (rows[:m], est[:m]) if m >= 0 else None  # None: over 2 keep in this part

        _in_halves(run, n, THREADS_ABOVE)
        if all(got is not None for got in found.values()):
            rows = np.concatenate([found[a][0] for a in sorted(found)])
            if len(rows) > 2 * keep:  # the sample misjudged, a little: partition those rows
                est = np.concatenate([found[a][1] for a in sorted(found)])
                return np.sort(rows[np.argpartition(-est, keep - 1)[:keep]])
            if len(rows) >= keep // 2:
                return rows
        # ... or much: estimate every row
        est = buf[:n] if buf is not None and len(buf) >= n else np.empty(n, np.float32)
        _in_halves(lambda a, b: ck.estimate(*gathers, a, b, 1, est[a:b]), n, THREADS_ABOVE)
        return np.sort(np.argpartition(-est, keep - 1)[:keep])

    def _gathers(self, zq: list[np.ndarray], w: np.ndarray, scales: np.ndarray) -> tuple:
        """The arguments of :mod:`app.kernels`' scans for focus ``w``: each weighed part's
        table e_c[k] = w_c exp(-||z_q,c - mu_ck||^2 ratio_c), two parts sharing one 16-bit gather
        from the table of their 65,536 sums, and an odd part gathered alone."""
        ratio = self.scales / np.maximum(np.asarray(scales, np.float32), 1e-12)
        tables = []
        for c in np.flatnonzero(w).tolist():
            d = ((self.books[c] - zq[c]) ** 2).sum(axis=1)
            tables.append((c, (float(w[c]) * np.exp(-np.minimum(d * ratio[c], FAR))).astype(np.float32)))
        pairs = [(self._pair_codes(i, j), (ti[:, None] + tj[None, :]).ravel())
                 for (i, ti), (j, tj) in zip(tables[0:-1:2], tables[1::2], strict=True)]
        single = (self.codes[tables[-1][0], :self.n], tables[-1][1]) if len(tables) % 2 else (_NO_CODES8, _NO_TABLE)
        pairs += [(_NO_CODES16, _NO_TABLE)] * (2 - len(pairs))
        return (*pairs[0], *pairs[1], *single, len(tables) // 2, len(tables) % 2)

    def refine(self, rows: np.ndarray, zq: list[np.ndarray], w: np.ndarray, scales: np.ndarray,
               keep: int) -> np.ndarray:
        """The ``keep`` of ``rows`` whose match on the projected parts is best (sorted)."""
        if len(rows) <= keep:
            return rows
        parts = np.flatnonzero(w)
        ratio = self.scales / np.maximum(np.asarray(scales, np.float32), 1e-12)
        # per weighed part: its columns of z, and the query's part in z's steps
        spans = [(int(self.offsets[c]), int(self.offsets[c + 1])) for c in parts.tolist()]
        qs = [zq[c] * self.steps[c] for c in parts.tolist()]
        qn = np.array([float(zq[c] @ zq[c]) for c in parts.tolist()], np.float32)
        est = np.empty(len(rows), np.float32)

        first, last = spans[0][0], spans[-1][1]  # the columns from the first weighed part to the last

        def run(a: int, b: int) -> None:
            r = rows[a:b]
            # one contiguous conversion (converting each part's columns alone cost twice as much)
            zr = np.take(self.z, r, axis=0)[:, first:last].astype(np.float32)
            dot = np.empty((len(r), len(parts)), np.float32)
            for j, ((lo, hi), qc) in enumerate(zip(spans, qs, strict=True)):  # only the weighed columns
                dot[:, j] = zr[:, lo - first:hi - first] @ qc
            zn = np.take(self.zn, r, axis=0)
            d = (zn if len(parts) == N_PARTS else zn[:, parts]) + qn - 2.0 * dot
            est[a:b] = np.exp(-np.clip(d * ratio[parts], 0.0, FAR)) @ w[parts]

        _in_halves(run, len(rows), REFINE_THREADS_ABOVE)
        return np.sort(rows[np.argpartition(-est, keep - 1)[:keep]])

    # ------------------------------------------------------------ persistence
    def save(self, gen: Path) -> dict:
        """Write to ``gen``; what goes into meta.json is returned."""
        for c in range(N_PARTS):
            np.save(gen / f"code-proj-{c}.npy", self.projections[c].to_array())
            np.save(gen / f"code-book-{c}.npy", self.books[c])
        np.save(gen / "codes.npy", self.codes[:, :self.n])
        np.save(gen / "code-z.npy", self.z[:self.n])
        np.save(gen / "code-zn.npy", self.zn[:self.n])
        return {"rows": self.n, "dims": [int(b - a) for a, b in zip(self.offsets[:-1], self.offsets[1:], strict=True)],
                "scales": self.scales.tolist(), "steps": self.steps.tolist()}

    @classmethod
    def load(cls, gen: Path, doc: dict, projection_type) -> PartCodes:
        """The saved codes, or ValueError when they do not fit together. Read whole, not mapped:
        a scan touches every code and a refinement rows all over the file, and faulting those
        pages in during the first searches doubled their time (0.15 GB at a million tracks)."""
        scales = np.asarray(doc["scales"], np.float64)
        if scales.shape != (N_PARTS,) or not np.isfinite(scales).all() or (scales <= 0).any():
            raise ValueError("meta.json: bad scales of the part codes")
        projections = [projection_type.from_array(np.load(gen / f"code-proj-{c}.npy")) for c in range(N_PARTS)]
        if [pr.dim for pr in projections] != list(doc["dims"]):
            raise ValueError("code-proj-*.npy do not match the part codes")
        self = cls(projections, scales, [np.load(gen / f"code-book-{c}.npy") for c in range(N_PARTS)],
                   np.asarray(doc["steps"], np.float32))
        n = int(doc["rows"])
        codes = np.load(gen / "codes.npy")
        z = np.load(gen / "code-z.npy")
        zn = np.load(gen / "code-zn.npy")
        if codes.shape != (N_PARTS, n) or codes.dtype != np.uint8 or z.shape != (n, self.dim) \
                or z.dtype != np.int8 or zn.shape != (n, N_PARTS):
            raise ValueError("codes.npy, code-z.npy and code-zn.npy do not match meta.json")
        self.codes, self.z, self.zn, self.n = codes, z, zn, n
        return self
