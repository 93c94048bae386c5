import json

import numpy as np
import pytest
import torch

from model.embedder import Embedder
from model.parts import PARTS
from model.weights import WeightsError, load_weights
from trainer.config import resolve
from trainer.curves import DEFAULT_SHOW, read_log, render
from trainer.export import export
from trainer.fit import main
from trainer.stages import Run

data_mod = pytest.importorskip("trainer.data.synth")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return data_mod.build_dataset(root / "set", n_tracks=20, seed=3, song_seconds=8,
                                  splits=(0.6, 0.2, 0.2), workers=1)


def _smoke(**kw):
    over = [f"{k}={v}" for k, v in kw.items()]
    return resolve("smoke", ["threads=1", *over])


def test_smoke_run_lowers_its_loss(tiny_data, tmp_path):
    cfg = _smoke(use_pretrain=False, epochs=6, triplets_per_epoch=16, lr=3e-3, batch=8)
    Run(cfg, tiny_data, tmp_path / "run", progress=False).fit()
    rows = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    main_rows = [r for r in rows if r["stage"] == "main"]
    assert len(main_rows) == 6
    first, last = main_rows[0]["loss"], min(r["loss"] for r in main_rows[-3:])
    assert last < first
    assert {"triplet", "triplet_add", "norm", "val_acc", "data_s", "compute_s"} <= set(main_rows[0])


