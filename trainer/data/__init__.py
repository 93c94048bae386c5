"""Training data in the Slakh2100 layout: generate, render, write and load it."""

from trainer.data.dataset import (
    ACTIVITY_THRESHOLD_DB,
    SPLITS,
    TEMPO_CLASSES,
    SlakhDataset,
    TrackInfo,
    activity,
    part_of_stem,
    tempo_class,
)
from trainer.data.pop909_build import arrange_pop909
from trainer.data.synth import build_dataset, render_midi_folder

__all__ = [
    "ACTIVITY_THRESHOLD_DB", "SPLITS", "TEMPO_CLASSES", "SlakhDataset", "TrackInfo", "activity",
    "arrange_pop909", "build_dataset", "part_of_stem", "render_midi_folder", "tempo_class",
]
