"""Homology search: MSAs from a local sequence database (``msa``) and template hits from a
template library (``templates``), both through HMMER (the ``pyhmmer`` package), and what the
templates are used for.

Modules: ``database`` (reading and checking a FASTA sequence database), ``alignment`` (hits
aligned in query columns: A3M rows and residue maps), ``msa`` (the jackhmmer-style iterative
search with its cache), ``templates`` (the template library's index and search),
``template_coords`` (a hit's backbone at the query positions), ``template_model`` (a refined
model from templates and the network's prediction), ``template_benchmark`` (the test split in
the remote and relatives settings).
"""
