"""Our encoder against transformers: parameter counts, logits on identical weights, export and import."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from runner.build import Pretrainer, encoder_config, parameter_counts
from runner.data.tokenizer import SpecialIds
from runner.models.config import EncoderConfig
from runner.models.encoder import Encoder
from runner.hf.mapping import build_hf_model, hf_config, hf_model_class, load_hf_weights, to_hf_state_dict
from runner.objectives.mlm import MaskedLM
from runner.objectives.mlm_nsp import MaskedLMWithNSP
from tests.conftest import make_cfg

transformers = pytest.importorskip("transformers")

BERT_SP = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4, num_special=5)
ROBERTA_SP = SpecialIds(pad=1, unk=3, cls=0, sep=2, mask=4, num_special=5)

# transformers' counts from ../shared/reference/papers.md (sum of parameters, tied weights once)
REFERENCE = [("bert_base", "mlm", 109_514_298), ("bert_base", "mlm_nsp", 110_106_428),
             ("bert_large", "mlm", 335_174_458), ("roberta_base", "mlm", 124_697_433),
             ("roberta_large", "mlm", 355_412_057)]
PRESETS = ["bert_tiny", "bert_mini", "bert_small", "bert_medium", "bert_base", "bert_large", "roberta_base",
           "roberta_large", "bert", "roberta"]


def pretrainer(config: EncoderConfig, nsp: bool) -> Pretrainer:
    """Encoder + objective heads for a config, as a run builds them."""
    sp = ROBERTA_SP if config.family == "roberta" else BERT_SP
    config = dataclasses.replace(config, pad_token_id=sp.pad)
    cls = MaskedLMWithNSP if nsp else MaskedLM
    return Pretrainer(Encoder(config), cls.create(config, sp, config.vocab_size))


def preset(name: str) -> EncoderConfig:
    return encoder_config(make_cfg(f"model={name}"))


@pytest.mark.parametrize("model,objective,expected", REFERENCE)
def test_parameter_count_matches_paper_reference(model, objective, expected):
    with torch.device("meta"):
        ours = pretrainer(preset(model), objective == "mlm_nsp")
    assert parameter_counts(ours)["total"] == expected


@pytest.mark.parametrize("model,nsp", [(m, False) for m in PRESETS] +
                         [(m, True) for m in PRESETS if m.startswith("bert")])  # RoBERTa has no NSP head
def test_parameter_count_equals_transformers(model, nsp):
    config = preset(model)
    with torch.device("meta"):
        ours = pretrainer(config, nsp)
        theirs = hf_model_class(config.family, nsp)(hf_config(dataclasses.replace(config, pad_token_id=ours.encoder.config.pad_token_id), nsp, {}))
    assert parameter_counts(ours)["total"] == sum(p.numel() for p in theirs.parameters())
    assert set(to_hf_state_dict(ours, config.family)) <= set(theirs.state_dict())


def small(family: str) -> EncoderConfig:
    base = dict(vocab_size=120, hidden_size=48, num_layers=2, num_heads=4, intermediate_size=96,
                max_position_embeddings=66, hidden_dropout=0.0, attention_dropout=0.0)
    if family == "roberta":
        return EncoderConfig(family="roberta", type_vocab_size=1, layer_norm_eps=1e-5, tokenizer="bpe", **base)
    return EncoderConfig(**base)


def inputs(family: str, pad: int):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 120, (3, 20), generator=g)
    mask = torch.ones_like(ids)
    ids[1, 14:], mask[1, 14:] = pad, 0  # padding must be handled identically
    types = torch.zeros_like(ids)
    if family == "bert":
        types[:, 10:] = 1
    return ids, types, mask


def assert_logits_match(ours: Pretrainer, theirs, ids, types, mask, pair_logits: str | None = None) -> None:
    """MLM logits at real tokens (and, if pair_logits names transformers' output field, the NSP/SOP logits)
    agree within 1e-4 between our module and a transformers model holding the same weights."""
    with torch.no_grad():
        hidden = ours.encoder(ids, types, mask)
        logits = ours.objective.mlm_logits(ours.encoder, hidden)
        out = theirs(input_ids=ids, token_type_ids=types, attention_mask=mask)
    ref = out.prediction_logits if pair_logits else out.logits
    real = mask.bool()
    assert (logits[real] - ref[real]).abs().max() <= 1e-4
    if pair_logits:
        assert (ours.objective.pair_head(hidden) - getattr(out, pair_logits)).abs().max() <= 1e-4


@pytest.mark.parametrize("family,nsp", [("bert", False), ("bert", True), ("roberta", False)])
def test_logits_equal_transformers_on_identical_weights(family, nsp):
    torch.manual_seed(0)
    ours = pretrainer(small(family), nsp).eval()
    theirs = build_hf_model(ours, ours.encoder.config, nsp)
    assert_logits_match(ours, theirs, *inputs(family, ours.encoder.config.pad_token_id),
                        "seq_relationship_logits" if nsp else None)


def test_sparse_mlm_loss_equals_full_sequence_loss():
    torch.manual_seed(0)
    ours = pretrainer(small("bert"), False).eval()
    ids, types, mask = inputs("bert", 0)
    labels = torch.full_like(ids, -100)
    labels[0, 3], labels[2, 7], labels[2, 19] = 17, 42, 99
    batch = {"input_ids": ids, "token_type_ids": types, "attention_mask": mask, "labels": labels}
    loss, stats = ours(batch, {"mlm": 3})
    full = ours.objective.mlm_logits(ours.encoder, ours.encoder(ids, types, mask))
    expected = torch.nn.functional.cross_entropy(full.view(-1, 120), labels.view(-1), ignore_index=-100)
    assert torch.allclose(loss, expected, atol=1e-6)
    assert int(stats["mlm_count"]) == 3


def assert_weights_round_trip(config: EncoderConfig, tmp_path) -> None:
    """Weights exported to a transformers directory load back into a differently initialised module, all of them."""
    torch.manual_seed(0)
    src = pretrainer(config, True)
    build_hf_model(src, src.encoder.config, True).save_pretrained(tmp_path)
    torch.manual_seed(1)
    dst = pretrainer(config, True)
    assert load_hf_weights(dst, dst.encoder.config, str(tmp_path)) == []
    for (name, a), (_, b) in zip(src.state_dict().items(), dst.state_dict().items()):
        assert torch.equal(a, b), name


def test_load_hf_weights_round_trip(tmp_path):
    assert_weights_round_trip(small("bert"), tmp_path)


def test_load_hf_weights_rejects_other_shapes(tmp_path):
    from runner.config.errors import ConfigError

    src = pretrainer(small("bert"), False)
    build_hf_model(src, src.encoder.config, False).save_pretrained(tmp_path)
    other = pretrainer(dataclasses.replace(small("bert"), hidden_size=64), False)
    with pytest.raises(ConfigError, match="model.hidden_size=64"):
        load_hf_weights(other, other.encoder.config, str(tmp_path))
