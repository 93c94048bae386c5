"""``partwise-train curves``: a run's log as a table an epoch a row, per-part figures side by side."""

from __future__ import annotations

import json

import pytest

from model.parts import PARTS
from trainer.cli import main as cli_main
from trainer.curves import LogError, part_groups, read_log, render


def _row(stage: str, epoch: int, **extra) -> dict:
    r = {"stage": stage, "epoch": epoch, "loss": 1.0 / epoch, "triplet": 0.2, "epoch_s": 60.0}
    for i, p in enumerate(PARTS):
        r[f"val_acc_{p}"] = 0.5 + 0.01 * i * epoch
        r[f"val_dim_{p}"] = 10.0 + i - epoch  # piano narrows epoch by epoch
    return r | extra


def _write(tmp_path, rows, tail: str = "") -> None:
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)


def test_table_sets_each_part_side_by_side(tmp_path, capsys):
    _write(tmp_path, [_row("individual:bass", 1, val_dim=3.5), _row("main", 1), _row("main", 2), _row("main", 3)])
    assert cli_main(["curves", str(tmp_path), "--show", "loss,val_dim", "--stage", "main"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "stage main: 3 epochs, 3.0 min"
    assert lines[1].split() == ["epoch", "s", "loss", "val_dim", "d/b/p/g/o"]
    # epoch 3's dimensions, drums to others: 10 + i - 3
    assert lines[4].split() == ["3", "60.0", "0.33", "7.00/8.00/9.00/10.0/11.0"]


def test_every_stage_in_order_and_last_epochs_only(tmp_path):
    solo = [{"stage": "individual:bass", "epoch": e, "loss": 1.0 / e, "val_dim": 3.5, "epoch_s": 60.0} for e in (1, 2)]
    rows = solo + [_row("main", e) for e in (1, 2, 3)]
    text = render(rows, ["loss", "val_acc", "val_dim"], last=1)
    blocks = text.strip().split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == ["stage individual:bass: 2 epochs, 2.0 min",
                                                  "stage main: 3 epochs, 3.0 min"]
    # an individual network's log has a scalar dimension, no per-part groups
    assert blocks[0].splitlines()[1].split() == ["epoch", "s", "loss", "val_dim"]
    assert blocks[0].splitlines()[2].split() == ["2", "60.0", "0.50", "3.50"]
    assert [ln.split()[0] for ln in blocks[1].splitlines()[2:]] == ["3"]


def test_a_line_being_written_is_left_out(tmp_path):
    _write(tmp_path, [_row("main", 1), _row("main", 2)], tail='{"stage": "main", "epoch": 3, "lo')
    assert [r["epoch"] for r in read_log(tmp_path)] == [1, 2]
    assert [r["epoch"] for r in read_log(tmp_path / "log.jsonl")] == [1, 2]


def test_a_damaged_line_before_the_end_names_the_file_and_line(tmp_path):
    (tmp_path / "log.jsonl").write_text(json.dumps(_row("main", 1)) + "\nnot json\n" + json.dumps(_row("main", 2)) + "\n")
    with pytest.raises(LogError, match=r"log\.jsonl: line 2 is not a log row"):
        read_log(tmp_path)
    (tmp_path / "log.jsonl").write_text('{"loss": 1}\n{"loss": 2}\n')
    with pytest.raises(LogError, match="line 1 .*no stage or epoch"):
        read_log(tmp_path)


def test_cli_errors_are_plain_and_exit_1(tmp_path, capsys):
    assert cli_main(["curves", str(tmp_path / "nowhere")]) == 1
    assert "no training log" in capsys.readouterr().err
    _write(tmp_path, [_row("main", 1)])
    assert cli_main(["curves", str(tmp_path), "--show", "loss,nonsense"]) == 1
    err = capsys.readouterr().err
    assert "not in the log: nonsense" in err and "val_dim" in err
    assert cli_main(["curves", str(tmp_path), "--stage", "pretrain"]) == 1
    assert "no stage 'pretrain' in the log; it holds main" in capsys.readouterr().err


def test_empty_log_and_json_rows(tmp_path, capsys):
    (tmp_path / "log.jsonl").write_text("")
    assert cli_main(["curves", str(tmp_path)]) == 0
    assert "no epoch has finished yet" in capsys.readouterr().out
    rows = [_row("main", e) for e in (1, 2, 3)]
    _write(tmp_path, rows)
    assert cli_main(["curves", str(tmp_path), "--json", "--last", "2"]) == 0
    assert [json.loads(x) for x in capsys.readouterr().out.splitlines()] == rows[1:]


def test_part_groups_found_from_the_keys():
    assert part_groups([_row("main", 1, content_piano=0.3, between_pr_bass=6.0)]) == [
        "val_acc", "val_dim", "content", "between_pr"]
