"""Training losses (Jumper et al. 2021, Suppl. 1.9) for one unbatched example.

``make_targets`` turns the true structure of an example (atom37 coordinates and mask) into the
targets the losses need (frames, torsions, atom14 positions with their pi-periodic alternative,
pseudo-beta atoms); ``compute_losses`` compares a ``ModelOutput`` with them and returns the
weighted total and every term. The trainer ``vmap``s both over the batch.

Terms (``LossWeights`` names):

* ``fape``: backbone FAPE clamped at 10 A, averaged over every structure-module iteration
  (``traj_frames``; Suppl. 1.9.2, Alg. 20 line 17, Alg. 28). A fraction of examples is trained
  unclamped (Suppl. 1.11.5).
* ``sidechain_fape``: FAPE of the final structure over all 8 rigid-group frames and all atom14
  atoms (Suppl. 1.9.3), after choosing per residue between the true naming and the swapped
  naming of symmetric atoms (Alg. 26). Frames and atoms are masked by atom presence, so
  backbone-only data (ProMod3) contributes the backbone and psi (O) frames and N, CA, C, O.
* ``chi``: side-chain torsions, the smaller of the errors to the true and to the pi-shifted
  alternative (Alg. 27); ``angle_norm`` pulls the unnormalised torsions to unit length.
* ``distogram``: cross-entropy of the pair distance bins of the pseudo-beta atoms (CB; CA for
  glycine; a virtual CB from N, CA, C when the data has no side chains) (Suppl. 1.9.8).
* ``plddt``: cross-entropy against the true per-residue lDDT-CA of the prediction, under a
  stop-gradient (Suppl. 1.9.6, Alg. 29).
* ``pae``: cross-entropy of the aligned error bins ``|T_i^-1 x_j - T_i,true^-1 x_j,true|``
  (Suppl. 1.9.7), from which the predicted TM-score (pTM) is computed.
* ``ss``: 3-state secondary structure cross-entropy (DSSP, -1 masked).
* ``bond``, ``angle``, ``ca_ca``, ``clash``: violations of the peptide geometry (C-N bond
  length, CA-C-N and C-N-CA angles, consecutive CA-CA distance) beyond a tolerance, and
  between-residue heavy-atom clashes (Suppl. 1.9.11).

All inputs are padded to ``N`` residues; ``residue_mask`` and atom masks make the padding and the
missing atoms contribute nothing.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from foldlite import constants as rc
from foldlite.geometry import torsions as tors
from foldlite.geometry.pseudo_beta import pseudo_beta
from foldlite.geometry.rigid import Rigid
from foldlite.metrics import lddt_jax
from foldlite.model import heads
from foldlite.train.config import LossConfig, LossWeights
from foldlite.train.fape import backbone_fape, frame_aligned_point_error, local_coordinates

# --------------------------------------------------------------------------------------------
# Chemistry tables used by the losses
# --------------------------------------------------------------------------------------------


def _peptide_tables() -> dict[str, np.ndarray]:
    """[21 (type of i), 21 (type of i+1), 2] (mean, sd) of the peptide bond C(i)-N(i+1) and the
    angles CA(i)-C(i)-N(i+1) and C(i)-N(i+1)-CA(i+1), from Engh & Huber 1991 with their glycine
    and proline exceptions resolved by ``constants.peptide_geometry``."""
    out = {k: np.zeros((21, 21, 2), np.float32) for k in ("c_n", "ca_c_n", "c_n_ca")}
    for r, res_i in enumerate(rc.resnames):
        for q, res_next in enumerate(rc.resnames):
            geo = rc.peptide_geometry(res_i, res_next)
            for k in out:
                out[k][r, q] = geo[k]
    return out


PEPTIDE = _peptide_tables()
#: Consecutive CA-CA distances for trans and cis peptides (``constants``: 3.80 and 2.77 A);
#: a cis peptide is allowed before proline only. Flat-bottom tolerance in Angstrom.
CA_CA_TOLERANCE = 0.15
#: [21, 14] permutation giving the swapped naming of symmetric atoms, and [21, 14] ambiguity
#: (ASP OD1/OD2, GLU OE1/OE2, PHE and TYR CD1/CD2, CE1/CE2; Suppl. 1.8.5).
ATOM14_SWAP_PERM = np.asarray(rc.restype_atom14_swap_index, np.int32)
ATOM14_AMBIGUOUS = np.asarray(rc.restype_atom14_is_ambiguous, np.float32)
#: Rigid groups that side-chain FAPE uses: backbone, psi (O), chi1..chi4 (not pre-omega, phi).
_FAPE_GROUPS = np.array([0, 3, 4, 5, 6, 7])
#: atom14 slots that can hold an ambiguous atom (any residue type).
_AMBIGUOUS_SLOTS = np.nonzero(ATOM14_AMBIGUOUS.any(0))[0]


def _atom14_vdw_radius() -> np.ndarray:
    """[21, 14] van der Waals radius of each atom14 slot (0 for empty slots)."""
    out = np.zeros((21, 14), np.float32)
    for r, resname in enumerate(rc.resnames):
        for j, name in enumerate(rc.restype_name_to_atom14_names[resname]):
            if name:
                out[r, j] = rc.van_der_waals_radius[rc.element_of(name)]
    return out


ATOM14_VDW_RADIUS = _atom14_vdw_radius()
_PRO = rc.restype_order["P"]
_CYS = rc.restype_order["C"]


def _heads_bins() -> tuple[np.ndarray, np.ndarray]:
    """Bin edges of the distogram and the aligned-error heads: ``foldlite.model.heads``."""
    return np.asarray(heads.DISTOGRAM_BREAKS, np.float32), np.asarray(heads.PAE_BREAKS, np.float32)


# --------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------

@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Targets:
    """What the losses compare a prediction with (one example, ``N`` residues).

    Attributes:
      aatype: int32 [N].
      residue_index: int32 [N].
      residue_mask: [N] 1 for real residues.
      bb_frames: Rigid [N] true backbone frames (N, CA, C); ``bb_mask`` [N].
      pseudo_beta: [N, 3] CB (CA for glycine; virtual CB when CB is absent); mask [N].
      atom14: [N, 14, 3] true atoms; ``atom14_alt`` with symmetric atoms swapped;
        ``atom14_mask`` [N, 14] presence; ``atom14_ambiguous`` [N, 14].
      torsions: [N, 7, 2] true (sin, cos); ``torsions_alt`` pi-periodic alternative;
        ``torsion_mask`` [N, 7].
      group_frames: Rigid [N, 8] true rigid-group frames (built from the true backbone frames and
        torsions with ideal geometry); ``group_frames_alt`` from the alternative torsions;
        ``group_mask`` [N, 8].
      dssp3: int32 [N] 0 helix, 1 strand, 2 coil, -1 unknown.
    """

    aatype: Any
    residue_index: Any
    residue_mask: Any
    bb_frames: Rigid
    bb_mask: Any
    pseudo_beta: Any
    pseudo_beta_mask: Any
    atom14: Any
    atom14_alt: Any
    atom14_mask: Any
    atom14_ambiguous: Any
    torsions: Any
    torsions_alt: Any
    torsion_mask: Any
    group_frames: Rigid
    group_frames_alt: Rigid
    group_mask: Any
    dssp3: Any


def make_targets(atom37: jnp.ndarray, atom37_mask: jnp.ndarray, aatype: jnp.ndarray,
                 residue_mask: jnp.ndarray, residue_index: jnp.ndarray,
                 dssp3: jnp.ndarray | None = None) -> Targets:
    """Loss targets from a true structure (JAX; one example).

    Args:
      atom37: [N, 37, 3] true atom positions (Angstrom).
      atom37_mask: [N, 37] 1 where an atom is present.
      aatype: int [N].
      residue_mask: [N] 1 for real residues, 0 for padding.
      residue_index: int [N] residue numbers (a gap is a chain break).
      dssp3: int [N] secondary structure (0 helix, 1 strand, 2 coil, -1 unknown) or None.
    """
    atom37 = jnp.asarray(atom37, jnp.float32)
    aatype = jnp.asarray(aatype, jnp.int32)
    residue_mask = jnp.asarray(residue_mask, jnp.float32)
    atom37_mask = jnp.asarray(atom37_mask, jnp.float32) * residue_mask[:, None]
    atom37 = atom37 * atom37_mask[..., None]

    bb_frames, bb_mask = tors.backbone_frames(atom37, atom37_mask)
    bb_mask = jnp.asarray(bb_mask, jnp.float32) * residue_mask
    pb, pb_mask = pseudo_beta(atom37, atom37_mask, aatype)

    atom14 = tors.atom37_to_atom14(atom37, aatype)
    atom14_mask = (tors.atom37_to_atom14(atom37_mask, aatype)
                   * jnp.asarray(rc.restype_atom14_mask)[aatype])
    perm = jnp.asarray(ATOM14_SWAP_PERM)[aatype]                                     # [N, 14]
    atom14_alt = jnp.take_along_axis(atom14, perm[..., None], axis=1)
    atom14_ambiguous = jnp.asarray(ATOM14_AMBIGUOUS)[aatype] * atom14_mask

    sin_cos, torsion_mask, alt_sin_cos = tors.torsion_angles(atom37, atom37_mask, aatype,
                                                             residue_index)
    torsion_mask = jnp.asarray(torsion_mask, jnp.float32) * residue_mask[:, None]
    # Absent torsions become (sin, cos) = (0, 1), so nothing built from them is degenerate.
    unit = jnp.asarray([0.0, 1.0], jnp.float32)
    sin_cos = jnp.where(torsion_mask[..., None] > 0, sin_cos, unit)
    alt_sin_cos = jnp.where(torsion_mask[..., None] > 0, alt_sin_cos, unit)
    # Rigid-group frames of the truth: the true backbone frames and torsions through the same
    # ideal-geometry builder the model uses (Suppl. Alg. 24), so that a perfect prediction has
    # exactly the true frames. Frames whose defining atoms are absent are masked.
    safe_frames = _safe_frames(bb_frames, bb_mask)
    _, _, group_frames = tors.frames_and_torsions_to_atom14(safe_frames, sin_cos, aatype)
    _, _, group_frames_alt = tors.frames_and_torsions_to_atom14(safe_frames, alt_sin_cos, aatype)
    group_mask = jnp.concatenate([
        bb_mask[:, None],
        jnp.zeros_like(bb_mask)[:, None].repeat(2, axis=1),   # pre-omega and phi groups: no atoms
        torsion_mask[:, 2:3] * bb_mask[:, None],              # psi group (O)
        jnp.cumprod(torsion_mask[:, 3:7], axis=1) * bb_mask[:, None],  # chi_k needs chi_1..k
    ], axis=1)
    if dssp3 is None:
        dssp3 = -jnp.ones_like(aatype)
    return Targets(
        aatype=aatype, residue_index=jnp.asarray(residue_index, jnp.int32),
        residue_mask=residue_mask, bb_frames=safe_frames, bb_mask=bb_mask,
        pseudo_beta=pb, pseudo_beta_mask=pb_mask * residue_mask,
        atom14=atom14, atom14_alt=atom14_alt, atom14_mask=atom14_mask,
        atom14_ambiguous=atom14_ambiguous,
        torsions=jnp.asarray(sin_cos, jnp.float32), torsions_alt=jnp.asarray(alt_sin_cos,
                                                                             jnp.float32),
        torsion_mask=torsion_mask,
        group_frames=group_frames, group_frames_alt=group_frames_alt, group_mask=group_mask,
        dssp3=jnp.asarray(dssp3, jnp.int32),
    )


def _safe_frames(frames: Rigid, mask: jnp.ndarray) -> Rigid:
    """Replace masked frames (degenerate rotations from absent atoms) with the identity."""
    eye = jnp.broadcast_to(jnp.eye(3, dtype=jnp.float32), frames.rot.shape)
    m = mask > 0
    return Rigid(jnp.where(m[..., None, None], frames.rot, eye),
                 jnp.where(m[..., None], frames.trans, 0.0))


# --------------------------------------------------------------------------------------------
# Individual losses
# --------------------------------------------------------------------------------------------

def _masked_mean(x: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
    mask = jnp.broadcast_to(mask, x.shape)
    return jnp.sum(x * mask) / (jnp.sum(mask) + 1e-8)


def _cross_entropy(logits: jnp.ndarray, labels: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
    """Mean over ``mask`` of ``-log softmax(logits)[label]``; labels int [...]."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    safe = jnp.clip(labels, 0, logits.shape[-1] - 1)
    nll = -jnp.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
    return _masked_mean(nll, mask)


