"""Hugging Face transformers interop: a rename table between our parameter names and theirs,
export to a `save_pretrained` directory, and initialisation from a local checkpoint directory."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from runner.data.tokenizer import export_tokenizer, special_added_tokens
from runner.errors import ConfigError
from runner.models.config import EncoderConfig, embedding_width

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
# ALBERT (transformers' AlbertModel): its encoder holds the embedding projection; each of our distinct layers is
# a layer group of one layer (share=all: group 0 applied num_layers times; share=none: num_layers groups).
_ALBERT_LAYER = "albert.encoder.albert_layer_groups.\\1.albert_layers.0"
_ALBERT_ENCODER = [
    (r"encoder\.embeddings\.norm\.(weight|bias)", "albert.embeddings.LayerNorm.\\1"),
    (r"encoder\.embeddings\.(\w+_embeddings)\.weight", "albert.embeddings.\\1.weight"),
    (r"encoder\.embeddings\.project\.(weight|bias)", "albert.encoder.embedding_hidden_mapping_in.\\1"),
    (r"encoder\.layers\.(\d+)\.attention\.(query|key|value)\.(weight|bias)", _ALBERT_LAYER + ".attention.\\2.\\3"),
    (r"encoder\.layers\.(\d+)\.attention\.out\.(weight|bias)", _ALBERT_LAYER + ".attention.dense.\\2"),
    (r"encoder\.layers\.(\d+)\.attn_norm\.(weight|bias)", _ALBERT_LAYER + ".attention.LayerNorm.\\2"),
    (r"encoder\.layers\.(\d+)\.intermediate\.(weight|bias)", _ALBERT_LAYER + ".ffn.\\2"),
    (r"encoder\.layers\.(\d+)\.output\.(weight|bias)", _ALBERT_LAYER + ".ffn_output.\\2"),
    (r"encoder\.layers\.(\d+)\.ffn_norm\.(weight|bias)", _ALBERT_LAYER + ".full_layer_layer_norm.\\2"),
]
_ENCODERS = {"albert": _ALBERT_ENCODER}  # families whose backbone names differ from BERT's (_ENCODER)
# ELECTRA (transformers' ElectraModel): BERT's names under "electra", plus embeddings_project when E != H.
_ENCODERS["electra"] = _ENCODER + [(r"encoder\.embeddings\.project\.(weight|bias)", "{p}.embeddings_project.\\1")]
_HEADS = {
    "bert": [
        (r"objective\.mlm_head\.transform\.(weight|bias)", "cls.predictions.transform.dense.\\1"),
        (r"objective\.mlm_head\.norm\.(weight|bias)", "cls.predictions.transform.LayerNorm.\\1"),
        (r"objective\.mlm_head\.bias", "cls.predictions.bias"),
        # NSP and SOP heads have one shape: either fills the family's pair-head slot (BERT + objective=mlm_sop)
        (r"objective\.(?:nsp|sop)_head\.pooler\.(weight|bias)", "bert.pooler.dense.\\1"),
        (r"objective\.(?:nsp|sop)_head\.classifier\.(weight|bias)", "cls.seq_relationship.\\1"),
    ],
    "roberta": [
        (r"objective\.mlm_head\.transform\.(weight|bias)", "lm_head.dense.\\1"),
        (r"objective\.mlm_head\.norm\.(weight|bias)", "lm_head.layer_norm.\\1"),
        (r"objective\.mlm_head\.bias", "lm_head.bias"),
    ],
    "albert": [
        (r"objective\.mlm_head\.transform\.(weight|bias)", "predictions.dense.\\1"),
        (r"objective\.mlm_head\.norm\.(weight|bias)", "predictions.LayerNorm.\\1"),
        (r"objective\.mlm_head\.bias", "predictions.bias"),
        (r"objective\.(?:sop|nsp)_head\.pooler\.(weight|bias)", "albert.pooler.\\1"),  # nsp: ALBERT + mlm_nsp
        (r"objective\.(?:sop|nsp)_head\.classifier\.(weight|bias)", "sop_classifier.classifier.\\1"),
    ],
    "electra": [  # the generator's head (ElectraForMaskedLM) and the discriminator's (ElectraForPreTraining)
        (r"objective\.mlm_head\.transform\.(weight|bias)", "generator_predictions.dense.\\1"),
        (r"objective\.mlm_head\.norm\.(weight|bias)", "generator_predictions.LayerNorm.\\1"),
        (r"objective\.mlm_head\.bias", "generator_lm_head.bias"),
        (r"objective\.disc_head\.(dense|dense_prediction)\.(weight|bias)", "discriminator_predictions.\\1.\\2"),
    ],
}


def rename_table(family: str) -> list[tuple[str, str]]:
    """Regex pairs mapping our full parameter names onto transformers' for a model family."""
    return [(pat, tpl.replace("{p}", family)) for pat, tpl in _ENCODERS.get(family, _ENCODER) + _HEADS[family]]


