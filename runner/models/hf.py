"""Hugging Face transformers interop: a rename table between our parameter names and theirs,
export to a `save_pretrained` directory, and initialisation from a local checkpoint directory."""
from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from runner.data.tokenizer import ROLES
from runner.errors import ConfigError
from runner.models.config import EncoderConfig

# (our name pattern, transformers' name template); {p} is the backbone prefix ("bert" or "roberta").
_ENCODER = [
    (r"encoder\.embeddings\.norm\.(weight|bias)", "{p}.embeddings.LayerNorm.\\1"),
    (r"encoder\.embeddings\.(\w+_embeddings)\.weight", "{p}.embeddings.\\1.weight"),
    (r"encoder\.layers\.(\d+)\.attention\.(query|key|value)\.(weight|bias)", "{p}.encoder.layer.\\1.attention.self.\\2.\\3"),
    (r"encoder\.layers\.(\d+)\.attention\.out\.(weight|bias)", "{p}.encoder.layer.\\1.attention.output.dense.\\2"),
    (r"encoder\.layers\.(\d+)\.attn_norm\.(weight|bias)", "{p}.encoder.layer.\\1.attention.output.LayerNorm.\\2"),
    (r"encoder\.layers\.(\d+)\.intermediate\.(weight|bias)", "{p}.encoder.layer.\\1.intermediate.dense.\\2"),
    (r"encoder\.layers\.(\d+)\.output\.(weight|bias)", "{p}.encoder.layer.\\1.output.dense.\\2"),
    (r"encoder\.layers\.(\d+)\.ffn_norm\.(weight|bias)", "{p}.encoder.layer.\\1.output.LayerNorm.\\2"),
]
_HEADS = {
    "bert": [
        (r"objective\.mlm_head\.transform\.(weight|bias)", "cls.predictions.transform.dense.\\1"),
        (r"objective\.mlm_head\.norm\.(weight|bias)", "cls.predictions.transform.LayerNorm.\\1"),
        (r"objective\.mlm_head\.bias", "cls.predictions.bias"),
        (r"objective\.nsp_head\.pooler\.(weight|bias)", "bert.pooler.dense.\\1"),
        (r"objective\.nsp_head\.classifier\.(weight|bias)", "cls.seq_relationship.\\1"),
    ],
    "roberta": [
        (r"objective\.mlm_head\.transform\.(weight|bias)", "lm_head.dense.\\1"),
        (r"objective\.mlm_head\.norm\.(weight|bias)", "lm_head.layer_norm.\\1"),
        (r"objective\.mlm_head\.bias", "lm_head.bias"),
    ],
}


def rename_table(family: str) -> list[tuple[str, str]]:
    """Regex pairs mapping our full parameter names onto transformers' for a model family."""
    return [(pat, tpl.replace("{p}", family)) for pat, tpl in _ENCODER + _HEADS[family]]


def to_hf_name(name: str, family: str) -> str | None:
    """transformers' name for one of our parameters, or None if it has no counterpart."""
    for pat, tpl in rename_table(family):
        if re.fullmatch(pat, name):
            return re.sub(pat, tpl, name)
    return None


def to_hf_state_dict(module: nn.Module, family: str) -> dict[str, torch.Tensor]:
    """Our module's state dict under transformers' names (tied decoder weights are left to transformers)."""
    out = {}
    for name, tensor in module.state_dict().items():
        hf = to_hf_name(name, family)
        if hf is None:
            raise KeyError(f"parameter {name!r} has no transformers counterpart for family {family!r}")
        out[hf] = tensor
    return out


def hf_config(config: EncoderConfig, nsp: bool, specials: dict[str, int]):
    """The transformers config object equivalent to ours."""
    import transformers

    common = dict(vocab_size=config.vocab_size, hidden_size=config.hidden_size,
                  num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
                  intermediate_size=config.intermediate_size, hidden_act=config.activation,
                  max_position_embeddings=config.max_position_embeddings, type_vocab_size=config.type_vocab_size,
                  layer_norm_eps=config.layer_norm_eps, hidden_dropout_prob=config.hidden_dropout,
                  attention_probs_dropout_prob=config.attention_dropout,
                  initializer_range=config.initializer_range, **{"pad_token_id": config.pad_token_id, **specials})
    if config.family == "roberta":
        return transformers.RobertaConfig(architectures=["RobertaForMaskedLM"], **common)
    return transformers.BertConfig(architectures=["BertForPreTraining" if nsp else "BertForMaskedLM"], **common)


