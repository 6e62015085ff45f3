"""foldlite.search: MSA search against a small FASTA database and template search in a small
library, both built inside the tests (random sequences; homologs are mutated copies)."""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import numpy as np
import pytest

from datagen import mutate, random_backbone, random_sequence
from foldlite.cli import main
from foldlite.errors import InputError
from foldlite.sequences import parse_sequence, read_a3m


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FOLDLITE_CACHE_DIR", str(tmp_path / "cache"))


def _family(rng, n_homologs=6, n_decoys=40, length=90):
    query = random_sequence(length, rng)
    homologs = {f"hom{i}": mutate(query, 0.3, rng) for i in range(n_homologs)}
    # one homolog with extra residues at both ends and an insertion: lower-case letters in A3M
    core = mutate(query, 0.2, rng)
    homologs["homins"] = random_sequence(15, rng) + core[:40] + "GGSGG" + core[40:] + \
        random_sequence(10, rng)
    decoys = {f"decoy{i}": random_sequence(int(rng.integers(60, 150)), rng)
              for i in range(n_decoys)}
    return query, {**homologs, **decoys}


def _write_fasta(path: Path, seqs: dict[str, str], gz: bool = False) -> Path:
    text = "".join(f">{k} some description\n{v[:50]}\n{v[50:]}\n" for k, v in seqs.items())
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def _search_inputs(tmp_path) -> tuple[str, list[str]]:
    """A family database (gzipped) and a query file (a family member named "my/query one" and a
    random "lonely" sequence): (the member's sequence, `foldlite search` arguments without -o)."""
    rng = np.random.default_rng(0)
    query, db = _family(rng)
    _write_fasta(tmp_path / "db.fasta.gz", db, gz=True)
    (tmp_path / "q.fasta").write_text(f">my/query one\n{query}\n>lonely\n"
                                      f"{random_sequence(50, rng)}\n")
    return query, ["search", str(tmp_path / "q.fasta"), "--db", str(tmp_path / "db.fasta.gz"),
                   "--no-progress"]


def test_msa_search_cli_writes_a3m_and_caches(tmp_path, capsys):
    query, base = _search_inputs(tmp_path)
    args = base + ["-o", str(tmp_path / "out")]
    assert main(args) == 0
    out = capsys.readouterr()
    a3m = tmp_path / "out" / "my_query.a3m"   # the header's name, made safe for a file
    msa = read_a3m(a3m, parse_sequence(query, "q"))
    names = {n.split("/")[0] for n in msa.names[1:]}
    assert names == {f"hom{i}" for i in range(6)} | {"homins"}
    assert msa.names[0] == "my/query"
    row = msa.names.index(next(n for n in msa.names if n.startswith("homins")))
    assert msa.deletions[row].sum() >= 5       # the GGSGG insertion
    ident = (msa.sequences[1:] == msa.sequences[0]).mean()
    assert ident > 0.6
    assert "lonely: 50 residues, no hits" in out.out
    assert "s_per_1000_residues_per_gres" in out.err
    lonely = read_a3m(tmp_path / "out" / "lonely.a3m")
    assert lonely.num_sequences == 1
    # the same query and database again: from the cache
    (tmp_path / "out" / "my_query.a3m").unlink()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("(cached)") == 2
    assert read_a3m(a3m).sequences.shape == msa.sequences.shape


def test_iterations_find_at_least_as_many(tmp_path):
    from foldlite.search.database import read_database
    from foldlite.search.msa import MsaSettings, search_msas

    rng = np.random.default_rng(1)
    query, db = _family(rng)
    # a chain of homologs: each further from the query
    s = query
    for i in range(4):
        s = mutate(s, 0.25, rng)
        db[f"far{i}"] = s
    _write_fasta(tmp_path / "db.fasta", db)
    database = read_database(tmp_path / "db.fasta")
    assert database.num_sequences == len(db)
    rec = parse_sequence(query, "q")
    one = search_msas([rec], database, MsaSettings(iterations=1), use_cache=False,
                      progress=False)[0]
    three = search_msas([rec], database, MsaSettings(iterations=3), use_cache=False,
                        progress=False)[0]
    assert three.num_hits >= one.num_hits >= 7
    capped = search_msas([rec], database, MsaSettings(max_sequences=2), use_cache=False,
                         progress=False)[0]
    assert capped.num_hits == 2


