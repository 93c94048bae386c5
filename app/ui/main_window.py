"""The main window: library, focus faders, results, map, player, part timeline, journeys and
scan progress."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QItemSelectionModel, QModelIndex, QSettings, Qt, QThreadPool, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.focus import absent_parts
from app.library import Library, Result, ScanProgress, Track
from app.playback import PLAYING, Player
from app.projection import Projection, library_map, space_for_focus
from app.timeline import Timeline
from app.ui.delegates import PartBarsDelegate
from app.ui.focus_panel import FocusPanel
from app.ui.journey_panel import JourneyPanel
from app.ui.map_view import AUTO, MapView
from app.ui.models import FailuresModel, ResultsModel, TrackFilter, TrackTableModel
from app.ui.player_bar import PlayerBar
from app.ui.theme import PART_LABELS, fmt_time
from app.ui.timeline_view import TimelineView
from app.ui.workers import DaemonRunner, LatestOnly, Runner, ScanThread, Task
from model.audioio import is_audio_file
from model.parts import PARTS

log = logging.getLogger(__name__)

RESULTS_K = 15
RELOAD_EVERY_S = 3.0  # refresh the table this often while a scan adds tracks
FILTER_SETTLE_MS = 120  # typing in the filter box must pause this long before it applies
MAP_SETTLE_MS = 150  # a fader must rest this long before the map follows the focus
MOMENT_S = 10.0  # the M key searches from this many seconds around the play position


@dataclass
class Snapshot:
    """What the window shows of the library, loaded in the background.

    ids: (N,) ids of analysed tracks, the rows of a map; dominant: (N,) index of each track's
    most present part (its colour on the map).
    """

    tracks: list[Track]
    failures: list[tuple[Path, str]]
    folders: list[Path]
    ids: np.ndarray
    dominant: np.ndarray


def load_snapshot(library: Library) -> Snapshot:
    """Runs in a worker: everything the window needs from the library, in one go."""
    tracks = library.tracks()
    ok = [t for t in tracks if t.status == "ok"]
    failures = [(t.path, t.error or "unknown error") for t in tracks if t.status == "failed"]
    failures += [(p.path, p.message) for p in library.scan_problems]
    ids, _ = library.track_vectors()  # the map's rows; the vectors stay with the engine
    presence = {t.id: t.presence for t in ok}
    dominant = np.array([int(np.argmax(presence[i])) if i in presence else 0 for i in ids.tolist()],
                        dtype=np.int64)
    if library.index is not None:
        library.index.prepare_search()
    return Snapshot(ok, failures, library.folders(), ids, dominant)


def _table(model, delegate_column: int | None = None) -> QTableView:
    view = QTableView()
    view.setModel(model)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    view.setAlternatingRowColors(True)
    view.setWordWrap(False)
    view.verticalHeader().hide()
    view.verticalHeader().setDefaultSectionSize(24)
    view.horizontalHeader().setHighlightSections(False)
    view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    if delegate_column is not None:
        view.setItemDelegateForColumn(delegate_column, PartBarsDelegate(view))
    return view


class MainWindow(QMainWindow):
    """The Partwise window over one open :class:`Library` (the caller owns and closes it).

    ``map_method="pca"`` skips UMAP (tests); ``player`` replaces the default audio player.
    """

    def __init__(self, library: Library, settings: QSettings | None = None,
                 map_method: str = "umap", player: Player | None = None):
        super().__init__()
        self.library = library
        self.settings = settings or QSettings("Partwise", "Partwise")
        self.map_method = map_method
        self.snapshot: Snapshot | None = None
        self.query: int | Path | None = None
        self.query_track: Track | None = None
        self.results: list[Result] = []
        self.moment: tuple[float, float] | None = None  # search from this stretch of the query
        self.selected: int | None = None
        self.maps: dict[str, Projection] = {}  # final maps of the current snapshot
        self.map_space: str | None = None  # the map the window wants on screen
        self._map_jobs: set[str] = set()  # maps being computed
        self._provisional_maps = False  # quick maps made during a scan, to redo after it
        self._map_cancel = threading.Event()
        self.scan_thread: ScanThread | None = None
        self._last_reload = 0.0
        self._loading = False
        self._reload_again = False
        self._search_started = 0.0
        self.last_search_ms = 0.0
        self._closing = False

        # Pools: general (snapshot, decoding) and searches (one at a time); maps are computed
        # one at a time on a daemon thread (a UMAP fit cannot be interrupted; closing never
        # waits for it).
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(2)
        self.search_pool = QThreadPool(self)
        self.search_pool.setMaxThreadCount(1)
        self.runner = Runner(self.pool, self)
        self.search_runner = LatestOnly(Runner(self.search_pool, self), self)
        self.search_runner.done.connect(self._searched)
        self.search_runner.failed.connect(self._search_failed)
        self.map_runner = DaemonRunner("partwise-map", self)

        self.setWindowTitle(f"Partwise — {library.root.name}")
        self.setAcceptDrops(True)
        self._map_timer = QTimer(self)
        self._map_timer.setSingleShot(True)
        self._map_timer.setInterval(MAP_SETTLE_MS)
        self._map_timer.timeout.connect(self.update_map)
        self._build(player)
        self._restore()
        QShortcut(QKeySequence(Qt.Key.Key_Space), self, self.player_bar.toggle)
        QShortcut(QKeySequence(Qt.Key.Key_M), self, self.search_playing_moment)
        self.reload()

    # ---------------------------------------------------------------- layout
    def _build(self, player: Player | None) -> None:
        """The window from its panels: library tabs and results (left), focus and map (right),
        the player bar below, scan progress in the status bar, and the menu."""
        self.tabs = QTabWidget()
        self.tabs.addTab(self._library_page(), "Library")
        self.tabs.addTab(self._folders_page(), "Folders")
        self.tabs.addTab(self._failures_page(), "Failed")
        results_box = self._results_panel()
        self.focus_panel = FocusPanel()
        self.focus_panel.focusChanged.connect(self._focus_changed)
        self.map_view = MapView(describe=self._describe)
        self.map_view.trackClicked.connect(self._map_clicked)
        self.map_view.spaceChanged.connect(lambda _s: self.update_map())

        self.left = QSplitter(Qt.Orientation.Vertical)
        self.left.addWidget(self.tabs)
        self.left.addWidget(results_box)
        self.left.setSizes([420, 360])
        self.right = QSplitter(Qt.Orientation.Vertical)
        self.right.addWidget(self.focus_panel)
        self.right.addWidget(self.map_view)
        self.right.setSizes([250, 530])
        self.split = QSplitter(Qt.Orientation.Horizontal)
        self.split.addWidget(self.left)
        self.split.addWidget(self.right)
        self.split.setSizes([640, 560])

        self.player_bar = PlayerBar(self.runner, player)
        self.player_bar.message.connect(lambda m: self.statusBar().showMessage(m, 8000))
        self.player_bar.positionChanged.connect(self._play_position)
        self.player_bar.stateChanged.connect(self._play_state)
        self.journey_panel = JourneyPanel(self.library, self.runner, self.player_bar)
        self.journey_panel.message.connect(lambda m: self.statusBar().showMessage(m, 8000))
        self.journey_panel.from_result_button.clicked.connect(self._journey_to_selected)
        self.tabs.insertTab(1, self.journey_panel, "Journey")
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(6, 6, 6, 0)
        lay.addWidget(self.split, 1)
        lay.addWidget(self.player_bar)
        lay.addWidget(self._timeline_panel())
        self.setCentralWidget(central)

        self._status_panel()
        self._menu()

    def _library_page(self) -> QWidget:
        self.tracks_model = TrackTableModel(self)
        self.tracks_proxy = TrackFilter(self)
        self.tracks_proxy.setSourceModel(self.tracks_model)
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter by title, artist, album or part…")
        self.filter_edit.setClearButtonEnabled(True)
        self._filter_timer = QTimer(self)  # filter once typing pauses (100k rows take a moment)
        self._filter_timer.setSingleShot(True)
        self._filter_timer.setInterval(FILTER_SETTLE_MS)
        self._filter_timer.timeout.connect(lambda: self.tracks_proxy.set_text(self.filter_edit.text()))
        self.filter_edit.textChanged.connect(lambda _t: self._filter_timer.start())
        self.tracks_view = _table(self.tracks_proxy, TrackTableModel.PARTS_COLUMN)
        self.tracks_view.setObjectName("library_table")
        self.tracks_view.setSortingEnabled(True)
        self.tracks_view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        hh = self.tracks_view.horizontalHeader()
        hh.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for col, width in enumerate((220, 140, 140, 64, 62)):
            hh.resizeSection(col, width)
        hh.setStretchLastSection(False)
        hh.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.tracks_view.selectionModel().currentRowChanged.connect(self._track_selected)
        self.tracks_view.doubleClicked.connect(self._track_double_clicked)
        lib_page = QWidget()
        lay = QVBoxLayout(lib_page)
        lay.setContentsMargins(0, 4, 0, 0)
        lay.addWidget(self.filter_edit)
        lay.addWidget(self.tracks_view)
        return lib_page

    def _folders_page(self) -> QWidget:
        self.folder_list = QListWidget()
        self.folder_list.setObjectName("folder_list")
        add = QPushButton("Add folder…")
        add.clicked.connect(self.add_folder_dialog)
        self.remove_button = QPushButton("Remove folder")
        self.remove_button.clicked.connect(self.remove_selected_folder)
        rescan = QPushButton("Rescan all")
        rescan.clicked.connect(lambda: self.start_scan())
        buttons = QHBoxLayout()
        for b in (add, self.remove_button, rescan):
            buttons.addWidget(b)
        buttons.addStretch(1)
        folders_page = QWidget()
        lay = QVBoxLayout(folders_page)
        lay.addWidget(QLabel("Music folders in this library (scans are incremental: only new or "
                             "changed files are analysed)."))
        lay.addWidget(self.folder_list)
        lay.addLayout(buttons)
        return folders_page

    def _failures_page(self) -> QWidget:
        self.failures_model = FailuresModel(self)
        self.failures_view = _table(self.failures_model)
        self.failures_view.setObjectName("failures_table")
        self.failures_view.horizontalHeader().setStretchLastSection(True)
        self.failures_view.horizontalHeader().resizeSection(0, 280)
        return self.failures_view

    def _results_panel(self) -> QWidget:
        self.results_model = ResultsModel(self)
        self.results_view = _table(self.results_model, ResultsModel.BARS_COLUMN)
        self.results_view.setObjectName("results_table")
        rh = self.results_view.horizontalHeader()
        for col, width in enumerate((30, 200, 130, 70, 62, 80)):
            rh.resizeSection(col, width)
        rh.setStretchLastSection(True)
        self.results_view.clicked.connect(self._result_clicked)
        self.results_view.activated.connect(self._result_clicked)
        self.query_label = QLabel("Pick a track (or drop an audio file here) to find similar music.")
        self.query_label.setObjectName("query_label")
        self.query_label.setWordWrap(True)
        self.query_label.linkActivated.connect(lambda _link: self.search_whole_track())
        results_box = QWidget()
        lay = QVBoxLayout(results_box)
        lay.setContentsMargins(0, 4, 0, 0)
        lay.addWidget(self.query_label)
        lay.addWidget(self.results_view)
        return results_box

    def _timeline_panel(self) -> QWidget:
        self.timeline_view = TimelineView()
        self.timeline_view.seekRequested.connect(self._timeline_seek)
        self.timeline_view.stretchSelected.connect(self._timeline_stretch)
        self.timeline_label = QLabel()
        self.timeline_label.setObjectName("timeline_label")
        self.timeline_track: Track | None = None
        self._timeline_request = 0
        box = QWidget()
        lay = QVBoxLayout(box)
        lay.setContentsMargins(6, 0, 6, 2)
        lay.setSpacing(0)
        lay.addWidget(self.timeline_label)
        lay.addWidget(self.timeline_view)
        self._timeline_caption()
        return box

    def _status_panel(self) -> None:
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setTextVisible(True)
        self.progress.hide()
        self.cancel_button = QPushButton("Cancel scan")
        self.cancel_button.clicked.connect(self.cancel_scan)
        self.cancel_button.hide()
        self.status_label = QLabel()
        self.status_label.setObjectName("status_label")
        self.statusBar().addPermanentWidget(self.status_label)
        self.statusBar().addPermanentWidget(self.progress)
        self.statusBar().addPermanentWidget(self.cancel_button)

    def _menu(self) -> None:
        menu = self.menuBar().addMenu("&Library")
        for text, slot, key in (("&Add folder…", self.add_folder_dialog, "Ctrl+O"),
                                ("&Rescan", lambda: self.start_scan(), "F5"),
                                ("&Cancel scan", self.cancel_scan, None)):
            act = QAction(text, self)
            act.triggered.connect(slot)
            if key:
                act.setShortcut(QKeySequence(key))
            menu.addAction(act)
        menu.addSeparator()
        quit_act = QAction("&Quit", self)
        quit_act.setShortcut(QKeySequence.StandardKey.Quit)
        quit_act.triggered.connect(self.close)
        menu.addAction(quit_act)

    # ------------------------------------------------------------- settings
    def _restore(self) -> None:
        s = self.settings
        if (geo := s.value("window/geometry")) is not None:
            self.restoreGeometry(geo)
        else:
            self.resize(1280, 820)
        for key, splitter in (("split", self.split), ("left", self.left), ("right", self.right)):
            if (state := s.value(f"window/{key}")) is not None:
                splitter.restoreState(state)
        focus = s.value("focus/weights")
        if focus:
            try:
                self.focus_panel.set_focus([float(v) for v in focus], emit=False)
            except (TypeError, ValueError):
                log.warning("ignoring a malformed saved focus: %r", focus)
        self.map_view.set_choice(str(s.value("map/space", AUTO)))

    def save_settings(self) -> None:
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/split", self.split.saveState())
        s.setValue("window/left", self.left.saveState())
        s.setValue("window/right", self.right.saveState())
        s.setValue("focus/weights", [f"{w:g}" for w in self.focus_panel.focus()])
        s.setValue("map/space", self.map_view.choice())
        s.sync()

    # -------------------------------------------------------------- library
    def reload(self) -> None:
        """Reload tracks, failures, folders and vectors in the background."""
        if self._loading:
            self._reload_again = True
            return
        self._loading = True
        self._last_reload = time.monotonic()
        self.runner.start(Task(load_snapshot, self.library), on_done=self._loaded,
                          on_failed=self._load_failed)

    def _loaded(self, snap: Snapshot) -> None:
        self._loading = False
        if self._closing:
            return
        changed = (self.snapshot is None or len(snap.ids) != len(self.snapshot.ids)
                   or not np.array_equal(snap.ids, self.snapshot.ids))
        self.snapshot = snap
        current = self.query if isinstance(self.query, int) else None
        self.tracks_model.set_tracks(snap.tracks)
        self.failures_model.set_failures(snap.failures, snap.folders)
        self.journey_panel.set_tracks(snap.tracks)
        self.tabs.setTabText(self.tabs.indexOf(self.failures_view), f"Failed ({len(snap.failures)})" if snap.failures else "Failed")
        self.folder_list.clear()
        self.folder_list.addItems([str(f) for f in snap.folders])
        self._update_status()
        if current is not None:
            if self.tracks_model.row_of(current) is None:
                self.set_query(None)
            else:
                self._select_in_table(current)
        if changed or (self._provisional_maps and not self.scanning):
            self._forget_maps()
            self.update_map()
        if self._reload_again:
            self._reload_again = False
            self.reload()

    def _load_failed(self, message: str) -> None:
        self._loading = False
        self.statusBar().showMessage(f"Could not read the library: {message}")

    def _update_status(self) -> None:
        snap = self.snapshot
        if snap is None:
            return
        n = len(snap.tracks)
        if n == 0 and not snap.folders:
            text = "Empty library: add a music folder (Library ▸ Add folder…)"
        else:
            text = f"{n} tracks" + (f", {len(snap.failures)} failed" if snap.failures else "")
        self.status_label.setText(text)

    def add_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a music folder")
        if folder:
            self.add_folder(Path(folder))

    def add_folder(self, folder: Path) -> None:
        """Register ``folder`` and scan it."""
        try:
            self.library.add_folder(folder)
        except Exception as e:
            self.statusBar().showMessage(str(e), 10000)
            return
        self.start_scan([folder])

    def remove_selected_folder(self) -> None:
        item = self.folder_list.currentItem()
        if item is None:
            self.statusBar().showMessage("Pick a folder in the list first", 5000)
            return
        if self.scan_thread is not None:
            self.statusBar().showMessage("Wait for the scan to finish (or cancel it) first", 5000)
            return
        folder = Path(item.text())
        self.runner.start(Task(self.library.remove_folder, folder),
                          on_done=lambda _r: (self.statusBar().showMessage(f"Removed {folder}", 5000),
                                              self.reload()),
                          on_failed=lambda m: self.statusBar().showMessage(m, 10000))

    # ------------------------------------------------------------------ scan
    def start_scan(self, folders: list[Path] | None = None) -> None:
        """Scan ``folders`` (default: all registered) in a background thread."""
        if self.scan_thread is not None:
            self.statusBar().showMessage("A scan is already running", 5000)
            return
        t = ScanThread(self.library, folders, self)
        t.progress.connect(self._scan_progress)
        t.finished.connect(self._scan_finished)
        self.scan_thread = t
        self.progress.setRange(0, 0)
        self.progress.show()
        self.cancel_button.show()
        self.statusBar().showMessage("Looking for audio files…")
        t.start()

    def cancel_scan(self) -> None:
        if self.scan_thread is not None:
            self.scan_thread.cancel()
            self.statusBar().showMessage("Cancelling the scan: finishing the tracks in hand…")

    def _scan_progress(self, p: ScanProgress) -> None:
        self.progress.setRange(0, max(p.total, 1))
        self.progress.setValue(p.done)
        self.progress.setFormat(f"{p.done}/{p.total}")
        name = p.current.name if p.current else "…"
        self.statusBar().showMessage(
            f"Scanning {name} · {p.added} added, {p.updated} updated, {p.removed} removed, "
            f"{p.failed} failed")
        n = len(self.snapshot.tracks) if self.snapshot is not None else 0
        if time.monotonic() - self._last_reload > RELOAD_EVERY_S * (1 + n / 10_000):
            self.reload()  # less often for large libraries: a reload costs more there

    def _scan_finished(self) -> None:
        t, self.scan_thread = self.scan_thread, None
        self.progress.hide()
        self.cancel_button.hide()
        if t is not None:
            p = t.last
            cancelled = t.cancel_event.is_set()
            if t.error is not None:
                self.statusBar().showMessage(f"Scan stopped: {t.error}", 30000)
            elif p is not None:
                self.statusBar().showMessage(
                    f"Scan {'cancelled' if cancelled else 'done'}: {p.added} added, {p.updated} "
                    f"updated, {p.removed} removed, {p.failed} failed", 15000)
            t.deleteLater()
        if not self._closing:
            self.reload()

    @property
    def scanning(self) -> bool:
        return self.scan_thread is not None

    # ---------------------------------------------------------------- query
    def set_query(self, query: int | Path | None) -> None:
        """Search around a library track id or an audio file (None clears)."""
        self.query = query
        self.query_track = None
        self.moment = None
        if isinstance(query, Path):
            self.query_track = self.library.find(query)
            if self.query_track is not None and self.query_track.status == "ok":
                self.query = self.query_track.id
        elif query is not None:
            self.query_track = self.tracks_model.by_id(query)
        in_library = self.query_track is not None and isinstance(self.query, int)
        self.journey_panel.set_start(self.query_track if in_library else None)
        if query is None:
            self.query_label.setText("Pick a track (or drop an audio file here) to find similar music.")
            self.results = []
            self.results_model.set_results([])
            self._highlight()
            self._update_marks()
            return
        if in_library:
            self.show_timeline(self.query_track)
        else:
            self.timeline_track = None  # a file outside the library has no stored windows
            self.timeline_view.clear("No part timeline for a file outside the library")
            self._timeline_caption()
        if self.query_track is not None:
            self._describe_query()
        else:
            self.query_label.setText(f"Like the file <b>{Path(query).name}</b> (not in the library; "
                                     "analysing it…)")
        self._warn_absent()
        self.search()

    def _describe_query(self) -> None:
        t = self.query_track
        name = f"<b>{t.title or t.path.stem}</b> — {t.artist or 'unknown artist'}"
        if self.moment is None:
            self.query_label.setText(f"Like {name}")
            return
        t0, t1 = self.moment
        tl = self.timeline_view.timeline if self.timeline_view.track_id == t.id else None
        n = None if tl is None else int(((tl.starts < t1) & (tl.ends > t0)).sum()) or 1
        used = ("its analysed windows there" if n is None
                else f"its {n} analysed window{'s' if n > 1 else ''} there")
        self.query_label.setText(
            f"Moment search: like {fmt_time(t0)}–{fmt_time(t1)} of {name} (only {used}) · "
            "<a href='whole'>search with the whole track</a>")

    def search(self) -> None:
        if self.query is None:
            return
        focus = self.focus_panel.focus()
        self._search_started = time.perf_counter()
        self.search_runner.request((self.query, tuple(focus), self.moment), self.library.search,
                                   self.query, focus, RESULTS_K, self.moment)

    def search_moment(self, track_id: int, t0: float, t1: float) -> None:
        """Search with only the windows of ``[t0, t1]`` (seconds) of track ``track_id``, under
        the current focus; the track becomes the query."""
        if track_id != self.query:
            self.select_track(track_id)
        self.moment = (float(t0), float(t1))
        if self.timeline_view.track_id == track_id:
            self.timeline_view.set_selection(self.moment)
        self._describe_query()
        self.search()

    def search_whole_track(self) -> None:
        """Back from a moment search to the whole query track."""
        if self.moment is None:
            return
        self.moment = None
        self.timeline_view.set_selection(None)
        if self.query_track is not None:
            self._describe_query()
        self.search()

    def search_playing_moment(self) -> None:
        """The M key: search from the MOMENT_S seconds around the play position."""
        bar = self.player_bar
        if bar.track is None or bar.player.audio is None or bar.track.status != "ok":
            self.statusBar().showMessage("Play a library track first: M searches from the moment "
                                         "you hear", 5000)
            return
        dur, pos = bar.player.duration, bar.player.position
        t0 = max(0.0, min(pos - MOMENT_S / 2, dur - MOMENT_S))
        self.search_moment(bar.track.id, t0, min(dur, t0 + MOMENT_S))

    def _searched(self, tag: tuple, results: list[Result]) -> None:
        query, focus, at = tag
        if query != self.query or at != self.moment or self._closing:
            return
        self.last_search_ms = (time.perf_counter() - self._search_started) * 1000
        self.results = results
        self.results_model.set_results(results)
        if isinstance(query, Path) and self.query_track is None:
            self.query_label.setText(f"Like the file <b>{query.name}</b> (not in the library)")
        self._highlight()
        self._update_marks()

    def _search_failed(self, tag: tuple, message: str) -> None:
        if tag[0] == self.query and tag[2] == self.moment:
            self.results = []
            self.results_model.set_results([])
            self.query_label.setText(f"Could not search: {message}")
            self._highlight()

    def _focus_changed(self, _focus: np.ndarray) -> None:
        self._warn_absent()
        self.search()
        if self.map_view.choice() == AUTO:
            self._map_timer.start()  # switch maps once the fader rests, results go first

    def _warn_absent(self) -> None:
        t = self.query_track
        focus = self.focus_panel.focus()
        if t is None or self.query is None:
            self.focus_panel.set_warning("")
            return
        absent = absent_parts(focus, t.presence)
        if not absent:
            self.focus_panel.set_warning("")
            return
        names = ", ".join(f"{PART_LABELS[p].lower()} ({t.presence[PARTS.index(p)]:.0%})" for p in absent)
        self.focus_panel.set_warning(
            f"⚠ Hardly any {names} in “{t.title or t.path.stem}”: matches on "
            f"{'that part' if len(absent) == 1 else 'those parts'} mean little.")

    def _track_selected(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not current.isValid():
            return
        row = self.tracks_proxy.mapToSource(current).row()
        track = self.tracks_model.track(row)
        self.selected = track.id
        if track.id != self.query:
            self.set_query(track.id)

    def _select_in_table(self, track_id: int) -> None:
        row = self.tracks_model.row_of(track_id)
        if row is None:
            return
        idx = self.tracks_proxy.mapFromSource(self.tracks_model.index(row, 0))
        if idx.isValid():
            sm = self.tracks_view.selectionModel()
            sm.blockSignals(True)
            sm.setCurrentIndex(idx, QItemSelectionModel.SelectionFlag.ClearAndSelect
                               | QItemSelectionModel.SelectionFlag.Rows)
            sm.blockSignals(False)
            self.tracks_view.scrollTo(idx)

    def select_track(self, track_id: int) -> None:
        """Make ``track_id`` the selected track and the query (as a click in the table does)."""
        self._select_in_table(track_id)
        self.selected = track_id
        self.set_query(track_id)

    # --------------------------------------------------------------- playing
    def _result_clicked(self, index: QModelIndex) -> None:
        if not index.isValid():
            return
        r = self.results_model.result(index.row())
        self.selected = r.track.id
        self._highlight()
        self._update_marks()
        self.player_bar.play_track(r.track, r.match_start)

    def _track_double_clicked(self, index: QModelIndex) -> None:
        row = self.tracks_proxy.mapToSource(index).row()
        self.player_bar.play_track(self.tracks_model.track(row), 0.0)

    def _map_clicked(self, track_id: int) -> None:
        track = self.tracks_model.by_id(track_id)
        if track is None:
            return
        start = 0.0
        for r in self.results:
            if r.track.id == track_id:
                start = r.match_start
        if track_id == self.query and self.results:
            start = self.results[0].query_start
        self.selected = track_id
        self._highlight()
        self._update_marks()
        self.player_bar.play_track(track, start)

    def _describe(self, track_id: int) -> str:
        t = self.tracks_model.by_id(track_id)
        if t is None:
            return f"track {track_id}"
        return f"{t.title or t.path.stem}\n{t.artist or 'unknown artist'}"

    # -------------------------------------------------------------- timeline
    def show_timeline(self, track: Track) -> None:
        """Show ``track``'s part timeline under the player (loaded in the background)."""
        if self.timeline_track is not None and self.timeline_track.id == track.id:
            return
        self.timeline_track = track
        self._timeline_request += 1
        req = self._timeline_request
        self.timeline_view.clear("Loading the timeline…")
        self._timeline_caption()
        self.runner.start(Task(self.library.timeline, track.id),
                          on_done=lambda tl: self._timeline_loaded(req, track, tl),
                          on_failed=lambda m: self._timeline_failed(req, m))

    def _timeline_loaded(self, req: int, track: Track, tl: Timeline) -> None:
        if req != self._timeline_request or self._closing:
            return
        self.timeline_view.set_timeline(track.id, track.duration, tl)
        if track.id == self.query and self.moment is not None:
            self.timeline_view.set_selection(self.moment)
        self._update_marks()
        if self.player_bar.track is not None and self.player_bar.track.id == track.id:
            self.timeline_view.set_position(self.player_bar.player.position)

    def _timeline_failed(self, req: int, message: str) -> None:
        if req == self._timeline_request:
            self.timeline_view.clear(f"No timeline: {message}")

    def _timeline_caption(self) -> None:
        t = self.timeline_track
        if t is None:
            self.timeline_label.setText("<small>Part timeline</small>")
            return
        self.timeline_label.setText(
            f"<small>Part timeline of <b>{t.title or t.path.stem}</b> · click: play from there · "
            f"drag: search from that stretch · M: search from the {MOMENT_S:g} s you hear · "
            "hatched: not analysed</small>")

    def _update_marks(self) -> None:
        """Outline the windows of the timeline's track that matched the current query: the query
        track's window behind the picked (or best) result, or a result's matched window."""
        tid = self.timeline_view.track_id
        win = self.library.policy.window
        marks: list[tuple[float, float]] = []
        if tid is not None and self.results:
            if tid == self.query:
                picked = [r for r in self.results if r.track.id == self.selected] or self.results[:1]
                marks = [(picked[0].query_start, picked[0].query_start + win)]
            else:
                marks = [(r.match_start, r.match_start + win) for r in self.results if r.track.id == tid]
        self.timeline_view.set_marks(marks)

    def _timeline_seek(self, seconds: float) -> None:
        track = self.timeline_track
        if track is None:
            return
        bar = self.player_bar
        if bar.is_loaded(track.id):
            bar.seek_to(seconds)
            if bar.player.state != PLAYING:
                bar.toggle()
        else:
            bar.play_track(track, seconds)

    def _timeline_stretch(self, t0: float, t1: float) -> None:
        if self.timeline_track is not None and self.timeline_track.status == "ok":
            self.search_moment(self.timeline_track.id, t0, t1)

    def _play_position(self, seconds: float) -> None:
        t = self.player_bar.track
        if t is not None and t.id == self.timeline_view.track_id:
            self.timeline_view.set_position(seconds)

    def _play_state(self, state: str) -> None:
        t = self.player_bar.track
        if state == PLAYING and t is not None and t.status == "ok":
            self.show_timeline(t)

    def _journey_to_selected(self) -> None:
        if self.selected is None or self.selected == self.query:
            self.statusBar().showMessage("Click a result (or a point on the map) first: it becomes B", 5000)
            return
        self.journey_panel.set_end(self.selected)

    # ------------------------------------------------------------------- map
    def wanted_space(self) -> str:
        choice = self.map_view.choice()
        return space_for_focus(self.focus_panel.focus()) if choice == AUTO else choice

    def update_map(self) -> None:
        """Show the map that fits the focus; compute it in the background the first time."""
        snap = self.snapshot
        if snap is None or self._closing:
            return
        if len(snap.ids) == 0:
            self.map_view.clear("The map appears once tracks are analysed")
            return
        space = self.wanted_space()
        if space == self.map_space:
            return
        self.map_space = space
        shown = self.map_view.show_space(space)
        if space in self.maps or space in self._map_jobs:
            if not shown:
                self.map_view.caption.setText("Computing this map…")
            return
        self._map_jobs.add(space)
        cancel = self._map_cancel
        # While a scan keeps changing the library, quick linear maps only; UMAP once it is done.
        method = "pca" if self.scanning else self.map_method
        self._provisional_maps |= method != self.map_method
        task = Task(library_map, self.library, space, cancel, method, stream=True)
        self.map_runner.start(task, on_item=lambda p: self._map_stage(p, cancel),
                              on_failed=lambda m: self._map_failed(space, m))

    def _forget_maps(self) -> None:
        """The library changed: stop map work and drop every map."""
        self._map_cancel.set()
        self._map_cancel = threading.Event()
        self._map_jobs.clear()
        self._provisional_maps = False
        self.maps.clear()
        self.map_space = None
        self.map_view.clear()

    def _map_stage(self, proj: Projection, cancel: threading.Event) -> None:
        if cancel.is_set() or self._closing or self.snapshot is None:
            return
        if not np.array_equal(proj.ids, self.snapshot.ids):
            return  # made for an older snapshot
        self.map_view.set_projection(proj, self.snapshot.dominant)
        if proj.final:
            self.maps[proj.space] = proj
            self._map_jobs.discard(proj.space)
        if proj.space == self.map_space and self.map_view.space != proj.space:
            self.map_view.show_space(proj.space)

    def _map_failed(self, space: str, message: str) -> None:
        self._map_jobs.discard(space)
        if space == self.map_space:
            self.map_view.caption.setText(f"No map: {message}")

    def _highlight(self) -> None:
        query = self.query if isinstance(self.query, int) else None
        self.map_view.set_highlight(query, [r.track.id for r in self.results], self.selected)

    # --------------------------------------------------------------- drop
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self._dropped_file(event) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        path = self._dropped_file(event)
        if path is not None:
            event.acceptProposedAction()
            self._clear_table_selection()
            self.set_query(path)

    def _clear_table_selection(self) -> None:
        sm = self.tracks_view.selectionModel()
        sm.blockSignals(True)
        sm.clearSelection()
        sm.setCurrentIndex(QModelIndex(), QItemSelectionModel.SelectionFlag.NoUpdate)
        sm.blockSignals(False)

    @staticmethod
    def _dropped_file(event) -> Path | None:
        md = event.mimeData()
        if not md.hasUrls():
            return None
        for url in md.urls():
            if url.isLocalFile() and is_audio_file(url.toLocalFile()):
                return Path(url.toLocalFile())
        return None

    # ------------------------------------------------------------- closing
    def shutdown(self) -> None:
        """Stop every worker so the library can be closed: cancel the scan and wait for it
        (what it finished is stored; the rest is picked up by the next scan)."""
        if self._closing:
            return
        self._closing = True
        self._map_timer.stop()
        self._map_cancel.set()
        if self.scan_thread is not None:
            self.statusBar().showMessage("Stopping the scan…")
            self.scan_thread.cancel()
            self.scan_thread.wait()
        self.player_bar.close_player()
        self.search_pool.waitForDone()
        self.pool.waitForDone()
        self.save_settings()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        event.accept()

