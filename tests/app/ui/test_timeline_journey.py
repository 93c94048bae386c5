"""The part timeline, search from a moment and the Journey tab, on the real window and a real
(small, generated) library, offscreen. Tracks are 7 s: windows at 0 s and 3 s, 6-7 s not analysed."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor

from app.export_cmd import m3u
from app.playback import PLAYING
from app.ui.models import BARS_ROLE
from app.ui.theme import PART_COLORS
from app.ui.timeline_view import LANE_H
from model.parts import N_PARTS, PARTS
from tests.app.ui.test_main_window import TIMEOUT, close_window, open_window


def show_track(qtbot, w, row: int = 4):
    track = w.tracks_model.track(row)
    w.select_track(track.id)
    qtbot.waitUntil(lambda: w.timeline_view.track_id == track.id, timeout=TIMEOUT)
    return track


def lane_fill(image, view, k: int, c: int) -> int:
    """Pixels of part c's colour in the column through the middle of window k, lane c."""
    tl = view.timeline
    x = round((view.x_of(tl.starts[k]) + view.x_of(tl.ends[k])) / 2)
    lane = view.lane_rect(c)
    colour = QColor(PART_COLORS[c]).rgb()
    return sum(image.pixel(x, y) == colour for y in range(int(lane.top()), int(lane.bottom()) + 1))


def test_timeline_shows_the_library_values_and_a_click_seeks(qtbot, library, settings):
    w = open_window(qtbot, library, settings)
    track = show_track(qtbot, w)
    view = w.timeline_view
    expected = library.timeline(track.id)
    np.testing.assert_array_equal(view.timeline.starts, expected.starts)
    np.testing.assert_array_equal(view.timeline.presence, expected.presence)
    assert len(expected.starts) == 2 and expected.ends.max() < track.duration  # a tail not analysed

    # what is painted: each window's lane filled to its presence, the gap left unfilled
    image = view.grab().toImage()
    for k in range(len(expected.starts)):
        for c in range(N_PARTS):
            assert abs(lane_fill(image, view, k, c) - expected.presence[k, c] * LANE_H) <= 1, (k, PARTS[c])
    gap_x = round(view.x_of((expected.ends.max() + track.duration) / 2))
    for c in range(N_PARTS):
        lane = view.lane_rect(c)
        column = [image.pixel(gap_x, y) for y in range(int(lane.top()), int(lane.bottom()) + 1)]
        assert QColor(PART_COLORS[c]).rgb() not in column
    assert "not analysed" in view.describe((expected.ends.max() + track.duration) / 2)

    bar = w.player_bar
    if not bar.available:
        pytest.skip(bar.player.reason)
    served = spy_output(bar.player)
    positions: list[float] = []
    bar.positionChanged.connect(positions.append)
    # a click plays the track from the clicked time (ALSA's null device under the tests plays
    # faster than real time: what matters is the first frame the output stream pulled)
    y = int(view.lane_rect(2).center().y())
    with qtbot.waitSignal(bar.stateChanged, check_params_cb=lambda s: s == PLAYING, timeout=TIMEOUT):
        qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=QPoint(round(view.x_of(4.0)), y))
    qtbot.waitUntil(lambda: bool(served), timeout=TIMEOUT)
    assert bar.track.id == track.id and served[0][0] == track.path
    assert abs(served[0][1] / bar.player._rate - 4.0) < 0.1
    # a second click seeks within the loaded track and plays from there (a chunk the stream
    # pulled from the old position just before the seek may come first)
    served.clear()
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=QPoint(round(view.x_of(1.5)), y))
    qtbot.waitUntil(lambda: any(abs(f / bar.player._rate - 1.5) < 0.1 for _, f in served), timeout=TIMEOUT)
    # the play position went over the strip
    assert any(abs(p - 1.5) < 0.1 for p in positions) and view.position is not None
    close_window(w)


def spy_output(player) -> list:
    """(path, first frame) of every chunk the output stream pulls, recorded in its callback."""
    served: list = []
    real = player._callback

    def spy(out, frames, t, status):
        served.append((player.audio.path if player.audio else None, player._pos))
        real(out, frames, t, status)

    player._callback = spy
    return served


def drag(qtbot, view, t0: float, t1: float) -> None:
    y = int(view.lane_rect(1).center().y())
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=QPoint(round(view.x_of(t0)), y))
    qtbot.mouseMove(view, QPoint(round(view.x_of((t0 + t1) / 2)), y))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=QPoint(round(view.x_of(t1)), y))


@pytest.mark.parametrize("span", [(0.5, 4.5), (5.5, 9.5)])  # inside the first window, the second
def test_dragging_a_stretch_searches_from_that_moment(qtbot, library, settings, span):
    w = open_window(qtbot, library, settings)
    track = show_track(qtbot, w)
    qtbot.waitUntil(lambda: len(w.results) > 0 and w.moment is None, timeout=TIMEOUT)
    view = w.timeline_view
    drag(qtbot, view, *span)
    t0, t1 = w.moment
    assert abs(t0 - span[0]) < 0.1 and abs(t1 - span[1]) < 0.1
    assert "Moment search" in w.query_label.text()
    qtbot.waitUntil(lambda: w.results_model.rowCount() > 0 and w.results_model.ids() == [
        r.track.id for r in library.search(track.id, w.focus_panel.focus(), 15, at=(t0, t1))],
        timeout=TIMEOUT)
    # only the window the stretch lies in made the query
    win = library.policy.window
    assert all(r.query_start < t1 and r.query_start + win > t0 for r in w.results), \
        [r.query_start for r in w.results]
    assert view.selection == w.moment
    # and back to the whole track
    w.query_label.linkActivated.emit("whole")
    qtbot.waitUntil(lambda: w.moment is None and w.results_model.ids() == [
        r.track.id for r in library.search(track.id, w.focus_panel.focus(), 15)], timeout=TIMEOUT)
    assert "Moment search" not in w.query_label.text() and view.selection is None
    close_window(w)