@pytest.mark.parametrize("content, message", [
    (None, "sequence database not found"),
    (b"", "sequence database is empty"),
    (b"just some text\n", "not a FASTA sequence database (line 1"),
    (b">a\nACDEFG\n>b\nAC1DE\n", "record 'b': position 3: '1' is not an amino-acid letter"),
    (b">a\nACDEFG\n>b\n\n", "record 'b' (line 3): empty sequence"),
])
def test_bad_database_messages(tmp_path, capsys, content, message):
    db = tmp_path / "db.fasta"
    if content is not None:
        db.write_bytes(content)
    (tmp_path / "q.fasta").write_text(">q\nACDEFGHIKL\n")
    rc = main(["search", str(tmp_path / "q.fasta"), "--db", str(db), "-o", str(tmp_path / "o"),
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and str(db) in err
    assert "Traceback" not in err


def _library(tmp_path: Path, rng, query: str) -> Path:
    from foldlite.data.dataset import ChainRecord, write_dataset
    from foldlite.sequences import parse_sequence as ps

    seqs = {"HOMO_A": mutate(query, 0.25, rng),
            "PART_A": mutate(query[30:], 0.2, rng),      # covers the query from residue 31
            **{f"D{i}_A": random_sequence(int(rng.integers(50, 120)), rng) for i in range(20)}}
    recs = []
    for cid, s in seqs.items():
        n = len(s)
        pos = np.zeros((n, 37, 3), np.float32)
        pos[:, :3] = random_backbone(n, rng)[:, :3]
        mask = np.zeros((n, 37), np.float32)
        mask[:, :3] = 1
        recs.append(ChainRecord(chain_id=cid, aatype=ps(s, cid).aatype, atom_positions=pos,
                                atom_mask=mask, residue_index=np.arange(1, n + 1, dtype=np.int32),
                                insertion_code=np.array([""] * n),
                                dssp=np.zeros(n, np.uint8)))
    return write_dataset(tmp_path / "lib", recs, source="test")


needs_mmseqs = pytest.mark.skipif(
    __import__("shutil").which("mmseqs") is None,
    reason="MMseqs2 (`mmseqs`) is not installed (apt install mmseqs2)")


@needs_mmseqs
def test_mmseqs_engine_finds_the_family_like_jackhmmer(tmp_path, capsys):
    query, base = _search_inputs(tmp_path)
    args = base + ["-o", str(tmp_path / "mm"), "--engine", "mmseqs"]
    assert main(args) == 0
    out = capsys.readouterr()
    msa = read_a3m(tmp_path / "mm" / "my_query.a3m", parse_sequence(query, "q"))
    assert msa.names[0] == "my/query"
    assert {n.split("/")[0] for n in msa.names[1:]} == {f"hom{i}" for i in range(6)} | {"homins"}
    row = next(i for i, n in enumerate(msa.names) if n.startswith("homins/"))
    start, end = map(int, msa.names[row].split("/")[1].split("-"))
    assert 14 <= start <= 20 and end - start > 80   # 1-based span in the target, past the tail
    assert msa.deletions[row].sum() >= 5            # the GGSGG insertion: lower-case letters
    assert (msa.sequences[1:] == msa.sequences[0]).mean() > 0.6
    assert '"engine": "mmseqs"' in out.err
    # an unrelated query: at ColabFold's E-value 0.1 a chance hit may pass, never the family
    lonely = read_a3m(tmp_path / "mm" / "lonely.a3m")
    assert lonely.names[0] == "lonely" and not any(n.startswith("hom") for n in lonely.names)
    # cached per engine: a second run searches nothing, a jackhmmer run is not served by it
    assert main(args) == 0
    assert capsys.readouterr().out.count("(cached)") == 2
    jack = args[:-2] + ["--engine", "jackhmmer"]
    assert main(jack) == 0
    assert "(cached)" not in capsys.readouterr().out


def test_mmseqs_engine_missing_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FOLDLITE_MMSEQS", str(tmp_path / "no-such-mmseqs"))
    _write_fasta(tmp_path / "db.fasta", {"a": "ACDEFGHIKLMNPQRSTVWY" * 3})
    (tmp_path / "q.fasta").write_text(">q\nACDEFGHIKLMNPQRSTVWY\n")
    rc = main(["search", str(tmp_path / "q.fasta"), "--db", str(tmp_path / "db.fasta"),
               "-o", str(tmp_path / "o"), "--engine", "mmseqs"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "MMseqs2 is not installed" in err and "--engine jackhmmer" in err
    assert not (tmp_path / "o").exists()


def test_template_index_and_search(tmp_path, capsys):
    from foldlite.search import templates as tpl

    rng = np.random.default_rng(2)
    query = random_sequence(100, rng)
    lib = _library(tmp_path, rng, query)
    assert main(["templates", "index", str(lib), "-o", str(tmp_path / "idx")]) == 0
    assert "template index of 22 chains" in capsys.readouterr().out
    index = tpl.open_index(tmp_path / "idx")
    rec = parse_sequence(query, "q")
    hits = tpl.search_templates(rec, index)
    assert [h.chain_id for h in hits] == ["HOMO_A", "PART_A"]
    part = hits[1]
    assert 0.6 < part.coverage <= 0.71 and part.identity > 0.6
    # the residue map: query residue 31 onwards aligned to PART_A's residues from 0
    m = part.query_to_template
    assert (m[:30] == -1).all()
    assert (m[30:] == np.arange(70)).mean() > 0.9
    assert hits[0].evalue < hits[1].evalue
    # from an MSA (profile search)
    a3m = tmp_path / "q.a3m"
    a3m.write_text(f">q\n{query}\n>h1\n{mutate(query, 0.3, rng)}\n>h2\n{mutate(query, 0.3, rng)}\n")
    phits = tpl.search_templates(rec, index, msa=read_a3m(a3m, rec))
    assert [h.chain_id for h in phits] == ["HOMO_A", "PART_A"]
    # the command, with the library folder (indexed into the cache on first use)
    (tmp_path / "q.fasta").write_text(f">q\n{query}\n>none\n{random_sequence(40, rng)}\n")
    assert main(["templates", "search", str(tmp_path / "q.fasta"), "--library", str(lib),
                 "--max-hits", "1"]) == 0
    out = capsys.readouterr().out
    assert "HOMO_A" in out and "PART_A" not in out
    assert "none: no template hits" in out


def test_template_structure_folder_and_bad_library(tmp_path, capsys, repo_root):
    import shutil

    src = tmp_path / "structs"
    src.mkdir()
    shutil.copy(repo_root / "tests" / "data" / "1A8O.pdb", src)
    assert main(["templates", "index", str(src), "-o", str(tmp_path / "idx")]) == 0
    capsys.readouterr()
    from foldlite.protein import read_structure
    from foldlite.search import templates as tpl

    p = read_structure(repo_root / "tests" / "data" / "1A8O.pdb")
    seq = "".join("ARNDCQEGHILKMFPSTWYVX"[a] for a in p.aatype)
    hits = tpl.search_templates(parse_sequence(seq, "q"), tpl.open_index(tmp_path / "idx"))
    assert hits and hits[0].identity == 1.0 and hits[0].coverage == 1.0
    (tmp_path / "empty").mkdir()
    assert main(["templates", "index", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "neither a foldlite dataset" in err and "Traceback" not in err


def test_homology_searches_msas_and_templates_with_exclusions(tmp_path):
    from foldlite.homology import Homology, HomologyConfig

    rng = np.random.default_rng(3)
    query, db = _family(rng)
    _write_fasta(tmp_path / "db.fasta", db)
    lib = _library(tmp_path, rng, query)
    rec = parse_sequence(query, "q")
    config = HomologyConfig(msa_db=tmp_path / "db.fasta", templates=lib)
    h = Homology(config, progress=False)
    (found,) = h.msas([rec])
    assert found.msa.num_sequences == 8 and found.msa.length == rec.length
    assert found.info["engine"] == "jackhmmer" and found.info["num_sequences"] == 8
    assert found.a3m.startswith(">q\n")
    t = h.templates(rec, found.msa)
    assert t.info["search"] == "profile"
    assert [x["chain_id"] for x in t.info["hits"]] == ["HOMO_A", "PART_A"]
    # evaluation settings: a named chain and hits at/above an identity are never used
    best_identity = t.hits[0].identity
    strict = Homology(dataclasses.replace(config, exclude=frozenset({"PART_A"}),
                                          identity_cutoff=best_identity), progress=False)
    t2 = strict.templates(rec)
    assert t2.hits == () and t2.info["excluded"] == 2 and t2.info["search"] == "sequence"
    # neither: nothing searched
    none = Homology(HomologyConfig(), progress=False)
    assert none.msas([rec]) == [None] and none.templates(rec) is None
    # a wrong database path fails before any search
    with pytest.raises(InputError, match="sequence database not found"):
        Homology(HomologyConfig(msa_db=tmp_path / "missing.fasta"))


def test_jackhmmer_database_too_big_for_the_memory_is_refused_before_reading(tmp_path):
    """A database that cannot fit in the available RAM even at 1 byte per residue: refused up
    front (search and a prediction run's homology), naming the file, the estimate and MMseqs2."""
    from foldlite.homology import Homology, HomologyConfig
    from foldlite.search.database import check_database_memory

    db = tmp_path / "db.fasta"
    db.write_text(">a\n" + "ACDEFGHIKL" * 1000 + "\n")
    check_database_memory(db, available=1 << 20)  # 10 kB fits in 1 MiB
    with pytest.raises(InputError, match=r"db.fasta: jackhmmer holds the whole database .*"
                                         r"--engine mmseqs"):
        check_database_memory(db, available=4096)
    gz = tmp_path / "db.fasta.gz"
    gz.write_bytes(gzip.compress(db.read_bytes()))
    with pytest.raises(InputError, match="at least"):  # gzipped: 1.2 residues per byte
        check_database_memory(gz, available=int(gz.stat().st_size * 1.1))
    # the run checks it with the machine's own figure: a small database passes
    Homology(HomologyConfig(msa_db=db), progress=False)
