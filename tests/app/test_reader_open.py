"""A reading command opens the index without its HNSW graphs: exact answers, nothing saved."""

import json

import pytest

from app import query_cmd, scan_cmd
from app.export_cmd import m3u, tracks_csv
from app.index import IndexParams
from app.library import Library
from app.store import Store
from tests.app.library_helpers import tiny_weights
from tests.app.test_library import songs

SMALL = IndexParams(exact_below=4)  # graphs from 4 tracks on, so a tiny library has them


@pytest.fixture(scope="module")
def lib_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reader")
    w = tiny_weights(tmp / "w.safetensors")
    songs(tmp / "music", 8, seconds=7.0)
    with Library(tmp / "lib", weights=w, device="cpu", index_params=SMALL) as lib:
        for _ in lib.scan([tmp / "music"]):
            pass
        assert lib.index.has_hnsw
    return tmp / "lib", w


def test_without_graphs_every_search_is_exact_and_the_same(lib_dir):
    root, w = lib_dir
    saved = (root / "index" / "CURRENT").read_text()
    with Library(root, weights=w, index_params=SMALL) as full, \
            Library(root, weights=w, index_params=SMALL, graphs=False) as reader:
        assert full.index.has_hnsw and not reader.index.has_hnsw
        assert reader.info()["hnsw"] and reader.info()["indexed"] == full.info()["indexed"] == 8
        for focus in ({"drums": 1}, [1, 1, 1, 1, 1], {"bass": 1, "piano": -0.5}):
            a = [(r.track.id, round(r.score, 5)) for r in full.search(1, focus, k=5)]
            b = [(r.track.id, round(r.score, 5)) for r in reader.search(1, focus, k=5)]
            assert a == b
        assert len(reader.journey(1, 5, steps=3, floor=0).ids) == 4
    assert (root / "index" / "CURRENT").read_text() == saved  # the saved graphs are left alone


def test_info_without_the_index_says_what_the_opened_index_says(lib_dir, tmp_path):
    root, w = lib_dir
    with Library(root, weights=w, index_params=SMALL, graphs=False) as reader, \
            Library(root, weights=w, index=False) as counter:
        assert counter.index is None
        assert counter.info() == reader.info()
        assert counter.info()["indexed"] == 8 and counter.info()["hnsw"]
    # weights of another model: nothing of the library is in its index yet, no graphs of it
    other = tiny_weights(tmp_path / "other.safetensors", seed=7)
    with Library(root, weights=other, graphs=False) as reader, \
            Library(root, weights=other, index=False) as counter:
        assert counter.info() == reader.info()
        assert counter.info()["stale_model"] == 8 and not counter.info()["hnsw"]


def test_a_reader_never_saves_an_index_without_graphs(lib_dir, capsys):
    root, w = lib_dir
    saved = (root / "index" / "CURRENT").read_text()
    with Library(root, weights=w, index_params=SMALL, graphs=False) as reader:
        reader.index.remove([2])  # the index changed (as a rescan elsewhere would make it)
        reader._save_index()
    assert (root / "index" / "CURRENT").read_text() == saved
    assert query_cmd.main(["1", "--json", "--library", str(root), "--weights", str(w)]) == 0
    assert len(json.loads(capsys.readouterr().out)["results"]) == 7
    assert (root / "index" / "CURRENT").read_text() == saved


def test_graphs_are_left_on_disk_for_an_index_at_most_graphs_above_rows(lib_dir):
    root, w = lib_dir
    saved = (root / "index" / "CURRENT").read_text()
    with Library(root, weights=w, index_params=SMALL, graphs_above=8) as small, \
            Library(root, weights=w, index_params=SMALL, graphs_above=7) as large:
        assert not small.index.has_hnsw and not small.graphs  # 8 rows: exact search
        assert large.index.has_hnsw and large.graphs
        assert small.info()["hnsw"]  # the saved graphs are still there
        a = [(r.track.id, round(r.score, 5)) for r in large.search(1, [1, 1, 1, 1, 1], k=5)]
        b = [(r.track.id, round(r.score, 5)) for r in small.search(1, [1, 1, 1, 1, 1], k=5)]
        assert a == b
        small.index.remove([2])
        small._save_index()  # never over the saved graphs with none
    assert (root / "index" / "CURRENT").read_text() == saved


