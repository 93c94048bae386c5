"""Twins: a part's notes rendered again in another timbre, and their use in triplets."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from model.parts import N_PARTS, PARTS
from trainer.bank import StemBank
from trainer.data.cli import main as data_main
from trainer.data.dataset import SlakhDataset, read_metadata
from trainer.data.twins import TWINS_DIR, build_twins, read_twins, twin_program
from trainer.sampling import SegmentIndex, Source, TripletSampler, flatten

data_mod = pytest.importorskip("trainer.data.synth")
PIANO = PARTS.index("piano")


@pytest.fixture(scope="module")
def twinned(tmp_path_factory):
    root = tmp_path_factory.mktemp("twins") / "set"
    data_mod.build_dataset(root, n_tracks=8, seed=5, song_seconds=6, splits=(1.0, 0.0, 0.0), workers=1)
    summary = build_twins(root, parts=("piano", "guitar"), fonts="bundled", workers=1)
    return root, summary


def _chroma(x, sr, n=4096):
    """Unit pitch-class profile of a stem (bins 60-2000 Hz folded onto the 12 pitch classes)."""
    frames = x[: len(x) // n * n].reshape(-1, n) * np.hanning(n)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    f = np.fft.rfftfreq(n, 1 / sr)
    keep = (f > 60) & (f < 2000)
    pc = np.round(12 * np.log2(f[keep] / 440)).astype(int) % 12
    c = np.zeros(12)
    np.add.at(c, pc, power[:, keep].sum(axis=0))
    return c / np.linalg.norm(c)


def test_a_twin_plays_the_stems_notes_in_another_program_at_its_loudness(twinned):
    root, summary = twinned
    assert summary["failed"] == 0 and summary["built"] >= 1 and summary["stems"] >= 1
    checked = 0
    for track in sorted((root / "train").glob("Track*")):
        doc = read_twins(track)
        stems = read_metadata(track)["stems"]
        wanted = {k for k, s in stems.items() if s["part"] in ("piano", "guitar") and s["audio_rendered"]}
        assert doc is not None and set(doc["stems"]) <= wanted
        for key, tw in doc["stems"].items():
            own = stems[key]["program_num"]
            assert tw["program"] != own and tw["program"] // 8 == own // 8  # same family, other program
            assert tw["part"] == stems[key]["part"]
            a, sr = sf.read(track / "stems" / f"{key}.flac", dtype="float32")
            b, _ = sf.read(track / TWINS_DIR / f"{key}.flac", dtype="float32")
            assert len(a) == len(b)
            rms = lambda x: float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))  # noqa: E731
            db = 20 * np.log10(rms(b) / rms(a))
            assert abs(db) < 0.5 or (db < 0 and np.max(np.abs(b)) > 0.95)  # turned down only for its peaks
            assert _chroma(a, sr) @ _chroma(b, sr) > 0.75  # the same notes: the same pitch classes
            assert not np.allclose(a, b, atol=1e-3)  # and not the same sound
            checked += 1
    assert checked == summary["stems"]


def test_twins_resume_and_redraw_with_other_settings(twinned):
    root, summary = twinned
    again = build_twins(root, parts=("piano", "guitar"), fonts="bundled", workers=1)
    assert again["kept"] == summary["built"] + summary["kept"] + summary["none"] - again["none"]
    assert again["built"] == 0
    other = build_twins(root, parts=("piano", "guitar"), fonts="bundled", workers=1, seed=1)
    assert other["kept"] == 0
    # back to the first settings for the other tests in this module
    build_twins(root, parts=("piano", "guitar"), fonts="bundled", workers=1)


def test_a_dataset_loads_twins_per_part_at_the_tracks_length(twinned):
    root, _ = twinned
    ds = SlakhDataset(root, "train")
    for i in range(len(ds)):
        tw = ds.load_twins(i)
        assert set(tw) <= {PIANO, PARTS.index("guitar")}
        for x in tw.values():
            assert x.shape == (ds.load_parts(i).shape[1],) and x.dtype == np.float32
    bank = StemBank.from_datasets([ds], segment_seconds=2.0, hop_seconds=1.0, progress=False, twins=True)
    have = bank.index.twin
    assert have[:, PIANO].any() and not have[:, 0].any()
    t = int(np.flatnonzero(have[:, PIANO])[0])
    start = int(bank.index.active[t][PIANO][0])
    own = bank.stems([tuple(Source(t, start) if j == PIANO else None for j in range(N_PARTS))])
    twin = bank.stems([tuple(Source(t, start, twin=True) if j == PIANO else None for j in range(N_PARTS))])
    expect = torch.from_numpy(ds.load_twins(t)[PIANO][start:start + bank.win]).half().float()
    assert torch.equal(twin[0, PIANO], expect) and not torch.equal(twin[0, PIANO], own[0, PIANO])


def test_bad_twin_requests_are_refused(twinned, tmp_path, capsys):
    root, _ = twinned
    with pytest.raises(ValueError, match="twin parts"):
        build_twins(root, parts=("drums",), fonts="bundled", workers=1)
    assert data_main(["twins", str(root), "--font-set", "heldout", "--no-progress"]) == 1
    assert "kept for evaluation" in capsys.readouterr().err
    assert data_main(["twins", str(tmp_path / "nothing"), "--no-progress"]) == 1
    assert "no such split folder" in capsys.readouterr().err


def test_twin_program_stays_in_the_family_and_changes():
    rng = np.random.default_rng(0)
    for program in (0, 5, 7, 24, 33, 51, 127):
        got = {twin_program(program, rng) for _ in range(50)}
        assert program not in got and all(p // 8 == program // 8 for p in got)


def _index(twin_piano: bool):
    rng = np.random.default_rng(0)
    active = [[np.arange(0, 50_000, 1000) for _ in range(N_PARTS)] for _ in range(16)]
    twin = np.zeros((16, N_PARTS), dtype=bool)
    twin[:, PIANO] = twin_piano
    return SegmentIndex(tempo_class=rng.integers(0, 2, 16), active=active, twin=twin)


def test_positives_take_the_twin_and_nothing_else_does():
    s = TripletSampler(_index(True), keep_prob=0.9, aligned=0.5, twin=1.0, twin_parts=[PIANO])
    trips = s.draw(200, np.random.default_rng(1))
    for t in trips:
        aligned = t.anchor[t.cond].start == t.positive[t.cond].start
        for piece, is_pos in ((t.anchor, False), (t.positive, True), (t.negative, False)):
            for j, src in enumerate(piece):
                if src is not None:  # the twin only where the positive shares the anchor's time
                    assert src.twin == (is_pos and j == PIANO and t.cond == PIANO and aligned)
    assert any(t.positive[PIANO].twin for t in trips if t.cond == PIANO)
    groups = s.label_groups(40, 4, np.random.default_rng(2), other_time=0.5)
    seen = set()
    for g in groups:
        c = next(j for j in range(N_PARTS) if len({p[j] and p[j].track for p in g}) == 1 and g[0][j])
        for k, piece in enumerate(g):
            twins = [j for j, src in enumerate(piece) if src is not None and src.twin]
            same_time = piece[c].start == g[0][c].start
            assert twins == ([PIANO] if k > 0 and c == PIANO and same_time else [])
            seen.add((c == PIANO, k > 0 and same_time, bool(twins)))
    assert (True, True, True) in seen


def test_without_twins_the_draws_are_unchanged():
    plain = TripletSampler(_index(False), keep_prob=0.9, aligned=0.5)
    off = TripletSampler(_index(True), keep_prob=0.9, aligned=0.5, twin=0.0, twin_parts=[PIANO])
    none_built = TripletSampler(_index(False), keep_prob=0.9, aligned=0.5, twin=1.0, twin_parts=[PIANO])
    draws = [flatten(x.draw(60, np.random.default_rng(3))) for x in (plain, off, none_built)]
    assert draws[0] == draws[1] == draws[2]
    with pytest.raises(ValueError, match="probability"):
        TripletSampler(_index(True), twin=1.5)


def test_fit_uses_twins_and_refuses_data_without_them(twinned, tmp_path):
    from trainer.config import resolve
    from trainer.stages import Run

    root, _ = twinned
    # validation needs tracks too: a second dataset without twins holds them
    plain = tmp_path / "plain"
    data_mod.build_dataset(plain, n_tracks=12, seed=6, song_seconds=6, splits=(0.5, 0.5, 0.0), workers=1)
    cfg = resolve("smoke", ["threads=1", "use_pretrain=False", "epochs=1", "triplets_per_epoch=8",
                            "batch=4", "twin_prob=1.0", "twin_parts=piano,guitar"])
    Run(cfg, [root, plain], tmp_path / "run", progress=False).fit()
    rows = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows if r["stage"] == "main"] == [1]
    with pytest.raises(ValueError, match="data twins"):
        Run(cfg, [plain], tmp_path / "run2", progress=False).fit()
    with pytest.raises(ValueError, match="twin_parts"):
        resolve("smoke", ["twin_prob=0.5", "twin_parts=drums"])