def test_full_pipeline_resume_and_export(tiny_data, tmp_path):
    """Paused after two epochs, resumed: same steps and same weights as one straight run."""
    straight = tmp_path / "straight"
    Run(_smoke(), tiny_data, straight, progress=False).fit()
    paused = tmp_path / "paused"
    assert main(["--data", str(tiny_data), "--preset", "smoke", "--out", str(paused), "--quiet",
                 "--threads=1", "--max_epochs_this_run=4"]) == 0
    assert not (paused / "main.done").exists()
    assert main(["--data", str(tiny_data), "--out", str(paused), "--resume", "--quiet",
                 "--max_epochs_this_run=0"]) == 0
    for run in (straight, paused):
        assert all((run / "individual" / f"{p}.safetensors").exists()
                   for p in ("drums", "bass", "piano", "guitar", "others"))
        assert (run / "pretrained.safetensors").exists() and (run / "main.done").exists()
    steps = lambda run: [(r["stage"], r["step"]) for r in  # noqa: E731
                         map(json.loads, (run / "log.jsonl").read_text().splitlines())]
    assert steps(paused) == steps(straight)
    a = torch.load(straight / "ckpt-main.pt", weights_only=True)["modules"]["net"]
    b = torch.load(paused / "ckpt-main.pt", weights_only=True)["modules"]["net"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    metrics = json.loads((paused / "metrics.json").read_text())
    assert set(metrics["table3_stem_identification"]) == {"drums", "bass", "piano", "guitar", "others"}
    # a split this small (every draw would hold every label) is measured on every pair
    assert metrics["table2_plan"] == "every" and metrics["table2_draws"] == 1
    assert set(metrics["table2_std"]) == set(PARTS)
    # the effective dimension of every subspace, epoch by epoch, for every stage
    dims = metrics["effective_dimension"]
    assert [r["epoch"] for r in dims["main"]] == [1, 2, 3]
    assert set(dims["main"][0]) == {"epoch", *PARTS}
    assert {"dim"} <= set(dims["individual:bass"][0])
    assert {f"target_{p}" for p in PARTS} <= set(dims["pretrain"][0])
    finite = [v for r in dims["main"] for k, v in r.items() if k != "epoch" and v == v]
    assert finite and all(1.0 - 1e-6 <= v <= 128.0 for v in finite)
    # 'partwise-train curves' reads the real log: a table per stage, the main stage's per part
    blocks = render(read_log(paused), DEFAULT_SHOW).strip().split("\n\n")
    heads = [b.splitlines()[0].split(":")[0] for b in blocks]
    assert heads == ["stage individual"] * 5 + ["stage pretrain", "stage main"]
    assert "val_dim d/b/p/g/o" in blocks[-1].splitlines()[1] and len(blocks[-1].splitlines()) == 2 + 3
    # export: a weights file the app's Embedder loads, with the norm biases in its card
    out = tmp_path / "model.safetensors"
    export(paused, out)
    emb = Embedder.from_file(out, device="cpu")
    vec = emb.embed(np.random.default_rng(0).normal(0, 0.1, 16000 * 3).astype(np.float32), 16000,
                    window=1.0)
    assert vec.segments.shape == (3, 640)
    card = json.loads(out.with_suffix(".json").read_text())["card"]
    assert len(card["norm_bias"]) == 5 and card["config"]["preset"] == "smoke"
    with pytest.raises(WeightsError, match="no moving average"):  # trained without --ema_decay
        export(paused, tmp_path / "ema.safetensors", ema=True)
    # each fit process left its chunk, and the card carries them: the paused one ended in the
    # middle of a stage, the resumed one trained on from there with its own arguments
    chunks = card["training"]["chunks"]
    assert len(chunks) == 2 and chunks[1]["args"][-1] == "--max_epochs_this_run=0"
    assert all(c["wall_minutes"] >= 0 and c["started"].endswith("+00:00") for c in chunks)
    first, second = (c["stages"] for c in chunks)
    assert [first[s]["first_epoch"] for s in ("individual:drums", "pretrain")] == [1, 1]
    resumed = [s for s in second if s in first]  # the stage the pause cut, trained on
    assert resumed and all(second[s]["first_epoch"] == first[s]["last_epoch"] + 1 for s in resumed)
    assert second["main"]["last_epoch"] == 3 and 1 <= second["main"]["best_epoch"] <= 3


def test_non_empty_run_folder_needs_resume(tiny_data, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x").write_text("")
    assert main(["--data", str(tiny_data), "--out", str(tmp_path / "run"), "--preset", "smoke"]) == 1


def test_overrides_are_checked():
    assert resolve("cpu", ["--epochs=3", "widths=8,8,8,8,8"]).widths == (8, 8, 8, 8, 8)
    with pytest.raises(ValueError, match="bad override"):
        resolve("cpu", ["nonsense=1"])


@pytest.mark.slow
def test_ddp_under_torchrun_on_cpu(tiny_data, tmp_path):
    """Two processes (gloo) train one model; only rank 0 writes the run."""
    import shutil
    import subprocess
    import sys

    torchrun = shutil.which("torchrun") or str(__import__("pathlib").Path(sys.executable).parent / "torchrun")
    out = tmp_path / "ddp"
    proc = subprocess.run([torchrun, "--nproc_per_node=2", "-m", "trainer", "fit", "--data",
                           str(tiny_data), "--preset", "smoke", "--out", str(out), "--quiet",
                           "--threads=1", "--device=cpu"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = (out / "log.jsonl").read_text().splitlines()
    assert sum('"stage": "main"' in r for r in rows) == 3  # one writer, not two
    assert (out / "best.safetensors").exists()


def test_a_process_per_gpu_at_most(monkeypatch):
    """torchrun with more processes on a node than it has GPUs: a clear error before any rank
    waits for the others (two ranks on one GPU would stall or fail inside NCCL)."""
    from trainer.loop import setup_env

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for k, v in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(RuntimeError, match=r"nproc_per_node=1.*--device=cpu"):
        setup_env(resolve("smoke", ["device=cuda"]))


def test_reopen_a_finished_stage_trains_on(tiny_data, tmp_path):
    run = tmp_path / "run"
    args = ["--data", str(tiny_data), "--out", str(run), "--quiet", "--threads=1"]
    assert main([*args, "--preset", "smoke", "--epochs=1"]) == 0
    assert main([*args, "--resume", "--reopen", "pretrain", "--pre_epochs=2", "--epochs=1"]) == 0
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    pre = [r["epoch"] for r in rows if r["stage"] == "pretrain"]
    assert pre == [1, 2]  # continued from its checkpoint, not restarted
    assert [r["epoch"] for r in rows if r["stage"] == "main"] == [1]  # redone once, old rows gone
    assert (run / "main.done").exists() and (run / "best.safetensors").exists()


def test_lr_decays_over_the_time_budget_when_it_runs_out_first():
    from trainer.loop import lr_at

    assert lr_at(0, 1000, 1.0, 0) == pytest.approx(1.0)
    assert lr_at(10, 1000, 1.0, 0, time_frac=1.0) == pytest.approx(0.1)
    assert lr_at(10, 1000, 1.0, 0, time_frac=0.5) == pytest.approx(0.55)
    assert lr_at(1000, 1000, 1.0, 0, time_frac=0.2) == pytest.approx(0.1)  # steps ran out first
    assert lr_at(0, 1000, 1.0, 100) == pytest.approx(0.01)  # warm-up from the first step
    # a stage restarted with 70 % of its budget spent warms up to its schedule's value
    assert lr_at(49, 1000, 1.0, 100, time_frac=0.7) == pytest.approx(0.5 * lr_at(200, 1000, 1.0, 0, 0.7))
    assert lr_at(99, 1000, 1.0, 100, time_frac=0.7) <= lr_at(100, 1000, 1.0, 100, time_frac=0.7)


def test_two_datasets_are_pooled_and_validated_apart(tiny_data, tmp_path):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(tiny_data, other)
    # a third set with training tracks only: measured as nothing, not as an empty plan
    train_only = data_mod.build_dataset(tmp_path / "trainonly", n_tracks=3, seed=5, song_seconds=8,
                                        splits=(1.0, 0.0, 0.0), workers=1)
    for split in ("validation", "test"):  # as an excerpt set has them: folders without tracks
        (train_only / split).mkdir(exist_ok=True)
    rc = main(["--data", str(tiny_data), "--data", str(other), "--data", str(train_only),
               "--preset", "smoke", "--out", str(tmp_path / "run"), "--quiet", "--threads=1",
               "--use_pretrain=0", "--epochs=1", "--data_weights=other:3", "--part_weights=piano:2",
               "--eq_db=6"])
    assert rc == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())["data"]
    assert summary["root"] == f"{tiny_data.name}+other+trainonly"
    assert [d.get("draw_weight") for d in summary["datasets"]] == [1.0, 3.0, 1.0]
    assert summary["train_tracks"] == sum(d["train_tracks"] for d in summary["datasets"]) == 27
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics["datasets"]) == {tiny_data.name, "other", "trainonly"}
    assert metrics["datasets"]["trainonly"] == {"split": "validation", "tracks": 0, "segment_seconds": 1.0}
    assert metrics["table3_stem_identification"] == \
        metrics["datasets"][tiny_data.name]["table3_stem_identification"]
    assert main(["--data", str(tmp_path / "missing"), "--data", str(other), "--out",
                 str(tmp_path / "run2")]) == 1
    assert main(["--data", str(tiny_data), "--data", str(other), "--preset", "smoke", "--out",
                 str(tmp_path / "run3"), "--quiet", "--data_weights=freedoom:3"]) == 1


def test_training_data_voiced_by_a_heldout_font_is_refused(tmp_path, caplog):
    from trainer.data.render import bundled_font

    # any font file under a held-out font's name is recorded as that font
    font = tmp_path / "MuseScore_General_Full.sf3"
    font.write_bytes(bundled_font().read_bytes())
    data = data_mod.build_dataset(tmp_path / "heard", n_tracks=6, seed=3, song_seconds=4,
                                  splits=(0.6, 0.2, 0.2), workers=1, fonts=[font])
    assert main(["--data", str(data), "--preset", "smoke", "--out", str(tmp_path / "run"),
                 "--quiet", "--threads=1"]) == 1
    assert "heard: its training split was rendered with MuseScore_General_Full.sf3" in caplog.text
    assert not (tmp_path / "run" / "main.done").exists()


def test_part_weights_are_read_by_part_name():
    from trainer.config import part_weights

    assert part_weights("") is None and part_weights("drums:1") is None
    assert part_weights("piano:2, bass:0.5") == [1.0, 0.5, 2.0, 1.0, 1.0]
    for bad in ("vocals:2", "piano:0", "piano", "piano:2,piano:3"):
        with pytest.raises(ValueError, match="part_weights"):
            resolve("smoke", [f"--part_weights={bad}"])
    assert resolve("smoke", ["--part_weights=guitar:2"]).part_weights == "guitar:2"


def test_data_weights_are_read_by_dataset_name():
    from trainer.config import dataset_weights, parse_data_weights

    assert parse_data_weights("") == {}
    assert parse_data_weights("freedoom:4, synth600:0.5") == {"freedoom": 4.0, "synth600": 0.5}
    assert dataset_weights("freedoom:4", ["pop909x80", "freedoom"]) == [1.0, 4.0]
    assert dataset_weights("freedoom:1", ["pop909x80", "freedoom"]) is None
    with pytest.raises(ValueError, match="not among the datasets"):
        dataset_weights("slakh:2", ["pop909x80", "freedoom"])
    for bad in ("freedoom", "freedoom:0", "freedoom:-1", "freedoom:x", ":2", "a:1,a:2", "a:inf"):
        with pytest.raises(ValueError, match="data_weights"):
            resolve("smoke", [f"--data_weights={bad}"])
    assert resolve("smoke", ["--data_weights=freedoom:4"]).data_weights == "freedoom:4"


def test_subspace_dims_see_a_collapse():
    from trainer.stages import subspace_dims

    g = torch.Generator().manual_seed(0)
    emb = torch.randn(400, 640, generator=g)
    # bass collapses onto one direction whose length varies (a loudness-like number)
    emb[:, 128:256] = torch.rand(400, 1, generator=g) * torch.randn(1, 128, generator=g)
    present = torch.ones(400, 5)
    present[:200, 2] = 0  # piano measured only where it is present
    dims = subspace_dims(emb, present, norms=True)
    assert dims["val_dim_bass"] == pytest.approx(1.0, abs=1e-4)
    assert dims["val_dim_drums"] > 60.0 and dims["val_dim_piano"] > 40.0
    assert dims["val_norm_drums"] == pytest.approx(emb[:, :128].norm(dim=1).mean().item())


def test_solo_identification_reads_the_longest_subspace():
    from trainer.stages import solo_identification

    emb = torch.zeros(6, 640)
    present = torch.zeros(6, 5)
    for i, (truth, longest) in enumerate([(0, 0), (0, 0), (0, 3), (2, 2), (2, 4), (2, 2)]):
        present[i, truth] = 1.0
        emb[i, 128 * longest] = 2.0
        emb[i, 128 * truth + 1] = 1.0
    row = solo_identification(emb, present)
    assert row["val_solo_id_drums"] == pytest.approx(2 / 3)
    assert row["val_solo_id_piano"] == pytest.approx(2 / 3)
    assert "val_solo_id_bass" not in row  # no bass clip: no figure, not a zero
    assert row["val_solo_id"] == pytest.approx(2 / 3)


def test_solo_rows_feed_the_norm_loss_only():
    from types import SimpleNamespace

    from model.losses import NormLoss, masked_triplet_loss
    from trainer.sampling import Triplet

    g = torch.Generator().manual_seed(1)
    trip = [Triplet((), (), (), cond=c) for c in (0, 3)]  # no additional triplet
    emb = torch.randn(6 + 3, 640, generator=g)  # two triplets' rows, then three solo rows
    present = (torch.rand(9, 5, generator=g) > 0.5).float()
    host = SimpleNamespace(cfg=_smoke(spread_lambda=0.0))
    norm = NormLoss()
    out = Run._main_losses(host, trip, emb, present, norm)
    assert out["norm"].item() == pytest.approx(norm(emb, present).item())
    assert out["norm"].item() != pytest.approx(norm(emb[:6], present[:6]).item())
    want = masked_triplet_loss(emb[0:6:3], emb[1:6:3], emb[2:6:3], torch.tensor([0, 3]),
                               host.cfg.margin)
    assert out["triplet"].item() == pytest.approx(want.item())


def test_training_triplet_accuracy_per_part():
    from types import SimpleNamespace

    from model.losses import NormLoss
    from trainer.sampling import Triplet

    conds = (0, 2, 2, 2, 4)
    trip = [Triplet((), (), (), cond=c) for c in conds]
    emb = torch.zeros(15, 640)
    # piano's three triplets: the positive nearer than the negative, farther, a tie
    for i, (d_ap, d_an) in enumerate(((1.0, 2.0), (1.0, 3.0), (3.0, 1.0), (0.0, 0.0), (1.0, 5.0))):
        c = conds[i]
        emb[3 * i + 1, c * 128] = d_ap
        emb[3 * i + 2, c * 128] = d_an
    out = Run._main_losses(SimpleNamespace(cfg=_smoke(spread_lambda=0.0)), trip, emb,
                           torch.ones(15, 5), NormLoss())
    accs = {k: v.item() for k, v in out.items() if k.startswith("train_acc_")}
    # a tie is not ranked right; bass and guitar had no triplet this step, so no figure
    assert accs == pytest.approx({"train_acc_drums": 1.0, "train_acc_piano": 1 / 3, "train_acc_others": 1.0})
    assert not any(v.requires_grad for k, v in out.items() if k.startswith("train_acc_"))


def test_solo_id_term_reads_every_row_with_one_part():
    from types import SimpleNamespace

    from model.losses import NormLoss, solo_id_loss
    from trainer.sampling import Triplet

    g = torch.Generator().manual_seed(2)
    trip = [Triplet((), (), (), cond=c) for c in (1, 2)]
    emb = torch.randn(6 + 4, 640, generator=g)
    present = torch.eye(5)[torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3, 4])]
    present[0, 4] = 1.0  # a triplet row with two parts: not read
    norm = NormLoss()
    off = Run._main_losses(SimpleNamespace(cfg=_smoke(spread_lambda=0.0)), trip, emb, present, norm)
    on = Run._main_losses(SimpleNamespace(cfg=_smoke(spread_lambda=0.0, solo_id_lambda=0.5)),
                          trip, emb, present, norm)
    assert "solo_id" not in off
    assert on["solo_id"].item() == pytest.approx(solo_id_loss(emb[1:], present[1:]).item())
    assert on["loss"].item() == pytest.approx(off["loss"].item() + 0.5 * on["solo_id"].item())


