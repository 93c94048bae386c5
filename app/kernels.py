"""Compiled loops of the search, each one pass over its rows without the interpreter lock.

**The part-code scan** (:class:`app.codes.PartCodes`). numpy gathers a part's table entries
into a temporary array and adds it to the sum in a second pass, one part at a time; at a million
tracks those passes, and the pass that picks the rows over the threshold, cost more than the
lookups. :func:`select` sums every row's entries in registers and keeps the row at once when it
clears the threshold. A scan sums up to three gathers per row: ``npair`` (0-2) 16-bit codes of
two parts with their tables of 65,536 sums (``p0, t0``, ``p1, t1``), and with ``single`` one
part's 8-bit codes and table (``s, ts``). Unused gathers are passed as empty arrays.

**Exact part distances on float16 vectors** (:class:`app.index.VectorIndex`). numpy widens
float16 to float32 at about 4 ns a number on this kind of CPU, more than the products cost;
:func:`part_sq_distances` reads each float16 through a table of all 65,536 of them (the bits
as an index: exact, and the table stays in cache).

Compiled with numba (installed with umap-learn too) for fixed signatures, cached beside this
file (or in numba's user cache where that is read-only); imported only where a search needs
them (:func:`app.codes.kernels`), so commands that never do so do not pay for the import (about
half a second with the cache).
"""

from __future__ import annotations

import numpy as np
from numba import njit, types

from model.parts import N_PARTS, SUBSPACE_DIM

_FLAGS = {"nogil": True, "cache": True, "boundscheck": False, "fastmath": True}
_GATHERS = "uint16[::1], float32[::1], uint16[::1], float32[::1], uint8[::1], float32[::1], int64, int64"


# select and estimate spell out the same sum: with it in a helper (numba's inline="always" or
# not) the scan of a million rows took 34-46 ms instead of 2.7


@njit(f"int64({_GATHERS}, float32, int64, int64, int64[::1], float32[::1])", **_FLAGS)
def select(p0, t0, p1, t1, s, ts, npair, single, threshold, a, b, rows, est):  # pragma: no cover
    """Rows i in [a, b) whose estimate is at least ``threshold``, in order, into ``rows`` (and
    their estimates into ``est``); their count, or -1 when more than ``len(rows)`` clear it."""
    m = 0
    cap = rows.shape[0]
    for i in range(a, b):
        v = np.float32(0.0)
        if npair > 0:
            v += t0[p0[i]]
        if npair > 1:
            v += t1[p1[i]]
        if single:
            v += ts[s[i]]
        if v >= threshold:
            if m == cap:
                return -1
            rows[m] = i
            est[m] = v
            m += 1
    return m


@njit(f"void({_GATHERS}, int64, int64, int64, float32[::1])", **_FLAGS)
def estimate(p0, t0, p1, t1, s, ts, npair, single, a, b, step, out):  # pragma: no cover
    """out[k] = the estimate of row a + k * step, for the rows in [a, b)."""
    k = 0
    for i in range(a, b, step):
        v = np.float32(0.0)
        if npair > 0:
            v += t0[p0[i]]
        if npair > 1:
            v += t1[p1[i]]
        if single:
            v += ts[s[i]]
        out[k] = v
        k += 1



# every float16 bit pattern, widened: float16 -> float32 is one lookup
WIDEN = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
_BITS = [types.Array(types.uint16, 2, "C", readonly=ro) for ro in (False, True)]  # mapped vectors are read-only
_SQ = [types.Array(types.float32, 2, "C", readonly=ro) for ro in (False, True)]


@njit([types.void(bits, types.float32[::1], types.int64[::1], types.float32[::1], sq, types.int64[::1],
                  types.float32[:, ::1]) for bits in _BITS for sq in _SQ], **_FLAGS)
def part_sq_distances(bits, widen, rows, q, sq, parts, out):  # pragma: no cover
    """out[k, c] = max(0, |q_c|^2 + sq[rows[k], c] - 2 q_c . x_c) for each part c in ``parts``
    (out's other columns untouched), x = row rows[k] of the float16 vectors given as their bits
    (N, 640) uint16, widened through ``widen`` (:data:`WIDEN`); sq (N, 5) their squared part norms."""
    qn = np.zeros(N_PARTS, np.float32)
    for j in range(parts.shape[0]):
        base = parts[j] * SUBSPACE_DIM
        for m in range(SUBSPACE_DIM):
            qn[j] += q[base + m] * q[base + m]
    for k in range(rows.shape[0]):
        r = rows[k]
        for j in range(parts.shape[0]):
            c = parts[j]
            base = c * SUBSPACE_DIM
            dot = np.float32(0.0)
            for m in range(SUBSPACE_DIM):
                dot += widen[bits[r, base + m]] * q[base + m]
            out[k, c] = max(np.float32(0.0), qn[j] + sq[r, c] - np.float32(2.0) * dot)
