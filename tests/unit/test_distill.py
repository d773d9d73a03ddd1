"""objective=distill (DistilBERT): the preset and its parity with transformers, the loss terms against a hand
computation, a teacher from a run or from a transformers directory, student initialisation, a run that learns, the
one-line errors, and experiment=distil's teach-then-distil chain.
The tests of this file that train or start a process: tests/integration/test_distill.py."""
from __future__ import annotations

import pytest
import torch

from runner.build import Pretrainer, build, preset_config
from runner.data.tokenizer import SpecialIds
from runner.config.errors import ConfigError
from runner.models.config import EncoderConfig
from runner.models.encoder import Encoder
from runner.models.heads import MLMHead
from runner.hf.mapping import build_hf_model, hf_parameter_count
from runner.objectives.mlm import MaskedLM
from tests.conftest import TINY, make_cfg


def test_distilbert_counts_as_transformers_does():
    c = preset_config("distilbert")
    with torch.device("meta"):
        ours = sum(p.numel() for m in (Encoder(c), MLMHead(c)) for p in m.parameters())
    assert ours == hf_parameter_count(c, nsp=False) == 66_985_530


def test_distilbert_logits_equal_transformers_on_the_same_weights():
    c = EncoderConfig(family="distilbert", vocab_size=97, hidden_size=32, num_layers=2, num_heads=4,
                      intermediate_size=64, type_vocab_size=0, max_position_embeddings=64, hidden_dropout=0.0,
                      attention_dropout=0.0)
    specials = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4, num_special=5)
    torch.manual_seed(0)
    ours = Pretrainer(Encoder(c), MaskedLM.create(c, specials, 97)).eval()
    theirs = build_hf_model(ours, c, nsp=False)
    assert type(theirs).__name__ == "DistilBertForMaskedLM"
    ids = torch.randint(5, 97, (3, 12))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    with torch.no_grad():
        a = ours.objective.mlm_logits(ours.encoder, ours.encoder(ids, None, mask))
        b = theirs(input_ids=ids, attention_mask=mask).logits
    real = mask.bool()
    assert (a[real] - b[real]).abs().max() <= 1e-5


@pytest.mark.parametrize("overrides,message", [
    (["objective=distill"], "objective=distill needs objective.teacher="),
    (["model=distil", "objective.teacher=/nonexistent", "objective.teach=[]"], "is not a directory"),
    (["model=distil", "objective.temperature=0", "objective.teacher=/x"], "objective.temperature=0"),
])
def test_bad_distillation_settings_are_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message):
        build(make_cfg(*TINY, *overrides, "trainer.max_steps=0"))
