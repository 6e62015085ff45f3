"""Tests of the foldlite network (tiny config): configs, shapes, padding invariance, chunking,
traced recycling, gradients, ideal geometry of the output atoms, bfloat16 trunk, heads."""

from __future__ import annotations

import dataclasses
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import perturbed_params

from conftest import compile_fast
from foldlite import constants as rc
from foldlite.data.features import make_features, stack_features
from foldlite.errors import ConfigError
from foldlite.model import heads
from foldlite.model.config import CONFIG_DIR, load_model_config
from foldlite.model.layers import chunked
from foldlite.model.model import ModelOutput, make_model

L_REAL = 10
N_PAD = 16


# ------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("name", ["tiny", "small", "base"])
def test_shipped_configs_load(name):
    cfg = load_model_config(name)
    assert cfg.c_s > 0 and cfg.trunk.num_blocks >= 1
    assert load_model_config(CONFIG_DIR / f"{name}.yaml") == cfg


def _write_variant(tmp_path, edit):
    import yaml
    data = yaml.safe_load((CONFIG_DIR / "tiny.yaml").read_text())
    edit(data)
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_config_unknown_key_is_an_error(tmp_path):
    path = _write_variant(tmp_path, lambda d: d.update(c_q=3))
    with pytest.raises(ConfigError, match="c_q"):
        load_model_config(path)
    path = _write_variant(tmp_path, lambda d: d["trunk"].update(num_layers=3))
    with pytest.raises(ConfigError, match=r"trunk.*num_layers"):
        load_model_config(path)


def test_config_missing_key_is_an_error(tmp_path):
    path = _write_variant(tmp_path, lambda d: d["structure"].pop("ipa_heads"))
    with pytest.raises(ConfigError, match="ipa_heads"):
        load_model_config(path)
    path = _write_variant(tmp_path, lambda d: d.pop("c_z"))
    with pytest.raises(ConfigError, match="c_z"):
        load_model_config(path)


def test_config_bad_values_and_names(tmp_path):
    with pytest.raises(ConfigError, match="no_such_config"):
        load_model_config("no_such_config")
    path = _write_variant(tmp_path, lambda d: d.update(dtype="float16"))
    with pytest.raises(ConfigError, match="float16"):
        load_model_config(path)
    path = _write_variant(tmp_path, lambda d: d.update(chunk_size=-1))
    with pytest.raises(ConfigError, match="chunk_size"):
        load_model_config(path)
    cfg = load_model_config("tiny", overrides=["trunk.num_blocks=3", "chunk_size=4"])
    assert cfg.trunk.num_blocks == 3 and cfg.chunk_size == 4


# ------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def cfg():
    return load_model_config("tiny")


@pytest.fixture(scope="module")
def model(cfg):
    return make_model(cfg)


@pytest.fixture(scope="module")
def sequence():
    return np.random.default_rng(0).integers(0, 20, L_REAL).astype(np.int32)




@pytest.fixture(scope="module")
def params(model, sequence):
    f = make_features(sequence, pad_to=N_PAD)
    key = jax.random.PRNGKey(0)
    p = compile_fast(lambda k, f: model.init(k, f, 0), key, f)(key, f)
    return perturbed_params(p)


def forward(model, params, features, num_recycles, chunk_size=None):
    """Compiled forward pass with a traced ``num_recycles``."""
    r = jnp.int32(num_recycles)
    fn = compile_fast(lambda p, f, r: model.apply(p, None, f, r, chunk_size=chunk_size),
                      params, features, r)
    return fn, fn(params, features, r)


@pytest.fixture(scope="module")
def out_unpadded(model, params, sequence):
    return forward(model, params, make_features(sequence), 1)[1]


@pytest.fixture(scope="module")
def padded_runs(model, params, sequence):
    f = make_features(sequence, pad_to=N_PAD)
    fn, out1 = forward(model, params, f, 1)
    out0 = fn(params, f, jnp.int32(0))
    return out1, out0


@pytest.fixture(scope="module")
def out_padded(padded_runs):
    return padded_runs[0]


