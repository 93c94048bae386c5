"""``partwise-train curves RUN``: a run's log as a table, one row per epoch, one column per part.

Every epoch of every stage writes one line of ``log.jsonl``: the loss terms, and per part the
training and validation triplet accuracy, the leak of the rest of the mix, the effective
dimension and the norm of each subspace, and the clean-stem identification. Those lines are
long; this command sets the figures a person watches side by side, drums / bass / piano /
guitar / others in one column, so a subspace that starts to collapse, or a term that stops
moving, is seen while the run goes on (the log is read as it stands; a line the trainer is still
writing is left out).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from model.parts import PARTS

DEFAULT_SHOW = ("loss", "triplet", "val_mse", "train_acc", "val_acc", "val_leak", "val_dim")


class LogError(ValueError):
    """A run's log that cannot be read: missing, or a damaged line."""


def read_log(run: Path) -> list[dict]:
    """The rows of ``RUN/log.jsonl`` (or of the log file given itself), in order. A last line
    that does not parse is a line being written and is left out; a damaged line before it is
    an error naming the file and the line."""
    path = run / "log.jsonl" if run.is_dir() else run
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise LogError(f"{path}: no training log (is {run} a run folder of 'partwise-train fit'?)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise LogError(f"{path}: cannot read the log: {e}") from None
    numbered = [(i, s) for i, s in enumerate(lines, 1) if s.strip()]
    rows = []
    for k, (i, s) in enumerate(numbered):
        try:
            row = json.loads(s)
        except json.JSONDecodeError as e:
            if k == len(numbered) - 1:
                break
            raise LogError(f"{path}: line {i} is not a log row ({e.msg})") from None
        if not isinstance(row, dict) or "stage" not in row or "epoch" not in row:
            raise LogError(f"{path}: line {i} is not a log row (no stage or epoch)")
        rows.append(row)
    return rows


def part_groups(rows: Sequence[dict]) -> list[str]:
    """The names ``X`` for which the rows hold ``X_<part>`` for some part, in order met."""
    out: dict[str, None] = {}
    for r in rows:
        for k in r:
            for p in PARTS:
                if k.endswith("_" + p):
                    out[k[: -len(p) - 1]] = None
    return list(out)


def _fmt(v: object) -> str:
    if not isinstance(v, int | float) or isinstance(v, bool):
        return "-"
    a = abs(v)
    return f"{v:.0f}" if a >= 100 else f"{v:.1f}" if a >= 10 else f"{v:.2f}" if a >= 0.1 or a == 0 else f"{v:.3f}"


def table(rows: Sequence[dict], show: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of one stage's rows: ``epoch``, ``epoch_s``, then each name of ``show``
    that the rows hold, a scalar as it is and a per-part group as d/b/p/g/o."""
    groups = set(part_groups(rows))
    cols = [n for n in show if n in groups or any(n in r for r in rows)]
    header = ["epoch", "s"] + [f"{n} " + "/".join(p[0] for p in PARTS) if n in groups else n for n in cols]
    cells = []
    for r in rows:
        line = [str(r["epoch"]), _fmt(r.get("epoch_s"))]
        for n in cols:
            if n in groups:
                line.append("/".join(_fmt(r.get(f"{n}_{p}")) for p in PARTS))
            else:
                line.append(_fmt(r.get(n)))
        cells.append(line)
    return header, cells


def select_stages(rows: Sequence[dict], stage: str | None = None) -> list[str]:
    """The stages of the rows in order met, or ``[stage]``: a stage the log lacks is an error
    naming those it holds."""
    stages = list(dict.fromkeys(r["stage"] for r in rows))
    if stage is None:
        return stages
    if stage not in stages:
        raise LogError(f"no stage {stage!r} in the log; it holds {', '.join(stages) or 'no rows'}")
    return [stage]


def render(rows: Sequence[dict], show: Sequence[str], stage: str | None = None, last: int = 0) -> str:
    """The text the command prints: one table per stage (or the one named), each with its
    epochs' total time; ``last`` > 0 keeps that many epochs of each."""
    out = []
    for st in select_stages(rows, stage):
        sel = [r for r in rows if r["stage"] == st]
        minutes = sum(r.get("epoch_s", 0.0) for r in sel) / 60
        out.append(f"stage {st}: {len(sel)} epoch{'s' * (len(sel) != 1)}, {minutes:.1f} min")
        header, cells = table(sel[-last:] if last > 0 else sel, show)
        widths = [max(len(c) for c in col) for col in zip(header, *cells, strict=True)]
        for line in [header, *cells]:
            out.append("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="partwise-train curves",
        description="Print a run's log as a table, an epoch a row, each per-part figure as "
                    "drums/bass/piano/guitar/others. Works while the run goes on.")
    ap.add_argument("run", type=Path, help="a run folder of 'partwise-train fit' (or its log.jsonl)")
    ap.add_argument("--show", type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
                    default=None,
                    help="comma-separated figures: a scalar of the log (loss, triplet, lr, val_score, ...) or "
                         "a per-part group (train_acc, val_acc, val_leak, val_dim, val_norm, val_solo_id, "
                         f"content, ...); default {','.join(DEFAULT_SHOW)}")
    ap.add_argument("--stage", default=None, help="one stage only (main, pretrain, individual:<part>)")
    ap.add_argument("--last", type=int, default=0, help="only the last N epochs of each stage")
    ap.add_argument("--json", action="store_true", help="print the selected rows as JSON lines instead")
    args = ap.parse_args(argv)
    if args.last < 0:
        ap.error("--last takes a count of epochs, 0 or more")
    try:
        rows = read_log(args.run)
        if not rows:
            print(f"{args.run}: no epoch has finished yet")
            return 0
        stages = select_stages(rows, args.stage)
        known = set(part_groups(rows)) | {k for r in rows for k in r}
        unknown = [n for n in args.show or () if n not in known]  # the defaults may be absent
        if unknown:
            raise LogError(f"not in the log: {', '.join(unknown)} (per-part groups there: "
                           f"{', '.join(part_groups(rows))})")
    except LogError as e:
        print(f"partwise-train curves: {e}", file=sys.stderr)
        return 1
    if args.json:
        for st in stages:
            sel = [r for r in rows if r["stage"] == st]
            for r in sel[-args.last:] if args.last > 0 else sel:
                print(json.dumps(r))
        return 0
    sys.stdout.write(render(rows, args.show or DEFAULT_SHOW, args.stage, args.last))
    return 0
