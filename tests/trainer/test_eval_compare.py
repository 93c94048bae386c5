"""partwise-train compare: Table 2 changed on the same draws, and refusal of reports that were
not evaluated on the same draws."""

import copy
import json
import math

import pytest

from model.parts import PARTS
from trainer import cli
from trainer.evaluate.compare import CompareError, check_comparable, compare, load, paired

CONFIG = {"split": "test", "seconds": [3.0, 5.0], "main_seconds": 5.0, "k": 5, "n_labels": 10,
          "per_label": 4, "draws": 4, "seed": 0, "audible_only": True}


def report(draws: dict[str, list[float]], table3: float = 50.0) -> dict:
    return {
        "config": dict(CONFIG),
        "dataset": {"tracks": 90, "split": "test", "sample_rate": 16000, "sources": ["pop909"]},
        "weights": {"sha256": "x"},
        "pseudo_plan": [{"part": "drums", "label": 1, "other": 2, "piece": 0, "draws": [0, 1]}],
        "tables": {
            "table2_draws": {"proposed": draws},
            "table2": {"mfcc": {p: 20.0 for p in PARTS}},
            "table1": {"proposed": {"5.0": {p: 70.0 for p in PARTS}}},
            "table3": {"proposed": {p: table3 for p in PARTS}},
        },
        "effective_dimension": {"proposed_mix": {p: 5.0 for p in PARTS}},
        "presence": {"stem": {p: {"accuracy": 80.0} for p in PARTS}},
    }


def write(tmp_path, name, doc):
    d = tmp_path / name
    d.mkdir()
    (d / "report.json").write_text(json.dumps(doc))
    return d


def test_the_change_is_measured_on_the_same_draws(tmp_path):
    hard_easy = [10.0, 60.0, 30.0, 80.0]  # the draws differ far more than the models do
    a = report({p: hard_easy for p in PARTS})
    b = report({"drums": [v + 5 for v in hard_easy], **{p: hard_easy for p in PARTS[1:]}}, table3=60.0)
    b["tables"]["table2_draws"]["proposed"]["bass"] = [12.0, 58.0, 33.0, 79.0]
    a, b = load(write(tmp_path, "a", a)), load(write(tmp_path, "b", b))
    check_comparable(a, b)
    drums = paired(a, b, "drums")
    assert drums["change"] == pytest.approx(5.0) and drums["change_se"] == pytest.approx(0.0)
    assert drums["a_std"] > 25  # the spread of each model over the draws hides a change of 5 ...
    assert drums["significant"]  # ... which the paired difference shows
    bass = paired(a, b, "bass")
    d = [2.0, -2.0, 3.0, -1.0]
    assert bass["change"] == pytest.approx(sum(d) / 4)
    m = sum(d) / 4
    assert bass["change_se"] == pytest.approx(math.sqrt(sum((x - m) ** 2 for x in d) / 3 / 4))
    assert not bass["significant"]
    res = compare(a, b)
    assert res["parts"]["piano"]["table3"] == [50.0, 60.0]
    assert res["parts"]["guitar"]["table1"] == [70.0, 70.0]


