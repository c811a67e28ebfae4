"""Runner: one YAML config in, a run folder and its report out.

``config`` validates the experiment YAML (targets, recipes, generation, training, evaluation); ``run`` wires the
stages together, asking each stage for its content key, so that a rerun reuses every finished artifact.
"""
