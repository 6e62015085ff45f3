"""Hits aligned in query columns: the query and the hit segments are aligned to one HMM
(``hmmalign``), and the query's row is the reference, as AlphaFold2 turns jackhmmer's Stockholm
output into A3M: a column where the query has a residue is a match column (upper case or '-' in
every row), any other column holds insertions (lower case letters, gaps dropped).
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class AlignedHit:
    """One hit segment in query columns.

    Attributes:
      name: the target's id.
      a3m: the A3M row (upper case and '-' in the L query columns, lower case insertions).
      target_start: 0-based position of the segment's first residue in the target sequence.
      query_to_target: int32 [L] target residue index (0-based, in the whole target) aligned to
        each query position, -1 where the query position is aligned to a gap.
    """

    name: str
    a3m: str
    target_start: int
    query_to_target: np.ndarray

    def identity(self, query: str) -> float:
        """Identical residues / aligned query positions (0 when none is aligned)."""
        row = np.frombuffer(self.a3m.translate(_DROP_LOWER).encode(), np.uint8)
        aligned = row != ord("-")
        n = int(aligned.sum())
        same = (row == np.frombuffer(query.encode(), np.uint8)) & aligned
        return float(same.sum()) / n if n else 0.0

    def coverage(self) -> float:
        """Aligned query positions / query length."""
        return float((self.query_to_target >= 0).mean()) if self.query_to_target.size else 0.0


_DROP_LOWER = {c: None for c in range(ord("a"), ord("z") + 1)}


def align_to_query(hmm, query: str, segments: list[tuple[str, str, int]]) -> list[AlignedHit]:
    """Align ``segments`` ((name, sequence, 0-based start in the target)) with ``query`` to
    ``hmm`` and return them in query columns (in the order given)."""
    import pyhmmer  # deferred: the HMMER bindings are only needed for searches

    if not segments:
        return []
    alphabet = hmm.alphabet
    seqs = [pyhmmer.easel.TextSequence(name=b"__query__", sequence=query).digitize(alphabet)]
    for i, (_name, seq, _start) in enumerate(segments):
        seqs.append(pyhmmer.easel.TextSequence(name=f"s{i}".encode(),
                                               sequence=seq).digitize(alphabet))
    block = pyhmmer.easel.DigitalSequenceBlock(alphabet, seqs)
    msa = pyhmmer.hmmer.hmmalign(hmm, block, trim=False, digitize=False,
                                 all_consensus_cols=True)
    rows = [np.frombuffer(r.encode(), np.uint8) for r in msa.alignment]
    q = rows[0]
    is_res = np.array([chr(c).isalpha() for c in range(256)])
    qcol = is_res[q]
    if int(qcol.sum()) != len(query):  # hmmalign keeps every residue; anything else is a bug
        raise RuntimeError("hmmalign lost query residues")
    out = []
    for (name, seq, start), row in zip(segments, rows[1:]):
        res = is_res[row]
        idx = np.cumsum(res) - 1 + start  # target index of the residue in each column
        match = np.where(qcol & res, idx, -1)[qcol].astype(np.int32)
        chars = []
        for c, isq, isr in zip(row.tobytes().decode(), qcol, res):
            if isq:
                chars.append(c.upper() if isr else "-")
            elif isr:
                chars.append(c.lower())
        out.append(AlignedHit(name=name, a3m="".join(chars), target_start=start,
                              query_to_target=match))
    return out
