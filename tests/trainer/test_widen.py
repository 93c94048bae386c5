import json

import pytest
import torch

from model.network import CSN, NetConfig
from model.weights import load_weights
from trainer.cli import main as cli
from trainer.export import export
from trainer.fit import main as fit
from trainer.widen import remel_state, widen_model, widen_state

data_mod = pytest.importorskip("trainer.data.synth")


def _trained_like(widths=(4, 8, 8, 16, 16)) -> CSN:
    torch.manual_seed(0)
    net = CSN(NetConfig(widths=widths, n_mels=32))
    for p in net.parameters():  # not the initialisation: every weight matters
        p.data.add_(0.1 * torch.randn_like(p))
    net.train()
    net(torch.randn(6, 32, 40))  # running statistics that are not the defaults
    return net


@pytest.mark.parametrize("widths", [(4, 8, 8, 16, 32), (6, 8, 12, 16, 48), (4, 8, 8, 16, 16)])
def test_widened_network_computes_the_same_embedding(widths):
    net = _trained_like()
    wide = widen_model(net, widths)
    assert [m.out_channels for m in wide.modules() if isinstance(m, torch.nn.Conv2d)][-1] == widths[-1]
    x = torch.randn(3, 32, 70)
    for mode in ("eval", "train"):
        getattr(net, mode)(), getattr(wide, mode)()
        with torch.no_grad():
            torch.testing.assert_close(wide(x), net(x), atol=1e-5, rtol=1e-5)


def test_new_channels_learn_from_the_first_step():
    wide = widen_model(_trained_like(), (4, 8, 8, 16, 32)).train()
    wide(torch.randn(4, 32, 40)).square().sum().backward()
    fc_new = wide.fc.weight.grad[:, 16 * 1:]  # features of the 16 new channels (1 row each)
    assert fc_new.abs().sum() > 0


def test_narrower_widths_are_refused():
    net = _trained_like()
    with pytest.raises(ValueError, match="narrower"):
        widen_state(net.state_dict(), net.cfg, (4, 8, 8, 8, 16))