def _dist(a: jnp.ndarray, b: jnp.ndarray, eps: float = 1e-10) -> jnp.ndarray:
    return jnp.sqrt(jnp.sum(jnp.square(a - b), axis=-1) + eps)


def _pairwise_dist(a: jnp.ndarray, b: jnp.ndarray, eps: float = 1e-10) -> jnp.ndarray:
    """[M, K] distances between points a [M, 3] and b [K, 3] through one matrix product
    (``|a|^2 + |b|^2 - 2 a.b`` after centring, accurate to ~1e-3 A^2 for protein coordinates)."""
    c = jax.lax.stop_gradient(jnp.mean(jnp.concatenate([a, b]), axis=0))
    a, b = a - c, b - c
    d2 = (jnp.sum(a * a, -1)[:, None] + jnp.sum(b * b, -1)[None, :]
          - 2.0 * jnp.einsum("mi,ki->mk", a, b))
    return jnp.sqrt(jnp.maximum(d2, 0.0) + eps)


def backbone_fape_loss(traj_frames: Rigid, targets: Targets, clamp: jnp.ndarray | float | None,
                       length_scale: float = 10.0) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Backbone FAPE averaged over iterations (``traj_frames`` Rigid [I, N]) and of the last one.

    Returns ``(mean over iterations [], final iteration [])``.
    """
    per_iter = backbone_fape(traj_frames, targets.bb_frames, targets.bb_mask, clamp, length_scale)
    return jnp.mean(per_iter), per_iter[-1]


def optimal_renaming(pred_atom14: jnp.ndarray, targets: Targets) -> jnp.ndarray:
    """Per residue, whether the swapped naming of symmetric atoms fits better (Suppl. Alg. 26).

    For each residue ``i``, the distances from its ambiguous atoms to every non-ambiguous atom of
    the chain are compared with the true distances under both namings.

    Args:
      pred_atom14: [N, 14, 3].
    Returns:
      [N] float, 1 where the alternative naming is better.
    """
    slots = jnp.asarray(_AMBIGUOUS_SLOTS)
    n, s = pred_atom14.shape[0], len(_AMBIGUOUS_SLOTS)
    pred_atom14 = jax.lax.stop_gradient(pred_atom14)
    amb = targets.atom14_ambiguous[:, slots]                                           # [N, S]
    exists = targets.atom14_mask
    p_i, t_i, a_i = (x[:, slots].reshape(n * s, 3)
                     for x in (pred_atom14, targets.atom14, targets.atom14_alt))
    # distances [N*S, N*14] from ambiguous atoms of residue i to all atoms of all residues
    d_pred = _pairwise_dist(p_i, pred_atom14.reshape(-1, 3))
    d_true = _pairwise_dist(t_i, targets.atom14.reshape(-1, 3))
    d_alt = _pairwise_dist(a_i, targets.atom14.reshape(-1, 3))
    mask = ((amb * exists[:, slots]).reshape(n * s)[:, None]
            * (exists * (1.0 - targets.atom14_ambiguous)).reshape(-1)[None, :])
    err_true = jnp.sum((mask * jnp.abs(d_pred - d_true)).reshape(n, -1), axis=1)
    err_alt = jnp.sum((mask * jnp.abs(d_pred - d_alt)).reshape(n, -1), axis=1)
    return jax.lax.stop_gradient((err_alt < err_true).astype(jnp.float32))


def sidechain_fape_loss(pred_group_frames: Rigid, pred_atom14: jnp.ndarray, targets: Targets,
                        clamp: float | None = 10.0, length_scale: float = 10.0) -> jnp.ndarray:
    """All-atom FAPE of the final structure over rigid-group frames [N, 8] and atom14 [N, 14]
    (Suppl. 1.9.3), with the per-residue optimal naming of symmetric atoms."""
    alt = optimal_renaming(pred_atom14, targets)                                       # [N]
    use_alt = alt > 0.5
    true_atoms = jnp.where(use_alt[:, None, None], targets.atom14_alt, targets.atom14)
    perm = jnp.asarray(ATOM14_SWAP_PERM)[targets.aatype]
    alt_mask = jnp.take_along_axis(targets.atom14_mask, perm, axis=1)
    true_mask = jnp.where(use_alt[:, None], alt_mask, targets.atom14_mask)
    true_frames = jax.tree_util.tree_map(
        lambda a, b: jnp.where(use_alt.reshape((-1,) + (1,) * (a.ndim - 1)), b, a),
        targets.group_frames, targets.group_frames_alt)
    # The pre-omega and phi groups carry no atoms and never count (group_mask 0): leave them out.
    groups = jnp.asarray(_FAPE_GROUPS)
    n, g = targets.aatype.shape[0], len(_FAPE_GROUPS)

    def flat(r: Rigid) -> Rigid:
        return Rigid(r.rot[:, groups].reshape(n * g, 3, 3), r.trans[:, groups].reshape(n * g, 3))

    return frame_aligned_point_error(
        flat(pred_group_frames), flat(true_frames), targets.group_mask[:, groups].reshape(-1),
        pred_atom14.reshape(-1, 3), true_atoms.reshape(-1, 3), true_mask.reshape(-1),
        clamp, length_scale)


def torsion_losses(torsions: jnp.ndarray, unnormalized: jnp.ndarray, targets: Targets
                   ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Side-chain torsion loss and angle-norm loss (Suppl. Alg. 27).

    Args:
      torsions: [N, 7, 2] predicted (sin, cos), normalised.
      unnormalized: [N, 7, 2] before normalisation.
    Returns:
      ``(chi [], angle_norm [])``: the mean over existing chi angles of the squared distance to
      the nearer of the true and the alternative (sin, cos); the mean over residues and angles of
      ``| |u| - 1 |``.
    """
    chi = torsions[:, 3:7]
    d_true = jnp.sum(jnp.square(chi - targets.torsions[:, 3:7]), axis=-1)
    d_alt = jnp.sum(jnp.square(chi - targets.torsions_alt[:, 3:7]), axis=-1)
    chi_loss = _masked_mean(jnp.minimum(d_true, d_alt), targets.torsion_mask[:, 3:7])
    norm = jnp.sqrt(jnp.sum(jnp.square(unnormalized), axis=-1) + 1e-8)
    norm_loss = _masked_mean(jnp.abs(norm - 1.0), targets.residue_mask[:, None])
    return chi_loss, norm_loss


