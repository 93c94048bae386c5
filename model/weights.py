"""Weights files: ``NAME.safetensors`` (tensors) beside ``NAME.json`` (spec and card).

The JSON holds the architecture and audio settings (``spec``), the part order, and a free-form
``card`` (training data, device, time, metrics). Loading never unpickles: safetensors holds raw
tensors only. Every failure names the file and the problem.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from model.parts import N_PARTS, PARTS

if TYPE_CHECKING:  # torch, safetensors and the network load only when tensors are read or written
    import torch

    from model.network import CSN, ModelSpec

log = logging.getLogger(__name__)

FORMAT = "partwise-weights"
FORMAT_VERSION = 1


class WeightsError(RuntimeError):
    """A weights file is missing, damaged, or does not fit the model it describes."""


@dataclass
class Weights:
    """A loaded model with its spec, card and the checksum of its tensor file."""

    model: CSN
    spec: ModelSpec
    card: dict = field(default_factory=dict)
    sha256: str = ""
    path: Path | None = None


def sidecar(path: str | os.PathLike) -> Path:
    """The JSON card that belongs to a ``.safetensors`` file."""
    return Path(path).with_suffix(".json")


def file_sha256(path: str | os.PathLike) -> str:
    import hashlib  # OpenSSL's import costs a command that never hashes ~10 ms

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``; the temp file never survives."""
    path.parent.mkdir(parents=True, exist_ok=True)
    import tempfile  # with shutil behind it: a reading command never writes this way

    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_weights(path: str | os.PathLike, model: CSN, spec: ModelSpec, card: dict | None = None) -> str:
    """Write tensors and JSON atomically; returns the tensor file's sha256."""
    from safetensors.torch import save_file
    path = Path(path)
    if path.suffix != ".safetensors":
        raise WeightsError(f"{path}: weights file must end in .safetensors")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata={"format": FORMAT}))
    digest = file_sha256(path)
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "parts": list(PARTS),
        "spec": spec.to_dict(),
        "sha256": digest,
        "card": card or {},
    }
    atomic_write(sidecar(path), lambda tmp: Path(tmp).write_text(json.dumps(doc, indent=2)))
    return digest


def read_card(path: str | os.PathLike) -> dict:
    """The parsed JSON beside ``path``; WeightsError when missing or malformed."""
    js = sidecar(path)
    if not js.is_file():
        raise WeightsError(f"{js}: missing the JSON card that describes {Path(path).name}")
    try:
        doc = json.loads(js.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WeightsError(f"{js}: unreadable JSON card ({e})") from e
    if doc.get("format") != FORMAT or "spec" not in doc:
        raise WeightsError(f"{js}: not a Partwise weights card (no format/spec)")
    if doc.get("parts") != list(PARTS):
        raise WeightsError(f"{js}: part order {doc.get('parts')} differs from {list(PARTS)}")
    return doc


DEFAULT_WINDOW = 5.0  # seconds: the shipped model's training pieces, for a card that does not say


def training_window(card: dict, path: str | os.PathLike | None = None) -> float:
    """The length (s) of the pieces a model was trained on (``card["config"]["segment_seconds"]``):
    the window it hears best. :data:`DEFAULT_WINDOW` when the card does not say or says nonsense
    (with a warning naming ``path``)."""
    config = card.get("config") if isinstance(card, dict) else None
    given = config.get("segment_seconds") if isinstance(config, dict) else None
    if given is None:
        return DEFAULT_WINDOW
    try:
        seconds = float(given)
    except (TypeError, ValueError):
        seconds = math.nan
    if not 0.5 <= seconds <= 60.0:  # NaN fails too
        log.warning("%s: the card gives %r s as the training window; using %g-s windows",
                    path or "weights", given, DEFAULT_WINDOW)
        return DEFAULT_WINDOW
    return seconds


def check_spec(spec: ModelSpec, card: dict) -> list[str]:
    """What is wrong with a spec and card (empty when they validate): settings the audio front
    end and the network can run with, and a norm_bias of five finite numbers."""
    a, n = spec.audio, spec.net
    bad = []

    def whole(name: str, v, lo: int, hi: int) -> None:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            bad.append(f"{name} {v!r} (a whole number in [{lo}, {hi}] expected)")

    whole("audio.sample_rate", a.sample_rate, 1000, 384_000)
    whole("audio.n_fft", a.n_fft, 16, 65_536)
    whole("audio.hop_length", a.hop_length, 1, 65_536)
    whole("audio.n_mels", a.n_mels, 32, 1024)
    if not isinstance(a.f_min, (int, float)) or not math.isfinite(a.f_min) or not (
            isinstance(a.sample_rate, int) and 0 <= a.f_min < a.sample_rate / 2):
        bad.append(f"audio.f_min {a.f_min!r} (in [0, sample_rate / 2) expected)")
    if a.n_mels != n.n_mels:
        bad.append(f"audio.n_mels {a.n_mels!r} differs from net.n_mels {n.n_mels!r}")
    if not isinstance(a.pitch, bool):
        bad.append(f"audio.pitch {a.pitch!r} (true or false expected)")
    elif a.channels != n.channels:
        bad.append(f"net.channels {n.channels!r} does not match the front end's "
                   f"{a.channels} (audio.pitch {str(a.pitch).lower()})")
    for i, w in enumerate(n.widths):
        whole(f"net.widths[{i}]", w, 1, 8192)
    whole("net.kernel", n.kernel, 1, 31)
    whole("net.out_dim", n.out_dim, 1, 65_536)  # 640 for a whole model, 128 for an individual net
    bias = card.get("norm_bias")
    if bias is not None and not (isinstance(bias, list) and len(bias) == N_PARTS and all(
            isinstance(b, (int, float)) and math.isfinite(b) for b in bias)):
        bad.append(f"card.norm_bias {bias!r} ({N_PARTS} finite numbers expected)")
    return bad


def load_weights(path: str | os.PathLike, device: str | torch.device = "cpu") -> Weights:
    """Rebuild the model from the JSON spec and load its tensors; never unpickles."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from model.network import CSN, ModelSpec

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    doc = read_card(path)
    try:
        spec = ModelSpec.from_dict(doc["spec"])
    except (KeyError, TypeError, ValueError) as e:
        raise WeightsError(f"{sidecar(path)}: invalid model spec ({e})") from e
    card = doc.get("card", {})
    problems = check_spec(spec, card if isinstance(card, dict) else {})
    if problems:
        raise WeightsError(f"{sidecar(path)}: the card does not validate: {'; '.join(problems)}")
    digest = file_sha256(path)
    if doc.get("sha256") and doc["sha256"] != digest:
        raise WeightsError(
            f"{path}: checksum {digest[:12]} does not match its card ({doc['sha256'][:12]}); "
            "the file is damaged or belongs to another card"
        )
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise WeightsError(f"{path}: damaged or truncated safetensors file ({e})") from e
    model = CSN(spec.net)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise WeightsError(f"{path}: tensors do not match the architecture in its card ({e})") from e
    model.to(device).eval()
    return Weights(model=model, spec=spec, card=doc.get("card", {}), sha256=digest, path=path)
