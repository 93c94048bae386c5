"""Training configuration: one dataclass with commented defaults, presets, and overrides.

``resolve(preset, overrides)`` starts from a preset and applies ``key=value`` strings, so any
value can be changed from the command line (``--lr=3e-4 --widths=16,32,64,128,128``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from model.audio import N_FFT, N_MELS, SAMPLE_RATE, AudioConfig
from model.losses import NORM_LAMBDA, TRIPLET_MARGIN, contrast_metrics
from model.network import ModelSpec, NetConfig
from model.parts import PARTS, SUBSPACE_DIM
from trainer.augment import SpecMasks
from trainer.content import N_CHROMA

if TYPE_CHECKING:
    from model.weights import Weights

WIDTHS: tuple[int, ...] = NetConfig.widths  # the paper's network (model.network.NetConfig)


@dataclass
class TrainConfig:
    preset: str = "paper"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # CPU threads for torch; 0 = all cores
    amp: bool = True  # mixed precision (bf16 autocast) on CUDA
    # --- data
    max_tracks: int = 0  # 0 = every training track
    max_val_tracks: int = 0
    # how often each dataset's training tracks are drawn, by folder name: "freedoom:4" draws a
    # Freedoom track four times as often as a track of a dataset not named (weight 1)
    data_weights: str = ""
    # how often each part is the condition of a step's triplets and label groups: "piano:2" makes
    # piano the condition twice as often as a part not named (weight 1); "" = evenly
    part_weights: str = ""
    segment_seconds: float = 3.0  # training and validation segment length (paper: 3 s)
    hop_seconds: float = 1.5  # candidate segment starts (paper: 50 % overlap)
    same_tempo: bool = True  # mix pseudo pieces only within one of the 36 tempo classes
    keep_prob: float = 0.6  # made silences: chance that each non-condition part is mixed in
    aligned_prob: float = 0.0  # chance that a triplet's shared parts come from the same time (sampling.py)
    # chance that an aligned positive (and a label group's piece at the label's time) takes its part
    # from the part's twin, the same notes in another program, font and effects
    # ('partwise-train data twins'); 0 = off
    twin_prob: float = 0.0
    twin_parts: tuple[str, ...] = ("piano",)  # the parts whose twins are used
    level_db: float = -24.0  # bring each part to this RMS (dBFS) before the gains; 0 = off
    gain_db: float = 8.0  # random gain per part in [-gain_db, 0] dB
    eq_db: float = 0.0  # training mixes: each part coloured by a random smooth EQ within +-eq_db dB (0 = off)
    # main stage: masks on each training mix's spectrogram (trainer.augment), drawn per row:
    # mask_freq spans of up to mask_bands adjacent bands and mask_time spans of up to
    # mask_time_share of the frames, silenced; 0 masks = off. Validation never masks.
    mask_freq: int = 0
    mask_bands: int = 12
    mask_time: int = 0
    mask_time_share: float = 0.1
    # --- model (the main CSN)
    widths: tuple[int, ...] = WIDTHS
    n_mels: int = N_MELS
    pool: str = "mean"  # time pooling of the main network: mean, or meanstd (model.network)
    n_fft: int = N_FFT  # STFT window (samples); hop stays 512, so the network's input shape does not change
    pitch: bool = False  # a second input channel: the spectrum on log-spaced bands A0-C8 (model.audio)
    pitch_gain: float = 1.0  # the pitch rows' gain into the first convolution (model.network)
    sample_rate: int = SAMPLE_RATE
    # --- method switches (paper Table 2 rows)
    use_norm: bool = True  # norm loss
    use_pseudo: bool = True  # pseudo musical pieces
    use_additional: bool = True  # one additional triplet per basic triplet
    use_pretrain: bool = True  # pre-training from individual networks
    init_weights: str = ""  # start the main stage from these weights (fit --init); no stages before it
    # with init_weights: the first this many conv pairs (and their batch norms) start from fresh
    # random weights (drawn from ``seed``), the rest from init_weights, so the first layers learn
    # their input (e.g. the pitch rows) afresh under a trained trunk
    init_reset_blocks: int = 0
    # a teacher: the main stage adds distill_lambda x model.losses.distill_loss between this
    # run's embedding and the teacher's (these weights, frozen, through their own front end)
    # on every mix of a step, e.g. to hold a trained model's answers while a changed front end
    # or fresh first blocks relearn (0 = off)
    distill_weights: str = ""
    distill_lambda: float = 0.0
    # > 0: the teacher's weight falls linearly from distill_lambda to 0 over this share of the
    # stage's schedule (the progress the learning rate follows: steps or time budget), and the
    # teacher is not run after it, so the last of the run trains on its own terms (0 = held)
    distill_fade: float = 0.0
    margin: float = TRIPLET_MARGIN
    norm_lambda: float = NORM_LAMBDA
    spread_lambda: float = 0.0  # weight of the subspace-spread term (model.losses.spread_loss)
    spread_floor: float = 0.0  # > 1: the spread term pushes only subspaces under this many directions
    spread_parts: tuple[str, ...] = PARTS  # the subspaces the spread term acts on
    # a second spread term, on each subspace's between-part scatter (pairs sharing a part's audio
    # removed), with its own weight, floor and parts
    spread_between_lambda: float = 0.0
    spread_between_floor: float = 0.0
    spread_between_parts: tuple[str, ...] = PARTS
    # > 0: its total and within-part scatters pooled over steps with this decay (0.98: about fifty
    # steps) instead of one step's rows and pairs (model.losses.ScatterMemory)
    spread_between_memory: float = 0.0
    # weight of the invariance term (model.losses.invariance_loss): in each subspace, pieces that
    # share the rest of the mix are on average no nearer than pieces that share nothing
    invariance_lambda: float = 0.0
    invariance_parts: tuple[str, ...] = PARTS  # the subspaces it acts on
    # weight of the stem term (model.losses.stem_loss): each triplet's anchor, in its condition's
    # subspace, is pulled to the embedding of its condition part played alone (one clean stem
    # row per triplet, rendered beside the mixes at the same level and held constant)
    stem_lambda: float = 0.0
    stem_parts: tuple[str, ...] = PARTS  # the conditions it acts on
    # weight of the content term (trainer.content): a linear read-out of each named part's
    # subspace predicts the pitch-class profile of that part's clean stem, in content_slices time
    # spans of the segment, from the mix
    content_lambda: float = 0.0
    content_parts: tuple[str, ...] = ("piano",)
    content_slices: int = 4
    content_lr_scale: float = 50.0  # the read-outs' learning rate, as a multiple of lr
    # > 0: each read-out held orthonormal, its logits W z / content_temperature (ContentHead)
    content_temperature: float = 0.0
    solo_id_lambda: float = 0.0  # weight of the single-part identification term (model.losses.solo_id_loss)
    contrast_lambda: float = 0.0  # weight of the in-batch contrastive term (model.losses.part_contrast_loss)
    contrast_tau: float = 0.1  # its temperature (on cosines; with euclid, on squared distances over s)
    contrast_same_time: bool = False  # its positives share a part's audio (track and time), not only its track
    contrast_parts: tuple[str, ...] = PARTS  # the subspaces it acts on
    # groups of pseudo pieces sharing one part's audio (Table 2's structure) added to each step for
    # the contrastive term (and the norm loss): label_groups groups of group_size pieces
    # (sampling.TripletSampler.label_groups); 0 = the triplets' rows alone
    label_groups: int = 0
    group_size: int = 4
    group_other_time: float = 0.0  # chance a group piece takes the label part at another time (music-ID)
    contrast_metric: str = "cosine"  # cosine: on directions; euclid: -squared distance, lengths too;
    # or per part, cosine where not named: "drums:euclid,bass:euclid"
    contrast_hold_scale: bool = True  # euclid: the subspace's scale a constant of the step (lengths may grow)
    # --- individual networks (one per part, clean stems, plain triplet loss)
    ind_widths: tuple[int, ...] = WIDTHS
    ind_epochs: int = 100
    ind_steps: int = 50  # steps per epoch
    ind_batch: int = 32
    ind_lr: float = 1e-3
    # --- pre-training (eq. 9)
    pre_epochs: int = 100
    pre_steps: int = 50
    pre_batch: int = 32
    pre_lr: float = 1e-3
    pre_pseudo: bool = False  # regress on pseudo pieces with made silences, not only dataset pieces
    pre_center: bool = False  # subtract each individual net's mean output from its target block
    pre_block_norm: bool = False  # scale each sounding target block to unit length (norm = presence)
    pre_loss: str = "mse"  # "mse": eq. 9; "blocks": direction and length part by part (losses.pretrain_block_loss)
    # --- main training
    epochs: int = 1000
    triplets_per_epoch: int = 5000  # basic triplets drawn anew every epoch
    batch: int = 32  # basic triplets per step
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 200
    solo_rows: int = 0  # clean single stems added to each step for the norm loss (and solo_id_lambda's term) only (sampling.solo_pieces)
    ema_decay: float = 0.0  # > 0: validate and keep a moving average of the weights (decay per step)
    # --- bookkeeping
    val_triplets: int = 600  # fixed validation triplets (drawn once from the validation split)
    val_solos: int = 250  # fixed clean validation stems: largest-norm identification (Table 3) per epoch
    patience: int = 50  # early stop after this many epochs without a better validation score
    ckpt_every: int = 10  # epochs
    time_budget_min: float = 0.0  # stop each stage when its share of this budget is spent (0 = no limit)
    stage_share: tuple[float, ...] = (0.25, 0.2, 0.55)  # individual, pretrain, main
    max_epochs_this_run: int = 0  # stop (resumable) after this many epochs in this process; 0 = off

    def spec_masks(self) -> SpecMasks:
        """The main stage's masks on the training spectrograms (trainer.augment)."""
        return SpecMasks(self.mask_freq, self.mask_bands, self.mask_time, self.mask_time_share)

    def audio_config(self) -> AudioConfig:
        """The front end of every network of the run (each stage embeds by it)."""
        return AudioConfig(sample_rate=self.sample_rate, n_mels=self.n_mels, n_fft=self.n_fft,
                           pitch=self.pitch)

    def model_spec(self) -> ModelSpec:
        audio = self.audio_config()
        net = NetConfig(widths=tuple(self.widths), n_mels=self.n_mels, pool=self.pool,
                        channels=audio.channels, pitch_gain=self.pitch_gain)
        return ModelSpec(net=net, audio=audio)

    def individual_spec(self) -> ModelSpec:
        audio = self.audio_config()
        net = NetConfig(widths=tuple(self.ind_widths), n_mels=self.n_mels, out_dim=SUBSPACE_DIM,
                        channels=audio.channels)
        return ModelSpec(net=net, audio=audio)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        cfg = cls()
        for f in dataclasses.fields(cls):
            if f.name in d:
                v = d[f.name]
                setattr(cfg, f.name, tuple(v) if isinstance(v, list) else v)
        if d.get("spread_between"):  # runs r16-r16c: one spread term, switched to the between form
            cfg.spread_between_lambda, cfg.spread_lambda = cfg.spread_lambda, 0.0
            cfg.spread_between_floor, cfg.spread_between_parts = cfg.spread_floor, cfg.spread_parts
        return cfg


