"""Each family's transformers adapter, one file per family (a `FamilyAdapter` subclass naming the model.family values
it serves); runner/hf/registry.py finds them here and in the BERTLAB_PLUGINS modules."""
