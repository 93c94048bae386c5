"""Benchmark: how long the full evaluation report takes on this machine.

Builds (or reuses, with ``--data``) a generated test split, writes random-init weights of the
``cpu`` training preset's size (CSN and five individual networks), runs ``partwise-train eval``'s
pipeline and reports wall and CPU seconds per stage, segments and pseudo pieces embedded, and the
load average (the machine may be shared). Prints JSON.

    python bench/bench_eval.py --tracks 30
    python bench/bench_eval.py --data data/synth --max-tracks 30 --full
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import torch

from model.audio import AudioConfig
from model.network import CSN, ModelSpec, NetConfig
from model.parts import PARTS
from model.weights import save_weights
from trainer.config import PRESETS
from trainer.evaluate.report import EvalConfig, run


def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def write_weights(folder: Path, preset: str, seed: int = 0) -> Path:
    """Random-init CSN + individual networks of a training preset's size; returns the CSN file."""
    p = PRESETS[preset]
    audio = AudioConfig(sample_rate=p.get("sample_rate", 22050), n_mels=p.get("n_mels", 128))
    torch.manual_seed(seed)
    spec = ModelSpec(net=NetConfig(widths=tuple(p.get("widths", (32, 64, 128, 256, 512))),
                                   n_mels=audio.n_mels), audio=audio)
    save_weights(folder / "best.safetensors", CSN(spec.net).eval(), spec)
    ind = ModelSpec(net=NetConfig(widths=tuple(p.get("ind_widths", (32, 64, 128, 256, 512))),
                                  n_mels=audio.n_mels, out_dim=128), audio=audio)
    for part in PARTS:
        save_weights(folder / "individual" / f"{part}.safetensors", CSN(ind.net).eval(), ind)
    return folder / "best.safetensors"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="an existing Slakh-layout dataset (default: build one)")
    ap.add_argument("--tracks", type=int, default=30, help="test tracks to build")
    ap.add_argument("--max-tracks", type=int)
    ap.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    ap.add_argument("--full", action="store_true", help="the paper's full protocol")
    ap.add_argument("--device")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = write_weights(tmp / "run", args.preset)
        rate = PRESETS[args.preset].get("sample_rate", 22050)
        data = Path(args.data) if args.data else None
        build_s = 0.0
        if data is None:
            from trainer.data import build_dataset

            t0 = time.perf_counter()
            data = build_dataset(tmp / "data", args.tracks, seed=11, splits=(0, 0, 1),
                                 workers=1, sample_rate=rate)
            build_s = time.perf_counter() - t0
        cfg = EvalConfig(max_tracks=args.max_tracks, plots=True,
                         **({"baselines_all_lengths": True, "max_pseudo_seconds": None}
                            if args.full else {}))
        load0 = os.getloadavg()
        cpu0, t0 = _cpu(), time.perf_counter()
        rep = run(data, weights, tmp / "report", individual=tmp / "run", config=cfg,
                  device=args.device, progress=False)
        wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
    print(json.dumps({
        "preset": args.preset, "full": args.full, "device": rep["environment"]["device"],
        "tracks": rep["counts"]["tracks"], "build_s": round(build_s, 1),
        "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
        "stages_s": {k: round(v, 1) for k, v in rep["timing"].items()},
        "segments": rep["counts"]["segments"],
        "pseudo_segments": sum(rep["counts"]["pseudo_segments"].values()),
        "torch_threads": torch.get_num_threads(), "cores": os.cpu_count(),
        "load_avg_before": [round(x, 2) for x in load0],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
    }, indent=2))


if __name__ == "__main__":
    main()
