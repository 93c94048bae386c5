"""The map: every track as a point in 2-D (UMAP of the focused space), query and results on top.

One :class:`pyqtgraph.ScatterPlotItem` holds the whole library (arrays, a handful of reused
brushes, track ids as ``data`` for hover and click); a second, small scatter item and a line
item on top show the query, its results, the selection and the links from the query to its
results, so the user sees where the 2-D layout tears real neighbours apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from app.projection import SPACES, WHOLE, Projection
from app.ui.theme import PART_COLORS, PART_LABELS, QUERY_COLOR, RESULT_COLOR, SELECT_COLOR
from model.parts import PARTS

AUTO = "auto"
STAGE_TEXT = {"pca": "quick linear preview, UMAP on its way…", "sample": "UMAP of a sample",
              "full": "UMAP", "cached": "UMAP"}


def _brush(color: str, alpha: int) -> pg.QtGui.QBrush:
    c = QColor(color)
    c.setAlpha(alpha)
    return pg.mkBrush(c)


class MapView(QWidget):
    """Signals: ``trackClicked(int)`` (a point was clicked), ``spaceChanged(str)`` (the user
    picked a map: ``"auto"`` or one of :data:`app.projection.SPACES`)."""

    trackClicked = Signal(int)
    spaceChanged = Signal(str)

    def __init__(self, describe: Callable[[int], str] | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.describe = describe or (lambda i: f"track {i}")
        self.space_box = QComboBox()
        self.space_box.addItem("Auto (follows the focus)", AUTO)
        for s in SPACES:
            self.space_box.addItem("Whole mix" if s == WHOLE else PART_LABELS[s], s)
        self.space_box.currentIndexChanged.connect(
            lambda _: self.spaceChanged.emit(self.space_box.currentData()))
        self.caption = QLabel("No map yet")
        self.caption.setObjectName("map_caption")
        self.caption.setStyleSheet("color: #555;")
        top = QHBoxLayout()
        top.addWidget(QLabel("<b>Map</b>"))
        top.addWidget(self.space_box)
        top.addWidget(self.caption, 1)

        pg.setConfigOptions(antialias=False)
        self.plot = pg.PlotWidget(background="w")
        self.plot.setObjectName("map_plot")
        self.plot.hideAxis("left")
        self.plot.hideAxis("bottom")
        self.plot.setAspectLocked(False)
        self.plot.setMenuEnabled(False)
        # Library points: one brush per part (the part most present in the track), reused.
        self._brushes = [_brush(c, 150) for c in PART_COLORS]
        self.points = pg.ScatterPlotItem(size=6, pen=None, hoverable=True,
                                         hoverSize=10, hoverPen=pg.mkPen("k", width=1),
                                         tip=self._tip)
        self.links = pg.PlotDataItem(pen=pg.mkPen(QUERY_COLOR, width=1.2, style=Qt.PenStyle.DashLine),
                                     connect="pairs")
        self.overlay = pg.ScatterPlotItem(pxMode=True, hoverable=True, tip=self._tip)
        for item in (self.points, self.links, self.overlay):
            self.plot.addItem(item)
        self.links.setZValue(5)
        self.overlay.setZValue(10)
        self.points.sigClicked.connect(self._clicked)
        self.overlay.sigClicked.connect(self._clicked)

        legend = QLabel("  ".join(f"<span style='color:{c}'>●</span> {PART_LABELS[p]}"
                                  for p, c in zip(PARTS, PART_COLORS, strict=True))
                        + f"  &nbsp; <span style='color:{QUERY_COLOR}'>★</span> query"
                        + f"  <span style='color:{RESULT_COLOR}'>○</span> results")
        legend.setStyleSheet("color: #444;")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(top)
        lay.addWidget(self.plot, 1)
        lay.addWidget(legend)

        self.space: str | None = None
        self._ids = np.zeros(0, np.int64)
        self._xy = np.zeros((0, 2), np.float32)
        self._row: dict[int, int] = {}
        self._highlight: tuple[int | None, list[int], int | None] = (None, [], None)

    # ------------------------------------------------------------------ API
    def choice(self) -> str:
        """``"auto"`` or a space the user picked."""
        return self.space_box.currentData()

    def set_choice(self, space: str) -> None:
        i = self.space_box.findData(space)
        if i >= 0:
            self.space_box.setCurrentIndex(i)

    def set_projection(self, proj: Projection, dominant: np.ndarray) -> None:
        """Show ``proj``; ``dominant`` (N,) is each track's most present part (colour)."""
        self.space = proj.space
        self._ids = proj.ids
        self._xy = proj.xy
        self._row = {int(i): r for r, i in enumerate(proj.ids.tolist())}
        brushes = [self._brushes[int(k)] for k in dominant] if len(dominant) else self._brushes[0]
        self.points.setData(x=proj.xy[:, 0], y=proj.xy[:, 1], data=proj.ids, brush=brushes)
        name = "whole mix" if proj.space == WHOLE else proj.space
        self.caption.setText(f"{name}: {STAGE_TEXT.get(proj.stage, proj.stage)} · {len(proj.ids)} tracks")
        self._draw_overlay()
        self.plot.autoRange(padding=0.05)  # each stage is a new layout, not a moved one

    def clear(self, message: str = "No map yet") -> None:
        self.space = None
        self._ids = np.zeros(0, np.int64)
        self._xy = np.zeros((0, 2), np.float32)
        self._row = {}
        self.points.setData(x=[], y=[])
        self.links.setData(x=[], y=[])
        self.overlay.setData(x=[], y=[])
        self.caption.setText(message)

    def set_highlight(self, query: int | None, results: Sequence[int], selected: int | None) -> None:
        self._highlight = (query, list(results), selected)
        self._draw_overlay()

    def position(self, track_id: int) -> tuple[float, float] | None:
        r = self._row.get(int(track_id))
        return None if r is None else (float(self._xy[r, 0]), float(self._xy[r, 1]))

    def highlighted(self) -> dict[str, list[int]]:
        """What the overlay shows now, by role (for tests and status text)."""
        spots = self.overlay.data
        out: dict[str, list[int]] = {"query": [], "results": [], "selected": []}
        for d in spots["data"] if len(spots) else []:
            role, tid = d
            out[role].append(int(tid))
        return out

    # ------------------------------------------------------------- internals
    def _draw_overlay(self) -> None:
        query, results, selected = self._highlight
        xs, ys, data, symbols, sizes, brushes, pens = [], [], [], [], [], [], []

        def add(tid: int | None, role: str, symbol: str, size: int, brush, pen) -> None:
            pos = None if tid is None else self.position(tid)
            if pos is None:
                return
            xs.append(pos[0])
            ys.append(pos[1])
            data.append((role, int(tid)))
            symbols.append(symbol)
            sizes.append(size)
            brushes.append(brush)
            pens.append(pen)

        ring = pg.mkPen(RESULT_COLOR, width=2)
        for tid in results:
            add(tid, "results", "o", 11, pg.mkBrush(None), ring)
        add(selected, "selected", "o", 16, pg.mkBrush(None), pg.mkPen(SELECT_COLOR, width=2))
        add(query, "query", "star", 20, pg.mkBrush(QUERY_COLOR), pg.mkPen("w", width=1))
        self.overlay.setData(x=xs, y=ys, data=data, symbol=symbols, size=sizes, brush=brushes, pen=pens)
        qpos = None if query is None else self.position(query)
        lx: list[float] = []
        ly: list[float] = []
        if qpos is not None:
            for tid in results:
                p = self.position(tid)
                if p is not None:
                    lx += [qpos[0], p[0]]
                    ly += [qpos[1], p[1]]
        self.links.setData(x=lx, y=ly)

    def _tip(self, x: float, y: float, data) -> str:
        tid = data[1] if isinstance(data, tuple) else data
        return self.describe(int(tid))

    def _clicked(self, _item, points, _ev=None) -> None:
        if len(points):
            d = points[0].data()
            self.trackClicked.emit(int(d[1] if isinstance(d, tuple) else d))
