"""The player bar: what is playing, play/pause, stop, a seek slider and the position."""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSlider, QStyle, QWidget

from app.library import Track
from app.playback import PLAYING, STOPPED, Audio, PlaybackError, PlaybackUnavailable, Player, decode
from app.ui.theme import fmt_time
from app.ui.workers import Runner, Task

log = logging.getLogger(__name__)
SEEK_STEPS = 1000


class PlayerBar(QWidget):
    """Plays tracks with a :class:`app.playback.Player`; decoding runs on ``runner``'s pool.

    ``stateChanged(str)`` re-emits the player's state on the GUI thread; ``message(str)``
    carries one line for the status bar (errors, "playback off"); ``positionChanged(float)``
    the play position (seconds) as it moves; ``ended(Track)`` when that track plays to its end
    (not when the user stops it or another track replaces it).
    """

    stateChanged = Signal(str)
    message = Signal(str)
    positionChanged = Signal(float)
    ended = Signal(object)
    _state_from_any_thread = Signal(str)

    def __init__(self, runner: Runner, player: Player | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.runner = runner
        self._state_from_any_thread.connect(self._on_state)
        self.player = player or Player()
        self.player.on_state = self._state_from_any_thread.emit
        self.track: Track | None = None
        self._request = 0
        self._state = STOPPED
        self._stop_asked = False  # the next "stopped" comes from the user, not the track's end
        style = self.style()
        self.play_button = QPushButton()
        self.play_button.setObjectName("play_button")
        self.play_button.setIcon(style.standardIcon(QStyle.StandardPixmap.SP_MediaPlay))
        self.play_button.setToolTip("Play / pause (space)")
        self.play_button.clicked.connect(self.toggle)
        self.stop_button = QPushButton()
        self.stop_button.setIcon(style.standardIcon(QStyle.StandardPixmap.SP_MediaStop))
        self.stop_button.setToolTip("Stop")
        self.stop_button.clicked.connect(self.stop)
        self.title = QLabel("Nothing playing")
        self.title.setObjectName("player_title")
        self.title.setMinimumWidth(220)
        self.seek = QSlider(Qt.Orientation.Horizontal)
        self.seek.setRange(0, SEEK_STEPS)
        self.seek.sliderReleased.connect(self._seek_released)
        self.time = QLabel("0:00 / 0:00")
        self.time.setMinimumWidth(90)
        self.notice = QLabel()
        self.notice.setObjectName("playback_notice")
        self.notice.setStyleSheet("color: #9a5b00;")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(6, 2, 6, 2)
        for w in (self.play_button, self.stop_button):
            lay.addWidget(w)
        lay.addWidget(self.title)
        lay.addWidget(self.seek, 1)
        lay.addWidget(self.time)
        lay.addWidget(self.notice)
        self.timer = QTimer(self)
        self.timer.setInterval(100)
        self.timer.timeout.connect(self._tick)
        if not self.player.available:
            self.notice.setText(self.player.reason)
            for w in (self.play_button, self.stop_button, self.seek):
                w.setEnabled(False)

    @property
    def available(self) -> bool:
        return self.player.available

    def play_track(self, track: Track, start: float = 0.0) -> None:
        """Decode ``track`` in the background, then play it from ``start`` seconds."""
        self.track = track
        self.title.setText(f"{track.title or track.path.stem} — {track.artist or 'unknown artist'}")
        if not self.available:
            self.message.emit(self.player.reason)
            return
        self._request += 1
        req = self._request
        self.title.setText(self.title.text() + "  (loading…)")
        self.runner.start(Task(decode, track.path),
                          on_done=lambda audio: self._decoded(req, track, audio, start),
                          on_failed=lambda m: self._failed(req, m))

    def toggle(self) -> None:
        if not self.available or self.player.audio is None:
            if not self.available:
                self.message.emit(self.player.reason)
            return
        try:
            self.player.toggle()
        except (PlaybackUnavailable, PlaybackError, OSError) as e:
            self.message.emit(str(e))

    def stop(self) -> None:
        if self.available:
            self._stop_asked = True
            self.player.stop()
            self._tick()

    def seek_to(self, seconds: float) -> None:
        """Move the play position of the loaded track to ``seconds``."""
        self.player.seek(seconds)
        self._tick()

    def is_loaded(self, track_id: int) -> bool:
        """Whether ``track_id`` is the track in the player (decoded, ready to seek)."""
        return (self.track is not None and self.track.id == track_id and self.player.audio is not None
                and self.player.audio.path == self.track.path)

    def close_player(self) -> None:
        self._request += 1  # a decoding still under way must not open a stream after this
        self.timer.stop()
        self.player.close()

    # ------------------------------------------------------------ internals
    def _decoded(self, req: int, track: Track, audio: Audio, start: float) -> None:
        if req != self._request:  # the user clicked something else meanwhile
            return
        self.title.setText(f"{track.title or track.path.stem} — {track.artist or 'unknown artist'}")
        try:
            self.player.load(audio, start=start)
            self.player.play()
        except (PlaybackUnavailable, PlaybackError, OSError) as e:
            self.message.emit(str(e))
            return
        self.message.emit(f"Playing {track.path.name} from {fmt_time(start)}")
        self._tick()

    def _failed(self, req: int, message: str) -> None:
        if req == self._request:
            self.title.setText("Nothing playing")
            self.message.emit(message)

    def _on_state(self, state: str) -> None:
        icon = (QStyle.StandardPixmap.SP_MediaPause if state == PLAYING
                else QStyle.StandardPixmap.SP_MediaPlay)
        self.play_button.setIcon(self.style().standardIcon(icon))
        if state == PLAYING:
            self.timer.start()
        else:
            self.timer.stop()
        ended = state == STOPPED and self._state == PLAYING and not self._stop_asked
        self._state = state
        if state != STOPPED or self._stop_asked:
            self._stop_asked = False
        self._tick()
        self.stateChanged.emit(state)
        if ended and self.track is not None:
            self.ended.emit(self.track)

    def _tick(self) -> None:
        dur = self.player.duration
        pos = self.player.position
        if self.player.state == PLAYING and dur > 0 and pos >= dur:
            # every frame was played but the player missed the stream's end (it can finish
            # before play() records PLAYING, at a track's very end): end it here
            self.player.stop()
            return
        if not self.seek.isSliderDown():
            self.seek.setValue(int(SEEK_STEPS * pos / dur) if dur > 0 else 0)
        self.time.setText(f"{fmt_time(pos)} / {fmt_time(dur)}")
        self.positionChanged.emit(pos)

    def _seek_released(self) -> None:
        self.player.seek(self.seek.value() / SEEK_STEPS * self.player.duration)
        self._tick()
