"""Structure module (Jumper et al. 2021, Suppl. Alg. 20): from single and pair representations
to backbone frames, torsion angles and all heavy atoms. Always float32.

Starting from identity frames ("black hole" initialisation), each of ``num_iterations``
iterations -- sharing one set of weights, run with ``hk.scan`` -- does

1. ``s += IPA(s, z, T)`` (Alg. 22), dropout, layer norm, transition, dropout, layer norm;
2. ``T <- T o BackboneUpdate(s)``: a non-unit quaternion and a translation (Alg. 23, through
   ``Rigid.quaternion_update``);
3. torsion angles from a small residual network on ``s`` and the initial ``s`` (Alg. 20,
   lines 11-14): 7 angles (omega, phi, psi, chi1-4) as 2D vectors (sin, cos), returned both
   unnormalised (for the angle-norm loss) and normalised;
4. the rotation gradient is stopped between iterations (Alg. 20, line 20), unless
   ``stop_rotation_gradient`` is false.

Frames live in units of ``position_scale`` Angstrom (10 A, as AlphaFold2) inside the loop;
outputs are in Angstrom. Atoms come from the final frames and torsions through
``foldlite.geometry.torsions.frames_and_torsions_to_atom14`` and ``atom14_to_atom37``.
"""

from __future__ import annotations

import dataclasses

import haiku as hk
import jax
import jax.numpy as jnp

from foldlite import constants as rc
from foldlite.geometry.rigid import Rigid
from foldlite.model.config import StructureConfig
from foldlite.model.ipa import InvariantPointAttention
from foldlite.model.layers import LayerNorm, Linear, dropout


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class StructureOutput:
    """What the structure module returns (positions in Angstrom)."""

    frames: Rigid             # [N] final backbone frames
    traj_frames: Rigid        # [n_iter, N] backbone frames after every iteration
    sidechain_frames: Rigid   # [N, 8] frames of the rigid groups
    torsions: jnp.ndarray     # [N, 7, 2] normalised (sin, cos)
    unnormalized_torsions: jnp.ndarray  # [N, 7, 2]
    atom14: jnp.ndarray       # [N, 14, 3]
    atom14_mask: jnp.ndarray  # [N, 14]
    atom37: jnp.ndarray       # [N, 37, 3]
    atom37_mask: jnp.ndarray  # [N, 37]
    single: jnp.ndarray       # [N, C_s] final single representation


def normalize_torsions(raw: jnp.ndarray, eps: float = 1e-12) -> jnp.ndarray:
    """[..., 2] -> unit 2D vectors."""
    return raw / jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(raw), axis=-1, keepdims=True), eps))


class AngleResnet(hk.Module):
    """Torsion-angle head (Alg. 20, lines 11-14): [N, C_s] x2 -> unnormalised [N, 7, 2]."""

    def __init__(self, hidden: int, num_blocks: int, name: str | None = "angle_resnet"):
        super().__init__(name=name)
        self.hidden = hidden
        self.num_blocks = num_blocks

    def __call__(self, s: jnp.ndarray, s_initial: jnp.ndarray) -> jnp.ndarray:
        a = (Linear(self.hidden, name="input")(jax.nn.relu(s))
             + Linear(self.hidden, name="input_initial")(jax.nn.relu(s_initial)))
        for i in range(self.num_blocks):
            h = Linear(self.hidden, init="relu", name=f"block{i}_1")(jax.nn.relu(a))
            a = a + Linear(self.hidden, init="final", name=f"block{i}_2")(jax.nn.relu(h))
        raw = Linear(14, name="output")(jax.nn.relu(a))
        return raw.reshape(raw.shape[:-1] + (7, 2))