def distogram_loss(logits: jnp.ndarray, targets: Targets, breaks: np.ndarray) -> jnp.ndarray:
    """Distogram cross-entropy (Suppl. 1.9.8). ``logits`` [N, N, len(breaks) + 1]."""
    pb = targets.pseudo_beta
    d2 = jnp.sum(jnp.square(pb[:, None] - pb[None, :]), axis=-1)
    labels = jnp.sum(d2[..., None] > jnp.square(jnp.asarray(breaks)), axis=-1)
    mask = targets.pseudo_beta_mask[:, None] * targets.pseudo_beta_mask[None, :]
    return _cross_entropy(logits, labels, mask)


def lddt_ca_per_residue(pred_ca: jnp.ndarray, targets: Targets) -> jnp.ndarray:
    """True per-residue lDDT-CA [N] of predicted CA positions (stop-gradient)."""
    true_ca = targets.bb_frames.trans
    ca_mask = targets.bb_mask
    return jax.lax.stop_gradient(
        lddt_jax(jax.lax.stop_gradient(pred_ca), true_ca, ca_mask, per_residue=True))


def plddt_loss(logits: jnp.ndarray, lddt: jnp.ndarray, targets: Targets) -> jnp.ndarray:
    """pLDDT cross-entropy against binned true lDDT-CA (Suppl. Alg. 29). ``logits`` [N, 50]."""
    nbins = logits.shape[-1]
    labels = jnp.clip(jnp.floor(lddt * nbins).astype(jnp.int32), 0, nbins - 1)
    return _cross_entropy(logits, labels, targets.bb_mask)


