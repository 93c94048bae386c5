"""``partwise journey`` on a scanned library: A to B with an M3U, the radio, and its errors."""

import json

import pytest

from app import journey_cmd, scan_cmd
from app.cli import COMMANDS
from tests.app.library_helpers import tiny_weights
from tests.app.test_library import songs


@pytest.fixture(scope="module")
def lib_args(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("journey")
    w = tiny_weights(tmp / "w.safetensors")
    args = ["--library", str(tmp / "lib"), "--weights", str(w), "--device", "cpu"]
    songs(tmp / "music", 12, seconds=10.0)
    assert scan_cmd.main([str(tmp / "music"), "--no-progress", *args]) == 0
    return args


def test_a_to_b_prints_each_step_and_writes_the_playlist(lib_args, tmp_path, capsys):
    assert "journey" in COMMANDS
    capsys.readouterr()
    out = tmp_path / "j.m3u"
    assert journey_cmd.main(["1", "9", "--steps", "5", "--lock", "drums,bass", "--floor", "0",
                             "--m3u", str(out), "--json", *lib_args]) == 0
    doc = json.loads(capsys.readouterr().out)
    ids = [s["id"] for s in doc["steps"]]
    assert ids[0] == 1 and ids[-1] == 9 and len(ids) == 6 and len(set(ids)) == 6
    assert doc["lock"] == ["drums", "bass"] and doc["follow"] == "start"
    assert all(set(s["to_previous"]) == {"drums", "bass", "piano", "guitar", "others"}
               for s in doc["steps"][1:])
    lines = out.read_text().splitlines()
    assert lines[0] == "#EXTM3U"
    assert [ln for ln in lines if not ln.startswith("#")] == [s["path"] for s in doc["steps"]]

    assert journey_cmd.main(["1", "9", "--steps", "5", "--floor", "0", *lib_args]) == 0
    text = capsys.readouterr().out
    assert "journey from track 1 to track 9: 6 tracks, locked drums" in text
    assert "destination" in text


def test_radio_visits_each_track_once(lib_args, capsys):
    capsys.readouterr()
    assert journey_cmd.main(["3", "--radio", "--steps", "30", "--lock", "piano", "--floor", "0",
                             "--json", *lib_args]) == 0
    doc = json.loads(capsys.readouterr().out)
    ids = [s["id"] for s in doc["steps"]]
    assert ids[0] == 3 and len(ids) == 12 and len(set(ids)) == 12  # the library has 12 tracks
    assert doc["follow"] == "neighbour" and doc["end"] is None


@pytest.mark.parametrize("argv, code, message", [
    (["1"], 2, "give a destination track, or --radio"),
    (["1", "2", "--radio"], 2, "give a destination track, or --radio"),
    (["x1", "2"], 2, "expected a track id"),
    (["1", "2", "--lock", "cowbell"], 2, "unknown part 'cowbell'"),
    (["1", "2", "--floor", "1.5"], 2, "argument --floor: expected a number in [0, 1), got '1.5'"),
    (["1", "999"], 1, "no track with id 999"),
    (["1", "1"], 1, "two different tracks"),
])
def test_errors_name_the_problem(lib_args, capsys, argv, code, message):
    capsys.readouterr()
    assert journey_cmd.main([*argv, *lib_args]) == code
    assert message in capsys.readouterr().err


def test_query_at_a_moment(lib_args, capsys):
    from app import query_cmd

    capsys.readouterr()
    # 10-s tracks: two 5-s windows, at 0 s and 5 s; the stretch is the second
    assert query_cmd.main(["2", "--at", "0:05-0:10", "-k", "3", "--json", *lib_args]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["at"] == [5.0, 10.0] and len(doc["results"]) == 3
    assert all(r["query_start"] == 5.0 for r in doc["results"])
    assert query_cmd.main(["2", "--at", "0:05-0:10", *lib_args]) == 0
    assert "from 0:05-0:10" in capsys.readouterr().out
    assert query_cmd.main(["2", "--at", "1:10", *lib_args]) == 2
    assert "argument --at" in capsys.readouterr().err
    assert query_cmd.main(["2", "--at", "9:00-9:10", *lib_args]) == 1
    assert "outside the analysed audio" in capsys.readouterr().err