def to_hf_name(name: str, family: str) -> str | None:
    """transformers' name for one of our parameters, or None if it has no counterpart."""
    for pat, tpl in rename_table(family):
        if re.fullmatch(pat, name):
            return re.sub(pat, tpl, name)
    return None


def to_hf_state_dict(module: nn.Module | dict[str, torch.Tensor], family: str) -> dict[str, torch.Tensor]:
    """Our module's state dict (or a dict of tensors under our names) under transformers' names (tied decoder
    weights are left to transformers)."""
    out = {}
    for name, tensor in (module if isinstance(module, dict) else module.state_dict()).items():
        hf = to_hf_name(name, family)
        if hf is None:
            raise KeyError(f"parameter {name!r} has no transformers counterpart for family {family!r}")
        out[hf] = tensor
    return out


def hf_config(config: EncoderConfig, nsp: bool, specials: dict[str, int], discriminator: bool = False):
    """The transformers config object equivalent to ours (ELECTRA: of the discriminator or the generator)."""
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
    if config.family == "electra":  # embeddings_project exists there exactly when embedding_size != hidden_size
        return transformers.ElectraConfig(architectures=["ElectraForPreTraining" if discriminator else
                                                         "ElectraForMaskedLM"],
                                          embedding_size=embedding_width(config), **common)
    if config.family == "albert":  # one layer group per distinct layer of ours (see _ALBERT_ENCODER)
        return transformers.AlbertConfig(architectures=["AlbertForPreTraining" if nsp else "AlbertForMaskedLM"],
                                         embedding_size=embedding_width(config), inner_group_num=1,
                                         num_hidden_groups=1 if config.share == "all" else config.num_layers,
                                         classifier_dropout_prob=config.hidden_dropout, **common)
    return transformers.BertConfig(architectures=["BertForPreTraining" if nsp else "BertForMaskedLM"], **common)


def hf_model_class(family: str, nsp: bool, discriminator: bool = False):
    """The transformers class whose parameters ours map onto (ELECTRA: discriminator or generator / MLM)."""
    import transformers

    if family == "roberta":
        return transformers.RobertaForMaskedLM
    if family == "electra":
        if nsp:
            raise ConfigError("model.family=electra has no transformers class with a next-sentence head; "
                              "use objective=mlm or rtd, or model.family=bert, to export")
        return transformers.ElectraForPreTraining if discriminator else transformers.ElectraForMaskedLM
    if family == "albert":  # nsp: the sentence-order head (albert.pooler + sop_classifier)
        return transformers.AlbertForPreTraining if nsp else transformers.AlbertForMaskedLM
    return transformers.BertForPreTraining if nsp else transformers.BertForMaskedLM


