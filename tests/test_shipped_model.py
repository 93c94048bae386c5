"""The shipped default model, checked on audio it never saw: demo songs rendered stem by stem.

A broken or mismatched export must never ship silently: a clean drum stem has to land in the
drums subspace, a clean bass stem in the bass subspace (the paper's Table 3 in miniature, read
through the model's own presence head), and a drums-focused search has to prefer a piece that
shares the query's drums over one that shares everything else. And the path users run, the
library's scan of the demo files, has to give what the one embedding path gives.
"""

import itertools
from functools import cache
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from app.focus import ABSENT
from app.library import Library
from assets import DEFAULT_WEIGHTS
from assets import DEMO as DEMO_ASSETS
from model.audioio import read_clips
from model.embedder import Embedder
from model.parts import N_PARTS, PARTS, part_slice
from trainer.data.render import bundled_font, render_stems
from trainer.data.slakh import inst_class_of, part_of_class

SONGS = ("d_e3m3.mid", "d_map01.mid", "d_dm06.mid", "d_dm27.mid")
SECONDS = 24.0


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    assert DEFAULT_WEIGHTS.is_file(), f"{DEFAULT_WEIGHTS} is missing: the app has no model"
    return Embedder.from_file(DEFAULT_WEIGHTS, device="cpu")


@cache
def parts_of(song: str, sr: int) -> np.ndarray:
    """(5, n) class signals of one demo song's first SECONDS, rendered with TimGM6mb."""
    midi = pretty_midi.PrettyMIDI(str(DEMO_ASSETS / song))
    stems = render_stems(midi, bundled_font(), sr, seconds=SECONDS)
    out = np.zeros((len(PARTS), len(stems[0])), np.float32)
    for inst, stem in zip(midi.instruments, stems, strict=True):
        out[part_of_class(inst_class_of(inst.program, inst.is_drum), inst.is_drum, inst.program)] += stem
    return out / max(1e-6, float(np.abs(out.sum(0)).max()) / 0.8)


def presence(embedder: Embedder, wave: np.ndarray) -> np.ndarray:
    return embedder.embed(wave, embedder.audio.sample_rate).presence


def test_the_scan_of_the_demo_files_is_the_embedding_path(embedder, tmp_path):
    """Scan four demo recordings as a user's library would; every stored vector, segment and
    presence is what :meth:`Embedder.embed_tracks` gives for the same windows, and each song
    has drums (all four have a drum part): the app does not call them absent."""
    files = [DEMO_ASSETS / f"{Path(s).stem}.opus" for s in SONGS]
    music = tmp_path / "music"
    music.mkdir()
    for f in files:
        (music / f.name).symlink_to(f)
    with Library(tmp_path / "lib", weights=DEFAULT_WEIGHTS, device="cpu") as lib:
        assert [p.failed for p in lib.scan([music])][-1] == 0
        tracks = {t.path.name: t for t in lib.tracks()}
        assert sorted(tracks) == sorted(f.name for f in files)
        ids, vecs = lib.track_vectors()
        policy = lib.policy
        for f in files:
            clips = read_clips(f, embedder.audio.sample_rate, policy.window, policy.max_windows)
            (want,) = embedder.embed_tracks([clips.clips], [clips.starts])
            t = tracks[f.name]
            segs, starts = lib.store.load_segments(lib.store.row(t.id))
            # the store keeps windows as int8 steps of each window's part scale: within half a
            # step (1/254 of the part's largest magnitude in that window)
            parts = np.abs(want.segments).reshape(len(segs), N_PARTS, -1)
            bound = np.repeat(parts.max(axis=2) / 254, parts.shape[2], axis=1)
            assert np.all(np.abs(segs - want.segments) <= bound * (1 + 1e-3) + 2e-5)
            np.testing.assert_allclose(starts, want.starts)
            # the index keeps track vectors as float16 (relative error under 5e-4)
            np.testing.assert_allclose(vecs[list(ids).index(t.id)], want.track, atol=1e-4, rtol=1e-3)
            np.testing.assert_allclose(t.presence, want.presence, atol=1e-4)
            assert t.presence[PARTS.index("drums")] > ABSENT, f"{f.name}: {t.presence}"


@pytest.mark.parametrize("part", ["drums", "bass"])
def test_clean_stems_land_in_their_own_subspace(embedder, part):
    sr = embedder.audio.sample_rate
    j = PARTS.index(part)
    hits = [int(np.argmax(presence(embedder, parts_of(s, sr)[j]))) == j for s in SONGS]
    assert sum(hits) >= 3, f"{part} stems landed in {hits}"


def test_drums_focus_prefers_the_shared_drum_part(embedder):
    """Query: song A's drums with song B's other parts. In the drums subspace it should lie
    nearer a later stretch of A's drums under C's other parts than D's drums under B's other
    parts, for most of the 24 ways to cast four demo songs as A, B, C and D (one casting is a
    coin toss for a model that separates drums 60-80 % of the time on real music; a subspace
    that hears the rest of the mix, or a broken export, wins about half of them)."""
    sr = embedder.audio.sample_rate
    half = int(SECONDS / 2 * sr)
    drums = PARTS.index("drums")

    @cache
    def drum_vec(drum_song: str, rest_song: str, first: bool) -> np.ndarray:
        seg = slice(0, half) if first else slice(half, 2 * half)
        rest = np.delete(parts_of(rest_song, sr), drums, axis=0).sum(0)
        wave = parts_of(drum_song, sr)[drums][seg] + rest[seg]
        return embedder.embed(wave, sr).track[part_slice("drums")]

    wins = []
    for a, b, c, d in itertools.permutations(SONGS):
        query = drum_vec(a, b, True)
        same_drums = drum_vec(a, c, False)
        same_rest = drum_vec(d, b, False)
        wins.append(bool(np.linalg.norm(query - same_drums) < np.linalg.norm(query - same_rest)))
    assert sum(wins) >= 16, f"the shared drums won {sum(wins)} of {len(wins)} castings"
