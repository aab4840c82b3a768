"""Language-model RLHF: InstructGPT's steps on Hugging Face causal language models."""