def hf_model_class(family: str, nsp: bool):
    """The transformers class whose parameters ours map onto."""
    import transformers

    if family == "roberta":
        return transformers.RobertaForMaskedLM
    return transformers.BertForPreTraining if nsp else transformers.BertForMaskedLM


def build_hf_model(module: nn.Module, config: EncoderConfig, nsp: bool, specials: dict[str, int] | None = None):
    """A transformers model holding exactly our weights."""
    hf = hf_model_class(config.family, nsp)(hf_config(config, nsp, specials or {}))
    missing, unexpected = hf.load_state_dict(to_hf_state_dict(module, config.family), strict=False)
    # Only the tied decoder (weight = word embeddings, bias = the head's bias) may be filled by tying.
    missing = [k for k in missing if not k.endswith(("decoder.weight", "decoder.bias"))]
    if missing or unexpected:
        raise RuntimeError(f"export mismatch: missing {missing}, unexpected {unexpected}")
    hf.tie_weights()
    return hf.eval()


def export(module: nn.Module, config: EncoderConfig, nsp: bool, tokenizer, out_dir: Path) -> Path:
    """Write a `save_pretrained` directory (weights, config, tokenizer) that AutoModelForMaskedLM loads."""
    try:
        from transformers import PreTrainedTokenizerFast
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our console already reports the export
    except ImportError as e:  # pragma: no cover - depends on the user's install
        raise ConfigError("export needs transformers: pip install -e '.[hf]'") from e
    # Special tokens by name, per tokenizer kind: wordpiece [PAD] [UNK] [CLS] [SEP] [MASK]; unigram (ALBERT)
    # <pad> <unk> [CLS] [SEP] [MASK]; bpe (RoBERTa) <pad> <unk> <s> </s> <mask>, <s> and </s> also bos and eos.
    tokens = dict(ROLES[config.tokenizer])
    if config.tokenizer == "bpe":
        tokens.update(bos=tokens["cls"], eos=tokens["sep"])
    ids = {f"{k}_token_id": tokenizer.token_to_id(v) for k, v in tokens.items() if k in ("pad", "bos", "eos")}
    hf = build_hf_model(module, config, nsp, ids)
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    hf.save_pretrained(tmp)
    inputs = ["input_ids", "token_type_ids", "attention_mask"] if config.type_vocab_size > 1 else \
        ["input_ids", "attention_mask"]
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=config.max_seq_len,
                                   model_input_names=inputs, **{f"{k}_token": v for k, v in tokens.items()})
    fast.save_pretrained(tmp)
    if out_dir.exists():
        import shutil
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)  # a crash mid-export never leaves a half-written directory under the final name
    return out_dir


def load_hf_weights(module: nn.Module, config: EncoderConfig, path: str) -> list[str]:
    """Initialise our module from a local transformers checkpoint; returns the names left at random init."""
    from transformers import AutoConfig

    p = Path(path).expanduser()
    if not (p / "config.json").is_file():
        raise ConfigError(f"model.init_from={path!r} is not a transformers checkpoint directory "
                          "(no config.json); give a directory written by save_pretrained")
    theirs = AutoConfig.from_pretrained(p)
    pairs = {"hidden_size": "hidden_size", "num_hidden_layers": "num_layers", "num_attention_heads": "num_heads",
             "intermediate_size": "intermediate_size", "vocab_size": "vocab_size",
             "max_position_embeddings": "max_position_embeddings", "type_vocab_size": "type_vocab_size"}
    bad = [f"model.{ours}={getattr(config, ours)} but {p / 'config.json'} has {k}={getattr(theirs, k)}"
           for k, ours in pairs.items() if getattr(theirs, k, None) != getattr(config, ours)]
    if bad:
        raise ConfigError("model.init_from does not fit the model: " + "; ".join(bad) + " (set the model keys to match)")
    state = _read_weights(p)
    ours = module.state_dict()
    loaded, untouched = {}, []
    for name in ours:
        hf = to_hf_name(name, config.family)
        if hf is not None and hf in state:
            loaded[name] = state[hf]
        else:
            untouched.append(name)
    module.load_state_dict(loaded, strict=False)
    return untouched


def _read_weights(p: Path) -> dict[str, torch.Tensor]:
    """The tensors stored in a checkpoint directory, exactly as saved (nothing randomly filled in)."""
    if (p / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(p / "model.safetensors")
    if (p / "pytorch_model.bin").is_file():
        return torch.load(p / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise ConfigError(f"model.init_from={str(p)!r} holds no model.safetensors or pytorch_model.bin")
