"""ModernBERT (model.family=modernbert) against transformers' ModernBertForMaskedLM: the presets' parameter counts
(meta device), logits on identical weights over padded batches longer than the sliding window, export and reload
through the Auto classes and fill-mask, import (model.init_from) in either QKV layout; and the BERT family refusing
the options transformers' BERT classes cannot hold, but exporting a fused QKV split. Tiny configs keep it fast.
The tests of this file that train or start a process: tests/integration/test_modernbert.py."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from runner.build import Pretrainer, parameter_counts, preset_config
from runner.data.tokenizer import SpecialIds
from runner.config.errors import ConfigError
from runner.models.config import EncoderConfig
from runner.models.encoder import Encoder
from runner.hf.mapping import build_hf_model, export, hf_config, hf_unsupported, load_hf_weights, to_hf_state_dict
from runner.objectives.mlm import MaskedLM


transformers = pytest.importorskip("transformers")


BPE_SP = SpecialIds(pad=1, unk=3, cls=0, sep=2, mask=4, num_special=5)


BERT_SP = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4, num_special=5)


# transformers' ModernBertForMaskedLM(...).num_parameters(): base with ModernBertConfig's defaults; large with
# hidden 1024, intermediate 2624, 28 layers, 16 heads (the released answerdotai/ModernBERT-large, "395M")
COUNTS = {"modernbert_base": 149_655_232, "modernbert_large": 395_881_664}


def tiny(**overrides) -> EncoderConfig:
    """A 4-layer ModernBERT (hidden 64, 4 heads): global layers 0 and 3, windows of 8 tokens (4 either side) in 1
    and 2. initializer_range 0.1 makes logits depend visibly on the window and the rope thetas."""
    base = dict(name="tiny_modernbert", family="modernbert", vocab_size=200, hidden_size=64, num_heads=4,
                intermediate_size=96, num_layers=4, max_position_embeddings=64, type_vocab_size=0,
                layer_norm_eps=1e-5, hidden_dropout=0.0, attention_dropout=0.0, initializer_range=0.1,
                tokenizer="bpe", lowercase=False, position="rope", rope_theta=160000.0, local_rope_theta=10000.0,
                ffn="geglu", norm_position="pre", bias=False, embedding_norm=True, local_window=8, global_every=3,
                qkv="fused", pad_token_id=BPE_SP.pad)
    return EncoderConfig(**{**base, **overrides})


def pretrainer(config: EncoderConfig, seed: int = 0, sp: SpecialIds = BPE_SP) -> Pretrainer:
    """Encoder + MLM head, every tensor (norms and biases too) moved off its constant init so that no swapped or
    dropped tensor goes unnoticed."""
    torch.manual_seed(seed)
    module = Pretrainer(Encoder(config), MaskedLM.create(config, sp, config.vocab_size, span="token")).eval()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return module


def batch(pad: int, vocab: int = 200, length: int = 24):
    """3 right-padded rows of 24 tokens (3x the window): full, 15 real, 4 real (padding far from any real token)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (3, length), generator=g)
    mask = torch.ones_like(ids)
    for row, real in ((1, 15), (2, 4)):
        ids[row, real:], mask[row, real:] = pad, 0
    return ids, mask


def ours_logits(module: Pretrainer, ids, mask, types=None) -> torch.Tensor:
    with torch.no_grad():
        return module.objective.mlm_logits(module.encoder, module.encoder(ids, types, mask))


def theirs_logits(model, ids, mask, **extra) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, **extra).logits


def max_diff(a, b, mask) -> float:
    real = mask.bool()
    return float((a[real] - b[real]).abs().max())


@pytest.mark.parametrize("name", ["modernbert_base", "modernbert_large", "modernbert"])
def test_preset_counts_equal_transformers(name):
    config = preset_config(name)
    with torch.device("meta"):
        ours = Pretrainer(Encoder(config), MaskedLM.create(config, BPE_SP, config.vocab_size))
        theirs = transformers.ModernBertForMaskedLM(hf_config(config, False, {}))
    assert parameter_counts(ours)["total"] == theirs.num_parameters()
    assert set(to_hf_state_dict(ours, "modernbert")) | {"decoder.weight"} == set(theirs.state_dict())
    if name in COUNTS:
        assert parameter_counts(ours)["total"] == COUNTS[name]


