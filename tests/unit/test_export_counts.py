"""Parameters of the exported transformers models (hf/, hf_generator/), as transformers counts them: the numbers a
user compares with the papers, counted without writing files or allocating weights."""
from __future__ import annotations

import dataclasses
import sys
from types import SimpleNamespace

import pytest
import torch

from runner.build import Pretrainer, preset_config
from runner.data.tokenizer import SpecialIds
from runner.models.config import EncoderConfig
from runner.models.encoder import Encoder
from runner.hf.export import exported_counts
from runner.hf.mapping import export, exported_parameters, hf_parameter_count, hf_unsupported

transformers = pytest.importorskip("transformers")

BERT_SP = SpecialIds(pad=0, unk=100, cls=101, sep=102, mask=103, num_special=104)
ROBERTA_SP = SpecialIds(pad=1, unk=3, cls=0, sep=2, mask=50264, num_special=5)
ELECTRA_SMALL = {"hf": 13_549_057, "hf_generator": 4_620_026}  # ElectraForPreTraining, ElectraForMaskedLM


def make_objective(name: str, config: EncoderConfig, specials: SpecialIds = BERT_SP, **options):
    """The one place this file builds an objective, as a run does from objective=<name> and its options."""
    from runner.objectives.mlm import MaskedLM
    from runner.objectives.mlm_nsp import MaskedLMWithNSP
    from runner.objectives.mlm_sop import MaskedLMWithSOP
    from runner.objectives.rtd import ReplacedTokenDetection

    cls = {"mlm": MaskedLM, "mlm_nsp": MaskedLMWithNSP, "mlm_sop": MaskedLMWithSOP,
           "rtd": ReplacedTokenDetection}[name]
    options.setdefault("span", "token")  # masking changes no shape; whole-word spans would need a word table
    return cls.create(config, specials, config.vocab_size, **options)


def pretrainer(config: EncoderConfig, objective: str, specials: SpecialIds = BERT_SP, **options) -> Pretrainer:
    """Encoder + objective, attached as a run builds them."""
    config = dataclasses.replace(config, pad_token_id=specials.pad)
    return Pretrainer(Encoder(config), make_objective(objective, config, specials, **options))


def counts_of(module: Pretrainer) -> dict[str, int]:
    """What the trainer records: the counts of the objective's declared exports."""
    return exported_parameters(module.objective.exports(module.encoder))


def meta_counts(config: EncoderConfig, objective: str = "mlm", specials: SpecialIds = BERT_SP,
                **options) -> dict[str, int]:
    """What a run's summary records (runner.hf.export.exported_counts), for a module built on the meta device."""
    with torch.device("meta"):
        module = pretrainer(config, objective, specials, **options)
    return exported_counts(SimpleNamespace(objective=module.objective, module=module))


def released(cls_name: str, **config) -> int:
    """transformers' own count of a released architecture, from its config written out by hand."""
    family = cls_name.split("For")[0].lower()
    cfg = getattr(transformers, f"{family.capitalize()}Config")(**config)
    with torch.device("meta"):
        return getattr(transformers, cls_name)(cfg).num_parameters()


# ---- the papers' models ----------------------------------------------------------------------------------------

def test_electra_small_preset_exports_the_released_discriminator_and_generator_sizes():
    config = preset_config("electra_small")
    assert meta_counts(config, "rtd", generator_size=0.25, tie_embeddings="embeddings") == ELECTRA_SMALL
    with torch.device("meta"):  # the module too is shapes only: no weights anywhere
        module = pretrainer(config, "rtd", generator_size=0.25, tie_embeddings="embeddings")
    assert counts_of(module) == ELECTRA_SMALL
    # Shared embeddings are one tensor in our module; each export holds its own copy of them.
    assert sum(ELECTRA_SMALL.values()) > sum(p.numel() for p in module.parameters())


# BERT-Base uncased, RoBERTa-Base, ALBERT-Base (v2): the released configs as transformers writes them
BERT_BASE = {}  # BertConfig's defaults are bert-base-uncased
ROBERTA_BASE = dict(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1)
ALBERT_BASE = dict(vocab_size=30000, embedding_size=128, hidden_size=768, num_attention_heads=12,
                   intermediate_size=3072, num_hidden_groups=1, inner_group_num=1)


