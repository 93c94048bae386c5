"""The part timeline: how present each part is along one track, window by window.

Five lanes (drums, bass, piano, guitar, others, the part bars' colours). Each analysed window is
a bar filled from the bottom to its presence; stretches the analysis skipped stay hatched, so a
gap reads as "not analysed", never as an interpolated value. On top: the windows that matched
the current query (outlined), a moment selection (shaded) and the play position (a line).

Mouse: a click asks to seek there (``seekRequested(seconds)``), a drag selects a stretch
(``stretchSelected(t0, t1)``). The widget only shows what it is given; the window decides.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QMouseEvent, QPainter, QPaintEvent, QPen, QPixmap
from PySide6.QtWidgets import QToolTip, QWidget

from app.timeline import Timeline
from app.ui.theme import PART_LABELS, PART_QCOLORS, QUERY_COLOR, fmt_time
from model.parts import N_PARTS, PARTS

LABEL_W = 58  # left margin with the part names
LANE_H = 12
LANE_GAP = 2
TOP = 4
AXIS_H = 15
DRAG_PX = 4  # a press that moves less than this is a click

GAP_BRUSH = QBrush(QColor(0, 0, 0, 40), Qt.BrushStyle.BDiagPattern)
WINDOW_BG = QColor(0, 0, 0, 22)
SELECTION = QColor(33, 118, 174, 38)
SELECTION_EDGE = QColor(33, 118, 174)


class TimelineView(QWidget):
    """Shows one :class:`app.timeline.Timeline` over a track of ``duration`` seconds."""

    seekRequested = Signal(float)
    stretchSelected = Signal(float, float)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("timeline")
        self.track_id: int | None = None
        self.timeline: Timeline | None = None
        self.duration = 0.0
        self.marks: list[tuple[float, float]] = []
        self.selection: tuple[float, float] | None = None
        self.position: float | None = None
        self.placeholder = "Pick or play a track to see where its parts play"
        self._press_x: float | None = None
        self._drag_x: float | None = None
        self._lanes: tuple[tuple, QPixmap] | None = None  # the drawn lanes and what they show
        self.setMouseTracking(True)
        self.setMinimumHeight(self.sizeHint().height())
        self.setCursor(Qt.CursorShape.IBeamCursor)

    def sizeHint(self):  # noqa: D102 (Qt)
        size = super().sizeHint()
        size.setHeight(TOP + N_PARTS * (LANE_H + LANE_GAP) + AXIS_H)
        size.setWidth(600)
        return size

    # ------------------------------------------------------------- contents
    def set_timeline(self, track_id: int, duration: float, timeline: Timeline) -> None:
        """Show ``timeline`` (windows' starts, ends, presence (K, 5)) of track ``track_id``."""
        assert timeline.presence.shape == (len(timeline.starts), N_PARTS), timeline.presence.shape
        self.track_id, self.timeline = track_id, timeline
        ends = float(timeline.ends.max()) if len(timeline.ends) else 0.0
        self.duration = max(float(duration), ends, 1e-3)
        self.marks, self.selection, self.position = [], None, None
        self.update()

    def clear(self, text: str | None = None) -> None:
        self.track_id, self.timeline, self.duration = None, None, 0.0
        self.marks, self.selection, self.position = [], None, None
        if text is not None:
            self.placeholder = text
        self.update()

    def set_marks(self, spans: Sequence[tuple[float, float]]) -> None:
        """Outline these stretches (seconds): the windows that matched the query."""
        marks = [(float(a), float(b)) for a, b in spans]
        if marks != self.marks:
            self.marks = marks
            self.update()

    def set_selection(self, span: tuple[float, float] | None) -> None:
        self.selection = None if span is None else (float(span[0]), float(span[1]))
        self.update()

    def set_position(self, seconds: float | None) -> None:
        self.position = seconds
        self.update()

    # ------------------------------------------------------------ geometry
    def plot_rect(self) -> QRectF:
        return QRectF(LABEL_W, TOP, max(1.0, self.width() - LABEL_W - 6),
                      N_PARTS * (LANE_H + LANE_GAP) - LANE_GAP)

    def lane_rect(self, part: int) -> QRectF:
        r = self.plot_rect()
        return QRectF(r.left(), r.top() + part * (LANE_H + LANE_GAP), r.width(), LANE_H)

    def x_of(self, seconds: float) -> float:
        r = self.plot_rect()
        return r.left() + r.width() * float(seconds) / self.duration if self.duration else r.left()

    def time_at(self, x: float) -> float:
        r = self.plot_rect()
        return float(np.clip((x - r.left()) / r.width(), 0.0, 1.0) * self.duration)

    def window_at(self, seconds: float) -> int | None:
        """Row of the analysed window under ``seconds``, None in a gap."""
        tl = self.timeline
        if tl is None:
            return None
        hit = np.flatnonzero((tl.starts <= seconds) & (seconds < tl.ends))
        return int(hit[0]) if len(hit) else None

    # ------------------------------------------------------------- drawing
    def _small_font(self) -> QFont:
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() - 1.5))
        return font

    def _draw_labels(self, p: QPainter) -> None:
        for c, part in enumerate(PARTS):
            lane = self.lane_rect(c)
            p.setPen(PART_QCOLORS[c].darker(130))
            p.drawText(QRectF(2, lane.top() - 2, LABEL_W - 6, LANE_H + 4),
                       Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, PART_LABELS[part])

    def paintEvent(self, _event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        if self.timeline is None:
            p.setFont(self._small_font())
            self._draw_labels(p)
            p.setPen(self.palette().placeholderText().color())
            p.drawText(self.plot_rect(), Qt.AlignmentFlag.AlignCenter, self.placeholder)
            return
        p.drawPixmap(0, 0, self._lanes_pixmap())
        self._draw_overlays(p)

    def changeEvent(self, event) -> None:
        if event.type() in (QEvent.Type.FontChange, QEvent.Type.PaletteChange, QEvent.Type.StyleChange):
            self._lanes = None  # labels, lanes and axis are drawn in the font and palette
        super().changeEvent(event)

    def _lanes_pixmap(self) -> QPixmap:
        """The labels, lanes and time axis, drawn once per timeline and size: marks and the
        play position change far more often (each fader move, each tick of playback) and are
        drawn over them."""
        dpr = self.devicePixelRatioF()
        key = (self.duration, self.width(), self.height(), dpr)
        drawn = self._lanes
        if drawn is None or drawn[0][0] is not self.timeline or drawn[0][1:] != key:
            pm = QPixmap(round(self.width() * dpr), round(self.height() * dpr))
            pm.setDevicePixelRatio(dpr)
            pm.fill(Qt.GlobalColor.transparent)
            q = QPainter(pm)
            try:
                q.setRenderHint(QPainter.RenderHint.Antialiasing, False)
                font = self._small_font()
                q.setFont(font)
                self._draw_labels(q)
                self._draw_lanes(q)
                self._draw_axis(q, font)
            finally:
                q.end()
            self._lanes = (self.timeline, *key), pm
        return self._lanes[1]

    def _draw_lanes(self, p: QPainter) -> None:
        tl = self.timeline
        p.setPen(Qt.PenStyle.NoPen)
        for c in range(N_PARTS):
            p.fillRect(self.lane_rect(c), GAP_BRUSH)  # not analysed, unless a window covers it
        for k in range(len(tl.starts)):
            x0, x1 = self.x_of(tl.starts[k]), self.x_of(min(tl.ends[k], self.duration))
            x0, x1 = round(x0), max(round(x0) + 1, round(x1) - 1)  # a 1 px seam between windows
            for c in range(N_PARTS):
                lane = self.lane_rect(c)
                cell = QRectF(x0, lane.top(), x1 - x0, lane.height())
                p.fillRect(cell, self.palette().base())
                p.fillRect(cell, WINDOW_BG)
                h = round(float(np.clip(tl.presence[k, c], 0.0, 1.0)) * lane.height())
                if h:
                    p.fillRect(QRectF(x0, lane.bottom() - h, x1 - x0, h), PART_QCOLORS[c])

    def _draw_overlays(self, p: QPainter) -> None:
        r = self.plot_rect()
        sel = self._shown_selection()
        if sel is not None:
            x0, x1 = sorted((self.x_of(sel[0]), self.x_of(sel[1])))
            p.fillRect(QRectF(x0, r.top() - 2, x1 - x0, r.height() + 4), SELECTION)
            p.fillRect(QRectF(x0, r.top() - 3, x1 - x0, 3), SELECTION_EDGE)
            p.setPen(QPen(SELECTION_EDGE, 1))
            p.drawLine(QPointF(x0, r.top() - 2), QPointF(x0, r.bottom() + 2))
            p.drawLine(QPointF(x1, r.top() - 2), QPointF(x1, r.bottom() + 2))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.setPen(QPen(QColor(QUERY_COLOR), 2))
        for a, b in self.marks:
            x0, x1 = self.x_of(a), self.x_of(min(b, self.duration))
            p.drawRect(QRectF(x0, r.top() - 1, max(2.0, x1 - x0), r.height() + 2))
        if self.position is not None:
            x = self.x_of(min(max(self.position, 0.0), self.duration))
            p.setPen(QPen(self.palette().text().color(), 2))
            p.drawLine(QPointF(x, r.top() - 2), QPointF(x, r.bottom() + 3))

    def _draw_axis(self, p: QPainter, font: QFont) -> None:
        r = self.plot_rect()
        y = r.bottom() + 2
        step = _tick_step(self.duration, r.width())
        p.setPen(self.palette().placeholderText().color())
        t = 0.0
        while t <= self.duration + 1e-6:
            x = self.x_of(t)
            p.drawLine(QPointF(x, y), QPointF(x, y + 3))
            p.drawText(QRectF(x - 30, y + 2, 60, AXIS_H - 3), Qt.AlignmentFlag.AlignCenter, fmt_time(t))
            t += step

    def _shown_selection(self) -> tuple[float, float] | None:
        if self._press_x is not None and self._drag_x is not None:
            return self.time_at(self._press_x), self.time_at(self._drag_x)
        return self.selection

    # --------------------------------------------------------------- mouse
    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self.timeline is not None:
            self._press_x, self._drag_x = event.position().x(), None

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        x = event.position().x()
        if self._press_x is not None:
            if abs(x - self._press_x) >= DRAG_PX:
                self._drag_x = x
                self.update()
            return
        if self.timeline is not None and self.plot_rect().contains(event.position()):
            QToolTip.showText(event.globalPosition().toPoint(), self.describe(self.time_at(x)), self)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton or self._press_x is None:
            return
        x0, x1 = self._press_x, event.position().x()
        self._press_x = self._drag_x = None
        if abs(x1 - x0) < DRAG_PX:
            self.seekRequested.emit(self.time_at(x1))
        else:
            t0, t1 = sorted((self.time_at(x0), self.time_at(x1)))
            self.selection = (t0, t1)
            self.stretchSelected.emit(t0, t1)
        self.update()

    def describe(self, seconds: float) -> str:
        """The tooltip at ``seconds``: the window's presence per part, or that it is a gap."""
        k = self.window_at(seconds)
        if k is None:
            return f"{fmt_time(seconds)}: not analysed (between analysed windows)"
        tl = self.timeline
        parts = ", ".join(f"{PART_LABELS[p].lower()} {tl.presence[k, c]:.0%}" for c, p in enumerate(PARTS))
        return (f"{fmt_time(tl.starts[k])}–{fmt_time(tl.ends[k])}: {parts}\n"
                "click: play from here · drag: search from this stretch")


def _tick_step(duration: float, width: float) -> float:
    """Seconds between axis labels: about one label per 70 px, on a round value."""
    want = duration * 70.0 / max(width, 1.0)
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800):
        if step >= want:
            return float(step)
    return 3600.0
