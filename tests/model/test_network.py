import pytest
import torch

from model.audio import AudioConfig, log_mel
from model.network import CSN, ModelSpec, NetConfig, calibrate_batch_norm

SMALL = NetConfig(widths=(4, 8, 8, 16, 16), n_mels=64)


@pytest.mark.parametrize("seconds", [3, 5, 10])
def test_any_segment_length_gives_640(seconds):
    audio = AudioConfig(n_mels=64)
    net = CSN(SMALL).eval()
    mel = log_mel(torch.randn(2, audio.sample_rate * seconds) * 0.1, audio)
    assert net(mel).shape == (2, 640)


def test_full_size_network_has_ten_convs():
    net = CSN(NetConfig())
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    pools = [m for m in net.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert len(convs) == 10 and len(bns) == 10 and len(pools) == 5
    assert net.fc.out_features == 640


def test_individual_network_is_the_same_class():
    net = CSN(NetConfig(widths=SMALL.widths, n_mels=64, out_dim=128)).eval()
    assert net(torch.zeros(1, 64, 100)).shape == (1, 128)


def test_wrong_input_shape_is_refused():
    with pytest.raises(ValueError, match="expected"):
        CSN(SMALL)(torch.zeros(1, 128, 100))
    with pytest.raises(ValueError, match="multiple of 32"):
        NetConfig(n_mels=100)


def test_the_inference_copy_folds_batch_norm_and_answers_the_same():
    torch.manual_seed(0)
    audio = AudioConfig(n_mels=64)
    t = torch.arange(audio.sample_rate * 5) / audio.sample_rate
    waves = torch.stack([0.3 * torch.sin(2 * torch.pi * f * t) for f in (55.0, 220.0, 880.0, 3000.0)]
                        + [0.05 * torch.randn(len(t)), 0.4 * torch.randn(len(t))])
    mel = log_mel(waves, audio)
    net = CSN(NetConfig(widths=(8, 16, 16, 32, 32), n_mels=64))
    calibrate_batch_norm(net, mel)  # running statistics of these inputs: they answer apart
    with torch.no_grad():  # and an affine that is not the identity
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.5, 0.5)
    fast = net.for_inference()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert fast.encoder[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == 10  # untouched
    with torch.inference_mode():
        want, got = net(mel), fast(mel)
    assert got.shape == want.shape == (6, 640)
    spread = float((want - want.mean(0)).abs().max())
    assert spread > 0.1  # the six inputs answer differently
    assert float((got - want).abs().max()) < 1e-4 * spread


@pytest.mark.gpu
def test_cpu_and_cuda_agree():
    torch.manual_seed(0)
    spec = ModelSpec(net=SMALL, audio=AudioConfig(n_mels=64))
    m = CSN(spec.net).eval()
    x = torch.randn(4, 22050 * 3) * 0.1
    with torch.no_grad():
        cpu = m(log_mel(x, spec.audio))
        gpu = m.cuda()(log_mel(x.cuda(), spec.audio)).cpu()
    assert torch.allclose(cpu, gpu, atol=1e-3, rtol=1e-3)


def test_statistics_pooling_reads_the_mean_and_spread_over_time():
    torch.manual_seed(0)
    cfg = NetConfig(widths=SMALL.widths, n_mels=64, pool="meanstd")
    net = CSN(cfg).eval()
    assert net.fc.in_features == 2 * CSN(SMALL).fc.in_features == cfg.features
    mel = torch.randn(3, 64, 200)
    with torch.no_grad():
        h = net.encoder(mel.unsqueeze(1)).flatten(1, 2)  # (B, C * F/32, T/32)
        want = net.fc(torch.cat([h.mean(2), (h.var(2, correction=0) + 1e-5).sqrt()], dim=1))
        torch.testing.assert_close(net(mel), want)
        torch.testing.assert_close(net.for_inference()(mel), want, atol=1e-5, rtol=1e-5)
    # one frame after pooling: no spread over time, and the gradient stays finite
    net.train()
    net(torch.randn(2, 64, 20)).square().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())


def test_pooling_is_part_of_the_spec_and_checked():
    assert "pool" not in SMALL.to_dict()  # the paper's mean: cards as they were before the option
    assert NetConfig.from_dict(SMALL.to_dict()).pool == "mean"
    std = NetConfig(widths=SMALL.widths, n_mels=64, pool="meanstd")
    assert NetConfig.from_dict(std.to_dict()) == std
    with pytest.raises(ValueError, match="pool must be one of mean, meanstd"):
        NetConfig(pool="max")


def test_two_channel_network_reads_mel_and_pitch_rows():
    cfg = NetConfig(widths=SMALL.widths, n_mels=64, channels=2)
    audio = AudioConfig(n_mels=64, pitch=True)
    net = CSN(cfg).eval()
    assert net(log_mel(torch.randn(2, audio.sample_rate) * 0.1, audio)).shape == (2, 640)
    assert net.for_inference()(torch.randn(1, 2, 64, 40)).shape == (1, 640)
    with pytest.raises(ValueError, match=r"expected \(batch, 2, 64, frames\)"):
        net(torch.randn(1, 64, 40))
    with pytest.raises(ValueError, match=r"expected \(batch, 64, frames\)"):
        CSN(SMALL)(torch.randn(1, 2, 64, 40))
    assert "channels" not in SMALL.to_dict() and NetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="channels must be 1"):
        NetConfig(channels=3)


def test_pitch_gain_scales_the_pitch_rows_into_the_first_convolution():
    torch.manual_seed(0)
    plain = CSN(NetConfig(widths=SMALL.widths, n_mels=64, channels=2)).eval()
    gained = CSN(NetConfig(widths=SMALL.widths, n_mels=64, channels=2, pitch_gain=10.0)).eval()
    state = plain.state_dict()
    w = state["encoder.0.0.weight"].clone()
    w[:, 1] /= 10.0  # a tenth of the weight at ten times the gain: the same function
    gained.load_state_dict(state | {"encoder.0.0.weight": w})
    x = torch.randn(2, 2, 64, 40)
    with torch.no_grad():
        torch.testing.assert_close(gained(x), plain(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(gained.for_inference()(x), plain(x), atol=1e-4, rtol=1e-4)
    assert NetConfig.from_dict(gained.cfg.to_dict()) == gained.cfg
    assert "pitch_gain" not in plain.cfg.to_dict()
    for bad in ({"channels": 1, "pitch_gain": 10.0}, {"channels": 2, "pitch_gain": 0.0}):
        with pytest.raises(ValueError, match="pitch_gain must be a positive number"):
            NetConfig(**bad)
