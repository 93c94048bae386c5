"""The Journey tab: a part-locked path of tracks from A (to B, or a radio), built in the
background, listed with each step's reason, played through, saved as M3U.

The engine builds and explains the journey (:meth:`app.library.Library.journey`); this panel
only asks for it and shows it. Play-through plays each step from the window that matches the
previous step best in the locked parts, and moves on when a track ends.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QModelIndex, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.export_cmd import m3u
from app.journey import DEFAULT_FLOOR, Journey
from app.library import Library, Track
from app.ui.delegates import PartBarsDelegate
from app.ui.models import JourneyModel
from app.ui.player_bar import PlayerBar
from app.ui.theme import PART_COLORS, PART_LABELS
from app.ui.workers import Runner, Task
from model.parts import PARTS

log = logging.getLogger(__name__)

RADIO = -1  # the "to" choice that makes a radio
DEFAULT_STEPS = 12


@dataclass(frozen=True)
class JourneyOptions:
    start: int
    end: int | None  # None: radio
    steps: int
    lock: tuple[str, ...]
    follow: str  # "start" | "neighbour"
    floor: float = DEFAULT_FLOOR


@dataclass(frozen=True)
class JourneyPlan:
    """A built journey, its tracks and where play-through starts each one (seconds)."""

    options: JourneyOptions
    journey: Journey
    tracks: list[Track]
    starts: list[float]


def plan_journey(library: Library, o: JourneyOptions) -> JourneyPlan:
    """Runs in a worker: the journey, its tracks, and each step's matched window (the window that
    matches the previous step best in the locked parts; the first step's, the second step)."""
    j = library.journey(o.start, o.end, steps=o.steps, lock=o.lock, follow=o.follow, floor=o.floor)
    tracks = [library.track(i) for i in j.ids]
    focus = [1.0 if p in j.lock else 0.0 for p in PARTS]
    starts = [0.0] * len(j.ids)
    for k in range(1, len(j.ids)):
        a, b = library.matched_starts(j.ids[k - 1], j.ids[k], focus)
        starts[k] = b
        if k == 1:
            starts[0] = a
    return JourneyPlan(o, j, tracks, starts)


