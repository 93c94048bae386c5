"""Qt item models over the engine's dataclasses: library tracks, failures, search results,
journey steps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QColor, QFont

from app.library import Result, Track
from app.ui.theme import PART_LABELS, fmt_time
from model.parts import PARTS

BARS_ROLE = Qt.ItemDataRole.UserRole + 1  # (5,) floats in [0, 1] for the bar delegate
SORT_ROLE = Qt.ItemDataRole.UserRole + 2  # a sortable value (numbers stay numbers)
ID_ROLE = Qt.ItemDataRole.UserRole + 3  # the track id of the row

Index = QModelIndex | QPersistentModelIndex
_RESULT_ROLES = frozenset(int(r) for r in (
    Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.TextAlignmentRole, Qt.ItemDataRole.ToolTipRole,
    BARS_ROLE, SORT_ROLE, ID_ROLE))  # the roles ResultsModel.data answers
_ROW_FLAGS = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable  # made once: a paint asks each cell


class _TableModel(QAbstractTableModel):
    """Rows of frozen dataclasses, a fixed list of column headers."""

    HEADERS: tuple[str, ...] = ()

    def __init__(self, parent=None):
        super().__init__(parent)
        self._rows: list = []

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole):
        if (role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal
                and 0 <= section < len(self.HEADERS)):
            return self.HEADERS[section]
        return None

    def flags(self, index: Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return _ROW_FLAGS

    def row(self, r: int):
        return self._rows[r]

    def _reset(self, rows: list) -> None:
        self.beginResetModel()
        self._rows = rows
        self.endResetModel()


class TrackTableModel(_TableModel):
    """The library: one row per analysed track."""

    HEADERS = ("Title", "Artist", "Album", "Duration", "Parts")
    PARTS_COLUMN = 4

    def __init__(self, parent=None):
        super().__init__(parent)
        self._row_of: dict[int, int] = {}
        self._haystack: list[str] = []
        self._sort_column = -1
        self._sort_order = Qt.SortOrder.AscendingOrder

    def set_tracks(self, tracks: Sequence[Track]) -> None:
        rows = list(tracks)
        self.beginResetModel()
        self._rows = rows
        self._haystack = [f"{t.title or t.path.stem}\n{t.artist}\n{t.album}".casefold() for t in rows]
        if self._sort_column >= 0:
            self._apply_sort()
        self._row_of = {t.id: r for r, t in enumerate(self._rows)}
        self.endResetModel()

    def matches(self, row: int, needle: str) -> bool:
        """Does ``needle`` (already casefolded) occur in the row's title, artist or album?"""
        return needle in self._haystack[row]

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sort the rows themselves (a Python key sort: ~0.1 s at 100k tracks, where a proxy
        comparing through ``data()`` takes seconds)."""
        self._sort_column, self._sort_order = column, order
        self.layoutAboutToBeChanged.emit()
        old = self.persistentIndexList()
        old_ids = [self._rows[i.row()].id for i in old]
        self._apply_sort()
        self._row_of = {t.id: r for r, t in enumerate(self._rows)}
        self.changePersistentIndexList(
            old, [self.index(self._row_of[tid], i.column()) for tid, i in zip(old_ids, old, strict=True)])
        self.layoutChanged.emit()

    def _apply_sort(self) -> None:
        col = self._sort_column
        if not 0 <= col < len(self.HEADERS):
            return
        keys = {0: lambda t: (t.title or t.path.stem).casefold(), 1: lambda t: t.artist.casefold(),
                2: lambda t: t.album.casefold(), 3: lambda t: t.duration,
                4: lambda t: float(t.presence.sum())}[col]
        order = sorted(range(len(self._rows)), key=lambda r: keys(self._rows[r]),
                       reverse=self._sort_order == Qt.SortOrder.DescendingOrder)
        self._rows = [self._rows[r] for r in order]
        self._haystack = [self._haystack[r] for r in order]

    def track(self, r: int) -> Track:
        return self._rows[r]

    def row_of(self, track_id: int) -> int | None:
        return self._row_of.get(int(track_id))

    def by_id(self, track_id: int) -> Track | None:
        r = self._row_of.get(int(track_id))
        return None if r is None else self._rows[r]

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        t: Track = self._rows[index.row()]
        col = index.column()
        if role == ID_ROLE:
            return t.id
        if role == BARS_ROLE:
            return [float(v) for v in t.presence] if col == self.PARTS_COLUMN else None
        if role in (Qt.ItemDataRole.DisplayRole, SORT_ROLE):
            if col == 0:
                return t.title or t.path.stem
            if col == 1:
                return t.artist
            if col == 2:
                return t.album
            if col == 3:
                return fmt_time(t.duration) if role == Qt.ItemDataRole.DisplayRole else t.duration
            if col == self.PARTS_COLUMN:  # drawn by the delegate; sorts by overall presence
                return None if role == Qt.ItemDataRole.DisplayRole else float(t.presence.sum())
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == self.PARTS_COLUMN:
                return "\n".join(f"{PART_LABELS[p]}: {v:.0%}" for p, v in zip(PARTS, t.presence, strict=True))
            return str(t.path)
        if role == Qt.ItemDataRole.TextAlignmentRole and col == 3:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


class FailuresModel(_TableModel):
    """Files the last scans could not analyse, and why. The file is shown relative to the
    library folder it is in (the full path is its tooltip); the problem without the path."""

    HEADERS = ("File", "Problem")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._folders: list[Path] = []

    def set_failures(self, rows: Sequence[tuple[Path | str, str]],
                     folders: Sequence[Path] = ()) -> None:
        """rows: (path, message) pairs; folders: the library's folders, to shorten paths."""
        self._folders = [Path(f) for f in folders]
        self._reset([(Path(p), m) for p, m in rows])

    def _short(self, path: Path) -> str:
        for f in self._folders:
            if path.is_relative_to(f):
                return str(Path(f.name) / path.relative_to(f))
        return str(path)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        path, message = self._rows[index.row()]
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{path}\n{message}"
        if role in (Qt.ItemDataRole.DisplayRole, SORT_ROLE):
            if index.column() == 0:
                return self._short(path)
            prefix = f"{path}: "
            text = message[len(prefix):] if message.startswith(prefix) else message
            return text.replace(f"'{path}'", f"'{path.name}'").replace(str(path), path.name)
        return None


