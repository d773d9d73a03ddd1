"""Score minimal pairs with any local transformers model directory (a run's hf/ export, a downloaded
bert-base-uncased, a GPT-2): the same scoring functions as a run's own heads (runner/objectives/scoring.py), the
model's own tokenizer, and the special tokens its tokenizer adds around a sentence.

The kind comes from config.json's `architectures`:
- ELECTRA's discriminator (ElectraForPreTraining): "disc", the summed log-probability that every token is original;
- a masked LM (*ForMaskedLM, *ForPreTraining: loaded with AutoModelForMaskedLM): "pll" and "pll_word_l2r";
- XLNet (XLNetLMHeadModel): its permutation LM's "pll" and "pll_word_l2r";
- a causal LM (*ForCausalLM, *LMHeadModel): "loglik", each token given those before it (after the BOS token when the
  tokenizer has one)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from runner.config.errors import ConfigError
from runner.evaluation.probes.suite_scoring import Scorer
from runner.objectives.scoring import masked_lm_scores, per_token_sum, permutation_scores

KINDS = ("electra_discriminator", "masked_lm", "permutation_lm", "causal_lm")


@dataclass
class TransformersModel:
    """A loaded transformers model, what it is, and its tokenizer's backend."""

    path: Path
    kind: str
    architecture: str
    model: Any
    tokenizer: Tokenizer
    unk_id: int | None
    prefix: list[int]  # the special tokens the tokenizer puts before a sentence
    suffix: list[int]  # and after it
    mask_id: int | None
    pad_id: int
    bos_id: int | None
    max_tokens: int | None

    def parameters(self) -> int:
        """The model's parameter count, as transformers counts it."""
        return sum(p.numel() for p in self.model.parameters())


def model_kind(path: Path) -> tuple[str, str]:
    """(kind, architecture) of a transformers directory; a ConfigError when it holds no config.json or names no
    architecture this can score."""
    config = Path(path) / "config.json"
    if not config.is_file():
        raise ConfigError(f"{path}: neither a bertlab run (no .hydra/config.yaml) nor a transformers model directory "
                          "(no config.json); pass outputs/runs/<run>, its hf/, or a downloaded model's directory")
    try:
        archs = json.loads(config.read_text()).get("architectures") or []
    except ValueError:
        raise ConfigError(f"{config} is not JSON; the model directory is incomplete") from None
    for arch in archs:
        if arch == "ElectraForPreTraining":
            return "electra_discriminator", arch
        if arch == "XLNetLMHeadModel":
            return "permutation_lm", arch
        if arch.endswith(("ForMaskedLM", "ForPreTraining")):
            return "masked_lm", arch
        if arch.endswith(("ForCausalLM", "LMHeadModel")):
            return "causal_lm", arch
    raise ConfigError(f"{path}: config.json names {archs or 'no architecture'}; python -m runner.evaluate scores a "
                      "masked LM (*ForMaskedLM, *ForPreTraining), a causal LM (*ForCausalLM, *LMHeadModel) or an "
                      "ELECTRA discriminator (ElectraForPreTraining)")


def _around(tok: Tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer adds before and after a sentence (its post-processor's)."""
    plain = tok.encode("a", add_special_tokens=False).ids
    full = tok.encode("a", add_special_tokens=True).ids
    for k in range(len(full) - len(plain) + 1):
        if full[k:k + len(plain)] == plain:
            return full[:k], full[k + len(plain):]
    return [], []


def load_model(path: Path, device: torch.device) -> TransformersModel:
    """The model at path in eval mode (float32) on device, with its tokenizer."""
    import transformers
    from transformers import (AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer, ElectraForPreTraining,
                              XLNetLMHeadModel)

    kind, arch = model_kind(path)
    transformers.logging.set_verbosity_error()  # a pretraining checkpoint's unused heads are not news
    loader = {"electra_discriminator": ElectraForPreTraining, "masked_lm": AutoModelForMaskedLM,
              "permutation_lm": XLNetLMHeadModel, "causal_lm": AutoModelForCausalLM}[kind]
    try:
        model = loader.from_pretrained(str(path), dtype=torch.float32).to(device).eval()
        hf_tok = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{path}: transformers could not load it as {arch} ({first})") from None
    tok = getattr(hf_tok, "backend_tokenizer", None)
    if tok is None:
        raise ConfigError(f"{path}: its tokenizer has no fast (tokenizers) version; scoring needs word boundaries")
    tok.no_padding()
    tok.no_truncation()
    prefix, suffix = _around(tok)
    if kind == "causal_lm":  # a causal LM reads a sentence after its BOS token and nothing after
        prefix = [hf_tok.bos_token_id] if hf_tok.bos_token_id is not None else []
        suffix = []
    if kind == "permutation_lm":  # the probes read XLNet's sentences without <sep> <cls>, as a run's objective does
        prefix, suffix = [], []
    if kind == "masked_lm" and hf_tok.mask_token_id is None:
        raise ConfigError(f"{path}: a masked LM whose tokenizer has no mask token")
    limit = getattr(model.config, "max_position_embeddings", None)
    return TransformersModel(path, kind, arch, model, tok, hf_tok.unk_token_id, prefix, suffix, hf_tok.mask_token_id,
                             hf_tok.pad_token_id if hf_tok.pad_token_id is not None else 0, hf_tok.bos_token_id,
                             limit - len(prefix) - len(suffix) if isinstance(limit, int) and limit > 0 else None)


def transformers_scorer(m: TransformersModel, device: torch.device) -> Scorer:
    """The scorer of a loaded model: the functions a run's heads use, on the transformers model's outputs."""
    model = m.model

    @torch.no_grad()
    def score(ids: list[list[int]], words: list[list[int | None]]) -> dict[str, torch.Tensor]:
        if m.kind == "masked_lm":
            def masked_logits(x: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
                logits = model(input_ids=x, attention_mask=mask).logits  # (R, T, V)
                return logits[torch.arange(len(pos), device=pos.device), pos]  # (R, V)
            return masked_lm_scores(masked_logits, ids, m.mask_id, m.pad_id, m.prefix, m.suffix, device, words,
                                    rows=64)
        if m.kind == "electra_discriminator":
            def original_logp(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
                return F.logsigmoid(-model(input_ids=x, attention_mask=mask).logits.float())  # (B, T)
            return {"disc": per_token_sum(device, original_logp, ids, m.prefix, m.suffix, m.pad_id)}
        if m.kind == "permutation_lm":
            def query_logits(x: torch.Tensor, perm: torch.Tensor, mapping: torch.Tensor) -> torch.Tensor:
                return model(input_ids=x, perm_mask=perm, target_mapping=mapping).logits[:, 0]  # (n, V)
            return permutation_scores(query_logits, ids, device, words)

        def next_token_logp(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            logits = model(input_ids=x, attention_mask=mask).logits[:, :-1].float()  # (B, T - 1, V)
            logp = F.log_softmax(logits, -1).gather(2, x[:, 1:, None]).squeeze(2)  # token t given those before
            return F.pad(logp, (1, 0))  # (B, T): the first token has nothing before it
        # after the BOS token; without one the first token is not scored (nothing predicts it)
        return {"loglik": per_token_sum(device, next_token_logp, ids, m.prefix, [], m.pad_id)}
    return score
