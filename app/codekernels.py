"""Compiled loops of the part-code search (:mod:`app.codes`), one pass over the codes each.

numpy gathers a part's table entries into a temporary array and adds it to the sum in a second
pass, one part at a time; at a million tracks those passes, and the pass that picks the rows over
the threshold, cost more than the lookups. These loops sum every row's entries in registers and
keep the row at once when it clears the threshold. They run without the interpreter lock, so
two threads scan half the rows each (:func:`app.codes._in_halves`).

Compiled with numba (installed with umap-learn) for fixed signatures, cached beside this file
(or in numba's user cache where that is read-only); imported only where a search scans codes,
so commands that never do so do not pay for it.

A scan sums up to three gathers per row: ``npair`` (0-2) 16-bit codes of two parts with their
tables of 65,536 sums (``p0, t0``, ``p1, t1``), and with ``single`` one part's 8-bit codes and
table (``s, ts``). Unused gathers are passed as empty arrays.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_FLAGS = {"nogil": True, "cache": True, "boundscheck": False, "fastmath": True}
_GATHERS = "uint16[::1], float32[::1], uint16[::1], float32[::1], uint8[::1], float32[::1], int64, int64"


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

