"""``partwise-train compare A B``: two models' evaluation reports side by side, with Table 2's
change measured on the same draws.

    partwise-train compare reports/before/report.json reports/after/report.json [--json]

Both reports must come from ``partwise-train eval`` on the same split of the same dataset with
the same evaluation settings (seed, draws, segment length), so that draw *i* of one is draw *i*
of the other: the same label songs and the same pseudo pieces. The change per part is then the
mean of the per-draw differences, with its standard error; the two models' own spreads over the
draws (``± std``) are mostly the draws' difficulty, which the paired difference cancels. A change
of more than two standard errors is marked ``*``. Where both reports tested every pair of a small
split once (``eval --plan every``, or ``auto`` on such a split), the change is taken over the same
segments and its standard error from the label tracks' changes.

Besides Table 2: Table 1 at the main segment length, Table 3, the effective dimension of each
subspace on mixes and the presence accuracy on clean stems, each as ``A -> B``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from model.parts import PARTS

# evaluation settings that must agree for draw i of A to be draw i of B
SAME = ("plan", "split", "seconds", "main_seconds", "k", "n_labels", "per_label", "draws", "seed",
        "audible_only", "max_tracks", "max_segments", "max_pseudo_seconds", "twins")
# a report written before Table 2 had plans ran the seeded draws, and before twins, without them
DEFAULTS = {"plan": "drawn", "twins": False}


class CompareError(ValueError):
    pass


def load(path: Path) -> dict:
    if path.is_dir():
        path = path / "report.json"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise CompareError(f"{path}: no such report (partwise-train eval writes report.json)") from None
    except (OSError, json.JSONDecodeError) as e:
        raise CompareError(f"{path}: not a readable report ({e})") from None
    if not isinstance(doc, dict) or "tables" not in doc or "config" not in doc:
        raise CompareError(f"{path}: not a partwise-train eval report (no tables or config)")
    doc["_path"] = str(path)
    return doc


def check_comparable(a: dict, b: dict) -> None:
    """CompareError naming what differs when draw i of ``a`` is not draw i of ``b``."""
    diff = [k for k in SAME if a["config"].get(k, DEFAULTS.get(k)) != b["config"].get(k, DEFAULTS.get(k))]
    da, db = a.get("dataset", {}), b.get("dataset", {})
    for k in ("tracks", "split", "sample_rate"):
        if da.get(k) != db.get(k):
            diff.append(f"dataset {k}")
    if a.get("pseudo_plan") != b.get("pseudo_plan"):
        diff.append("pseudo pieces drawn")
    if diff:
        raise CompareError(f"{a['_path']} and {b['_path']} were not evaluated on the same draws "
                           f"(they differ in: {', '.join(diff)}); evaluate both with the same "
                           "dataset, split and settings")


def _get(doc: dict, *keys):
    x = doc
    for k in keys:
        if not isinstance(x, dict) or k not in x:
            return None
        x = x[k]
    return x


def paired_by_label(a: dict, b: dict, part: str) -> dict | None:
    """Table 2 (proposed) of ``part`` from every pair of a small split: the change over the same
    segments, with its standard error from the label tracks' changes (segments clustered by
    label, as each report's own error). None when either report lacks per-label counts."""
    ha = _get(a, "tables", "table2_labels", "proposed", part)
    hb = _get(b, "tables", "table2_labels", "proposed", part)
    if not ha or not hb or set(ha) != set(hb):
        return None
    if any(ha[k][1] != hb[k][1] for k in ha):
        raise CompareError(f"{a['_path']} and {b['_path']}: {part} was scored on different "
                           "segments (the audible segments differ); evaluate both the same way")
    labels = [k for k in ha if ha[k][1] > 0]
    n = sum(ha[k][1] for k in labels)
    if not n:
        return None
    change = sum(hb[k][0] - ha[k][0] for k in labels) / n
    L = len(labels)
    se = (math.sqrt(L / (L - 1) * sum((hb[k][0] - ha[k][0] - change * ha[k][1]) ** 2
                                       for k in labels)) / n if L > 1 else float("nan"))
    sa = _get(a, "tables", "table2_spread", "proposed", part) or {}
    sb = _get(b, "tables", "table2_spread", "proposed", part) or {}
    return {"a": sa.get("mean"), "a_std": sa.get("std"), "b": sb.get("mean"), "b_std": sb.get("std"),
            "change": 100 * change, "change_se": 100 * se, "draws": 1, "labels": L,
            "distinct_draws": L, "significant": bool(L > 1 and abs(change) > 2 * se)}


