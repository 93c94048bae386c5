import pytest
import torch

from model.audio import AudioConfig, log_mel
from model.network import CSN, ModelSpec, NetConfig

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
