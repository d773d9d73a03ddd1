"""trainer.strategy under torchrun: DDP (every rank holds the whole model, gradients all-reduced) or FSDP2
(`fully_shard`: parameters, gradients and optimizer states sharded over ranks, each transformer block gathered
for its own forward and backward). In a single process both are the plain module.

Checkpoints hold full (unsharded) tensors keyed by parameter name, through torch.distributed.checkpoint's
state_dict helpers, so a run saved under FSDP resumes under DDP, in one process, or at another world size."""
from __future__ import annotations

import contextlib
import copy
from typing import Any

import torch
from torch import nn

from runner.models.base import EncoderModule

STRATEGIES = ("ddp", "fsdp")


def _blocks(module: nn.Module) -> list[nn.Module]:
    """Transformer blocks used exactly once (ALBERT's shared blocks stay with the root unit), in order."""
    seen: dict[int, int] = {}  # how often each module object occurs in the tree (a tied module: more than once)
    for _, m in module.named_modules(remove_duplicate=False):
        seen[id(m)] = seen.get(id(m), 0) + 1
    return [b for e in module.modules() if isinstance(e, EncoderModule) for b in e.shard_blocks()
            if all(seen[id(s)] == 1 for s in b.modules())]


def capture_data_dependent_ops() -> None:
    """Let torch.compile keep data-dependent shapes and scalars in the graph instead of breaking it: the masked LM
    head's gather of the selected positions (nonzero) and the counts taken from it. With these, the forward and
    loss of the masked objectives compile as one graph (tests/test_compile.py)."""
    torch._dynamo.config.capture_dynamic_output_shape_ops = True
    torch._dynamo.config.capture_scalar_outputs = True


class Parallel:
    """The training module wrapped for trainer.strategy (nothing in a single process)."""

    def __init__(self, module: nn.Module, strategy: str, world: int, device: torch.device):
        self.module, self.strategy, self.world = module, strategy, world
        self.ddp: nn.Module | None = None
        self.compiled: Any = None  # trainer.compile: the compiled training forward
        self.template: nn.Module | None = None  # FSDP: an unsharded copy (on the meta device) for the end of the run
        if world > 1 and strategy == "fsdp":
            from torch.distributed.device_mesh import init_device_mesh
            from torch.distributed.fsdp import fully_shard

            self.template = copy.deepcopy(module).to("meta")
            mesh = init_device_mesh(device.type, (world,))
            for block in _blocks(module):
                fully_shard(block, mesh=mesh)
            fully_shard(module, mesh=mesh)  # embeddings, heads, shared blocks: the root unit
        elif world > 1:
            self.ddp = nn.parallel.DistributedDataParallel(module)

    @property
    def sharded(self) -> bool:
        return self.template is not None

    def compile(self) -> None:
        """torch.compile the training forward (the module itself is untouched: parameter names, checkpoints and
        exports stay the eager module's). Shapes are dynamic: batches are trimmed to their longest row."""
        capture_data_dependent_ops()
        self.compiled = torch.compile(self.ddp if self.ddp is not None else self.module, dynamic=True)

    def forward_module(self) -> nn.Module:
        """What a training forward calls (DDP's wrapper hooks the gradient all-reduce; FSDP's is in place)."""
        if self.compiled is not None:
            return self.compiled
        return self.ddp if self.ddp is not None else self.module

    def sync(self, last: bool) -> contextlib.AbstractContextManager:
        """Gradient communication only on the last micro-batch of an accumulated step."""
        if self.ddp is not None and not last:
            return self.ddp.no_sync()
        if self.sharded:
            self.module.set_requires_gradient_sync(last)
        return contextlib.nullcontext()

    def clip(self, max_norm: float) -> float:
        """Clip the global gradient norm (over every rank's shard under FSDP) and return it before clipping."""
        params = [p for p in self.module.parameters() if p.grad is not None]
        norm = nn.utils.clip_grad_norm_(params, max_norm)
        if hasattr(norm, "full_tensor"):  # a DTensor under FSDP
            norm = norm.full_tensor()
        return float(norm)

    # ---- state ---------------------------------------------------------------------------------------------
    def _options(self) -> Any:
        from torch.distributed.checkpoint.state_dict import StateDictOptions

        return StateDictOptions(full_state_dict=True, cpu_offload=self.sharded)

    def state_dict(self, optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, Any]]:
        """(model, optimizer) state with full tensors keyed by name; under FSDP a collective whose result only
        rank 0 holds."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

        # unsharded: the module's own state_dict (Transformer-XL's memories ride along as its extra state)
        model = get_model_state_dict(self.module, options=self._options()) if self.sharded else self.module.state_dict()
        return model, get_optimizer_state_dict(self.module, optimizer, options=self._options())

    def load_state_dict(self, optimizer: torch.optim.Optimizer, model_state: dict[str, Any],
                        optim_state: dict[str, Any]) -> None:
        """Load full state (every rank reads the checkpoint); each rank keeps its shard under FSDP."""
        from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

        if self.sharded:
            set_model_state_dict(self.module, model_state, options=self._options())
        else:
            self.module.load_state_dict(model_state)
        if _by_index(optim_state):  # checkpoints written before optimizer states were keyed by parameter name
            optimizer.load_state_dict(optim_state)
        else:
            set_optimizer_state_dict(self.module, optimizer, optim_state, options=self._options())

    def unsharded(self) -> nn.Module:
        """The trained module as one plain nn.Module on rank 0 (for evaluation, fine-tuning and export after
        training); a collective under FSDP. Without FSDP: the module itself."""
        if not self.sharded:
            return self.module
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        full = get_model_state_dict(self.module, options=self._options())
        device = next(self.module.parameters()).device  # a DTensor's device: where its shard lives
        plain = self.template.to_empty(device=device)
        if full:  # rank 0 (cpu_offload gives the other ranks an empty dict)
            plain.load_state_dict(full)
        return plain


def _by_index(optim_state: dict[str, Any]) -> bool:
    """Whether an optimizer state dict is torch's own format (parameters numbered, not named)."""
    groups = optim_state.get("param_groups") or [{}]
    return any(isinstance(p, int) for p in groups[0].get("params", []))

