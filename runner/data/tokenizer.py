"""Train, cache, load and apply BERT (WordPiece), RoBERTa (byte-level BPE) and ALBERT-style (SentencePiece
unigram) tokenizers, and Transformer-XL style word-level (WikiText-103) and character-level (enwik8, text8) ones."""

from __future__ import annotations

import itertools
import json
import pathlib
import queue
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors,
                        trainers)

from runner.data.cache import atomic_write_bytes, cached_dir
from runner.data.sentence_ids import encode_sentences, spaces_are_tokens  # noqa: F401  (re-exported)
from runner.config.errors import ConfigError

# Order is the id order: BERT gets pad=0 and RoBERTa pad=1, like transformers' default configs; the unigram
# kind has ALBERT's specials and ids (pad=0, unk=1, [CLS]=2, [SEP]=3, [MASK]=4). The word and char kinds have
# WikiText-103's "<unk>" and "<eos>" (its line end, our document separator) plus padding and masking.
SPECIALS: dict[str, list[str]] = {
    "wordpiece": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
    "bpe": ["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
    "unigram": ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"],
    "word": ["<pad>", "<unk>", "<eos>", "<mask>"],
    "char": ["<pad>", "<unk>", "<eos>", "<mask>"],
}
# Role -> token, per kind.
ROLES: dict[str, dict[str, str]] = {
    "wordpiece": {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"},
    "bpe": {"pad": "<pad>", "unk": "<unk>", "cls": "<s>", "sep": "</s>", "mask": "<mask>"},
    "unigram": {"pad": "<pad>", "unk": "<unk>", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"},
    # One "<eos>" plays cls and sep: a language model's only boundary token.
    "word": {"pad": "<pad>", "unk": "<unk>", "cls": "<eos>", "sep": "<eos>", "mask": "<mask>"},
    "char": {"pad": "<pad>", "unk": "<unk>", "cls": "<eos>", "sep": "<eos>", "mask": "<mask>"},
}
METASPACE = "\u2581"  # "▁": SentencePiece's word-start marker (the space before a word)
_SCORE_DECIMALS = 5  # unigram scores are rounded: see _canonical_unigram
_ANY_CHAR = r"[\s\S]"  # one character, line breaks included (Oniguruma, tokenizers' regex engine, has no (?s))


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
    for role, token in ROLES[kind].items():
        i = tok.token_to_id(token)
        if i is None:
            raise ValueError(f"tokenizer has no {token!r} token; is it a {kind!r} tokenizer?")
        ids[role] = i
    # Ids up to the highest special one count as special: for our tokenizers 0..4 (0..3 for word and char, whose
    # cls and sep are both <eos>); for a checkpoint's vocabulary such as BERT's ([PAD]=0, [unused*], [UNK]=100 ...
    # [MASK]=103) the reserved slots too.
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


def _unigram_normalizer(lowercase: bool, left_strip: bool = True) -> normalizers.Normalizer:
    """NFKC (plus lowercasing), whitespace runs collapsed to one space, trimmed (left_strip=False: on the right
    only, see export_tokenizer)."""
    steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else []) + \
        [normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip(left=left_strip, right=True)]
    return normalizers.Sequence(steps)


def _unigram_shell(lowercase: bool, model: models.Model | None = None) -> Tokenizer:
    """An untrained SentencePiece-style unigram tokenizer: NFKC (plus lowercasing), whitespace runs collapsed
    to one space and trimmed, then the Metaspace "▁" marks each word start; no post-processor."""
    tok = Tokenizer(model or models.Unigram())
    tok.normalizer = _unigram_normalizer(lowercase)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    return tok


def _canonical_unigram(vocab: list[tuple[str, float]], num_special: int) -> list[tuple[str, float]]:
    """The trained unigram vocabulary in an order and with scores that do not vary from run to run.

    `tokenizers`' UnigramTrainer (0.23) counts words in a hash map, so the EM sums run in a different order
    each time and the scores differ in the last bits (up to ~4e-11 on the wiki corpus); the characters that EM
    dropped but every vocabulary needs get the scores min, min+1e-4, min+2e-4, ... in hash-set order; and equal
    scores keep that order. So: find that run of scores 1e-4 apart (the characters at its lowest step, which
    ties with the lowest real score, join it: which of them was dropped cannot be told) and hand its scores to
    its characters in code-point order; round every score to _SCORE_DECIMALS decimals (over 10^5 times the
    noise); sort by (score descending, piece). On the wiki train split at 8192 tokens the run has 52 steps
    among ~480 characters, all within 0.006 of the lowest score."""
    specials, pieces = vocab[:num_special], dict(vocab[num_special:])
    step, tol = 1e-4, 1e-9
    singles = {t: s for t, s in pieces.items() if len(t) == 1}
    buckets: dict[int, list[str]] = defaultdict(list)
    for t, s in singles.items():
        buckets[round(s * 1e8)].append(t)

    def at(x: float) -> list[str]:
        k = round(x * 1e8)
        return [t for b in (k - 1, k, k + 1) for t in buckets.get(b, ()) if abs(singles[t] - x) < tol]

    best: list[str] = []
    best_steps = 1
    for t, s in sorted(singles.items()):
        if at(s + step):
            continue  # not the top of a run
        run, x, steps = [], s, 0
        while group := at(x):
            run, x, steps = run + group, x - step, steps + 1
        if steps > best_steps:  # the longest run of scores 1e-4 apart, each step a score in the vocabulary
            best, best_steps = run, steps
    # The run's scores go to its characters in code-point order, highest score first.
    for t, s in zip(sorted(best), sorted((singles[u] for u in best), reverse=True)):
        pieces[t] = s
    ordered = sorted(((t, round(s, _SCORE_DECIMALS) + 0.0) for t, s in pieces.items()), key=lambda p: (-p[1], p[0]))
    return list(specials) + ordered


def _train_unigram(texts: Iterable[str], vocab_size: int, lowercase: bool) -> Tokenizer:
    """Train a SentencePiece-style unigram model (ALBERT's tokenizer) deterministically."""
    tok = _unigram_shell(lowercase)
    specials = SPECIALS["unigram"]
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>",
                                      show_progress=False)
    tok.train_from_iterator(texts, trainer)
    vocab = [(t, float(s)) for t, s in json.loads(tok.to_str())["model"]["vocab"]]
    if [t for t, _ in vocab[:len(specials)]] != specials:
        raise ValueError(f"unigram training put {[t for t, _ in vocab[:len(specials)]]} first, not {specials}")
    model = models.Unigram(_canonical_unigram(vocab, len(specials)), unk_id=specials.index("<unk>"),
                           byte_fallback=False)
    tok = _unigram_shell(lowercase, model)
    tok.add_special_tokens(specials)
    cls, sep = _token_id(tok, "[CLS]"), _token_id(tok, "[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return tok


def _lm_shell(kind: str, lowercase: bool, model: models.Model | None = None, train: bool = False) -> Tokenizer:
    """An untrained word-level ("word": whitespace-separated words) or character-level ("char": every
    character, whitespace included) tokenizer; no post-processor. `train` adds the training-only normalizer."""
    tok = Tokenizer(model or models.WordLevel(unk_token="<unk>"))
    steps: list[normalizers.Normalizer] = [normalizers.Lowercase()] if lowercase else []
    if train:
        # The trainer counts the specials' text (WikiText-103 is full of literal "<unk>") as words, and such a
        # word's id then replaces the special's in the vocabulary; encoding splits specials out of the text
        # first, so training drops them too (for "word" as a space: "a<unk>b" encodes as three tokens).
        steps += [normalizers.Replace(t, " " if kind == "word" else "") for t in SPECIALS[kind]]
    if steps:
        tok.normalizer = normalizers.Sequence(steps)
    if kind == "word":
        # WikiText-103 is already tokenized with spaces (punctuation stands alone, "@-@" for inner hyphens):
        # split on whitespace only, as Transformer-XL does.
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        # A space before every word, the first one dropped: the WordPiece decoder would join so too, but it
        # glues a word that starts with "##" to the one before.
        tok.decoder = decoders.Sequence([decoders.Replace(Regex("^"), " "), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
    else:
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(_ANY_CHAR), behavior="isolated")
        tok.decoder = decoders.Fuse()  # the characters as they are: decode(encode(s)) == s for known characters
    return tok


def _train_lm(kind: str, texts: Iterable[str], vocab_size: int, lowercase: bool) -> Tokenizer:
    """Train a word- or character-level vocabulary: the specials, then the vocab_size - 4 most frequent words
    or characters (ties in code-point order); anything else encodes as <unk>."""
    specials = SPECIALS[kind]
    tok = _lm_shell(kind, lowercase, train=True)
    # WordLevelTrainer sorts by (count descending, text): deterministic, unlike the other trainers.
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                             show_progress=False))
    vocab: dict[str, int] = json.loads(tok.to_str())["model"]["vocab"]
    got = [vocab.get(t) for t in specials]
    if got != list(range(len(specials))) or sorted(vocab.values()) != list(range(len(vocab))):
        raise ValueError(f"{kind} training gave the specials ids {got}, not 0..{len(specials) - 1}, or left id gaps")
    # A fresh tokenizer without the training-only normalizer.
    tok = _lm_shell(kind, lowercase, models.WordLevel(vocab, unk_token="<unk>"))
    tok.add_special_tokens(specials)
    return tok


_READ_AHEAD = (1_000, 8)  # texts per list, lists read ahead (read_ahead)


def read_ahead(texts: Iterable[str]) -> Iterator[list[str]]:
    """The texts in lists, read by a background thread a few lists ahead: while the trainer's Rust threads count the
    words of one list (without the GIL), the corpus reader (Python: JSON parsing, the split's hash) reads the next,
    instead of each waiting for the other. An error of the reader is raised here, in order."""
    size, depth = _READ_AHEAD
    lists: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def put(item: Any) -> None:
        while not stop.is_set():  # the consumer may be gone (an error in the trainer): then give up
            try:
                lists.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read() -> None:
        try:
            it = iter(texts)
            while batch := list(itertools.islice(it, size)):
                put(batch)
            put(None)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which raises it
            put(e)

    reader = threading.Thread(target=read, name="read_ahead", daemon=True)
    reader.start()
    try:
        while (item := lists.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        reader.join()


def train_tokenizer(kind: str, texts: Iterable[str], vocab_size: int, lowercase: bool) -> Tokenizer:
    """Train a fresh WordPiece ("wordpiece"), byte-level BPE ("bpe"), SentencePiece-style unigram ("unigram"),
    word-level ("word") or character-level ("char") tokenizer on `texts`."""
    _check_kind(kind)
    if kind == "wordpiece":
        tok = _train_wordpiece(texts, vocab_size, lowercase)
    elif kind == "unigram":
        tok = _train_unigram(texts, vocab_size, lowercase)
    elif kind in ("word", "char"):
        tok = _train_lm(kind, texts, vocab_size, lowercase)
    else:
        tok = Tokenizer(models.BPE())  # byte-level: every string is representable, no unk needed
        if lowercase:
            tok.normalizer = normalizers.Lowercase()
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIALS["bpe"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        tok.train_from_iterator(read_ahead(texts), trainer)
        # Positional: the cls keyword is spelled differently across tokenizers versions.
        tok.post_processor = processors.RobertaProcessing(
            ("</s>", _token_id(tok, "</s>")), ("<s>", _token_id(tok, "<s>")),
            trim_offsets=True, add_prefix_space=False)
    return tok


# Special tokens as the released checkpoints' tokenizers match them in raw text (transformers' RobertaTokenizer and
# AlbertTokenizer: the mask is AddedToken(mask, lstrip=True, rstrip=False, normalized=False), so it takes the space
# before it, as the word it stands for does: "is <mask>." reads `Ġis <mask> .` like "is Paris." reads `Ġis ĠParis .`;
# BERT's and ELECTRA's WordPiece declare every special token without stripping, and drop whitespace anyway).
MASK_LSTRIP = {"bpe": True, "unigram": True}


def special_added_tokens(kind: str) -> dict[str, AddedToken]:
    """Role -> AddedToken of a tokenizer kind's special tokens, declared as the released checkpoints of that kind
    declare them (MASK_LSTRIP): never normalized, never stripping but the mask of bpe and unigram on its left."""
    _check_kind(kind)
    return {role: AddedToken(token, lstrip=role == "mask" and MASK_LSTRIP.get(kind, False), rstrip=False,
                             normalized=False, special=True) for role, token in ROLES[kind].items()}


def _pipeline_json(tok: Tokenizer) -> tuple[str, str]:
    """The normalizer's and the pre-tokenizer's JSON, to recognise a pipeline built here."""
    d = json.loads(tok.to_str())
    return json.dumps(d.get("normalizer"), sort_keys=True), json.dumps(d.get("pre_tokenizer"), sort_keys=True)


def export_tokenizer(tok: Tokenizer, kind: str) -> Tokenizer:
    """A copy of `tok` for a transformers export, so that text with a special token in it ("The capital is
    [MASK].", as fill-mask pipelines write it) reads as the released checkpoints read it; text without one is
    encoded exactly as before.

    - The special tokens are declared as special_added_tokens(kind): RoBERTa's and ALBERT's mask takes the space
      before it, so no stray `Ġ` precedes `<mask>`.
    - Our unigram pipeline (ALBERT's kind, _unigram_shell) trims and prefixes "▁" per stretch of text between
      special tokens, which turns the "." of "[MASK]." into `▁` `.`, a split the model never saw after a word
      ("Paris." is `▁paris` `.`). The copy trims on the right only and prefixes "▁" only at the very start of the
      text (Metaspace prepend_scheme="first"): a stretch after a special token starts with a "▁" exactly when a
      space precedes it. Without special tokens both pipelines give the same tokens (a leading space becomes the
      "▁" that "always" would add). A unigram tokenizer with another pipeline (data.tokenizer.path) is left as is.
    """
    out = Tokenizer.from_str(tok.to_str())
    specials = special_added_tokens(kind)
    out.add_special_tokens(list({t.content: t for t in specials.values()}.values()))  # re-declares, same ids
    if kind == "unigram":
        for lowercase in (True, False):
            if _pipeline_json(tok) == _pipeline_json(_unigram_shell(lowercase)):
                out.normalizer = _unigram_normalizer(lowercase, left_strip=False)
                out.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="first",
                                                             split=True)
                break
    for role, t in specials.items():
        if out.token_to_id(t.content) != tok.token_to_id(t.content):
            raise ValueError(f"re-declaring {t.content!r} ({role}) moved its id; is it a {kind!r} tokenizer?")
    return out


def tokenizer_cache_path(cache_dir: pathlib.Path, kind: str, vocab_size: int, lowercase: bool,
                         corpus_key: str) -> pathlib.Path:
    """Where `load_or_train_tokenizer` keeps the tokenizer for these settings."""
    name = f"{kind}-v{vocab_size}-{'lc' if lowercase else 'cased'}-{corpus_key}"
    return pathlib.Path(cache_dir) / "tokenizers" / name / "tokenizer.json"


def load_or_train_tokenizer(kind: str, texts_fn: Callable[[], Iterable[str]], vocab_size: int,
                            lowercase: bool, cache_dir: pathlib.Path, corpus_key: str) -> Tokenizer:
    """Load the cached tokenizer for these settings, or train it on texts_fn() and cache it: a cache entry
    (runner/data/cache.py cached_dir: trained once across processes, checked at every open, rebuilt once when
    damaged)."""
    _check_kind(kind)
    path = tokenizer_cache_path(cache_dir, kind, vocab_size, lowercase, corpus_key)

    def build(tmp: pathlib.Path) -> None:
        tok = train_tokenizer(kind, texts_fn(), vocab_size, lowercase)
        atomic_write_bytes(tok.to_str().encode("utf-8"), tmp / path.name)

    def load(entry: pathlib.Path) -> Tokenizer:
        try:
            return Tokenizer.from_file(str(entry / path.name))
        except Exception as e:  # tokenizers raises a bare Exception on malformed JSON: a damaged entry
            raise ValueError(" ".join(str(e).split())[:200]) from None

    return cached_dir(path.parent, build, load)


def tokenizer_file(path: str, key: str = "data.tokenizer.path") -> pathlib.Path:
    """The tokenizer.json named by a config key: the file itself, or a directory holding one (a released
    transformers tokenizer directory, a save_pretrained output). A one-line ConfigError naming `key` if none."""
    p = pathlib.Path(str(path)).expanduser()
    f = p / "tokenizer.json" if p.is_dir() else p
    if not f.is_file():
        where = f"{p} holds no tokenizer.json" if p.is_dir() else "no such file or directory"
        raise ConfigError(f"{key}={str(path)!r}: {where}; give a tokenizer.json file or a directory holding one "
                          "(a transformers tokenizer directory)")
    return f


def load_tokenizer(path: str, kind: str, key: str = "data.tokenizer.path") -> tuple[Tokenizer, pathlib.Path]:
    """Load a local tokenizer.json (see tokenizer_file) for model.tokenizer=`kind`, with padding and truncation
    off; its special tokens are looked up by name (ROLES[kind]). Returns the tokenizer and its file.
    One-line ConfigErrors name `key`: no file, not a tokenizers file, or a special token of `kind` missing."""
    _check_kind(kind)
    f = tokenizer_file(path, key)
    try:
        tok = Tokenizer.from_file(str(f))
    except Exception as e:  # tokenizers raises a bare Exception on malformed JSON
        reason = " ".join(str(e).split())[:200]
        raise ConfigError(f"{key}={str(path)!r}: {f} is not a Hugging Face tokenizers file ({reason})") from None
    tok.no_padding()  # a released tokenizer.json may pad or truncate; corpus token streams must not be altered
    tok.no_truncation()
    missing = [(role, t) for role, t in ROLES[kind].items() if tok.token_to_id(t) is None]
    if missing:
        role, token = missing[0]
        fits = [k for k in ROLES if all(tok.token_to_id(t) is not None for t in ROLES[k].values())]
        # word and char share their specials: name every kind that fits.
        hint = "it has the special tokens of " + " or ".join(f"model.tokenizer={k}" for k in fits) if fits else \
            "model.tokenizer=" + " | ".join(f"{k} needs {' '.join(SPECIALS[k])}" for k in SPECIALS)
        raise ConfigError(f"{key}={str(path)!r}: the tokenizer has no {token!r} token ({role}), which "
                          f"model.tokenizer={kind} needs; {hint}")
    return tok, f


def encode_with_words(tok: Tokenizer, sentences: list[str]) -> tuple[list[list[int]], list[list[int | None]]]:
    """Token ids of each sentence, without special tokens (as encode_sentences), and each token's word index as the
    tokenizer's pre-tokenizer splits words (None: a token of no word)."""
    if not sentences:
        return [], []
    if spaces_are_tokens(tok):
        sentences = [s + " " for s in sentences]  # as encode_sentences
    encoded = tok.encode_batch(sentences, add_special_tokens=False)
    return [e.ids for e in encoded], [list(e.word_ids) for e in encoded]
