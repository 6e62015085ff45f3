"""Protein type and PDB/mmCIF input/output (foldlite.protein), on real PDB entries in tests/data."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from foldlite import constants as rc
from foldlite import protein as P
from foldlite.errors import InputError

DATA = Path(__file__).resolve().parent / "data"
FIXTURES = ["1A8O.pdb", "1A8O.cif.gz", "1LCD.pdb.gz", "3JQH.cif.gz", "4ZHL.cif.gz",
            "2N0N_model1.pdb.gz"]


def _gemmi():
    return pytest.importorskip("gemmi", reason="gemmi (second structure reader) not installed")


def _gemmi_chain(path: Path, chain: str):
    """Chain of the first model read by gemmi, ligands/waters/hydrogens removed."""
    gemmi = _gemmi()
    st = gemmi.read_structure(str(path))
    st.remove_ligands_and_waters()
    st.remove_hydrogens()
    return st[0][chain]


def _atoms_by_key(prot: P.Protein) -> dict:
    """{(chain, resnum, icode, atom37 name): xyz} of a Protein."""
    out = {}
    for i in range(prot.length):
        for k in np.nonzero(prot.atom_mask[i] > 0.5)[0]:
            out[(prot.chain_id, int(prot.residue_index[i]), prot.insertion_code[i],
                 rc.atom_types[k])] = prot.atom_positions[i, k]
    return out


@pytest.fixture(scope="module")
def a8o() -> P.Protein:
    return P.read_structure(DATA / "1A8O.pdb")


# ------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------

def test_read_pdb_mse_as_met_and_waters_dropped(a8o):
    assert a8o.chain_id == "A"
    assert a8o.length == 70  # 70 polymer residues; 88 waters dropped
    assert a8o.sequence.startswith("MDIRQGPKEPFRDYVDRFYKTLRAEQASQEVKNWM")
    assert "X" not in a8o.sequence
    assert a8o.aatype.dtype == np.int32 and a8o.atom_positions.shape == (70, 37, 3)
    assert a8o.atom_positions.dtype == np.float32 and a8o.atom_mask.dtype == np.float32
    assert a8o.b_factors.shape == (70, 37) and a8o.b_factors[a8o.atom_mask > 0].min() > 0
    # MSE 151: selenium read as SD at the file's coordinates
    sd = rc.atom_order["SD"]
    assert a8o.residue_index[0] == 151 and a8o.atom_mask[0, sd] == 1
    text = (DATA / "1A8O.pdb").read_text()
    se = next(ln for ln in text.splitlines() if ln.startswith("HETATM")
              and ln[12:16].strip() == "SE" and ln[22:26].strip() == "151")
    np.testing.assert_allclose(a8o.atom_positions[0, sd],
                               [float(se[30:38]), float(se[38:46]), float(se[46:54])], atol=1e-3)
    # every residue has its full heavy-atom set here; OXT on the last one
    np.testing.assert_array_equal(a8o.atom_mask[:, :36], rc.restype_atom37_mask[a8o.aatype][:, :36])
    assert a8o.atom_mask[-1, rc.atom_order["OXT"]] == 1 and a8o.atom_mask[:-1, 36].sum() == 0


def test_pdb_and_gzip_mmcif_read_the_same(a8o, tmp_path):
    cif_gz = P.read_structure(DATA / "1A8O.cif.gz")
    plain = tmp_path / "1A8O.cif"
    with gzip.open(DATA / "1A8O.cif.gz", "rb") as src, open(plain, "wb") as dst:
        shutil.copyfileobj(src, dst)
    cif = P.read_structure(plain)
    for other in (cif_gz, cif):
        np.testing.assert_array_equal(other.aatype, a8o.aatype)
        np.testing.assert_array_equal(other.atom_mask, a8o.atom_mask)
        np.testing.assert_array_equal(other.residue_index, a8o.residue_index)
        np.testing.assert_allclose(other.atom_positions, a8o.atom_positions, atol=1e-4)
        np.testing.assert_allclose(other.b_factors, a8o.b_factors, atol=1e-3)
        assert other.chain_id == "A"
    # a gzip PDB (not only gzip mmCIF) reads too
    pdb_gz = tmp_path / "x.pdb.gz"
    pdb_gz.write_bytes(gzip.compress((DATA / "1A8O.pdb").read_bytes()))
    np.testing.assert_array_equal(P.read_structure(pdb_gz).atom_positions, a8o.atom_positions)


def test_first_model_and_first_protein_chain():
    path = DATA / "1LCD.pdb.gz"
    prot = P.read_structure(path)  # chains B, C are DNA and come first
    assert prot.chain_id == "A" and prot.length == 51
    assert prot.sequence.startswith("MKPVTLYDVAEYAGVSYQTVSRVVNQ")
    chains = P.read_structure_chains(path)
    assert [c.chain_id for c in chains] == ["A"]
    # coordinates are those of model 1 (checked against gemmi's first model)
    ref = _gemmi_chain(path, "A")
    assert [r.seqid.num for r in ref] == prot.residue_index.tolist()
    ca = np.array([r["CA"][0].pos.tolist() for r in ref])
    np.testing.assert_allclose(prot.ca_positions, ca, atol=1e-3)


def test_altlocs_highest_occupancy():
    prot = P.read_structure(DATA / "3JQH.cif.gz")
    assert prot.chain_id == "A" and prot.sequence == "PEKSKLQEIYQELTRLKAAVGEL"
    # residue 1: PRO (occupancy 0.83) beats SER (0.17); PRO CA is (3.746, 20.507, 21.289)
    assert rc.restypes[prot.aatype[0]] == "P"
    np.testing.assert_allclose(prot.ca_positions[0], [3.746, 20.507, 21.289], atol=1e-3)
    assert prot.atom_mask[0, rc.atom_order["OG"]] == 0
    # residue 3 LYS: 0.50/0.50 tie -> altloc A (first in file) for every disordered atom
    assert prot.sequence[2] == "K"
    np.testing.assert_allclose(prot.ca_positions[2], [7.680, 14.952, 23.094], atol=1e-3)
    np.testing.assert_allclose(prot.atom_positions[2, rc.atom_order["CB"]],
                               [8.460, 13.807, 22.435], atol=1e-3)


PDB_ALTLOC = """\
ATOM      1  N   SER A   1      10.000  10.000  10.000  1.00 10.00           N
ATOM      2  CA  SER A   1      11.450  10.000  10.000  1.00 10.00           C
ATOM      3  C   SER A   1      12.000  11.400  10.000  1.00 10.00           C
ATOM      4  O   SER A   1      11.300  12.400  10.000  1.00 10.00           O
ATOM      5  CB ASER A   1      12.000   9.000  11.000  0.40 10.00           C
ATOM      6  CB BSER A   1      12.000   9.000   9.000  0.60 10.00           C
ATOM      7  OG ASER A   1      13.000   8.000  11.500  0.40 10.00           O
ATOM      8  OG BSER A   1      13.000   8.000   8.500  0.60 10.00           O
ATOM      9  N   GLY A   2      13.300  11.500  10.000  1.00 10.00           N
ATOM     10  CA  GLY A   2      13.900  12.800  10.000  1.00 10.00           C
ATOM     11  C   GLY A   2      15.400  12.700  10.000  1.00 10.00           C
ATOM     12  O   GLY A   2      16.000  11.600  10.000  1.00 10.00           O
HETATM   13  C1  LIG A 101      20.000  20.000  20.000  1.00 10.00           C
HETATM   14  O   HOH A 201      25.000  25.000  25.000  1.00 10.00           O
END
"""


def test_altloc_b_wins_consistently_and_hetero_dropped(tmp_path):
    path = tmp_path / "alt.pdb"
    path.write_text(PDB_ALTLOC)
    prot = P.read_structure(path)
    assert prot.sequence == "SG"
    assert prot.atom_positions[0, rc.atom_order["CB"], 2] == pytest.approx(9.0)
    assert prot.atom_positions[0, rc.atom_order["OG"], 2] == pytest.approx(8.5)


def test_insertion_codes_kept_in_order():
    path = DATA / "4ZHL.cif.gz"
    chains = P.read_structure_chains(path)
    assert [c.chain_id for c in chains] == ["U", "P"]
    u = P.read_structure(path)
    assert u.chain_id == "U"
    ids = u.residue_ids
    i = ids.index("37")
    assert ids[i:i + 6] == ["37", "37A", "37B", "37C", "37D", "38"]
    assert u.insertion_code[i] == "" and u.insertion_code[i + 1] == "A"
    # same residues, in the same order, as gemmi reads them
    ref = _gemmi_chain(path, "U")
    assert [f"{r.seqid.num}{r.seqid.icode.strip()}" for r in ref] == ids
    assert P.read_structure(path, chain="P").sequence == "CPAYSRYIGC"


def test_nonstandard_residues_become_unk_with_backbone():
    prot = P.read_structure(DATA / "2N0N_model1.pdb.gz")
    # HIS AIB GLU GLY LYS PHE THR SER GLU PHE(9A) PH8; the NH2 cap has no CA and is dropped
    assert prot.sequence == "HXEGKFTSEFX"
    assert prot.residue_ids[9] == "9A"
    for i in (1, 10):
        assert prot.aatype[i] == rc.unk_restype_index
        present = {rc.atom_types[k] for k in np.nonzero(prot.atom_mask[i])[0]}
        assert {"N", "CA", "C"} <= present <= {"N", "CA", "C", "O", "OXT"}


def test_protein_equals_gemmi_reading_atom_by_atom():
    """Every atom we read sits where gemmi (an independent parser) puts it."""
    _gemmi()
    for name, chain in [("1A8O.pdb", "A"), ("4ZHL.cif.gz", "U"), ("1LCD.pdb.gz", "A")]:
        prot = P.read_structure(DATA / name, chain=chain)
        ref = _gemmi_chain(DATA / name, chain)
        ref_atoms = {}
        for r in ref:
            for a in r:
                atom_name = "SD" if (r.name == "MSE" and a.name == "SE") else a.name
                ref_atoms.setdefault((chain, r.seqid.num, r.seqid.icode.strip(), atom_name),
                                     a.pos.tolist())
        ours = _atoms_by_key(prot)
        assert ours and set(ours) <= set(ref_atoms)
        assert len(ours) >= 0.98 * len([k for k in ref_atoms if k[3] in rc.atom_order])
        for key, xyz in ours.items():
            np.testing.assert_allclose(xyz, ref_atoms[key], atol=1e-3, err_msg=str(key))


# ------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------

def test_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.pdb"
    with pytest.raises(InputError, match="missing.pdb.*not found"):
        P.read_structure(missing)
    empty = tmp_path / "empty.pdb"
    empty.write_text("  \n")
    with pytest.raises(InputError, match="empty.pdb.*empty"):
        P.read_structure(empty)
    fasta = tmp_path / "seq.pdb"
    fasta.write_text(">query\nMKVLAAGIVG\n")
    with pytest.raises(InputError, match="seq.pdb.*not a structure"):
        P.read_structure(fasta)
    binary = tmp_path / "bin.cif"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(InputError, match="bin.cif.*not a structure"):
        P.read_structure(binary)
    bad_cif = tmp_path / "bad.cif"
    bad_cif.write_text("data_x\n_cell.length_a 10\n")
    with pytest.raises(InputError, match="bad.cif"):
        P.read_structure(bad_cif)
    with pytest.raises(InputError, match="is a directory"):
        P.read_structure(tmp_path)
    broken = tmp_path / "broken.pdb"
    broken.write_text("ATOM      1  N   ALA A   1      1x.000  10.000  10.000  1.00 10.00"
                      "           N\n")
    with pytest.raises(InputError, match="broken.pdb: not a readable PDB.*coordinate"):
        P.read_structure(broken)
    bad_gz = tmp_path / "trunc.pdb.gz"
    bad_gz.write_bytes(gzip.compress(b"ATOM" * 100)[:20])
    with pytest.raises(InputError, match="trunc.pdb.gz: not a readable gzip"):
        P.read_structure(bad_gz)


def test_no_protein_chain(tmp_path):
    ligand = tmp_path / "ligand.pdb"
    ligand.write_text("HETATM    1  C1  LIG A 101      20.000  20.000  20.000  1.00 10.00"
                      "           C\nHETATM    2  O   HOH A 201      25.000  25.000  25.000  "
                      "1.00 10.00           O\nEND\n")
    with pytest.raises(InputError, match="ligand.pdb.*no protein chain"):
        P.read_structure(ligand)
    with pytest.raises(InputError, match="ligand.pdb.*no protein chain"):
        P.read_structure_chains(ligand)


def test_chain_not_found_or_not_protein():
    with pytest.raises(InputError, match=r"1LCD.pdb.gz.*chain 'Z' not found.*'A'"):
        P.read_structure(DATA / "1LCD.pdb.gz", chain="Z")
    with pytest.raises(InputError, match=r"1LCD.pdb.gz.*chain 'B' is not a protein chain"):
        P.read_structure(DATA / "1LCD.pdb.gz", chain="B")


# ------------------------------------------------------------------------------------------
# Writing and round trips
# ------------------------------------------------------------------------------------------

def _assert_same(a: P.Protein, b: P.Protein, atol=1e-3):
    np.testing.assert_array_equal(a.aatype, b.aatype)
    np.testing.assert_array_equal(a.atom_mask, b.atom_mask)
    np.testing.assert_array_equal(a.residue_index, b.residue_index)
    np.testing.assert_array_equal(a.insertion_code, b.insertion_code)
    np.testing.assert_allclose(a.atom_positions, b.atom_positions, atol=atol)
    assert a.chain_id == b.chain_id


@pytest.mark.parametrize("name", FIXTURES)
def test_round_trip_pdb_and_mmcif(name, tmp_path):
    """file -> Protein -> PDB/mmCIF -> Protein keeps every atom to 0.001 A."""
    prot = P.read_structure(DATA / name)
    for suffix in (".pdb", ".cif"):
        out = tmp_path / f"out{suffix}"
        P.write_structure(prot, out)
        back = P.read_structure(out)
        _assert_same(prot, back)
        np.testing.assert_allclose(back.b_factors, prot.b_factors, atol=0.006)


@pytest.mark.parametrize("name", ["1A8O.pdb", "4ZHL.cif.gz", "2N0N_model1.pdb.gz"])
def test_written_files_open_in_gemmi_and_keep_original_coordinates(name, tmp_path):
    gemmi = _gemmi()
    prot = P.read_structure(DATA / name)
    plddt = np.linspace(10.0, 95.0, prot.length).astype(np.float32)
    original = _gemmi_chain(DATA / name, prot.chain_id)
    orig = {}
    for r in original:
        for a in r:
            atom_name = "SD" if (r.name == "MSE" and a.name == "SE") else a.name
            orig.setdefault((r.seqid.num, r.seqid.icode.strip(), atom_name), a.pos.tolist())
    for writer, suffix in ((P.write_pdb, ".pdb"), (P.write_mmcif, ".cif")):
        path = tmp_path / f"out{suffix}"
        writer(prot, path, plddt=plddt)
        st = gemmi.read_structure(str(path))
        assert len(st) == 1
        chain = st[0][prot.chain_id]
        assert len(chain) == prot.length
        n_atoms = 0
        for i, res in enumerate(chain):
            assert res.name == rc.resnames[prot.aatype[i]]
            assert res.seqid.num == prot.residue_index[i]
            assert res.seqid.icode.strip() == prot.insertion_code[i]
            for atom in res:
                n_atoms += 1
                assert atom.element.name == rc.element_of(atom.name)
                assert atom.b_iso == pytest.approx(plddt[i], abs=0.006)
                assert atom.occ == pytest.approx(1.0)
                # PDB -> Protein -> file keeps the original coordinates to 0.001 A
                key = (res.seqid.num, res.seqid.icode.strip(), atom.name)
                np.testing.assert_allclose(atom.pos.tolist(), orig[key], atol=1e-3)
        assert n_atoms == int(prot.atom_mask.sum())


def test_pdb_text_records(a8o):
    text = P.to_pdb_string(a8o, plddt=np.full(a8o.length, 87.5))
    lines = text.splitlines()
    atoms = [ln for ln in lines if ln.startswith("ATOM")]
    assert len(atoms) == int(a8o.atom_mask.sum())
    assert not any(ln.startswith("HETATM") for ln in lines)
    assert lines[-1].startswith("END") and any(ln.startswith("TER") for ln in lines)
    first = atoms[0]
    assert first[12:16] == " N  " and first[17:20] == "MET" and first[21] == "A"
    assert first[76:78].strip() == "N" and float(first[60:66]) == pytest.approx(87.5)
    sd = next(ln for ln in atoms if ln[12:16] == " SD ")
    assert sd[76:78].strip() == "S"
    cif = P.to_mmcif_string(a8o)
    assert cif.startswith("data_") and "_atom_site.type_symbol" in cif
    assert "_atom_site.pdbx_PDB_ins_code" in cif



def test_pdb_text_for_the_viewer(a8o, tmp_path):
    """structure_pdb_text: a PDB file as it is, mmCIF as PDB, sniffed; pdb_residues reads the
    residues back with their B-factors; multi-model texts split into their frames."""
    pdb = DATA / "1A8O.pdb"
    assert P.structure_pdb_text(pdb) == pdb.read_text()
    from_cif = P.structure_pdb_text(DATA / "1A8O.cif.gz")
    assert from_cif == P.to_pdb_string(P.read_structure_chains(DATA / "1A8O.cif.gz"))
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(InputError, match="not a structure"):
        P.structure_pdb_text(tmp_path / "x.txt")
    text = P.to_pdb_string(a8o, plddt=np.linspace(10.0, 90.0, a8o.length))
    residues = P.pdb_residues(text)
    assert [r.resi for r in residues] == a8o.residue_index.tolist()
    np.testing.assert_allclose([r.bfactor for r in residues], np.linspace(10, 90, a8o.length),
                               atol=0.01)
    frames = P.split_pdb_models(P.multi_model_pdb([text, text]))
    assert len(frames) == 2 and len(P.pdb_residues(frames[1])) == a8o.length
    assert P.as_protein(pdb).sequence == a8o.sequence and P.as_protein(a8o) is a8o

def test_biopython_reads_written_files(a8o, tmp_path):
    from Bio.PDB import MMCIFParser, PDBParser

    P.write_pdb(a8o, tmp_path / "a.pdb", plddt=np.full(a8o.length, 70.0))
    P.write_mmcif(a8o, tmp_path / "a.cif", plddt=np.full(a8o.length, 70.0))
    for parser, name in ((PDBParser(QUIET=True), "a.pdb"), (MMCIFParser(QUIET=True), "a.cif")):
        st = parser.get_structure("x", str(tmp_path / name))
        atoms = list(st.get_atoms())
        assert len(atoms) == int(a8o.atom_mask.sum())
        assert {a.element for a in atoms} == {"C", "N", "O", "S"}
        assert all(a.get_bfactor() == pytest.approx(70.0) for a in atoms)


def test_multi_chain_write(tmp_path):
    u, p = P.read_structure_chains(DATA / "4ZHL.cif.gz")
    for suffix in (".pdb", ".cif"):
        P.write_structure([u, p], tmp_path / f"c{suffix}")
        back = P.read_structure_chains(tmp_path / f"c{suffix}")
        assert [c.chain_id for c in back] == ["U", "P"]
        _assert_same(back[0], u)
        _assert_same(back[1], p)
    text = P.to_pdb_string([u, p])
    assert sum(ln.startswith("TER") for ln in text.splitlines()) == 2
    with pytest.raises(ValueError, match="distinct"):
        P.to_pdb_string([u, u])


def test_write_limits(a8o, tmp_path):
    long_chain = a8o.replace(chain_id="AB")
    with pytest.raises(InputError, match="one\\s+character"):
        P.to_pdb_string(long_chain)
    P.write_mmcif(long_chain, tmp_path / "ab.cif")
    assert P.read_structure(tmp_path / "ab.cif").chain_id == "AB"
    far = a8o.replace(atom_positions=a8o.atom_positions + 20000.0)
    with pytest.raises(ValueError, match="PDB range"):
        P.to_pdb_string(far)
    nan = a8o.atom_positions.copy()
    nan[3, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        P.to_pdb_string(a8o.replace(atom_positions=nan))
    with pytest.raises(ValueError, match="plddt"):
        P.to_pdb_string(a8o, plddt=np.zeros(3))


def test_atomic_write_leaves_old_file_on_failure(a8o, tmp_path):
    path = tmp_path / "model.pdb"
    path.write_text("old contents\n")
    with pytest.raises(ValueError):
        P.write_pdb(a8o, path, plddt=np.zeros(a8o.length + 1))
    assert path.read_text() == "old contents\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pdb"]
    P.write_pdb(a8o, path)
    assert path.read_text().startswith("ATOM")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pdb"]


# ------------------------------------------------------------------------------------------
# The type and its constructors
# ------------------------------------------------------------------------------------------

def test_protein_type_validation_and_properties(a8o):
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        a8o.chain_id = "B"  # type: ignore[misc]
    assert len(a8o) == a8o.length == 70
    n = 3
    prot = P.Protein(aatype=[0, 7, 20], atom_positions=np.zeros((n, 37, 3)),
                     atom_mask=np.zeros((n, 37)), residue_index=[1, 2, 2],
                     insertion_code=[" ", "", "A"])
    assert prot.sequence == "AGX" and prot.residue_ids == ["1", "2", "2A"]
    assert prot.b_factors.shape == (n, 37) and prot.chain_id == "A"
    assert prot.insertion_code.tolist() == ["", "", "A"]
    with pytest.raises(ValueError, match="atom_positions"):
        P.Protein(aatype=[0], atom_positions=np.zeros((2, 37, 3)), atom_mask=np.zeros((1, 37)),
                  residue_index=[1])
    with pytest.raises(ValueError, match="aatype"):
        P.Protein(aatype=[21], atom_positions=np.zeros((1, 37, 3)), atom_mask=np.zeros((1, 37)),
                  residue_index=[1])
    with pytest.raises(ValueError, match="chain_id"):
        P.Protein(aatype=[0], atom_positions=np.zeros((1, 37, 3)), atom_mask=np.zeros((1, 37)),
                  residue_index=[1], chain_id="")
    with_pl = a8o.with_plddt(np.full(70, 50.0))
    assert with_pl.b_factors[a8o.atom_mask > 0].tolist() == [50.0] * int(a8o.atom_mask.sum())


def test_from_atom14_round_trip(a8o, tmp_path):
    x14, m14 = P.to_atom14(a8o)
    assert x14.shape == (70, 14, 3) and m14.shape == (70, 14)
    prot = P.from_atom14(a8o.aatype, x14, m14, residue_index=a8o.residue_index,
                         b_factors=np.full(70, 42.0))
    no_oxt = a8o.atom_mask.copy()
    no_oxt[:, rc.atom_order["OXT"]] = 0  # atom14 has no OXT slot
    np.testing.assert_array_equal(prot.atom_mask, no_oxt)
    np.testing.assert_allclose(prot.atom_positions * no_oxt[..., None],
                               a8o.atom_positions * no_oxt[..., None])
    assert prot.b_factors[no_oxt > 0].min() == 42.0 and prot.b_factors[no_oxt == 0].max() == 0
    P.write_pdb(prot, tmp_path / "x.pdb")
    _assert_same(P.read_structure(tmp_path / "x.pdb"), prot)
    # slots that the residue type does not have are dropped even if the mask says 1
    ones = P.from_atom14(a8o.aatype, x14, np.ones((70, 14)))
    np.testing.assert_array_equal(ones.atom_mask, rc.restype_atom37_mask[a8o.aatype])
    # defaults: residue numbers 1..L, chain A; JAX-like array inputs
    assert ones.residue_index.tolist() == list(range(1, 71)) and ones.chain_id == "A"


def test_from_backbone(a8o):
    names = ("N", "CA", "C", "O")
    bb4 = np.stack([a8o.atom_positions[:, rc.atom_order[a]] for a in names], axis=1)
    prot = P.from_backbone(a8o.aatype, bb4, residue_index=a8o.residue_index)
    for a in names:
        k = rc.atom_order[a]
        np.testing.assert_allclose(prot.atom_positions[:, k], a8o.atom_positions[:, k])
    assert prot.atom_mask.sum() == 4 * 70 and prot.sequence == a8o.sequence
    # N, CA, C only: O placed with ideal geometry where the next residue follows
    bb3 = P.from_backbone(a8o.aatype, bb4[:, :3], residue_index=a8o.residue_index,
                          b_factors=np.full(70, 90.0))
    o = rc.atom_order["O"]
    assert bb3.atom_mask[-1, o] == 0 and bb3.atom_mask[:-1, o].all()
    err = np.linalg.norm(bb3.atom_positions[:-1, o] - a8o.atom_positions[:-1, o], axis=-1)
    assert err.mean() < 0.1 and err.max() < 0.3, (err.mean(), err.max())
    c_o = np.linalg.norm(bb3.atom_positions[:-1, o] - bb4[:-1, 2], axis=-1)
    np.testing.assert_allclose(c_o, 1.231, atol=1e-4)
    assert bb3.b_factors[0, 1] == 90.0 and bb3.b_factors[0, rc.atom_order["CB"]] == 0
    # a gap in numbering is a chain break: no O there
    ridx = a8o.residue_index.copy()
    ridx[10:] += 5
    broken = P.from_backbone(a8o.aatype, bb4[:, :3], residue_index=ridx)
    assert broken.atom_mask[9, o] == 0 and broken.atom_mask[8, o] == 1
    # a masked residue has no atoms
    mask = np.ones(70)
    mask[5] = 0
    masked = P.from_backbone(a8o.aatype, bb4, mask=mask)
    assert masked.atom_mask[5].sum() == 0
    with pytest.raises(ValueError, match="backbone"):
        P.from_backbone(a8o.aatype, bb4[:, :2])