def aligned_error(pred_frames: Rigid, true_frames: Rigid) -> jnp.ndarray:
    """[N, N] error of CA ``j`` seen from frame ``i``, prediction vs truth (Suppl. 1.9.7)."""
    local_pred = local_coordinates(pred_frames, pred_frames.trans)   # [j, i, 3]
    local_true = local_coordinates(true_frames, true_frames.trans)
    return jnp.sqrt(jnp.sum(jnp.square(local_pred - local_true), axis=-1) + 1e-8).T


def pae_loss(logits: jnp.ndarray, pred_frames: Rigid, targets: Targets, breaks: np.ndarray
             ) -> jnp.ndarray:
    """Aligned-error cross-entropy (stop-gradient on the error). ``logits`` [N, N, bins]."""
    err = jax.lax.stop_gradient(aligned_error(pred_frames, targets.bb_frames))
    labels = jnp.sum(err[..., None] > jnp.asarray(breaks), axis=-1)
    mask = targets.bb_mask[:, None] * targets.bb_mask[None, :]
    return _cross_entropy(logits, labels, mask)


def ss_loss(logits: jnp.ndarray, targets: Targets) -> jnp.ndarray:
    """3-state secondary-structure cross-entropy; residues with ``dssp3 < 0`` are masked."""
    mask = targets.residue_mask * (targets.dssp3 >= 0)
    return _cross_entropy(logits, targets.dssp3, mask)