class JourneyPanel(QWidget):
    """The Journey tab. ``message(str)`` carries a line for the status bar."""

    message = Signal(str)
    built = Signal(object)  # the JourneyPlan now shown

    def __init__(self, library: Library, runner: Runner, player_bar: PlayerBar,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.library, self.runner, self.player_bar = library, runner, player_bar
        self.start_track: Track | None = None
        self.plan: JourneyPlan | None = None
        self.playing: int | None = None  # the step being played through
        self._request = 0
        self._radio: bool | None = None
        self._build()
        player_bar.ended.connect(self._track_ended)

    # ---------------------------------------------------------------- layout
    def _build(self) -> None:
        self.from_label = QLabel()
        self.from_label.setObjectName("journey_from")
        self.to_combo = QComboBox()
        self.to_combo.setObjectName("journey_to")
        self.to_combo.setMinimumContentsLength(24)
        self.to_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.to_combo.currentIndexChanged.connect(self._to_changed)
        self.from_result_button = QPushButton("B = selected result")
        self.from_result_button.setToolTip("Take the result (or map point) you picked last as B")
        self.steps = QSpinBox()
        self.steps.setRange(2, 200)
        self.steps.setValue(DEFAULT_STEPS)
        self.steps.setToolTip("Tracks after A (A to B: the steps from A to B, B included)")
        self.locks: dict[str, QCheckBox] = {}
        lock_row = QHBoxLayout()
        for i, p in enumerate(PARTS):
            box = QCheckBox(PART_LABELS[p])
            box.setStyleSheet(f"QCheckBox {{ color: {PART_COLORS[i]}; font-weight: bold; }}")
            box.setChecked(p == "drums")
            box.toggled.connect(lambda _on: self._update_buttons())
            self.locks[p] = box
            lock_row.addWidget(box)
        lock_row.addStretch(1)
        self.follow = QComboBox()
        self.follow.addItem("A", "start")
        self.follow.addItem("each previous step", "neighbour")
        self.build_button = QPushButton("Build journey")
        self.build_button.setObjectName("journey_build")
        self.build_button.clicked.connect(self.build)

        steps_row = QHBoxLayout()
        steps_row.addWidget(self.steps)
        steps_row.addWidget(QLabel("   locked parts stay close to"))
        steps_row.addWidget(self.follow)
        steps_row.addStretch(1)
        grid = QGridLayout()
        grid.setContentsMargins(0, 4, 0, 0)
        grid.addWidget(QLabel("From (A):"), 0, 0)
        grid.addWidget(self.from_label, 0, 1, 1, 2)
        grid.addWidget(QLabel("To (B):"), 1, 0)
        grid.addWidget(self.to_combo, 1, 1)
        grid.addWidget(self.from_result_button, 1, 2)
        grid.addWidget(QLabel("Keep:"), 2, 0)
        grid.addLayout(lock_row, 2, 1, 1, 2)
        grid.addWidget(QLabel("Steps:"), 3, 0)
        grid.addLayout(steps_row, 3, 1)
        grid.addWidget(self.build_button, 3, 2)
        grid.setColumnStretch(1, 1)

        self.model = JourneyModel(self)
        self.view = QTableView()
        self.view.setObjectName("journey_table")
        self.view.setModel(self.model)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.setAlternatingRowColors(True)
        self.view.setWordWrap(False)
        self.view.verticalHeader().hide()
        self.view.verticalHeader().setDefaultSectionSize(24)
        self.view.setItemDelegateForColumn(JourneyModel.BARS_COLUMN, PartBarsDelegate(self.view))
        hh = self.view.horizontalHeader()
        for col, width in enumerate((46, 160, 120, 84, 56)):
            hh.resizeSection(col, width)
        hh.setStretchLastSection(True)
        hh.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.view.doubleClicked.connect(self._step_activated)

        self.summary = QLabel("Pick a track (A), then build a journey that keeps the ticked parts "
                              "while the rest moves towards B, or a radio without B.")
        self.summary.setObjectName("journey_summary")
        self.summary.setWordWrap(True)
        self.play_button = QPushButton("▶ Play through")
        self.play_button.setObjectName("journey_play")
        self.play_button.clicked.connect(lambda: self.play_through(0))
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop_through)
        self.save_button = QPushButton("Save as M3U…")
        self.save_button.setObjectName("journey_save")
        self.save_button.clicked.connect(self._save_dialog)
        buttons = QHBoxLayout()
        for b in (self.play_button, self.stop_button, self.save_button):
            buttons.addWidget(b)
        buttons.addStretch(1)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(grid)
        lay.addWidget(self.summary)
        lay.addWidget(self.view, 1)
        lay.addLayout(buttons)
        self.set_start(None)
        self.set_tracks([])

    # ------------------------------------------------------------- choices
    def set_start(self, track: Track | None) -> None:
        """A: the current query track (None when the query is not a library track)."""
        self.start_track = track
        self.from_label.setText(f"<b>{_name(track)}</b>" if track is not None
                                else "<i>pick a track in the library first</i>")
        self._update_buttons()

    def set_tracks(self, tracks: Sequence[Track]) -> None:
        """The library's analysed tracks, the choices for B (keeps the current choice)."""
        keep = self.to_combo.currentData()
        self.to_combo.blockSignals(True)
        self.to_combo.clear()
        self.to_combo.addItem("Radio (no destination)", RADIO)
        for t in sorted(tracks, key=lambda t: _name(t).lower()):
            self.to_combo.addItem(_name(t), t.id)
        i = self.to_combo.findData(keep)
        self.to_combo.setCurrentIndex(max(i, 0))
        self.to_combo.blockSignals(False)
        self._to_changed(self.to_combo.currentIndex())

    def set_end(self, track_id: int | None) -> None:
        """B: a library track (None: radio)."""
        i = self.to_combo.findData(RADIO if track_id is None else int(track_id))
        if i < 0:
            raise KeyError(f"track {track_id} is not an analysed track of the library")
        self.to_combo.setCurrentIndex(i)

    def set_lock(self, parts: Sequence[str]) -> None:
        for p, box in self.locks.items():
            box.setChecked(p in parts)

    def options(self) -> JourneyOptions | None:
        if self.start_track is None:
            return None
        end = self.to_combo.currentData()
        return JourneyOptions(start=self.start_track.id, end=None if end in (RADIO, None) else int(end),
                              steps=self.steps.value(),
                              lock=tuple(p for p, b in self.locks.items() if b.isChecked()),
                              follow=self.follow.currentData())

    def _to_changed(self, _index: int) -> None:
        """A radio keeps the locked parts close to each previous step by default, a journey to B
        close to A (the command line's defaults); a choice made by hand for the same kind stays."""
        radio = self.to_combo.currentData() in (RADIO, None)
        if radio != self._radio:
            self._radio = radio
            self.follow.setCurrentIndex(self.follow.findData("neighbour" if radio else "start"))
        self._update_buttons()

    def _update_buttons(self) -> None:
        o = self.options()
        self.build_button.setEnabled(o is not None and bool(o.lock) and o.end != o.start)
        has = self.plan is not None and bool(self.plan.tracks)
        for b in (self.play_button, self.stop_button, self.save_button):
            b.setEnabled(has)

    # --------------------------------------------------------------- build
    def build(self) -> None:
        """Build the journey the controls describe, in the background."""
        o = self.options()
        if o is None:
            return
        self._request += 1
        req = self._request
        self.build_button.setEnabled(False)
        kind = "radio" if o.end is None else "journey"
        self.summary.setText(f"Building the {kind}…")
        self.runner.start(Task(plan_journey, self.library, o),
                          on_done=lambda plan: self._built(req, plan),
                          on_failed=lambda m: self._failed(req, m))

    def _built(self, req: int, plan: JourneyPlan) -> None:
        if req != self._request:
            return
        self.stop_through()
        self.plan = plan
        self.model.set_plan(plan)
        j = plan.journey
        held = sum(s.held for s in j.steps[1:])
        kind = "Radio" if j.end is None else f"To {_name(plan.tracks[-1])}"
        lock = " + ".join(PART_LABELS[p].lower() for p in j.lock)
        ref = "A" if j.follow == "start" else "each previous step"
        self.summary.setText(
            f"{kind}: {len(j.steps)} tracks keeping the {lock} close to {ref}; "
            f"{held} of {len(j.steps) - 1} steps keep it within the bound ({j.floor:.0%})"
            + ("" if held == len(j.steps) - 1 else " (⚠ marks the others)"))
        self._update_buttons()
        self.built.emit(plan)

    def _failed(self, req: int, message: str) -> None:
        if req == self._request:
            self.summary.setText(f"Could not build it: {message}")
            self._update_buttons()

    # ---------------------------------------------------------- play-through
    def play_through(self, row: int = 0) -> None:
        """Play step ``row`` from its matched window; the next follows when it ends."""
        if self.plan is None or not 0 <= row < len(self.plan.tracks):
            self.stop_through()
            return
        self.playing = row
        self.model.set_playing(row)
        self.view.selectRow(row)
        self.player_bar.play_track(self.plan.tracks[row], self.plan.starts[row])

    def stop_through(self) -> None:
        if self.playing is not None:
            self.playing = None
            self.model.set_playing(None)
            self.player_bar.stop()

    def _track_ended(self, track: Track) -> None:
        if self.playing is None or self.plan is None:
            return
        if track.id != self.plan.tracks[self.playing].id:
            self.playing = None  # the user played something else meanwhile
            self.model.set_playing(None)
            return
        self.play_through(self.playing + 1)

    def _step_activated(self, index: QModelIndex) -> None:
        if index.isValid():
            self.play_through(index.row())

    # ---------------------------------------------------------------- save
    def _save_dialog(self) -> None:
        if self.plan is None:
            return
        name, _ = QFileDialog.getSaveFileName(self, "Save the journey as a playlist",
                                              "journey.m3u", "Playlists (*.m3u *.m3u8)")
        if name:
            self.save_m3u(Path(name))

    def save_m3u(self, path: Path) -> None:
        """Write the journey's tracks, in order, as an M3U playlist."""
        if self.plan is None:
            return
        try:
            path.write_text(m3u(self.plan.tracks), encoding="utf-8")
        except OSError as e:
            self.message.emit(f"Could not save {path}: {e.strerror or e}")
            return
        self.message.emit(f"Saved {len(self.plan.tracks)} tracks to {path}")


def _name(t: Track | None) -> str:
    if t is None:
        return ""
    return f"{t.title or t.path.stem} — {t.artist or 'unknown artist'}"