def _real_part(out: ModelOutput, n: int) -> dict:
    """Outputs restricted to the first ``n`` residues (pairs: the first ``n x n`` block)."""
    return {
        "frames_rot": out.frames.rot[:n], "frames_trans": out.frames.trans[:n],
        "traj_trans": out.traj_frames.trans[:, :n], "sc_trans": out.sidechain_frames.trans[:n],
        "torsions": out.torsions[:n], "unnormalized_torsions": out.unnormalized_torsions[:n],
        "atom14": out.atom14[:n], "atom14_mask": out.atom14_mask[:n],
        "atom37": out.atom37[:n], "atom37_mask": out.atom37_mask[:n],
        "distogram_logits": out.distogram_logits[:n, :n], "plddt_logits": out.plddt_logits[:n],
        "pae_logits": out.pae_logits[:n, :n], "ss_logits": out.ss_logits[:n],
        "single": out.single[:n],
    }


def _assert_close(a: dict, b: dict, atol: float, rtol: float = 1e-4):
    for key in a:
        np.testing.assert_allclose(np.asarray(a[key]), np.asarray(b[key]), atol=atol, rtol=rtol,
                                   err_msg=key)


# ------------------------------------------------------------------------------- model tests
@pytest.mark.parametrize("which,n", [("out_unpadded", L_REAL), ("out_padded", N_PAD)])
def test_output_shapes_and_finite(request, cfg, which, n):
    out = request.getfixturevalue(which)
    assert isinstance(out, ModelOutput)
    expected = {
        "frames.rot": (n, 3, 3), "frames.trans": (n, 3),
        "traj_frames.rot": (cfg.structure.num_iterations, n, 3, 3),
        "sidechain_frames.rot": (n, 8, 3, 3), "torsions": (n, 7, 2),
        "unnormalized_torsions": (n, 7, 2), "atom14": (n, 14, 3), "atom14_mask": (n, 14),
        "atom37": (n, 37, 3), "atom37_mask": (n, 37), "distogram_logits": (n, n, 64),
        "plddt_logits": (n, 50), "pae_logits": (n, n, 64), "ss_logits": (n, 3),
        "single": (n, cfg.c_s),
    }
    for key, shape in expected.items():
        value = out
        for part in key.split("."):
            value = getattr(value, part)
        assert value.shape == shape, key
        assert value.dtype == jnp.float32, key
        assert np.all(np.isfinite(np.asarray(value))), key
    np.testing.assert_allclose(np.linalg.norm(np.asarray(out.torsions), axis=-1), 1.0, atol=1e-5)
    rot = np.asarray(out.frames.rot)
    np.testing.assert_allclose(rot @ np.swapaxes(rot, -1, -2), np.broadcast_to(np.eye(3),
                               rot.shape), atol=1e-5)
    # the last trajectory entry is the final frame
    np.testing.assert_allclose(np.asarray(out.traj_frames.trans[-1]), np.asarray(out.frames.trans))


def test_padding_does_not_change_real_residues(out_unpadded, out_padded):
    _assert_close(_real_part(out_unpadded, L_REAL), _real_part(out_padded, L_REAL), atol=2e-4)
    assert np.all(np.asarray(out_padded.atom14_mask)[L_REAL:] == 0)
    assert np.all(np.asarray(out_padded.atom37_mask)[L_REAL:] == 0)


def test_chunked_equals_unchunked_and_vmap(model, params, sequence, out_padded):
    """Chunked evaluation (5 does not divide 16: the last chunk is padded) under ``vmap`` over a
    batch of two, as trainers call the model: item 0 equals the unchunked, unbatched run."""
    other = np.random.default_rng(5).integers(0, 20, 13)
    batch = stack_features([make_features(sequence, pad_to=N_PAD),
                            make_features(other, pad_to=N_PAD)])
    r = jnp.int32(1)

    def fwd(p, f, r):
        return jax.vmap(lambda f1: model.apply(p, None, f1, r, chunk_size=5))(f)

    out = compile_fast(fwd, params, batch, r)(params, batch, r)
    first = jax.tree_util.tree_map(lambda x: x[0], out)
    _assert_close(_real_part(first, N_PAD), _real_part(out_padded, N_PAD), atol=2e-4)
    second = jax.tree_util.tree_map(lambda x: x[1], out)
    assert not np.allclose(np.asarray(second.atom37[:10]), np.asarray(first.atom37[:10]))