def _consecutive_mask(targets: Targets, pred_mask14: jnp.ndarray) -> jnp.ndarray:
    """[N-1] 1 where residues i and i+1 are real, bonded (index step 1) and have backbones."""
    m = targets.residue_mask
    has_bb = pred_mask14[:, 0] * pred_mask14[:, 1] * pred_mask14[:, 2]
    step = targets.residue_index[1:] - targets.residue_index[:-1]
    return m[:-1] * m[1:] * has_bb[:-1] * has_bb[1:] * (step == 1)


def _flat_bottom(x: jnp.ndarray, lo: jnp.ndarray | float, hi: jnp.ndarray | float) -> jnp.ndarray:
    return jax.nn.relu(lo - x) + jax.nn.relu(x - hi)


def backbone_violations(atom14: jnp.ndarray, atom14_mask: jnp.ndarray, targets: Targets,
                        tolerance: float = 12.0) -> dict[str, jnp.ndarray]:
    """Peptide-geometry violations of a predicted structure (Suppl. 1.9.11, Eq. 44-45).

    Each term is the mean over bonded residue pairs of a flat-bottom penalty: zero within
    ``tolerance`` standard deviations of the Engh & Huber 1991 value, linear outside; CA-CA
    within ``CA_CA_TOLERANCE`` of 3.80 A (down to the cis value 2.77 A before proline).

    Args:
      atom14: [N, 14, 3] predicted atoms; atom14_mask [N, 14].
    Returns:
      ``bond`` (C-N length, A), ``angle`` (CA-C-N plus C-N-CA, in cosine units),
      ``ca_ca`` (A), and ``bond_violation_frac`` (pairs outside tolerance, a metric).
    """
    pair = _consecutive_mask(targets, atom14_mask)
    n_next = atom14[1:, 0]
    ca, c = atom14[:-1, 1], atom14[:-1, 2]
    ca_next = atom14[1:, 1]
    this_type, next_type = targets.aatype[:-1], targets.aatype[1:]
    next_pro = (next_type == _PRO)

    c_n = _dist(c, n_next)
    l0, sd = (jnp.asarray(PEPTIDE["c_n"])[this_type, next_type, k] for k in (0, 1))
    bond_err = jax.nn.relu(jnp.abs(c_n - l0) - tolerance * sd)

    def cos_angle(a, b, c_):  # cosine of the angle at b
        u, v = a - b, c_ - b
        return jnp.sum(u * v, -1) / (jnp.sqrt(jnp.sum(u * u, -1) + 1e-8)
                                     * jnp.sqrt(jnp.sum(v * v, -1) + 1e-8))

    def cos_target(table):  # (cos of the mean, sd in cosine units: |d cos| = sin d angle)
        deg, sd_deg = (jnp.asarray(table)[this_type, next_type, k] for k in (0, 1))
        t = jnp.deg2rad(deg)
        return jnp.cos(t), jnp.sin(t) * jnp.deg2rad(sd_deg)

    t1, s1 = cos_target(PEPTIDE["ca_c_n"])
    t2, s2 = cos_target(PEPTIDE["c_n_ca"])
    angle_err = (jax.nn.relu(jnp.abs(cos_angle(ca, c, n_next) - t1) - tolerance * s1)
                 + jax.nn.relu(jnp.abs(cos_angle(c, n_next, ca_next) - t2) - tolerance * s2))

    d_caca = _dist(ca, ca_next)
    lo = jnp.where(next_pro, rc.ca_ca_distance_cis, rc.ca_ca_distance_trans) - CA_CA_TOLERANCE
    caca_err = _flat_bottom(d_caca, lo, rc.ca_ca_distance_trans + CA_CA_TOLERANCE)
    return {
        "bond": _masked_mean(bond_err, pair),
        "angle": _masked_mean(angle_err, pair),
        "ca_ca": _masked_mean(caca_err, pair),
        "bond_violation_frac": _masked_mean((bond_err > 0).astype(jnp.float32), pair),
    }


