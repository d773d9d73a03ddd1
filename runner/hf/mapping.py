"""Hugging Face transformers interop: a rename table between our parameter names and theirs,
export to a `save_pretrained` directory, and initialisation from a local checkpoint directory.

Attention projections travel in the layout of the transformers class (`qkv_layout`): BERT, RoBERTa, ALBERT and
ELECTRA keep query, key and value apart, ModernBERT fuses them into one Wqkv; a model trained with the other
model.qkv is split or fused on the way out and back on the way in, so model.qkv never blocks an export."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from runner.data.tokenizer import export_tokenizer, special_added_tokens
from runner.config.errors import ConfigError
from runner.models.config import EncoderConfig, embedding_width
from runner.hf.xlnet import hf_config as xlnet_config
from runner.hf.xlnet import to_hf_state
from runner.hf.xlnet import from_hf_state

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
# ModernBERT (transformers' ModernBertForMaskedLM): pre-norm, no position table, fused attention projections
_ENCODERS["modernbert"] = [
    (r"encoder\.embeddings\.word_embeddings\.weight", "model.embeddings.tok_embeddings.weight"),
    (r"encoder\.embeddings\.norm\.(weight|bias)", "model.embeddings.norm.\\1"),
    (r"encoder\.layers\.(\d+)\.attn_norm\.(weight|bias)", "model.layers.\\1.attn_norm.\\2"),
    (r"encoder\.layers\.(\d+)\.attention\.qkv\.(weight|bias)", "model.layers.\\1.attn.Wqkv.\\2"),
    (r"encoder\.layers\.(\d+)\.attention\.out\.(weight|bias)", "model.layers.\\1.attn.Wo.\\2"),
    (r"encoder\.layers\.(\d+)\.ffn_norm\.(weight|bias)", "model.layers.\\1.mlp_norm.\\2"),
    (r"encoder\.layers\.(\d+)\.intermediate\.(weight|bias)", "model.layers.\\1.mlp.Wi.\\2"),
    (r"encoder\.layers\.(\d+)\.output\.(weight|bias)", "model.layers.\\1.mlp.Wo.\\2"),
    (r"encoder\.final_norm\.(weight|bias)", "model.final_norm.\\1"),
]
# DistilBERT (transformers' DistilBertForMaskedLM): BERT's post-norm blocks under other names, no segment table
_DISTIL_LAYER = "distilbert.transformer.layer.\\1"
_ENCODERS["distilbert"] = [
    (r"encoder\.embeddings\.norm\.(weight|bias)", "distilbert.embeddings.LayerNorm.\\1"),
    (r"encoder\.embeddings\.(word_embeddings|position_embeddings)\.weight", "distilbert.embeddings.\\1.weight"),
    (r"encoder\.layers\.(\d+)\.attention\.query\.(weight|bias)", _DISTIL_LAYER + ".attention.q_lin.\\2"),
    (r"encoder\.layers\.(\d+)\.attention\.key\.(weight|bias)", _DISTIL_LAYER + ".attention.k_lin.\\2"),
    (r"encoder\.layers\.(\d+)\.attention\.value\.(weight|bias)", _DISTIL_LAYER + ".attention.v_lin.\\2"),
    (r"encoder\.layers\.(\d+)\.attention\.out\.(weight|bias)", _DISTIL_LAYER + ".attention.out_lin.\\2"),
    (r"encoder\.layers\.(\d+)\.attn_norm\.(weight|bias)", _DISTIL_LAYER + ".sa_layer_norm.\\2"),
    (r"encoder\.layers\.(\d+)\.intermediate\.(weight|bias)", _DISTIL_LAYER + ".ffn.lin1.\\2"),
    (r"encoder\.layers\.(\d+)\.output\.(weight|bias)", _DISTIL_LAYER + ".ffn.lin2.\\2"),
    (r"encoder\.layers\.(\d+)\.ffn_norm\.(weight|bias)", _DISTIL_LAYER + ".output_layer_norm.\\2"),
]
FUSED_QKV_FAMILIES = ("modernbert",)  # transformers classes with one Wqkv (rows q, k, v); the others: three
_HEADS = {
    "modernbert": [  # the decoder's weight is tied to the token embeddings, its bias is our head's
        (r"objective\.mlm_head\.transform\.(weight|bias)", "head.dense.\\1"),
        (r"objective\.mlm_head\.norm\.(weight|bias)", "head.norm.\\1"),
        (r"objective\.mlm_head\.bias", "decoder.bias"),
    ],
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
    "distilbert": [  # vocab_projector's weight is tied to the word embeddings
        (r"objective\.mlm_head\.transform\.(weight|bias)", "vocab_transform.\\1"),
        (r"objective\.mlm_head\.norm\.(weight|bias)", "vocab_layer_norm.\\1"),
        (r"objective\.mlm_head\.bias", "vocab_projector.bias"),
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


_QKV_NAME = re.compile(r"(.*\.attention)\.(qkv|query|key|value)\.(weight|bias)")
_QKV_PARTS = ("query", "key", "value")


def qkv_layout(state: Mapping[str, torch.Tensor], fused: bool) -> dict[str, torch.Tensor]:
    """state (tensors under our names) with every attention's projections in one layout, the rest as it is:
    fused, one `attention.qkv` whose rows are queries, keys, values (model.qkv=fused, transformers' Wqkv); or
    separate `attention.query|key|value` (model.qkv=separate, BERT's). The one conversion both directions use:
    export turns a model into its transformers class's layout, import turns that back into the model's."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        m = _QKV_NAME.fullmatch(name)
        if m is None or (m[2] == "qkv") == fused:  # not a projection, or already in the layout
            out[name] = tensor
        elif not fused:  # qkv -> query, key, value
            for part, rows in zip(_QKV_PARTS, tensor.chunk(3, dim=0)):
                out[f"{m[1]}.{part}.{m[3]}"] = rows
        else:  # query, key, value -> qkv, at the query's place; a projection missing one of them stays as it is
            parts = [state.get(f"{m[1]}.{part}.{m[3]}") for part in _QKV_PARTS]
            if any(p is None for p in parts):
                out[name] = tensor
            elif m[2] == "query":
                out[f"{m[1]}.qkv.{m[3]}"] = torch.cat(parts, dim=0)
    return out


def to_hf_state_dict(module: nn.Module | dict[str, torch.Tensor], family: str) -> dict[str, torch.Tensor]:
    """Our module's state dict (or a dict of tensors under our names) under transformers' names, attention
    projections fused or split as the family's class holds them (tied decoder weights are left to transformers)."""
    out = {}
    state = module if isinstance(module, dict) else module.state_dict()
    for name, tensor in qkv_layout(state, family in FUSED_QKV_FAMILIES).items():
        hf = to_hf_name(name, family)
        if hf is None:
            raise KeyError(f"parameter {name!r} has no transformers counterpart for family {family!r}")
        out[hf] = tensor
    return out


def hf_config(config: EncoderConfig, nsp: bool, specials: dict[str, int], discriminator: bool = False):
    """The transformers config object equivalent to ours (ELECTRA: of the discriminator or the generator)."""
    import transformers

    if config.family == "modernbert":
        return _modernbert_config(config, specials)
    if config.family == "xlnet":  # runner/hf/xlnet.py: its names and config

        return xlnet_config(config)
    if config.family == "distilbert":
        return transformers.DistilBertConfig(
            architectures=["DistilBertForMaskedLM"], vocab_size=config.vocab_size, dim=config.hidden_size,
            n_layers=config.num_layers, n_heads=config.num_heads, hidden_dim=config.intermediate_size,
            activation=config.activation, max_position_embeddings=config.max_position_embeddings,
            dropout=config.hidden_dropout, attention_dropout=config.attention_dropout,
            initializer_range=config.initializer_range, sinusoidal_pos_embds=False, tie_word_embeddings=True,
            **{"pad_token_id": config.pad_token_id, **specials})
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


def modernbert_layer_types(config: EncoderConfig) -> list[str]:
    """transformers' ModernBERT layer_types of our layers: full_attention where global, else sliding_attention."""
    return ["full_attention" if config.global_layer(i) else "sliding_attention" for i in range(config.num_layers)]


def _modernbert_activations(config: EncoderConfig) -> dict[str, str]:
    """ModernBERT's two activations: its GLU's (ours: model.activation, or silu for ffn=swiglu) and its head's."""
    return {"hidden_activation": "silu" if config.ffn == "swiglu" else config.activation,
            "classifier_activation": config.activation}


def _modernbert_config(config: EncoderConfig, specials: dict[str, int]):
    """transformers' ModernBertConfig of ours: model.bias sets every bias flag but the decoder's (always there),
    layer_types spell out global_every and local_window, the rope thetas go per layer type."""
    import transformers

    local = config.local_rope_theta if config.local_rope_theta is not None else config.rope_theta
    window = {} if config.local_window is None else {"local_attention": config.local_window}
    # special ids our tokenizer has (export passes them); ModernBERT's own defaults index its 50k vocabulary
    ids = {"pad_token_id": config.pad_token_id, "bos_token_id": None, "eos_token_id": None, "cls_token_id": None,
           "sep_token_id": None, **specials}
    return transformers.ModernBertConfig(
        architectures=["ModernBertForMaskedLM"], vocab_size=config.vocab_size, hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size, num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads, max_position_embeddings=config.max_position_embeddings,
        initializer_range=config.initializer_range, norm_eps=config.layer_norm_eps, norm_bias=config.bias,
        attention_bias=config.bias, mlp_bias=config.bias, classifier_bias=config.bias, decoder_bias=True,
        attention_dropout=config.attention_dropout, embedding_dropout=config.hidden_dropout,
        mlp_dropout=config.hidden_dropout, classifier_dropout=config.hidden_dropout,
        layer_types=modernbert_layer_types(config), tie_word_embeddings=True,
        rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": config.rope_theta},
                         "sliding_attention": {"rope_type": "default", "rope_theta": local}},
        **_modernbert_activations(config), **window, **ids)


def hf_model_class(family: str, nsp: bool, discriminator: bool = False):
    """The transformers class whose parameters ours map onto (ELECTRA: discriminator or generator / MLM)."""
    import transformers

    if family == "roberta":
        return transformers.RobertaForMaskedLM
    if family == "modernbert":
        if nsp:
            raise ConfigError("model.family=modernbert has no transformers class with a next-sentence head; "
                              "use objective=mlm to export")
        return transformers.ModernBertForMaskedLM
    if family == "electra":
        if nsp:
            raise ConfigError("model.family=electra has no transformers class with a next-sentence head; "
                              "use objective=mlm or rtd, or model.family=bert, to export")
        return transformers.ElectraForPreTraining if discriminator else transformers.ElectraForMaskedLM
    if family == "xlnet":
        return transformers.XLNetLMHeadModel
    if family == "distilbert":
        if nsp:
            raise ConfigError("model.family=distilbert has no transformers class with a next-sentence head; use "
                              "objective=mlm or distill to export")
        return transformers.DistilBertForMaskedLM
    if family == "albert":  # nsp: the sentence-order head (albert.pooler + sop_classifier)
        return transformers.AlbertForPreTraining if nsp else transformers.AlbertForMaskedLM
    return transformers.BertForPreTraining if nsp else transformers.BertForMaskedLM


# The later improvements (runner/models/config.py) that transformers' BERT, RoBERTa, ALBERT and ELECTRA classes
# cannot hold: (key, the value those classes have, what they do instead). model.qkv is not one: it is split.
_CLASSIC = [
    ("position", "learned", "learn a position table"),
    ("ffn", "mlp", "have a dense, activation, dense feed-forward"),
    ("norm_position", "post", "normalise after each residual"),
    ("norm", "layernorm", "use LayerNorm"),
    ("bias", True, "have biases in every linear layer and LayerNorm"),
    ("local_window", None, "attend over the whole sequence in every layer"),
    ("embedding_norm", True, "normalise the embeddings"),
]
# What transformers' ModernBERT fixes: (key, its value, what it does). ffn=swiglu is its GLU with silu, any
# model.bias its flags (all equal), local_window/global_every its layer_types, qkv=separate fused at export.
_MODERN = [
    ("position", "rope", "rotates queries and keys"),
    ("norm_position", "pre", "normalises before each block, with a final norm"),
    ("norm", "layernorm", "uses LayerNorm"),
    ("embedding_norm", True, "normalises the embeddings (its first layer has no attention norm)"),
    ("type_vocab_size", 0, "has no segment embeddings"),
    ("embedding_size", None, "has no embedding projection"),
    ("share", "none", "shares no layers"),
]


def _fmt(value: Any) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def hf_unsupported(config: EncoderConfig, nsp: bool = False) -> str | None:
    """Why no transformers class can hold this model (None when one can): transformers shares only ALBERT's whole
    layers, projects embeddings only in ALBERT (always, so an ALBERT needs model.embedding_size), and has a
    sentence-pair head (nsp: objective=mlm_nsp or mlm_sop) only in BERT's and ALBERT's pretraining classes; its
    BERT-family classes have none of the later improvements but a fused QKV (split at export), and its ModernBERT
    has them in one combination only (_MODERN). One line, naming the key."""
    if config.family == "txl":
        return ("model.family=txl has no transformers class (TransfoXL was deprecated in transformers 4.35 and "
                "removed in 5); the run's checkpoints/last.pt holds the model")
    if config.family == "distilbert":
        for key, value, does in [*_CLASSIC, ("type_vocab_size", 0, "has no segment embeddings"),
                                 ("embedding_size", None, "has no embedding projection"),
                                 ("share", "none", "shares no layers"), ("layer_norm_eps", 1e-12,
                                                                         "fixes its LayerNorm epsilon at 1e-12")]:
            if getattr(config, key) != value:
                return (f"model.{key}={_fmt(getattr(config, key))} has no transformers DistilBERT counterpart (it "
                        f"{does}); use model.{key}={_fmt(value)} to export or import")
    if nsp and config.family not in ("bert", "albert"):
        return (f"model.family={config.family} has no transformers class with a next-sentence or sentence-order "
                "head; use objective=mlm or rtd, or model.family=bert or albert, to export")
    if config.family == "modernbert":
        for key, value, does in _MODERN:
            if getattr(config, key) != value:
                return (f"model.{key}={_fmt(getattr(config, key))} has no transformers ModernBERT counterpart (it "
                        f"{does}); use model.{key}={_fmt(value)} to export or import")
        if config.ffn == "mlp":
            return ("model.ffn=mlp has no transformers ModernBERT counterpart (its feed-forward is a GLU); use "
                    "model.ffn=geglu (or swiglu) to export or import")
        return None
    if config.family in ("bert", "roberta", "albert", "electra"):
        for key, value, does in _CLASSIC:
            if getattr(config, key) != value:
                return (f"model.{key}={_fmt(getattr(config, key))} has no transformers {config.family} counterpart "
                        f"(its classes {does}); use model.family=modernbert or model.{key}={_fmt(value)} to "
                        "export or import")
        if config.type_vocab_size == 0:
            return (f"model.type_vocab_size=0 has no transformers {config.family} counterpart (its embeddings "
                    "always add a segment table); use model.type_vocab_size=1 or more to export or import")
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
    if config.family == "xlnet":

        state = module if isinstance(module, dict) else module.state_dict()
        mapped = to_hf_state({k: v for k, v in state.items() if not k.endswith("_extra_state")})
    else:
        mapped = to_hf_state_dict(module, config.family)
    missing, unexpected = hf.load_state_dict(mapped, strict=False)
    # Only the tied decoder (weight = word embeddings, bias = the head's bias) may be filled by tying.
    missing = [k for k in missing if not k.endswith(("decoder.weight", "decoder.bias", "generator_lm_head.weight",
                                                     "vocab_projector.weight", "lm_loss.weight"))]
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
    named = ("pad", "bos", "eos", "cls", "sep") if config.family == "modernbert" else ("pad", "bos", "eos")
    ids = {f"{k}_token_id": tokenizer.token_to_id(t.content) for k, t in tokens.items() if k in named}
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
    bad = _config_mismatches(config, theirs, p / "config.json")
    if bad:
        raise ConfigError("model.init_from does not fit the model: " + "; ".join(bad) +
                          " (set the model keys to match)")
    state = _read_weights(p)
    ours = module.state_dict()
    if config.family == "xlnet":  # runner/hf/xlnet.py: its own names

        encoder, objective = from_hf_state(state)
        loaded = {**{f"encoder.{k}": v for k, v in encoder.items()},
                  **{f"objective.{k}": v for k, v in objective.items()}}
        module.load_state_dict(loaded, strict=False)
        return [name for name in ours if name not in loaded]
    fused = config.family in FUSED_QKV_FAMILIES
    loaded = {}
    for name in qkv_layout(ours, fused):  # our names as the checkpoint's class lays out attention
        hf = to_hf_name(name, config.family)
        if hf is not None and hf in state:
            loaded[name] = state[hf]
    loaded = qkv_layout(loaded, config.qkv == "fused")  # back into this model's layout
    module.load_state_dict(loaded, strict=False)
    return [name for name in ours if name not in loaded]


def _config_mismatches(config: EncoderConfig, theirs: Any, where: Path) -> list[str]:
    """Each way a transformers config differs from the model ours builds (one phrase each; [] when it fits)."""
    modern = config.family == "modernbert"
    if modern != (getattr(theirs, "model_type", None) == "modernbert"):
        return [f"model.family={config.family} but {where} has model_type={getattr(theirs, 'model_type', None)}"]
    pairs = {"hidden_size": "hidden_size", "num_hidden_layers": "num_layers", "num_attention_heads": "num_heads",
             "intermediate_size": "intermediate_size", "vocab_size": "vocab_size",
             "max_position_embeddings": "max_position_embeddings"}
    if not modern:
        pairs["type_vocab_size"] = "type_vocab_size"
    if config.family == "distilbert":  # DistilBertConfig's own names
        pairs = {"dim": "hidden_size", "n_layers": "num_layers", "n_heads": "num_heads",
                 "hidden_dim": "intermediate_size", "vocab_size": "vocab_size",
                 "max_position_embeddings": "max_position_embeddings"}
    if config.family == "xlnet":  # XLNetConfig's: relative positions, no table
        pairs = {"d_model": "hidden_size", "n_layer": "num_layers", "n_head": "num_heads",
                 "d_inner": "intermediate_size", "vocab_size": "vocab_size"}
    if config.family == "albert":
        pairs["embedding_size"] = "embedding_size"
    if modern:
        pairs["norm_eps"] = "layer_norm_eps"
    bad = [f"model.{ours}={getattr(config, ours)} but {where} has {k}={getattr(theirs, k, None)}"
           for k, ours in pairs.items() if getattr(theirs, k, None) != getattr(config, ours)]
    if config.family == "albert":  # one layer group per distinct layer of ours
        groups = 1 if config.share == "all" else config.num_layers
        got = (getattr(theirs, "num_hidden_groups", None), getattr(theirs, "inner_group_num", None))
        if got != (groups, 1):
            bad.append(f"model.share={config.share} needs num_hidden_groups={groups}, inner_group_num=1 but "
                       f"{where} has {got[0]}, {got[1]}")
    if modern:  # what changes the function without changing a shape: layer pattern, window, thetas, activations
        if list(getattr(theirs, "layer_types", None) or []) != modernbert_layer_types(config):
            bad.append(f"model.local_window={_fmt(config.local_window)}, model.global_every={config.global_every} "
                       f"give layer_types {modernbert_layer_types(config)} but {where} has {theirs.layer_types}")
        sliding = "sliding_attention" in modernbert_layer_types(config)
        if sliding and theirs.local_attention != config.local_window:
            bad.append(f"model.local_window={config.local_window} but {where} has "
                       f"local_attention={theirs.local_attention}")
        rope = getattr(theirs, "rope_parameters", None) or {}
        local = config.local_rope_theta if config.local_rope_theta is not None else config.rope_theta
        for kind, key, want in (("full_attention", "rope_theta", config.rope_theta),
                                ("sliding_attention", "local_rope_theta" if config.local_rope_theta is not None
                                 else "rope_theta (local_rope_theta=null)", local)):
            got = (rope.get(kind) or {}).get("rope_theta")
            if kind in theirs.layer_types and got != want:
                bad.append(f"model.{key}={want} but {where} has {kind} rope_theta={got}")
        for k, want in _modernbert_activations(config).items():
            if getattr(theirs, k, None) != want:
                bad.append(f"model.ffn={config.ffn}, model.activation={config.activation} need {k}={want} but "
                           f"{where} has {getattr(theirs, k, None)}")
        for k in ("attention_bias", "mlp_bias", "norm_bias", "classifier_bias"):
            if getattr(theirs, k, None) != config.bias:
                bad.append(f"model.bias={_fmt(config.bias)} but {where} has {k}={_fmt(getattr(theirs, k, None))}")
    return bad


def _read_weights(p: Path) -> dict[str, torch.Tensor]:
    """The tensors stored in a checkpoint directory, exactly as saved (nothing randomly filled in)."""
    if (p / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(p / "model.safetensors")
    if (p / "pytorch_model.bin").is_file():
        import pickle

        try:  # weights_only: a .bin is a pickle, and one naming anything but tensors could run code
            return torch.load(p / "pytorch_model.bin", map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise ConfigError(f"model.init_from={str(p)!r}: pytorch_model.bin was not loaded, it holds more than "
                              "tensors (unpickling it could run code); use a model.safetensors checkpoint") from e
    raise ConfigError(f"model.init_from={str(p)!r} holds no model.safetensors or pytorch_model.bin")
