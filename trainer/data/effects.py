"""Per-stem production effects, drawn per song so that timbre alone does not name a part.

Each stem gets a chain (with pedalboard): a high-pass, low and high shelves and a bell EQ,
often a compressor, drive on guitars, sometimes a chorus, a send into the song's one room
(reverb, drawn once per song) and a level. The chain is a list of plain dicts (type and
parameters) drawn from (seed, track index, stem index), recorded in the stem's metadata and
applied at render time, so a build is reproducible and every stem says what was done to it.
The stem's loudness after the chain is matched to its loudness before it, then the level is
applied: drive and compression change the sound, not the balance.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

Chain = list[dict]


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def draw_room(rng: np.random.Generator) -> dict:
    """The song's room: one reverb every stem sends into (at its own level)."""
    return {"room_size": float(rng.uniform(0.1, 0.9)), "damping": float(rng.uniform(0.2, 0.9))}


def _eq(part: str, sample_rate: int, rng: np.random.Generator) -> Chain:
    low_cut = (20.0, 45.0) if part in ("bass", "drums") else (40.0, 220.0)
    top = 0.45 * sample_rate
    return [
        {"type": "HighpassFilter", "cutoff_frequency_hz": _log_uniform(rng, *low_cut)},
        {"type": "LowShelfFilter", "cutoff_frequency_hz": _log_uniform(rng, 100.0, 400.0),
         "gain_db": float(rng.uniform(-5.0, 5.0))},
        {"type": "PeakFilter", "cutoff_frequency_hz": _log_uniform(rng, 250.0, min(5000.0, top)),
         "gain_db": float(rng.uniform(-7.0, 7.0)), "q": float(rng.uniform(0.5, 2.5))},
        {"type": "HighShelfFilter", "cutoff_frequency_hz": _log_uniform(rng, min(2500.0, top / 2), min(9000.0, top)),
         "gain_db": float(rng.uniform(-8.0, 4.0))},
    ]


def draw_chain(part: str, room: dict, sample_rate: int, rng: np.random.Generator) -> Chain:
    """One stem's effects for a part of :data:`model.parts.PARTS`."""
    chain = _eq(part, sample_rate, rng)
    if part == "guitar" and rng.random() < 0.6:
        chain.append({"type": "Distortion", "drive_db": float(rng.uniform(6.0, 30.0))})
        chain.append({"type": "LowpassFilter", "cutoff_frequency_hz": _log_uniform(rng, 2500.0, min(9000.0, 0.45 * sample_rate))})
    if rng.random() < 0.75:
        chain.append({"type": "Compressor", "threshold_db": float(rng.uniform(-32.0, -8.0)),
                      "ratio": float(rng.uniform(1.5, 8.0)), "attack_ms": _log_uniform(rng, 1.0, 30.0),
                      "release_ms": _log_uniform(rng, 40.0, 400.0)})
    if part in ("guitar", "piano", "others") and rng.random() < 0.2:
        chain.append({"type": "Chorus", "rate_hz": float(rng.uniform(0.2, 2.0)),
                      "depth": float(rng.uniform(0.1, 0.4)), "mix": float(rng.uniform(0.2, 0.5))})
    wet = float(rng.uniform(0.0, 0.15 if part in ("bass", "drums") else 0.4))
    chain.append({"type": "Reverb", **room, "wet_level": wet, "dry_level": 1.0 - 0.5 * wet})
    chain.append({"type": "Level", "gain_db": float(rng.uniform(-8.0, 3.0))})
    return [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in fx.items()} for fx in chain]


def song_chains(parts: list[str], seed: int, index: int, sample_rate: int) -> list[Chain]:
    """A chain per stem (``parts[k]`` is stem k's part) for track ``index`` of a build."""
    room = draw_room(np.random.default_rng([seed, index, 77]))
    return [draw_chain(part, room, sample_rate, np.random.default_rng([seed, index, 77, k]))
            for k, part in enumerate(parts)]


def _plugin(fx: dict):
    import pedalboard

    params = {k: v for k, v in fx.items() if k != "type"}
    return getattr(pedalboard, fx["type"])(**params)


def apply_chain(x: np.ndarray, chain: Chain, sample_rate: int) -> np.ndarray:
    """(n,) float32 stem -> (n,) float32 with ``chain`` applied, loudness kept, then the level."""
    import pedalboard

    x = np.ascontiguousarray(x, dtype=np.float32)
    rms_in = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0
    if rms_in < 1e-9:
        return x
    board = pedalboard.Pedalboard([_plugin(fx) for fx in chain if fx["type"] != "Level"])
    y = board(x[None, :], sample_rate, reset=True)[0]
    rms_out = float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
    level = sum(fx["gain_db"] for fx in chain if fx["type"] == "Level")
    gain = (rms_in / max(rms_out, 1e-12)) * 10.0 ** (level / 20.0)
    return np.ascontiguousarray(y * np.float32(gain), dtype=np.float32)
