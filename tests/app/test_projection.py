import threading

import numpy as np
import pytest

from app.projection import (
    WHOLE,
    MapCache,
    Projection,
    cache_key,
    pca_2d,
    project,
    space_for_focus,
    space_vectors,
)
from model.parts import EMBED_DIM


def clustered(n_per: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three tight clusters in the bass subspace, noise elsewhere; labels (N,)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), n_per)
    v = rng.normal(0, 1.0, (len(labels), EMBED_DIM)).astype(np.float32)
    centres = rng.normal(0, 6.0, (3, 128))
    v[:, 128:256] = centres[labels] + rng.normal(0, 0.3, (len(labels), 128))
    return v.astype(np.float32), labels


def test_space_for_focus():
    assert space_for_focus({"bass": 1.0}) == "bass"
    assert space_for_focus({"drums": 1.0, "bass": -1.0}) == "drums"
    assert space_for_focus([1, 1, 0, 0, 0]) == WHOLE
    assert space_for_focus([0, 0, 0, 0, 0]) == WHOLE
    with pytest.raises(ValueError):
        space_for_focus([1, 0])


def test_space_vectors_slices_parts():
    v = np.arange(2 * EMBED_DIM, dtype=np.float32).reshape(2, EMBED_DIM)
    assert space_vectors(v, WHOLE) is v
    assert np.array_equal(space_vectors(v, "piano"), v[:, 256:384])
    with pytest.raises(ValueError, match="unknown map space"):
        space_vectors(v, "vocals")


def test_pca_separates_clusters_and_handles_tiny_inputs():
    v, labels = clustered()
    xy = pca_2d(space_vectors(v, "bass"))
    assert xy.shape == (len(v), 2) and xy.dtype == np.float32
    centres = np.stack([xy[labels == k].mean(0) for k in range(3)])
    spread = max(np.linalg.norm(xy[labels == k] - centres[k], axis=1).max() for k in range(3))
    gaps = [np.linalg.norm(centres[a] - centres[b]) for a in range(3) for b in range(a + 1, 3)]
    assert min(gaps) > spread
    assert pca_2d(np.ones((1, 128), np.float32)).shape == (1, 2)
    assert pca_2d(np.zeros((0, 128), np.float32)).shape == (0, 2)


def test_pca_maps_are_cached(tmp_path):
    v, _ = clustered()
    ids = np.arange(100, 100 + len(v))
    cache = MapCache(tmp_path / "maps")
    first = list(project(ids, v, "drums", cache=cache, method="pca"))
    assert [p.stage for p in first] == ["pca"] and first[-1].final
    again = list(project(ids, v, "drums", cache=cache, method="pca"))
    assert [p.stage for p in again] == ["cached"]
    assert np.array_equal(again[0].xy, first[0].xy) and np.array_equal(again[0].ids, ids)
    other = list(project(ids, v, "bass", cache=cache, method="pca"))
    assert other[0].stage == "pca"  # another space is another map
    assert len(list((tmp_path / "maps").glob("*.npy"))) == 2


def test_cancel_stops_before_umap(tmp_path):
    v, _ = clustered()
    cancel = threading.Event()
    cancel.set()
    stages = [p.stage for p in project(np.arange(len(v)), v, "bass", cache=MapCache(tmp_path),
                                       cancel=cancel)]
    assert stages == ["pca"]
    assert not list(tmp_path.glob("*.npy"))


@pytest.mark.slow  # numba compiles UMAP on first use: 15-20 s idle, minutes on a busy machine
def test_umap_on_a_sample_keeps_clusters_apart(tmp_path):
    v, labels = clustered(n_per=20)
    maps = list(project(np.arange(len(v)), v, "bass", cache=MapCache(tmp_path),
                        sample=30, full_limit=40))
    assert [p.stage for p in maps] == ["pca", "sample"] and maps[-1].final
    xy = maps[-1].xy
    assert np.isfinite(xy).all()
    # every point's nearest map neighbour is in its own cluster
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert (labels[d.argmin(1)] == labels).mean() >= 0.95


def test_too_few_tracks_give_a_final_linear_map_that_says_so(tmp_path):
    from app.projection import MIN_UMAP
    from app.ui.map_view import stage_text

    v, _ = clustered()
    v = v[: MIN_UMAP - 2]
    ids = np.arange(len(v))
    cache = MapCache(tmp_path / "maps")
    key = cache_key(ids, space_vectors(v, "drums"), "drums", 30000)
    cache.put(key, np.zeros((len(v), 2), np.float32))  # left by an older version
    for _ in range(2):  # never cached: no map is passed off as a cached UMAP
        maps = list(project(ids, v, "drums", cache=cache))
        assert [p.stage for p in maps] == ["pca"] and maps[-1].final
        assert stage_text(maps[-1]) == f"linear map (PCA); UMAP from {MIN_UMAP} tracks on"
    preview = Projection("drums", ids, maps[0].xy, "pca", False)
    assert "UMAP on its way" in stage_text(preview)


def test_the_engine_serves_a_librarys_map_from_its_own_vectors(tmp_path):
    from app.index import VectorIndex
    from app.projection import library_map

    v, labels = clustered()
    ids = np.arange(10, 10 + len(v))

    class Engine:  # the part of app.library.Library that library_map reads
        root = tmp_path / "lib"

        def __init__(self) -> None:
            self.index = VectorIndex()
            self.index.upsert(ids.tolist(), [1] * len(ids), v)

        def track_vectors(self):
            return self.index.vectors()

    maps = list(library_map(Engine(), "bass", method="pca"))
    assert len(maps) == 1 and maps[0].final and maps[0].space == "bass"
    assert maps[0].ids.tolist() == ids.tolist() and maps[0].xy.shape == (len(ids), 2)
    stored = v.astype(np.float16).astype(np.float32)  # the index keeps float16 vectors
    np.testing.assert_allclose(maps[0].xy, pca_2d(stored[:, 128:256]), atol=1e-4)
    centres = np.stack([maps[0].xy[labels == k].mean(0) for k in range(3)])
    spread = max(maps[0].xy[labels == k].std(0).max() for k in range(3))
    assert np.linalg.norm(centres[0] - centres[1]) > 5 * spread
    # the final map is kept in the library's maps folder and served from there next time
    again = list(library_map(Engine(), "bass", method="pca"))
    assert [m.stage for m in again] == ["cached"]
    assert list((tmp_path / "lib" / "maps").glob("*.npy"))
