"""Regenerate the README screenshots: the real window on a library of generated tracks.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots.py [--weights FILE]

Without ``--weights`` (or when the shipped model is absent) it uses a tiny random network whose
batch-norm statistics are fitted to the generated audio: enough to give the map and the results
some structure, not a trained model. Writes docs/window.png, docs/map-bass.png, docs/timeline.png
(a moment search from the picked track's part timeline) and docs/failed.png.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from mutagen.flac import FLAC

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.library import DEFAULT_WEIGHTS, Library  # noqa: E402
from model.audio import AudioConfig, log_mel  # noqa: E402
from model.network import CSN, ModelSpec, NetConfig, calibrate_batch_norm  # noqa: E402
from model.weights import save_weights  # noqa: E402

RATE = 22050
ARTISTS = ["Low Tide", "Marrow", "The Ferns", "Quiet Engine", "Salt Choir", "Vela"]
WORDS = ["Night", "Drive", "Glass", "River", "Static", "Bloom", "Copper", "Echo", "Harbor",
         "Ember", "North", "Signal", "Velvet", "Hollow", "Sun", "Wire"]
KINDS = ["drums", "bass", "chord", "lead", "drums+bass", "bass+chord", "drums+chord",
         "drums+bass+chord", "drums+bass+lead", "chord+lead", "drums+lead", "bass+lead"]


def synth(kind: str, rng: np.random.Generator, seconds: float = 12.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    out = np.zeros_like(t)
    beat = 60 / rng.uniform(80, 150)
    if "drums" in kind:
        kick = np.exp(-((t % beat) / 0.04)) * np.sin(2 * np.pi * 55 * (t % beat))
        hat = np.exp(-(((t + beat / 2) % (beat / 2)) / 0.01)) * rng.normal(0, 1, len(t))
        out += 0.7 * kick + 0.25 * hat
    if "bass" in kind:
        notes = rng.uniform(40, 100, 8)
        f = notes[(t / (2 * beat)).astype(int) % 8]
        out += 0.45 * np.sign(np.sin(2 * np.pi * np.cumsum(f) / RATE)) * 0.5
    if "chord" in kind:
        root = rng.uniform(180, 360)
        for ratio in (1.0, 1.2599, 1.4983):
            out += 0.12 * np.sin(2 * np.pi * root * ratio * t) * (1 + 0.3 * np.sin(2 * np.pi * t / beat))
    if "lead" in kind:
        notes = rng.uniform(500, 1100, 6)
        f = notes[(t / beat).astype(int) % 6]
        out += 0.15 * np.sin(2 * np.pi * np.cumsum(f) / RATE) * np.exp(-((t % beat) / 0.3))
    out /= max(1e-6, np.abs(out).max()) / 0.8
    return np.stack([out, np.roll(out, 31)], axis=1).astype(np.float32)


def make_music(folder: Path, n: int, seed: int = 7) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        title = f"{rng.choice(WORDS)} {rng.choice(WORDS)}"
        artist = ARTISTS[int(rng.integers(len(ARTISTS)))]
        path = folder / artist / f"{i:03d} {title}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, synth(kind, rng), RATE)
        tags = FLAC(path)
        tags["title"] = title
        tags["artist"] = artist
        tags["album"] = f"{artist.split()[-1]} Sessions"
        tags.save()
    (folder / "notes.mp3").write_text("this is a text file, not audio")
    (folder / "cut.flac").write_bytes(b"fLaC\x00\x00\x00\x22" + bytes(40))


def calibrated_weights(path: Path, music: Path) -> Path:
    torch.manual_seed(0)
    net = NetConfig(widths=(8, 16, 16, 32, 32), n_mels=64)
    audio = AudioConfig(n_mels=64)
    model = CSN(net)
    clips = [sf.read(p, dtype="float32")[0][: 3 * RATE, 0] for p in sorted(music.rglob("*.flac"))[:40]]
    clips = [c for c in clips if len(c) == 3 * RATE]
    mel = log_mel(torch.from_numpy(np.stack(clips)), audio)
    calibrate_batch_norm(model, mel)
    save_weights(path, model, ModelSpec(net=net, audio=audio))
    return path


def wait(app, until, timeout: float = 300.0) -> None:
    end = time.monotonic() + timeout
    while not until():
        if time.monotonic() > end:
            raise TimeoutError("the window did not get there in time")
        app.processEvents()
        time.sleep(0.02)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--tracks", type=int, default=96)
    ap.add_argument("--library", type=Path, default=None,
                    help="an existing, scanned library to show (e.g. the demo library) instead "
                         "of generated tracks")
    ap.add_argument("--title", default="Night Drive", help="the track to query")
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    args = ap.parse_args()

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from app.ui.main_window import MainWindow

    work = Path(tempfile.mkdtemp(prefix="partwise-shots-"))
    app = QApplication(sys.argv[:1])
    if args.library is not None:
        lib = Library(args.library, weights=args.weights or DEFAULT_WEIGHTS)
    else:
        music = work / "Music"
        make_music(music, args.tracks)
        weights = args.weights or (DEFAULT_WEIGHTS if DEFAULT_WEIGHTS.is_file() else
                                   calibrated_weights(work / "tiny.safetensors", music))
        lib = Library(work / "library", weights=weights)
        list(lib.scan([music]))
    settings = QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat)
    w = MainWindow(lib, settings)
    w.resize(1440, 900)
    w.show()
    wait(app, lambda: w.snapshot is not None)
    title = args.title
    pick = next((t for t in w.snapshot.tracks if "drums+bass" in t.path.stem), w.snapshot.tracks[0])
    for t in w.snapshot.tracks:
        if t.title == title:
            pick = t
    w.focus_panel.set_focus((1, 1, 0, 0, 0), emit=False)
    w.select_track(pick.id)
    # the final map, not the quick linear preview shown while UMAP runs
    wait(app, lambda: w.results and w.map_space in w.maps and w.maps[w.map_space].final)
    w.results_view.selectRow(1)
    w.selected = w.results[1].track.id
    w._highlight()
    w.player_bar.title.setText(f"{w.results[1].track.title} — {w.results[1].track.artist}")
    for _ in range(20):
        app.processEvents()
    args.out.mkdir(parents=True, exist_ok=True)
    w.grab().save(str(args.out / "window.png"))

    w.focus_panel.solo(1)  # bass alone: the bass map
    wait(app, lambda: w.map_space == "bass" and "bass" in w.maps and w.maps["bass"].final
         and w.results)
    for _ in range(20):
        app.processEvents()
    w.map_view.grab().save(str(args.out / "map-bass.png"))

    # a moment search from the query track's part timeline: its middle third, all parts
    w.focus_panel.set_focus((1, 1, 1, 1, 1))  # the map follows: the whole mix
    w.select_track(pick.id)
    wait(app, lambda: w.results and w.timeline_track is not None and w.timeline_track.id == pick.id
         and w.map_space == w.wanted_space() and w.map_space in w.maps and w.maps[w.map_space].final)
    third, before = pick.duration / 3, w.results
    w.search_moment(pick.id, third, 2 * third)
    wait(app, lambda: w.results and w.results is not before)
    for _ in range(20):
        app.processEvents()
    w.grab().save(str(args.out / "timeline.png"))

    if lib.failures():
        w.tabs.setCurrentIndex(2)
        for _ in range(10):
            app.processEvents()
        w.tabs.grab().save(str(args.out / "failed.png"))
    w.shutdown()
    lib.close()
    print(f"wrote {args.out}/window.png, map-bass.png, timeline.png, failed.png (work files in {work})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