def test_static_num_recycles_matches_traced(model, params, sequence, padded_runs):
    out1, out0 = padded_runs
    f = make_features(sequence, pad_to=N_PAD)
    static = compile_fast(lambda p, f: model.apply(p, None, f, 0), params, f)(params, f)
    _assert_close(_real_part(static, N_PAD), _real_part(out0, N_PAD), atol=2e-4)
    assert not np.allclose(np.asarray(out0.atom37), np.asarray(out1.atom37), atol=1e-3), \
        "recycling had no effect"


def test_gradients_finite_and_nonzero_for_every_parameter(model, params, sequence):
    f = make_features(sequence, pad_to=N_PAD)

    def loss_fn(p, rng, num_recycles):
        out = model.apply(p, rng, f, num_recycles, is_training=True)
        leaves = jax.tree_util.tree_leaves(out)
        keys = jax.random.split(jax.random.PRNGKey(7), len(leaves))
        # a fixed random linear functional of every output
        return sum(jnp.sum(jax.random.normal(k, x.shape) * x) / np.sqrt(x.size)
                   for k, x in zip(keys, leaves))

    args = (params, jax.random.PRNGKey(3), jnp.int32(1))
    grads = compile_fast(jax.grad(loss_fn), *args)(*args)
    flat = jax.tree_util.tree_flatten_with_path(grads)[0]
    assert len(flat) > 50
    for path, g in flat:
        name = jax.tree_util.keystr(path)
        g = np.asarray(g)
        assert np.all(np.isfinite(g)), name
        if "trunk/blocks" in name:  # stacked [num_blocks, ...]: every block must learn
            per_block = np.abs(g.reshape(g.shape[0], -1)).max(axis=1)
            assert np.all(per_block > 0), name
        else:
            assert np.abs(g).max() > 0, name


def test_output_atoms_have_ideal_geometry(out_padded, sequence):
    """Bonds and all distances within each rigid group match the ideal residue geometry."""
    aatype = sequence
    atom14 = np.asarray(out_padded.atom14)
    ideal = rc.restype_atom14_ideal_coords
    group = rc.restype_atom14_to_rigid_group
    checked_bonds = 0
    for i in range(L_REAL):
        a = int(aatype[i])
        name = rc.resnames[a]
        names14 = rc.restype_name_to_atom14_names[name]
        idx = {atom: j for j, atom in enumerate(names14) if atom}
        for a1, a2 in rc.residue_bonds[name]:
            d = np.linalg.norm(atom14[i, idx[a1]] - atom14[i, idx[a2]])
            d_ideal = np.linalg.norm(ideal[a, idx[a1]] - ideal[a, idx[a2]])
            assert abs(d - d_ideal) < 2e-3, (name, a1, a2, d, d_ideal)
            checked_bonds += 1
        for a1, a2 in (("N", "CA"), ("CA", "C"), ("C", "O")):
            d = np.linalg.norm(atom14[i, idx[a1]] - atom14[i, idx[a2]])
            assert abs(d - rc.ideal_bond_length[(name, a1, a2)][0]) < 0.02, (name, a1, a2, d)
        present = [j for j in range(14) if rc.restype_atom14_mask[a, j] > 0]
        for j in present:
            for k in present:
                if group[a, j] == group[a, k]:
                    d = np.linalg.norm(atom14[i, j] - atom14[i, k])
                    d_ideal = np.linalg.norm(ideal[a, j] - ideal[a, k])
                    assert abs(d - d_ideal) < 2e-3, (name, names14[j], names14[k])
    assert checked_bonds > 3 * L_REAL


