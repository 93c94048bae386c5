"""The Conditional Similarity Network of the method (paper Fig. 7).

Ten 3x3 convolutions, each followed by batch norm and ReLU; max pooling after every two (the
encoder half of a U-Net); the frequency axis is folded into channels, averaged over time, and a
fully connected layer maps to the embedding. With ``pool="meanstd"`` the time axis gives each
feature's standard deviation beside its mean (statistics pooling), so the embedding layer also
sees how a feature moves within the segment, not only its average. The same class, with
``out_dim=128``, is the per-instrument "individual network" used for pre-training targets and
as a baseline.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from model.audio import AudioConfig
from model.parts import EMBED_DIM

POOLS = ("mean", "meanstd")
STD_EPS = 1e-5  # under the standard deviation's square root: finite gradients on constant features


@dataclass(frozen=True)
class NetConfig:
    """Architecture. ``widths`` holds the channel count of each of the five conv pairs."""

    widths: tuple[int, ...] = (32, 64, 128, 256, 512)
    out_dim: int = EMBED_DIM
    n_mels: int = 128
    kernel: int = 3
    pool: str = "mean"  # over time: "mean" (the paper's) or "meanstd" (mean and standard deviation)
    channels: int = 1  # input channels: 1 (mel), 2 (mel and pitch rows, AudioConfig.pitch)
    # the pitch rows enter the first convolution multiplied by this: Adam's steps do not depend
    # on a gradient's scale, so the weights on them move this many times faster in effect
    pitch_gain: float = 1.0

    def __post_init__(self) -> None:
        if len(self.widths) != 5:
            raise ValueError(f"widths needs 5 entries (10 conv layers), got {self.widths}")
        if self.n_mels % 32:
            raise ValueError(f"n_mels must be a multiple of 32 (5 poolings), got {self.n_mels}")
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {', '.join(POOLS)}, got {self.pool!r}")
        if isinstance(self.channels, bool) or self.channels not in (1, 2):
            raise ValueError(f"channels must be 1 (mel) or 2 (mel and pitch), got {self.channels!r}")
        if not (isinstance(self.pitch_gain, (int, float)) and math.isfinite(self.pitch_gain)
                and self.pitch_gain > 0) or (self.channels == 1 and self.pitch_gain != 1.0):
            raise ValueError(f"pitch_gain must be a positive number, and 1 without the pitch "
                             f"channel, got {self.pitch_gain!r} with {self.channels} channel(s)")

    @property
    def stats(self) -> int:
        """Statistics the time pooling gives each feature: the mean, and with ``meanstd`` the
        standard deviation after it (the embedding layer reads them in that order)."""
        return 2 if self.pool == "meanstd" else 1

    @property
    def features(self) -> int:
        """Inputs of the embedding layer: channels x frequency rows x statistics."""
        return self.widths[-1] * (self.n_mels // 32) * self.stats

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        if self.pool == "mean":  # the paper's pooling: cards (and their checksums) as before
            del d["pool"]
        if self.channels == 1:  # likewise the mel input alone
            del d["channels"]
        if self.pitch_gain == 1.0:
            del d["pitch_gain"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> NetConfig:
        kw = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        if "widths" in kw:
            kw["widths"] = tuple(int(w) for w in kw["widths"])
        return cls(**kw)


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model and feed it: network + audio front end."""

    net: NetConfig = field(default_factory=NetConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)

    def to_dict(self) -> dict:
        return {"net": self.net.to_dict(), "audio": self.audio.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        return cls(net=NetConfig.from_dict(d["net"]), audio=AudioConfig.from_dict(d["audio"]))


def _conv(c_in: int, c_out: int, k: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class CSN(nn.Module):
    """(B, n_mels, frames) normalized log-mel -> (B, out_dim) embedding. Any length >= 1 frame.
    With ``cfg.channels`` 2 the input is (B, 2, n_mels, frames): mel and pitch rows."""

    def __init__(self, cfg: NetConfig = NetConfig()):
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        c_in = cfg.channels
        for w in cfg.widths:
            layers += [_conv(c_in, w, cfg.kernel), _conv(w, w, cfg.kernel)]
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
            c_in = w
        self.encoder = nn.Sequential(*layers)
        self.fc = nn.Linear(cfg.features, cfg.out_dim)
        self.channels_last = False  # feed the encoder channels-last (see for_inference)

    def for_inference(self) -> CSN:
        """A copy for inference only: each batch norm folded into the convolution before it
        (its running statistics and affine become the convolution's weight scale and bias) and
        the weights laid out channels-last, the layout the CPU's convolution kernels run
        fastest. The same answers to float rounding (a few 1e-6 on the shipped model), at about
        half the CPU time. Not trainable: the copy has no batch norms left to update."""
        m = copy.deepcopy(self).eval()
        for block in m.encoder:
            if isinstance(block, nn.Sequential) and isinstance(block[0], nn.Conv2d) \
                    and isinstance(block[1], nn.BatchNorm2d):
                block[0] = fuse_conv_bn_eval(block[0], block[1])
                block[1] = nn.Identity()
        return m.use_channels_last()

    def use_channels_last(self) -> CSN:
        """Lay the weights out channels-last and feed the encoder so (in place; returns self):
        the layout the CPU's convolution kernels run fastest, in training too. Saved weights
        stay contiguous (:func:`model.weights.save_weights`)."""
        self.channels_last = True
        return self.to(memory_format=torch.channels_last)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        n, c = self.cfg.n_mels, self.cfg.channels
        if c == 1 and (mel.dim() != 3 or mel.shape[1] != n):
            raise ValueError(f"expected (batch, {n}, frames), got {tuple(mel.shape)}")
        if c > 1 and (mel.dim() != 4 or mel.shape[1:3] != (c, n)):
            raise ValueError(f"expected (batch, {c}, {n}, frames), got {tuple(mel.shape)}")
        x = mel.unsqueeze(1) if c == 1 else mel
        if self.cfg.pitch_gain != 1.0:
            x = x * x.new_tensor([1.0, self.cfg.pitch_gain]).view(1, 2, 1, 1)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        h = self.encoder(x)  # (B, C, F/32, T/32)
        b, c, f, t = h.shape
        h = h.reshape(b, c * f, t)
        if self.cfg.pool == "meanstd":
            var, mean = torch.var_mean(h, dim=2, correction=0)
            return self.fc(torch.cat([mean, torch.sqrt(var + STD_EPS)], dim=1))
        return self.fc(h.mean(dim=2))  # time average


@torch.no_grad()
def calibrate_batch_norm(model: nn.Module, mel: torch.Tensor) -> nn.Module:
    """Refit every batch norm's running statistics to one batch (B, n_mels, frames), as a
    cumulative average; returns the model in eval mode. Gives an untrained network inputs on
    the scale it will see, so different audio maps to clearly different points."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    model(mel)
    return model.eval()

