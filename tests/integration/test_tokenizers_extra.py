"""The SentencePiece-style unigram tokenizer (ALBERT's), local tokenizers (data.tokenizer.path), and the note
on a trained vocabulary smaller than model.vocab_size.
This file holds the tests that train or start a process; the others: tests/unit/test_tokenizers_extra.py."""
from __future__ import annotations

import pytest

from runner.build import build
from runner.run import run
from tests.conftest import TINY, make_cfg


@pytest.mark.slow
def test_unigram_training_run_and_hf_export(tmp_path):
    from transformers import AutoModelForPreTraining, AutoTokenizer

    cfg = make_cfg(*TINY, "model=bert", "model.tokenizer=unigram", "objective.span=whole_word",
                   "trainer.max_steps=2", "trainer.eval_every=2", "trainer.export_hf=true")
    built = build(cfg)
    s = run(cfg, built, tmp_path)
    assert s["steps"] == 2 and s["final_train_loss"] is not None and s["hf_export"] == str(tmp_path / "hf")
    ours = built.data.tokenizer
    hf = AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert (hf.pad_token, hf.unk_token, hf.cls_token, hf.sep_token, hf.mask_token) == \
        ("<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]")
    assert (hf.pad_token_id, hf.unk_token_id, hf.cls_token_id, hf.sep_token_id, hf.mask_token_id) == (0, 1, 2, 3, 4)
    text = "The city was founded in 1990."
    assert hf(text)["input_ids"] == ours.encode(text).ids
    pair = hf(text, "A second part.")
    assert pair["input_ids"] == ours.encode(text, "A second part.").ids
    assert pair["token_type_ids"] == ours.encode(text, "A second part.").type_ids
    assert hf.decode(hf(text)["input_ids"], skip_special_tokens=True) == text.lower()
    model = AutoModelForPreTraining.from_pretrained(tmp_path / "hf")
    assert model.config.pad_token_id == 0 and model.config.vocab_size == built.config.vocab_size
    out = model(**hf(text, return_tensors="pt"))
    assert out.prediction_logits.shape[-1] == built.config.vocab_size
