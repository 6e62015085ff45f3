"""Training loader: sampling, contiguous and spatial crops, padding, determinism."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from datagen import random_backbone
from foldlite import constants as rc
from foldlite.data import dataset as ds
from foldlite.data.features import Features, one_hot_profile
from foldlite.data.loader import Loader, LoaderConfig, make_loader, spatial_crop
from foldlite.errors import ConfigError, InputError

CACHE = Path(os.environ.get("FOLDLITE_CACHE", "~/.cache/foldlite")).expanduser()
LENGTHS = (8, 30, 45, 70, 100, 140)


@pytest.fixture(scope="module")
def dset(tmp_path_factory) -> ds.Dataset:
    rng = np.random.default_rng(0)
    recs = []
    for k, L in enumerate(LENGTHS):
        aatype = rng.integers(0, 20, L).astype(np.int32)
        pos = np.zeros((L, 37, 3), np.float32)
        mask = np.zeros((L, 37), np.float32)
        pos[:, [0, 1, 2, 4]] = random_backbone(L, rng)
        mask[:, [0, 1, 2, 4]] = 1
        prof = rng.random((L, 20)).astype(np.float32)
        prof /= prof.sum(-1, keepdims=True)
        dssp = np.frombuffer("".join(rng.choice(list("HGIEBTSC"), L)).encode(), np.uint8).copy()
        if k == 1:
            dssp[:] = 0  # unknown DSSP
        recs.append(ds.ChainRecord(
            chain_id=f"C{k}_A", aatype=aatype, atom_positions=pos, atom_mask=mask,
            residue_index=np.arange(L, dtype=np.int32) + 10 * k,
            insertion_code=np.full(L, "", "<U1"), dssp=dssp,
            profile=None if k == 2 else prof))
    out = ds.write_dataset(tmp_path_factory.mktemp("loader") / "d", recs, source="test")
    return ds.Dataset(out)


def config(**kw) -> LoaderConfig:
    base = dict(batch_size=3, crop_size=48, buckets=(16, 32), min_length=1, seed=0)
    base.update(kw)
    return LoaderConfig(**base)


def test_batch_shapes_and_padding(dset):
    loader = Loader(dset, config())
    for step in range(12):
        b = loader.batch(step)
        f: Features = b["features"]
        B, N = f.aatype.shape
        assert B == 3 and N in (16, 32, 48)
        assert f.profile.shape == (B, N, 20) and f.has_profile.shape == (B,)
        assert b["atom37"].shape == (B, N, 37, 3) and b["atom37"].dtype == np.float32
        assert b["atom37_mask"].shape == (B, N, 37) and b["dssp3"].dtype == np.int32
        n_real = f.mask.sum(-1).astype(int)
        assert N == min(x for x in (16, 32, 48) if x >= n_real.max())
        for k in range(B):
            n = n_real[k]
            assert np.all(f.mask[k, :n] == 1) and np.all(f.mask[k, n:] == 0)
            assert np.all(b["atom37"][k, n:] == 0) and np.all(b["atom37_mask"][k, n:] == 0)
            assert np.all(b["dssp3"][k, n:] == -1) and np.all(b["positions"][k, n:] == -1)
            assert np.all(f.aatype[k, n:] == rc.unk_restype_index)
            assert np.all(f.profile[k, n:] == 0)
            # real residues: exactly the stored chain at the cropped positions
            rec = dset[str(b["chain_ids"][k])]
            pos = b["positions"][k, :n]
            np.testing.assert_array_equal(f.aatype[k, :n], rec.aatype[pos])
            np.testing.assert_array_equal(f.residue_index[k, :n], rec.residue_index[pos])
            np.testing.assert_array_equal(b["atom37"][k, :n], rec.atom_positions[pos])
            np.testing.assert_array_equal(b["dssp3"][k, :n], ds.dssp_to_3state(rec.dssp[pos]))
            if rec.profile is None:
                assert f.has_profile[k] == 0
                np.testing.assert_array_equal(f.profile[k, :n], one_hot_profile(rec.aatype[pos]))
            else:
                assert f.has_profile[k] == 1
                np.testing.assert_allclose(f.profile[k, :n], rec.profile[pos])


def test_pad_to_crop(dset):
    b = Loader(dset, config(pad_to_crop=True)).batch(0)
    assert b["features"].aatype.shape == (3, 48)


def test_contiguous_crop(dset):
    loader = Loader(dset, config(spatial_crop_prob=0.0, crop_size=20))
    i = dset.index("C5_A")
    starts = set()
    for s in range(30):
        pos, kind = loader.crop_positions(i, np.random.default_rng(s))
        assert kind == "contiguous" and len(pos) == 20
        assert np.all(np.diff(pos) == 1) and 0 <= pos[0] and pos[-1] < 140
        starts.add(int(pos[0]))
    assert len(starts) > 10
    pos, kind = loader.crop_positions(dset.index("C0_A"), np.random.default_rng(0))
    assert kind == "none" and np.array_equal(pos, np.arange(8))


def test_spatial_crop(dset):
    loader = Loader(dset, config(spatial_crop_prob=1.0, crop_size=25))
    i = dset.index("C5_A")
    ca, mask = dset.ca_positions(i)
    for s in range(10):
        pos, kind = loader.crop_positions(i, np.random.default_rng(s))
        assert kind == "spatial" and len(pos) == 25 and np.all(np.diff(pos) > 0)
        # brute force: the kept residues are the 25 nearest to some centre among them
        ok = False
        for c in pos:
            d = np.linalg.norm(ca - ca[c], axis=-1)
            if set(np.argsort(d, kind="stable")[:25]) == set(pos):
                ok = True
                break
        assert ok
    # residues without CA are never chosen before residues with one
    m = mask.copy()
    m[:50] = 0
    keep = spatial_crop(ca, m, 30, centre=100)
    assert keep.min() >= 50


def test_determinism_and_resume(dset):
    a = Loader(dset, config(profile_dropout=0.3, spatial_crop_prob=0.5))
    b = Loader(dset, config(profile_dropout=0.3, spatial_crop_prob=0.5))
    later = [b.batch(k) for k in (7, 3, 5)]  # any order
    for k, bk in zip((7, 3, 5), later):
        ak = a.batch(k)
        assert list(ak["chain_ids"]) == list(bk["chain_ids"])
        for key in ("atom37", "atom37_mask", "dssp3", "positions"):
            np.testing.assert_array_equal(ak[key], bk[key])
        np.testing.assert_array_equal(ak["features"].profile, bk["features"].profile)
    resumed = next(a.iterate(start_step=5))
    np.testing.assert_array_equal(resumed["positions"], later[2]["positions"])
    threaded = list(a.iterate(start_step=2, num_steps=6, num_workers=2))
    serial = list(a.iterate(start_step=2, num_steps=6))
    assert [t["step"] for t in threaded] == list(range(2, 8))
    for t, s in zip(threaded, serial):
        np.testing.assert_array_equal(t["positions"], s["positions"])
    other_seed = Loader(dset, config(seed=1, profile_dropout=0.3))
    assert any(not np.array_equal(other_seed.batch(k)["positions"], a.batch(k)["positions"])
               for k in range(5))


def test_profile_dropout(dset):
    ids = ["C3_A", "C4_A"]  # chains with profiles
    full = Loader(dset, config(profile_dropout=0.0), chain_ids=ids).batch(0)
    assert np.all(full["features"].has_profile == 1)
    none = Loader(dset, config(profile_dropout=1.0), chain_ids=ids).batch(0)
    assert np.all(none["features"].has_profile == 0)
    f = none["features"]
    n = int(f.mask[0].sum())
    np.testing.assert_array_equal(f.profile[0, :n], one_hot_profile(f.aatype[0, :n]))


def test_cluster_weighting(dset):
    ids = ["C1_A", "C2_A", "C3_A", "C4_A"]
    clusters = {"C1_A": "C1_A", "C2_A": "C1_A", "C3_A": "C1_A", "C4_A": "C4_A"}
    loader = Loader(dset, config(batch_size=64), chain_ids=ids, clusters=clusters)
    np.testing.assert_allclose(loader.weights, [1 / 6, 1 / 6, 1 / 6, 1 / 2])
    drawn = np.concatenate([loader.batch(k)["chain_ids"] for k in range(20)])
    frac = np.mean(drawn == "C4_A")
    assert 0.4 < frac < 0.6
    flat = Loader(dset, config(batch_size=64, cluster_weighting=False), chain_ids=ids,
                  clusters=clusters)
    np.testing.assert_allclose(flat.weights, 0.25)


def test_filters_and_errors(dset, tmp_path):
    assert len(Loader(dset, config(min_length=40))) == 4
    assert len(Loader(dset, config(min_length=40, max_length=100))) == 3
    with pytest.raises(InputError, match="not in the dataset"):
        Loader(dset, config(), chain_ids=["C0_A", "ZZZ_Z"])
    with pytest.raises(InputError, match="no chain"):
        Loader(dset, config(min_length=1000))
    with pytest.raises(ConfigError):
        config(profile_dropout=2.0)
    (tmp_path / "s_train.txt").write_text("C4_A\nC5_A\n")
    (tmp_path / "s_clusters.tsv").write_text("C4_A\tC4_A\nC4_A\tC5_A\n")
    loader = make_loader(dset, "train", tmp_path / "s", config())
    assert len(loader) == 2 and np.allclose(loader.weights, 0.5)


def test_eval_batches(dset):
    loader = Loader(dset, config(batch_size=4, crop_size=64))
    batches = list(loader.eval_batches())
    ids = [c for b in batches for c in b["chain_ids"]]
    assert ids == dset.chain_ids
    last = batches[-1]
    assert last["features"].aatype.shape[1] == 64  # 100 and 140 cropped to 64 centrally
    assert int(last["positions"][1, 0]) == (140 - 64) // 2


def test_real_promod3_batch():
    path = CACHE / "promod3"
    if not (path / "manifest.json").is_file():
        pytest.skip(f"{path} absent (run: foldlite data promod3)")
    repo = Path(__file__).resolve().parents[1]
    prefix = repo / "data" / "splits" / "promod3"
    cfg = LoaderConfig(batch_size=2, crop_size=128)
    if Path(f"{prefix}_train.txt").is_file():
        loader = make_loader(path, "train", prefix, cfg)
    else:
        loader = Loader(path, cfg)
    b = loader.batch(0)
    f = b["features"]
    assert f.aatype.shape[0] == 2 and f.aatype.shape[1] <= 128
    n = int(f.mask[0].sum())
    ca = b["atom37"][0, :n, 1]
    # consecutive CAs of a contiguous crop are 3.8 A apart
    if np.all(np.diff(b["positions"][0, :n]) == 1):
        d = np.linalg.norm(np.diff(ca, axis=0), axis=-1)
        assert np.all(np.abs(d - 3.8) < 0.3)
    assert set(np.unique(b["dssp3"][0, :n])) <= {0, 1, 2}
