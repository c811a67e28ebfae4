"""Evaluation: a policy in, verdicts and measures out.

``suites`` are the jailbreak suites and attack templates (data behind a registry); ``safety`` answers a suite under
its attacks and judges every answer (ASR per judge); ``benign`` measures answer quality and over-refusal on benign
prompts; ``answer_quality`` holds those measures; ``general`` runs general-ability tasks with lm-eval.
"""
