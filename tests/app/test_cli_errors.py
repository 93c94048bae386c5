"""Bad input to ``partwise query/info/export``: one line naming the input, exit 2 for a wrong
command line, 1 when the request cannot be carried out; never a traceback."""

import sqlite3

import mutagen
import pytest
import soundfile as sf
import torch

from app import export_cmd, info_cmd, query_cmd, scan_cmd
from app.library import Library
from app.store import DB_NAME
from tests.app.library_helpers import music, tiny_weights

# trained norm-loss biases as a card carries them: piano pushed far down, so every track of
# the test library lacks piano and has the other four parts
NO_PIANO = [8.0, 8.0, -60.0, 8.0, 8.0]


@pytest.fixture(scope="module")
def lib_args(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    folder = root / "music"
    folder.mkdir()
    for i in range(4):
        sf.write(folder / f"song{i}.flac", music(4.0, seed=i), 22050)
    f = mutagen.File(str(folder / "song0.flac"), easy=True)
    f["title"] = "Nice song\n/etc/passwd\x1b[2J"
    f.save()
    w = tiny_weights(root / "w.safetensors", card={"norm_bias": NO_PIANO})
    args = ["--library", str(root / "lib"), "--weights", str(w), "--device", "cpu"]
    assert scan_cmd.main([str(folder), "--no-progress", *args]) == 0
    return args


def run(main, argv, capsys) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


CPU_ONLY = not torch.cuda.is_available()
BAD_DEVICE = "cuda" if CPU_ONLY else f"cuda:{torch.cuda.device_count()}"


@pytest.mark.parametrize(("argv", "words"), [
    (["99999999999999999999999"], "99999999999999999999999: no such file, and too large for a track id"),
    (["1", "--device", "nonsense"], "--device: 'nonsense' is not a device"),
    (["1", "--device", BAD_DEVICE], "no usable CUDA device" if CPU_ONLY else "there is no CUDA device"),
    (["1", "-k", "-3"], "-k: -3 is out of range"),
    (["1", "-k", "0"], "-k: 0 is out of range"),
    (["1", "-k", "many"], "-k: 'many' is not a whole number"),
    (["1", "--focus", "banjo=1"], "--focus: unknown part 'banjo'"),
    (["1", "--focus", "drums=loud"], "'loud' is not a number"),
    (["1", "--focus", "drums=nan"], "not finite"),
    (["1", "--focus", "drums=1e40"], "must be finite"),
    ([" "], "the query is empty"),
    (["1", "--focus", "drums=0,bass=0"], "focus is all zero"),
    (["1", "--focus", ","], "names no part"),
    (["1", "--loud"], "unrecognized arguments: --loud"),
])
@pytest.mark.parametrize("main", [query_cmd.main, export_cmd.main], ids=["query", "export"])
def test_usage_errors_exit_2_with_one_line(main, argv, words, lib_args, capsys):
    code, out, err = run(main, [*argv, *lib_args], capsys)
    line = one_error_line(err)
    assert code == 2 and out == ""
    assert line.startswith("partwise ") and words in line, line


@pytest.mark.parametrize("main", [query_cmd.main, export_cmd.main, info_cmd.main])
def test_a_missing_library_is_named_and_not_created(main, tmp_path, capsys):
    where = tmp_path / "typo"
    argv = ["1"] if main is not info_cmd.main else []
    code, _, err = run(main, [*argv, "--library", str(where)], capsys)
    assert code == 2 and f"--library {where}: no Partwise library there" in one_error_line(err)
    assert not where.exists()


def test_unknown_track_exits_1(lib_args, capsys):
    code, _, err = run(query_cmd.main, ["77", *lib_args], capsys)
    assert code == 1 and "no track with id 77" in one_error_line(err)


def test_a_focus_on_parts_the_query_lacks_says_so(lib_args, capsys):
    code, out, err = run(query_cmd.main, ["1", "--focus", "piano=1", *lib_args], capsys)
    line = one_error_line(err)
    assert code == 1 and out == ""
    assert "focus piano=1 compares nothing" in line and "no piano (0%)" in line and "drums (" in line
    code, _, err = run(export_cmd.main, ["2", "--focus", "piano", *lib_args], capsys)
    assert code == 1 and "compares nothing" in one_error_line(err)
    # with a part it has, the search runs and warns about the one it lacks
    code, out, err = run(query_cmd.main, ["1", "--focus", "piano=1,drums=0.5", "-k", "2", *lib_args], capsys)
    assert code == 0 and "warning: track 1" in err and "no piano" in err
    assert "2 results" in out
    # "different in piano" from a track without piano still compares
    code, out, err = run(query_cmd.main, ["1", "--focus", "piano=-1", "-k", "2", *lib_args], capsys)
    assert code == 0 and "2 results" in out


def _one_track_library(tmp_path, capsys, folder: str, name: str) -> list[str]:
    """A library of one scanned 4-s file; its command-line options."""
    (tmp_path / folder).mkdir()
    sf.write(tmp_path / folder / name, music(4.0), 22050)
    w = tiny_weights(tmp_path / "w.safetensors")
    args = ["--library", str(tmp_path / "lib"), "--weights", str(w), "--device", "cpu"]
    assert scan_cmd.main([str(tmp_path / folder), "--no-progress", *args]) == 0
    capsys.readouterr()
    return args


def test_a_library_with_nothing_to_compare_says_so(tmp_path, capsys):
    args = _one_track_library(tmp_path, capsys, "one", "only.wav")
    for main in (query_cmd.main, export_cmd.main):
        code, out, err = run(main, ["1", *args], capsys)
        assert code == 1 and out == ""
        assert "holds no other analysed track" in one_error_line(err)
    # tracks analysed by another model than the one given are not compared: say which
    other = tiny_weights(tmp_path / "other.safetensors", seed=1)
    code, _, err = run(query_cmd.main, ["1", *args[:2], "--weights", str(other)], capsys)
    assert code == 1 and "1 analysed tracks were made with another model than other.safetensors" in err


def test_query_prints_one_line_per_result_whatever_the_tags(lib_args, capsys):
    code, out, _ = run(query_cmd.main, ["2", "-k", "3", *lib_args], capsys)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2 + 3 and "\x1b" not in out
    assert any("Nice song /etc/passwd" in x for x in lines)


def test_a_library_the_program_cannot_read_is_one_line(tmp_path, capsys):
    args = _one_track_library(tmp_path, capsys, "m", "a.wav")
    con = sqlite3.connect(tmp_path / "lib" / DB_NAME)
    con.execute("DROP TABLE tracks")
    con.execute("CREATE TABLE tracks (id INTEGER PRIMARY KEY, nonsense TEXT)")
    con.commit()
    con.close()
    for main, argv in ((query_cmd.main, ["1"]), (info_cmd.main, []), (export_cmd.main, [])):
        code, _, err = run(main, [*argv, *args], capsys)
        assert code in (1, 2) and one_error_line(err).startswith("partwise ")


def test_an_unexpected_error_is_one_line_not_a_traceback(lib_args, capsys, monkeypatch):
    def broken(*a, **k):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(Library, "search", broken)
    code, _, err = run(query_cmd.main, ["1", *lib_args], capsys)
    assert code == 1 and "unexpected ZeroDivisionError: division by zero" in one_error_line(err)


def test_demo_refuses_a_device_before_preparing_anything(tmp_path, capsys):
    from app import demo

    with pytest.raises(SystemExit) as e:
        demo.main(["--no-gui", "--device", "nonsense", "--library", str(tmp_path / "lib")])
    assert e.value.code == 2 and "'nonsense' is not a device" in capsys.readouterr().err
    assert not (tmp_path / "lib").exists()


@pytest.mark.gpu
def test_cuda_is_accepted_where_there_is_one(lib_args, tmp_path, capsys):
    outside = tmp_path / "outside.wav"
    sf.write(outside, music(4.0, seed=9), 22050)
    for device in ("cuda", "cuda:0"):
        code, out, _ = run(query_cmd.main, [str(outside), "-k", "2", *lib_args, "--device", device], capsys)
        assert code == 0 and "2 results" in out
