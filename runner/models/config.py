"""The typed config every BERT-family encoder is built from (the `model` group's Hydra schema `base_model`); other
families extend it in their own files (Transformer-XL: runner/models/txl.py `TXLConfig`, schema `base_txl`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, List, Optional

from runner.config.errors import require

SHARES = ("none", "all", "attention", "ffn")  # model.share: which parts of a layer every layer uses (ALBERT 3.1)
POSITIONS = ("learned", "rope", "alibi")  # model.position
FFNS = ("mlp", "geglu", "swiglu")  # model.ffn; the last two are gated (GLU: Shazeer 2020)
NORMS = ("layernorm", "rmsnorm")  # model.norm
NORM_POSITIONS = ("post", "pre")  # model.norm_position
QKVS = ("separate", "fused")  # model.qkv
TOKENIZERS = ("wordpiece", "bpe", "unigram", "word", "char")




@dataclass
class EncoderConfig:
    """Shape and recipe of a BERT-family encoder; field names follow transformers' BertConfig."""

    schema: ClassVar[str] = "base_model"  # the ConfigStore name conf/model/*.yaml files extend
    # the model.family values of this schema whose position ids start after the padding index (fairseq's
    # convention, kept by transformers' RoBERTa); a schema of its own (a subclass) declares its own
    padded_position_families: ClassVar[tuple[str, ...]] = ("roberta",)

    name: str = "bert"  # preset name, used to name and tag runs
    # bert | roberta | albert | electra (runner/models/encoder.py): position-id scheme and the transformers class;
    # txl: Transformer-XL (runner/models/txl.py). runner/models/registry.py finds the class that serves a family
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
    # presets whose parameter counts (with an MLM head) summary.json reports beside this run's (ALBERT's Table 2
    # contrast: [albert_large, bert_large])
    report_presets: List[str] = field(default_factory=list)
    # The later improvements on BERT (MosaicBERT, ModernBERT, NeoBERT), each a one-line override on any preset.
    # position: learned (BERT's table) | rope (rotary, Su et al. 2021: no table) | alibi (linear distance biases,
    # Press et al. 2022, symmetric as MosaicBERT's: no table)
    position: str = "learned"
    rope_theta: float = 10000.0  # rope: the frequency base of global layers (ModernBERT 160,000)
    local_rope_theta: Optional[float] = None  # rope on sliding-window layers; null: rope_theta (ModernBERT 10,000)
    # ffn: mlp (BERT: dense, activation, dense) | geglu (ModernBERT: activation(a) * b with `activation`) | swiglu
    # (NeoBERT: silu(a) * b); the gated ones project to 2 x intermediate_size, a then b
    ffn: str = "mlp"
    norm_position: str = "post"  # post (BERT: norm after each residual) | pre (norm before; a final norm at the end)
    norm: str = "layernorm"  # layernorm | rmsnorm (NeoBERT; Zhang & Sennrich 2019)
    bias: bool = True  # biases of the linear layers and norms (ModernBERT: none; the MLM decoder keeps its bias)
    # a norm after the embeddings (BERT, ModernBERT); with pre-norm the first layer then skips its attention norm,
    # as ModernBERT does; false: none (NeoBERT)
    embedding_norm: bool = True
    local_window: Optional[int] = None  # sliding-window attention: tokens within local_window // 2 on either side
    global_every: int = 1  # with local_window: layers 0, k, 2k, ... attend globally (ModernBERT: 3)
    qkv: str = "separate"  # separate (BERT's query, key, value) | fused (one matmul: the same numbers, faster)

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // self.num_heads

    @property
    def gated(self) -> bool:
        """Whether the feed-forward is a GLU (its first projection twice intermediate_size wide)."""
        return self.ffn in ("geglu", "swiglu")

    def global_layer(self, i: int) -> bool:
        """Whether layer i attends over the whole sequence (else within its sliding window)."""
        return self.local_window is None or i % self.global_every == 0

    @property
    def causal(self) -> bool:
        """Whether a token sees only the tokens before it (a decoder); the BERT family attends both ways."""
        return False

    @property
    def adaptive_embeddings(self) -> str:
        """The keys that split the embeddings into clusters of different widths (no single tied decoder table),
        as `key=value`; "": one table."""
        return ""

    def bidirectional_why(self) -> str:
        """Why this encoder attends both ways, and what serves a causal objective instead (error messages)."""
        return ("is a bidirectional encoder; use model=txl (or another txl_* preset), or a masked objective (mlm, "
                "rtd) with this model")

    def causal_fix(self) -> str:
        """What makes this (causal) encoder serve a masked objective (error messages)."""
        return "use a bidirectional model"

    @property
    def pads_positions(self) -> bool:
        """Whether position ids start after the padding index (RoBERTa), with that row reserved for padding."""
        return self.family in self.padded_position_families

    @property
    def position_offset(self) -> int:
        """First position id: pad_token_id + 1 when positions pad (RoBERTa), else 0."""
        return self.offset_for(self.pad_token_id)

    def offset_for(self, pad_token_id: int) -> int:
        """The first position id under a tokenizer whose padding id is pad_token_id (before the run is built)."""
        return pad_token_id + 1 if self.pads_positions else 0

    @property
    def max_seq_len(self) -> int | None:
        """Longest input the position table serves; None: positions are relative, any length."""
        return self.max_position_embeddings - self.position_offset

    def check(self) -> None:
        """Raise ConfigError on the first value that cannot build this encoder (one line naming the key)."""
        require(self.share in SHARES, f"model.share={self.share!r} must be one of {', '.join(SHARES)} (ALBERT section 3.1)")
        require(self.embedding_size is None or self.embedding_size >= 1,
             f"model.embedding_size={self.embedding_size} must be >= 1, or null for embeddings as wide as hidden_size")
        require(self.tokenizer in TOKENIZERS, f"model.tokenizer={self.tokenizer!r} must be "
             f"{', '.join(repr(t) for t in TOKENIZERS[:-1])} or {TOKENIZERS[-1]!r}")
        for key in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "vocab_size",
                    "max_position_embeddings", "global_every"):
            require(getattr(self, key) >= 1, f"model.{key}={getattr(self, key)} must be >= 1")
        require(self.type_vocab_size >= 0, f"model.type_vocab_size={self.type_vocab_size} must be >= 0 (0: no segment "
             "embeddings, as ModernBERT)")
        for key, allowed in (("position", POSITIONS), ("ffn", FFNS), ("norm", NORMS),
                             ("norm_position", NORM_POSITIONS), ("qkv", QKVS)):
            require(getattr(self, key) in allowed, f"model.{key}={getattr(self, key)!r} must be one of {', '.join(allowed)}")
        require(self.local_window is None or self.local_window >= 2,
             f"model.local_window={self.local_window} must be >= 2 (tokens in the window) or null")
        require(self.local_window is None or self.global_every >= 2,
             f"model.local_window={self.local_window} with model.global_every=1 makes every layer global; set "
             "model.global_every >= 2 (ModernBERT: 3) or drop model.local_window")
        require(self.rope_theta > 0 and (self.local_rope_theta is None or self.local_rope_theta > 0),
             "model.rope_theta and model.local_rope_theta must be > 0")
        require(self.hidden_size % self.num_heads == 0,
             f"model.hidden_size={self.hidden_size} is not divisible by model.num_heads={self.num_heads}; "
             "pick heads that divide the hidden size (e.g. hidden_size/64)")
        require(self.position != "rope" or self.head_dim % 2 == 0,
             f"model.position=rope rotates pairs of dimensions, but heads are {self.head_dim} wide; pick "
             "model.num_heads so hidden_size / num_heads is even")
        for key in ("hidden_dropout", "attention_dropout"):
            require(0.0 <= getattr(self, key) < 1.0, f"model.{key}={getattr(self, key)} must lie in [0, 1)")


def embedding_width(c: EncoderConfig) -> int:
    """Width E of the embedding tables and of the MLM head's transform: model.embedding_size, else hidden_size."""
    return c.embedding_size if c.embedding_size is not None else c.hidden_size
