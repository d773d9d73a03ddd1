"""Adaptive input embeddings and adaptive softmax with projections (Baevski & Auli 2019; Grave et al. 2017), as
Transformer-XL uses them on word-level vocabularies (Dai et al. 2019, kimiyoung/transformer-xl).

The vocabulary, sorted by frequency, is cut at `model.cutoffs` into clusters. Cluster i's embeddings are
E // div_val**i wide and projected to the model width; the softmax's head scores the first cluster's tokens and
one logit per tail cluster, and a tail cluster's tokens get log p(cluster) + log p(token | cluster). The softmax
reuses the embedding tables (tied weights) and the tail clusters' projections (tied projections), as the
original code does for WikiText-103, so parameter counts equal its counts. With no cutoffs it is a full softmax
tied to the one embedding table (character-level enwik8).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from runner.models.config import EncoderConfig, embedding_width


def cluster_bounds(c: EncoderConfig) -> list[int]:
    """[0, cutoff_1, ..., cutoff_k, vocab_size]: cluster i holds token ids [bounds[i], bounds[i + 1])."""
    return [0, *c.cutoffs, c.vocab_size]


def cluster_width(c: EncoderConfig, i: int) -> int:
    """Width of cluster i's embeddings: E // div_val**i (all E with div_val 1)."""
    return embedding_width(c) // (c.div_val ** i)


