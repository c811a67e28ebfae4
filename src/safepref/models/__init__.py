"""Models: names in, loaded models out.

``registry`` names the bundled offline models (verified by sha256); ``loading`` resolves a registry name, a Hugging
Face id or a local folder to a tokenizer and model on the device the policy chooses, and fingerprints its weights.
"""
