"""What the audio front end and the network cost a scan, per batch of analysis windows, on this
machine's CPU.

    python bench/front_end.py [--weights assets/partwise-default.safetensors] [--rounds 7]

Times, as medians over ``--rounds`` repeats, for one batch of the scan's windows (by default
as a scan cuts them: ``--batch`` 64 windows of ``--seconds``, by default the model's own window,
the length of its training pieces): ``log_mel`` computed row by row (as
:class:`model.audio.LogMel` does on a CPU) and over the whole batch at once (as it did
before); the network alone on the spectrograms, as the embedder runs it (``Embedder.net``: on
the CPU the folded, channels-last copy of :meth:`model.network.CSN.for_inference`) and as
trained, with the largest difference between their answers; and
:meth:`model.embedder.Embedder.embed_clips` (front end and network, what a scan pays per
batch). Both front-end forms must agree to float rounding; the benchmark checks that. Weights with the
pitch channel (``fit --pitch``) time its front end and network. Prints one JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this tree's code, not an installed one

import model.audio as audio  # noqa: E402
from model.embedder import Embedder  # noqa: E402


def _median_ms(fn, rounds: int) -> float:
    fn()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return round(statistics.median(times) * 1000, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="assets/partwise-default.safetensors")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=None, help="window length (default: the model's)")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()

    emb = Embedder.from_file(args.weights, device="cpu", batch_size=args.batch)
    args.seconds = args.seconds or emb.window
    cfg = emb.audio
    clips = 0.1 * torch.randn(args.batch, int(round(args.seconds * cfg.sample_rate)),
                              generator=torch.Generator().manual_seed(0))
    rows = audio.CPU_ROWS
    out = {"weights": args.weights, "n_fft": cfg.n_fft, "n_mels": cfg.n_mels, "pitch": cfg.pitch,
           "batch": args.batch, "seconds": args.seconds, "threads": torch.get_num_threads()}
    with torch.inference_mode():
        audio.CPU_ROWS = 10**9
        whole = audio.log_mel(clips, cfg)
        out["log_mel_whole_batch_ms"] = _median_ms(lambda: audio.log_mel(clips, cfg), args.rounds)
        audio.CPU_ROWS = rows
        by_row = audio.log_mel(clips, cfg)
        out["log_mel_by_rows_ms"] = _median_ms(lambda: audio.log_mel(clips, cfg), args.rounds)
        # the same computation; with several threads the batched products may round apart
        out["front_end_max_abs_diff"] = float((whole - by_row).abs().max())
        out["same_result"] = bool(torch.allclose(whole, by_row, rtol=0, atol=1e-5))
        out["network_ms"] = _median_ms(lambda: emb.net(by_row), args.rounds)
        # the model as trained (batch norms apart, contiguous layout), and how far the two agree
        out["network_as_trained_ms"] = _median_ms(lambda: emb.model(by_row), args.rounds)
        plain = emb.model(by_row)
        out["network_max_abs_diff"] = float((emb.net(by_row) - plain).abs().max())
        out["network_output_max_abs"] = float(plain.abs().max())
        out["embed_clips_ms"] = _median_ms(lambda: emb.embed_clips(clips), args.rounds)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
