"""Training: pairs in, a DPO-trained policy out.

``dpo`` trains with TRL's ``DPOTrainer`` (``config`` holds its settings), resuming an interrupted run;
``ref_logps`` caches the reference model's log-probs; ``compact_head`` is the CPU forward without padding;
``dynamics`` reads the training log (loss, reward margins, accuracies); ``launch`` runs training on several GPUs
through accelerate.
"""