def test_the_index_is_checked_against_the_store_from_a_covering_index(lib_dir):
    root, w = lib_dir
    with Library(root, weights=w, index_params=SMALL, graphs=False) as reader:
        plan = reader.store._con().execute(
            "EXPLAIN QUERY PLAN SELECT id, rev FROM tracks WHERE status='ok' AND model_sha=? "
            "ORDER BY id", (reader.model_sha,)).fetchall()
        ids, revs = reader.store.ok_revs(reader.model_sha)
        assert ids.tolist() == sorted(ids.tolist()) and len(ids) == len(revs) == 8
    assert "COVERING INDEX tracks_ok" in " ".join(str(r[-1]) for r in plan)


def test_the_scan_still_saves_the_graphs(lib_dir, tmp_path):
    root, w = lib_dir
    songs(tmp_path, 1, seconds=7.0, start=50)
    assert scan_cmd.main([str(tmp_path), "--no-progress", "--device", "cpu", "--library", str(root),
                          "--weights", str(w)]) == 0
    with Library(root, weights=w, index_params=SMALL, graphs=False) as reader:
        assert reader.info()["indexed"] == 9


def test_a_reader_trusts_an_index_saved_in_step_and_rereads_after_a_change(tmp_path, monkeypatch):
    w = tiny_weights(tmp_path / "w.safetensors")
    songs(tmp_path / "music", 5, seconds=7.0)
    with Library(tmp_path / "lib", weights=w, device="cpu", index_params=SMALL) as lib:
        for _ in lib.scan([tmp_path / "music"]):
            pass
        count = lib.store.changes()
    doc = json.loads((tmp_path / "lib" / "index" / (tmp_path / "lib" / "index" / "CURRENT")
                      .read_text() / "meta.json").read_text())
    assert doc["store_changes"] == count is not None
    read = []
    real = Store.ok_revs
    monkeypatch.setattr(Store, "ok_revs", lambda self, sha: read.append(1) or real(self, sha))
    with Library(tmp_path / "lib", weights=w, index_params=SMALL, graphs=False) as reader:
        assert not read and len(reader.search(1, [1, 1, 1, 1, 1], k=10)) == 4  # in step: not read
        con = reader.store._con()
        with con:
            con.execute("UPDATE tracks SET title='renamed' WHERE id=2")  # not what the index holds
        assert reader.store.changes() == count
        with con:
            con.execute("UPDATE tracks SET status='failed' WHERE id=3")  # what another writer does
        assert reader.store.changes() == count + 1
    with Library(tmp_path / "lib", weights=w, index_params=SMALL, graphs=False) as reader:
        assert read  # the count moved: the index is checked against every row
        assert sorted(r.track.id for r in reader.search(1, [1, 1, 1, 1, 1], k=10)) == [2, 4, 5]


def test_every_library_counts_its_changes_from_its_own_start(tmp_path):
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    try:
        assert a.changes() is not None and b.changes() is not None and a.changes() != b.changes()
    finally:
        a.close()
        b.close()


def test_the_listing_shows_what_the_tracks_show(lib_dir):
    root, w = lib_dir
    with Library(root, weights=w, index=False) as lib:
        con = lib.store._con()
        with con:  # one track failed, with an error and no presence
            con.execute("UPDATE tracks SET status='failed', error='cannot decode', presence=NULL WHERE id=2")
        tracks, listed = lib.tracks(), lib.listing()
        assert [t.id for t in tracks] == [r.id for r in listed] and len(listed) >= 8
        for t, r in zip(tracks, listed, strict=True):
            assert (str(t.path), t.title, t.artist, t.album, t.duration, t.status, t.error) == \
                (r.path, r.title, r.artist, r.album, r.duration, r.status, r.error)
            assert list(r.presence) == t.presence.tolist()
        assert tracks_csv(listed) == tracks_csv(tracks)
        assert m3u(lib.listing("ok")) == m3u([t for t in tracks if t.status == "ok"])
        assert 2 not in [r.id for r in lib.listing("ok")]
        with con:
            con.execute("UPDATE tracks SET status='ok', error=NULL WHERE id=2")