def test_widen_run_then_fit_continues_it(tmp_path):
    data = data_mod.build_dataset(tmp_path / "set", n_tracks=20, seed=3, song_seconds=6,
                                  splits=(0.6, 0.2, 0.2), workers=1)
    run, wide = tmp_path / "run", tmp_path / "wide"
    common = ["--data", str(data), "--quiet", "--threads=1", "--ind_epochs=1", "--pre_epochs=1",
              "--triplets_per_epoch=16", "--batch=8", "--val_triplets=12"]
    assert fit([*common, "--preset", "smoke", "--out", str(run), "--epochs=2", "--ema_decay=0.9"]) == 0
    assert cli(["widen", str(run), "--out", str(wide), "--widths", "4,8,8,16,16"]) == 1  # same
    assert cli(["widen", str(run), "--out", str(wide), "--widths", "4,8,8,16,40"]) == 0
    assert json.loads((wide / "config.json").read_text())["widths"] == [4, 8, 8, 16, 40]
    old = torch.load(run / "ckpt-main.pt", weights_only=True)
    new = torch.load(wide / "ckpt-main.pt", weights_only=True)
    assert "opt" not in new and new["state"]["epoch"] == old["state"]["epoch"] == 2
    assert "ema" in old and "ema" not in new  # the old shapes' average starts again, widened
    assert old["state"]["seconds"] > 0 and new["state"]["seconds"] == 0.0  # a budget of its own
    assert new["widened_from"] == [4, 8, 8, 16, 16]
    assert cli(["widen", str(run), "--out", str(wide), "--widths", "4,8,8,16,40"]) == 1  # not empty
    assert fit([*common, "--out", str(wide), "--resume", "--epochs=4"]) == 0
    rows = [json.loads(x) for x in (wide / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows if r["stage"] == "main"] == [1, 2, 3, 4]
    best = json.loads((wide / "best.json").read_text())
    assert best["spec"]["net"]["widths"] == [4, 8, 8, 16, 40]
    # the widened run's record goes on from the old run's chunk of training
    chunks = [json.loads(x) for x in (wide / "chunks.jsonl").read_text().splitlines()]
    assert [c["stages"]["main"]["last_epoch"] for c in chunks] == [2, 4]
    # the last epoch and its moving average, exported with the run's card
    ckpt = torch.load(wide / "ckpt-main.pt", weights_only=True)
    for ema, src, prefix in ((False, ckpt["modules"]["net"], ""), (True, ckpt["ema"]["net"], "module.")):
        out = tmp_path / f"last-{ema}.safetensors"
        export(wide, out, last=True, ema=ema)
        w = load_weights(out)
        assert w.card["exported"] == {"epoch": 4, "weights": "moving average" if ema else "last"}
        assert w.card["val"]["epoch"] == 4 and len(w.card["training"]["chunks"]) == 2
        assert "metrics" not in w.card and "table2_draws" in w.card["metrics_of_best"]
        for k, v in w.model.state_dict().items():
            assert torch.equal(v, src[prefix + k]), k
    assert not torch.equal(ckpt["modules"]["net"]["fc.weight"], ckpt["ema"]["net"]["module.fc.weight"])


@pytest.mark.parametrize("n_mels", [64, 96, 128])
def test_remel_keeps_the_filters_and_maps_each_row_to_its_old_row(n_mels):
    net = _trained_like()  # 32 bands: one frequency row at the end
    if n_mels == 96:
        with pytest.raises(ValueError, match="multiple"):
            remel_state(_trained_like(widths=(4, 8, 8, 16, 16)).state_dict(),
                        NetConfig(widths=(4, 8, 8, 16, 16), n_mels=64), n_mels)
        return
    fine = widen_model(net, net.cfg.widths, n_mels=n_mels)
    assert fine.cfg.n_mels == n_mels
    for k, v in net.state_dict().items():
        if k != "fc.weight":
            torch.testing.assert_close(fine.state_dict()[k], v)
    # encoder output rows that are equal in each group give the old embedding exactly
    h = torch.randn(3, 16, 1)
    rows = n_mels // 32
    h_fine = h.repeat_interleave(rows, dim=2).reshape(3, 16 * rows)
    torch.testing.assert_close(fine.fc(h_fine), net.fc(h.reshape(3, 16)), atol=1e-5, rtol=1e-5)
    # and back to the coarse rows: the same layer as before
    coarse = remel_state(fine.state_dict(), fine.cfg, 32)
    torch.testing.assert_close(coarse["fc.weight"], net.state_dict()["fc.weight"], atol=1e-6, rtol=1e-6)
    x = torch.randn(2, n_mels, 50)  # and the network runs on the finer spectrogram
    assert fine.eval()(x).shape == (2, net.cfg.out_dim)


def test_remel_a_run_started_from_weights_then_resume(tmp_path):
    data = data_mod.build_dataset(tmp_path / "set", n_tracks=20, seed=3, song_seconds=6,
                                  splits=(0.6, 0.2, 0.2), workers=1)
    base, run, fine = tmp_path / "base", tmp_path / "run", tmp_path / "fine"
    common = ["--data", str(data), "--quiet", "--threads=1", "--ind_epochs=1", "--pre_epochs=1",
              "--triplets_per_epoch=16", "--batch=8", "--val_triplets=12"]
    assert fit([*common, "--preset", "smoke", "--out", str(base), "--epochs=1"]) == 0
    init = base / "best.safetensors"
    assert fit([*common, "--preset", "smoke", "--init", str(init), "--out", str(run), "--epochs=1"]) == 0
    assert cli(["widen", str(run), "--out", str(fine)]) == 1  # nothing to change
    assert cli(["widen", str(run), "--out", str(fine), "--n_mels", "48"]) == 1  # no row mapping
    assert cli(["widen", str(run), "--out", str(fine), "--n_mels", "64"]) == 0
    cfg = json.loads((fine / "config.json").read_text())
    assert cfg["n_mels"] == 64 and cfg["widths"] == [4, 8, 8, 16, 16]
    assert torch.load(fine / "ckpt-main.pt", weights_only=True)["n_mels_from"] == 32
    # the start weights (32 bands) no longer fit the network; the checkpoint decides
    assert fit([*common, "--out", str(fine), "--resume", "--epochs=2"]) == 0
    best = json.loads((fine / "best.json").read_text())
    assert best["spec"]["net"]["n_mels"] == best["spec"]["audio"]["n_mels"] == 64
    assert best["card"]["init"]["weights"] == "best.safetensors"


def test_repooled_network_computes_the_same_embedding_and_learns_the_spread():
    from dataclasses import replace

    from trainer.widen import repool_state
    net = _trained_like()
    cfg = replace(net.cfg, pool="meanstd")
    std = CSN(cfg)
    std.load_state_dict(repool_state(net.state_dict(), net.cfg, "meanstd"))
    x = torch.randn(3, 32, 70)
    for mode in ("eval", "train"):
        getattr(net, mode)(), getattr(std, mode)()
        with torch.no_grad():
            torch.testing.assert_close(std(x), net(x), atol=1e-5, rtol=1e-5)
    std(x).square().sum().backward()
    assert std.fc.weight.grad[:, cfg.features // 2:].abs().sum() > 0  # the spread joins in
    with pytest.raises(ValueError, match="only mean -> meanstd"):
        repool_state(std.state_dict(), cfg, "mean")
    # and a network that pools both ways widens to the same function too
    wide = widen_model(std.eval(), (4, 8, 8, 16, 24)).eval()
    with torch.no_grad():
        torch.testing.assert_close(wide(x), std(x), atol=1e-5, rtol=1e-5)
    # and is re-banded statistic by statistic: finer rows and back give the same layer
    fine = widen_model(std, std.cfg.widths, n_mels=64)
    assert fine.cfg.pool == "meanstd" and fine.eval()(torch.randn(2, 64, 50)).shape == (2, 640)
    back = remel_state(fine.state_dict(), fine.cfg, 32)
    torch.testing.assert_close(back["fc.weight"], std.state_dict()["fc.weight"], atol=1e-6, rtol=1e-6)


def test_rechannelled_network_computes_the_same_embedding_and_learns_the_pitch_rows():
    from dataclasses import replace

    from trainer.widen import rechannel_state
    net = _trained_like()
    cfg = replace(net.cfg, channels=2)
    two = CSN(cfg)
    two.load_state_dict(rechannel_state(net.state_dict(), net.cfg, 2))
    mel, pitch = torch.randn(3, 32, 70), torch.randn(3, 32, 70)
    x = torch.stack([mel, pitch], dim=1)
    for mode in ("eval", "train"):
        getattr(net, mode)(), getattr(two, mode)()
        with torch.no_grad():
            torch.testing.assert_close(two(x), net(mel), atol=1e-5, rtol=1e-5)
    two(x).square().sum().backward()
    assert two.encoder[0][0].weight.grad[:, 1].abs().sum() > 0  # the pitch rows join in
    with pytest.raises(ValueError, match="dropping channels"):
        rechannel_state(two.state_dict(), cfg, 1)


def test_a_network_reading_pitch_rows_widens_to_the_same_embedding():
    from dataclasses import replace

    from trainer.widen import rechannel_state
    net = _trained_like()
    two = CSN(replace(net.cfg, channels=2))
    state = rechannel_state(net.state_dict(), net.cfg, 2)
    state["encoder.0.0.weight"][:, 1] = 0.1 * torch.randn_like(state["encoder.0.0.weight"][:, 1])
    two.load_state_dict(state)
    wide = widen_model(two.eval(), (6, 8, 8, 16, 24)).eval()
    assert wide.cfg.channels == 2
    x = torch.randn(3, 2, 32, 70)
    with torch.no_grad():
        torch.testing.assert_close(wide(x), two(x), atol=1e-5, rtol=1e-5)