class ResultsModel(_TableModel):
    """The answer to the current focus query, best first."""

    HEADERS = ("#", "Title", "Artist", "Match", "Similar in", "Because of")
    BARS_COLUMN = 4
    MATCH_TIP = ("Match under the focus, 100% best: the same in every part weighted up and nothing "
                 "alike in every part weighted down")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._display: list[tuple] = []
        self._bars: list[list[float]] = []

    def set_results(self, results: Sequence[Result]) -> None:
        """Replace the rows with the engine's results (their meaning is computed there)."""
        self.beginResetModel()
        self._rows = list(results)
        self._display = [(i + 1, r.track.title or r.track.path.stem, r.track.artist, f"{r.score:.0%}",
                          None, PART_LABELS[r.because]) for i, r in enumerate(self._rows)]
        self._bars = [[float(v) for v in r.similarity] for r in self._rows]
        self.endResetModel()

    def result(self, r: int) -> Result:
        return self._rows[r]

    def ids(self) -> list[int]:
        return [r.track.id for r in self._rows]

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole):
        if role not in _RESULT_ROLES:  # a paint asks ~8 roles a cell, most of them unused
            return None
        row, col = index.row(), index.column()
        if not index.isValid() or not 0 <= row < len(self._rows):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display[row][col]
        if role == BARS_ROLE:
            return self._bars[row] if col == self.BARS_COLUMN else None
        if role == ID_ROLE:
            return self._rows[row].track.id
        if role == SORT_ROLE:
            if col == 3:
                return self._rows[row].score
            if col == self.BARS_COLUMN:
                return float(self._rows[row].similarity.sum())
            return self._display[row][col]
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (0, 3):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            r = self._rows[row]
            if col == self.BARS_COLUMN:
                return "\n".join(f"{PART_LABELS[p]}: {s:.0%} similar (distance² {d:.3g})" for p, s, d in
                                 zip(PARTS, r.similarity, r.part_distances, strict=True))
            if col == 3:
                return self.MATCH_TIP
            return f"{r.track.path}\nmatch at {r.match_start:.0f} s (query at {r.query_start:.0f} s)"
        return None


