"""A memory-mapped corpus (TokenIds) is not a tensor: a full int32 copy of it is asked for by name (.tensor(),
.numpy(), .tolist()), never made by an unknown attribute or a torch function; its readers take slices."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from runner.data.corpus import load_wiki
from runner.data.stream import TokenStream
from runner.data.token_corpus import TokenIds, TokenizedCorpus, load_tokenized, save_tokenized, tokenize_documents
from runner.data.tokenizer import train_tokenizer
from runner.data.unigram import token_counts, unigram_entropy


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> tuple[TokenizedCorpus, TokenizedCorpus]:
    """The same split in memory (int32 tensor) and loaded from its cache directory (TokenIds)."""
    docs = load_wiki()[:60]
    tok = train_tokenizer("wordpiece", (d.text for d in docs), 500, lowercase=True)
    memory = tokenize_documents(tok, docs)
    directory = tmp_path_factory.mktemp("split")
    save_tokenized(memory, directory, tok.get_vocab_size())
    return memory, load_tokenized(directory)


def test_unknown_attributes_raise_and_name_the_explicit_copy(corpora):
    _, mapped = corpora
    ids = mapped.ids
    assert isinstance(ids, TokenIds)
    for name in ("max", "long", "bincount", "to", "cpu", "storage"):
        with pytest.raises(AttributeError, match=r"\.tensor\(\)"):
            getattr(ids, name)
        assert not hasattr(ids, name)
    with pytest.raises(AttributeError, match=r"TokenIds has no attribute 'max'.*\.tensor\(\)"):
        ids.max()
    with pytest.raises(AttributeError):
        ids._private  # our own state is never looked up through the message path


@pytest.mark.parametrize("call", [lambda t: torch.max(t), lambda t: torch.cat([t, t]), lambda t: torch.bincount(t),
                                  lambda t: torch.equal(t, t), lambda t: torch.nn.functional.one_hot(t)])
def test_torch_functions_refuse_the_corpus(corpora, call):
    _, mapped = corpora
    with pytest.raises(TypeError, match=r"\.tensor\(\)"):
        call(mapped.ids)


def test_explicit_copies_give_the_same_values(corpora):
    memory, mapped = corpora
    ids = mapped.ids
    full = ids.tensor()
    assert isinstance(full, torch.Tensor) and full.dtype == torch.int32 and torch.equal(full, memory.ids)
    assert int(full.max()) == int(memory.ids.max()) and int(full.min()) == int(memory.ids.min())
    assert ids.numpy().dtype == np.int32 and np.array_equal(ids.numpy(), memory.ids.numpy())
    assert ids.tolist() == memory.ids.tolist() and np.array_equal(np.asarray(ids), memory.ids.numpy())
    assert np.array_equal(ids.array(), memory.ids.numpy())  # the map itself, uint16 here
    # what needs no copy still works: sizes, slices, indexing, pickling
    assert (ids.numel(), len(ids), ids.dim(), ids.shape, ids.dtype) == \
        (memory.num_tokens, memory.num_tokens, 1, torch.Size([memory.num_tokens]), torch.int32)
    assert torch.equal(ids[10:50], memory.ids[10:50]) and int(ids[7]) == int(memory.ids[7])
    assert torch.equal(ids[torch.tensor([3, 1])], memory.ids[[3, 1]])
    assert pickle.loads(pickle.dumps(ids)).tolist() == memory.ids.tolist()


def test_corpus_readers_use_slices_or_the_map(corpora):
    memory, mapped = corpora
    assert mapped.num_tokens == memory.num_tokens
    assert all(torch.equal(a, b) for a, b in zip(mapped.doc_sentences(2), memory.doc_sentences(2)))
    assert np.array_equal(TokenStream(mapped, 3).all(), TokenStream(memory, 3).all())
    assert np.array_equal(token_counts(mapped, 5), token_counts(memory, 5))
    assert unigram_entropy(mapped, 5) == pytest.approx(unigram_entropy(memory, 5))