def test_journey_tab_builds_saves_and_plays_through(qtbot, library, settings, tmp_path):
    w = open_window(qtbot, library, settings)
    a = show_track(qtbot, w, row=7)  # drums+bass+chord
    panel = w.journey_panel
    w.tabs.setCurrentWidget(panel)
    b = w.tracks_model.track(2)
    lock = PARTS[int(np.argmax(a.presence))]
    assert panel.follow.currentData() == "neighbour"  # a radio follows each step by default
    panel.set_end(b.id)
    assert panel.follow.currentData() == "start"  # a journey to B keeps close to A by default
    panel.set_lock([lock])
    panel.steps.setValue(4)
    panel.follow.setCurrentIndex(panel.follow.findData("neighbour"))
    with qtbot.waitSignal(panel.built, timeout=TIMEOUT):
        qtbot.mouseClick(panel.build_button, Qt.MouseButton.LeftButton)
    expected = library.journey(a.id, b.id, steps=4, lock=(lock,), follow="neighbour")
    assert panel.plan.journey.ids == expected.ids
    assert panel.model.rowCount() == len(expected.ids) == 5
    for r, step in enumerate(expected.steps):
        assert panel.model.index(r, 5).data() == step.why
        bars = panel.model.index(r, panel.model.BARS_COLUMN).data(BARS_ROLE)
        assert (bars is None) == (r == 0)
        if r:
            np.testing.assert_allclose(bars, step.to_previous, rtol=1e-6)
        assert ("⚠" in panel.model.index(r, 0).data()) == (not step.held)

    out = tmp_path / "journey.m3u"
    panel.save_m3u(out)
    assert out.read_text(encoding="utf-8") == m3u([library.track(i) for i in expected.ids])

    # a radio (no B) from the same start
    panel.set_end(None)
    with qtbot.waitSignal(panel.built, timeout=TIMEOUT):
        panel.build()
    radio = library.journey(a.id, None, steps=4, lock=(lock,), follow="neighbour")
    assert panel.plan.journey.ids == radio.ids and len(set(radio.ids)) == len(radio.ids)

    bar = w.player_bar
    if not bar.available:
        pytest.skip(bar.player.reason)
    plan = panel.plan
    served = spy_output(bar.player)
    ended: list[int] = []
    bar.ended.connect(lambda t: ended.append(t.id))
    # the null device plays faster than real time: each track ends at once and the next follows
    qtbot.mouseClick(panel.play_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(ended) == len(plan.tracks), timeout=TIMEOUT)
    assert ended == [t.id for t in plan.tracks]
    firsts: list = []  # the first chunk pulled from each track, in order
    for path, frame in served:
        if not firsts or firsts[-1][0] != path:
            firsts.append((path, frame))
    assert [f[0] for f in firsts] == [t.path for t in plan.tracks]
    rate = bar.player._rate
    for (_path, frame), start in zip(firsts, plan.starts, strict=True):
        assert abs(frame / rate - start) < 0.05  # each from its matched window
    assert sum(plan.starts) > 0  # (not all from 0 s, or the check above would prove little)
    for t, start in zip(plan.tracks, plan.starts, strict=True):  # a start is an analysed window's
        assert start in library.timeline(t.id).starts.tolist()
    qtbot.waitUntil(lambda: panel.playing is None, timeout=TIMEOUT)  # the end of the journey
    assert panel.model.playing is None
    close_window(w)


def test_the_m_key_does_not_steal_typing_in_the_filter(qtbot, library, settings):
    w = open_window(qtbot, library, settings)
    w.filter_edit.setFocus()
    qtbot.keyClicks(w.filter_edit, "drum")
    assert w.filter_edit.text() == "drum" and w.moment is None
    close_window(w)


def test_the_timeline_draws_its_lanes_once_and_marks_over_them(qtbot):
    from PySide6.QtGui import QImage

    from app.timeline import Timeline
    from app.ui.timeline_view import TimelineView

    rng = np.random.default_rng(0)
    starts = np.arange(0, 60, 3, dtype=np.float32)
    tl = Timeline(starts, starts + 3, rng.uniform(0, 1, (len(starts), N_PARTS)).astype(np.float32))
    view = TimelineView()
    qtbot.addWidget(view)
    view.resize(500, view.sizeHint().height())
    view.show()
    view.set_timeline(7, 60.0, tl)

    def picture() -> np.ndarray:
        img = view.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
        return np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), -1).copy()

    plain = picture()
    lanes = view._lanes[1]
    view.set_marks([(6.0, 9.0)])
    view.set_position(20.0)
    marked = picture()
    assert view._lanes[1] is lanes  # the marks and the position are drawn over the same lanes
    assert (marked != plain).any()
    view.set_marks([])
    view.set_position(None)
    assert (picture() == plain).all()
    view._lanes = None  # drawn afresh: the same picture
    assert (picture() == plain).all()
    view.resize(400, view.height())
    assert view.grab().width() == 400 and view._lanes[1] is not lanes  # a new size: drawn again
