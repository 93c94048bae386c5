"""Stems kept in memory (on the training device) and mixed into pseudo pieces on the fly."""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from model.parts import N_PARTS
from trainer.sampling import Piece, SegmentIndex, Source

log = logging.getLogger(__name__)


def audible(x: torch.Tensor, threshold_db: float) -> torch.Tensor:
    """(..., samples) -> (...) bool: time-average power above ``threshold_db`` dBFS (eq. 6)."""
    power = x.float().pow(2).mean(dim=-1)
    return 10 * torch.log10(power + 1e-12) > threshold_db


MAX_BOOST_DB = 12.0


def level(x: torch.Tensor, level_db: float, threshold_db: float) -> torch.Tensor:
    """Scale each audible clip (..., samples) to an RMS of ``level_db`` dBFS (boost capped at
    ``MAX_BOOST_DB``); inaudible clips are returned as they are."""
    db = 10 * torch.log10(x.pow(2).mean(dim=-1, keepdim=True) + 1e-12)
    # branch-free, so a CUDA bank never waits for the device inside the mixing loop
    gain_db = torch.where(db > threshold_db, torch.clamp(level_db - db, max=MAX_BOOST_DB), 0.0)
    return x * 10 ** (gain_db / 20)


# Where a stem's random EQ curve is set: log-spaced frequencies (Hz), the curve linear in dB
# between them along log-frequency and flat beyond the first and the last.
EQ_POINTS_HZ = (60.0, 150.0, 400.0, 1000.0, 2500.0, 6000.0)


def eq_response(gains_db: torch.Tensor, n: int, sample_rate: int) -> torch.Tensor:
    """(..., len(EQ_POINTS_HZ)) gains in dB -> (..., n // 2 + 1) real gains of an ``n``-point
    rfft's bins."""
    w = _eq_weights(n, sample_rate).to(gains_db.device)
    return 10 ** ((gains_db.float() @ w.T) / 20)


@functools.lru_cache(maxsize=8)
def _eq_weights(n: int, sample_rate: int) -> torch.Tensor:
    """Interpolation weights (bins, points): a curve in dB at the bins is weights @ gains."""
    freqs = np.log(np.maximum(np.fft.rfftfreq(n, 1.0 / sample_rate), 1.0))
    pts, eye = np.log(np.asarray(EQ_POINTS_HZ)), np.eye(len(EQ_POINTS_HZ))
    w = np.stack([np.interp(freqs, pts, eye[k]) for k in range(len(pts))], 1)
    return torch.as_tensor(w, dtype=torch.float32)


