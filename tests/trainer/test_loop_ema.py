"""The main stage's moving average of the weights (``--ema_decay``): validated, kept, resumed."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from trainer.config import resolve
from trainer.loop import Stage


def _host(tmp_path, decay):
    cfg = resolve("smoke", ["threads=1", f"ema_decay={decay}", "patience=100", "ckpt_every=1"])
    best = []
    host = SimpleNamespace(cfg=cfg, out=tmp_path, progress=False, epochs_this_run=0, rows=[],
                           env=SimpleNamespace(device=torch.device("cpu"), main=True, rank=0),
                           should_pause=lambda: False)
    host.log = host.rows.append
    host.on_best = lambda stage, modules, row: best.append(modules["net"].weight.item())
    return host, best


def _stage(host, net, decay, steps=3):
    return Stage(host, "main", {"net": net}, lr=0.1, epochs=2, steps=steps, budget_s=0.0,
                 ema_decay=decay)


def test_validation_and_best_weights_read_the_average_and_training_the_raw_weights(tmp_path):
    decay = 0.5
    host, best = _host(tmp_path, decay)
    net = nn.Linear(1, 1, bias=False)
    stage = _stage(host, net, decay)
    values = iter(float(v) for v in range(1, 100))
    seen = []

    def step(rng):  # stands in for an optimizer step: the raw weight becomes 1, 2, 3, ...
        with torch.no_grad():
            net.weight.fill_(next(values))
        return {"loss": 0.0}

    def val():
        seen.append(net.weight.item())
        return {"score": len(seen)}  # rising: every epoch is the best so far

    stage.train(step, val, "score")
    # ema_1 = 1; ema_k = 0.5 ema_(k-1) + 0.5 k  ->  after 3 steps 2.25, after 6 steps 5.03125
    assert seen == pytest.approx([2.25, 5.03125])
    assert best == pytest.approx(seen)  # the best weights handed on are the average's
    assert net.weight.item() == 6.0  # and training goes on from the raw weights

    blob = torch.load(tmp_path / "ckpt-main.pt", weights_only=True)
    assert blob["modules"]["net"]["weight"].item() == 6.0
    assert blob["ema"]["net"]["module.weight"].item() == pytest.approx(5.03125)

    # a resumed stage goes on averaging from the saved average, not from the raw weights
    net2 = nn.Linear(1, 1, bias=False)
    resumed = _stage(host, net2, decay)
    assert net2.weight.item() == 6.0
    assert resumed.ema["net"].module.weight.item() == pytest.approx(5.03125)
    with torch.no_grad():
        net2.weight.fill_(7.0)
    resumed.ema["net"].update_parameters(net2)
    with resumed.averaged():
        assert net2.weight.item() == pytest.approx(6.015625)
    assert net2.weight.item() == 7.0


def test_without_a_decay_validation_reads_the_raw_weights(tmp_path):
    host, best = _host(tmp_path, 0.0)
    net = nn.Linear(1, 1, bias=False)
    stage = _stage(host, net, 0.0, steps=2)
    values = iter(float(v) for v in range(1, 100))

    def step(rng):
        with torch.no_grad():
            net.weight.fill_(next(values))
        return {"loss": 0.0}

    stage.train(step, lambda: {"score": net.weight.item()}, "score")
    assert best == [2.0, 4.0] and stage.ema == {}
    assert "ema" not in torch.load(tmp_path / "ckpt-main.pt", weights_only=True)


@pytest.mark.parametrize("bad", ["1.0", "-0.1", "1.5"])
def test_ema_decay_outside_zero_to_one_is_refused(bad):
    with pytest.raises(ValueError, match="ema_decay"):
        resolve("smoke", [f"--ema_decay={bad}"])


def test_a_scaled_module_steps_at_its_multiple_of_the_schedule_and_unscaled_ones_share_a_group(tmp_path):
    host, _ = _host(tmp_path, 0.0)
    net, norm, head = nn.Linear(1, 1), nn.Linear(1, 1), nn.Linear(1, 1)
    mods = {"net": net, "norm": norm, "head": head}
    stage = Stage(host, "main", mods, lr=0.1, epochs=1, steps=2, budget_s=0.0, lr_scale={"head": 50.0})
    # net and norm in one group, as a stage without scales holds them (older checkpoints load)
    assert [len(g["params"]) for g in stage.opt.param_groups] == [4, 2]
    seen = []

    def step(rng):
        seen.append([g["lr"] for g in stage.opt.param_groups])
        return {"loss": 0.0}

    stage.train(step, lambda: {"score": 0.0}, "score")
    assert all(head_lr == pytest.approx(50 * lr) and lr > 0 for lr, head_lr in seen)
    plain = Stage(host, "other", {"net": nn.Linear(1, 1), "norm": nn.Linear(1, 1)}, lr=0.1, epochs=1,
                  steps=1, budget_s=0.0, lr_scale={"content": 50.0})  # a module it does not hold
    assert len(plain.opt.param_groups) == 1


def test_resuming_with_a_module_the_checkpoint_lacks_says_so(tmp_path):
    host, _ = _host(tmp_path, 0.0)
    stage = Stage(host, "main", {"net": nn.Linear(1, 1)}, lr=0.1, epochs=1, steps=1, budget_s=0.0)
    stage.train(lambda rng: {"loss": 0.0}, lambda: {"score": 0.0}, "score")
    with pytest.raises(ValueError, match="no saved content to resume"):
        Stage(host, "main", {"net": nn.Linear(1, 1), "content": nn.Linear(1, 1)}, lr=0.1,
              epochs=1, steps=1, budget_s=0.0)


def test_resuming_with_a_module_of_another_form_says_so(tmp_path):
    host, _ = _host(tmp_path, 0.0)
    stage = Stage(host, "main", {"net": nn.Linear(1, 1), "content": nn.Linear(2, 3)}, lr=0.1,
                  epochs=1, steps=1, budget_s=0.0)
    stage.train(lambda rng: {"loss": 0.0}, lambda: {"score": 0.0}, "score")
    held = nn.Linear(2, 3)
    nn.utils.parametrizations.orthogonal(held, "weight")  # a held read-out where a free one was
    with pytest.raises(ValueError, match="the saved content has another form"):
        Stage(host, "main", {"net": nn.Linear(1, 1), "content": held}, lr=0.1,
              epochs=1, steps=1, budget_s=0.0)