def test_solo_rows_reach_the_norm_loss_and_validation_logs_table3(tiny_data, tmp_path):
    cfg = _smoke(use_pretrain=False, epochs=1, solo_rows=4, val_solos=20)
    Run(cfg, tiny_data, tmp_path / "run", progress=False).fit()
    rows = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    main_rows = [r for r in rows if r["stage"] == "main"]
    assert main_rows and 0.0 <= main_rows[0]["val_solo_id"] <= 1.0
    assert any(k.startswith("val_solo_id_") for k in main_rows[0])


def test_main_stage_keeps_a_moving_average_of_network_and_presence_biases(tiny_data, tmp_path):
    cfg = _smoke(use_pretrain=False, epochs=1, ema_decay=0.9)
    Run(cfg, tiny_data, tmp_path / "run", progress=False).fit()
    blob = torch.load(tmp_path / "run" / "ckpt-main.pt", weights_only=True)
    assert set(blob["ema"]) == {"net", "norm"}
    raw, avg = blob["modules"]["net"], blob["ema"]["net"]
    assert any(not torch.equal(raw[k], avg["module." + k]) for k in raw if raw[k].is_floating_point())
    best = load_weights(tmp_path / "run" / "best.safetensors")
    saved = best.model.state_dict()
    assert all(torch.equal(saved[k], avg["module." + k]) for k in saved if saved[k].is_floating_point())
    assert best.card["config"]["ema_decay"] == 0.9


def test_centred_pretraining_targets_and_the_spread_term(tiny_data, tmp_path):
    cfg = _smoke(pre_center=True, spread_lambda=0.2, epochs=1)
    Run(cfg, tiny_data, tmp_path / "run", progress=False).fit()
    rows = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    pre = [r for r in rows if r["stage"] == "pretrain"]
    assert pre and all(f"target_dim_{p}" in pre[0] for p in PARTS)
    assert (tmp_path / "run" / "pretrained.safetensors").exists()
    main_rows = [r for r in rows if r["stage"] == "main"]
    assert main_rows and 0.0 <= main_rows[0]["spread"] <= 1.0


def test_pretraining_by_blocks_logs_its_score_and_the_block_cosine(tiny_data, tmp_path):
    cfg = _smoke(pre_block_norm=True, pre_loss="blocks", epochs=1)
    Run(cfg, tiny_data, tmp_path / "run", progress=False).fit()
    rows = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    pre = [r for r in rows if r["stage"] == "pretrain"]
    assert pre and -1.0 <= pre[0]["val_cos"] <= 1.0 and pre[0]["val_score"] <= 0.0
    assert pre[0]["val_score"] != -pre[0]["val_mse"]  # scored by its own loss
    with pytest.raises(ValueError, match="pre_loss"):
        Run(_smoke(pre_loss="cosine", epochs=1), tiny_data, tmp_path / "run2", progress=False).fit()


