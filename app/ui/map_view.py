"""The map: every track as a point in 2-D (UMAP of the focused space), query and results on top.

Each map (whole mix, or one part) is a :class:`_Layer`: the library's points as arrays in
scatter items that stay in the scene, so switching maps when the focus moves is a visibility
toggle, not a 100k-point ``setData`` (about half a second in pyqtgraph). A layer holds one
scatter item per part colour (each track coloured by its most present part) because pyqtgraph's
per-point brush path builds a style key per point in Python, which costs more than the points
themselves. A small scatter item and a line item on top show the query, its results, the
selection and the links from the query to its results, so the user sees where the 2-D layout
tears real neighbours apart. Hover and click look points up in a k-d tree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QComboBox,
    QGraphicsItem,
    QHBoxLayout,
    QLabel,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from app.projection import MIN_UMAP, SPACES, WHOLE, Projection
from app.ui.theme import PART_COLORS, PART_LABELS, QUERY_COLOR, RESULT_COLOR, SELECT_COLOR
from model.parts import PARTS

AUTO = "auto"
STAGE_TEXT = {"pca": "quick linear preview, UMAP on its way…", "sample": "UMAP of a sample",
              "full": "UMAP", "cached": "UMAP"}


def stage_text(proj: Projection) -> str:
    """What the caption says of a map: a preview, a UMAP, or a linear map that stays one."""
    if proj.stage == "pca" and proj.final:
        few = len(proj.ids) < MIN_UMAP
        return "linear map (PCA)" + (f"; UMAP from {MIN_UMAP} tracks on" if few else "")
    return STAGE_TEXT.get(proj.stage, proj.stage)


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
        self.links = pg.PlotDataItem(pen=pg.mkPen(QUERY_COLOR, width=1.2, style=Qt.PenStyle.DashLine),
                                     connect="pairs")
        self.overlay = pg.ScatterPlotItem(pxMode=True)
        self.hover = pg.ScatterPlotItem(pxMode=True, size=12, brush=pg.mkBrush(None),
                                        pen=pg.mkPen("k", width=1.5))
        # The view is framed explicitly (on each new map); pyqtgraph's automatic ranging would
        # re-measure every point whenever the overlay moves.
        self.plot.getViewBox().disableAutoRange()
        for item in (self.links, self.overlay, self.hover):
            self.plot.addItem(item, ignoreBounds=True)
        self.links.setZValue(5)
        self.overlay.setZValue(10)
        self.hover.setZValue(11)
        scene = self.plot.scene()
        scene.sigMouseMoved.connect(self._mouse_moved)
        scene.sigMouseClicked.connect(self._mouse_clicked)
        self._hovered: int | None = None
        # reused pens and brushes: pyqtgraph caches a rendered symbol per (symbol, pen, brush)
        self._styles = {"none": pg.mkBrush(None), "result": pg.mkPen(RESULT_COLOR, width=2),
                        "selected": pg.mkPen(SELECT_COLOR, width=2),
                        "query": pg.mkBrush(QUERY_COLOR), "white": pg.mkPen("w", width=1)}

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

        self.space: str | None = None  # the map shown
        self.layers: dict[str, _Layer] = {}
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
        """Store ``proj`` as the map of its space (shown at once if that space is on screen);
        ``dominant`` (N,) is each track's most present part, which sets its colour."""
        layer = self.layers.get(proj.space)
        if layer is None:
            layer = self.layers[proj.space] = _Layer(self.plot, self._brushes)
        layer.set(proj, dominant)
        layer.set_visible(proj.space == self.space)
        if proj.space == self.space:
            self._shown_changed()

    def show_space(self, space: str) -> bool:
        """Show the stored map of ``space``; False when there is none yet."""
        if space not in self.layers:
            return False
        self.space = space
        for name, layer in self.layers.items():
            layer.set_visible(name == space)
        self._shown_changed()
        return True

    @property
    def stage(self) -> str | None:
        layer = self.layers.get(self.space) if self.space else None
        return layer.proj.stage if layer is not None else None

    def clear(self, message: str = "No map yet") -> None:
        """Forget every map (the library changed)."""
        for layer in self.layers.values():
            layer.remove()
        self.layers.clear()
        self.space = None
        self._set_hover(None)
        self.links.setData(x=[], y=[])
        self.overlay.setData(x=[], y=[])
        self.caption.setText(message)

    def set_highlight(self, query: int | None, results: Sequence[int], selected: int | None) -> None:
        self._highlight = (query, list(results), selected)
        self._draw_overlay()

    def position(self, track_id: int) -> tuple[float, float] | None:
        """Where ``track_id`` is on the map shown, if it is there."""
        layer = self.layers.get(self.space) if self.space else None
        return None if layer is None else layer.position(track_id)

    def highlighted(self) -> dict[str, list[int]]:
        """What the overlay shows now, by role (for tests and status text)."""
        spots = self.overlay.data
        out: dict[str, list[int]] = {"query": [], "results": [], "selected": []}
        for d in spots["data"] if len(spots) else []:
            role, tid = d
            out[role].append(int(tid))
        return out

    # ------------------------------------------------------------- internals
    def _shown_changed(self) -> None:
        layer = self.layers[self.space]
        proj = layer.proj
        name = "whole mix" if proj.space == WHOLE else proj.space
        self.caption.setText(f"{name}: {stage_text(proj)} · {len(proj.ids)} tracks")
        self._set_hover(None)
        self._draw_overlay()
        xy = proj.xy
        if len(xy):
            lo = xy.min(axis=0).astype(float)
            hi = np.maximum(xy.max(axis=0).astype(float), lo + 1e-6)
            self.plot.getViewBox().setRange(xRange=(lo[0], hi[0]), yRange=(lo[1], hi[1]),
                                            padding=0.05)

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

        st = self._styles
        for tid in results:
            add(tid, "results", "o", 11, st["none"], st["result"])
        add(selected, "selected", "o", 16, st["none"], st["selected"])
        add(query, "query", "star", 20, st["query"], st["white"])
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

    def track_at(self, scene_pos: QPointF, radius_px: float = 7.0) -> int | None:
        """The track whose point is nearest to ``scene_pos``, within ``radius_px`` pixels."""
        layer = self.layers.get(self.space) if self.space else None
        if layer is None or not len(layer.proj.ids):
            return None
        vb = self.plot.getViewBox()
        p = vb.mapSceneToView(scene_pos)
        px, py = vb.viewPixelSize()
        if not (px > 0 and py > 0):
            return None
        return layer.nearest(p.x(), p.y(), px, py, radius_px)

    def _set_hover(self, tid: int | None) -> None:
        self._hovered = tid
        pos = None if tid is None else self.position(tid)
        if pos is None:
            self.hover.setData(x=[], y=[])
        else:
            self.hover.setData(x=[pos[0]], y=[pos[1]])

    def _mouse_moved(self, scene_pos: QPointF) -> None:
        tid = self.track_at(scene_pos)
        if tid == self._hovered:
            return
        self._set_hover(tid)
        if tid is None:
            QToolTip.hideText()
        else:
            view = self.plot
            global_pos = view.mapToGlobal(view.mapFromScene(scene_pos))
            QToolTip.showText(global_pos, self.describe(tid), view)

    def _mouse_clicked(self, ev) -> None:
        if ev.button() != Qt.MouseButton.LeftButton or ev.double():
            return
        tid = self.track_at(ev.scenePos())
        if tid is not None:
            ev.accept()
            self.trackClicked.emit(tid)