def test_bfloat16_trunk(cfg, params, sequence, padded_runs):
    out_f32 = padded_runs[1]
    model16 = make_model(dataclasses.replace(cfg, dtype="bfloat16"))
    f = make_features(sequence, pad_to=N_PAD)
    out = compile_fast(lambda p, f: model16.apply(p, None, f, 0), params, f)(params, f)
    for leaf in jax.tree_util.tree_leaves(out):
        assert leaf.dtype == jnp.float32  # geometry and outputs stay float32
        assert np.all(np.isfinite(np.asarray(leaf)))
    # same network at lower precision: logits agree roughly
    a = np.asarray(out.distogram_logits)
    b = np.asarray(out_f32.distogram_logits)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9


# ------------------------------------------------------------------------------- building blocks
def test_chunked_helper_matches_direct_call():
    x = jax.random.normal(jax.random.PRNGKey(0), (7, 5, 3))
    y = jax.random.normal(jax.random.PRNGKey(1), (3, 7))
    w = jax.random.normal(jax.random.PRNGKey(2), (3, 4))

    def fn(x_c, y_c, w_):
        # x chunked along axis 0, y along axis 1
        return jnp.einsum("ijc,ci,cd->ijd", x_c, y_c, w_), x_c.sum(-1)

    want = fn(x, y, w)
    for chunk in (0, 3, 7):  # unchunked, padded last chunk, one chunk
        got = jax.jit(lambda x, y, w: chunked(fn, chunk, (x, y, w), (0, 1, None)))(x, y, w)
        for g, t in zip(got, want):
            np.testing.assert_allclose(np.asarray(g), np.asarray(t), rtol=1e-5, atol=1e-5)


def test_heads_from_logits():
    plddt_from_logits = jax.jit(heads.plddt_from_logits)  # (one compile, not one per op)
    pae_from_logits = jax.jit(heads.pae_from_logits)
    ptm_from_logits = jax.jit(heads.ptm_from_logits)
    big = 50.0
    # all probability in one pLDDT bin -> its centre x 100
    logits = np.zeros((4, heads.PLDDT_NUM_BINS), np.float32)
    for i, b in enumerate([0, 10, 25, 49]):
        logits[i, b] = big
    np.testing.assert_allclose(np.asarray(plddt_from_logits(logits)),
                               [1.0, 21.0, 51.0, 99.0], atol=1e-3)
    np.testing.assert_allclose(np.asarray(plddt_from_logits(np.zeros((4, 50), np.float32))), 50.0,
                               atol=1e-4)
    assert heads.DISTOGRAM_BREAKS.shape == (63,)
    assert heads.DISTOGRAM_BREAKS[0] == pytest.approx(2.3125)
    assert heads.DISTOGRAM_BREAKS[-1] == pytest.approx(21.6875)
    assert heads.PAE_BIN_CENTERS.shape == (64,) and heads.MAX_PAE == pytest.approx(31.75)
    n = 30
    pae_logits = np.zeros((n, n, 64), np.float32)
    pae_logits[..., 0] = big  # every error ~0.25 A
    pae = np.asarray(pae_from_logits(pae_logits))
    np.testing.assert_allclose(pae, 0.25, atol=1e-3)
    mask = np.ones(n, np.float32)
    d0 = 1.24 * (n - 15) ** (1 / 3) - 1.8
    expect = 1 / (1 + (0.25 / d0) ** 2)
    assert float(ptm_from_logits(pae_logits, mask)) == pytest.approx(expect, abs=1e-4)
    # padding does not change pTM
    padded = np.zeros((n + 5, n + 5, 64), np.float32)
    padded[:n, :n] = pae_logits
    padded[n:, :, -1] = big
    padded[:, n:, -1] = big
    pmask = np.concatenate([mask, np.zeros(5, np.float32)])
    assert float(ptm_from_logits(padded, pmask)) == pytest.approx(expect, abs=1e-4)
    # large errors -> low pTM
    bad = np.zeros((n, n, 64), np.float32)
    bad[..., -1] = big
    assert float(ptm_from_logits(bad, mask)) < 0.1


