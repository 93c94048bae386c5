"""The real window on a real (small, generated) library, offscreen."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from app.library import Library
from app.playback import PLAYING, Backend, Player
from app.ui.main_window import MainWindow
from app.ui.models import BARS_ROLE
from model.parts import PARTS
from tests.app.ui.conftest import KINDS, write_music

TIMEOUT = 20000


def open_window(qtbot, library, settings) -> MainWindow:
    w = MainWindow(library, settings, map_method="pca")
    qtbot.addWidget(w)
    w.resize(1200, 800)
    w.show()
    qtbot.waitUntil(lambda: w.snapshot is not None, timeout=TIMEOUT)
    return w


def close_window(w: MainWindow) -> None:
    w.close()
    assert w._closing


def click_row(qtbot, view, row: int, double: bool = False) -> None:
    idx = view.model().index(row, 1)
    view.scrollTo(idx)
    pos = view.visualRect(idx).center()
    if double:
        qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    else:
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=pos)


def test_select_track_move_fader_results_and_map_follow(qtbot, library, settings):
    w = open_window(qtbot, library, settings)
    assert w.tracks_model.rowCount() == len(KINDS)
    qtbot.waitUntil(lambda: w.map_view.space == "all", timeout=TIMEOUT)

    click_row(qtbot, w.tracks_view, 0)
    query = w.query
    assert isinstance(query, int)
    qtbot.waitUntil(lambda: w.results_model.rowCount() == len(KINDS) - 1, timeout=TIMEOUT)
    before = [(r.track.id, r.score) for r in w.results]
    assert query not in [i for i, _ in before]
    hl = w.map_view.highlighted()
    assert hl["query"] == [query] and sorted(hl["results"]) == sorted(i for i, _ in before)
    assert len(w.map_view.links.getData()[0]) == 2 * len(before)  # query linked to each result

    # Solo bass with the fader itself: results are re-ranked by bass alone, the map follows.
    for i, s in enumerate(w.focus_panel.sliders):
        if PARTS[i] != "bass":
            s.setValue(0)
    qtbot.waitUntil(lambda: w.results and np.allclose(
        [r.score for r in w.results], [r.similarity[1] for r in w.results], rtol=1e-3,
        atol=1e-3), timeout=TIMEOUT)
    after = [(r.track.id, r.score) for r in w.results]
    assert after != before
    qtbot.waitUntil(lambda: w.map_view.space == "bass", timeout=TIMEOUT)
    assert w.map_view.highlighted()["query"] == [query]
    assert sorted(w.map_view.highlighted()["results"]) == sorted(i for i, _ in after)
    # results are ordered by their match, best first, shown as the engine scored them
    scores = [r.score for r in w.results]
    assert scores == sorted(scores, reverse=True)
    assert w.results_model.index(0, 3).data() == f"{scores[0]:.0%}"
    assert w.results_model.index(0, 5).data().lower() == w.results[0].because == "bass"
    bars = w.results_model.index(0, w.results_model.BARS_COLUMN).data(BARS_ROLE)
    assert bars is not None and len(bars) == len(PARTS)
    close_window(w)


def test_click_result_plays_from_the_matched_segment(qtbot, library, settings):
    w = open_window(qtbot, library, settings)
    w.select_track(w.tracks_model.track(3).id)
    qtbot.waitUntil(lambda: w.results_model.rowCount() > 0, timeout=TIMEOUT)
    bar = w.player_bar
    if not bar.available:  # no PortAudio or no device: the app says so and carries on
        assert "Playback off" in bar.notice.text()
        assert not bar.play_button.isEnabled()
        click_row(qtbot, w.results_view, 0)
        assert bar.track is not None and bar.track.id == w.results[0].track.id
        close_window(w)
        return
    # what the real output stream (ALSA's null device under the tests) pulls: each chunk's
    # first frame and its samples, copied inside the audio callback
    player, served = bar.player, []
    real_callback = player._callback

    def spy(out, frames, t, status):
        at = player._pos
        real_callback(out, frames, t, status)
        served.append((at, out[:, 0].copy()))

    player._callback = spy
    states: list[str] = []
    bar.stateChanged.connect(states.append)
    row = max(range(len(w.results)), key=lambda i: w.results[i].match_start)
    hit = w.results[row]
    assert hit.match_start > 0  # a match later in the track, so "from the start" would fail
    with qtbot.waitSignal(bar.stateChanged, check_params_cb=lambda s: s == PLAYING, timeout=TIMEOUT):
        click_row(qtbot, w.results_view, row)
    assert bar.track.id == hit.track.id and player.audio.path == hit.track.path
    qtbot.waitUntil(lambda: len(served) >= 2, timeout=TIMEOUT)
    rate, samples = player._rate, player._samples[:, 0]
    first, chunk = served[0]
    assert first == int(hit.match_start * rate)  # playback began at the matched segment
    np.testing.assert_array_equal(chunk[:len(samples) - first], samples[first:first + len(chunk)])
    assert served[1][0] == first + len(chunk)  # and went on from there
    assert w.map_view.highlighted()["selected"] == [hit.track.id]
    # a point on the map plays too, and the space bar toggles
    states.clear()
    w.map_view.trackClicked.emit(w.results[0].track.id)
    qtbot.waitUntil(lambda: PLAYING in states and bar.track.id == w.results[0].track.id,
                    timeout=TIMEOUT)
    states.clear()
    qtbot.keyClick(w, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: bool(states), timeout=TIMEOUT)
    close_window(w)


def test_scan_a_folder_with_a_corrupt_file_lists_it_as_failed(qtbot, built_library, tmp_path, settings):
    _, weights, _ = built_library
    music = tmp_path / "music"
    write_music(music, corrupt=True)
    with Library(tmp_path / "lib", weights=weights, workers=2) as lib:
        w = open_window(qtbot, lib, settings)
        assert w.tracks_model.rowCount() == 0
        assert "add a music folder" in w.status_label.text()
        w.add_folder(music)
        assert w.scanning
        qtbot.waitUntil(lambda: not w.scanning, timeout=60000)
        qtbot.waitUntil(lambda: w.tracks_model.rowCount() == len(KINDS), timeout=TIMEOUT)
        qtbot.waitUntil(lambda: w.failures_model.rowCount() == 1, timeout=TIMEOUT)
        path = w.failures_model.index(0, 0).data()
        problem = w.failures_model.index(0, 1).data()
        assert path == "music/broken.wav" and problem and str(music) not in problem
        assert w.tabs.tabText(w.tabs.indexOf(w.failures_view)) == "Failed (1)"
        assert w.folder_list.count() == 1 and w.folder_list.item(0).text() == str(music.resolve())
        assert "1 failed" in w.status_label.text()
        # removing the folder takes its tracks out of the library
        w.tabs.setCurrentIndex(1)
        w.folder_list.setCurrentRow(0)
        w.remove_button.click()
        qtbot.waitUntil(lambda: w.tracks_model.rowCount() == 0 and w.folder_list.count() == 0,
                        timeout=TIMEOUT)
        assert lib.folders() == [] and len(lib.track_vectors()[0]) == 0
        close_window(w)


def test_closing_mid_scan_leaves_a_consistent_library(qtbot, built_library, tmp_path, settings):
    _, weights, _ = built_library
    music = tmp_path / "music"
    for k in range(3):
        write_music(music / f"set{k}")
    total = 3 * len(KINDS)
    with Library(tmp_path / "lib", weights=weights, workers=2, batch_size=2) as lib:
        w = open_window(qtbot, lib, settings)
        w.add_folder(music)
        qtbot.waitUntil(lambda: w.scan_thread is not None and w.scan_thread.last is not None
                        and w.scan_thread.last.done >= 1, timeout=TIMEOUT)
        close_window(w)  # cancels and waits for the scan
        assert not w.scanning or not w.scan_thread.isRunning()
        done = len([t for t in lib.tracks() if t.status == "ok"])
    assert done < total, "the scan should have been cut short"
    with Library(tmp_path / "lib", weights=weights, workers=2) as lib:
        ids, vectors = lib.track_vectors()
        assert len(ids) == done and np.isfinite(vectors).all()
        last = list(lib.scan())[-1]
        assert last.failed == 0 and last.added + last.updated + done == total
        assert len(lib.track_vectors()[0]) == total


def test_dropping_an_outside_file_queries_by_it(qtbot, library, settings, tmp_path):
    w = open_window(qtbot, library, settings)
    outside = tmp_path / "outside"
    (path,) = write_music(outside)[:1]
    md = QMimeData()
    md.setUrls([QUrl.fromLocalFile(str(path))])
    ev = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, md, Qt.MouseButton.LeftButton,
                    Qt.KeyboardModifier.NoModifier)
    w.dropEvent(ev)
    qtbot.waitUntil(lambda: w.results_model.rowCount() == len(KINDS), timeout=TIMEOUT)
    assert w.query == path and "not in the library" in w.query_label.text()
    # the same generated piece is in the library: it comes first, a full match
    assert w.results[0].track.path.name == path.name and w.results[0].score > 0.999
    assert w.map_view.highlighted()["query"] == []
    close_window(w)


def test_warns_when_the_focused_part_is_absent(qtbot, library, settings):
    w = open_window(qtbot, library, settings)
    t = w.tracks_model.track(0)
    w.select_track(t.id)
    assert w.focus_panel.warning.isHidden()
    w.query_track = dataclasses.replace(t, presence=np.array([0.9, 0.05, 0.9, 0.9, 0.9], np.float32))
    w.focus_panel.solos[PARTS.index("drums")].click()
    assert w.focus_panel.warning.isHidden()
    w.focus_panel.solos[PARTS.index("bass")].click()
    assert not w.focus_panel.warning.isHidden() and "bass" in w.focus_panel.warning.text()
    close_window(w)


def test_filter_presets_and_settings_persist(qtbot, library, settings):
    w = open_window(qtbot, library, settings)
    qtbot.keyClicks(w.filter_edit, "BASS")
    qtbot.waitUntil(lambda: w.tracks_proxy.rowCount() == sum("bass" in k for k in KINDS))
    w.filter_edit.clear()
    qtbot.keyClicks(w.filter_edit, "a b")  # the space bar types a space here, it does not play
    assert w.filter_edit.text() == "a b"
    w.filter_edit.clear()
    qtbot.waitUntil(lambda: w.tracks_proxy.rowCount() == len(KINDS))
    # sorting keeps the selection on the same track
    w.select_track(w.tracks_model.track(2).id)
    chosen = w.query
    w.tracks_view.sortByColumn(0, Qt.SortOrder.DescendingOrder)
    titles = [w.tracks_proxy.index(r, 0).data() for r in range(w.tracks_proxy.rowCount())]
    assert titles == sorted(titles, reverse=True)
    current = w.tracks_proxy.mapToSource(w.tracks_view.currentIndex())
    assert w.tracks_model.track(current.row()).id == chosen and w.query == chosen
    w.focus_panel.presets.activated.emit(w.focus_panel.presets.findText("Groove (drums + bass)"))
    assert list(w.focus_panel.focus()) == [1, 1, 0, 0, 0]
    w.map_view.set_choice("piano")
    close_window(w)
    w2 = open_window(qtbot, library, settings)
    assert list(w2.focus_panel.focus()) == [1, 1, 0, 0, 0]
    assert w2.map_view.choice() == "piano"
    qtbot.waitUntil(lambda: w2.map_view.space == "piano", timeout=TIMEOUT)
    close_window(w2)


def test_map_hover_and_click_find_the_point_under_the_mouse(qtbot, library, settings):
    w = open_window(qtbot, library, settings)
    qtbot.waitUntil(lambda: w.map_view.space is not None, timeout=TIMEOUT)
    qtbot.wait(50)
    mv = w.map_view
    t = w.tracks_model.track(4)
    x, y = mv.position(t.id)
    scene = mv.plot.getViewBox().mapViewToScene(QPointF(x, y))
    assert mv.track_at(scene) == t.id
    # every track's point in scene pixels: the answer anywhere is the nearest one within the
    # pick radius, or nothing
    vb = mv.plot.getViewBox()
    ids = w.snapshot.ids.tolist()
    points = [vb.mapViewToScene(QPointF(*mv.position(i))) for i in ids]

    def expected(at: QPointF) -> int | None:
        d = [np.hypot(p.x() - at.x(), p.y() - at.y()) for p in points]
        k = int(np.argmin(d))
        return ids[k] if d[k] <= 7.0 else None

    probes = [scene + QPointF(dx, dy) for dx in (-40, -5, 0, 3, 40) for dy in (-40, 0, 4, 40)]
    probes += [p + QPointF(2, -2) for p in points]  # beside each point: that point
    for at in probes:
        assert mv.track_at(at) == expected(at)
    assert any(mv.track_at(at) is None for at in probes)  # far from every point: nothing
    mv._mouse_moved(scene)
    assert mv._hovered == t.id and len(mv.hover.data) == 1
    assert mv.describe(t.id).startswith(t.title)
    with qtbot.waitSignal(mv.trackClicked) as clicked:
        pos = mv.plot.mapFromScene(scene)
        qtbot.mouseClick(mv.plot.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert clicked.args == [t.id]
    close_window(w)


def test_the_gui_is_the_default_command():
    from app import cli

    assert cli.COMMANDS["gui"][0] == "app.ui.main"
    from app.ui import main as gui

    with pytest.raises(SystemExit) as e:
        gui.main(["--help"])
    assert e.value.code == 0


def test_without_an_audio_device_the_app_says_playback_is_off(qtbot, library, settings):
    off = Player(backend=Backend(None, "Playback off: no audio output device was found."))
    w = MainWindow(library, settings, map_method="pca", player=off)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.snapshot is not None, timeout=TIMEOUT)
    assert "Playback off" in w.player_bar.notice.text()
    assert not w.player_bar.play_button.isEnabled()
    w.select_track(w.tracks_model.track(2).id)
    qtbot.waitUntil(lambda: w.results_model.rowCount() > 0, timeout=TIMEOUT)
    with qtbot.waitSignal(w.player_bar.message) as msg:
        click_row(qtbot, w.results_view, 0)
    assert "no audio output device" in msg.args[0]
    qtbot.keyClick(w, Qt.Key.Key_Space)  # does nothing, raises nothing
    close_window(w)


def test_a_missing_model_is_reported_not_fatal(qtbot, tmp_path, settings):
    music = tmp_path / "music"
    write_music(music)
    with Library(tmp_path / "lib", weights=tmp_path / "nowhere.safetensors") as lib:
        w = open_window(qtbot, lib, settings)
        w.add_folder(music)
        qtbot.waitUntil(lambda: not w.scanning, timeout=TIMEOUT)
        assert "nowhere.safetensors" in w.statusBar().currentMessage()
        assert "weights not found" in w.statusBar().currentMessage()
        close_window(w)