PRESETS: dict[str, dict] = {
    # The paper's schedule on a GPU: full-size network, 5000 triplets an epoch, batch 32.
    "paper": {},
    # The whole pipeline in at most 90 minutes on a 2-core CPU.
    "cpu": dict(
        sample_rate=16000, n_mels=64,
        widths=(16, 32, 64, 128, 128), ind_widths=(8, 16, 32, 64, 64),
        # Epoch counts are ceilings: the 76-minute budget of epochs, shared 20/20/60 by the stages,
        # ends each stage first on this 2-core CPU (the LR schedule follows the budget).
        ind_epochs=25, ind_steps=30, ind_batch=32,
        pre_epochs=80, pre_steps=60, pre_batch=32, pre_pseudo=True,
        epochs=200, triplets_per_epoch=1920, batch=32, warmup_steps=100,
        val_triplets=400, patience=15, ckpt_every=1, time_budget_min=76.0,
        stage_share=(0.2, 0.2, 0.6),
        # The paper's lambda = 0.1 suits 1000 epochs; in a short schedule the triplet gradients
        # drown the norm loss and no subspace learns to fall silent (Table 3 stays at chance).
        norm_lambda=1.0,
    ),
    # Seconds, for tests.
    "smoke": dict(
        widths=(4, 8, 8, 16, 16), ind_widths=(4, 4, 8, 8, 8), n_mels=32,
        segment_seconds=1.0, hop_seconds=0.5,
        ind_epochs=1, ind_steps=2, ind_batch=4,
        pre_epochs=1, pre_steps=2, pre_batch=4,
        epochs=3, triplets_per_epoch=8, batch=4, warmup_steps=0,
        val_triplets=12, patience=100, ckpt_every=1, same_tempo=False,
    ),
}


