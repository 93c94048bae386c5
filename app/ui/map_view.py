"""The map: every track as a point in 2-D (UMAP of the focused space), query and results on top.

Each map (whole mix, or one part) is a :class:`_Layer`: the library's points as arrays in an
item that stays in the scene, so switching maps when the focus moves is a visibility toggle.
The points (each track coloured by its most present part) are drawn as pyqtgraph draws a
scatter item per colour, but once, into an image that a pan moves (:class:`_PointCloud`): at
100k tracks drawing them takes tens of milliseconds, more than a frame. A small scatter item
and a line item on top show the query, its results, the selection and the links from the query
to its results, so the user sees where the 2-D layout tears real neighbours apart. Hover and
click look points up in a k-d tree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from pyqtgraph.graphicsItems.ScatterPlotItem import renderSymbol
from pyqtgraph.Qt import internals
from PySide6.QtCore import QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPixmap, QTransform
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


@dataclass(frozen=True)
class _Drawn:
    """Points drawn into ``image``: it covers ``rect`` (device pixels) under the item-to-device
    transform of scale ``key`` (x, y, device pixel ratio) and translation (dx, dy)."""

    image: QImage
    key: tuple[float, float, float]
    rect: QRect
    dx: float
    dy: float


class _PointCloud(pg.GraphicsObject):
    """A map's library points, drawn once into an image that covers the view and a margin of
    one view around it; a pan moves that image, and only a zoom, a resize or new points draw
    the points again. A new map, or each frame while the zoom changes, draws the view alone (as
    much work as drawing the points straight); the margin is drawn by the first pan that needs
    it, never in the background: a map of 100k points takes some 30 ms to draw with its margin,
    which would otherwise hold up whatever the window does next (a fader move's results).

    Each point is a disc of ``size`` pixels in its part's colour (``colour`` (N,) indexes
    ``brushes``), drawn colour after colour in row order, with the symbol and fragment drawing
    of pyqtgraph's :class:`ScatterPlotItem`, so the map looks as one scatter item per colour.
    """

    MARGIN = 1.0  # views of margin kept drawn on each side
    MAX_SIDE = 4096  # device pixels

    def __init__(self, brushes: Sequence, size: int = 6):
        super().__init__()
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption)
        self.brushes, self.size = list(brushes), size
        self.xy = np.zeros((0, 2))
        self.groups: list[np.ndarray] = []  # rows of each colour, drawn in this order
        self._bounds = QRectF()
        self._sprites: dict[float, list[QPixmap]] = {}  # by device pixel ratio
        self._frags = internals.PrimitiveArray(QPainter.PixmapFragment, 10)
        self._cache: _Drawn | None = None
        self.draws = 0  # how often the points were drawn (tests, benchmarks)

    def set(self, xy: np.ndarray, colour: np.ndarray) -> None:
        """xy (N, 2) positions; colour (N,) index of each point's brush."""
        self.prepareGeometryChange()
        self.xy = np.asarray(xy, np.float64).reshape(-1, 2)
        self.groups = [np.flatnonzero(colour == k) for k in range(len(self.brushes))]
        if len(self.xy):
            lo, hi = self.xy.min(axis=0), self.xy.max(axis=0)
            self._bounds = QRectF(lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1])
        else:
            self._bounds = QRectF()
        self.forget()

    def forget(self) -> None:
        """Drop the drawn image (it is drawn again when next shown)."""
        self._cache = None
        self.update()

    def viewTransformChanged(self) -> None:
        self.prepareGeometryChange()  # the padding below is in pixels
        super().viewTransformChanged()

    def boundingRect(self) -> QRectF:
        px, py = self.pixelVectors()
        pad = self.size  # a disc reaches size/2 pixels past its centre; keep a margin
        dx = 0.0 if px is None else px.length() * pad
        dy = 0.0 if py is None else py.length() * pad
        return self._bounds.adjusted(-dx, -dy, dx, dy)

    def itemChange(self, change, value):
        if change == QGraphicsItem.GraphicsItemChange.ItemVisibleHasChanged and not value:
            self._cache = None  # a hidden map keeps no image
        return super().itemChange(change, value)

    def paint(self, p: QPainter, option, widget=None) -> None:
        if not len(self.xy):
            return
        t = p.transform()
        if t.m12() or t.m21():  # never in a map; draw straight, without the image
            self._draw(p, t, None)
            return
        dpr = p.device().devicePixelRatioF()
        key = (t.m11(), t.m22(), dpr)
        need = t.mapRect(option.exposedRect).toAlignedRect()
        if need.isEmpty():
            return
        c = self._cache
        if c is None or not self._same_scale(c.key, key) or not self._placed(c, t).contains(need):
            # a new map or a new zoom: the view alone; a pan past what is drawn: with the margin
            first = c is None or not self._same_scale(c.key, key)
            self._cache = c = self._render(t, dpr, key, QRectF(need), 0.0 if first else self.MARGIN)
        at = self._placed(c, t)
        p.resetTransform()
        src = need.translated(-at.topLeft())  # in the image, whose pixels are 1/dpr wide
        p.drawImage(need.topLeft(), c.image, QRect(round(src.x() * dpr), round(src.y() * dpr),
                                               round(src.width() * dpr), round(src.height() * dpr)))

    @staticmethod
    def _same_scale(a: tuple, b: tuple) -> bool:
        """a, b: (x scale, y scale, device pixel ratio)."""
        # the same zoom (a pan recomputes the scale with rounding noise) and pixel ratio
        return a[2] == b[2] and all(abs(u - v) <= 1e-7 * abs(v) for u, v in zip(a[:2], b[:2], strict=True))

    @staticmethod
    def _placed(c: _Drawn, t: QTransform) -> QRect:
        """Where the drawn image lies in device pixels under ``t`` (whole pixels)."""
        return c.rect.translated(round(t.dx() - c.dx), round(t.dy() - c.dy))

    def _render(self, t: QTransform, dpr: float, key: tuple, need: QRectF, margin: float) -> _Drawn:
        """Draw the points into an image over the view (or ``need``) and ``margin`` views around."""
        view = self.viewRect()
        shown = t.mapRect(view) if view is not None else need
        shown = shown.united(need)
        # the margin, within MAX_SIDE device pixels a side (a full-screen map at a pixel ratio of
        # 2 would otherwise ask for hundreds of megabytes)
        side = self.MAX_SIDE / dpr
        mw = min(shown.width() * margin, max(0.0, (side - shown.width()) / 2))
        mh = min(shown.height() * margin, max(0.0, (side - shown.height()) / 2))
        area = QRectF(shown.left() - mw, shown.top() - mh, shown.width() + 2 * mw,
                      shown.height() + 2 * mh).toAlignedRect()
        image = QImage(int(area.width() * dpr), int(area.height() * dpr),
                       QImage.Format.Format_ARGB32_Premultiplied)
        image.setDevicePixelRatio(dpr)
        image.fill(Qt.GlobalColor.transparent)
        q = QPainter(image)
        try:
            self._draw(q, QTransform(t.m11(), 0, 0, t.m22(), t.dx() - area.left(), t.dy() - area.top()),
                       QRectF(0, 0, area.width(), area.height()))
        finally:
            q.end()
        return _Drawn(image, key, area, t.dx(), t.dy())

    def _draw(self, p: QPainter, t: QTransform, clip: QRectF | None) -> None:
        """Every point through ``t`` to device pixels, colour by colour (those within ``clip``)."""
        dpr = p.device().devicePixelRatioF()
        sprites = self._sprites.get(dpr)
        if sprites is None:
            pen = pg.mkPen(None)
            sprites = self._sprites[dpr] = [
                QPixmap.fromImage(renderSymbol("o", self.size, pen, b, dpr=dpr)) for b in self.brushes]
        x = self.xy[:, 0] * t.m11() + self.xy[:, 1] * t.m21() + t.dx()
        y = self.xy[:, 0] * t.m12() + self.xy[:, 1] * t.m22() + t.dy()
        p.resetTransform()
        self.draws += 1
        for rows, sprite in zip(self.groups, sprites, strict=True):
            px, py = x[rows], y[rows]
            if clip is not None:
                r = self.size
                keep = ((px > clip.left() - r) & (px < clip.right() + r)
                        & (py > clip.top() - r) & (py < clip.bottom() + r))
                px, py = px[keep], py[keep]
            if not len(px):
                continue
            self._frags.resize(len(px))
            f = self._frags.ndarray()
            f[:, 0] = px
            f[:, 1] = py
            f[:, 2:6] = (0, 0, sprite.width(), sprite.height())  # the whole sprite
            f[:, 6:10] = (1 / dpr, 1 / dpr, 0.0, 1.0)  # scale x, y, rotation, opacity
            p.drawPixmapFragments(*self._frags.drawargs(), sprite)


class _Layer:
    """One map's points (a :class:`_PointCloud`, each track in its part's colour), plus lookups
    by id and position."""

    def __init__(self, plot: pg.PlotWidget, brushes: list):
        self.plot = plot
        self.cloud = _PointCloud(brushes)
        plot.addItem(self.cloud, ignoreBounds=True)
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
        self.cloud.set(proj.xy, colour)

    def set_visible(self, on: bool) -> None:
        self.cloud.setVisible(on)

    def remove(self) -> None:
        self.plot.removeItem(self.cloud)

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
