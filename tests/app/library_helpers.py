"""Audio files and tiny models made in tmp_path for the library tests."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import soundfile as sf

from assets import DEMO
from model.audio import AudioConfig
from model.network import CSN, ModelSpec, NetConfig
from model.weights import save_weights

TEST_DATA = DEMO


def real_recordings() -> list[Path]:
    """The two CC-BY recordings of the demo collection in assets/demo (credits beside them); [] when absent."""
    return sorted(TEST_DATA.glob("*.ogg")) if TEST_DATA.is_dir() else []


def tiny_weights(path: Path, seed: int = 0, card: dict | None = None) -> Path:
    import torch

    torch.manual_seed(seed)
    net = NetConfig(widths=(4, 8, 8, 16, 16), n_mels=64)
    save_weights(path, CSN(net), ModelSpec(net=net, audio=AudioConfig(n_mels=64)), card=card)
    return path


def music(seconds: float, sr: int = 22050, channels: int = 2, seed: int = 0) -> np.ndarray:
    """A little synthetic piece: a bass line, a chord, clicks; (samples, channels) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 55.0 * 2 ** (rng.integers(0, 12) / 12)
    x = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.15 * np.sin(2 * np.pi * 3 * f0 * t * (1 + 0.01 * np.sin(t)))
    beat = (np.mod(t, 0.5) < 0.01) * rng.standard_normal(len(t)) * 0.5
    x = (x + beat).astype(np.float32)
    return np.stack([x * (1 - 0.1 * c) for c in range(channels)], axis=1) if channels else x


def write_av(path: Path, x: np.ndarray, sr: int, codec: str, fmt: str | None = None) -> Path:
    """Encode (samples, channels) float audio with FFmpeg through PyAV (mp3, aac, opus)."""
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=sr)
        layout = "stereo" if x.shape[1] == 2 else "mono"
        s.layout = layout
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x.T, dtype=np.float32), format="fltp",
                                           layout=layout)
        frame.sample_rate = sr
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def write_all_formats(folder: Path, seconds: float = 4.0) -> dict[str, Path]:
    """One file per supported format; returns {suffix: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i, ext in enumerate(("wav", "flac", "ogg", "aiff")):
        p = folder / f"song_{ext}.{ext}"
        sf.write(p, music(seconds, 44100, seed=i), 44100)
        out[ext] = p
    out["mp3"] = write_av(folder / "song_mp3.mp3", music(seconds, 44100, seed=5), 44100, "libmp3lame")
    out["m4a"] = write_av(folder / "song_m4a.m4a", music(seconds, 44100, seed=6), 44100, "aac", "mp4")
    out["opus"] = write_av(folder / "song_opus.opus", music(seconds, 48000, seed=7), 48000, "libopus", "ogg")
    return out


def write_bad_files(folder: Path) -> dict[str, Path]:
    """Broken and unusual input; returns {name: path}. Unusual-but-valid ones end in _ok."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    full = folder / "_full.flac"
    sf.write(full, music(6.0, 22050), 22050)
    data = full.read_bytes()
    full.unlink()
    files = {}

    def put(name: str, blob: bytes) -> None:
        (folder / name).write_bytes(blob)
        files[name] = folder / name

    put("truncated.flac", data[: len(data) // 3])
    wav = folder / "_w.wav"
    sf.write(wav, music(6.0, 22050), 22050)
    wdata = wav.read_bytes()
    wav.unlink()
    put("truncated.wav", wdata[: len(wdata) // 3])
    corrupt = bytearray(data)
    corrupt[:2048] = rng.integers(0, 256, 2048, dtype=np.uint8).tobytes()
    put("corrupt.flac", bytes(corrupt))
    put("text.mp3", b"this is a text file, not an mp3\n" * 40)
    put("empty.wav", b"")
    sf.write(folder / "one_sample.wav", np.zeros(1, np.float32), 22050)
    files["one_sample.wav"] = folder / "one_sample.wav"
    sf.write(folder / "rate8k_ok.wav", music(3.0, 8000, channels=1), 8000)
    sf.write(folder / "rate96k_ok.flac", music(3.0, 96000), 96000)
    sf.write(folder / "six_channels_ok.wav", np.tile(music(3.0, 22050, channels=1), (1, 6)), 22050)
    for name in ("rate8k_ok.wav", "rate96k_ok.flac", "six_channels_ok.wav"):
        files[name] = folder / name
    return files
