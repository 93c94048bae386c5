"""Colours and small formatting helpers shared by the widgets."""

from __future__ import annotations

from PySide6.QtGui import QColor

from model.parts import PARTS

# One colour per part, in PARTS order, readable on light and dark backgrounds.
PART_COLORS: tuple[str, ...] = ("#e4572e", "#3b8ea5", "#8e6cc4", "#f2a541", "#6a994e")
PART_QCOLORS: tuple[QColor, ...] = tuple(QColor(c) for c in PART_COLORS)
PART_LABELS: dict[str, str] = {p: p.capitalize() for p in PARTS}

QUERY_COLOR = "#d7263d"
RESULT_COLOR = "#1b998b"
SELECT_COLOR = "#222222"


def fmt_time(seconds: float) -> str:
    """3725.4 -> '1:02:05', 65 -> '1:05'."""
    s = max(0, int(round(seconds)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
