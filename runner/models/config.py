"""The one typed config object every encoder is built from (also the `model` group's Hydra schema)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

SHARES = ("none", "all", "attention", "ffn")  # model.share: which parts of a layer every layer uses (ALBERT 3.1)


@dataclass
class EncoderConfig:
    """Shape and recipe of a BERT-family encoder or a Transformer-XL; field names follow transformers' BertConfig."""

    name: str = "bert"  # preset name, used to name and tag runs
    # bert | roberta | albert | electra: position-id scheme and the transformers class; txl: Transformer-XL
    family: str = "bert"
    vocab_size: int = 30522
    hidden_size: int = 768
    # ALBERT section 3.1, factorized embeddings: null keeps them hidden_size wide (BERT); an int E makes the
    # embeddings E wide and adds a Linear E -> H (`embeddings.project`), even when E == H
    embedding_size: Optional[int] = None
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    activation: str = "gelu"  # exact erf GELU, as BERT and transformers' "gelu"
    initializer_range: float = 0.02
    # ALBERT section 3.1, cross-layer sharing: none | all (one layer applied num_layers times) | attention | ffn
    # (one attention block, or one feed-forward block, used by every layer; LayerNorms stay per layer)
    share: str = "none"
    pad_token_id: int = 0  # overwritten from the tokenizer when the run builds the model
    tokenizer: str = "wordpiece"  # wordpiece (BERT) | bpe (RoBERTa's byte-level BPE) | unigram (ALBERT)
    lowercase: bool = True  # BERT-uncased lowercases; RoBERTa is cased
    init_from: Optional[str] = None  # local transformers checkpoint directory to initialise from
    # Transformer-XL (family txl; Dai et al. 2019). mem_len: hidden states per layer carried from earlier segments
    # with no gradient (section 3.2); 0 trains segments independently (the paper's "no recurrence" ablation)
    mem_len: int = 0
    eval_tgt_len: Optional[int] = None  # segment length at evaluation; null: data.seq_len (the training length)
    eval_mem_len: Optional[int] = None  # memory at evaluation; null: mem_len (the paper evaluates with longer ones)
    clamp_len: Optional[int] = None  # at evaluation: distances beyond this share clamp_len's sinusoid; null: none
    same_length: bool = False  # at evaluation: every query attends to eval_mem_len keys (the original's flag)
    # adaptive input and softmax (Baevski & Auli 2019; Grave et al. 2017): vocabulary cluster boundaries (ids sorted
    # by frequency, as the word and char tokenizers assign them); [] is a full softmax
    cutoffs: List[int] = field(default_factory=list)
    div_val: int = 1  # cluster i's embeddings are embedding_size // div_val**i wide, then projected
    pre_lnorm: bool = False  # LayerNorm before attention and FFN (the original's --pre_lnorm); false: post-LN
    # txl only: every token sees its whole segment and the memory (XLNet's two-way relative attention, without the
    # permutation), for masked objectives (objective=mlm); false: the causal decoder objective=clm trains
    bidirectional: bool = False

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // self.num_heads

    @property
    def position_offset(self) -> int:
        """First position id: RoBERTa counts positions from pad_token_id + 1 (fairseq's convention)."""
        return self.pad_token_id + 1 if self.family == "roberta" else 0

    @property
    def max_seq_len(self) -> int:
        """Longest input the position table can serve."""
        return self.max_position_embeddings - self.position_offset


def embedding_width(c: EncoderConfig) -> int:
    """Width E of the embedding tables and of the MLM head's transform: model.embedding_size, else hidden_size.
    A function, not a property: objectives receive the config from Hydra's instantiate as a DictConfig."""
    return c.embedding_size if c.embedding_size is not None else c.hidden_size
