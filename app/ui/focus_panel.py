"""The focus: five faders, one per part, from -1 (different in this part) to 1 (same)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from app.ui.theme import PART_COLORS, PART_LABELS
from model.parts import N_PARTS, PARTS

STEPS = 100  # fader resolution: value / STEPS is the weight

PRESETS: dict[str, tuple[float, ...]] = {
    "Everything": (1, 1, 1, 1, 1),
    "Groove (drums + bass)": (1, 1, 0, 0, 0),
    "Harmony (piano + guitar)": (0, 0, 1, 1, 0),
    "Same drums, different rest": (1, -0.5, -0.5, -0.5, -0.5),
    "Same bass, different drums": (-0.5, 1, 0, 0, 0),
    "Everything but drums": (0, 1, 1, 1, 1),
}
DEFAULT = PRESETS["Everything"]

# A neutral groove (a fader at -1 is a choice, not an empty bar) and a handle in the part's colour.
_FADER_STYLE = """
QSlider::groove:vertical {{ width: 6px; border-radius: 3px;
    background: qlineargradient(x1:0, y1:0, x2:0, y2:1, stop:0 #cfd8dc, stop:0.497 #cfd8dc,
                                stop:0.5 #78909c, stop:0.503 #cfd8dc, stop:1 #cfd8dc); }}
QSlider::handle:vertical {{ height: 16px; margin: 0 -7px; border-radius: 8px;
    background: {color}; border: 1px solid #ffffff; }}
"""


class FocusPanel(QWidget):
    """Emits ``focusChanged(np.ndarray (5,))`` whenever a fader, solo, reset or preset moves."""

    focusChanged = Signal(object)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.sliders: list[QSlider] = []
        self.values: list[QLabel] = []
        self.solos: list[QPushButton] = []
        grid = QGridLayout()
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(2)
        for i, part in enumerate(PARTS):
            name = QLabel(f"<b style='color:{PART_COLORS[i]}'>{PART_LABELS[part]}</b>")
            name.setAlignment(Qt.AlignmentFlag.AlignHCenter)
            slider = QSlider(Qt.Orientation.Vertical)
            slider.setRange(-STEPS, STEPS)
            slider.setPageStep(STEPS // 4)
            slider.setStyleSheet(_FADER_STYLE.format(color=PART_COLORS[i]))
            slider.setMinimumHeight(90)
            slider.setObjectName(f"fader_{part}")
            slider.setToolTip(f"{PART_LABELS[part]}: up = same {part}, down = different {part}")
            slider.valueChanged.connect(self._moved)
            value = QLabel()
            value.setAlignment(Qt.AlignmentFlag.AlignHCenter)
            value.setMinimumWidth(36)
            solo = QPushButton("Solo")
            solo.setObjectName(f"solo_{part}")
            solo.setToolTip(f"Only {part}: find tracks whose {part} sounds like the query's")
            solo.clicked.connect(lambda _=False, k=i: self.solo(k))
            grid.addWidget(name, 0, i)
            grid.addWidget(slider, 1, i, Qt.AlignmentFlag.AlignHCenter)
            grid.addWidget(value, 2, i)
            grid.addWidget(solo, 3, i)
            self.sliders.append(slider)
            self.values.append(value)
            self.solos.append(solo)
        self.presets = QComboBox()
        self.presets.addItem("Presets…")
        self.presets.addItems(list(PRESETS))
        self.presets.activated.connect(self._preset)
        reset = QPushButton("Reset")
        reset.setToolTip("All parts count equally")
        reset.clicked.connect(self.reset)
        self.warning = QLabel()
        self.warning.setWordWrap(True)
        self.warning.setObjectName("focus_warning")
        self.warning.setStyleSheet("color: #9a5b00;")
        self.warning.hide()
        row = QHBoxLayout()
        row.addWidget(self.presets, 1)
        row.addWidget(reset)
        col = QVBoxLayout(self)
        col.setContentsMargins(6, 6, 6, 6)
        title = QLabel("<b>Focus</b> — which parts should sound alike")
        col.addWidget(title)
        col.addLayout(grid)
        col.addLayout(row)
        col.addWidget(self.warning)
        self.set_focus(DEFAULT, emit=False)

    def focus(self) -> np.ndarray:
        """(5,) weights in [-1, 1], PARTS order."""
        return np.array([s.value() / STEPS for s in self.sliders], dtype=np.float64)

    def set_focus(self, weights: Sequence[float], emit: bool = True) -> None:
        if len(weights) != N_PARTS:
            raise ValueError(f"focus needs {N_PARTS} weights, got {len(weights)}")
        for s, w in zip(self.sliders, weights, strict=True):
            s.blockSignals(True)
            s.setValue(int(round(max(-1.0, min(1.0, float(w))) * STEPS)))
            s.blockSignals(False)
        self._show_values()
        if emit:
            self.focusChanged.emit(self.focus())

    def solo(self, i: int) -> None:
        self.set_focus([1.0 if k == i else 0.0 for k in range(N_PARTS)])

    def reset(self) -> None:
        self.set_focus(DEFAULT)

    def set_warning(self, text: str) -> None:
        self.warning.setText(text)
        self.warning.setVisible(bool(text))

    def _preset(self, row: int) -> None:
        name = self.presets.itemText(row)
        if name in PRESETS:
            self.set_focus(PRESETS[name])
        self.presets.setCurrentIndex(0)

    def _moved(self, _value: int) -> None:
        self._show_values()
        self.focusChanged.emit(self.focus())

    def _show_values(self) -> None:
        for s, label in zip(self.sliders, self.values, strict=True):
            label.setText(f"{s.value() / STEPS:+.2f}")
