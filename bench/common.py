"""Helpers shared by the library benchmarks: a stand-in model and synthetic audio/vectors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from model.audio import AudioConfig
from model.network import CSN, ModelSpec, NetConfig
from model.parts import EMBED_DIM, N_PARTS, SUBSPACE_DIM
from model.weights import save_weights

CPU_WIDTHS = (16, 32, 64, 128, 128)  # trainer preset "cpu"


def stand_in_weights(path: Path, widths=CPU_WIDTHS, n_mels: int = 64, sample_rate: int = 16000) -> Path:
    """Random-init weights of a given size: the compute of a trained model, not its quality."""
    torch.manual_seed(0)
    net = NetConfig(widths=tuple(widths), n_mels=n_mels)
    save_weights(path, CSN(net), ModelSpec(net=net, audio=AudioConfig(sample_rate=sample_rate, n_mels=n_mels)),
                 card={"note": "random init, for benchmarks"})
    return path


def synth_track(seconds: float, sr: int = 44100, seed: int = 0) -> np.ndarray:
    """(samples, 2) float32: bass, chords and noise hits, so decoders do real work."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr), dtype=np.float64) / sr
    f0 = 55.0 * 2 ** (rng.integers(0, 12) / 12)
    x = 0.25 * np.sin(2 * np.pi * f0 * t)
    for k in (1.25, 1.5, 2.0):
        x += 0.08 * np.sin(2 * np.pi * f0 * 4 * k * t + rng.uniform(0, 6))
    hits = (np.mod(t, 60 / rng.uniform(80, 160)) < 0.02)
    x += hits * rng.standard_normal(len(t)) * 0.3
    x = x.astype(np.float32)
    return np.stack([x, 0.9 * x], axis=1)


def write_tracks(folder: Path, n: int, fmt: str = "flac", min_s: float = 180, max_s: float = 300) -> list[Path]:
    """``n`` synthetic tracks ``track000.fmt``...; the same files for the same ``n`` whatever the
    machine (lengths drawn up front), written on all cores."""
    from concurrent.futures import ThreadPoolExecutor

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    lengths = [float(rng.uniform(min_s, max_s)) for _ in range(n)]
    out = [folder / f"track{i:03d}.{fmt}" for i in range(n)]

    def write(i: int) -> None:  # numpy and libsndfile release the GIL for most of this
        sf.write(out[i], synth_track(lengths[i], seed=i), 44100)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(write, range(n)))
    return out


def clustered_vectors(n: int, seed: int = 0, centres: int = 200, spread: float = 0.35) -> np.ndarray:
    """(n, 640) float32 with per-part cluster structure and isotropic spread: a stress case, far
    harder than real embeddings (each part fills all 128 dimensions, participation ratio ~84, and
    a track's 10th nearest neighbour is almost as far as a random track)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, EMBED_DIM), np.float32)
    for c in range(N_PARTS):
        cen = rng.standard_normal((centres, SUBSPACE_DIM)).astype(np.float32)
        sl = slice(c * SUBSPACE_DIM, (c + 1) * SUBSPACE_DIM)
        for s in range(0, n, 100_000):
            m = min(n, s + 100_000) - s
            out[s:s + m, sl] = cen[rng.integers(0, centres, m)] + spread * rng.standard_normal(
                (m, SUBSPACE_DIM)).astype(np.float32)
    return out


def model_like_vectors(n: int, seed: int = 0, centres: int = 200, within: float = 0.3,
                       spectra: Path | None = None) -> np.ndarray:
    """(n, 640) float32 drawn like the shipped model's track vectors of real music: per part a
    mixture of ``centres`` Gaussians in a random rotation, whose total covariance has the
    eigenvalues measured on real compositions (``bench/track_spectra.json``, participation
    ratio 5-9), ``within`` of it inside a cluster. With 200 centres and 0.3, 1,019 drawn tracks
    have nearest-neighbour ratios close to the real ones (the file holds both)."""
    import json

    doc = json.loads((spectra or Path(__file__).with_name("track_spectra.json")).read_text())
    rng = np.random.default_rng(seed)
    out = np.empty((n, EMBED_DIM), np.float32)
    for c, part in enumerate(doc["parts"].values()):
        sd = np.sqrt(np.asarray(part["eigenvalues"], np.float64))
        rot = np.linalg.qr(rng.standard_normal((SUBSPACE_DIM, SUBSPACE_DIM)))[0].astype(np.float32)
        cen = (rng.standard_normal((centres, SUBSPACE_DIM)) * sd * np.sqrt(1 - within)).astype(np.float32)
        sl = slice(c * SUBSPACE_DIM, (c + 1) * SUBSPACE_DIM)
        noise_sd = (sd * np.sqrt(within)).astype(np.float32)
        for s in range(0, n, 100_000):
            m = min(n, s + 100_000) - s
            z = cen[rng.integers(0, centres, m)] + rng.standard_normal((m, SUBSPACE_DIM), np.float32) * noise_sd
            out[s:s + m, sl] = z @ rot.T
    return out


VECTOR_KINDS = {"model": model_like_vectors, "isotropic": clustered_vectors}


def parse_params(ap, pairs: list[str]):
    """``--param KEY=VALUE`` arguments (repeatable) -> :class:`app.index.IndexParams` with those
    fields changed; an unknown field or a bad value is the parser's error."""
    import argparse
    import dataclasses

    from app.index import IndexParams

    assert isinstance(ap, argparse.ArgumentParser)
    params = IndexParams()
    for kv in pairs:
        key, _, value = kv.partition("=")
        if key not in params.__dataclass_fields__:
            ap.error(f"--param {kv}: IndexParams has no field {key!r}")
        kind = type(getattr(params, key))
        if kind is bool:  # bool("false") is True
            if value.lower() not in ("true", "false", "1", "0"):
                ap.error(f"--param {kv}: {key} is true or false")
            parsed = value.lower() in ("true", "1")
        else:
            try:
                parsed = kind(value)
            except ValueError:
                ap.error(f"--param {kv}: {key} takes a {kind.__name__}")
        params = dataclasses.replace(params, **{key: parsed})
    return params