def test_init_starts_the_main_stage_from_other_weights(tiny_data, tmp_path, caplog):
    """fit --init: no individual networks or pre-training; the first main epoch starts from the
    given weights and their trained presence biases; their card's config is the base config;
    the exported card goes on from their chunks of training."""
    first, second = tmp_path / "first", tmp_path / "second"
    args = ["--data", str(tiny_data), "--quiet", "--threads=1"]
    assert main([*args, "--preset", "smoke", "--out", str(first), "--use_pretrain=0", "--epochs=1",
                 "--margin=0.3"]) == 0
    export(first, tmp_path / "w.safetensors")
    card = json.loads((tmp_path / "w.json").read_text())["card"]
    # a run's own best weights carry its config too, so --init from them is not the preset's
    from trainer.fit import init_config
    own = init_config(first / "best.safetensors", "cpu", ["--epochs=3"])
    assert own.margin == 0.3 and own.preset == "smoke" and own.epochs == 3
    assert own.init_weights == str(first / "best.safetensors")
    from model.weights import save_weights
    bare = load_weights(first / "best.safetensors")
    save_weights(tmp_path / "bare.safetensors", bare.model, bare.spec, card={})
    with caplog.at_level("WARNING", logger="trainer.fit"):
        assert init_config(tmp_path / "bare.safetensors", "smoke", []).margin != 0.3
    assert "no training config in its card" in caplog.text and "bare.safetensors" in caplog.text
    assert len(card["training"]["chunks"]) == 1
    start = torch.load(first / "ckpt-main.pt", weights_only=True)["modules"]
    assert main([*args, "--out", str(second), "--init", str(tmp_path / "w.safetensors"),
                 "--epochs=2", "--lr=0"]) == 0
    assert not (second / "individual" / "drums.safetensors").exists()
    assert not (second / "pretrained.safetensors").exists()
    cfg = json.loads((second / "config.json").read_text())
    assert cfg["margin"] == 0.3 and cfg["epochs"] == 2 and cfg["init_weights"].endswith("w.safetensors")
    rows = [json.loads(x) for x in (second / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and {r["stage"] for r in rows} == {"main"}
    # lr 0: nothing moved from the weights it started from (train-mode batch statistics aside)
    end = torch.load(second / "ckpt-main.pt", weights_only=True)["modules"]
    for k, v in start["net"].items():
        if "running" not in k and "num_batches" not in k:
            assert torch.equal(v, end["net"][k]), k
    assert torch.equal(start["norm"]["bias"], end["norm"]["bias"])
    lines = (second / "chunks.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["args"][-4:] == ["--init", "w.safetensors", "--epochs=2", "--lr=0"]
    old = json.loads(lines[-1])  # as runs recorded before: the whole path
    old["args"] = [str(tmp_path / a) if a == "w.safetensors" else a for a in old["args"]]
    (second / "chunks.jsonl").write_text("\n".join([*lines[:-1], json.dumps(old)]) + "\n")
    export(second, tmp_path / "w2.safetensors")
    card2 = json.loads((tmp_path / "w2.json").read_text())["card"]
    assert card2["init"]["weights"] == "w.safetensors" and len(card2["init"]["sha256"]) == 64
    assert len(card2["training"]["chunks"]) == 2  # the first run's chunk, then this one's
    # its training time counts the first run's too
    assert card2["training"]["seconds"] > card["training"]["seconds"] > 0
    assert "seconds" not in card2["init"]
    assert card2["config"]["init_weights"] == "w.safetensors"
    # the card names the files the chunks used, never the folders they lay in
    text = json.dumps(card2)
    assert str(tmp_path) not in text
    assert card2["training"]["chunks"][1]["args"][-4:] == ["--init", "w.safetensors", "--epochs=2", "--lr=0"]
    # resuming with other weights is refused; a spec that does not match is refused
    assert main([*args, "--out", str(second), "--resume", "--init", str(tmp_path / "w2.safetensors")]) == 1
    assert main([*args, "--out", str(tmp_path / "third"), "--init", str(tmp_path / "w.safetensors"),
                 "--n_mels=96"]) == 1
    assert main([*args, "--out", str(tmp_path / "fourth"), "--init", str(tmp_path / "none.safetensors")]) == 1


def test_contrast_term_reads_the_triplet_rows_and_their_sources():
    from types import SimpleNamespace

    from model.losses import NormLoss, part_contrast_loss
    from trainer.sampling import Source, Triplet, source_labels

    g = torch.Generator().manual_seed(2)
    a = (Source(1, 0), Source(2, 0), None, Source(3, 0), None)
    p = (Source(1, 0), Source(5, 0), None, None, Source(6, 0))
    n = (Source(7, 0), Source(2, 0), None, Source(3, 0), None)
    trip = [Triplet(a, p, n, cond=0), Triplet(n, a, p, cond=1)]
    emb = torch.randn(6 + 2, 640, generator=g)  # two triplets' rows, then two solo rows
    present = torch.ones(8, 5)
    norm = NormLoss()
    plain = Run._main_losses(SimpleNamespace(cfg=_smoke()), trip, emb, present, norm)
    host = SimpleNamespace(cfg=_smoke(contrast_lambda=0.5, contrast_tau=0.2))
    out = Run._main_losses(host, trip, emb, present, norm)
    want = part_contrast_loss(emb[:6], source_labels(trip), present[:6], tau=0.2)
    assert "contrast" not in plain and out["contrast"].item() == pytest.approx(want.item())
    assert out["loss"].item() == pytest.approx(plain["loss"].item() + 0.5 * want.item())
    some = Run._main_losses(SimpleNamespace(cfg=_smoke(contrast_lambda=0.5, contrast_parts="piano,others")),
                            trip, emb, present, norm)
    want = part_contrast_loss(emb[:6], source_labels(trip), present[:6], parts=[2, 4])
    assert some["contrast"].item() == pytest.approx(want.item())
    mixed = Run._main_losses(SimpleNamespace(cfg=_smoke(contrast_lambda=0.5, contrast_metric="drums:euclid")),
                             trip, emb, present, norm)
    want = part_contrast_loss(emb[:6], source_labels(trip), present[:6],
                              metric=("euclid", "cosine", "cosine", "cosine", "cosine"))
    assert mixed["contrast"].item() == pytest.approx(want.item())


def test_contrast_parts_from_the_command_line():
    from trainer.config import resolve

    assert resolve("smoke").contrast_parts == ("drums", "bass", "piano", "guitar", "others")
    assert resolve("smoke", ["--contrast_parts=piano,guitar"]).contrast_parts == ("piano", "guitar")
    with pytest.raises(ValueError, match="contrast_parts: unknown part.*violin"):
        resolve("smoke", ["--contrast_parts=piano,violin"])
    assert resolve("smoke", ["--spread_parts=drums,bass"]).spread_parts == ("drums", "bass")
    with pytest.raises(ValueError, match="spread_parts: unknown part.*tuba"):
        resolve("smoke", ["--spread_parts=tuba"])
    assert resolve("smoke", ["--contrast_metric=euclid"]).contrast_metric == "euclid"
    with pytest.raises(ValueError, match="contrast_metric"):
        resolve("smoke", ["--contrast_metric=dot"])
    per_part = "drums:euclid,bass:euclid"
    assert resolve("smoke", [f"--contrast_metric={per_part}"]).contrast_metric == per_part
    with pytest.raises(ValueError, match="contrast_metric: unknown part 'violin'"):
        resolve("smoke", ["--contrast_metric=drums:euclid,violin:cosine"])


def test_a_run_stopped_by_sigterm_still_records_its_chunk(tiny_data, tmp_path, monkeypatch):
    """kill RUN's process: the chunk it trained goes into chunks.jsonl (and so into the card)
    before it exits; the handler is put back afterwards."""
    import os
    import signal

    from trainer.stages import Run

    out = tmp_path / "run"
    real_fit = Run.fit

    def fit_then_killed(self):
        real_fit(self)  # one epoch trained and logged
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the run")

    monkeypatch.setattr(Run, "fit", fit_then_killed)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stop:
        main(["--data", str(tiny_data), "--quiet", "--threads=1", "--preset", "smoke", "--out", str(out),
              "--use_pretrain=0", "--epochs=1"])
    assert stop.value.code == 128 + signal.SIGTERM
    chunks = [json.loads(x) for x in (out / "chunks.jsonl").read_text().splitlines()]
    assert len(chunks) == 1 and chunks[0]["stages"]["main"]["last_epoch"] == 1
    assert signal.getsignal(signal.SIGTERM) == before


def test_training_time_keeps_a_short_epoch(tmp_path):
    """A tiny epoch on a fast machine takes milliseconds: it must not round to zero seconds."""
    from trainer.summary import training_seconds
    log_path = tmp_path / "log.jsonl"
    log_path.write_text("\n".join(json.dumps(r) for r in (
        {"stage": "main", "epoch": 1, "epoch_s": 0.012}, {"stage": "main", "epoch": 2, "epoch_s": 0.02},
        {"note": "a row without epoch time"})) + "\n")
    assert training_seconds(log_path) == pytest.approx(0.032)


def _init_from_a_first_run(tiny_data, tmp_path, caplog, *options):
    """A one-epoch smoke run, then a run started from its weights with ``options`` (one epoch
    at rate 0): (the common arguments, the start weights, the second run's folder)."""
    first, second = tmp_path / "first", tmp_path / "second"
    args = ["--data", str(tiny_data), "--quiet", "--threads=1"]
    assert main([*args, "--preset", "smoke", "--out", str(first), "--use_pretrain=0", "--epochs=1"]) == 0
    start = load_weights(first / "best.safetensors")
    assert start.spec.net.pool == "mean" and start.spec.net.channels == 1
    with caplog.at_level("INFO", logger="trainer.stages"):
        assert main([*args, "--out", str(second), "--init", str(first / "best.safetensors"),
                     *options, "--epochs=1", "--lr=0"]) == 0
    return args, start, second


def test_init_may_add_statistics_pooling(tiny_data, tmp_path, caplog):
    """--pool=meanstd from mean-pooled weights: the run starts from exactly their function (the
    standard deviations at zero weight), its card names the pooling, and the app loads it."""
    args, start, second = _init_from_a_first_run(tiny_data, tmp_path, caplog, "--pool=meanstd")
    assert "pools over time by mean; this run by meanstd" in caplog.text
    export(second, tmp_path / "w.safetensors")
    w = load_weights(tmp_path / "w.safetensors")
    assert w.spec.net.pool == "meanstd" and w.card["config"]["pool"] == "meanstd"
    fc, fc0 = w.model.state_dict()["fc.weight"], start.model.state_dict()["fc.weight"]
    assert torch.equal(fc[:, : fc0.shape[1]], fc0) and not fc[:, fc0.shape[1]:].any()
    # the app computes what the same network pooled by the mean alone computes (the epoch at
    # rate 0 moved the batch norms' running statistics only)
    from dataclasses import replace

    from model.audio import log_mel
    from model.network import CSN
    plain = CSN(replace(w.spec.net, pool="mean"))
    plain.load_state_dict(w.model.state_dict() | {"fc.weight": fc[:, : fc0.shape[1]]})
    emb = Embedder.from_file(tmp_path / "w.safetensors", device="cpu")
    x = torch.randn(2, int(emb.audio.sample_rate * 1.5)) * 0.1
    with torch.no_grad():
        want = plain.eval()(log_mel(x, w.spec.audio)).numpy()
    assert np.allclose(emb.embed_clips(x), want, atol=1e-5)
    assert main([*args, "--out", str(tmp_path / "third"), "--init", str(tmp_path / "w.safetensors"),
                 "--pool=mean", "--epochs=1"]) == 1  # dropping the spread is not the same function


def test_init_may_add_the_pitch_channel(tiny_data, tmp_path, caplog):
    """--pitch from mel-only weights: the run starts from exactly their function (the pitch
    rows at zero weight), the card names the front end, and the app embeds by it."""
    args, start, second = _init_from_a_first_run(tiny_data, tmp_path, caplog, "--pitch=true")
    assert "reads 1 input channel(s); this run 2" in caplog.text
    export(second, tmp_path / "w.safetensors")
    w = load_weights(tmp_path / "w.safetensors")
    assert w.spec.audio.pitch and w.spec.net.channels == 2 and w.card["config"]["pitch"] is True
    conv, conv0 = w.model.state_dict()["encoder.0.0.weight"], start.model.state_dict()["encoder.0.0.weight"]
    assert torch.equal(conv[:, :1], conv0) and not conv[:, 1:].any()
    # the app's embedding equals the mel-only network's with the same batch norms (the epoch at
    # rate 0 moved their running statistics only)
    from dataclasses import replace

    from model.audio import log_mel
    from model.network import CSN
    plain = CSN(replace(w.spec.net, channels=1))
    plain.load_state_dict(w.model.state_dict() | {"encoder.0.0.weight": conv0})
    emb = Embedder.from_file(tmp_path / "w.safetensors", device="cpu")
    x = torch.randn(2, int(emb.audio.sample_rate * 1.5)) * 0.1
    with torch.no_grad():
        want = plain.eval()(log_mel(x, replace(w.spec.audio, pitch=False))).numpy()
    assert np.allclose(emb.embed_clips(x), want, atol=1e-5)
    assert main([*args, "--out", str(tmp_path / "third"), "--init", str(tmp_path / "w.safetensors"),
                 "--pitch=false", "--epochs=1"]) == 1  # dropping the pitch rows is not the same function


def test_init_may_draw_the_first_blocks_afresh(tiny_data, tmp_path, caplog):
    """--init_reset_blocks=1 with --pitch: the first conv pair reads both channels from fresh
    random weights, every later weight is the start's; a run from its weights does not reset
    again unless asked; without --init the option is refused before any data is read."""
    args, start, second = _init_from_a_first_run(tiny_data, tmp_path, caplog, "--pitch=true",
                                                 "--init_reset_blocks=1")
    assert "the first 1 conv pair(s) start from fresh random weights" in caplog.text
    end = torch.load(second / "ckpt-main.pt", weights_only=True)["modules"]["net"]
    old = start.model.state_dict()
    conv = end["encoder.0.0.weight"]
    assert conv.shape[1] == 2 and conv[:, 0].abs().mean() > 0 and conv[:, 1].abs().mean() > 0
    assert not torch.allclose(conv[:, :1], old["encoder.0.0.weight"])
    assert not torch.allclose(end["encoder.1.0.weight"], old["encoder.1.0.weight"])
    for k, v in old.items():  # blocks 2-5 and the embedding layer: the start's (rate 0)
        if not k.startswith(("encoder.0.", "encoder.1.")) and "running" not in k \
                and "num_batches" not in k:
            assert torch.equal(v, end[k]), k
    from trainer.fit import init_config
    export(second, tmp_path / "w.safetensors")
    assert load_weights(tmp_path / "w.safetensors").card["config"]["init_reset_blocks"] == 1
    assert init_config(tmp_path / "w.safetensors", "cpu", []).init_reset_blocks == 0
    assert main([*args, "--out", str(tmp_path / "third"), "--init_reset_blocks=1", "--epochs=1"]) == 1
    assert not (tmp_path / "third").exists() or not any((tmp_path / "third").iterdir())
    from trainer.widen import reset_blocks
    with pytest.raises(ValueError, match="5 conv pairs"):
        reset_blocks(start.model, 6)


def test_init_may_change_the_stft_window(tiny_data, tmp_path, caplog):
    """--n_fft is a config value that reaches the model spec; --init may start from weights
    trained with another window (the network's input keeps its shape) and says so, while a
    network of another shape is still refused. Configs written before the option read 2048."""
    from trainer.config import TrainConfig
    old = TrainConfig().to_dict()
    del old["n_fft"]
    assert TrainConfig.from_dict(old).model_spec().audio.n_fft == 2048
    first, second = tmp_path / "first", tmp_path / "second"
    args = ["--data", str(tiny_data), "--quiet", "--threads=1"]
    assert main([*args, "--preset", "smoke", "--out", str(first), "--use_pretrain=0", "--epochs=1"]) == 0
    start = load_weights(first / "best.safetensors")
    assert start.spec.audio.n_fft == 2048
    with caplog.at_level("WARNING", logger="trainer.stages"):
        assert main([*args, "--out", str(second), "--init", str(first / "best.safetensors"),
                     "--n_fft=1024", "--epochs=1", "--lr=0"]) == 0
    assert "STFT window of 2048 samples; this run's is 1024" in caplog.text
    assert json.loads((second / "config.json").read_text())["n_fft"] == 1024
    export(second, tmp_path / "w.safetensors")
    w = load_weights(tmp_path / "w.safetensors")
    assert w.spec.audio.n_fft == 1024 and w.spec.net == start.spec.net
    for k, v in start.model.state_dict().items():
        if "running" not in k and "num_batches" not in k:
            assert torch.equal(v, w.model.state_dict()[k]), k
    # the app computes its features with the window the weights name
    from model.audio import log_mel
    emb = Embedder.from_file(tmp_path / "w.safetensors", device="cpu")
    x = torch.randn(2, int(emb.audio.sample_rate * 1.5)) * 0.1
    assert emb.audio == w.spec.audio
    with torch.no_grad():
        want = w.model.eval()(log_mel(x, w.spec.audio)).numpy()
    assert np.allclose(emb.embed_clips(x), want, atol=1e-6)
    # and the two windows do give different features
    assert (log_mel(x, w.spec.audio) - log_mel(x, start.spec.audio)).abs().mean() > 0.01
    assert main([*args, "--out", str(tmp_path / "third"), "--init", str(first / "best.safetensors"),
                 "--n_fft=1024", "--widths=4,8,8,16,32"]) == 1


def test_chunk_arguments_keep_file_names_only():
    from trainer.clitools import portable_args
    assert portable_args(["--data", "data/pop909", "--init", "/srv/models/w.safetensors",
                          "--out=/home/x/runs/r1", "--lr=1e-4", "--contrast_metric=drums:euclid"]) == \
        ["--data", "data/pop909", "--init", "w.safetensors", "--out=r1", "--lr=1e-4",
         "--contrast_metric=drums:euclid"]


def test_between_spread_reads_the_pairs_that_share_a_parts_audio():
    from types import SimpleNamespace

    from model.losses import NormLoss, spread_loss
    from trainer.sampling import Source, Triplet, source_labels

    g = torch.Generator().manual_seed(3)
    trip = []
    for i in range(12):  # aligned triplets: anchor and positive share the drums' audio
        drums, rest = Source(i, 0), Source(100 + i, 0)
        trip.append(Triplet((drums, rest, rest, None, None), (drums, Source(200 + i, 0), None, None, None),
                            (Source(300 + i, 0), rest, rest, None, None), cond=0))
    emb = torch.randn(36, 640, generator=g)
    present = (source_labels(trip) >= 0).float()
    norm = NormLoss()
    plain = Run._main_losses(SimpleNamespace(cfg=_smoke(spread_lambda=0.5, spread_floor=200.0)),
                             trip, emb, present, norm)
    both = Run._main_losses(SimpleNamespace(cfg=_smoke(spread_lambda=0.5, spread_floor=200.0,
                                                        spread_between_lambda=2.0, spread_between_floor=200.0)),
                            trip, emb, present, norm)
    want = spread_loss(emb, present, floor=200.0, labels=source_labels(trip, same_time=True))
    assert both["spread_between"].item() == pytest.approx(want.item())
    assert plain["spread"].item() == pytest.approx(spread_loss(emb, present, floor=200.0).item())
    assert both["spread"].item() == pytest.approx(plain["spread"].item())
    assert both["spread_between"].item() != pytest.approx(plain["spread"].item())
    assert "spread_between" not in plain
    assert both["loss"].item() == pytest.approx(plain["loss"].item() + 2.0 * want.item(), rel=1e-5)
    drums = Run._main_losses(SimpleNamespace(cfg=_smoke(spread_between_lambda=0.5, spread_between_floor=200.0,
                                                        spread_between_parts="drums")), trip, emb, present, norm)
    one = torch.zeros_like(present)
    one[:, 0] = present[:, 0]
    assert "spread" not in drums
    assert drums["spread_between"].item() == pytest.approx(
        spread_loss(emb, one, floor=200.0, labels=source_labels(trip, same_time=True)).item())


def test_the_between_spread_term_pools_its_scatters_over_steps_when_asked():
    from types import SimpleNamespace

    from model.losses import NormLoss, ScatterMemory, spread_loss
    from trainer.sampling import Source, Triplet, source_labels
    g = torch.Generator().manual_seed(4)
    trip = []
    for i in range(12):
        drums, rest = Source(i, 0), Source(100 + i, 0)
        trip.append(Triplet((drums, rest, rest, None, None), (drums, Source(200 + i, 0), None, None, None),
                            (Source(300 + i, 0), rest, rest, None, None), cond=0))
    present = (source_labels(trip) >= 0).float()
    labels = source_labels(trip, same_time=True)
    run = SimpleNamespace(cfg=_smoke(spread_between_lambda=1.0, spread_between_floor=200.0))

    def rows() -> torch.Tensor:  # rows sounding the same part's audio share its vector
        blocks = []
        for c in range(5):
            _, which = torch.unique(labels[:, c], return_inverse=True)
            blocks.append(torch.randn(int(which.max()) + 1, 128, generator=g)[which])
        return torch.cat(blocks, dim=1) + 0.3 * torch.randn(36, 640, generator=g)

    first, second = rows(), rows()
    mem = ScatterMemory(0.9)
    Run._main_losses(run, trip, first, present, NormLoss(), mem)
    pooled = Run._main_losses(run, trip, second, present, NormLoss(), mem)["spread_between"]
    alone = Run._main_losses(run, trip, second, present, NormLoss())["spread_between"]
    ref = ScatterMemory(0.9)
    spread_loss(first, present, floor=200.0, labels=labels, memory=ref)
    assert pooled.item() == pytest.approx(spread_loss(second, present, floor=200.0, labels=labels, memory=ref).item())
    assert pooled.item() != pytest.approx(alone.item())
    assert resolve("smoke", ["--spread_between_memory=0.98"]).spread_between_memory == 0.98
    with pytest.raises(ValueError, match="spread_between_memory: 1.0 is not in"):
        resolve("smoke", ["--spread_between_memory=1.0"])


def test_a_run_with_the_pooled_between_term_logs_what_the_term_reads(tiny_data, tmp_path):
    out = tmp_path / "run"
    assert main(["--data", str(tiny_data), "--preset", "smoke", "--out", str(out), "--quiet",
                 "--threads=1", "--use_pretrain=0", "--epochs=2", "--aligned_prob=1", "--batch=16",
                 "--triplets_per_epoch=32",
                 "--spread_between_lambda=1", "--spread_between_floor=16",
                 "--spread_between_parts=bass,piano", "--spread_between_memory=0.9"]) == 0
    rows = [r for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())
            if r.get("stage") == "main" and "spread_between" in r]
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        assert {k for k in r if k.startswith("between_pr_")} == {"between_pr_bass", "between_pr_piano"}
        assert all(0.1 <= r[f"between_pr_{p}"] <= 128.0 for p in ("bass", "piano"))
    assert json.loads((out / "config.json").read_text())["spread_between_memory"] == 0.9


def test_a_config_with_the_one_between_spread_term_of_runs_r16_reads_as_the_second_term():
    from trainer.config import TrainConfig
    old = TrainConfig(spread_lambda=2.0, spread_floor=8.0, spread_parts=("drums", "bass")).to_dict()
    cfg = TrainConfig.from_dict(old | {"spread_between": True})
    assert (cfg.spread_lambda, cfg.spread_between_lambda, cfg.spread_between_floor) == (0.0, 2.0, 8.0)
    assert cfg.spread_between_parts == ("drums", "bass")
    same = TrainConfig.from_dict(old)
    assert (same.spread_lambda, same.spread_between_lambda) == (2.0, 0.0)
    with pytest.raises(ValueError, match="spread_between_parts: unknown part.*tuba"):
        resolve("smoke", ["--spread_between_parts=tuba"])


def test_retrieval_top1_asks_for_the_same_part_among_every_row():
    from trainer.sampling import Source, Triplet
    from trainer.stages import retrieval_top1

    def piece(drums: int, bass: int) -> tuple:
        return (Source(drums, 0), Source(bass, 0), None, None, None)

    # drums of tracks 0 and 1 under different bass; the negatives bring other drums
    trip = [Triplet(piece(0, 10), piece(0, 11), piece(5, 10), cond=0),
            Triplet(piece(1, 12), piece(1, 13), piece(6, 12), cond=0),
            Triplet(piece(20, 2), piece(21, 2), piece(20, 7), cond=1)]
    emb = torch.zeros(9, 640)
    present = torch.zeros(9, 5)
    present[:, :2] = 1
    for t in range(3):  # each positive right beside its anchor in both subspaces, far from the rest
        for r in range(3):
            emb[3 * t + r, 0] = emb[3 * t + r, 128] = 10.0 * t + (0.1 * r if r < 2 else 5.0)
    row = retrieval_top1(trip, emb, present)
    assert row == {"val_top1_drums": 1.0, "val_top1_bass": 1.0}
    # the first triplet's negative (other drums) sits on its anchor: a miss
    emb[2, 0] = emb[0, 0]
    assert retrieval_top1(trip, emb, present)["val_top1_drums"] == 0.5
    # a row where the part is silent is never a neighbour
    present[2, 0] = 0
    assert retrieval_top1(trip, emb, present)["val_top1_drums"] == 1.0
    # any other row with the anchor's drum track is a hit, wherever the positive lies
    trip[1] = Triplet(piece(1, 12), piece(1, 13), piece(0, 12), cond=0)  # its negative: track 0's drums
    present[:] = 0
    present[:, :2] = 1
    emb.zero_()
    for r, x in enumerate((0.0, 50.0, 30.0, 10.0, 10.1, 0.1, 70.0, 80.0, 90.0)):
        emb[r, 0] = x
    assert retrieval_top1(trip, emb, present)["val_top1_drums"] == 1.0


def test_label_groups_join_the_contrast_term_and_the_norm_loss():
    from types import SimpleNamespace

    from model.losses import NormLoss, part_contrast_loss
    from trainer.sampling import Source, Triplet, group_labels, piece_labels, source_labels

    g = torch.Generator().manual_seed(4)
    a = (Source(1, 0), Source(2, 0), None, Source(3, 0), None)
    p = (Source(1, 0), Source(5, 0), None, None, Source(6, 0))
    n = (Source(7, 0), Source(2, 0), None, Source(3, 0), None)
    trip = [Triplet(a, p, n, cond=0)]
    label = Source(9, 100)
    groups = [[(None, None, label, Source(b, 0), Source(b, 0)) for b in (11, 12, 13)]]
    emb = torch.randn(3 + 3 + 2, 640, generator=g)  # a triplet, a group of three, two solo rows
    present = torch.ones(8, 5)
    norm = NormLoss()
    host = SimpleNamespace(cfg=_smoke(contrast_lambda=0.5, contrast_same_time=True))
    without = Run._main_losses(host, trip, emb[[0, 1, 2, 6, 7]], present[:5], norm)
    out = Run._main_losses(host, trip, emb, present, norm, groups=groups)
    labels = torch.cat([source_labels(trip, same_time=True), piece_labels(groups[0], same_time=True)])
    want = part_contrast_loss(emb[:6], labels, present[:6])
    assert out["contrast"].item() == pytest.approx(want.item())
    assert out["contrast"].item() != pytest.approx(without["contrast"].item())
    assert out["norm"].item() == pytest.approx(norm(emb, present).item())
    # the triplet loss reads the triplets' rows alone
    assert out["triplet"].item() == pytest.approx(without["triplet"].item())
    # the group's pieces share piano's audio (track and time) and nothing else
    lab = group_labels(groups, same_time=True)
    assert torch.equal(lab, piece_labels(groups[0], same_time=True))
    assert len(set(lab[:, 2].tolist())) == 1 and len(set(lab[:, 3].tolist())) == 3
    # a piece that takes the label track's piano at another time is still the group's positive
    # (and a row elsewhere holding that audio is not)
    moved = [groups[0] + [(None, None, Source(9, 500), Source(14, 0), None)]]
    lab = group_labels(moved, same_time=True)
    assert len(set(lab[:, 2].tolist())) == 1 and lab[3, 3] != lab[0, 3] and lab[3, 4] == -1
    assert piece_labels(moved[0], same_time=True)[3, 2] != lab[3, 2]
    two = group_labels(moved + groups, same_time=True)
    assert two.shape == (7, 5) and torch.equal(two[:4], lab)
    out2 = Run._main_losses(host, trip, torch.cat([emb[:6], emb[:1], emb[6:]]),
                            torch.ones(9, 5), norm, groups=moved)
    assert np.isfinite(out2["contrast"].item())


def test_label_groups_are_checked_and_a_run_with_them_trains(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="label_groups: the groups feed the contrastive term"):
        resolve("smoke", ["--label_groups=4"])
    with pytest.raises(ValueError, match="group_size >= 2"):
        resolve("smoke", ["--label_groups=4", "--contrast_lambda=0.1", "--group_size=1"])
    with pytest.raises(ValueError, match="group_other_time: need a probability"):
        resolve("smoke", ["--label_groups=4", "--contrast_lambda=0.1", "--group_other_time=2"])
    assert resolve("smoke", ["--label_groups=4", "--contrast_lambda=0.1",
                             "--group_other_time=0.5"]).group_other_time == 0.5
    out = tmp_path / "run"
    assert main(["--data", str(tiny_data), "--preset", "smoke", "--out", str(out), "--quiet",
                 "--threads=1", "--use_pretrain=0", "--epochs=1", "--contrast_lambda=0.3",
                 "--contrast_same_time=1", "--label_groups=2", "--group_size=3",
                 "--group_other_time=0.5"]) == 0
    rows = [r for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())
            if r.get("stage") == "main" and "contrast" in r]
    assert rows and all(np.isfinite(r["contrast"]) and r["contrast"] > 0 for r in rows)
    assert json.loads((out / "config.json").read_text())["label_groups"] == 2


def test_the_invariance_term_reads_the_triplets_and_their_additional_conditions():
    from types import SimpleNamespace

    from model.losses import NormLoss, invariance_loss, masked_distance
    from trainer.sampling import Source, Triplet, source_labels

    g = torch.Generator().manual_seed(5)
    trip = []
    for i in range(8):  # piano triplets whose rest (guitar) is shared by anchor and negative
        piano, rest, other = Source(i, 0), Source(100 + i, 0), Source(200 + i, 0)
        trip.append(Triplet((None, None, piano, rest, None), (None, None, piano, other, None),
                            (None, None, Source(300 + i, 0), rest, None), cond=2,
                            additional=3 if i % 2 else None))
    emb = torch.randn(24, 640, generator=g)
    present = (source_labels(trip) >= 0).float()
    norm = NormLoss()
    off = Run._main_losses(SimpleNamespace(cfg=_smoke(spread_lambda=0.0)), trip, emb, present, norm)
    on = Run._main_losses(SimpleNamespace(cfg=_smoke(spread_lambda=0.0, invariance_lambda=2.0)),
                          trip, emb, present, norm)
    a, p, n = emb[0::3], emb[1::3], emb[2::3]
    piano, guitar = torch.full((8,), 2), torch.full((4,), 3)
    odd = torch.arange(1, 8, 2)
    want = invariance_loss(torch.cat([masked_distance(a, n, piano), masked_distance(a[odd], p[odd], guitar)]),
                           torch.cat([masked_distance(p, n, piano), masked_distance(p[odd], n[odd], guitar)]),
                           torch.cat([piano, guitar]))
    assert "invariance" not in off
    assert on["invariance"].item() == pytest.approx(want.item())
    assert on["loss"].item() == pytest.approx(off["loss"].item() + 2.0 * want.item(), rel=1e-5)
    only = Run._main_losses(SimpleNamespace(cfg=_smoke(spread_lambda=0.0, invariance_lambda=1.0,
                                                       invariance_parts="guitar")), trip, emb, present, norm)
    assert only["invariance"].item() == pytest.approx(invariance_loss(
        masked_distance(a[odd], p[odd], guitar), masked_distance(p[odd], n[odd], guitar), guitar).item())


def test_the_stem_term_reads_each_anchor_beside_its_stem_and_nothing_else_reads_the_stems():
    from types import SimpleNamespace

    from model.losses import NormLoss, masked_distance, stem_loss
    from trainer.sampling import Source, Triplet, source_labels, stem_pieces

    g = torch.Generator().manual_seed(6)
    trip = []
    for i in range(8):  # piano (odd) and guitar (even) triplets
        c = 2 if i % 2 else 3
        mix = (None, None, Source(i, 0), Source(100 + i, 0), None)
        trip.append(Triplet(mix, (None, None, Source(i, 0), Source(200 + i, 0), None),
                            (None, None, Source(300 + i, 0), Source(100 + i, 0), None), cond=c))
    rows, stems = stem_pieces(trip, parts=[2])
    assert rows == [1, 3, 5, 7]
    emb = torch.randn(24 + len(stems), 640, generator=g, requires_grad=True)
    present = torch.cat([(source_labels(trip) >= 0).float(), torch.eye(5)[[2] * len(stems)]])
    present[-1] = 0.0  # a stem that came out silent is no target
    norm = NormLoss()
    cfg = _smoke(spread_lambda=0.0, stem_lambda=2.0, stem_parts="piano")
    off = Run._main_losses(SimpleNamespace(cfg=_smoke(spread_lambda=0.0)), trip, emb[:24], present[:24], norm)
    on = Run._main_losses(SimpleNamespace(cfg=cfg), trip, emb, present, norm, stem_rows=rows)
    a, p, n = emb[0::3][:8], emb[1::3][:8], emb[2::3][:8]
    sel, piano = torch.tensor([1, 3, 5]), torch.full((3,), 2)
    want = stem_loss(masked_distance(a[sel], emb[24:27], piano), masked_distance(p[sel], n[sel], piano), piano)
    assert "stem" not in off
    assert on["stem"].item() == pytest.approx(want.item())
    assert on["stem_piano"].item() == pytest.approx(want.item()) and "stem_guitar" not in on
    # the norm loss and the rest read the mixes only: the stem rows add just the stem term
    assert on["loss"].item() == pytest.approx(off["loss"].item() + 2.0 * want.item(), rel=1e-5)
    on["stem"].backward()
    assert emb.grad[24:].abs().sum().item() == 0.0  # the stems are targets, held constant
    assert emb.grad[3].abs().sum().item() > 0  # the piano anchor moves
    assert emb.grad[0].abs().sum().item() == 0.0  # the guitar anchor is not the term's


def _run_with_term(tiny_data, tmp_path, term: str) -> list[dict]:
    """A smoke run with ``--<term>_lambda=1 --<term>_parts=bass,piano`` after its bad options are
    refused -> the main stage's log rows, each step's term finite and >= 0."""
    with pytest.raises(ValueError, match=f"{term}_parts: unknown part"):
        resolve("smoke", [f"--{term}_parts=piano,flute"])
    with pytest.raises(ValueError, match=f"{term}_lambda: -1.0 is negative"):
        resolve("smoke", [f"--{term}_lambda=-1"])
    out = tmp_path / "run"
    assert main(["--data", str(tiny_data), "--preset", "smoke", "--out", str(out), "--quiet",
                 "--threads=1", "--use_pretrain=0", "--epochs=1", f"--{term}_lambda=1",
                 f"--{term}_parts=bass,piano"]) == 0
    assert json.loads((out / "config.json").read_text())[f"{term}_parts"] == ["bass", "piano"]
    rows = [r for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())
            if r.get("stage") == "main"]
    terms = [r[term] for r in rows if term in r]
    assert terms and all(np.isfinite(v) and v >= 0 for v in terms)
    return rows