@pytest.mark.parametrize("preset,objective,cls_name,config,expected", [
    ("bert_base", "mlm", "BertForMaskedLM", BERT_BASE, 109_514_298),
    ("bert_base", "mlm_nsp", "BertForPreTraining", BERT_BASE, 110_106_428),
    ("roberta_base", "mlm", "RobertaForMaskedLM", ROBERTA_BASE, 124_697_433),
    ("albert_base", "mlm", "AlbertForMaskedLM", ALBERT_BASE, 11_221_680),
    # ALBERT's pair head is one module for SOP and NSP (objective=mlm_nsp on ALBERT exports as AlbertForPreTraining)
    ("albert_base", "mlm_nsp", "AlbertForPreTraining", ALBERT_BASE, 11_813_810),
])
def test_presets_export_the_released_architectures_sizes(preset, objective, cls_name, config, expected):
    ours = preset_config(preset)
    sp = ROBERTA_SP if ours.family == "roberta" else BERT_SP
    with torch.device("meta"):
        module = pretrainer(ours, objective, sp)
    pair = module.objective.pair_head is not None
    assert pair == (objective != "mlm")
    assert counts_of(module) == meta_counts(ours, objective, sp) == {"hf": expected}
    assert released(cls_name, **config) == expected
    if not pair:  # *ForMaskedLM holds exactly our encoder and MLM head (the decoder tied to the embeddings)
        assert sum(p.numel() for p in module.parameters()) == expected


def test_counting_allocates_nothing_even_for_the_largest_presets(monkeypatch):
    import runner.hf.mapping as hf

    built = []
    real = hf.hf_model_class

    def spy(*args, **kw):
        cls = real(*args, **kw)

        def make(config):
            built.append(cls(config))
            return built[-1]
        return make

    monkeypatch.setattr(hf, "hf_model_class", spy)
    large = meta_counts(preset_config("bert_large"), "mlm_nsp")
    assert large == {"hf": 336_226_108}  # BertForPreTraining, bert-large-uncased
    assert len(built) == 1 and {p.device.type for p in built[0].parameters()} == {"meta"}  # shapes only


# ---- what is actually written ----------------------------------------------------------------------------------

def tiny(family: str, **kw) -> EncoderConfig:
    base = dict(name="tiny", family=family, vocab_size=120, hidden_size=32, num_layers=1, num_heads=2,
                intermediate_size=64, max_position_embeddings=40)
    return EncoderConfig(**{**base, **kw})


TEXTS = ["The capital of France is Paris.", "The capital of Italy is Rome.", "Rome is an old city."] * 10


@pytest.mark.parametrize("config,objective,options", [
    (tiny("bert"), "mlm_nsp", {}),
    (tiny("albert", embedding_size=16, share="all", tokenizer="unigram"), "mlm_nsp", {}),
    (tiny("electra", embedding_size=16), "rtd", dict(generator_size=0.5, tie_embeddings="embeddings")),
    (tiny("bert"), "rtd", dict(generator_size=1.0, tie_embeddings="all")),
])
def test_counts_equal_the_written_models(tmp_path, config, objective, options):
    from transformers import AutoModelForMaskedLM, AutoModelForPreTraining

    from runner.data.tokenizer import special_ids, train_tokenizer

    tok = train_tokenizer(config.tokenizer, iter(TEXTS), 100, lowercase=True)
    torch.manual_seed(0)
    module = pretrainer(config, objective, special_ids(tok, config.tokenizer), **options)
    counts = counts_of(module)
    parts = module.objective.exports(module.encoder)
    assert set(counts) == set(parts) == ({"hf", "hf_generator"} if objective == "rtd" else {"hf"})
    for sub, part in parts.items():
        out = export(part.state, part.config, part.pair_head, tok, tmp_path / sub, discriminator=part.discriminator)
        auto = AutoModelForPreTraining if part.pair_head or part.discriminator else AutoModelForMaskedLM
        assert auto.from_pretrained(out).num_parameters() == counts[sub], sub


# ---- nothing to export -----------------------------------------------------------------------------------------

def test_runs_without_a_transformers_class_count_nothing(monkeypatch):
    albert_ablation = tiny("albert", embedding_size=16, share="attention")
    assert hf_unsupported(albert_ablation) is not None and meta_counts(albert_ablation) == {}
    assert meta_counts(tiny("electra"), "mlm_nsp") == {}  # NSP on the ELECTRA architecture
    roberta_sp = SpecialIds(pad=1, unk=3, cls=0, sep=2, mask=4, num_special=5)
    assert meta_counts(tiny("roberta"), "rtd", roberta_sp, generator_size=0.5) == {}  # no ELECTRA with RoBERTa's
    with pytest.raises(Exception, match="model.share=attention"):
        hf_parameter_count(albert_ablation, False)
    monkeypatch.setitem(sys.modules, "transformers", None)  # not installed
    assert meta_counts(tiny("bert")) == {}
