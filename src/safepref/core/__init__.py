"""Core: what every stage shares and nothing stage-specific.

``records`` (typed rows at stage boundaries), ``io`` (JSONL and atomic writes), ``keys`` (content keys),
``datasets`` (the bundled datasets' registry), ``labelled`` (human-labelled answers), ``errors`` (one-line input
errors), ``paths``, ``stats`` (rates with intervals), ``device`` (device and dtype policy), ``progress`` and
``versions``.
"""