def hf_unsupported(config: EncoderConfig, nsp: bool = False) -> str | None:
    """Why no transformers class can hold this model (None when one can): transformers shares only ALBERT's whole
    layers, projects embeddings only in ALBERT (always, so an ALBERT needs model.embedding_size), and has a
    sentence-pair head (nsp: objective=mlm_nsp or mlm_sop) only in BERT's and ALBERT's pretraining classes."""
    if config.family == "txl":
        return ("model.family=txl has no transformers class (TransfoXL was deprecated in transformers 4.35 and "
                "removed in 5); the run's checkpoints/last.pt holds the model")
    if nsp and config.family not in ("bert", "albert"):
        return (f"model.family={config.family} has no transformers class with a next-sentence or sentence-order "
                "head; use objective=mlm or rtd, or model.family=bert or albert, to export")
    if config.family == "albert":
        if config.share in ("attention", "ffn"):
            return (f"model.share={config.share} has no transformers counterpart (ALBERT there shares whole layers "
                    "only); train with model.share=all or none to export or import")
        if config.embedding_size is None:
            return ("model.family=albert without model.embedding_size has no transformers counterpart (its ALBERT "
                    "always projects E -> H); set model.embedding_size (hidden_size for no factorization)")
    elif config.family == "electra":
        if config.share != "none":
            return (f"model.share={config.share} has no transformers ELECTRA counterpart (it shares no layers); "
                    "use model.share=none to export or import")
        if config.embedding_size == config.hidden_size:
            return ("model.embedding_size equals model.hidden_size, but transformers' ELECTRA projects embeddings "
                    "only when they differ; set model.embedding_size=null to export or import")
    elif config.family in ("bert", "roberta"):
        if config.share != "none":
            return (f"model.share={config.share} has no transformers counterpart for model.family={config.family}; "
                    "use model.family=albert (with model.embedding_size) or model.share=none to export or import")
        if config.embedding_size is not None:
            return (f"model.embedding_size is set but transformers' {config.family} has no embedding projection; "
                    "use model.family=albert or model.embedding_size=null to export or import")
    return None


def build_hf_model(module: nn.Module | dict[str, torch.Tensor], config: EncoderConfig, nsp: bool,
                   specials: dict[str, int] | None = None, discriminator: bool = False):
    """A transformers model holding exactly our weights (module, or tensors under our names)."""
    if (why := hf_unsupported(config, nsp)) is not None:
        raise ConfigError(why)
    hf = hf_model_class(config.family, nsp, discriminator)(hf_config(config, nsp, specials or {}, discriminator))
    missing, unexpected = hf.load_state_dict(to_hf_state_dict(module, config.family), strict=False)
    # Only the tied decoder (weight = word embeddings, bias = the head's bias) may be filled by tying.
    missing = [k for k in missing if not k.endswith(("decoder.weight", "decoder.bias", "generator_lm_head.weight"))]
    if missing or unexpected:
        raise RuntimeError(f"export mismatch: missing {missing}, unexpected {unexpected}")
    hf.tie_weights()
    return hf.eval()


def hf_parameter_count(config: EncoderConfig, nsp: bool, discriminator: bool = False) -> int:
    """Parameters of the transformers model an export of this config holds, as transformers counts them
    (`num_parameters()`: each tied or shared tensor once), from the model built on the meta device: shapes only,
    no memory and no initialisation, whatever the size. ConfigError when no transformers class holds it."""
    if (why := hf_unsupported(config, nsp)) is not None:
        raise ConfigError(why)
    with torch.device("meta"):
        hf = hf_model_class(config.family, nsp, discriminator)(hf_config(config, nsp, {}, discriminator))
    return int(hf.num_parameters())


def exported_parameters(parts: Mapping[str, Any]) -> dict[str, int]:
    """Parameters of each model a run exports, as transformers counts them, by export subdirectory ("hf", and
    "hf_generator" for ELECTRA): parts is objective.exports(encoder), each read for its config, pair_head and
    discriminator only; nothing is written and no weights are allocated (hf_parameter_count).
    {} where the run exports nothing: transformers missing, or a part no transformers class holds (hf_unsupported)."""
    try:
        import transformers  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the user's install
        return {}
    if any(hf_unsupported(p.config, bool(p.pair_head)) is not None for p in parts.values()):
        return {}
    return {sub: hf_parameter_count(p.config, bool(p.pair_head), bool(p.discriminator)) for sub, p in parts.items()}