def test_distogram_recycling_bins():
    from foldlite.model.embed import distogram_one_hot
    pos = jnp.array([[0.0, 0, 0], [3.0, 0, 0], [10.0, 0, 0], [40.0, 0, 0]])
    oh = np.asarray(distogram_one_hot(pos, 3.25, 20.75, 15))
    assert oh.shape == (4, 4, 15)
    edges = np.linspace(3.25, 20.75, 15)
    for i in range(4):
        for j in range(4):
            d = abs(float(pos[i, 0] - pos[j, 0]))
            want = np.zeros(15)
            if d > edges[0]:
                want[np.searchsorted(edges, d, side="right") - 1] = 1
            np.testing.assert_array_equal(oh[i, j], want, err_msg=f"{i},{j}")


def test_haiku_params_do_not_depend_on_length(model, params):
    f = make_features(np.arange(5) % 20)
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), f, 0))
    assert jax.tree_util.tree_map(lambda x: x.shape, shapes) == \
        jax.tree_util.tree_map(lambda x: x.shape, hk.data_structures.to_haiku_dict(params))


def test_recycled_pseudo_beta_from_frames_matches_atoms(out_padded, sequence):
    """Recycling passes take CB from the frames alone; it must equal the built atoms' CB."""
    from foldlite.geometry.pseudo_beta import pseudo_beta
    from foldlite.model.embed import pseudo_beta_from_frames
    aatype = jnp.asarray(np.concatenate([sequence, np.full(N_PAD - L_REAL, 20)]), jnp.int32)
    a = np.asarray(pseudo_beta_from_frames(out_padded.frames, aatype))
    b = np.asarray(pseudo_beta(out_padded.atom37, out_padded.atom37_mask, aatype)[0])
    np.testing.assert_allclose(a[:L_REAL], b[:L_REAL], atol=1e-4)


def test_blocked_evaluation_is_exact(monkeypatch):
    """The cache-sized blocks (used when chunk_size is 0) and explicit chunks give the result
    of one unblocked evaluation, for every chunked operation."""
    from foldlite.model import layers
    from foldlite.model.attention import SingleAttention, TriangleAttention
    from foldlite.model.triangle import TriangleMultiplication
    from foldlite.model.trunk import Transition

    n, c_z = 11, 8
    z = jax.random.normal(jax.random.PRNGKey(0), (n, n, c_z))
    s = jax.random.normal(jax.random.PRNGKey(2), (n, 6))
    mask = jnp.ones(n).at[-2:].set(0.0)
    pair_mask = mask[:, None] * mask[None, :]

    def fn(s, z, chunk):
        kw = dict(chunk_size=chunk)
        dz = [TriangleMultiplication(8, outgoing=True, name="tri_out")(z, pair_mask, **kw),
              TriangleMultiplication(8, outgoing=False, name="tri_in")(z, pair_mask, **kw),
              Transition(2, name="transition")(z, **kw),
              TriangleAttention(2, 4, ending_node=False, name="att_start")(z, pair_mask, **kw),
              TriangleAttention(2, 4, ending_node=True, name="att_end")(z, pair_mask, **kw)]
        ds = SingleAttention(2, 4, name="single")(s, z, mask, **kw)
        return [ds] + dz

    t = hk.without_apply_rng(hk.transform(fn))
    key = jax.random.PRNGKey(1)
    p = perturbed_params(compile_fast(lambda k, s, z: t.init(k, s, z, 0), key, s, z)(key, s, z))

    def run(chunk):  # block sizes are read while tracing
        return compile_fast(lambda p, s, z: t.apply(p, s, z, chunk), p, s, z)(p, s, z)

    monkeypatch.setattr(layers, "POSITIONS_PER_BLOCK", 10**9)
    monkeypatch.setattr(layers, "ATTENTION_BLOCK_BYTES", 10**12)
    want = run(0)  # one unblocked evaluation
    # blocks of 3 rows (the last one padded) for every operation
    monkeypatch.setattr(layers, "POSITIONS_PER_BLOCK", 3 * n)
    monkeypatch.setattr(layers, "ATTENTION_BLOCK_BYTES", 3 * 2 * n * n * 4)
    for got in (run(0), run(4)):
        for g, w in zip(got, want):
            np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=1e-5, rtol=1e-5)