def test_base_preset_is_transformers_default_modernbert():
    """modernbert_base's transformers config is ModernBertConfig() but for our tokenizer's special ids."""
    ours = hf_config(preset_config("modernbert_base"), False, {}).to_dict()
    theirs = transformers.ModernBertConfig().to_dict()
    with torch.device("meta"):
        assert transformers.ModernBertForMaskedLM(transformers.ModernBertConfig()).num_parameters() == 149_655_232
    differ = {k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k)}
    assert differ <= {"architectures", "pad_token_id", "bos_token_id", "eos_token_id", "cls_token_id",
                      "sep_token_id"}, differ


@pytest.mark.parametrize("qkv", ["fused", "separate"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_logits_equal_transformers_on_identical_weights(qkv, attn):
    config = tiny(qkv=qkv)
    ours = pretrainer(config)
    theirs = build_hf_model(ours, config, False)
    theirs.set_attn_implementation(attn)
    ids, mask = batch(config.pad_token_id)
    ref = theirs_logits(theirs, ids, mask)
    assert max_diff(ours_logits(ours, ids, mask), ref, mask) <= 1e-4
    # the comparison sees the window and the local theta: without them transformers' logits are far off
    for other in (dict(local_window=None), dict(local_rope_theta=None)):
        changed = build_hf_model(ours, dataclasses.replace(config, **other), False)
        changed.set_attn_implementation(attn)
        assert max_diff(theirs_logits(changed, ids, mask), ref, mask) > 1e-2, other


@pytest.mark.parametrize("overrides", [dict(ffn="swiglu", bias=True), dict(local_window=7, global_every=2,
                                                                            activation="gelu_new"),
                                       dict(local_window=None)])
def test_logits_equal_transformers_for_other_supported_options(overrides):
    config = tiny(**overrides)
    ours = pretrainer(config)
    ids, mask = batch(config.pad_token_id)
    assert max_diff(ours_logits(ours, ids, mask), theirs_logits(build_hf_model(ours, config, False), ids, mask),
                    mask) <= 1e-4


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny ModernBERT with a byte-level BPE tokenizer trained on 100 wiki summaries, exported."""
    from runner.data.corpus import load_wiki
    from runner.data.tokenizer import special_ids, train_tokenizer

    tok = train_tokenizer("bpe", iter([d.text for d in load_wiki()[:100]]), 400, lowercase=False)
    sp = special_ids(tok, "bpe")
    config = tiny(vocab_size=400, pad_token_id=sp.pad)
    module = pretrainer(config, sp=sp)
    out = export(module, config, False, tok, tmp_path_factory.mktemp("modernbert") / "hf")
    return out, module, config, tok, sp


def test_export_reloads_with_auto_classes(exported):
    directory, module, config, tok, sp = exported
    saved = json.loads((directory / "config.json").read_text())
    assert saved["model_type"] == "modernbert" and saved["architectures"] == ["ModernBertForMaskedLM"]
    assert (saved["pad_token_id"], saved["cls_token_id"], saved["sep_token_id"]) == (sp.pad, sp.cls, sp.sep)
    model = transformers.AutoModelForMaskedLM.from_pretrained(directory).eval()
    assert type(model).__name__ == "ModernBertForMaskedLM"
    ids, mask = batch(sp.pad, vocab=400)
    assert max_diff(ours_logits(module, ids, mask), theirs_logits(model, ids, mask), mask) <= 1e-4
    hf_tok = transformers.AutoTokenizer.from_pretrained(directory)
    text = "The capital of France is Paris."
    assert hf_tok(text)["input_ids"] == tok.encode(text).ids
    assert "token_type_ids" not in hf_tok(text)  # ModernBERT has no segments


def test_fill_mask_pipeline_on_the_export(exported):
    directory, module, *_ = exported
    fill = transformers.pipeline("fill-mask", model=str(directory), tokenizer=str(directory))
    text = "The capital of France is <mask>."
    top = fill(text, top_k=3)
    assert len(top) == 3 and all(0.0 < p["score"] <= 1.0 for p in top)
    enc = fill.tokenizer(text, return_tensors="pt")
    at = enc["input_ids"][0].tolist().index(fill.tokenizer.mask_token_id)
    ours = ours_logits(module, enc["input_ids"], enc["attention_mask"])[0, at]
    assert [p["token"] for p in top] == ours.topk(3).indices.tolist()


@pytest.mark.parametrize("qkv", ["fused", "separate"])
def test_init_from_round_trip(exported, qkv):
    directory, src, config, _, sp = exported
    dst = pretrainer(dataclasses.replace(config, qkv=qkv), seed=1, sp=sp)
    assert load_hf_weights(dst, dst.encoder.config, str(directory)) == []
    ids, mask = batch(sp.pad, vocab=400)
    assert max_diff(ours_logits(dst, ids, mask), ours_logits(src, ids, mask), mask) <= 1e-5
    if qkv == "fused":
        for (name, a), (_, b) in zip(src.state_dict().items(), dst.state_dict().items()):
            assert torch.equal(a, b), name


@pytest.mark.parametrize("overrides,key", [(dict(local_window=16), "model.local_window=16"),
                                           (dict(global_every=2), "model.local_window=8, model.global_every=2"),
                                           (dict(rope_theta=10000.0), "model.rope_theta=10000.0"),
                                           (dict(bias=True), "model.bias=true"),
                                           (dict(ffn="swiglu"), "model.ffn=swiglu"),
                                           (dict(layer_norm_eps=1e-12), "model.layer_norm_eps=1e-12"),
                                           (dict(hidden_size=32), "model.hidden_size=32")])
def test_init_from_rejects_another_modernbert(exported, overrides, key):
    directory, _, config, _, sp = exported
    other = pretrainer(dataclasses.replace(config, **overrides), sp=sp)
    with pytest.raises(ConfigError, match="model.init_from does not fit") as e:
        load_hf_weights(other, other.encoder.config, str(directory))
    assert key in str(e.value) and "\n" not in str(e.value)


def test_init_from_reads_the_released_checkpoints_config_keys(tmp_path):
    """answerdotai/ModernBERT-*'s config.json predates layer_types and rope_parameters (global_attn_every_n_layers,
    global_rope_theta, local_rope_theta): transformers reads those, and so does the import's fit check."""
    config = tiny()
    src = pretrainer(config)
    build_hf_model(src, config, False).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    for key in ("layer_types", "rope_parameters"):
        saved.pop(key)
    saved.update(global_attn_every_n_layers=3, global_rope_theta=160000.0, local_rope_theta=10000.0,
                 classifier_pooling="mean", transformers_version="4.48.0")
    (tmp_path / "config.json").write_text(json.dumps(saved))
    dst = pretrainer(config, seed=1)
    assert load_hf_weights(dst, config, str(tmp_path)) == []
    ids, mask = batch(config.pad_token_id)
    assert max_diff(ours_logits(dst, ids, mask), ours_logits(src, ids, mask), mask) <= 1e-5
    other = tiny(global_every=2, local_rope_theta=5000.0)
    with pytest.raises(ConfigError, match="model.local_window=8, model.global_every=2 .*; model.local_rope_theta=5000"):
        load_hf_weights(pretrainer(other), other, str(tmp_path))


def test_init_from_rejects_another_family(exported, tmp_path):
    directory, *_ = exported
    bert = EncoderConfig(vocab_size=400, hidden_size=64, num_heads=4, intermediate_size=96, num_layers=4,
                         max_position_embeddings=64, hidden_dropout=0.0, attention_dropout=0.0)
    module = pretrainer(bert, sp=BERT_SP)
    with pytest.raises(ConfigError, match="model.family=bert but .* has model_type=modernbert"):
        load_hf_weights(module, bert, str(directory))


@pytest.mark.parametrize("family", ["bert", "roberta", "albert", "electra"])
@pytest.mark.parametrize("overrides,key", [(dict(position="rope"), "model.position=rope"),
                                           (dict(ffn="geglu"), "model.ffn=geglu"),
                                           (dict(norm_position="pre"), "model.norm_position=pre"),
                                           (dict(norm="rmsnorm"), "model.norm=rmsnorm"),
                                           (dict(bias=False), "model.bias=false"),
                                           (dict(local_window=8), "model.local_window=8"),
                                           (dict(embedding_norm=False), "model.embedding_norm=false"),
                                           (dict(type_vocab_size=0), "model.type_vocab_size=0")])
def test_bert_family_refuses_modern_options(family, overrides, key):
    config = EncoderConfig(family=family, embedding_size=64 if family == "albert" else None, **overrides)
    why = hf_unsupported(config)
    assert why is not None and why.startswith(key) and "\n" not in why
    assert hf_unsupported(dataclasses.replace(config, **{k: getattr(EncoderConfig(), k) for k in overrides})) is None


def test_bert_family_exports_a_fused_qkv():
    assert hf_unsupported(EncoderConfig(qkv="fused")) is None


@pytest.mark.parametrize("overrides,key", [(dict(position="learned"), "model.position=learned"),
                                           (dict(position="alibi"), "model.position=alibi"),
                                           (dict(ffn="mlp"), "model.ffn=mlp"),
                                           (dict(norm_position="post"), "model.norm_position=post"),
                                           (dict(norm="rmsnorm"), "model.norm=rmsnorm"),
                                           (dict(embedding_norm=False), "model.embedding_norm=false"),
                                           (dict(type_vocab_size=2), "model.type_vocab_size=2"),
                                           (dict(embedding_size=32), "model.embedding_size=32"),
                                           (dict(share="all"), "model.share=all")])
def test_modernbert_refuses_what_transformers_modernbert_cannot_hold(overrides, key):
    why = hf_unsupported(tiny(**overrides))
    assert why is not None and why.startswith(key) and "\n" not in why
    with pytest.raises(ConfigError, match=key):
        build_hf_model(pretrainer(tiny(**overrides)), tiny(**overrides), False)
    assert "next-sentence" in hf_unsupported(tiny(), nsp=True)
    assert hf_unsupported(tiny(qkv="separate", bias=True, ffn="swiglu", local_window=None)) is None


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_fused_qkv_bert_exports_and_imports_with_equal_logits(family, tmp_path):
    sp = BPE_SP if family == "roberta" else BERT_SP
    offset = sp.pad + 1 if family == "roberta" else 0
    config = EncoderConfig(family=family, vocab_size=120, hidden_size=48, num_layers=2, num_heads=4,
                           intermediate_size=96, max_position_embeddings=30 + offset, hidden_dropout=0.0,
                           attention_dropout=0.0, type_vocab_size=1 if family == "roberta" else 2,
                           qkv="fused", pad_token_id=sp.pad)
    ours = pretrainer(config, sp=sp)
    theirs = build_hf_model(ours, config, False)
    assert type(theirs).__name__ == ("RobertaForMaskedLM" if family == "roberta" else "BertForMaskedLM")
    ids, mask = batch(sp.pad, vocab=120)
    types = torch.zeros_like(ids)
    assert max_diff(ours_logits(ours, ids, mask, types),
                    theirs_logits(theirs, ids, mask, token_type_ids=types), mask) <= 1e-4
    theirs.save_pretrained(tmp_path)
    for qkv in ("fused", "separate"):  # back in either layout
        dst = pretrainer(dataclasses.replace(config, qkv=qkv), seed=1, sp=sp)
        assert load_hf_weights(dst, dst.encoder.config, str(tmp_path)) == []
        assert max_diff(ours_logits(dst, ids, mask, types), ours_logits(ours, ids, mask, types), mask) <= 1e-5
