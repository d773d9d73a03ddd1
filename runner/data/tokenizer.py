"""Train, cache and apply BERT (WordPiece) and RoBERTa (byte-level BPE) tokenizers."""

from __future__ import annotations

import pathlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from runner.data.cache import atomic_write_bytes

# Order is the id order: BERT gets pad=0 and RoBERTa pad=1, like transformers' default configs.
SPECIALS: dict[str, list[str]] = {
    "wordpiece": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
    "bpe": ["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
}
# Role -> token, per kind.
_ROLES: dict[str, dict[str, str]] = {
    "wordpiece": {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"},
    "bpe": {"pad": "<pad>", "unk": "<unk>", "cls": "<s>", "sep": "</s>", "mask": "<mask>"},
}


@dataclass(frozen=True)
class SpecialIds:
    """Ids of the special tokens; ids below `num_special` are all special."""

    pad: int
    unk: int
    cls: int
    sep: int
    mask: int
    num_special: int


def _check_kind(kind: str) -> None:
    """Raise a ValueError naming the config key if `kind` is not a known tokenizer kind."""
    if kind not in SPECIALS:
        raise ValueError(f"model.tokenizer must be one of {sorted(SPECIALS)}, got {kind!r}")


def special_ids(tok: Tokenizer, kind: str) -> SpecialIds:
    """Look up the special-token ids of a tokenizer of the given kind."""
    _check_kind(kind)
    ids = {}
    for role, token in _ROLES[kind].items():
        i = tok.token_to_id(token)
        if i is None:
            raise ValueError(f"tokenizer has no {token!r} token; is it a {kind!r} tokenizer?")
        ids[role] = i
    # Ids up to the highest special one count as special: for our tokenizers 0..4; for a checkpoint's
    # vocabulary such as BERT's ([PAD]=0, [unused*], [UNK]=100 ... [MASK]=103) the reserved slots too.
    return SpecialIds(**ids, num_special=max(ids.values()) + 1)


def _token_id(tok: Tokenizer, token: str) -> int:
    """token_to_id that fails loudly instead of returning None."""
    i = tok.token_to_id(token)
    if i is None:
        raise ValueError(f"trained tokenizer lacks special token {token!r}")
    return i


def _wordpiece_shell(lowercase: bool, model: models.Model | None = None) -> Tokenizer:
    """An untrained BERT-style tokenizer (normalizer, pre-tokenizer, decoder; no post-processor)."""
    tok = Tokenizer(model or models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=lowercase, lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok


def _inner_chars(tok: Tokenizer, texts: list[str]) -> set[str]:
    """Characters that occur after the first position of some pre-tokenized word of `texts`."""
    normed = [tok.normalizer.normalize_str(t) for t in texts]
    chars = set().union(*map(set, normed))
    # BertPreTokenizer decides per character (drop whitespace, isolate punctuation), so one
    # probe per distinct char says whether it can continue a word; a regex then finds word
    # tails much faster than pre_tokenize_str on every text.
    word = sorted(c for c in chars if len(tok.pre_tokenizer.pre_tokenize_str(f"a{c}a")) == 1)
    if not word:
        return set()
    cls = "[" + "".join(re.escape(c) for c in word) + "]"
    tails = re.compile(f"(?<={cls}){cls}+")
    inner: set[str] = set()
    for t in normed:
        inner.update("".join(tails.findall(t)))
    return inner


def _train_wordpiece(texts: Iterable[str], vocab_size: int, lowercase: bool) -> Tokenizer:
    """Train WordPiece deterministically (working around huggingface/tokenizers#1794)."""
    texts = list(texts)
    tok = _wordpiece_shell(lowercase)
    # The trainer creates "##c" symbols while iterating a hash map, so their ids (which break
    # ties between equally frequent merges) and hence the learned vocab vary from run to run.
    # Symbols already in the vocab are reused, so pre-register every "##c" that can occur,
    # sorted, right after the real specials; they are demoted to ordinary tokens below.
    seeds = ["##" + c for c in sorted(_inner_chars(tok, texts))]
    # No limit_alphabet: its cut among equally frequent chars is unordered too.
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIALS["wordpiece"] + seeds,
        continuing_subword_prefix="##", show_progress=False)
    tok.train_from_iterator(texts, trainer)
    # A fresh tokenizer around the trained model: only the five real specials are "added" tokens
    # (an added "##e" would be split out of raw text and dropped by decode).
    tok = _wordpiece_shell(lowercase, tok.model)
    tok.add_special_tokens(SPECIALS["wordpiece"])
    cls, sep = _token_id(tok, "[CLS]"), _token_id(tok, "[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return tok


def train_tokenizer(kind: str, texts: Iterable[str], vocab_size: int, lowercase: bool) -> Tokenizer:
    """Train a fresh WordPiece ("wordpiece") or byte-level BPE ("bpe") tokenizer on `texts`."""
    _check_kind(kind)
    if kind == "wordpiece":
        tok = _train_wordpiece(texts, vocab_size, lowercase)
    else:
        tok = Tokenizer(models.BPE())  # byte-level: every string is representable, no unk needed
        if lowercase:
            tok.normalizer = normalizers.Lowercase()
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIALS["bpe"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        tok.train_from_iterator(texts, trainer)
        # Positional: the cls keyword is spelled differently across tokenizers versions.
        tok.post_processor = processors.RobertaProcessing(
            ("</s>", _token_id(tok, "</s>")), ("<s>", _token_id(tok, "<s>")),
            trim_offsets=True, add_prefix_space=False)
    return tok


def tokenizer_cache_path(cache_dir: pathlib.Path, kind: str, vocab_size: int, lowercase: bool,
                         corpus_key: str) -> pathlib.Path:
    """Where `load_or_train_tokenizer` keeps the tokenizer for these settings."""
    name = f"{kind}-v{vocab_size}-{'lc' if lowercase else 'cased'}-{corpus_key}"
    return pathlib.Path(cache_dir) / "tokenizers" / name / "tokenizer.json"


def load_or_train_tokenizer(kind: str, texts_fn: Callable[[], Iterable[str]], vocab_size: int,
                            lowercase: bool, cache_dir: pathlib.Path, corpus_key: str) -> Tokenizer:
    """Load the cached tokenizer for these settings, or train it on texts_fn() and cache it."""
    _check_kind(kind)
    path = tokenizer_cache_path(cache_dir, kind, vocab_size, lowercase, corpus_key)
    if path.is_file():
        return Tokenizer.from_file(str(path))
    tok = train_tokenizer(kind, texts_fn(), vocab_size, lowercase)
    # Atomic: a crash mid-write must not leave a truncated tokenizer.json that later loads fail on.
    atomic_write_bytes(tok.to_str().encode("utf-8"), path)
    return tok


def encode_sentences(tok: Tokenizer, sentences: list[str]) -> list[list[int]]:
    """Token ids of each sentence, without special tokens, via one parallel batch call."""
    if tok.padding is not None or tok.truncation is not None:
        # Padding/truncation would silently alter corpus token streams.
        raise ValueError("encode_sentences needs a tokenizer without padding/truncation enabled")
    if not sentences:
        return []
    # encode_batch_fast skips offset tracking, which we never use.
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)
    return [e.ids for e in encode(sentences, add_special_tokens=False)]
