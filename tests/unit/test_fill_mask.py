"""Fill-mask on an exported model reads its text as the released checkpoints do: RoBERTa's and ALBERT's mask takes
the space before it (AddedToken(mask, lstrip=True, rstrip=False, normalized=False)), so the mask stands exactly
where the word's tokens would, with no stray `Ġ` or `▁` beside it; WordPiece exports (BERT, ELECTRA) are as
before. Tiny models (1 layer, hidden 32) and tokenizers trained on a few sentences keep it fast."""
from __future__ import annotations

import json

import pytest
import torch

from runner.build import Pretrainer
from runner.data.tokenizer import export_tokenizer, special_ids, train_tokenizer
from runner.models.config import EncoderConfig
from runner.models.encoder import Encoder
from runner.hf.mapping import export

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def texts() -> list[str]:
    from runner.data.corpus import load_wiki

    return [d.text for d in load_wiki()[:100]]  # enough for "the", "capital", "is" to be tokens of each kind


# family, tokenizer kind, the fill-mask sentence, its tokens as the released checkpoints' tokenizers read it
CASES = {
    "roberta": ("bpe", "The capital is <mask>.", ["<s>", "The", "Ġcapital", "Ġis", "<mask>", ".", "</s>"]),
    "albert": ("unigram", "The capital is [MASK].", ["[CLS]", "▁the", "▁capital", "▁is", "[MASK]", ".", "[SEP]"]),
    "bert": ("wordpiece", "The capital is [MASK].", ["[CLS]", "the", "capital", "is", "[MASK]", ".", "[SEP]"]),
    "electra": ("wordpiece", "The capital is [MASK].", ["[CLS]", "the", "capital", "is", "[MASK]", ".", "[SEP]"]),
}
VOCAB = 1000


@pytest.fixture(scope="module")
def exported(tmp_path_factory, texts) -> dict[str, tuple]:
    """family -> (export directory, training tokenizer): a tiny MLM model of each family, exported."""
    from runner.objectives.mlm import MaskedLM

    root, out = tmp_path_factory.mktemp("fill_mask"), {}
    for family, (kind, _, _) in CASES.items():
        tok = train_tokenizer(kind, iter(texts), VOCAB, lowercase=kind != "bpe")
        sp = special_ids(tok, kind)
        offset = sp.pad + 1 if family == "roberta" else 0
        config = EncoderConfig(name=f"tiny_{family}", family=family, vocab_size=VOCAB, hidden_size=32,
                               num_layers=1, num_heads=2, intermediate_size=64, max_position_embeddings=64 + offset,
                               embedding_size=16 if family in ("albert", "electra") else None, tokenizer=kind,
                               lowercase=kind != "bpe", pad_token_id=sp.pad, hidden_dropout=0.0,
                               attention_dropout=0.0)
        torch.manual_seed(0)
        module = Pretrainer(Encoder(config), MaskedLM.create(config, sp, tok.get_vocab_size())).eval()
        out[family] = (export(module, config, False, tok, root / family), tok)
    return out


def tokens(directory, text: str) -> list[str]:
    hf = transformers.AutoTokenizer.from_pretrained(directory)
    return hf.convert_ids_to_tokens(hf(text)["input_ids"])


@pytest.mark.parametrize("family", list(CASES))
def test_the_mask_stands_where_the_word_would(exported, family):
    directory, ours = exported[family]
    kind, text, expected = CASES[family]
    assert tokens(directory, text) == expected
    # the sentence with a word in its place reads the same around that word's tokens
    with_word = tokens(directory, text.replace(expected[4], "Rome"))
    assert with_word[:4] == expected[:4] and with_word[-2:] == expected[-2:]  # ... is | Rome's tokens | . end
    mask = expected[4]
    at_start = tokens(directory, f"{mask} is the capital.")
    assert at_start[1] == mask and at_start[2] in ("Ġis", "▁is", "is"), at_start


@pytest.mark.parametrize("family", list(CASES))
def test_fill_mask_pipeline_predicts_the_masked_position(exported, family):
    directory, _ = exported[family]
    _, text, expected = CASES[family]
    fill = transformers.pipeline("fill-mask", model=str(directory), tokenizer=str(directory))
    top = fill(text, top_k=3)
    assert len(top) == 3 and all(0.0 < p["score"] <= 1.0 for p in top)
    hf = fill.tokenizer
    enc = hf(text, return_tensors="pt")
    at = expected.index(hf.mask_token)
    with torch.no_grad():
        logits = fill.model(**enc).logits[0, at]  # the masked position's distribution
    assert [p["token"] for p in top] == logits.topk(3).indices.tolist()
    assert all(hf.mask_token not in p["sequence"] and p["sequence"].lower().startswith("the capital is")
               for p in top)


@pytest.mark.parametrize("family", list(CASES))
def test_special_tokens_are_declared_as_in_the_released_checkpoints(exported, family):
    directory, _ = exported[family]
    added = {t["content"]: t for t in json.loads((directory / "tokenizer.json").read_text())["added_tokens"]}
    mask = CASES[family][2][4]
    for content, t in added.items():  # RoBERTa and ALBERT: only the mask takes the space before it
        assert (t["lstrip"], t["rstrip"], t["normalized"], t["special"]) == \
            (content == mask and family in ("roberta", "albert"), False, False, True), content
    saved = transformers.AutoTokenizer.from_pretrained(directory)
    assert saved.mask_token == mask and saved.mask_token_id == exported[family][1].token_to_id(mask)


PLAIN = ["The capital of France is Paris.", "  Leading and trailing spaces  ", "\nline\n\nbreaks\tand  tabs\n",
         "no\u00a0break\u3000spaces\u2028here", "Ünïcödé café", "", "   ", ".", "a"]


@pytest.mark.parametrize("family", list(CASES))
def test_text_without_special_tokens_encodes_as_in_training(exported, texts, family):
    directory, ours = exported[family]
    hf = transformers.AutoTokenizer.from_pretrained(directory)
    for text in PLAIN + [t[:300] for t in texts[:5]]:
        assert hf(text, add_special_tokens=False)["input_ids"] == ours.encode(text, add_special_tokens=False).ids, \
            repr(text)
        assert hf(text, "A second part.")["input_ids"] == ours.encode(text, "A second part.").ids, repr(text)


def test_wordpiece_pipeline_is_left_as_it_was(exported):
    _, ours = exported["bert"]
    again = export_tokenizer(ours, "wordpiece")
    before, after = json.loads(ours.to_str()), json.loads(again.to_str())
    assert before == after  # every special token was already declared as released BERT declares it


def test_export_tokenizer_is_idempotent_and_keeps_a_foreign_unigram_pipeline(exported):
    from tokenizers import Tokenizer, pre_tokenizers

    _, ours = exported["albert"]
    once = export_tokenizer(ours, "unigram")
    assert once.to_str() == export_tokenizer(once, "unigram").to_str()
    foreign = Tokenizer.from_str(ours.to_str())  # e.g. a released ALBERT tokenizer.json: its pipeline stands
    foreign.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                     pre_tokenizers.Metaspace(prepend_scheme="always")])
    kept = json.loads(export_tokenizer(foreign, "unigram").to_str())
    assert kept["pre_tokenizer"] == json.loads(foreign.to_str())["pre_tokenizer"]
    assert kept["normalizer"] == json.loads(foreign.to_str())["normalizer"]
