"""Benchmark: how fast this machine builds the Slakh-layout training data.

Builds the same generated songs with 1 and 2 worker processes (``--workers``), reports seconds
of audio per wall second and per CPU second (the machine may be shared: the load average is
recorded), the time split between composing, rendering and writing, the on-disk size per
track, and the projected time and size of a 1,500-track set (Slakh2100 redux size).
Prints JSON.

    python bench/bench_data_build.py --tracks 12 --workers 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from model.audio import SAMPLE_RATE
from trainer.data import build_dataset, render_midi_folder
from trainer.data.compose import generate_song
from trainer.data.render import FONT_SETS, FontSet, render_stems
from trainer.data.synth import BUILD_FILE, song_seed
from trainer.data.writer import write_track

SLAKH_REDUX_TRACKS = 1500


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the build's workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def phases(n: int, seed: int, seconds: float | None, font_set: FontSet) -> dict:
    """Compose / render / write times of ``n`` songs in this process (fonts already loaded)."""
    fonts = font_set.fonts
    t = {"compose": 0.0, "render": 0.0, "write": 0.0, "audio_s": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            t0 = time.perf_counter()
            song = generate_song(song_seed(seed, i), seconds)
            t1 = time.perf_counter()
            font = fonts[i % len(fonts)]
            stems = render_stems(song.midi, font, SAMPLE_RATE, song.seconds)
            t2 = time.perf_counter()
            write_track(Path(tmp) / f"Track{i:05d}", song.midi, stems, SAMPLE_RATE,
                        {"tempo": song.tempo, "soundfont": font.name, "source": "synth"})
            t3 = time.perf_counter()
            t["compose"] += t1 - t0
            t["render"] += t2 - t1
            t["write"] += t3 - t2
            t["audio_s"] += song.seconds
    total = t["compose"] + t["render"] + t["write"]
    return {k: round(v, 3) for k, v in t.items()} | {
        "share": {k: round(t[k] / total, 3) for k in ("compose", "render", "write")}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tracks", type=int, default=12)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=None,
                    help="song length (default: the generator's 45-90 s)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--midi", type=Path, default=None,
                    help="also time render-midi on the first --midi-files files of this folder")
    ap.add_argument("--midi-files", type=int, default=8)
    ap.add_argument("--font-set", choices=sorted(FONT_SETS), default="gm3",
                    help="the SoundFonts to render with (default gm3)")
    args = ap.parse_args(argv)
    fonts = FontSet.named(args.font_set)

    report: dict = {"tracks": args.tracks, "song_seconds": args.seconds or "45-90 (default)",
                    "cpu_count": os.cpu_count(), "sample_rate": SAMPLE_RATE,
                    "fonts": [p.name for p in fonts.fonts], "runs": []}
    report["phases_1proc"] = phases(min(args.tracks, 4), args.seed + 1000, args.seconds, fonts)
    for w in args.workers:
        tmp = Path(tempfile.mkdtemp(prefix="partwise-bench-"))
        try:
            cpu0 = _cpu()
            t0 = time.perf_counter()
            build_dataset(tmp / "ds", args.tracks, args.seed, song_seconds=args.seconds, workers=w,
                          fonts=fonts)
            wall = time.perf_counter() - t0
            cpu = _cpu() - cpu0
            rec = json.loads((tmp / "ds" / BUILD_FILE).read_text())
            audio = rec["seconds_built"]
            size = _du(tmp / "ds")
            speed = audio / wall
            mean_len = audio / args.tracks
            report["runs"].append({
                "workers": w, "wall_s": round(wall, 2), "audio_s": round(audio, 1),
                "audio_s_per_s": round(speed, 1),
                "cpu_s": round(cpu, 2),
                "audio_s_per_cpu_s": round(audio / cpu, 1),
                "load_avg_1min": round(os.getloadavg()[0], 2),
                "mb_per_track": round(size / args.tracks / 1e6, 2),
                "kb_per_audio_s": round(size / audio / 1e3, 1),
                "projected_1500_tracks_min": round(SLAKH_REDUX_TRACKS * mean_len / speed / 60, 1),
                # on an otherwise idle machine of this size, all cores busy
                "projected_1500_tracks_min_idle_machine": round(
                    SLAKH_REDUX_TRACKS * mean_len / (audio / cpu * (os.cpu_count() or 1)) / 60, 1),
                "projected_1500_tracks_gb": round(SLAKH_REDUX_TRACKS * size / args.tracks / 1e9, 2),
            })
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.midi is not None:
        report["render_midi"] = bench_midi(args.midi, args.midi_files, max(args.workers), fonts)
    print(json.dumps(report, indent=2))
    return 0


def bench_midi(folder: Path, n_files: int, workers: int, fonts: FontSet) -> dict:
    """render-midi on a copy of the first ``n_files`` MIDI files of ``folder``."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".mid", ".midi"))[:n_files]
    tmp = Path(tempfile.mkdtemp(prefix="partwise-bench-midi-"))
    try:
        (tmp / "src").mkdir()
        for f in files:
            shutil.copy(f, tmp / "src" / f.name)
        cpu0, t0 = _cpu(), time.perf_counter()
        render_midi_folder(tmp / "src", tmp / "ds", workers=workers, fonts=fonts)
        wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
        rec = json.loads((tmp / "ds" / BUILD_FILE).read_text())
        audio = rec["seconds_built"]
        return {"files": len(files), "built": rec["built"], "skipped": len(rec["skipped"]),
                "workers": workers, "wall_s": round(wall, 2), "audio_s": round(audio, 1),
                "audio_s_per_s": round(audio / wall, 1), "audio_s_per_cpu_s": round(audio / cpu, 1),
                "mb_per_audio_min": round(_du(tmp / "ds") / audio * 60 / 1e6, 2)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