def test_reports_of_other_draws_are_refused(tmp_path, capsys):
    a = report({p: [1.0, 2.0, 3.0, 4.0] for p in PARTS})
    b = copy.deepcopy(a)
    b["config"]["seed"] = 1
    b["pseudo_plan"][0]["other"] = 3
    pa, pb = write(tmp_path, "a", a), write(tmp_path, "b", b)
    with pytest.raises(CompareError, match="seed.*pseudo pieces drawn"):
        check_comparable(load(pa), load(pb))
    assert cli.main(["compare", str(pa), str(pb)]) == 1
    assert "not evaluated on the same draws" in capsys.readouterr().err
    assert cli.main(["compare", str(pa), str(tmp_path / "missing")]) == 1
    assert "no such report" in capsys.readouterr().err
    assert cli.main(["compare", str(pa), str(pa), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["parts"]["drums"]["table2"]["change"] == 0.0


def test_draws_that_are_all_the_same_are_one_draw(tmp_path):
    """A split so small that every draw holds every track repeats one draw: a change there has no
    error to be judged by, and is not marked as beyond it."""
    a = report({p: [68.5] * 4 for p in PARTS})
    b = report({"drums": [78.5] * 4, **{p: [v, v + 1, v, v + 2] for p, v in zip(PARTS[1:], (40, 50, 60, 70),
                                                                               strict=True)}})
    a["tables"]["table2_draws"]["proposed"]["bass"] = [30.0, 31.0, 30.0, 32.0]
    a, b = load(write(tmp_path, "a", a)), load(write(tmp_path, "b", b))
    drums = paired(a, b, "drums")
    assert drums["change"] == pytest.approx(10.0) and drums["distinct_draws"] == 1
    assert math.isnan(drums["change_se"]) and not drums["significant"]
    bass = paired(a, b, "bass")  # draws that differ, by the same amount each time: beyond doubt
    assert bass["distinct_draws"] == 3 and bass["change_se"] == pytest.approx(0.0) and bass["significant"]
    out = cli_text(a, b)
    assert "+10.0 ± - " in out and "Table 2 of drums, piano, guitar, others: every draw the same" not in out
    assert "Table 2 of drums: every draw the same pieces" in out


def cli_text(a, b):
    from trainer.evaluate.compare import text
    return text(compare(a, b))


def test_a_repeated_draw_counts_once_in_the_error(tmp_path):
    a = report({p: [50.0, 60.0] * 5 for p in PARTS})  # ten draws, two distinct sets of pieces
    b = report({p: [53.0, 61.0] * 5 for p in PARTS})
    a, b = load(write(tmp_path, "a", a)), load(write(tmp_path, "b", b))
    drums = paired(a, b, "drums")
    assert drums["draws"] == 10 and drums["distinct_draws"] == 2 and drums["change"] == pytest.approx(2.0)
    # changes 3 and 1 from two draws: standard error 1, not the 0.33 that ten draws would claim
    assert drums["change_se"] == pytest.approx(1.0) and not drums["significant"]


def every_report(hits: dict[str, dict[str, list[int]]]) -> dict:
    """A report of a small split tested on every pair: Table 2 counted per label track."""
    from trainer.evaluate.metrics import label_spread

    doc = report({p: [label_spread(h)["mean"]] for p, h in hits.items()})
    doc["config"] |= {"plan": "every", "draws": 1, "max_pseudo_seconds": None}
    doc["tables"]["table2_labels"] = {"proposed": hits}
    doc["tables"]["table2_spread"] = {"proposed": {p: label_spread(h) for p, h in hits.items()}}
    return doc


def test_every_pair_reports_are_compared_label_by_label(tmp_path):
    """On a split too small for draws the change is taken over the same segments, its error from
    how much it varies between label tracks."""
    ha = {"1": [10, 20], "2": [5, 20], "3": [16, 20], "4": [0, 10]}
    same_gain = {"1": [12, 20], "2": [7, 20], "3": [18, 20], "4": [1, 10]}  # +2, +2, +2, +1
    mixed = {"1": [20, 20], "2": [0, 20], "3": [16, 20], "4": [0, 10]}  # +10, -5, 0, 0
    a = load(write(tmp_path, "a", every_report({p: ha for p in PARTS})))
    b = load(write(tmp_path, "b", every_report({"drums": same_gain, **{p: mixed for p in PARTS[1:]}})))
    check_comparable(a, b)
    drums = paired(a, b, "drums")
    assert drums["change"] == pytest.approx(100 * 7 / 70) and drums["labels"] == 4
    # each label gains in proportion to its segments, (2, 2, 2, 1) of (20, 20, 20, 10): no error
    assert drums["change_se"] == pytest.approx(0.0) and drums["significant"]
    assert drums["a"] == pytest.approx(100 * 31 / 70) and drums["a_std"] > 0
    bass = paired(a, b, "bass")
    c = 5 / 70  # the change as a fraction; residuals of each label's change against it
    r = [10 - 20 * c, -5 - 20 * c, 0 - 20 * c, 0 - 10 * c]
    assert bass["change"] == pytest.approx(100 * c)
    assert bass["change_se"] == pytest.approx(100 * math.sqrt(4 / 3 * sum(x * x for x in r)) / 70)
    assert not bass["significant"]
    out = cli_text(a, b)
    assert "every pair of a small split" in out and "drums 4" in out
    # a drawn report and an every-pair report of the same split are not the same draws
    drawn = load(write(tmp_path, "c", report({p: [40.0] for p in PARTS})))
    with pytest.raises(CompareError, match="plan"):
        check_comparable(drawn, a)
    # one label track: a figure with no error, shown as such
    one = {"1": [3, 4]}
    solo = cli_text(load(write(tmp_path, "e", every_report({p: one for p in PARTS}))),
                    load(write(tmp_path, "f", every_report({p: {"1": [4, 4]} for p in PARTS}))))
    assert "75.0 ± -" in solo and "+25.0 ± - " in solo
    # segments scored differently (another audible set) cannot be paired
    other = every_report({p: {**ha, "4": [0, 12]} for p in PARTS})
    with pytest.raises(CompareError, match="different segments"):
        compare(a, load(write(tmp_path, "d", other)))


def test_reports_from_before_plans_count_as_drawn(tmp_path):
    old = report({p: [1.0, 2.0, 3.0, 4.0] for p in PARTS})  # no plan in its config
    new = copy.deepcopy(old)
    new["config"]["plan"] = "drawn"
    check_comparable(load(write(tmp_path, "a", old)), load(write(tmp_path, "b", new)))


def test_a_report_across_timbres_compares_only_with_another_across_timbres(tmp_path):
    plain = report({p: [1.0, 2.0, 3.0, 4.0] for p in PARTS})
    twins = copy.deepcopy(plain)
    twins["config"]["twins"] = True
    off = copy.deepcopy(plain)
    off["config"]["twins"] = False  # written since the setting exists: the same as before it
    pp, pt, po = write(tmp_path, "p", plain), write(tmp_path, "t", twins), write(tmp_path, "o", off)
    check_comparable(load(pp), load(po))
    check_comparable(load(pt), load(pt))
    with pytest.raises(CompareError, match="twins"):
        check_comparable(load(pp), load(pt))