def equalize(x: torch.Tensor, gains_db: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Filter each clip (K, samples) by its smooth EQ curve ``gains_db`` (K, len(EQ_POINTS_HZ)):
    zero phase, by multiplying spectra (the curve is smooth, so its response is short and the
    circular wrap inaudible)."""
    n = x.shape[-1]
    spec = torch.fft.rfft(x.float(), dim=-1) * eq_response(gains_db, n, sample_rate)
    return torch.fft.irfft(spec, n=n, dim=-1)


class StemBank:
    """Per-track class signals (5, n) as float16 tensors, with an index of audible windows."""

    def __init__(self, parts: Iterable[np.ndarray], tempo_class: Sequence[int], sample_rate: int,
                 segment_seconds: float, hop_seconds: float, threshold_db: float,
                 device: str | torch.device = "cpu", names: Sequence[str] | None = None,
                 weight: Sequence[float] | None = None):
        self.sr = sample_rate
        self.win = int(round(segment_seconds * sample_rate))
        self.threshold_db = threshold_db
        self.device = torch.device(device)
        # how render mixes: all parts at once on a GPU, part by part on a CPU (faster there)
        self.batched = self.device.type != "cpu"
        self.names = list(names) if names is not None else [str(i) for i in range(len(tempo_class))]
        self.audio: list[torch.Tensor] = []
        self.twins: list[dict[int, torch.Tensor]] = []  # per track, part -> twin (set_twins)
        active: list[list[np.ndarray]] = []
        hop = int(round(hop_seconds * sample_rate))
        for p in parts:
            assert p.ndim == 2 and p.shape[0] == N_PARTS, p.shape
            if p.shape[1] < self.win:
                p = np.pad(p, ((0, 0), (0, self.win - p.shape[1])))
            t = torch.from_numpy(np.ascontiguousarray(p, dtype=np.float32))
            starts = np.arange(0, t.shape[1] - self.win + 1, hop)
            frames = t.unfold(1, self.win, hop)[:, : len(starts)]  # (5, n_win, win) view
            on = audible(frames, threshold_db).numpy()
            active.append([starts[on[j]] for j in range(N_PARTS)])
            self.audio.append(t.to(self.device, torch.float16))
        self.index = SegmentIndex(tempo_class=np.asarray(tempo_class), active=active, weight=weight)

    @classmethod
    def from_datasets(cls, datasets: Sequence, *, segment_seconds: float, hop_seconds: float,
                      max_tracks: int = 0, device: str | torch.device = "cpu",
                      progress: bool = True, threads: int = 0,
                      weights: Sequence[float] | None = None, twins: bool = False) -> StemBank:
        """Load one split of several datasets (same sample rate) into one bank.

        ``max_tracks`` caps each dataset; ``weights`` (one per dataset) make its tracks drawn
        that many times as often as a track of weight 1. ``twins``: load each track's twins too
        (:meth:`set_twins`; tracks without them have none). Files are decoded by a thread pool
        (libsndfile and the resampler release the GIL). Track names are prefixed with their
        dataset's folder name when there are several datasets.
        """
        from concurrent.futures import ThreadPoolExecutor

        from trainer.data.dataset import ACTIVITY_THRESHOLD_DB

        if not datasets:
            raise ValueError("no datasets to load")
        rates = {d.sample_rate for d in datasets}
        if len(rates) != 1:
            raise ValueError(f"datasets load at different sample rates: {sorted(rates)}")
        if weights is not None and len(weights) != len(datasets):
            raise ValueError(f"{len(weights)} dataset weights for {len(datasets)} datasets")
        jobs, tempo, names, track_weight = [], [], [], []
        for k, d in enumerate(datasets):
            n = len(d) if not max_tracks else min(max_tracks, len(d))
            for i in range(n):
                t = d.tracks[i]
                jobs.append((d, i))
                tempo.append(t.tempo_class)
                track_weight.append(1.0 if weights is None else float(weights[k]))
                names.append(f"{d.root.name}/{t.name}" if len(datasets) > 1 else t.name)
        t0 = time.perf_counter()
        threads = threads or min(8, (os.cpu_count() or 1) + 1)
        sr = datasets[0].sample_rate
        found: list[dict[int, np.ndarray]] = []

        def load(job):
            d, i = job
            # float16 at once: a bank's worth of float32 twins would not fit beside it
            tw = {k: v.astype(np.float16) for k, v in d.load_twins(i).items()} if twins else {}
            return d.load_parts(i), tw

        def parts_of(loaded):
            for p, tw in loaded:
                found.append(tw)
                yield p

        with ThreadPoolExecutor(threads) as pool:
            # consumed as they come, so only a few float32 tracks live beside the float16 bank
            loaded = tqdm(pool.map(load, jobs), total=len(jobs),
                          desc=f"load {datasets[0].split}", disable=not progress, unit="track")
            bank = cls(parts_of(loaded), tempo, sr, segment_seconds, hop_seconds, ACTIVITY_THRESHOLD_DB,
                       device, names=names, weight=track_weight)
        if twins:
            bank.set_twins(found)
        log.info("loaded %d %s tracks from %s (%.0f s of audio) in %.1f s", len(jobs),
                 datasets[0].split, ", ".join(d.root.name for d in datasets),
                 sum(a.shape[1] for a in bank.audio) / sr, time.perf_counter() - t0)
        return bank

    def __len__(self) -> int:
        return len(self.audio)

    def set_twins(self, twins: Sequence[dict[int, np.ndarray]]) -> None:
        """Each track's twins (part -> (n,) samples, as ``SlakhDataset.load_twins`` gives them),
        kept like the stems and marked in the index, so pieces can take a part from its twin
        (``Source.twin``). A twin is cut or padded to its track's length."""
        if len(twins) != len(self.audio):
            raise ValueError(f"{len(twins)} tracks of twins for a bank of {len(self.audio)}")
        self.twins = []
        for t, tw in enumerate(twins):
            n = self.audio[t].shape[1]
            kept = {}
            for part, x in tw.items():
                x = torch.as_tensor(np.asarray(x)[:n]).to(self.device, torch.float16)
                if len(x) < n:
                    x = torch.nn.functional.pad(x, (0, n - len(x)))
                kept[int(part)] = x
                self.index.twin[t, int(part)] = True
            self.twins.append(kept)

    def _slice(self, src: Source, part: int) -> torch.Tensor:
        if src.twin:
            return self.twins[src.track][part][src.start:src.start + self.win]
        return self.audio[src.track][part, src.start:src.start + self.win]

    def render(self, pieces: Sequence[Piece], gains_db: np.ndarray | None = None,
               level_db: float | None = None, eq_db: np.ndarray | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix pieces -> (clips (M, win) float32, present (M, 5) float32) on the bank's device.

        ``present`` is the norm-loss target: the part was mixed in and is audible in the clip.
        ``eq_db`` (M, 5, len(EQ_POINTS_HZ)) first colours each part by its own smooth EQ curve
        (:func:`equalize`). ``level_db`` then brings each audible part to that RMS level (dBFS,
        at most ``MAX_BOOST_DB`` louder), so a part that the renderer or the composer left quiet
        is not always buried under the others; ``gains_db`` (M, 5) then scales each part before
        mixing.
        """
        if self.batched or eq_db is not None:  # the EQ's FFTs cost least all at once
            return self._render_batched(pieces, gains_db, level_db, eq_db)
        m = len(pieces)
        clips = torch.zeros(m, self.win, device=self.device)
        present = torch.zeros(m, N_PARTS, device=self.device)
        gains = None if gains_db is None else torch.as_tensor(10 ** (gains_db / 20), dtype=torch.float32)
        for i, piece in enumerate(pieces):
            for j, src in enumerate(piece):
                if src is None:
                    continue
                x = self._slice(src, j).float()
                if level_db is not None:
                    x = level(x, level_db, self.threshold_db)
                if gains is not None:
                    x = x * float(gains[i, j])
                clips[i] += x
                present[i, j] = audible(x, self.threshold_db).float()
        return clips, present

    def _render_batched(self, pieces: Sequence[Piece], gains_db: np.ndarray | None,
                        level_db: float | None, eq_db: np.ndarray | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`render` with every mixed part of every piece at once: a few large operations
        instead of several small ones per part. On a GPU those small ones cost more in launches
        than in arithmetic; on a CPU the part-by-part loop wins, each part staying in cache."""
        m = len(pieces)
        clips = torch.zeros(m, self.win, device=self.device)
        present = torch.zeros(m, N_PARTS, device=self.device)
        rows, cols, xs = [], [], []
        for i, piece in enumerate(pieces):
            for j, src in enumerate(piece):
                if src is not None:
                    rows.append(i)
                    cols.append(j)
                    xs.append(self._slice(src, j))
        if not xs:
            return clips, present
        x = torch.stack(xs).float()  # (K, win)
        if eq_db is not None:
            eq = torch.as_tensor(np.asarray(eq_db)[rows, cols], dtype=torch.float32, device=self.device)
            x = equalize(x, eq, self.sr)
        if level_db is not None:
            x = level(x, level_db, self.threshold_db)
        if gains_db is not None:
            g = np.asarray(10 ** (np.asarray(gains_db)[rows, cols] / 20), dtype=np.float32)
            x = x * torch.from_numpy(g).to(self.device)[:, None]
        r = torch.as_tensor(rows, device=self.device)
        clips.index_add_(0, r, x)
        present[r, torch.as_tensor(cols, device=self.device)] = audible(x, self.threshold_db).float()
        return clips, present

    def stems(self, pieces: Sequence[Piece]) -> torch.Tensor:
        """Clean stems of the pieces: (M, 5, win) float32, zeros where a part is not mixed."""
        out = torch.zeros(len(pieces), N_PARTS, self.win, device=self.device)
        for i, piece in enumerate(pieces):
            for j, src in enumerate(piece):
                if src is not None:
                    out[i, j] = self._slice(src, j).float()
        return out

    def clean(self, sources: Sequence[Source], part: int) -> torch.Tensor:
        """One part's clean segments: (M, win) float32."""
        return torch.stack([self._slice(s, part).float() for s in sources])