def test_a_run_with_the_stem_term_logs_it(tiny_data, tmp_path):
    rows = _run_with_term(tiny_data, tmp_path, "stem")
    assert any(r["stem"] > 0 for r in rows if "stem" in r)  # a mix never sits exactly on its stem


def test_a_run_with_the_invariance_term_logs_it_and_each_parts_leak(tiny_data, tmp_path):
    rows = _run_with_term(tiny_data, tmp_path, "invariance")
    val = [r for r in rows if "val_acc" in r]
    assert val and any(k.startswith("val_leak_") for k in val[-1])


def test_a_run_with_the_content_term_logs_it_per_part_and_on_validation(tiny_data, tmp_path):
    rows = _run_with_term(tiny_data, tmp_path, "content")
    assert any(r["content"] > 0 for r in rows if "content" in r)
    val = [r for r in rows if "val_acc" in r]
    assert val and {"val_content", "val_content_bass", "val_content_piano"} <= set(val[-1])
    # the read-outs are checkpointed with the network (so --resume goes on with them) ...
    blob = torch.load(tmp_path / "run" / "ckpt-main.pt", weights_only=True)
    assert set(blob["modules"]["content"]) == {f"heads.{p}.{w}" for p in ("bass", "piano")
                                               for w in ("weight", "bias")}
    # ... and never exported: the best weights hold the network's tensors alone
    from safetensors import safe_open
    with safe_open(str(tmp_path / "run" / "best.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert not any("heads." in k for k in keys)
    assert len(keys) == len(load_weights(tmp_path / "run" / "best.safetensors").model.state_dict())


def test_a_run_with_a_held_content_read_out_checkpoints_and_resumes_it(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="content_temperature"):
        resolve("smoke", ["--content_lambda=1", "--content_temperature=-0.1"])
    with pytest.raises(ValueError, match="content_slices x 12"):
        resolve("smoke", ["--content_lambda=1", "--content_temperature=0.1", "--content_slices=11"])
    out = tmp_path / "run"
    args = ["--data", str(tiny_data), "--preset", "smoke", "--out", str(out), "--quiet",
            "--threads=1", "--use_pretrain=0", "--content_lambda=1", "--content_temperature=0.1"]
    assert main(args + ["--epochs=1"]) == 0
    blob = torch.load(out / "ckpt-main.pt", weights_only=True)
    w = blob["modules"]["content"]["heads.piano.parametrizations.weight.original"]
    assert w.shape == (48, 128)
    assert main(args + ["--resume", "--reopen", "main", "--epochs=2"]) == 0
    rows = [r for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())
            if r.get("stage") == "main" and "val_content_piano" in r]
    assert len(rows) == 2 and all(np.isfinite(r["val_content_piano"]) for r in rows)


def test_a_teacher_holds_the_run_near_its_answers(tiny_data, tmp_path, caplog):
    """--distill_weights/--distill_lambda: the teacher (here the start weights, heard without the
    run's pitch rows) embeds every step's mixes through its own front end; the term is logged
    per step and on validation, the card names the teacher by file name only, a run started
    from such weights has no teacher unless asked, and a missing or half-given teacher is
    refused before any data is read."""
    first = tmp_path / "first"
    teacher = str(first / "best.safetensors")
    args, start, second = _init_from_a_first_run(
        tiny_data, tmp_path, caplog, "--pitch=true", "--init_reset_blocks=1",
        f"--distill_weights={teacher}", "--distill_lambda=2")
    assert f"distilling from best.safetensors ({start.sha256[:12]}) at weight 2" in caplog.text
    rows = [json.loads(x) for x in (second / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if r.get("stage") == "main" and "epoch" in r]
    # the fresh first block answers otherwise than the teacher: the term (the epoch's mean over
    # its steps) and its validation figure are well above 0
    assert epochs and all(r["distill"] > 0.01 and 0.01 < r["val_distill"] < 10.0 for r in epochs)
    export(second, tmp_path / "w.safetensors")
    card = load_weights(tmp_path / "w.safetensors").card
    assert card["config"]["distill_weights"] == "best.safetensors"
    assert card["config"]["distill_lambda"] == 2.0
    from trainer.fit import init_config
    cfg = init_config(tmp_path / "w.safetensors", "cpu", [])
    assert (cfg.distill_weights, cfg.distill_lambda) == ("", 0.0)
    bad = ["--out", str(tmp_path / "third"), "--init", teacher, "--epochs=1"]
    caplog.clear()
    assert main([*args, *bad, f"--distill_weights={tmp_path / 'gone.safetensors'}", "--distill_lambda=1"]) == 1
    assert "gone.safetensors" in caplog.text
    assert main([*args, *bad, "--distill_lambda=1"]) == 1
    assert main([*args, *bad, f"--distill_weights={teacher}"]) == 1
    assert not (tmp_path / "third").exists() or not any((tmp_path / "third").iterdir())


def test_a_fading_teacher_leaves_the_last_of_the_run_alone(tiny_data, tmp_path, caplog):
    """--distill_fade=0.5: the teacher's weight falls linearly from distill_lambda to 0 over the
    first half of the schedule (2 epochs of 2 steps: weights 2 and 1, then 0) and the teacher is
    not run after it; the weight at any point follows the schedule; a fade without a teacher,
    or beyond the run, is refused."""
    from trainer.stages import distill_weight
    first, second = tmp_path / "first", tmp_path / "second"
    args = ["--data", str(tiny_data), "--quiet", "--threads=1"]
    assert main([*args, "--preset", "smoke", "--out", str(first), "--use_pretrain=0", "--epochs=1"]) == 0
    teacher = str(first / "best.safetensors")
    with caplog.at_level("INFO", logger="trainer.stages"):
        assert main([*args, "--out", str(second), "--init", teacher, "--init_reset_blocks=1",
                     f"--distill_weights={teacher}", "--distill_lambda=2", "--distill_fade=0.5",
                     "--epochs=2"]) == 0
    assert "at weight 2, falling to 0 over the first 50% of the run" in caplog.text
    rows = [json.loads(x) for x in (second / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if r.get("stage") == "main" and "epoch" in r]
    assert len(epochs) == 2
    assert epochs[0]["distill_w"] == pytest.approx(1.5) and epochs[0]["distill"] > 0.01
    assert "distill_w" not in epochs[1] and "distill" not in epochs[1]
    assert all(0.0 < r["val_distill"] < 10.0 for r in epochs)  # still measured: how far it went
    cfg = _smoke(distill_weights=teacher, distill_lambda=4, distill_fade=0.25)
    assert [distill_weight(cfg, p) for p in (0.0, 0.125, 0.25, 0.9)] == [4.0, 2.0, 0.0, 0.0]
    assert distill_weight(_smoke(distill_weights=teacher, distill_lambda=4), 0.9) == 4.0
    bad = ["--out", str(tmp_path / "third"), "--init", teacher, "--epochs=1"]
    assert main([*args, *bad, "--distill_fade=0.5"]) == 1
    assert main([*args, *bad, f"--distill_weights={teacher}", "--distill_lambda=1",
                 "--distill_fade=1.5"]) == 1
    assert not (tmp_path / "third").exists() or not any((tmp_path / "third").iterdir())


def test_distill_loss_weighs_every_subspace_alike():
    from model.losses import distill_loss
    g = torch.Generator().manual_seed(0)
    t = torch.randn(16, 640, generator=g)
    assert distill_loss(t.clone(), t).item() == 0.0
    assert distill_loss(torch.zeros_like(t), t).item() == pytest.approx(1.0)
    # one subspace 100 times louder: an error of the same share there counts the same
    scaled = t.clone()
    scaled[:, :128] *= 100.0
    noisy = t + 0.1 * torch.randn(16, 640, generator=g)
    noisy_scaled = noisy.clone()
    noisy_scaled[:, :128] *= 100.0
    assert distill_loss(noisy_scaled, scaled).item() == pytest.approx(distill_loss(noisy, t).item(), rel=1e-4)
    e = t.clone().requires_grad_(True)
    distill_loss(e * 0.5, t).backward()
    assert e.grad is not None and e.grad.abs().sum() > 0


def test_spectrogram_masks_reach_the_training_steps_only(tiny_data, tmp_path, monkeypatch):
    """--mask_freq/--mask_time: every training step's spectrograms are masked with the step's
    generator; validation embeds the mixes as they are, so its scores compare across runs."""
    import trainer.stages as stages
    seen, real = [], stages.mask_spectrogram

    def spy(mel, rng, masks):
        seen.append((mel.shape[0], masks))
        return real(mel, rng, masks)

    monkeypatch.setattr(stages, "mask_spectrogram", spy)
    cfg = _smoke(use_pretrain=False, epochs=1, triplets_per_epoch=16, batch=8, mask_freq=2,
                 mask_bands=6, mask_time=1, mask_time_share=0.2)
    Run(cfg, tiny_data, tmp_path / "run", progress=False).fit()
    assert len(seen) == 2 and all(rows >= 24 for rows, _ in seen)  # 2 steps of 8 triplets
    assert all(m.freq_masks == 2 and m.bands == 6 and m.time_masks == 1 for _, m in seen)
    rows = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r for r in rows if r["stage"] == "main"][0]["loss"] > 0
    seen.clear()
    Run(_smoke(use_pretrain=False, epochs=1, triplets_per_epoch=16, batch=8), tiny_data,
        tmp_path / "plain", progress=False).fit()
    assert not seen
