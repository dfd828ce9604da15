"""Feature stores (HDF5 in the ActivityNet and TACoS release layouts, npy/npz folders) and resampling."""

from __future__ import annotations

import json
import multiprocessing
import pickle
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from higround.data.features import (
    FeatureStore,
    HDF5Store,
    NpyFolderStore,
    l2_normalize,
    open_store,
    resample,
    write_hdf5_store,
)
from higround.errors import ConfigError, DataError

RNG = np.random.default_rng(0)
ANET = {"v_GGSY1Qvo990": RNG.normal(size=(7, 500)), "v_ZNVhz7ctTq0": RNG.normal(size=(3, 500))}
TACOS = {"s30-d52.avi": RNG.normal(size=(5, 4096)), "s13-d21.avi": RNG.normal(size=(2, 4096))}


@pytest.fixture()
def anet_h5(tmp_path: Path) -> Path:
    """ActivityNet C3D layout (``sub_activitynet_v1-3.c3d.hdf5``): group per video, ``c3d_features``."""
    path = tmp_path / "sub_activitynet_v1-3.c3d.hdf5"
    with h5py.File(path, "w") as f:
        for vid, x in ANET.items():
            f.create_group(vid).create_dataset("c3d_features", data=x)  # float64, as released
    return path


@pytest.fixture()
def tacos_h5(tmp_path: Path) -> Path:
    """TACoS layout (``tall_c3d_features.hdf5``): one dataset per video, keyed with ``.avi``."""
    path = tmp_path / "tall_c3d_features.hdf5"
    with h5py.File(path, "w") as f:
        for vid, x in TACOS.items():
            f.create_dataset(vid, data=x.astype(np.float32))
    return path


def _bad_h5(tmp_path: Path, entries: dict[str, np.ndarray]) -> HDF5Store:
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        for vid, x in entries.items():
            f.create_dataset(vid, data=x)
    return HDF5Store(path)


# --- HDF5 -------------------------------------------------------------------------------------------


def test_anet_layout_round_trip(anet_h5: Path) -> None:
    store = HDF5Store(anet_h5, key="{video_id}/c3d_features")
    assert store.dim == 500
    assert store.video_ids() == sorted(ANET)
    assert "v_GGSY1Qvo990" in store and "v_missing" not in store and 3 not in store
    for vid, x in ANET.items():
        got = store.get(vid)
        assert got.dtype == np.float32 and got.shape == x.shape
        np.testing.assert_array_equal(got, x.astype(np.float32))


def test_tacos_layout_round_trip_and_annotation_ids(tacos_h5: Path, shared_data: Path) -> None:
    store = HDF5Store(tacos_h5)
    assert store.dim == 4096
    for vid, x in TACOS.items():
        np.testing.assert_array_equal(store.get(vid), x.astype(np.float32))
    # The 2D-TAN annotation keys and the paragraph files' ``video`` field both carry ``.avi``.
    annotation_ids = set(json.loads((shared_data / "tacos" / "test.json").read_text()))
    paragraph_ids = {
        p["video"] for p in json.loads((shared_data / "tacos" / "paragraphs_test.json").read_text())
    }
    assert len(annotation_ids) == 25 and paragraph_ids == annotation_ids
    assert all(v.endswith(".avi") for v in annotation_ids)
    assert "s30-d52.avi" in annotation_ids and "s30-d52.avi" in store


def test_ids_differing_by_video_suffix_match_both_ways(tmp_path: Path) -> None:
    x = RNG.normal(size=(4, 8)).astype(np.float32)
    bare = tmp_path / "bare.h5"
    write_hdf5_store(bare, {"s13-d21": x})
    with_avi = tmp_path / "avi.h5"
    write_hdf5_store(with_avi, {"s13-d21.avi": x})
    np.testing.assert_array_equal(HDF5Store(bare).get("s13-d21.avi"), x)
    np.testing.assert_array_equal(HDF5Store(with_avi).get("s13-d21"), x)
    assert "s13-d21.avi" not in HDF5Store(bare, match_stem=False)
    # A dot inside an id is not a video suffix (QVHighlights ids such as "abc_360.0_510.0").
    write_hdf5_store(bare, {"abc_360.0_510.0": x})
    assert "abc_360.0_510" not in HDF5Store(bare)


