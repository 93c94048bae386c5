#!/usr/bin/env bash
# Build the data, train, evaluate and export in one command, everything under OUT.
# Made for a borrowed GPU machine that has torch but no network and no SoundFont packages
# (bring the missing wheels in WHEELS; pretty_midi's wheel carries the TimGM6mb SoundFont), and
# works the same on any machine with Partwise installed.
#
#   trainer/oneshot.sh OUT [MIDI_DIR]
#
# Environment (defaults in brackets):
#   PRESET [paper]      training preset (trainer/config.py); its sample rate is used for the data
#   TRACKS [1500]       generated songs;  SECONDS [40]: length of each
#   BUDGET_MIN [7]      time budget of the whole fit (individual nets, pre-training, main)
#   FIT_ARGS []         more --key=value overrides for fit, e.g. "--epochs=400"
#   WORKERS [0]         rendering processes (0: all cores)
#   FONT_SET [bundled]  SoundFonts of the data (partwise-train data fonts lists the sets)
#   WHEELS []           folder of wheels to install first (into OUT/site, no network needed)
#   PYTHON [python3]
# The weights come out as OUT/partwise.safetensors (+ .json card with the evaluation), the
# reports as OUT/eval-*/report.md, the log of every step as OUT/oneshot.log.
set -euo pipefail

if [ $# -lt 1 ]; then
  sed -n '2,21p' "$0" >&2
  exit 2
fi
OUT=$1
MIDI_DIR=${2:-}
PRESET=${PRESET:-paper}
TRACKS=${TRACKS:-1500}
SECONDS_EACH=${SECONDS:-40}
BUDGET_MIN=${BUDGET_MIN:-7}
WORKERS=${WORKERS:-0}
FONT_SET=${FONT_SET:-bundled}
PYTHON=${PYTHON:-python3}
HERE=$(cd "$(dirname "$0")/.." && pwd)

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
exec > >(tee -a "$OUT/oneshot.log") 2>&1

if [ -n "${WHEELS:-}" ]; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$OUT/site" "$WHEELS"/*.whl
  export PYTHONPATH="$OUT/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}"
train() { "$PYTHON" -m trainer "$@"; }
step() { echo "== $(date -u +%H:%M:%S) $*"; }

SR=$("$PYTHON" -c "from trainer.config import resolve; print(resolve('$PRESET').sample_rate)")
step "device: $("$PYTHON" -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")'), preset $PRESET at $SR Hz"

step "generate $TRACKS songs of $SECONDS_EACH s"
train data synth --tracks "$TRACKS" --seconds "$SECONDS_EACH" --sample-rate "$SR" \
  --workers "$WORKERS" --font-set "$FONT_SET" --out "$OUT/data/synth" --no-progress
DATA=(--data "$OUT/data/synth")
if [ -n "$MIDI_DIR" ]; then
  step "render the MIDI songs in $MIDI_DIR"
  train data render-midi "$MIDI_DIR" --sample-rate "$SR" --workers "$WORKERS" --font-set "$FONT_SET" \
    --out "$OUT/data/midi" --no-progress
  DATA+=(--data "$OUT/data/midi")
fi

step "fit for at most $BUDGET_MIN min"
# shellcheck disable=SC2086
train fit "${DATA[@]}" --preset "$PRESET" --out "$OUT/run" --quiet \
  --time_budget_min="$BUDGET_MIN" ${FIT_ARGS:-}

REPORTS=()
for d in "$OUT"/data/*; do
  name=$(basename "$d")
  step "evaluate on the $name test split"
  if train eval --data "$d" --split test --weights "$OUT/run/best.safetensors" \
       --individual "$OUT/run" --out "$OUT/eval-$name"; then
    REPORTS+=(--report "$OUT/eval-$name")
  else
    echo "evaluation on $name failed; exporting without it"
  fi
done

step "export"
train export "$OUT/run" --out "$OUT/partwise.safetensors" "${REPORTS[@]}"
step "done: $OUT/partwise.safetensors"