class _Layer:
    """One map's points: a scatter item per part colour, arrays only, plus lookups by id and
    position. Items stay in the scene; panning blits a device-space cache."""

    def __init__(self, plot: pg.PlotWidget, brushes: list):
        self.plot = plot
        self.items = []
        for brush in brushes:
            item = pg.ScatterPlotItem(size=6, pen=None, brush=brush)
            item.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
            plot.addItem(item, ignoreBounds=True)
            self.items.append(item)
        self.proj: Projection | None = None
        self._sorted = np.zeros(0, np.int64)
        self._order = np.zeros(0, np.int64)
        self._tree = None
        self._scale = np.ones(2)

    def set(self, proj: Projection, dominant: np.ndarray) -> None:
        self.proj = proj
        self._order = np.argsort(proj.ids, kind="stable")
        self._sorted = proj.ids[self._order]
        self._tree = None  # built on the first hover
        colour = np.asarray(dominant, np.int64) if len(dominant) == len(proj.ids) else \
            np.zeros(len(proj.ids), np.int64)
        for k, item in enumerate(self.items):
            rows = np.flatnonzero(colour == k)
            item.setData(x=proj.xy[rows, 0], y=proj.xy[rows, 1])

    def set_visible(self, on: bool) -> None:
        for item in self.items:
            item.setVisible(on)

    def remove(self) -> None:
        for item in self.items:
            self.plot.removeItem(item)
        self.items = []

    def position(self, track_id: int) -> tuple[float, float] | None:
        i = int(np.searchsorted(self._sorted, track_id))
        if i >= len(self._sorted) or self._sorted[i] != track_id:
            return None
        r = self._order[i]
        return float(self.proj.xy[r, 0]), float(self.proj.xy[r, 1])

    def nearest(self, x: float, y: float, px: float, py: float, radius_px: float) -> int | None:
        """Nearest point to (x, y) in pixels (px, py: data units per pixel) within radius_px."""
        xy = self.proj.xy
        if self._tree is None:
            from scipy.spatial import cKDTree

            self._scale = np.maximum(xy.std(axis=0), 1e-9)
            self._tree = cKDTree(xy / self._scale)
        # every point within radius_px along both axes, then the nearest in pixels
        r = float(np.hypot(radius_px * px / self._scale[0], radius_px * py / self._scale[1]))
        rows = self._tree.query_ball_point([x / self._scale[0], y / self._scale[1]], r)
        if not rows:
            return None
        rows = np.asarray(rows)
        d = np.hypot((xy[rows, 0] - x) / px, (xy[rows, 1] - y) / py)
        best = int(np.argmin(d))
        return int(self.proj.ids[rows[best]]) if d[best] <= radius_px else None
