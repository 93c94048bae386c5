from pathlib import Path

from PySide6.QtCore import Qt

from app.library import Result
from app.ui.models import (
    BARS_ROLE,
    ID_ROLE,
    SORT_ROLE,
    FailuresModel,
    ResultsModel,
    TrackFilter,
    TrackTableModel,
)
from tests.app.ui.conftest import KINDS


def test_track_model_passes_modeltester(qtmodeltester, library):
    m = TrackTableModel()
    m.set_tracks(library.tracks())
    qtmodeltester.check(m)
    assert m.rowCount() == len(KINDS) and m.columnCount() == 5
    t = m.track(0)
    assert m.index(0, 0).data() == t.title and m.index(0, 0).data(ID_ROLE) == t.id
    assert m.index(0, 3).data(SORT_ROLE) == t.duration and m.index(0, 3).data() == "0:11"
    assert m.index(0, 4).data(BARS_ROLE) == [float(v) for v in t.presence]
    assert "Bass:" in m.index(0, 4).data(Qt.ItemDataRole.ToolTipRole)
    assert m.row_of(t.id) == 0 and m.by_id(-5) is None
    proxy = TrackFilter()
    proxy.setSourceModel(m)
    qtmodeltester.check(proxy)
    proxy.set_text("CHORD")
    assert proxy.rowCount() == sum("chord" in k for k in KINDS)
    proxy.set_text("")
    proxy.sort(0, Qt.SortOrder.DescendingOrder)  # handed to the source model
    titles = [m.index(r, 0).data() for r in range(m.rowCount())]
    assert titles == sorted(titles, reverse=True)
    assert all(m.row_of(m.track(r).id) == r for r in range(m.rowCount()))
    m.sort(3, Qt.SortOrder.AscendingOrder)
    qtmodeltester.check(m)
    m.set_tracks(library.tracks())  # a reload keeps the chosen order
    assert [m.track(r).duration for r in range(m.rowCount())] == sorted(t.duration for t in library.tracks())


def test_results_and_failures_models_pass_modeltester(qtmodeltester, library):
    tracks = library.tracks()
    results = library.search(tracks[0].id, [1, 1, 1, 1, 1], k=5)
    m = ResultsModel()
    m.set_results(results)
    qtmodeltester.check(m)
    assert m.rowCount() == 5 and m.ids() == [r.track.id for r in results]
    assert m.index(0, 0).data() == 1 and len(m.index(0, m.BARS_COLUMN).data(BARS_ROLE)) == 5
    assert m.index(0, 5).data() in ("Drums", "Bass", "Piano", "Guitar", "Others")
    m.set_results([])
    assert m.rowCount() == 0
    f = FailuresModel()
    f.set_failures([("/music/a/x.mp3", "/music/a/x.mp3: not audio ('/music/a/x.mp3')"),
                    ("/elsewhere/y.wav", "empty file")], folders=[Path("/music")])
    qtmodeltester.check(f)
    assert f.index(0, 0).data() == "music/a/x.mp3" and f.index(1, 0).data() == "/elsewhere/y.wav"
    assert f.index(0, 1).data() == "not audio ('x.mp3')" and f.index(1, 1).data() == "empty file"
    assert isinstance(results[0], Result)