def export(module: nn.Module | dict[str, torch.Tensor], config: EncoderConfig, nsp: bool, tokenizer, out_dir: Path,
           discriminator: bool = False) -> Path:
    """Write a `save_pretrained` directory (weights, config, tokenizer) that AutoModelForMaskedLM loads
    (AutoModelForPreTraining for an ELECTRA discriminator)."""
    try:
        from transformers import PreTrainedTokenizerFast
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our console already reports the export
    except ImportError as e:  # pragma: no cover - depends on the user's install
        raise ConfigError("export needs transformers: pip install -e '.[hf]'") from e
    # Special tokens by name, per tokenizer kind: wordpiece [PAD] [UNK] [CLS] [SEP] [MASK]; unigram (ALBERT)
    # <pad> <unk> [CLS] [SEP] [MASK]; bpe (RoBERTa) <pad> <unk> <s> </s> <mask>, <s> and </s> also bos and eos.
    # Each is declared as the released checkpoints of its kind declare it (RoBERTa's and ALBERT's mask takes the
    # space before it), so fill-mask text reads as there (runner/data/tokenizer.py export_tokenizer).
    tokens = special_added_tokens(config.tokenizer)
    if config.tokenizer == "bpe":
        tokens.update(bos=tokens["cls"], eos=tokens["sep"])
    ids = {f"{k}_token_id": tokenizer.token_to_id(t.content) for k, t in tokens.items() if k in ("pad", "bos", "eos")}
    hf = build_hf_model(module, config, nsp, ids, discriminator)
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    hf.save_pretrained(tmp)
    inputs = ["input_ids", "token_type_ids", "attention_mask"] if config.type_vocab_size > 1 else \
        ["input_ids", "attention_mask"]
    fast = PreTrainedTokenizerFast(tokenizer_object=export_tokenizer(tokenizer, config.tokenizer),
                                   model_max_length=config.max_seq_len, model_input_names=inputs,
                                   **{f"{k}_token": v for k, v in tokens.items()})
    fast.save_pretrained(tmp)
    if out_dir.exists():
        import shutil
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)  # a crash mid-export never leaves a half-written directory under the final name
    return out_dir


def load_hf_weights(module: nn.Module, config: EncoderConfig, path: str) -> list[str]:
    """Initialise our module from a local transformers checkpoint; returns the names left at random init."""
    from transformers import AutoConfig

    if (why := hf_unsupported(config)) is not None:
        raise ConfigError(f"model.init_from={path!r}: {why}")
    p = Path(path).expanduser()
    if not (p / "config.json").is_file():
        raise ConfigError(f"model.init_from={path!r} is not a transformers checkpoint directory "
                          "(no config.json); give a directory written by save_pretrained")
    theirs = AutoConfig.from_pretrained(p)
    pairs = {"hidden_size": "hidden_size", "num_hidden_layers": "num_layers", "num_attention_heads": "num_heads",
             "intermediate_size": "intermediate_size", "vocab_size": "vocab_size",
             "max_position_embeddings": "max_position_embeddings", "type_vocab_size": "type_vocab_size"}
    if config.family == "albert":
        pairs["embedding_size"] = "embedding_size"
    bad = [f"model.{ours}={getattr(config, ours)} but {p / 'config.json'} has {k}={getattr(theirs, k, None)}"
           for k, ours in pairs.items() if getattr(theirs, k, None) != getattr(config, ours)]
    if config.family == "albert":  # one layer group per distinct layer of ours
        groups = 1 if config.share == "all" else config.num_layers
        got = (getattr(theirs, "num_hidden_groups", None), getattr(theirs, "inner_group_num", None))
        if got != (groups, 1):
            bad.append(f"model.share={config.share} needs num_hidden_groups={groups}, inner_group_num=1 but "
                       f"{p / 'config.json'} has {got[0]}, {got[1]}")
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
