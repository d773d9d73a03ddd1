"""Transformer-XL: no transformers class holds it any more, so its runs keep their checkpoint and skip hf/."""
from __future__ import annotations

from runner.hf.adapters.base import NoTransformersClass


class TransformerXLAdapter(NoTransformersClass):
    """model.family=txl."""

    families = ("txl",)

    def why(self) -> str:
        """TransfoXL left transformers."""
        return ("model.family=txl has no transformers class (TransfoXL was deprecated in transformers 4.35 and "
                "removed in 5); the run's checkpoints/last.pt holds the model")
