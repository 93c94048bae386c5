"""The map draws its points as pyqtgraph's scatter items would, and pans without drawing them again."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtGui import QImage

from app.projection import Projection
from app.ui.map_view import MapView


def pixels(view: MapView) -> np.ndarray:
    """(H, W, 3) int RGB of the plot as it is drawn now."""
    img = view.plot.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
    a = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine() // 4, 4)
    return a[:, : img.width(), :3].astype(int)


def off_by_more_than_a_pixel(a: np.ndarray, b: np.ndarray) -> float:
    """Share of pixels of ``a`` that no pixel of ``b`` within one pixel matches (to 32 levels)."""
    best = None
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            d = np.abs(a - np.roll(np.roll(b, dy, 0), dx, 1)).max(axis=2)
            best = d if best is None else np.minimum(best, d)
    return float((best[2:-2, 2:-2] > 32).mean())


@pytest.fixture
def shown_map(qtbot):
    rng = np.random.default_rng(3)
    n = 3000
    xy = (rng.normal(0, 10, (12, 2))[rng.integers(0, 12, n)] + rng.normal(0, 1.5, (n, 2))).astype(np.float32)
    dominant = rng.integers(0, 5, n)
    view = MapView()
    qtbot.addWidget(view)
    view.resize(500, 400)
    view.show()
    qtbot.waitExposed(view)
    view.set_projection(Projection("all", np.arange(1, n + 1), xy, "full", True), dominant)
    view.show_space("all")
    return view, xy, dominant


def reference_items(view: MapView, xy: np.ndarray, dominant: np.ndarray) -> list:
    """The same points as one pyqtgraph ScatterPlotItem per colour, the cloud hidden."""
    view.layers["all"].cloud.setVisible(False)
    items = []
    for k, brush in enumerate(view._brushes):
        rows = np.flatnonzero(dominant == k)
        item = pg.ScatterPlotItem(x=xy[rows, 0], y=xy[rows, 1], size=6, pen=None, brush=brush)
        view.plot.addItem(item, ignoreBounds=True)
        items.append(item)
    return items


def test_the_map_looks_as_pyqtgraph_scatter_items_draw_it(shown_map):
    view, xy, dominant = shown_map
    drawn = pixels(view)
    reference_items(view, xy, dominant)
    want = pixels(view)
    assert (np.abs(drawn - want) > 8).mean() < 1e-4  # the same pixels, to rounding
    assert (want < 200).any(axis=2).mean() > 0.02  # and there are points to see


def test_a_pan_moves_the_drawn_points_and_a_zoom_draws_them_again(qtbot, shown_map):
    view, xy, dominant = shown_map
    cloud = view.layers["all"].cloud
    vb = view.plot.getViewBox()
    pixels(view)
    draws = cloud.draws
    vb.translateBy(x=2.5, y=-1.0)
    panned = pixels(view)
    assert cloud.draws == draws  # the image moved; no point was drawn again
    vb.scaleBy(s=(0.5, 0.5))
    zoomed = pixels(view)
    assert cloud.draws == draws + 1
    qtbot.wait(300)
    assert cloud.draws == draws + 1  # nothing drawn in the background
    vb.translateBy(x=-8.0)  # half a view to the left: the first pan draws the margin
    zoomed_panned = pixels(view)
    assert cloud.draws == draws + 2
    vb.translateBy(x=2.0)  # and the pans after it, within the margin, move the image
    vb.translateBy(x=-2.0)
    assert off_by_more_than_a_pixel(zoomed_panned, pixels(view)) < 0.002
    assert cloud.draws == draws + 2
    items = reference_items(view, xy, dominant)
    assert off_by_more_than_a_pixel(zoomed_panned, pixels(view)) < 0.002
    vb.translateBy(x=8.0)
    assert off_by_more_than_a_pixel(zoomed, pixels(view)) < 0.002
    vb.scaleBy(s=(2, 2))  # back to the first zoom, still panned
    assert off_by_more_than_a_pixel(panned, pixels(view)) < 0.002
    for item in items:
        view.plot.removeItem(item)


def test_a_new_map_replaces_the_drawn_points(shown_map):
    view, xy, dominant = shown_map
    cloud = view.layers["all"].cloud
    before = pixels(view)
    draws = cloud.draws
    view.set_projection(Projection("all", np.arange(1, len(xy) + 1), xy[::-1].copy(), "full", True),
                        dominant)
    after = pixels(view)
    assert cloud.draws == draws + 1
    assert (np.abs(after - before) > 32).mean() > 0.01
