"""Scoring: answers in, reward scores out.

``score`` runs a reward model over every answer into an append-only scores file keyed by (reward model weights,
prompt, answer); ``reward_model`` and ``safety_rm`` are the two bundled reward models behind one interface, and
``preference_split`` is the prompt-disjoint split both are trained and evaluated on.
"""