def clash_loss(atom14: jnp.ndarray, atom14_mask: jnp.ndarray, targets: Targets,
               tolerance: float = 1.5) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Between-residue clashes (Suppl. 1.9.11, Eq. 46): for atoms of different residues,
    ``relu(r_a + r_b - tolerance - d)`` with van der Waals radii ``r``; the bonded C(i)-N(i+1)
    pair and CYS SG-SG (disulfides) are excluded.

    Returns ``(loss, number of clashing atom pairs)``; the loss is the sum over pairs divided by
    the number of atoms.
    """
    n = atom14.shape[0]
    mask = atom14_mask * targets.residue_mask[:, None]                              # [N, 14]
    radius = jnp.asarray(ATOM14_VDW_RADIUS)[targets.aatype]                         # [N, 14]
    flat = atom14.reshape(n * 14, 3)
    d = _pairwise_dist(flat, flat).reshape(n, 14, n, 14).transpose(0, 2, 1, 3)    # [N, N, 14, 14]
    pm = mask[:, None, :, None] * mask[None, :, None, :]
    ii = jnp.arange(n)
    pm = pm * (ii[:, None] < ii[None, :])[:, :, None, None]
    bonded = ((ii[None, :] == ii[:, None] + 1)
              & ((targets.residue_index[None, :] - targets.residue_index[:, None]) == 1))
    c_n = jnp.zeros((14, 14)).at[2, 0].set(1.0)
    pm = pm * (1.0 - bonded[:, :, None, None] * c_n)
    is_cys = (targets.aatype == _CYS)
    sg = jnp.zeros((14, 14)).at[5, 5].set(1.0)
    pm = pm * (1.0 - (is_cys[:, None] & is_cys[None, :])[:, :, None, None] * sg)
    overlap = jax.nn.relu(radius[:, None, :, None] + radius[None, :, None, :] - tolerance - d)
    loss = jnp.sum(pm * overlap) / (jnp.sum(mask) + 1e-6)
    count = jnp.sum(pm * (overlap > 0))
    return loss, count


# --------------------------------------------------------------------------------------------
# Total
# --------------------------------------------------------------------------------------------

def compute_losses(output: Any, targets: Targets, weights: LossWeights,
                   config: LossConfig = LossConfig(), clamp_fape: jnp.ndarray | bool = True
                   ) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """Weighted total loss of one example and its terms.

    Args:
      output: ``foldlite.model.ModelOutput`` of one unbatched example (``N`` residues).
      targets: ``make_targets`` of the same example.
      weights: ``LossWeights`` (static: terms weighted 0 are not computed, except the cheap
        backbone violation metrics and lDDT-CA which are always reported).
      config: clamping and tolerances.
      clamp_fape: bool [] whether this example's backbone FAPE is clamped (Suppl. 1.11.5: 10% of
        examples are not).

    Returns:
      ``(total [], terms)`` where ``terms`` holds every computed term (unweighted) and metrics:
      ``fape_final``, ``lddt_ca``, ``bond_violation_frac``, ``clashes``.
    """
    terms: dict[str, jnp.ndarray] = {}
    clamp = jnp.where(clamp_fape, config.fape_clamp, jnp.inf)
    fape_mean, fape_final = backbone_fape_loss(output.traj_frames, targets, clamp,
                                               config.fape_length_scale)
    terms["fape"] = fape_mean
    terms["fape_final"] = fape_final
    if weights.sidechain_fape:
        terms["sidechain_fape"] = sidechain_fape_loss(
            output.sidechain_frames, output.atom14, targets, config.fape_clamp,
            config.fape_length_scale)
    if weights.chi or weights.angle_norm:
        terms["chi"], terms["angle_norm"] = torsion_losses(
            output.torsions, output.unnormalized_torsions, targets)
    dist_breaks, pae_breaks = _heads_bins()
    if weights.distogram:
        terms["distogram"] = distogram_loss(output.distogram_logits, targets, dist_breaks)
    pred_ca = output.frames.trans
    lddt = lddt_ca_per_residue(pred_ca, targets)
    terms["lddt_ca"] = _masked_mean(lddt, targets.bb_mask)
    if weights.plddt:
        terms["plddt"] = plddt_loss(output.plddt_logits, lddt, targets)
    if weights.pae:
        terms["pae"] = pae_loss(output.pae_logits, output.frames, targets, pae_breaks)
    if weights.ss:
        terms["ss"] = ss_loss(output.ss_logits, targets)
    viol = backbone_violations(output.atom14, output.atom14_mask, targets,
                               config.violation_tolerance)
    terms.update(viol)
    if weights.clash:
        terms["clash"], terms["clashes"] = clash_loss(output.atom14, output.atom14_mask, targets,
                                                      config.clash_tolerance)
    total = jnp.zeros((), jnp.float32)
    for f in dataclasses.fields(LossWeights):
        w = getattr(weights, f.name)
        if w:
            total = total + w * terms[f.name]
    terms["loss"] = total
    return total, terms
