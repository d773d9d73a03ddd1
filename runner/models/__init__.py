"""Encoder families (registry.py finds them), their configs, heads and the transformers mapping."""
