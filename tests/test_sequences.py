"""Sequence input (foldlite.sequences): FASTA, plain strings, A3M, profiles, safe names."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from foldlite import constants as rc
from foldlite import sequences as S
from foldlite.errors import InputError

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "examples"
UBIQUITIN = "MQIFVKTLTGKTITLEVEPSDTIENVKAKIQDKEGIPPDQQRLIFAGKQLEDGRTLSDYNIQKESTLHLVLRLRGG"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------
# FASTA
# ------------------------------------------------------------------------------------------

def test_example_fasta_files():
    (ub,) = S.read_fasta(EXAMPLES / "ubiquitin.fasta")
    assert ub.id == "ubiquitin" and ub.sequence == UBIQUITIN and len(ub) == 76
    assert ub.description.startswith("ubiquitin human ubiquitin")
    assert ub.aatype.dtype == np.int32
    assert "".join(rc.restypes[a] for a in ub.aatype) == UBIQUITIN
    multi = S.read_fasta(EXAMPLES / "multi.fasta")
    assert [(r.id, r.length) for r in multi] == [("gb1", 56), ("hp35", 35), ("trpcage", 20)]


def test_lower_case_multiline_and_stop(tmp_path):
    path = _write(tmp_path, "q.fasta", ">a first\nmkvl\nAAGi\n\n>b\nMK V*\n")
    a, b = S.read_fasta(path)
    assert (a.id, a.description, a.sequence) == ("a", "a first", "MKVLAAGI")
    assert b.sequence == "MKV"
    np.testing.assert_array_equal(a.aatype, [rc.restype_order[c] for c in "MKVLAAGI"])


def test_missing_empty_and_no_records(tmp_path):
    with pytest.raises(InputError, match="nope.fasta.*not found"):
        S.read_fasta(tmp_path / "nope.fasta")
    with pytest.raises(InputError, match="empty.fasta.*empty"):
        S.read_fasta(_write(tmp_path, "empty.fasta", ""))
    with pytest.raises(InputError, match="blank.fasta.*empty"):
        S.read_fasta(_write(tmp_path, "blank.fasta", "\n  \n"))
    with pytest.raises(InputError, match="plain.fasta.*no FASTA records"):
        S.read_fasta(_write(tmp_path, "plain.fasta", "MKVLAAGIV\n"))
    with pytest.raises(InputError, match="is a directory"):
        S.read_fasta(tmp_path)
    binary = tmp_path / "bin.fasta"
    binary.write_bytes(b"\xff\xfe>a\nMKV\n")
    with pytest.raises(InputError, match="bin.fasta.*not a text"):
        S.read_fasta(binary)


def test_empty_sequence_and_empty_id(tmp_path):
    with pytest.raises(InputError, match=r"e.fasta: record 'b': empty sequence"):
        S.read_fasta(_write(tmp_path, "e.fasta", ">a\nMKV\n>b\n>c\nMK\n"))
    with pytest.raises(InputError, match=r"stop.fasta: record 'a': empty sequence"):
        S.read_fasta(_write(tmp_path, "stop.fasta", ">a\n*\n"))
    with pytest.raises(InputError, match=r"noid.fasta: record 2 has an empty name"):
        S.read_fasta(_write(tmp_path, "noid.fasta", ">a\nMKV\n>\nMKV\n"))


def test_bad_letters_name_record_and_position(tmp_path):
    # the 1 is residue 6 of record 'two' (sequence joined over lines)
    path = _write(tmp_path, "bad.fasta", ">one\nMKVL\n>two desc\nMKVL\nA1G\n")
    with pytest.raises(InputError, match=r"bad.fasta: record 'two': position 6: '1' is not"):
        S.read_fasta(path)
    with pytest.raises(InputError, match=r"record 'g': position 3: '-'.*gaps are not allowed"):
        S.read_fasta(_write(tmp_path, "gap.fasta", ">g\nMK-VL\n"))
    with pytest.raises(InputError, match=r"record 's': position 3: '\*'.*only at the end"):
        S.read_fasta(_write(tmp_path, "stop.fasta", ">s\nMK*VL\n"))
    with pytest.raises(InputError, match=r"record 'u': position 2: 'é'"):
        S.read_fasta(_write(tmp_path, "uni.fasta", ">u\nMéK\n"))


def test_duplicate_ids(tmp_path):
    path = _write(tmp_path, "dup.fasta", ">x\nMKV\n>y\nMKV\n>x other\nMKL\n")
    with pytest.raises(InputError, match=r"dup.fasta: duplicate record id 'x' \(records 1 and 3\)"):
        S.read_fasta(path)


def test_length_limit(tmp_path):
    path = _write(tmp_path, "long.fasta", ">short\nMKV\n>long\n" + "A" * 101 + "\n")
    assert len(S.read_fasta(path, max_length=101)) == 2
    with pytest.raises(InputError,
                       match=r"long.fasta: record 'long': 101 residues.*max_length=100"):
        S.read_fasta(path, max_length=100)
    with pytest.raises(InputError, match=r"max_length=2"):
        S.parse_sequence("MKV", max_length=2)


def test_ambiguous_letter_policy(tmp_path):
    path = _write(tmp_path, "amb.fasta", ">amb\nMUKOBZJXu\n>clean\nMKV\n")
    with pytest.warns(S.SequenceWarning) as caught:
        amb, clean = S.read_fasta(path)
    assert len(caught) == 1  # only the record with such letters warns
    msg = str(caught[0].message)
    assert "amb.fasta: record 'amb'" in msg
    assert "U as C at position(s) 2, 9" in msg and "O as K at position(s) 4" in msg
    for letter, pos in (("B", 5), ("Z", 6), ("J", 7)):
        assert f"{letter} as X at position(s) {pos}" in msg
    assert "X at position(s) 8" in msg
    assert amb.sequence == "MCKKXXXXC"
    np.testing.assert_array_equal(amb.aatype, [12, 4, 11, 11, 20, 20, 20, 20, 4])
    assert clean.sequence == "MKV"


# ------------------------------------------------------------------------------------------
# Plain strings
# ------------------------------------------------------------------------------------------

def test_parse_sequence():
    rec = S.parse_sequence("mqif vktl\ntg", name="ub")
    assert (rec.id, rec.sequence, rec.length) == ("ub", "MQIFVKTLTG", 10)
    np.testing.assert_array_equal(rec.aatype, [rc.restype_order[c] for c in "MQIFVKTLTG"])
    with pytest.raises(InputError, match="record 'query': empty sequence"):
        S.parse_sequence("  ")
    with pytest.raises(InputError, match=r"record 'q2': position 4: '#'"):
        S.parse_sequence("MKV#", name="q2")
    with pytest.raises(InputError, match="looks like FASTA"):
        S.parse_sequence(">a\nMKV")
    with pytest.warns(S.SequenceWarning, match=r"record 'query': read X at position\(s\) 2"):
        assert S.parse_sequence("MXV").aatype[1] == rc.unk_restype_index
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        S.parse_sequence(UBIQUITIN)  # no warning for standard letters


# ------------------------------------------------------------------------------------------
# A3M
# ------------------------------------------------------------------------------------------

A3M = """#A3M#
>query some description
MKVLA
>hit1
MK-LA
>hit2
-aKVddLAee
>hit3
M.KVL-
"""


def test_read_a3m(tmp_path):
    path = _write(tmp_path, "aln.a3m", A3M)
    msa = S.read_a3m(path, query="mkvla")
    assert msa.names == ("query", "hit1", "hit2", "hit3")
    assert msa.num_sequences == 4 and msa.length == 5
    o = rc.restype_order
    expected = [
        [o["M"], o["K"], o["V"], o["L"], o["A"]],
        [o["M"], o["K"], S.GAP, o["L"], o["A"]],
        [S.GAP, o["K"], o["V"], o["L"], o["A"]],
        [o["M"], o["K"], o["V"], o["L"], S.GAP],
    ]
    np.testing.assert_array_equal(msa.sequences, expected)
    # lower-case insertions removed and counted before the next match column; trailing ones and
    # '.' are not counted
    np.testing.assert_array_equal(msa.deletions, [[0] * 5, [0] * 5, [0, 1, 0, 2, 0], [0] * 5])
    assert msa.sequences.dtype == np.int32 and msa.deletions.dtype == np.int32
    # a SequenceRecord as the query, and no query at all
    assert S.read_a3m(path, query=S.parse_sequence("MKVLA")).num_sequences == 4
    assert S.read_a3m(path).length == 5


def test_a3m_ambiguous_letters(tmp_path):
    path = _write(tmp_path, "x.a3m", ">q\nMXU\n>h\nBZO\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # alignment rows do not warn
        msa = S.read_a3m(path)
    np.testing.assert_array_equal(msa.sequences, [[12, 20, 4], [20, 20, 11]])


def test_a3m_query_mismatch(tmp_path):
    path = _write(tmp_path, "aln.a3m", A3M)
    with pytest.raises(InputError, match=r"aln.a3m: row 1 \('query'\) does not match the query.*"
                                         r"position 3: row 1 has 'V', the query 'W'"):
        S.read_a3m(path, query="MKWLA")
    with pytest.raises(InputError, match=r"aln.a3m: row 1 .*row 1 has 5 columns, the query 6"):
        S.read_a3m(path, query="MKVLAA")
    gap_first = _write(tmp_path, "gapfirst.a3m", ">q\nMK-LA\n")
    with pytest.raises(InputError, match=r"position 3: row 1 has '-'"):
        S.read_a3m(gap_first, query="MKVLA")


def test_a3m_bad_input(tmp_path):
    with pytest.raises(InputError, match="no.a3m.*not found"):
        S.read_a3m(tmp_path / "no.a3m")
    with pytest.raises(InputError, match="e.a3m.*empty"):
        S.read_a3m(_write(tmp_path, "e.a3m", "\n"))
    with pytest.raises(InputError, match="h.a3m.*no A3M records"):
        S.read_a3m(_write(tmp_path, "h.a3m", "#A3M#\n"))
    with pytest.raises(InputError, match="t.a3m: line 1: text before"):
        S.read_a3m(_write(tmp_path, "t.a3m", "MKV\n>q\nMKV\n"))
    with pytest.raises(InputError, match=r"len.a3m: row 3 \('c'\) has 4 match columns, the query"):
        S.read_a3m(_write(tmp_path, "len.a3m", ">a\nMKV\n>b\nM-V\n>c\nMKVL\n"))
    with pytest.raises(InputError, match=r"bad.a3m: row 2 \('b'\): position 2: '1'"):
        S.read_a3m(_write(tmp_path, "bad.a3m", ">a\nMKV\n>b\nM1V\n"))
    with pytest.raises(InputError, match=r"low.a3m: row 2 \('b'\): position 2: '1'"):
        S.read_a3m(_write(tmp_path, "low.a3m", ">a\nMKV\n>b\nm1KV\n".replace("m1", "M1")))
    with pytest.raises(InputError, match=r"ins.a3m: row 2 \('b'\): position 2: '#'"):
        S.read_a3m(_write(tmp_path, "ins.a3m", ">a\nMKV\n>b\nM#KV\n"))
    with pytest.raises(InputError, match=r"emp.a3m: row 2 \('b'\): empty sequence"):
        S.read_a3m(_write(tmp_path, "emp.a3m", ">a\nMKV\n>b\n>c\nMKV\n"))


# ------------------------------------------------------------------------------------------
# Profiles
# ------------------------------------------------------------------------------------------

def _naive_weights(seqs: np.ndarray, identity: float = 0.8) -> np.ndarray:
    m, length = seqs.shape
    w = np.zeros(m)
    for i in range(m):
        n = sum(1 for j in range(m) if np.mean(seqs[i] == seqs[j]) >= identity)
        w[i] = 1.0 / n
    return w


def test_sequence_weights_match_definition():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 22, size=30)
    rows = [base]
    for _ in range(40):  # near copies of base plus unrelated rows
        row = base.copy()
        flip = rng.random(30) < rng.uniform(0.0, 0.5)
        row[flip] = rng.integers(0, 22, size=flip.sum())
        rows.append(row)
    seqs = np.stack(rows + [rng.integers(0, 22, size=30) for _ in range(10)])
    w = S.sequence_weights(seqs, max_bytes=2000)  # small blocks exercise the loops
    np.testing.assert_allclose(S.sequence_weights(seqs), w)
    np.testing.assert_allclose(w, _naive_weights(seqs), rtol=1e-6)
    assert S.sequence_weights(np.zeros((0, 5), np.int32)).shape == (0,)


def test_msa_profile():
    o = rc.restype_order
    seqs = np.array([
        [o["A"], o["C"], S.GAP, 20],
        [o["A"], o["C"], S.GAP, S.GAP],
        [o["A"], o["C"], S.GAP, 20],
        [o["W"], o["D"], o["E"], S.GAP],
    ], np.int32)
    msa = S.Msa(sequences=seqs, deletions=np.zeros_like(seqs))
    plain = S.msa_profile(msa, weighting=False)
    assert plain.shape == (4, 20) and plain.dtype == np.float32
    assert plain[0, o["A"]] == pytest.approx(0.75) and plain[0, o["W"]] == pytest.approx(0.25)
    # gaps excluded: column 2 has one E among gaps
    assert plain[2, o["E"]] == pytest.approx(1.0)
    # only unknown/gaps: uniform
    np.testing.assert_allclose(plain[3], 1 / 20)
    np.testing.assert_allclose(plain.sum(-1), 1.0, rtol=1e-6)
    # weighting: the three near-identical rows (>= 80% identical... all 4 columns equal for
    # rows 0 and 2, 3/4 for row 1) form one cluster of weight 1 in total against row 3 (weight 1)
    weighted = S.msa_profile(msa, weighting=True)
    w = _naive_weights(seqs)
    expected_a = w[:3].sum() / w.sum()
    assert weighted[0, o["A"]] == pytest.approx(expected_a)
    assert weighted[0, o["A"]] < plain[0, o["A"]]
    # an array works as well as an Msa
    np.testing.assert_allclose(S.msa_profile(seqs, weighting=False), plain)


def test_profile_of_duplicated_rows_counts_them_once(tmp_path):
    path = _write(tmp_path, "dup.a3m", ">q\nMKVLA\n" + ">h\nMKVLA\n" * 9 + ">o\nWWWWW\n")
    prof = S.msa_profile(S.read_a3m(path))
    o = rc.restype_order
    np.testing.assert_allclose(prof[:, o["W"]], 0.5, rtol=1e-6)
    np.testing.assert_allclose(prof[0, o["M"]], 0.5, rtol=1e-6)


# ------------------------------------------------------------------------------------------
# Safe names
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw", ["../../etc/passwd", "a/b\\c", "..", ".", "", "\x00\x1f\n",
                                 "-rf", "CON", "nul.txt", " spaced name ", "ünïcødé", "x" * 300,
                                 "sp|P0CG48|UBC_HUMAN", "..hidden..file.."])
def test_safe_name_properties(raw):
    name = S.safe_name(raw, set())
    assert name and len(name) <= 64
    assert "/" not in name and "\\" not in name and ".." not in name
    assert not name.startswith((".", "-"))
    assert all(c.isalnum() or c in "._-" for c in name) and name.isprintable()
    assert name.split(".")[0].upper() not in {"CON", "NUL", "PRN", "AUX"}


def test_safe_name_examples_and_uniqueness():
    assert S.safe_name("sp|P0CG48|UBC_HUMAN") == "sp_P0CG48_UBC_HUMAN"
    assert S.safe_name("1abc_A") == "1abc_A"
    assert S.safe_name("") == "unnamed"
    assert S.safe_name("café") == "cafe"
    taken: set[str] = set()
    names = [S.safe_name(x, taken) for x in ["a/b", "a_b", "a b", "A_B", "q"]]
    assert names == ["a_b", "a_b_2", "a_b_3", "A_B_4", "q"]
    assert {n.lower() for n in names} <= taken
    long = [S.safe_name("y" * 100, taken, max_length=20) for _ in range(12)]
    assert len(set(long)) == 12 and all(len(n) <= 20 for n in long)
    assert long[0] == "y" * 20 and long[11] == "y" * 17 + "_12"
    assert S.safe_name("existing", {"existing"}) == "existing_2"
