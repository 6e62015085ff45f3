"""The foldlite network: features -> frames, atoms and confidences, with recycling.

    model = make_model(load_model_config("small"))
    params = model.init(rng, features, num_recycles=0)
    out = model.apply(params, rng, features, num_recycles=3)   # ModelOutput

``apply(params, rng, features, num_recycles, is_training=False, chunk_size=None)`` runs on ONE
unbatched example (``Features`` of length ``N``; trainers ``vmap``). ``rng`` may be None unless
``is_training`` (dropout).

Recycling (Jumper et al. 2021, Suppl. 1.10, Alg. 2 and 32): the network runs
``num_recycles + 1`` passes; each pass after the first embeds the previous pass's single and pair
representations and the distogram of its pseudo-beta positions. Only the last pass gets
gradients: the recycled state is ``stop_gradient``-ed. The first ``num_recycles`` passes run in
``hk.while_loop``, so ``num_recycles`` may be a Python int or a traced int32 scalar (a trainer
can sample it per step inside ``jit`` without recompiling).

Padding (``features.mask == 0``) never changes the outputs for real residues: attention gets a
large negative bias on padded keys, triangle updates and the outer product are masked, IPA is
masked, and everything else acts per residue or per pair.
"""

from __future__ import annotations

import dataclasses

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from foldlite.data.features import Features
from foldlite.geometry.rigid import Rigid
from foldlite.model.config import ModelConfig
from foldlite.model.embed import InputEmbedder, RecyclingEmbedder, pseudo_beta_from_frames
from foldlite.model.heads import DistogramHead, PAEHead, PLDDTHead, SecondaryStructureHead
from foldlite.model.structure import StructureModule
from foldlite.model.trunk import Trunk


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ModelOutput:
    """Everything the model predicts for one example of padded length ``N``.

    Positions are in Angstrom; frames follow ``Rigid.from_three_points(N, CA, C)``; torsions are
    (sin, cos) in the order omega, phi, psi, chi1..chi4; masks are 0 on padding.
    """

    frames: Rigid                     # [N] final backbone frames
    traj_frames: Rigid                # [n_iter, N] backbone frames after every iteration
    sidechain_frames: Rigid           # [N, 8] rigid-group frames
    torsions: jnp.ndarray             # [N, 7, 2] normalised
    unnormalized_torsions: jnp.ndarray  # [N, 7, 2]
    atom14: jnp.ndarray               # [N, 14, 3]
    atom14_mask: jnp.ndarray          # [N, 14]
    atom37: jnp.ndarray               # [N, 37, 3]
    atom37_mask: jnp.ndarray          # [N, 37]
    distogram_logits: jnp.ndarray     # [N, N, 64]
    plddt_logits: jnp.ndarray         # [N, 50]
    pae_logits: jnp.ndarray           # [N, N, 64]
    ss_logits: jnp.ndarray            # [N, 3]
    single: jnp.ndarray               # [N, C_s] structure module's final single representation


class _Pass(hk.Module):
    """One pass: embed (with recycled state), trunk, structure module, heads."""

    def __init__(self, cfg: ModelConfig, name: str | None = "pass"):
        super().__init__(name=name)
        self.cfg = cfg

    def __call__(self, features: Features, prev: dict, is_training: bool, chunk_size: int,
                 recycle_only: bool = False) -> tuple[ModelOutput | None, dict]:
        """Returns ``(outputs, state to recycle)``; ``recycle_only`` skips atoms and heads."""
        cfg = self.cfg
        aatype = jnp.asarray(features.aatype, jnp.int32)
        mask = jnp.asarray(features.mask, jnp.float32)
        s, z = InputEmbedder(cfg.c_s, cfg.c_z, cfg.embed.max_relative_position)(features)
        s, z = RecyclingEmbedder(cfg.recycle.min_bin, cfg.recycle.max_bin,
                                 cfg.recycle.num_bins)(s, z, prev["single"], prev["pair"],
                                                       prev["positions"])
        s, z = Trunk(cfg)(s, z, mask, is_training=is_training, chunk_size=chunk_size)
        structure = StructureModule(cfg.structure)
        if recycle_only:
            frames, _ = structure(s, z, aatype, mask, is_training=is_training,
                                  compute_atoms=False, chunk_size=chunk_size)
            return None, {"single": s, "pair": z,
                          "positions": pseudo_beta_from_frames(frames, aatype)}
        st = structure(s, z, aatype, mask, is_training=is_training, chunk_size=chunk_size)
        out = ModelOutput(
            frames=st.frames, traj_frames=st.traj_frames, sidechain_frames=st.sidechain_frames,
            torsions=st.torsions, unnormalized_torsions=st.unnormalized_torsions,
            atom14=st.atom14, atom14_mask=st.atom14_mask, atom37=st.atom37,
            atom37_mask=st.atom37_mask,
            distogram_logits=DistogramHead()(z),
            plddt_logits=PLDDTHead(cfg.heads.plddt_hidden)(st.single),
            pae_logits=PAEHead()(z),
            ss_logits=SecondaryStructureHead()(s),
            single=st.single)
        new_prev = {"single": s, "pair": z,
                    "positions": pseudo_beta_from_frames(st.frames, aatype)}
        return out, new_prev


class FoldliteModel(hk.Module):
    """The whole network with recycling (see the module docstring)."""

    def __init__(self, cfg: ModelConfig, name: str | None = "foldlite"):
        super().__init__(name=name)
        self.cfg = cfg

    def __call__(self, features: Features, num_recycles: int | jnp.ndarray,
                 is_training: bool = False, chunk_size: int | None = None) -> ModelOutput:
        """
        Args:
          features: one unbatched example (``Features`` of length N).
          num_recycles: extra passes (int or traced int32 scalar); total passes = this + 1.
          is_training: enables dropout (needs an rng).
          chunk_size: overrides ``cfg.chunk_size`` (0: no chunking).
        """
        cfg = self.cfg
        chunk = cfg.chunk_size if chunk_size is None else int(chunk_size)
        n = jnp.asarray(features.aatype).shape[0]
        prev = {"single": jnp.zeros((n, cfg.c_s), jnp.float32),
                "pair": jnp.zeros((n, n, cfg.c_z), jnp.float32),
                "positions": jnp.zeros((n, 3), jnp.float32)}
        one_pass = _Pass(cfg)

        def body(carry):
            i, prev_ = carry
            _, new_prev = one_pass(features, prev_, is_training, chunk, recycle_only=True)
            return i + 1, jax.tree_util.tree_map(jax.lax.stop_gradient, new_prev)

        static = isinstance(num_recycles, (int, np.integer))
        # At init the final pass below creates every parameter (hk.while_loop cannot), so the
        # recycling loop is skipped; the parameters do not depend on the number of passes.
        if not hk.running_init() and (not static or num_recycles > 0):
            _, prev = hk.while_loop(lambda c: c[0] < num_recycles, body,
                                    (jnp.int32(0), prev))
        out, _ = one_pass(features, prev, is_training, chunk)
        return out


def make_model(cfg: ModelConfig) -> hk.Transformed:
    """``hk.transform`` of ``FoldliteModel(cfg)``.

    ``init(rng, features, num_recycles, is_training=False, chunk_size=None)`` -> params;
    ``apply(params, rng, features, num_recycles, is_training=False, chunk_size=None)`` ->
    ``ModelOutput``.
    """

    def forward(features: Features, num_recycles, is_training: bool = False,
                chunk_size: int | None = None) -> ModelOutput:
        return FoldliteModel(cfg)(features, num_recycles, is_training, chunk_size)

    return hk.transform(forward)