def build_atoms(frames: Rigid, torsions: jnp.ndarray, aatype: jnp.ndarray, mask: jnp.ndarray
                ) -> tuple[Rigid, jnp.ndarray, jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """Atoms from backbone frames [N] (Angstrom) and torsions [N, 7, 2] with ideal geometry.

    Returns ``(sidechain_frames [N, 8], atom14 [N, 14, 3], atom14_mask [N, 14],
    atom37 [N, 37, 3], atom37_mask [N, 37])``; masks are zero on padded residues.
    """
    from foldlite.geometry import torsions as tors  # the chemistry helper's module

    atom14, atom14_mask, all_frames = tors.frames_and_torsions_to_atom14(frames, torsions,
                                                                          aatype)
    atom14_mask = jnp.asarray(atom14_mask, jnp.float32) * mask[:, None]
    atom37 = tors.atom14_to_atom37(atom14, aatype)
    atom37_mask = jnp.asarray(rc.restype_atom37_mask)[aatype] * mask[:, None]
    return all_frames, atom14, atom14_mask, atom37, atom37_mask


class StructureModule(hk.Module):
    """Structure module (Suppl. Alg. 20) with shared weights across iterations."""

    def __init__(self, cfg: StructureConfig, name: str | None = "structure_module"):
        super().__init__(name=name)
        self.cfg = cfg

    def __call__(self, s: jnp.ndarray, z: jnp.ndarray, aatype: jnp.ndarray, mask: jnp.ndarray,
                 *, is_training: bool = False, initial_frames: Rigid | None = None,
                 compute_atoms: bool = True, chunk_size: int = 0
                 ) -> StructureOutput | tuple[Rigid, jnp.ndarray]:
        """
        Args:
          s: [N, C_s] single representation from the trunk.
          z: [N, N, C_z] pair representation from the trunk.
          aatype: [N] residue types.
          mask: [N] 1 for real residues.
          initial_frames: Rigid [N] in Angstrom to start from (default: identity frames).
          compute_atoms: False returns only ``(final frames, final single)`` (recycling passes).
          chunk_size: > 0: IPA in blocks of query rows, with the pair layer norm applied block
            by block (no normalised copy of ``z``): bounded memory for long sequences.
        """
        cfg = self.cfg
        s = s.astype(jnp.float32)
        z = z.astype(jnp.float32)
        mask = mask.astype(jnp.float32)
        n, c_s = s.shape
        s_initial = LayerNorm(name="norm_single")(s)
        if chunk_size > 0:
            pair_norm = LayerNorm(name="norm_pair").weights(z.shape[-1])
        else:
            pair_norm = None
            z = LayerNorm(name="norm_pair")(z)
        s = Linear(c_s, name="initial_projection")(s_initial)
        if initial_frames is None:
            frames = Rigid.identity((n,))
        else:
            frames = initial_frames.scale_translation(1.0 / cfg.position_scale)

        ipa = InvariantPointAttention(cfg.ipa_heads, cfg.ipa_head_dim, cfg.ipa_qk_points,
                                      cfg.ipa_v_points)
        norm_ipa = LayerNorm(name="norm_ipa")
        transition = [Linear(c_s, init="relu", name=f"transition_{i}")
                      for i in range(cfg.transition_layers)]
        transition_out = Linear(c_s, init="final", name="transition_output")
        norm_transition = LayerNorm(name="norm_transition")
        backbone_update = Linear(6, init="final", name="backbone_update")
        angles = AngleResnet(cfg.angle_hidden, cfg.angle_blocks)

        def iteration(carry, _):
            s_, t_ = carry
            s_ = s_ + ipa(s_, z, t_, mask, chunk_size=chunk_size, pair_norm=pair_norm)
            s_ = norm_ipa(dropout(s_, cfg.dropout, is_training))
            h = s_
            for layer in transition:
                h = jax.nn.relu(layer(h))
            s_ = norm_transition(dropout(s_ + transition_out(h), cfg.dropout, is_training))
            t_ = t_.quaternion_update(backbone_update(s_))
            raw = angles(s_, s_initial)
            out = (t_.scale_translation(cfg.position_scale), raw)
            if cfg.stop_rotation_gradient:
                t_ = t_.stop_rot_gradient()
            return (s_, t_), out

        if hk.running_init():
            # one iteration creates every (shared) parameter; skip compiling a scan at init
            (s, _), (t_out, raw_out) = iteration((s, frames), None)
            traj, raw_traj = jax.tree_util.tree_map(
                lambda x: jnp.broadcast_to(x, (cfg.num_iterations,) + x.shape), (t_out, raw_out))
        else:
            (s, _), (traj, raw_traj) = hk.scan(iteration, (s, frames), None,
                                               length=cfg.num_iterations)
        final = traj[-1]
        raw = raw_traj[-1]
        torsions = normalize_torsions(raw)
        if not compute_atoms:
            return final, s
        sc_frames, atom14, atom14_mask, atom37, atom37_mask = build_atoms(
            final, torsions, aatype, mask)
        return StructureOutput(frames=final, traj_frames=traj, sidechain_frames=sc_frames,
                               torsions=torsions, unnormalized_torsions=raw, atom14=atom14,
                               atom14_mask=atom14_mask, atom37=atom37, atom37_mask=atom37_mask,
                               single=s)
