"""Homology search: MSAs from a local sequence database (``msa``) and template hits from a
template library (``templates``), both through HMMER (the ``pyhmmer`` package).

Modules: ``database`` (reading and checking a FASTA sequence database), ``alignment`` (hits
aligned in query columns: A3M rows and residue maps), ``msa`` (the jackhmmer-style iterative
search with its cache), ``templates`` (the template library's index and search).
"""
