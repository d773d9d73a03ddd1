"""Word boundaries from a tokenizer's vocabulary, for whole-word and n-gram masking.

A token either starts a word or continues the word of the token before it. WordPiece marks continuations
("##ing"); byte-level BPE marks word starts instead, with "Ġ" (the byte-level space) in front of a word
that follows a space, so there every token without it continues a word. RoBERTa's first word has no
leading space: the masking code therefore also starts a word at every token that follows a special token
(see runner/objectives/masking.py `word_starts`). SentencePiece-style unigram pieces (ALBERT) mark word starts
too, with "▁" (METASPACE), which every word gets, the first included. The Transformer-XL style kinds mark
nothing: a "word" token is a whole word and a "char" token a single character, so no token continues another
and whole-word and n-gram masking work per word (word kind) or per character (char kind)."""
from __future__ import annotations

from typing import Any

import torch
from tokenizers import Tokenizer

from runner.data.tokenizer import METASPACE, SPECIALS, spaces_are_tokens

CONTINUATION_PREFIX = "##"  # WordPiece (BERT): a piece that continues the previous one
SPACE_MARKER = "\u0120"  # "Ġ": byte-level BPE's (GPT-2, RoBERTa) visible form of the space byte 0x20


def continuation_table(tok: Tokenizer, kind: str) -> torch.Tensor:
    """Boolean is_continuation[vocab_size]: True where a token continues the word of the token before it. All
    False for the word kind (a token is a whole word) and the char kind (every character is its own unit, so
    whole-word and n-gram masking mask characters)."""
    if kind not in SPECIALS:
        raise ValueError(f"model.tokenizer must be one of {sorted(SPECIALS)}, got {kind!r}")
    vocab = tok.get_vocab()  # includes added tokens
    flags = [False] * max(tok.get_vocab_size(), max(vocab.values(), default=-1) + 1)
    for token, i in vocab.items():
        if kind in ("word", "char"):
            flags[i] = False
        elif kind == "wordpiece":
            flags[i] = token.startswith(CONTINUATION_PREFIX)
        elif kind == "unigram":
            flags[i] = not token.startswith(METASPACE)
        else:
            flags[i] = not token.startswith(SPACE_MARKER)
    table = torch.tensor(flags, dtype=torch.bool)
    specials = {t.content for t in tok.get_added_tokens_decoder().values() if t.special} | set(SPECIALS[kind])
    for token in specials:
        i = tok.token_to_id(token)
        if i is not None:
            table[i] = False  # a special token is never part of a word
    return table


SAMPLE_SENTENCES = 20_000  # sentences decoded to count words per token (evenly spread over the split)


def words_per_token(corpus: Any, tok: Tokenizer, num_special: int, sample: int = SAMPLE_SENTENCES) -> float | None:
    """Whitespace-separated words of the text per token of a tokenized split (TokenizedCorpus), from up to `sample`
    sentences spread evenly over it, each decoded back to text; None for an empty split. Tokens seen times this is
    the corpus words seen, the axis BabyLM plots on (a run's tokens also count each example's [CLS]/[SEP])."""
    n = corpus.num_sentences
    if n == 0:
        return None
    picks = sorted({int(i * n / min(n, sample)) for i in range(min(n, sample))})
    sentences = [[int(t) for t in corpus.sentence(j).tolist() if t >= num_special] for j in picks]
    tokens = sum(len(s) for s in sentences)
    if tokens == 0:
        return None
    if spaces_are_tokens(tok):  # the char kind: a token is a character, the space included
        texts = ["".join(tok.id_to_token(t) or "" for t in s) for s in sentences]
    else:
        texts = tok.decode_batch(sentences, skip_special_tokens=True)
    return sum(len(t.split()) for t in texts) / tokens
