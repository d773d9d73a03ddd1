"""Encoders and shared heads."""
from runner.models.config import EncoderConfig
from runner.models.encoder import Encoder

__all__ = ["EncoderConfig", "Encoder"]