class AdaptiveEmbedding(nn.Module):
    """Token embeddings, per cluster E // div_val**i wide, projected to the hidden size and scaled by sqrt(H)
    (Transformer-XL's AdaptiveEmbedding; Vaswani et al. scale embeddings by sqrt(d_model))."""

    def __init__(self, c: EncoderConfig):
        super().__init__()
        self.config, self.bounds = c, cluster_bounds(c)
        self.scale = c.hidden_size ** 0.5
        if c.div_val == 1:  # one table for the whole vocabulary; a projection only when E != H
            self.tables = nn.ModuleList([nn.Embedding(c.vocab_size, embedding_width(c))])
            widths = [embedding_width(c)] if embedding_width(c) != c.hidden_size else []
        else:
            self.tables = nn.ModuleList(nn.Embedding(self.bounds[i + 1] - self.bounds[i], cluster_width(c, i))
                                        for i in range(len(self.bounds) - 1))
            widths = [cluster_width(c, i) for i in range(len(self.bounds) - 1)]
        # (H, E_i) matrices: F.linear(emb, proj) maps E_i -> H; the softmax maps H -> E_i with the same matrix
        self.projections = nn.ParameterList(nn.Parameter(torch.empty(c.hidden_size, w)) for w in widths)

    @property
    def word_embeddings(self) -> nn.Embedding:
        """The one table of a full vocabulary (no cutoffs, div_val 1): what a tied MLM head decodes with."""
        if len(self.tables) != 1 or self.config.cutoffs:
            raise AttributeError("adaptive embeddings (model.cutoffs) have no single word-embedding table")
        return self.tables[0]

    def projection(self, i: int) -> torch.Tensor | None:
        """Cluster i's (H, E_i) projection, or None when its embeddings are already H wide."""
        if self.config.div_val == 1:
            return self.projections[0] if len(self.projections) else None
        return self.projections[i]

    def table_rows(self, i: int) -> tuple[torch.Tensor, slice]:
        """The embedding weight holding cluster i and the rows of it that are cluster i."""
        if self.config.div_val == 1:
            return self.tables[0].weight, slice(self.bounds[i], self.bounds[i + 1])
        return self.tables[i].weight, slice(None)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Embed ids (B, T) into (B, T, H)."""
        c = self.config
        if c.div_val == 1:
            x = self.tables[0](input_ids)  # (B, T, E)
            proj = self.projection(0)
            x = x if proj is None else F.linear(x, proj)  # (B, T, H)
            return x * self.scale
        flat = input_ids.reshape(-1)
        out = torch.zeros(flat.numel(), c.hidden_size, dtype=self.projections[0].dtype, device=flat.device)
        for i, table in enumerate(self.tables):
            # no `if idx.numel()`: an empty cluster runs on 0 rows, so torch.compile traces one graph
            idx = ((flat >= self.bounds[i]) & (flat < self.bounds[i + 1])).nonzero().squeeze(1)  # (N_i,)
            emb = F.linear(table(flat.index_select(0, idx) - self.bounds[i]), self.projections[i])  # (N_i, H)
            out = out.index_put((idx,), emb.to(out.dtype))
        return (out * self.scale).view(*input_ids.shape, c.hidden_size)  # (B, T, H)


class AdaptiveSoftmax(nn.Module):
    """Log-probabilities over the vocabulary from hidden states, tied to an AdaptiveEmbedding (passed at each
    call, so the objective owning this head holds no copy of the tables). Owns the output biases, the cluster
    logits' weights and biases, and the first cluster's untied projection (the original's tie_projs[0] = False)."""

    def __init__(self, c: EncoderConfig):
        super().__init__()
        self.config, self.bounds = c, cluster_bounds(c)
        self.n_clusters = len(c.cutoffs)
        self.bias = nn.Parameter(torch.zeros(c.vocab_size))  # every token's output bias
        if self.n_clusters:  # the head's extra logits, one per tail cluster (Grave et al. 2017)
            self.cluster_weight = nn.Parameter(torch.empty(self.n_clusters, embedding_width(c)))
            self.cluster_bias = nn.Parameter(torch.zeros(self.n_clusters))
            nn.init.normal_(self.cluster_weight, std=c.initializer_range)
        head_width = cluster_width(c, 0)
        self.head_projection = nn.Parameter(torch.empty(c.hidden_size, head_width)) \
            if (c.div_val != 1 or head_width != c.hidden_size) else None
        if self.head_projection is not None:
            nn.init.normal_(self.head_projection, std=c.initializer_range / 2)  # the original's proj_init_std

    def _project(self, hidden: torch.Tensor, emb: nn.Module, i: int) -> torch.Tensor:
        """Hidden states (N, H) in cluster i's embedding width (N, E_i)."""
        proj = self.head_projection if i == 0 else emb.projection(i)  # tail projections tied to the embedding's
        return hidden if proj is None else hidden @ proj

    def _logits(self, h: torch.Tensor, emb: nn.Module, i: int) -> torch.Tensor:
        """Logits (N, |cluster i|) of cluster i's tokens from projected states h (the head's cluster logits not
        included)."""
        weight, rows = emb.table_rows(i)
        return F.linear(h, weight[rows], self.bias[self.bounds[i]:self.bounds[i + 1]])

    def _head(self, hidden: torch.Tensor, emb: nn.Module) -> torch.Tensor:
        """Log-probabilities (N, |cluster 0| + n_clusters) of the head: first-cluster tokens, then tail clusters."""
        h = self._project(hidden, emb, 0)  # (N, E)
        logits = self._logits(h, emb, 0)
        if self.n_clusters:
            logits = torch.cat([logits, F.linear(h, self.cluster_weight, self.cluster_bias)], dim=-1)
        return F.log_softmax(_wide(logits), dim=-1)

    def nll(self, hidden: torch.Tensor, target: torch.Tensor, emb: nn.Module) -> torch.Tensor:
        """Negative log-likelihood (N,) of targets (N,) given hidden states (N, H); each tail cluster's softmax
        runs only on the positions whose target lies in it (no branch on how many: an empty cluster runs on 0
        rows, so torch.compile traces one graph)."""
        head = self._head(hidden, emb)  # (N, shortlist + clusters)
        shortlist = self.bounds[1]
        out = torch.empty(target.shape[0], dtype=head.dtype, device=head.device)
        first = target < shortlist
        out[first] = -head[first].gather(1, target[first, None]).squeeze(1)
        for i in range(1, self.n_clusters + 1):
            idx = ((target >= self.bounds[i]) & (target < self.bounds[i + 1])).nonzero().squeeze(1)  # (N_i,)
            h = self._project(hidden.index_select(0, idx), emb, i)  # (N_i, E_i)
            tail = F.log_softmax(_wide(self._logits(h, emb, i)), dim=-1)
            local = (target.index_select(0, idx) - self.bounds[i])[:, None]
            out[idx] = -(head[idx, shortlist + i - 1] + tail.gather(1, local).squeeze(1))
        return out

    def log_probs(self, hidden: torch.Tensor, emb: nn.Module) -> torch.Tensor:
        """Full log-probabilities (N, V): every cluster's tokens, for checks and small vocabularies."""
        head = self._head(hidden, emb)
        shortlist = self.bounds[1]
        parts = [head[:, :shortlist]]
        for i in range(1, self.n_clusters + 1):
            tail = F.log_softmax(_wide(self._logits(self._project(hidden, emb, i), emb, i)), dim=-1)
            parts.append(head[:, shortlist + i - 1:shortlist + i] + tail)
        return torch.cat(parts, dim=-1)


def _wide(x: torch.Tensor) -> torch.Tensor:
    """x in at least fp32 (a softmax under bf16 autocast), double kept double."""
    return x.to(torch.promote_types(x.dtype, torch.float32))
