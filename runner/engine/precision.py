"""trainer.precision: the autocast dtype of forward passes and, for fp16, dynamic loss scaling with torch's
GradScaler (fp16's range is too narrow for small gradients; bf16 keeps fp32's exponent and needs no scaling).
Master weights and optimizer states stay fp32 in every mode."""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

import torch

PRECISIONS = ("auto", "bf16", "fp16", "fp32")


def resolve(name: str, device: torch.device) -> str:
    """auto -> bf16 on a CUDA card that has it, fp16 on older cards (V100, T4), fp32 elsewhere."""
    if name != "auto":
        return name
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


class Precision:
    """Autocast context, loss scaling and the unscale/step/update sequence for one training run."""

    def __init__(self, name: str, device: torch.device, scaler_factory: Callable[..., Any] | None = None):
        self.name = resolve(name, device)
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)
        self.device_type = device.type
        # FSDP passes a sharded scaler (found-inf agreed over ranks); DDP's gradients are identical on every rank
        factory = scaler_factory or torch.amp.GradScaler
        self.scaler = factory(device.type) if self.name == "fp16" else None
        self.overflows = 0  # fp16 steps skipped because the scaled gradients overflowed (the scale then halves)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Divide the gradients by the loss scale before they are clipped or measured."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def overflowed(self, grad_norm: float) -> bool:
        """Whether a non-finite gradient norm is fp16 overflow (expected now and then: the scaler backs off)
        rather than a diverging run."""
        return self.scaler is not None and not math.isfinite(grad_norm)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """optimizer.step(), through the scaler under fp16 (which skips it when the gradients overflowed)."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def skip(self, overflow: bool) -> None:
        """A step left out: under fp16 the scale still backs off, so the next step can succeed."""
        if self.scaler is not None:
            self.scaler.update()  # found-inf was recorded by unscale(): the scale halves
        if overflow:
            self.overflows += 1

    @property
    def scale(self) -> float | None:
        return float(self.scaler.get_scale()) if self.scaler is not None else None

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "overflows": self.overflows}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Restore the loss scale; a checkpoint from another precision leaves the fresh scaler as it is."""
        if not state:
            return
        self.overflows = state.get("overflows", 0)
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
