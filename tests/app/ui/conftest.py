"""A small real library for the window tests: tiny random weights, generated audio, one scan."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from app.library import Library
from model.audio import AudioConfig, log_mel
from model.network import CSN, ModelSpec, NetConfig, calibrate_batch_norm
from model.weights import save_weights
from tests.app.nullaudio import use_null_audio

use_null_audio()

RATE = 22050
SECONDS = 11.0  # two 5-s analysis windows


def _synth(kind: str, seed: int) -> np.ndarray:
    """Short stereo test pieces: drum-like clicks, bass sines, chords, noise, and mixes."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SECONDS * RATE)) / RATE
    out = np.zeros_like(t)
    if "drums" in kind:
        period = rng.uniform(0.25, 0.6)
        env = np.exp(-((t % period) / 0.03))
        out += 0.6 * env * rng.normal(0, 1, len(t))
    if "bass" in kind:
        f = rng.uniform(40, 110)
        out += 0.5 * np.sin(2 * np.pi * f * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t))
    if "chord" in kind:
        root = rng.uniform(220, 440)
        for ratio in (1.0, 1.26, 1.5):
            out += 0.15 * np.sin(2 * np.pi * root * ratio * t)
    if "noise" in kind:
        out += 0.2 * rng.normal(0, 1, len(t))
    out /= max(1e-6, np.abs(out).max()) / 0.8
    return np.stack([out, np.roll(out, 17)], axis=1).astype(np.float32)


KINDS = ["drums", "bass", "chord", "noise", "drums+bass", "bass+chord", "drums+chord",
         "drums+bass+chord", "drums+noise", "chord+noise"]


def write_music(folder: Path, corrupt: bool = False) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, kind in enumerate(KINDS):
        path = folder / f"{i:02d}-{kind.replace('+', '-')}.wav"
        sf.write(path, _synth(kind, i), RATE)
        paths.append(path)
    if corrupt:
        bad = folder / "broken.wav"
        bad.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(200)))
        paths.append(bad)
    return paths


def make_weights(path: Path) -> Path:
    """Tiny random-init weights whose batch-norm statistics are fitted to the generated audio,
    so that different pieces get clearly different embeddings (an untouched random net maps
    everything to nearly the same point)."""
    torch.manual_seed(0)
    net = NetConfig(widths=(4, 8, 8, 16, 16), n_mels=64)
    audio = AudioConfig(n_mels=64)
    model = CSN(net)
    clips = [_synth(kind, i)[: 5 * RATE, 0] for i, kind in enumerate(KINDS)]
    mel = log_mel(torch.from_numpy(np.stack(clips)), audio)
    calibrate_batch_norm(model, mel)
    save_weights(path, model, ModelSpec(net=net, audio=audio))
    return path


@pytest.fixture(scope="session")
def built_library(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(library root, weights, music folder), scanned once per session."""
    base = tmp_path_factory.mktemp("built")
    weights = make_weights(base / "tiny.safetensors")
    music = base / "music"
    write_music(music)
    with Library(base / "lib", weights=weights, workers=2) as lib:
        progress = list(lib.scan([music]))
        assert progress[-1].added == len(KINDS), progress[-1]
    return base / "lib", weights, music


@pytest.fixture
def library(built_library, tmp_path):
    """A fresh copy of the scanned library for one test."""
    root, weights, _ = built_library
    copy = tmp_path / "lib"
    shutil.copytree(root, copy)
    lib = Library(copy, weights=weights, workers=2)
    yield lib
    lib.close()


@pytest.fixture
def settings(tmp_path):
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