def paired(a: dict, b: dict, part: str) -> dict | None:
    """Table 2 (proposed) of ``part``: both means and spreads, and the change on the same draws
    (on the same label tracks, when the reports tested every pair of a small split)."""
    if _get(a, "tables", "table2_labels") is not None:
        return paired_by_label(a, b, part)
    xa = _get(a, "tables", "table2_draws", "proposed", part)
    xb = _get(b, "tables", "table2_draws", "proposed", part)
    if not xa or not xb or len(xa) != len(xb):
        return None
    d = [y - x for x, y in zip(xa, xb, strict=True)]
    n = len(d)
    mean = sum(d) / n
    # A small split repeats draws (all ten are one when every track is in every draw): a repeat
    # adds no evidence, so the error counts each distinct draw once, and one draw has none.
    pairs = set(zip(xa, xb, strict=True))
    distinct = len(pairs)
    du = [y - x for x, y in pairs]
    mu = sum(du) / distinct
    se = math.sqrt(sum((v - mu) ** 2 for v in du) / (distinct - 1) / distinct) if distinct > 1 else float("nan")

    def spread(x: list[float]) -> tuple[float, float]:
        m = sum(x) / len(x)
        return m, math.sqrt(sum((v - m) ** 2 for v in x) / (len(x) - 1)) if len(x) > 1 else 0.0

    (ma, sa), (mb, sb) = spread(xa), spread(xb)
    # the spread as the report gives it, when it does (README tables quote it)
    sa = _get(a, "tables", "table2_spread", "proposed", part, "std") or sa
    sb = _get(b, "tables", "table2_spread", "proposed", part, "std") or sb
    return {"a": ma, "a_std": sa, "b": mb, "b_std": sb, "change": mean, "change_se": se, "draws": n,
            "distinct_draws": distinct, "significant": bool(distinct > 1 and abs(mean) > 2 * se)}


def compare(a: dict, b: dict) -> dict:
    main = str(a["config"].get("main_seconds", 5.0)).rstrip("0").rstrip(".")
    t1 = _get(a, "tables", "table1", "proposed") or {}
    key = next((k for k in t1 if k.rstrip("0").rstrip(".") == main), None)
    rows = {}
    for p in PARTS:
        rows[p] = {
            "table2": paired(a, b, p),
            "table2_mfcc": _get(b, "tables", "table2", "mfcc", p),
            "table1": [_get(a, "tables", "table1", "proposed", key, p) if key else None,
                       _get(b, "tables", "table1", "proposed", key, p) if key else None],
            "table3": [_get(a, "tables", "table3", "proposed", p), _get(b, "tables", "table3", "proposed", p)],
            "dim_mix": [_get(a, "effective_dimension", "proposed_mix", p),
                        _get(b, "effective_dimension", "proposed_mix", p)],
            "stem_presence": [_get(a, "presence", "stem", p, "accuracy"),
                              _get(b, "presence", "stem", p, "accuracy")],
        }
    return {"a": a["_path"], "b": b["_path"], "a_weights": _get(a, "weights", "sha256"),
            "b_weights": _get(b, "weights", "sha256"), "dataset": _get(a, "dataset", "sources"),
            "split": a["config"].get("split"), "main_seconds": a["config"].get("main_seconds"),
            "parts": rows}


def _num(x: float | None, digits: int = 1) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def text(res: dict) -> str:
    head = f"{'':24s}" + "".join(f"{p:>20s}" for p in PARTS)
    lines = [f"A: {res['a']}", f"B: {res['b']}",
             f"split {res['split']}, {res['main_seconds']} s segments; * = change beyond 2 standard errors",
             head]

    def row(name: str, cell) -> None:
        lines.append(f"{name:24s}" + "".join(f"{cell(res['parts'][p]):>20s}" for p in PARTS))

    def t2(side: str):
        return lambda r: "-" if r["table2"] is None else \
            f"{_num(r['table2'][side])} ± {_num(r['table2'][side + '_std'])}"

    row("Table 2, A", t2("a"))
    row("Table 2, B", t2("b"))
    row("Table 2, B - A (paired)", lambda r: "-" if r["table2"] is None else
        f"{r['table2']['change']:+.1f} ± {_num(r['table2']['change_se'])}" + ("*" if r["table2"]["significant"] else " "))
    row("Table 2, MFCC (B)", lambda r: _num(r["table2_mfcc"]))
    for name, k in (("Table 1", "table1"), ("Table 3", "table3"), ("eff. dim. on mixes", "dim_mix"),
                    ("stem presence acc.", "stem_presence")):
        row(f"{name}, A -> B", lambda r, k=k: f"{_num(r[k][0])} -> {_num(r[k][1])}"
            if r[k][1] is not None else "-")
    labels = {p: res["parts"][p]["table2"]["labels"] for p in PARTS
              if res["parts"][p]["table2"] and "labels" in res["parts"][p]["table2"]}
    if labels:
        lines.append("Table 2: every pair of a small split, once; ± is the standard error over "
                     "label tracks (" + ", ".join(f"{p} {n}" for p, n in labels.items()) + ")")
    same = [p for p in PARTS if res["parts"][p]["table2"] and p not in labels
            and res["parts"][p]["table2"]["distinct_draws"] < 2]
    if same:
        lines.append(f"Table 2 of {', '.join(same)}: every draw the same pieces (too few tracks), "
                     "so one draw: no error, no *")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="partwise-train compare", description=__doc__.strip().split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path, help="report.json (or its folder) of the model before")
    ap.add_argument("b", type=Path, help="report.json (or its folder) of the model after")
    ap.add_argument("--json", action="store_true", help="print JSON")
    args = ap.parse_args(argv)
    try:
        a, b = load(args.a), load(args.b)
        check_comparable(a, b)
        res = compare(a, b)
    except CompareError as e:
        print(f"partwise-train compare: {e}", file=sys.stderr)
        return 1
    print(json.dumps(res, indent=2) if args.json else text(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
