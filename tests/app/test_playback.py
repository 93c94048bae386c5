import sys
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from app import playback
from app.playback import (
    PAUSED,
    PLAYING,
    STOPPED,
    Audio,
    Backend,
    PlaybackUnavailable,
    Player,
)
from model.audioio import DecodeError
from tests.app.nullaudio import use_null_audio

use_null_audio()


def tone(seconds: float, rate: int = 22050, channels: int = 2) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    a = 0.3 * np.sin(2 * np.pi * 440 * t)
    return np.repeat(a[:, None], channels, axis=1).astype(np.float32)


def test_decode_wav_keeps_rate_and_folds_channels(tmp_path):
    path = tmp_path / "six.wav"
    sf.write(path, tone(0.5, 16000, channels=6), 16000)
    audio = playback.decode(path)
    assert audio.rate == 16000
    assert audio.samples.shape == (8000, 2) and audio.samples.dtype == np.float32
    assert audio.duration == pytest.approx(0.5)


def test_decode_errors_name_the_file(tmp_path):
    with pytest.raises(DecodeError, match="missing.wav"):
        playback.decode(tmp_path / "missing.wav")
    bad = tmp_path / "bad.mp3"
    bad.write_text("not audio at all")
    with pytest.raises(DecodeError, match="bad.mp3"):
        playback.decode(bad)


def test_player_without_backend_says_why():
    off = Backend(None, "Playback off: no audio output device was found.")
    states = []
    p = Player(backend=off, on_state=states.append)
    p.load(Audio(tone(1.0), 22050), start=0.5)
    assert not p.available and "no audio output" in p.reason
    assert p.position == pytest.approx(0.5) and p.duration == pytest.approx(1.0)
    with pytest.raises(PlaybackUnavailable, match="no audio output"):
        p.play()
    p.seek(5.0)
    assert p.position == pytest.approx(1.0)  # clamped to the end
    assert p.state == STOPPED


def test_player_plays_pauses_seeks_and_ends():
    """ALSA's null device takes samples far faster than real time, so the track is long
    (about 0.1 s of work there) and each check tolerates a device that already ran ahead."""
    backend = playback.audio_backend()
    if not backend.available:
        pytest.skip(backend.reason)
    states = []
    stopped = threading.Event()  # set from the audio thread when the track ends by itself

    def on_state(state: str) -> None:
        states.append(state)
        if state == STOPPED:
            stopped.set()

    p = Player(on_state=on_state)
    long = np.zeros((3_000_000, 1), np.float32)
    p.load(Audio(long, 8000), start=10.0)
    assert p.position == pytest.approx(10.0)
    p.play()
    p.pause()
    if p.state == PAUSED:  # did not run to the end in between
        held = p.position
        assert 10.0 <= held < p.duration
        time.sleep(0.05)
        assert p.position == held
    p.seek(370.0)
    stopped.clear()
    p.play()
    assert stopped.wait(timeout=30)  # an event, not a guess at how long the device takes
    assert p.state == STOPPED and p.position == 0.0  # ran to the end and rewound
    assert states[0] == PLAYING and states[-1] == STOPPED
    p.play()  # the same stream again, after it ended by itself
    assert states[-1] == PLAYING or p.state == STOPPED
    p.load(Audio(tone(0.3), 22050))
    p.play()  # a fresh stream after one that ended by itself
    p.stop()
    assert p.state == STOPPED and p.position == 0.0
    p.close()


def test_missing_portaudio_turns_playback_off(monkeypatch):
    """What sounddevice does on a machine without libportaudio2: its import raises OSError."""

    class NoPortAudio:
        def find_spec(self, name, path=None, target=None):
            if name == "sounddevice":
                raise OSError("PortAudio library not found")
            return None

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [NoPortAudio(), *sys.meta_path])
    backend = playback.audio_backend.__wrapped__()  # uncached
    assert not backend.available and "PortAudio" in backend.reason and "libportaudio2" in backend.reason
    p = Player(backend=backend)
    with pytest.raises(PlaybackUnavailable, match="PortAudio"):
        p.play()
