"""Pairs: scored answers in, preference pairs out.

``recipes`` are the pair recipes (the paper's configurations and user YAMLs) as data behind a registry; ``build``
turns answers and scores into TRL conversational preference pairs by a recipe; ``debias`` rewrites or filters pairs
(pairs in, pairs out, recorded in each pair's provenance); ``diagnostics`` says what each recipe's pairs carry
(how often chosen and rejected differ in harm and in refusal).
"""
