"""Playback: decode a track, play it through PortAudio (``sounddevice``). Headless, no Qt.

``sounddevice`` loads the PortAudio shared library when imported and raises ``OSError`` when it
is missing, so it is imported lazily by :func:`audio_backend`, which also checks that an output
device exists. Without either, :class:`Player` still works as an object (load, seek, position)
but ``play`` raises :class:`PlaybackUnavailable` with the reason, and the app says so.

Threads: :func:`decode` (the one audio intake, :mod:`model.audioio`) is slow and belongs in a worker. The PortAudio callback runs on its own
thread; the player's position is shared with it under a lock, and state changes are reported
through ``on_state`` from whichever thread caused them (the UI forwards them with a signal).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.audioio import DecodeError, read, resample

log = logging.getLogger(__name__)

STOPPED, PLAYING, PAUSED = "stopped", "playing", "paused"
MAX_CHANNELS = 2


class PlaybackUnavailable(RuntimeError):
    """No PortAudio or no output device; the message says which and what to do."""


class PlaybackError(RuntimeError):
    """The output stream could not be opened (decoding fails with :class:`DecodeError`)."""


@dataclass(frozen=True)
class Backend:
    """sd: the ``sounddevice`` module, or None when playback is off; reason: one line for users."""

    sd: object | None
    reason: str

    @property
    def available(self) -> bool:
        return self.sd is not None


@functools.cache
def audio_backend() -> Backend:
    """Import ``sounddevice`` and look for an output device, once per process."""
    try:
        import sounddevice as sd
    except OSError as e:
        log.warning("playback off: %s", e)
        return Backend(None, "Playback off: the PortAudio library is not installed "
                             "(Debian/Ubuntu: apt install libportaudio2).")
    except ImportError:
        return Backend(None, "Playback off: the Python package 'sounddevice' is not installed.")
    try:
        dev = sd.query_devices(kind="output")
    except (sd.PortAudioError, ValueError) as e:
        log.warning("playback off: %s", e)
        return Backend(None, "Playback off: no audio output device was found.")
    return Backend(sd, f"Audio output: {dev['name']}")


@dataclass(frozen=True)
class Audio:
    """samples: (frames, channels) float32 in [-1, 1], channels 1 or 2; rate in Hz."""

    samples: np.ndarray
    rate: int
    path: Path | None = None

    @property
    def duration(self) -> float:
        return len(self.samples) / self.rate


def _fit_channels(a: np.ndarray) -> np.ndarray:
    """(frames, C) -> (frames, min(C, 2)): more than two channels are folded into stereo."""
    if a.ndim == 1:
        a = a[:, None]
    if a.shape[1] > MAX_CHANNELS:
        left = a[:, 0::2].mean(axis=1)
        right = a[:, 1::2].mean(axis=1)
        a = np.stack([left, right], axis=1)
    return np.ascontiguousarray(a, dtype=np.float32)


def decode(path: str | os.PathLike) -> Audio:
    """Whole file at its own rate, at most stereo, through the one audio intake
    (:func:`model.audioio.read`); a :class:`DecodeError` names the file and the problem."""
    path = Path(path)
    try:
        samples, rate = read(path)
    except FileNotFoundError:
        raise DecodeError(f"{path}: the file does not exist (moved or deleted since the scan?)") from None
    return Audio(_fit_channels(samples), rate, path)


class Player:
    """Plays one :class:`Audio` at a time. ``on_state(state)`` fires on every state change,
    possibly from the audio thread."""

    def __init__(self, device: int | str | None = None,
                 on_state: Callable[[str], None] | None = None,
                 backend: Backend | None = None):
        self.backend = backend if backend is not None else audio_backend()
        self.device = device
        self.on_state = on_state
        self._lock = threading.Lock()
        self._stream = None
        self._samples = np.zeros((0, 1), np.float32)
        self._rate = 44100
        self._pos = 0  # frames
        self._state = STOPPED
        self.audio: Audio | None = None

    # --------------------------------------------------------------- info
    @property
    def available(self) -> bool:
        return self.backend.available

    @property
    def reason(self) -> str:
        return self.backend.reason

    @property
    def state(self) -> str:
        return self._state

    @property
    def position(self) -> float:
        """Seconds from the start of the loaded audio."""
        with self._lock:
            return self._pos / self._rate

    @property
    def duration(self) -> float:
        return len(self._samples) / self._rate

    # ------------------------------------------------------------ control
    def load(self, audio: Audio, start: float = 0.0) -> None:
        """Replace what is loaded (stopping it) and set the position to ``start`` seconds."""
        self._close_stream()
        samples, rate = audio.samples, audio.rate
        if self.available:
            samples, rate = self._open_stream(samples, rate, audio.path)
        with self._lock:
            self._samples, self._rate = samples, rate
            self._pos = self._clamp(int(start * rate))
        self.audio = audio
        self._set_state(STOPPED)

    def play(self) -> None:
        if not self.available:
            raise PlaybackUnavailable(self.reason)
        if self._stream is None or self._state == PLAYING:
            return
        with self._lock:
            if self._pos >= len(self._samples):
                self._pos = 0
        if not self._stream.stopped:  # ended by itself: PortAudio wants a stop before a start
            self._stream.stop()
        # PLAYING before start(): a stream with little left may finish (and call _finished from
        # PortAudio's thread) before start() returns; _finished only ends a PLAYING track
        was = self._state
        self._set_state(PLAYING)
        try:
            self._stream.start()
        except Exception:
            self._set_state(was)
            raise

    def pause(self) -> None:
        if self._state != PLAYING:
            return
        self._set_state(PAUSED)  # before stop(): the finished callback must see PAUSED
        self._stream.stop()

    def toggle(self) -> None:
        """Space bar: pause when playing, play otherwise."""
        if self._state == PLAYING:
            self.pause()
        else:
            self.play()

    def stop(self) -> None:
        """Stop and rewind to the start."""
        was = self._state
        self._set_state(STOPPED)
        if was == PLAYING and self._stream is not None:
            self._stream.stop()
        with self._lock:
            self._pos = 0

    def seek(self, seconds: float) -> None:
        with self._lock:
            self._pos = self._clamp(int(seconds * self._rate))

    def close(self) -> None:
        self._close_stream()
        self._set_state(STOPPED)

    # ------------------------------------------------------------ internals
    def _clamp(self, frame: int) -> int:
        return max(0, min(frame, len(self._samples)))

    def _set_state(self, state: str) -> None:
        if state == self._state:
            return
        self._state = state
        if self.on_state is not None:
            self.on_state(state)

    def _open_stream(self, samples: np.ndarray, rate: int, path: Path | None) -> tuple[np.ndarray, int]:
        sd = self.backend.sd
        try:
            self._stream = self._make_stream(sd, rate, samples.shape[1])
            return samples, rate
        except sd.PortAudioError as e:
            dev_rate = int(sd.query_devices(self.device, kind="output")["default_samplerate"])
            log.info("%s: device refused %d Hz (%s); resampling to %d Hz", path, rate, e, dev_rate)
        samples = np.ascontiguousarray(resample(samples.T, rate, dev_rate).T)
        try:
            self._stream = self._make_stream(sd, dev_rate, samples.shape[1])
        except sd.PortAudioError as e:
            raise PlaybackError(f"{path}: the audio device cannot play it ({e})") from e
        return samples, dev_rate

    def _make_stream(self, sd, rate: int, channels: int):
        return sd.OutputStream(samplerate=rate, channels=channels, dtype="float32",
                               device=self.device, callback=self._callback,
                               finished_callback=self._finished)

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            self._state = STOPPED  # silence the finished callback of the old stream
            stream.abort()
            stream.close()

    def _callback(self, out: np.ndarray, frames: int, _time, status) -> None:
        if status:
            log.debug("audio callback status: %s", status)
        with self._lock:
            chunk = self._samples[self._pos:self._pos + frames]
            n = len(chunk)
            out[:n] = chunk
            self._pos += n
        out[n:] = 0
        if n < frames:
            raise self.backend.sd.CallbackStop

    def _finished(self) -> None:
        """The stream went inactive: either we paused/stopped it, or the track ended."""
        if self._state == PLAYING:
            with self._lock:
                self._pos = 0
            self._set_state(STOPPED)
