"""Item delegate that draws a row's five part values as small coloured bars."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

from app.ui.models import BARS_ROLE
from app.ui.theme import PART_QCOLORS

TRACK = QColor(0, 0, 0, 28)


class PartBarsDelegate(QStyledItemDelegate):
    """Five vertical bars (drums, bass, piano, guitar, others), each filled to its value."""

    BAR_W = 7
    GAP = 3

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        values = index.data(BARS_ROLE)
        if values is None:
            super().paint(painter, option, index)
            return
        style = option.widget.style() if option.widget else None
        if style is not None:  # selection / hover / focus background as the view set it, no text
            # (the option as the view made it: initStyleOption would ask the model for roles
            # this cell leaves empty, a Python call each)
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, option, painter, option.widget)
        r = option.rect.adjusted(4, 3, -4, -3)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        painter.setPen(Qt.PenStyle.NoPen)
        x = r.left()
        for v, color in zip(values, PART_QCOLORS, strict=True):
            painter.fillRect(QRectF(x, r.top(), self.BAR_W, r.height()), TRACK)
            h = max(0.0, min(1.0, float(v))) * r.height()
            if h >= 0.5:
                painter.fillRect(QRectF(x, r.bottom() + 1 - h, self.BAR_W, h), color)
            x += self.BAR_W + self.GAP
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:
        return QSize(5 * self.BAR_W + 4 * self.GAP + 8, 22)
