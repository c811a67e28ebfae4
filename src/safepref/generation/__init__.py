"""Generation: prompts in, answers out.

``generate`` answers prompts from one source (a bundled or Hugging Face model, a fixed dataset source, or an
OpenAI-compatible endpoint) into a resumable JSONL of ``Response`` rows keyed by their content; ``decode`` is the
batched sampler it runs on transformers models; ``answer_reuse`` lets a stage reuse answers another stage already
generated under the same key; ``openai_api`` is the endpoint client.
"""
