"""A track's parts along its time, and queries cut from a moment of it.

The scan keeps each analysed window's 640-d vector and its start (seconds). Along the track:

- :func:`part_timeline`: how present each part is in each window, by the same rule as the part
  bars (:func:`model.parts.presence` with the model's biases);
- :func:`moment`: the windows that overlap a stretch ``[t0, t1]`` of the track, and the query they
  make (their mean vector, as a whole track's vector is the mean of all its windows);
- :func:`parse_span`: ``"1:10-1:25"`` / ``"70-85"`` -> seconds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from model.parts import EMBED_DIM, presence


@dataclass(frozen=True)
class Timeline:
    """starts, ends: (K,) seconds of each analysed window; presence: (K, 5) in [0, 1]."""

    starts: np.ndarray
    ends: np.ndarray
    presence: np.ndarray


def part_timeline(segments: np.ndarray, starts: np.ndarray, window: float,
                  norm_bias: Sequence[float] | None) -> Timeline:
    """Per-window presence of each part, windows in time order."""
    segs = np.asarray(segments, np.float32).reshape(-1, EMBED_DIM)
    st = np.asarray(starts, np.float32).reshape(-1)
    if len(segs) != len(st):
        raise ValueError(f"{len(segs)} window vectors but {len(st)} window starts")
    order = np.argsort(st, kind="stable")
    return Timeline(st[order], st[order] + np.float32(window), presence(segs[order], norm_bias))


@dataclass(frozen=True)
class Moment:
    """The windows of a stretch of a track: their rows in the stored order, and the query."""

    rows: np.ndarray
    vector: np.ndarray  # (640,) mean of the windows' vectors
    segments: np.ndarray  # (k, 640)
    starts: np.ndarray  # (k,) seconds


def moment(segments: np.ndarray, starts: np.ndarray, window: float, t0: float, t1: float) -> Moment:
    """The analysed windows that overlap ``[t0, t1]`` (seconds). When none overlaps (the span
    falls between two analysed windows), the window nearest its middle. ValueError for an empty
    or reversed span, or one that starts after the track's last window ends."""
    segs = np.asarray(segments, np.float32).reshape(-1, EMBED_DIM)
    st = np.asarray(starts, np.float64).reshape(-1)
    if not len(st):
        raise ValueError("the track has no analysed windows")
    if not t1 > t0:
        raise ValueError(f"the span {format_time(t0)}-{format_time(t1)} is empty")
    if t0 >= st.max() + window or t1 <= 0:
        raise ValueError(f"the span {format_time(t0)}-{format_time(t1)} lies outside the analysed "
                         f"audio (0:00-{format_time(st.max() + window)})")
    rows = np.flatnonzero((st < t1) & (st + window > t0))
    if not len(rows):
        rows = np.array([int(np.argmin(np.abs(st + window / 2 - (t0 + t1) / 2)))])
    return Moment(rows, segs[rows].mean(axis=0), segs[rows], st[rows].astype(np.float32))


_TIME = r"(?:(\d+):)?(\d+(?:\.\d+)?)"


def parse_time(text: str) -> float:
    """"1:10" -> 70.0, "85" -> 85.0, "1:05.5" -> 65.5; ValueError otherwise."""
    m = re.fullmatch(_TIME, text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a time: use seconds (85) or minutes:seconds (1:25)")
    minutes, seconds = m.groups()
    if minutes is not None and float(seconds) >= 60:
        raise ValueError(f"{text!r}: seconds must be under 60 after the minutes")
    return 60.0 * int(minutes or 0) + float(seconds)


def parse_span(text: str) -> tuple[float, float]:
    """"1:10-1:25" -> (70.0, 85.0); ValueError naming the problem."""
    parts = text.split("-")
    if len(parts) != 2:
        raise ValueError(f"{text!r} is not a span: use START-END, e.g. 1:10-1:25")
    t0, t1 = parse_time(parts[0]), parse_time(parts[1])
    if not t1 > t0:
        raise ValueError(f"{text!r}: the end must come after the start")
    return t0, t1


def format_time(s: float) -> str:
    s = max(0.0, float(s))
    return f"{int(s) // 60}:{int(s) % 60:02d}"