class TrackFilter(QSortFilterProxyModel):
    """Filters the library by text (title, artist, album; case-insensitive). Sorting is passed
    on to a :class:`TrackTableModel` source, which sorts its rows itself; other sources are
    sorted here by :data:`SORT_ROLE`."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)
        self.setFilterKeyColumn(-1)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.setSortCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self._needle = ""

    def set_text(self, text: str) -> None:
        if hasattr(self, "beginFilterChange"):  # Qt >= 6.10
            self.beginFilterChange()
            self._needle = text.strip().casefold()
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            self._needle = text.strip().casefold()
            self.invalidateRowsFilter()

    def filterAcceptsRow(self, source_row: int, source_parent: Index) -> bool:
        src = self.sourceModel()
        if not self._needle:
            return True
        if isinstance(src, TrackTableModel):
            return src.matches(source_row, self._needle)
        cols = src.columnCount(source_parent)
        return any(self._needle in str(src.index(source_row, c, source_parent).data() or "").casefold()
                   for c in range(cols))

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        src = self.sourceModel()
        if isinstance(src, TrackTableModel):
            src.sort(column, order)
        else:
            super().sort(column, order)


class JourneyModel(_TableModel):
    """The steps of a journey (:class:`app.ui.journey_panel.JourneyPlan`), in order.

    Each row: the track, its per-part similarity to the previous step (bars), the smallest
    similarity of the locked parts to their reference, and the engine's "why". A step that did
    not hold the bound is marked with ⚠."""

    HEADERS = ("#", "Title", "Artist", "To previous", "Locked", "Why")
    BARS_COLUMN = 3
    NOT_HELD = "No track kept the locked parts within the bound here: this is the closest one"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.plan = None
        self.playing: int | None = None  # the row being played through

    def set_plan(self, plan) -> None:
        self.beginResetModel()
        self.plan = plan
        self._rows = list(plan.journey.steps) if plan is not None else []
        self.playing = None
        self.endResetModel()

    def set_playing(self, row: int | None) -> None:
        old, self.playing = self.playing, row
        for r in (old, row):
            if r is not None and 0 <= r < len(self._rows):
                self.dataChanged.emit(self.index(r, 0), self.index(r, len(self.HEADERS) - 1))

    def locked(self, r: int) -> float | None:
        s = self._rows[r]
        if s.to_reference is None:
            return None
        li = [PARTS.index(p) for p in self.plan.journey.lock]
        return float(min(s.to_reference[li]))

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole):
        row, col = index.row(), index.column()
        if not index.isValid() or not 0 <= row < len(self._rows):
            return None
        step, track = self._rows[row], self.plan.tracks[row]
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return f"{'▶ ' if row == self.playing else ''}{'⚠ ' if not step.held else ''}{row + 1}"
            if col == 1:
                return track.title or track.path.stem
            if col == 2:
                return track.artist
            if col == 4:
                v = self.locked(row)
                return "" if v is None else f"{v:.0%}"
            if col == 5:
                return step.why
            return None
        if role == BARS_ROLE:
            if col == self.BARS_COLUMN and step.to_previous is not None:
                return [float(v) for v in step.to_previous]
            return None
        if role == ID_ROLE:
            return step.track_id
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (0, 4):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and not step.held and col in (0, 4):
            return QColor("#b23a00")
        if role == Qt.ItemDataRole.FontRole and row == self.playing:
            f = QFont()
            f.setBold(True)
            return f
        if role == Qt.ItemDataRole.ToolTipRole:
            if not step.held:
                return self.NOT_HELD
            if col == self.BARS_COLUMN and step.to_previous is not None:
                return "\n".join(f"{PART_LABELS[p]}: {s:.0%} similar to the previous step"
                                 for p, s in zip(PARTS, step.to_previous, strict=True))
            return f"{track.path}\nplays from {fmt_time(self.plan.starts[row])}"
        return None