def test_missing_video_error_names_id_store_and_nearest(anet_h5: Path) -> None:
    store = HDF5Store(anet_h5, key="{video_id}/c3d_features")
    with pytest.raises(DataError) as err:
        store.get("v_GGSY1Qvo991")
    message = str(err.value)
    assert "v_GGSY1Qvo991" in message and str(anet_h5) in message and "v_GGSY1Qvo990" in message


def test_wrong_key_template_hints_at_group_layout(anet_h5: Path) -> None:
    store = HDF5Store(anet_h5)  # default "{video_id}" on the ActivityNet layout
    assert "v_GGSY1Qvo990" not in store
    with pytest.raises(DataError, match="c3d_features"):
        store.get("v_GGSY1Qvo990")


@pytest.mark.parametrize(
    ("entry", "what"),
    [
        (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN or inf"),
        (np.array([[1.0, np.inf]]), "NaN or inf"),
        (np.arange(5.0), r"shape \(5,\)"),
        (np.zeros((0, 4)), r"shape \(0, 4\)"),
    ],
)
def test_bad_entry_raises_data_error_naming_store_and_id(
    tmp_path: Path, entry: np.ndarray, what: str
) -> None:
    store = _bad_h5(tmp_path, {"vid_bad": entry, "vid_ok": np.ones((2, 4))})
    with pytest.raises(DataError, match=what) as err:
        store.get("vid_bad")
    assert "vid_bad" in str(err.value) and str(tmp_path / "bad.h5") in str(err.value)
    assert store.get("vid_ok").shape == (2, 4)


def test_missing_file_and_bad_template(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.h5"):
        HDF5Store(tmp_path / "nope.h5")
    with pytest.raises(FileNotFoundError, match="nope_dir"):
        NpyFolderStore(tmp_path / "nope_dir")
    with pytest.raises(FileNotFoundError, match=r"nope\.hdf5"):
        open_store(tmp_path / "nope.hdf5")
    write_hdf5_store(tmp_path / "a.h5", {"v": np.ones((1, 1))})
    for key in ("features", "{video_id}/{video_id}", "{vid}"):
        with pytest.raises(ConfigError):
            HDF5Store(tmp_path / "a.h5", key=key)


def test_get_is_lazy(tmp_path: Path) -> None:
    """An unread entry never matters: a 330 MB NaN-filled dataset (never written to disk) sorts first."""
    path = tmp_path / "lazy.h5"
    x = RNG.normal(size=(3, 4096)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.create_dataset("aaa_huge", shape=(20_000, 4096), dtype="f4", chunks=(256, 4096), fillvalue=np.nan)
        f.create_dataset("small", data=x)
    assert path.stat().st_size < 1_000_000
    store = HDF5Store(path)
    assert store.dim == 4096  # from the first entry's shape only
    np.testing.assert_array_equal(store.get("small"), x)
    assert "aaa_huge" in store
    assert not any(isinstance(v, np.ndarray) for v in vars(store).values())
    assert len(pickle.dumps(store)) < 2000


def _read_in_child(store: FeatureStore, vid: str, queue: Any) -> None:
    queue.put(store.get(vid).tolist())


def _read_pickled_in_child(blob: bytes, vid: str, queue: Any) -> None:
    queue.put(pickle.loads(blob).get(vid).tolist())


def test_hdf5_store_survives_fork_and_pickle(tacos_h5: Path) -> None:
    store = HDF5Store(tacos_h5, normalize=True)
    expected = store.get("s30-d52.avi")  # opens the handle in the parent before forking
    ctx = multiprocessing.get_context("fork")
    for target, arg in ((_read_in_child, store), (_read_pickled_in_child, pickle.dumps(store))):
        queue = ctx.Queue()
        child = ctx.Process(target=target, args=(arg, "s30-d52.avi", queue))
        child.start()
        got = np.array(queue.get(timeout=30), dtype=np.float32)
        child.join(timeout=30)
        assert child.exitcode == 0
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(
        store.get("s13-d21.avi"), l2_normalize(TACOS["s13-d21.avi"].astype(np.float32))
    )
    clone = pickle.loads(pickle.dumps(store))
    assert clone.normalize and clone.dim == 4096
    np.testing.assert_array_equal(clone.get("s30-d52.avi"), expected)


def test_write_hdf5_store_layout_attrs_and_atomicity(tmp_path: Path) -> None:
    path = tmp_path / "out" / "anet.hdf5"
    write_hdf5_store(path, ANET, key="{video_id}/c3d_features", attrs={"v_GGSY1Qvo990": {"fps": 25.0}})
    assert sorted(p.name for p in path.parent.iterdir()) == ["anet.hdf5"]  # no temp file left
    with h5py.File(path, "r") as f:
        assert f["v_GGSY1Qvo990/c3d_features"].dtype == np.float32
        assert f["v_GGSY1Qvo990/c3d_features"].attrs["fps"] == 25.0
    store = open_store(path)  # the group layout is detected
    assert isinstance(store, HDF5Store) and store.template.template == "{video_id}/c3d_features"
    np.testing.assert_allclose(store.get("v_ZNVhz7ctTq0"), ANET["v_ZNVhz7ctTq0"], rtol=1e-6)
    with pytest.raises(DataError, match="v_bad"):
        write_hdf5_store(path, {"v_bad": np.full((2, 3), np.nan)})
    assert sorted(p.name for p in path.parent.iterdir()) == ["anet.hdf5"]
    assert open_store(path).video_ids() == sorted(ANET)  # the old store is untouched


# --- npy / npz folders -------------------------------------------------------------------------------


def test_npy_folder(tmp_path: Path) -> None:
    root = tmp_path / "charades_i3d"
    root.mkdir()
    xs = {"AO8RW": RNG.normal(size=(6, 1024)).astype(np.float32), "Y6R7T": RNG.normal(size=(2, 1024))}
    for vid, x in xs.items():
        np.save(root / f"{vid}.npy", x)
    (root / "README.txt").write_text("not a feature")
    store = open_store(root)
    assert isinstance(store, NpyFolderStore) and store.dim == 1024
    assert store.video_ids() == ["AO8RW", "Y6R7T"] and "AO8RW" in store and "README" not in store
    for vid, x in xs.items():
        np.testing.assert_array_equal(store.get(vid), x.astype(np.float32))
    with pytest.raises(DataError, match=r"charades_i3d: no features for video 'AO8RX'.*nearest ids: AO8RW"):
        store.get("AO8RX")
    assert len(pickle.dumps(store)) < 2000


def test_npz_folder_moment_detr_layout(tmp_path: Path) -> None:
    x = RNG.normal(size=(75, 512)).astype(np.float32)
    np.savez(tmp_path / "NUVyDFn8fUY_360.0_510.0.npz", features=x, extra=np.zeros(3))
    store = open_store(tmp_path, normalize=True)
    assert isinstance(store, NpyFolderStore) and store.video_ids() == ["NUVyDFn8fUY_360.0_510.0"]
    got = store.get("NUVyDFn8fUY_360.0_510.0")
    np.testing.assert_allclose(got, x / np.linalg.norm(x, axis=1, keepdims=True), rtol=1e-6)
    with pytest.raises(DataError, match=r"no array 'pooler_output'.*features, extra"):
        NpyFolderStore(tmp_path, "{video_id}.npz", npz_field="pooler_output").get("NUVyDFn8fUY_360.0_510.0")


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no \.npy or \.npz"):
        open_store(tmp_path)
    np.save(tmp_path / "a.npy", np.ones((2, 2)))
    np.savez(tmp_path / "b.npz", features=np.ones((2, 2)))
    with pytest.raises(ConfigError, match="both"):
        open_store(tmp_path)
    assert open_store(tmp_path, key="{video_id}.npz").video_ids() == ["b"]
    (tmp_path / "c.npy").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"c\.npy.*'c'"):
        open_store(tmp_path, key="{video_id}.npy").get("c")
    with pytest.raises(ConfigError, match=r"\.npy or \.npz"):
        NpyFolderStore(tmp_path, "{video_id}.pt")
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(DataError, match="not a feature store"):
        open_store(tmp_path / "x.txt")


# --- resampling and normalisation ---------------------------------------------------------------------


def test_resample_pools_equal_spans() -> None:
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    np.testing.assert_array_equal(resample(x, 3), [[1, 2], [5, 6], [9, 10]])  # pairwise means
    # T=5, N=2: s = floor(0), floor(2.5) = 0, 2 -> rows {0, 1} and {2, 3, 4}.
    y = np.array([[0.0], [2.0], [4.0], [6.0], [8.0]])
    np.testing.assert_allclose(resample(y, 2), [[1.0], [6.0]])
    np.testing.assert_array_equal(resample(x, 6), x)  # T == N: identity
    np.testing.assert_allclose(resample(y, 1), [[4.0]])


def test_resample_interpolates_short_inputs() -> None:
    x = np.array([[0.0, 10.0], [4.0, 2.0]])
    # T=2 -> N=4: centres at row coordinates -0.25, 0.25, 0.75, 1.25 clipped to [0, 1].
    np.testing.assert_allclose(resample(x, 4), [[0, 10], [1, 8], [3, 4], [4, 2]])
    np.testing.assert_array_equal(resample(x[:1], 3), np.repeat(x[:1], 3, axis=0))


@pytest.mark.parametrize(("t", "n"), [(1, 1), (7, 3), (100, 32), (31, 64), (500, 499), (3, 128)])
def test_resample_shape_dtype_and_bounds(t: int, n: int) -> None:
    x = RNG.normal(size=(t, 5))
    out = resample(x, n)
    assert out.shape == (n, 5) and out.dtype == np.float32
    assert (out.min(0) >= x.min(0) - 1e-5).all() and (out.max(0) <= x.max(0) + 1e-5).all()


def test_resample_preserves_mean_when_divisible() -> None:
    x = RNG.normal(size=(96, 16)).astype(np.float32)
    np.testing.assert_allclose(resample(x, 32).mean(0), x.mean(0), atol=1e-6)
    np.testing.assert_allclose(resample(x, 32)[5], x[15:18].mean(0), atol=1e-6)


def test_resample_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        resample(np.zeros((0, 3)), 4)
    with pytest.raises(ValueError):
        resample(np.zeros(3), 4)
    with pytest.raises(ValueError):
        resample(np.zeros((3, 3)), 0)


def test_l2_normalize_rows() -> None:
    x = RNG.normal(size=(10, 7)).astype(np.float32)
    out = l2_normalize(x)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(out * np.linalg.norm(x, axis=1, keepdims=True), x, rtol=1e-5)
    np.testing.assert_array_equal(l2_normalize(np.zeros((2, 3))), 0.0)  # zero rows stay zero
    np.testing.assert_allclose(l2_normalize(np.array([[3.0, 4.0]])), [[0.6, 0.8]])


def test_npy_folder_reads_lgi_i3d_files_with_singleton_axes(tmp_path: Path) -> None:
    # LGI's released Charades I3D features are (T, 1, 1, 1024); its loader squeezes them.
    x = RNG.normal(size=(5, 1, 1, 1024)).astype(np.float32)
    np.save(tmp_path / "AO8RW.npy", x)
    np.save(tmp_path / "BAD00.npy", RNG.normal(size=(5, 2, 1024)).astype(np.float32))
    store = open_store(tmp_path)
    assert store.dim == 1024
    np.testing.assert_array_equal(store.get("AO8RW"), x.reshape(5, 1024))
    with pytest.raises(DataError, match=r"'BAD00' have shape \(5, 2, 1024\), expected \(T >= 1, D >= 1\)"):
        store.get("BAD00")