def _parse_value(field_type: object, default: object, text: str) -> object:
    if isinstance(default, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean, got {text!r}")
    if isinstance(default, tuple):
        kind = type(default[0]) if default else float
        return tuple(kind(x) for x in text.split(",") if x)
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        return float(text)
    return text


def resolve(preset: str, overrides: list[str] | None = None) -> TrainConfig:
    """Preset values, then ``key=value`` overrides; unknown keys are an error."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    return apply_overrides(TrainConfig(preset=preset, **PRESETS[preset]), overrides)


def apply_overrides(cfg: TrainConfig, overrides: list[str] | None) -> TrainConfig:
    """Apply ``key=value`` (or ``--key=value``) strings to ``cfg`` in place; returns it."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for item in overrides or []:
        key, sep, value = item.lstrip("-").partition("=")
        key = key.replace("-", "_")
        if not sep or key not in fields:
            raise ValueError(f"bad override {item!r}: expected key=value with key one of the config fields")
        setattr(cfg, key, _parse_value(fields[key].type, getattr(cfg, key), value))
    try:
        contrast_metrics(cfg.contrast_metric)
    except ValueError as e:
        raise ValueError(f"contrast_metric: {e}") from None
    for key in ("contrast_parts", "spread_parts", "spread_between_parts", "invariance_parts",
                "stem_parts", "content_parts", "twin_parts"):
        unknown = [name for name in getattr(cfg, key) if name not in PARTS]
        if unknown:
            raise ValueError(f"{key}: unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    try:
        parse_data_weights(cfg.data_weights)
    except ValueError as e:
        raise ValueError(f"data_weights: {e}") from None
    try:
        part_weights(cfg.part_weights)
    except ValueError as e:
        raise ValueError(f"part_weights: {e}") from None
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise ValueError(f"ema_decay: {cfg.ema_decay} is not in [0, 1) (0 = no moving average)")
    if cfg.label_groups < 0 or cfg.group_size < 2:
        raise ValueError(f"label_groups: need label_groups >= 0 and group_size >= 2, got "
                         f"{cfg.label_groups} and {cfg.group_size}")
    if not 0.0 <= cfg.group_other_time <= 1.0:
        raise ValueError(f"group_other_time: need a probability in [0, 1], got {cfg.group_other_time}")
    if not 0.0 <= cfg.twin_prob <= 1.0:
        raise ValueError(f"twin_prob: need a probability in [0, 1], got {cfg.twin_prob}")
    if cfg.twin_prob and (not cfg.twin_parts or "drums" in cfg.twin_parts):
        raise ValueError(f"twin_parts: need at least one part and not drums (no twins are "
                         f"rendered for drums), got {', '.join(cfg.twin_parts) or 'none'}")
    if cfg.label_groups and not cfg.contrast_lambda:
        raise ValueError("label_groups: the groups feed the contrastive term; set contrast_lambda > 0")
    if cfg.invariance_lambda < 0:
        raise ValueError(f"invariance_lambda: {cfg.invariance_lambda} is negative (0 = off)")
    if cfg.stem_lambda < 0:
        raise ValueError(f"stem_lambda: {cfg.stem_lambda} is negative (0 = off)")
    if cfg.content_lambda < 0:
        raise ValueError(f"content_lambda: {cfg.content_lambda} is negative (0 = off)")
    if cfg.content_lambda and (cfg.content_slices < 1 or not cfg.content_parts
                               or not cfg.content_lr_scale > 0):
        raise ValueError(f"content: need content_slices >= 1, at least one part and "
                         f"content_lr_scale > 0, got {cfg.content_slices}, "
                         f"{list(cfg.content_parts)} and {cfg.content_lr_scale}")
    if cfg.content_temperature < 0 or (cfg.content_lambda and cfg.content_temperature
                                       and cfg.content_slices * N_CHROMA > SUBSPACE_DIM):
        raise ValueError(f"content_temperature: {cfg.content_temperature} must be >= 0 (0 = a free "
                         f"read-out), and a held read-out needs content_slices x {N_CHROMA} <= "
                         f"{SUBSPACE_DIM} "
                         f"(got {cfg.content_slices} slices)")
    if isinstance(cfg.init_reset_blocks, bool) or not 0 <= cfg.init_reset_blocks <= 5:
        raise ValueError(f"init_reset_blocks: need 0-5 conv pairs (0 = none), got {cfg.init_reset_blocks}")
    if not (math.isfinite(cfg.distill_lambda) and cfg.distill_lambda >= 0):
        raise ValueError(f"distill_lambda: {cfg.distill_lambda} is not a weight >= 0 (0 = off)")
    if bool(cfg.distill_lambda) != bool(cfg.distill_weights):
        raise ValueError("distill: give both the teacher (distill_weights=FILE) and its weight "
                         f"(distill_lambda > 0), got {cfg.distill_weights!r} and {cfg.distill_lambda}")
    if not (math.isfinite(cfg.distill_fade) and 0.0 <= cfg.distill_fade <= 1.0):
        raise ValueError(f"distill_fade: {cfg.distill_fade} is not a share of the run in [0, 1] "
                         "(0 = the teacher's weight held)")
    if cfg.distill_fade and not cfg.distill_lambda:
        raise ValueError("distill_fade: needs a teacher (distill_weights, distill_lambda) to fade")
    if not 0.0 <= cfg.spread_between_memory < 1.0:
        raise ValueError(f"spread_between_memory: {cfg.spread_between_memory} is not in [0, 1) "
                         "(0 = each step's own rows)")
    cfg.spec_masks()  # refuses negative counts, a zero width, a share outside (0, 1)
    return cfg


def check_start(cfg: TrainConfig) -> Weights | None:
    """ValueError where the config asks for what only a run from start weights can do;
    WeightsError or ValueError for a teacher that cannot teach this run. Returns the teacher's
    weights (None without one), so a caller that goes on to train reads them once."""
    if cfg.init_reset_blocks and not cfg.init_weights:
        raise ValueError("init_reset_blocks: needs start weights (fit --init); a run from "
                         "random weights draws every block afresh anyway")
    return load_teacher(cfg) if cfg.distill_weights else None


def load_teacher(cfg: TrainConfig) -> Weights:
    """The teacher of ``distill_weights`` (:class:`model.weights.Weights`); WeightsError naming
    the file when it is missing or damaged, ValueError when it hears another sample rate."""
    from model.weights import load_weights

    w = load_weights(Path(cfg.distill_weights))
    if w.spec.audio.sample_rate != cfg.sample_rate:
        raise ValueError(f"{cfg.distill_weights}: the teacher hears {w.spec.audio.sample_rate} Hz, "
                         f"this run {cfg.sample_rate} Hz")
    return w


def portable_config(config: dict) -> dict:
    """A run's config as a card records it: the start and teacher weights by file name only
    (no machine paths in a card)."""
    out = dict(config)
    for key in ("init_weights", "distill_weights"):
        if out.get(key):
            out[key] = Path(out[key]).name
    return out


def parse_data_weights(text: str, example: str = "freedoom:4") -> dict[str, float]:
    """``"freedoom:4,synth600:0.5"`` -> {"freedoom": 4.0, "synth600": 0.5}; "" -> {}. Any
    ``name:weight`` list (:func:`part_weights` reads parts with it); ``example`` goes into the
    error message."""
    out: dict[str, float] = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        name, sep, value = item.rpartition(":")
        try:
            w = float(value)
        except ValueError:
            w = 0.0
        if not sep or not name or not (math.isfinite(w) and w > 0):
            raise ValueError(f"{item!r}: expected name:weight with a positive weight, "
                             f"e.g. {example}")
        if name in out:
            raise ValueError(f"{name!r} is weighted twice")
        out[name] = w
    return out


def dataset_weights(text: str, names: list[str]) -> list[float] | None:
    """One weight per dataset folder name in ``names`` (1 where not named); None when every
    weight is 1. A name in ``text`` that is not among ``names`` is an error."""
    given = parse_data_weights(text)
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ValueError(f"data_weights names {', '.join(unknown)}, not among the datasets "
                         f"({', '.join(names)})")
    weights = [given.get(n, 1.0) for n in names]
    return None if all(w == 1.0 for w in weights) else weights


def part_weights(text: str) -> list[float] | None:
    """One condition weight per part, in ``PARTS`` order (1 where not named), from
    ``"piano:2,guitar:1.5"``; None when every weight is 1 (conditions spread evenly)."""
    given = parse_data_weights(text, example="piano:2")
    unknown = sorted(set(given) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    weights = [given.get(p, 1.0) for p in PARTS]
    return None if all(w == 1.0 for w in weights) else weights


__all__ = ["PRESETS", "TrainConfig", "apply_overrides", "dataset_weights", "parse_data_weights",
           "part_weights", "resolve"]
