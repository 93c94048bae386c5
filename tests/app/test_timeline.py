"""Part timeline values from known window vectors; moments and spans."""

import numpy as np
import pytest

from app.timeline import moment, parse_span, parse_time, part_timeline
from model.parts import EMBED_DIM, N_PARTS, part_slice


def _segments(norms: np.ndarray) -> np.ndarray:
    """(K, 5) wanted part norms -> (K, 640) vectors with exactly those part norms."""
    out = np.zeros((len(norms), EMBED_DIM), np.float32)
    for c in range(N_PARTS):
        sl = part_slice(c)
        out[:, sl.start] = norms[:, c]
    return out


def test_timeline_follows_each_windows_part_norms():
    # piano enters in the third window; drums leave in the last
    norms = np.array([[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [0, 1, 1, 0, 0]], np.float32)
    starts = np.array([9.0, 0.0, 3.0, 6.0])  # stored out of order
    segs = _segments(norms[[3, 0, 1, 2]])
    bias = [0.0] * N_PARTS  # sigmoid(log 1 + 0) = 0.5, sigmoid(log 0 + 0) ~ 0
    t = part_timeline(segs, starts, 3.0, bias)
    np.testing.assert_array_equal(t.starts, [0, 3, 6, 9])
    np.testing.assert_array_equal(t.ends, [3, 6, 9, 12])
    np.testing.assert_allclose(t.presence, 0.5 * norms, atol=1e-5)
    # with a larger bias the same norms read as more present
    t2 = part_timeline(segs, starts, 3.0, [2.0] * N_PARTS)
    assert (t2.presence[norms > 0] > 0.85).all() and (t2.presence[norms == 0] < 1e-4).all()
    with pytest.raises(ValueError, match="4 window vectors but 3 window starts"):
        part_timeline(segs, starts[:3], 3.0, bias)


def test_moment_takes_the_windows_that_overlap_the_span():
    rng = np.random.default_rng(0)
    segs = rng.normal(size=(10, EMBED_DIM)).astype(np.float32)
    starts = np.arange(10) * 6.0  # 3-s windows every 6 s (a capped scan leaves gaps)
    m = moment(segs, starts, 3.0, 13.0, 25.0)  # overlaps windows at 12, 18, 24
    assert m.rows.tolist() == [2, 3, 4]
    np.testing.assert_allclose(m.vector, segs[2:5].mean(0), rtol=1e-6)
    np.testing.assert_array_equal(m.starts, [12, 18, 24])
    gap = moment(segs, starts, 3.0, 17.0, 17.5)  # between two windows: the nearest one
    assert gap.rows.tolist() == [3]
    with pytest.raises(ValueError, match="outside the analysed audio"):
        moment(segs, starts, 3.0, 70.0, 80.0)
    with pytest.raises(ValueError, match="is empty"):
        moment(segs, starts, 3.0, 20.0, 20.0)


def test_spans_and_times():
    assert parse_span("1:10-1:25") == (70.0, 85.0)
    assert parse_span("70-85.5") == (70.0, 85.5)
    assert parse_time("2:05.5") == 125.5
    for bad in ("1:10", "1:25-1:10", "a-b", "1:75-2:00", "1-2-3"):
        with pytest.raises(ValueError):
            parse_span(bad)
