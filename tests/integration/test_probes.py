"""Zero-shot probes: minimal pairs, each family's sentence scorer against a hand computation, the report.
This file holds the tests that train or start a process; the others: tests/unit/test_probes.py."""
from __future__ import annotations

import random

import torch

from runner.build import Pretrainer
from runner.models.encoder import Encoder
from runner.objectives.mlm import MaskedLM
from runner.evaluation.probes.pairs import Pair, corrupt
from runner.evaluation.probes.accuracy import Probes
from tests.unit.test_probes import SP, encoder_config


class WordTokenizer:
    """A stand-in tokenizer: one id per word of a fixed vocabulary (what encode_sentences asks of it)."""

    padding = truncation = pre_tokenizer = None

    def __init__(self, words: list[str]):
        self.vocab = {w: i + 5 for i, w in enumerate(words)}

    def encode_batch(self, texts, add_special_tokens=False):
        return [type("E", (), {"ids": [self.vocab[w] for w in t.split()]})() for t in texts]


def test_a_model_trained_on_the_originals_passes_their_pairs():
    originals = ["the cat sat on the warm mat", "a dog ran to the old house", "my friend ate the big red apple",
                 "the bird sang in the tall tree"]
    words = sorted({w for s in originals for w in s.split()})
    rng = random.Random(0)
    pairs = [Pair(s, " ".join(corrupt(s.split(), "swap", rng)), "swap") for s in originals]
    probes = Probes(pairs, WordTokenizer(words), SP, max_tokens=30)
    torch.manual_seed(0)
    c = encoder_config(vocab_size=5 + len(words), hidden_size=32)
    module = Pretrainer(Encoder(c), MaskedLM.create(c, SP, c.vocab_size, mask_prob=0.3))
    ids = [probes.ids[i] for i in range(len(originals))]  # the originals only
    opt = torch.optim.Adam(module.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.tensor([[SP.cls, *x, SP.sep] for x in ids]),
             "attention_mask": torch.ones(len(ids), 9, dtype=torch.long)}
    batch["special_tokens_mask"] = batch["input_ids"].lt(SP.num_special)
    for _ in range(100):  # memorise the four sentences
        b = module.objective.prepare(batch, g)
        loss, _ = module(b, module.objective.normalizers(b))
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = probes.evaluate(module.objective, module.encoder)
    assert out["swap"] == 1.0 and out["overall"] == 1.0 and out["overall_lo"] > 0.5
    assert probes.scorers == ["pll"] and probes.counts() == {"swap": 4}
