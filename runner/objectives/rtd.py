"""ELECTRA's replaced-token detection (Clark et al. 2020, "ELECTRA: Pre-training Text Encoders as
Discriminators Rather Than Generators").

A small generator (a masked LM, section 2) fills the masked positions with tokens sampled from its softmax; the
run's encoder is the discriminator and tells, for every token, whether it is the original or a replacement.
Loss = L_MLM(generator) + disc_weight * L_Disc (section 2, lambda = 50, appendix A).

Choices, each as google-research/electra's run_pretraining.py and pretrain_helpers.py make them:
- The discriminator loss is a mean binary cross-entropy over all non-padding tokens ([CLS] and [SEP] included):
  the official `_get_discriminator_output` weights the losses by `input_mask`.
- Sampling is at `temperature` (1.0) with no gradient through it (official `tf.stop_gradient` on the sample); a
  sampled token equal to the original is labelled real (0).
- Of the selected tokens 85% become [MASK] and 15% stay unchanged, with no random replacements (official
  `mask()`); objective.mask_token_prob and random_token_prob change that.
- The generator is the discriminator's config with hidden size round(H * generator_size), FFN scaled the same
  (4 H_gen for FFN = 4H, the official `get_generator_config`), heads max(1, H_gen // 64) and the same depth.
- Shared embeddings (section 3.2, "Weight Sharing") are the token, position and segment tables and their
  LayerNorm, all in the official `electra/embeddings` variable scope; they stay as wide as the discriminator's
  embeddings and the generator projects them to its hidden size (`embeddings_project`).
One deviation: replacements are drawn among the tokenizer's regular tokens only (as BERT's random replacements
in masking.py), never a special token or an id past the tokenizer's vocabulary, which the official code could
sample before its generator learns they are never targets; such a replacement would be trivially detectable."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from runner.data.packing import real_tokens
from runner.data.tokenizer import SpecialIds
from runner.data.unigram import token_counts
from runner.models.flops import disc_head_flops, encoder_flops, mlm_head_flops
from runner.models.config import EncoderConfig, embedding_width
from runner.models.encoder import Encoder
from runner.models.heads import DiscriminatorHead
from runner.objectives.base import Export, Stats
from runner.objectives.distill import load_teacher, teacher_tokenizer_file
from runner.config.errors import require
from runner.objectives.masking import IGNORE
from runner.objectives.mlm import MaskedLM, MLMConfig, mlm_metrics
from runner.objectives.scoring import device_of, per_token_sum, pseudo_log_likelihood

TIES = ("none", "embeddings", "all")
# where the discriminator's replacements come from: the trained generator (ELECTRA), or a control that separates
# the discriminator's machinery from the generator's dynamics (docs/evaluation.md, "ELECTRA's discriminator"):
# uniform over the regular tokens, the training tokens' unigram frequencies, a frozen trained masked LM
REPLACEMENTS = ("generator", "uniform", "unigram", "frozen")
SHARED_EMBEDDINGS = ("word_embeddings", "position_embeddings", "token_type_embeddings", "norm")
_UNIFORM_STEPS = 1 << 24  # sample_uniform holds u * 2^24: float32 represents every u = k / 2^24 exactly
# the discriminator "beat its constant baseline" when its validation loss is this much (relative) below the log-loss
# of predicting the replaced rate everywhere: the default run at chance was 2% below it, uniform replacements 33%
CLEAR_MARGIN = 0.05
AUC_BINS = 1000  # histogram bins of the "replaced" probability; the AUC is exact up to ties within a 0.001 bin


@dataclass
class RTDConfig(MLMConfig):
    """objective=rtd: ELECTRA's replaced-token detection, a small generator MLM plus the discriminator."""

    _target_: str = "runner.objectives.rtd.ReplacedTokenDetection"
    name: str = "rtd"
    mask_token_prob: float = 0.85  # official ELECTRA mask(): 85% [MASK], 15% kept unchanged, no random tokens
    random_token_prob: float = 0.0
    generator_size: float = 0.25  # generator hidden and FFN over the discriminator's (1/4 small and large, 1/3 base)
    disc_weight: float = 50.0  # lambda in L_MLM + lambda * L_Disc (ELECTRA section 2, appendix A)
    temperature: float = 1.0  # of the generator's softmax when sampling replacements
    tie_embeddings: str = "embeddings"  # none | embeddings (token, position, type, LayerNorm; 3.2) | all (size 1.0)
    generator_weight: float = 1.0  # the generator's MLM loss weight; 0 leaves it untrained (the controls below)
    # generator (sample the generator) | uniform | unigram (the training tokens' frequencies) | frozen (sample
    # frozen_generator, a finished masked-LM run or transformers directory with this run's tokenizer, as
    # Fast-ELECTRA, Dong et al. 2023): the controls that tell a broken discriminator from a hard task
    replacements: str = "generator"
    frozen_generator: Optional[str] = None

    def check(self) -> None:
        """Masking keys, the loss weight and the sampling temperature."""
        super().check()
        require(self.disc_weight > 0, f"objective.disc_weight={self.disc_weight} must be > 0 (ELECTRA uses 50)")
        require(self.temperature > 0, f"objective.temperature={self.temperature} must be > 0 (ELECTRA samples at 1.0)")
        require(self.tie_embeddings in TIES,
                f"objective.tie_embeddings={self.tie_embeddings!r} must be one of {', '.join(TIES)}")
        require(self.generator_weight >= 0, f"objective.generator_weight={self.generator_weight} must be >= 0")
        require(self.replacements in REPLACEMENTS, f"objective.replacements={self.replacements!r} must be one of "
                                                   f"{', '.join(REPLACEMENTS)}")
        require(self.replacements != "frozen" or bool(self.frozen_generator),
                "objective.replacements=frozen needs objective.frozen_generator=<a finished masked-LM run directory "
                "with this run's tokenizer>")


def generator_config(c: EncoderConfig, generator_size: float, tie_embeddings: str) -> EncoderConfig:
    """The generator's config: the discriminator's, hidden and FFN scaled by generator_size, heads
    max(1, H_gen // 64), same depth (ELECTRA section 3.2 and appendix; official get_generator_config)."""
    check_generator(c, generator_size, tie_embeddings)
    if tie_embeddings == "all":
        return c
    hidden = int(round(c.hidden_size * generator_size))
    width = embedding_width(c)
    # Shared tables keep the discriminator's width E; the generator projects E -> H_gen when they differ.
    # Untied, the generator's own tables are H_gen wide (official: embedding_size=None for untied embeddings).
    embedding_size = width if tie_embeddings == "embeddings" and width != hidden else None
    return dataclasses.replace(c, name=f"{c.name}_generator", hidden_size=hidden, num_heads=max(1, hidden // 64),
                               intermediate_size=int(round(c.intermediate_size * generator_size)),
                               embedding_size=embedding_size)


def probability_histograms(logits: torch.Tensor, replaced: torch.Tensor, scored: torch.Tensor,
                            bins: int = AUC_BINS) -> tuple[torch.Tensor, torch.Tensor]:
    """Counts (bins,) of sigmoid(logits) over [0, 1] among the scored replaced tokens and the scored real ones:
    summable across batches, they give the ROC AUC without keeping every prediction (roc_auc)."""
    bin_of = (torch.sigmoid(logits.detach().float()) * bins).long().clamp_(0, bins - 1)[scored]  # (N,)
    pos = replaced[scored]
    return (torch.bincount(bin_of[pos], minlength=bins), torch.bincount(bin_of[~pos], minlength=bins))


def roc_auc(pos_hist: torch.Tensor, neg_hist: torch.Tensor) -> float:
    """P(score of a replaced token > score of a real one), ties (same bin) counted half; 0.5 with no positives
    or no negatives, as for a constant predictor."""
    pos, neg = pos_hist.double(), neg_hist.double()
    n_pos, n_neg = float(pos.sum()), float(neg.sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    below = torch.cumsum(neg, 0) - neg  # real tokens in strictly lower bins than each bin
    return float((pos * (below + 0.5 * neg)).sum()) / (n_pos * n_neg)


def token_only_auc(replaced_counts: torch.Tensor, real_counts: torch.Tensor) -> float:
    """The AUC of a discriminator that reads the token alone, from counts (2, V) of replaced and real occurrences
    per token id in two random halves of the tokens: each half's occurrences scored by their id's
    replaced share in the other half (cross-fitted: an occurrence never scores itself, which would make every
    rare id look telling; an id absent from the other half scores the overall rate). What frequency tells apart;
    a discriminator's AUC clearly above it comes from context (it knows the frequencies better than half the
    validation tokens do, so a small excess is not)."""
    r, n = replaced_counts.double(), real_counts.double()
    rate = r.sum() / (r.sum() + n.sum()).clamp(min=1.0)

    def share(h: int) -> torch.Tensor:
        seen = r[h] + n[h]
        return torch.where(seen > 0, r[h] / seen.clamp(min=1.0), rate)

    scores = torch.cat([share(1), share(0)])  # half 0's occurrences by half 1's shares, and the other way round
    ranks = torch.unique(scores, return_inverse=True)[1]  # equal scores tie
    bins = int(ranks.max()) + 1
    return roc_auc(torch.zeros(bins, dtype=torch.float64).index_add_(0, ranks, r.reshape(-1)),
                   torch.zeros(bins, dtype=torch.float64).index_add_(0, ranks, n.reshape(-1)))


def binary_entropy(p: float) -> float:
    """Entropy in nats of a Bernoulli(p): the log-loss of the best constant predictor of a p-rate event."""
    return 0.0 if p <= 0.0 or p >= 1.0 else -(p * math.log(p) + (1 - p) * math.log(1 - p))


def check_generator(c: EncoderConfig, generator_size: float, tie_embeddings: str) -> None:
    """Raise ConfigError, in one line naming the key, if this generator cannot be built for encoder c."""
    require(tie_embeddings in TIES, f"objective.tie_embeddings={tie_embeddings!r} must be one of {', '.join(TIES)}")
    require(0.0 < generator_size <= 1.0,
            f"objective.generator_size={generator_size} must lie in (0, 1] (a fraction of model.hidden_size)")
    require(tie_embeddings != "all" or generator_size == 1.0,
            f"objective.tie_embeddings=all ties every weight, so it needs objective.generator_size=1.0 "
            f"(got {generator_size}); use tie_embeddings=embeddings for a smaller generator")
    hidden = int(round(c.hidden_size * generator_size))
    require(hidden >= 1, f"objective.generator_size={generator_size} gives a generator hidden size of 0 for "
                         f"model.hidden_size={c.hidden_size}; raise objective.generator_size")
    heads = max(1, hidden // 64)
    require(hidden % heads == 0,
            f"objective.generator_size={generator_size} gives generator hidden size {hidden}, not divisible into "
            f"{heads} heads of 64 (heads = max(1, hidden // 64)); pick a size giving a multiple of 64 or under 128")
    require(c.position != "rope" or (hidden // heads) % 2 == 0,
            f"objective.generator_size={generator_size} gives generator heads {hidden // heads} wide, but "
            "model.position=rope rotates pairs of dimensions; pick a size giving an even head width")
    require(int(round(c.intermediate_size * generator_size)) >= 1,
            f"objective.generator_size={generator_size} gives a generator FFN of 0 for "
            f"model.intermediate_size={c.intermediate_size}; raise objective.generator_size")


class ReplacedTokenDetection(MaskedLM):
    """ELECTRA: a generator (its own Encoder plus the MLM machinery of MaskedLM, which this class inherits:
    masking, mlm_head, mlm_terms) and a discriminator (the run's encoder, received on each call, plus a per-token
    real/replaced head). With tie_embeddings=embeddings the generator's embedding modules are the encoder's
    (attach()); with tie_embeddings=all the generator is the encoder itself."""

    options_class = RTDConfig
    feeds = ("examples",)
    # the model.family whose transformers classes hold both exports (ElectraForPreTraining, ElectraForMaskedLM),
    # whatever family trained them
    export_family: ClassVar[str] = "electra"

    def __init__(self, options: RTDConfig, model_config: EncoderConfig, specials: SpecialIds, token_vocab_size: int,
                 word_table: Any = None):
        gen = generator_config(model_config, options.generator_size, options.tie_embeddings)
        super().__init__(options, gen, specials, token_vocab_size, word_table=word_table)  # mlm_head: the generator's
        self.config, self.generator_config = model_config, gen  # config: the discriminator's, as every objective
        self.generator_size, self.tie_embeddings = options.generator_size, options.tie_embeddings
        self.disc_weight, self.temperature = options.disc_weight, options.temperature
        self.generator: Optional[Encoder] = None if self.tie_embeddings == "all" else Encoder(gen)
        self.disc_head = DiscriminatorHead(model_config)
        self._attached: Optional[nn.Module] = None  # plain attribute: the encoder is not a submodule of ours
        self.generator_weight, self.replacements = options.generator_weight, options.replacements
        # a plain attribute, not a submodule: the frozen generator is not trained, saved, counted or exported
        self.__dict__["frozen"] = (load_teacher(options.frozen_generator, specials.pad, "objective.frozen_generator")
                                   if options.replacements == "frozen" else None)
        # replacements=unigram: the log frequencies (use_data); not in checkpoints
        self.register_buffer("unigram_logits", None, persistent=False)

    @classmethod
    def check(cls, config: EncoderConfig, options: RTDConfig) -> None:
        """The encoder serves a masked objective, and the generator can be built from its config."""
        super().check(config, options)
        check_generator(config, float(options.generator_size), str(options.tie_embeddings))

    @classmethod
    def tokenizer_file(cls, options: RTDConfig) -> Optional[str]:
        """replacements=frozen: the frozen generator's tokenizer, whose ids it samples."""
        if options.replacements != "frozen":
            return None
        return str(teacher_tokenizer_file(Path(options.frozen_generator).expanduser(), "objective.frozen_generator"))

    def use_data(self, data: Any) -> None:
        """replacements=unigram: the training split's regular-token log frequencies, one row of logits to sample."""
        if self.replacements != "unigram":
            return
        counts = token_counts(data.splits["train"], self.spec.first_regular_id)[:self.config.vocab_size]
        row = torch.zeros(self.config.vocab_size, dtype=torch.float64)
        row[:len(counts)] = torch.from_numpy(counts.astype(np.float64))
        self.unigram_logits = row.log().float().to(self.disc_head.dense.weight.device)

    def replacement_logits(self, batch: dict[str, torch.Tensor], logits: torch.Tensor,
                           idx: torch.Tensor) -> torch.Tensor:
        """Logits (M, V) the replacements at the selected positions idx are sampled from: the generator's (M, V),
        or objective.replacements' control (no gradient in any case: sample() detaches)."""
        if self.replacements == "generator":
            return logits
        if self.replacements == "uniform":
            return torch.zeros_like(logits, dtype=torch.float32)
        if self.replacements == "unigram":
            require(self.unigram_logits is not None, "objective.replacements=unigram needs the training tokens' "
                                                     "frequencies: build the run through runner.build")
            return self.unigram_logits.to(logits.device)[None].expand(len(idx), -1)
        frozen = self.frozen
        if next(frozen.parameters()).device != logits.device:
            frozen.to(logits.device)
        with torch.no_grad():
            return frozen.outputs(batch, idx)[0].float()

    def attach(self, encoder: nn.Module) -> None:
        """Point the generator's embedding modules at the encoder's (tie_embeddings=embeddings): one set of
        tensors, trained by both losses, saved under both names in checkpoints and counted once."""
        self.__dict__["_attached"] = encoder
        if self.tie_embeddings != "embeddings":
            return
        ours, theirs = self.generator.embeddings, encoder.embeddings
        for name in SHARED_EMBEDDINGS:
            mine, shared = getattr(ours, name), getattr(theirs, name)
            if mine is None and shared is None:  # no such table (rotary positions, no segments, no norm)
                continue
            if mine is None or shared is None or mine.weight.shape != shared.weight.shape:
                raise RuntimeError(f"generator embeddings.{name} cannot share the encoder's: they differ")
            setattr(ours, name, shared)

    def generator_of(self, encoder: nn.Module) -> nn.Module:
        """The generator network: its own Encoder, or the discriminator itself when all weights are tied."""
        if self._attached is not encoder:
            raise RuntimeError("objective=rtd was not attached to this encoder; build it through "
                               "runner.build.Pretrainer(encoder, objective), which calls objective.attach(encoder)")
        return encoder if self.generator is None else self.generator

    def prepare(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Mask as MaskedLM does; also draw one uniform per token (B, T) from the batch's generator, which the
        generator's sample at that position uses: samples are a function of the batch (deterministic and resumable
        runs), drawn in the data pipeline rather than by a Generator inside the step (which torch.compile cannot
        trace), and per token, so they follow any per-token re-layout of the batch. Held as integers in
        [0, 2^24) (the uniform in 24-bit fixed point, exact in float32): the pipeline widens every batch tensor to
        int64 (runner/data/batches.py widen(), as feeds.py does to the validation batches), which would zero a
        float."""
        out = super().prepare(batch, generator)
        out["sample_uniform"] = torch.randint(0, _UNIFORM_STEPS, batch["input_ids"].shape, generator=generator)
        return out

    def normalizers(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """MLM over selected tokens; the discriminator over all non-padding tokens."""
        mask = batch.get("attention_mask")
        real = mask.sum() if mask is not None else torch.tensor(batch["input_ids"].numel())
        return {**super().normalizers(batch), "disc": real}

    def sample(self, logits: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        """Token ids (M,) drawn from softmax(logits / temperature) over the tokenizer's regular tokens, by
        inverse CDF with one uniform in [0, 1) per row (M,); no gradient flows through the draw (ELECTRA
        section 2)."""
        scaled = logits.detach().float() / self.temperature  # (M, V)
        allowed = torch.zeros(scaled.shape[-1], dtype=torch.bool, device=scaled.device)
        allowed[self.spec.first_regular_id:self.spec.vocab_size] = True
        probs = torch.softmax(scaled.masked_fill(~allowed, float("-inf")), dim=-1)
        # Inverse-CDF sampling: one uniform per row (torch.multinomial and Gumbel-max draw M x V random numbers,
        # a quarter of a CPU step at V = 8k); disallowed ids have zero mass, so a flat step of the CDF, never hit.
        cdf = probs.cumsum(-1)  # (M, V); float32 rounding shifts boundaries by ~1e-6, zero-mass steps stay flat
        u = uniform.to(cdf.dtype)[:, None] * cdf[:, -1:]  # (M, 1)
        return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=cdf.shape[-1] - 1)  # (M,)

    def corrupt(self, batch: dict[str, torch.Tensor], logits: torch.Tensor,
                idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The discriminator's input (B, T): the original tokens with each selected position replaced by a
        generator sample; and the labels (B, T), True where the token differs from the original."""
        labels = batch["labels"]
        original = torch.where(labels.ne(IGNORE), labels, batch["input_ids"])  # (B, T): official unmask()
        # (M,) in [0, 1): the selected tokens' draws
        uniform = batch["sample_uniform"].reshape(-1).index_select(0, idx).float() / _UNIFORM_STEPS
        # index_put, not index_copy: torch.compile traces it (tests/test_compile.py)
        corrupted = original.reshape(-1).index_put((idx,), self.sample(logits, uniform).to(original.dtype))
        corrupted = corrupted.view_as(original)  # (B, T)
        return corrupted, corrupted.ne(original)  # a sample equal to the original is real

    def loss(self, encoder: nn.Module, batch: dict[str, torch.Tensor],
             norms: dict[str, Any]) -> tuple[torch.Tensor, Stats]:
        """Generator MLM loss + disc_weight x discriminator loss, each normalised by its accumulated count."""
        mask = batch.get("attention_mask")
        gen = self.generator_of(encoder)
        g_hidden = gen.encode_batch(batch)  # (B, T, H_gen); packed rows read as the discriminator reads them
        selected = self.selected_logits(gen, g_hidden, batch["labels"])
        mlm_sum, stats = self.mlm_terms(gen, g_hidden, batch["labels"], selected)
        logits, idx, target = selected
        # integer ids: no path back into the generator
        corrupted, replaced = self.corrupt(batch, self.replacement_logits(batch, logits, idx), idx)
        d_hidden = encoder.encode_batch({**batch, "input_ids": corrupted})
        d_logits = self.disc_head(d_hidden, mask).float()  # (B, T), computed on the real tokens
        real = mask.bool() if mask is not None else torch.ones_like(replaced)  # (B, T): non-padding tokens
        bce = F.binary_cross_entropy_with_logits(d_logits, replaced.float(), reduction="none")  # (B, T)
        disc_sum = bce.masked_fill(~real, 0.0).sum()
        pred = d_logits > 0
        hist_replaced, hist_real = probability_histograms(d_logits, replaced, real)
        # the discriminator's input tokens by id, in two random halves (the parity of each token's own sampling draw,
        # which follows the token through any re-layout of the batch, packed or padded): what the token alone tells
        vocab = self.config.vocab_size
        slot = corrupted + vocab * (batch["sample_uniform"] % 2).to(corrupted.dtype)
        stats.update(disc_hist_replaced=hist_replaced, disc_hist_real=hist_real,
                     token_replaced=torch.bincount(slot[real & replaced], minlength=2 * vocab).view(2, vocab),
                     token_real=torch.bincount(slot[real & ~replaced], minlength=2 * vocab).view(2, vocab),
                     disc_loss_sum=disc_sum.detach(), disc_count=real.sum(),
                     disc_correct=(pred.eq(replaced) & real).sum(), disc_true_pos=(pred & replaced & real).sum(),
                     disc_pred_pos=(pred & real).sum(), disc_replaced=(replaced & real).sum(),
                     sampled_correct=corrupted.reshape(-1).index_select(0, idx).eq(target).sum())
        loss = self.generator_weight * mlm_sum / max(float(norms["mlm"]), 1.0) + \
            self.disc_weight * disc_sum / max(float(norms["disc"]), 1.0)
        return loss, stats

    def head_flops(self, batch: dict[str, torch.Tensor]) -> float:
        """The generator (its encoder over every token, its MLM head on the selected positions) and the
        discriminator's head on every token (Clark et al. 2020); a frozen generator's forward beside them
        (replacements=frozen, a run of ours: a third, as train_flops triples these for the backward it has not)."""
        B, T = batch["input_ids"].shape
        selected, real = int(batch["labels"].ne(IGNORE).sum()), real_tokens(batch)  # token-wise: the real tokens
        gen = encoder_flops(self.generator_config, real, T, B * T) + mlm_head_flops(self.generator_config, selected)
        frozen = self.frozen.config if self.frozen is not None else None
        if frozen is not None:
            gen += (encoder_flops(frozen, real, T, B * T) + mlm_head_flops(frozen, selected)) / 3.0
        return gen + disc_head_flops(self.config, real)

    @property
    def loss_terms(self) -> tuple[str, ...]:
        """The generator's MLM loss and the discriminator's (unweighted: the loss adds disc_weight x disc_loss)."""
        return ("mlm_loss", "disc_loss")

    @property
    def headline(self) -> tuple[str, ...]:
        """Both losses, the constant predictor's loss the discriminator must beat, its AUC and the AUC the token's
        identity alone gives (frequency; the discriminator's margin over it is context)."""
        return ("mlm_loss", "disc_loss", "all_real_loss", "disc_auc", "token_only_auc")

    def verdict(self, val: dict[str, float]) -> dict[str, Any] | None:
        """Did the discriminator beat the constant predictor of the replaced rate? Learned when its disc_loss lies at
        least CLEAR_MARGIN (relative) below that predictor's log-loss; the AUC beside it."""
        if "disc_loss" not in val or not val.get("all_real_loss"):
            return None
        loss, base, auc = val["disc_loss"], val["all_real_loss"], val.get("disc_auc", 0.5)
        margin = 1.0 - loss / base
        learned = margin >= CLEAR_MARGIN
        token = val.get("token_only_auc")
        text = (f"the discriminator {'beat' if learned else 'did NOT beat'} its constant baseline: disc_loss "
                f"{loss:.4f} is {margin:.1%} below the {base:.4f} of predicting the replaced rate everywhere "
                f"({CLEAR_MARGIN:.0%} needed); replaced-token AUC {auc:.3f} (chance 0.5" +
                (f", the token alone {token:.3f}" if token is not None else "") + ")")
        return {"what": "discriminator", "learned": learned, "margin": margin, "auc": auc, "token_only_auc": token,
                "text": text}

    def metrics(self, stats: Stats) -> dict[str, float]:
        """The generator's MLM metrics (mlm_loss, mlm_accuracy, perplexity, sampled_accuracy: share of samples
        equal to the original) and the discriminator's: loss, accuracy, precision / recall / F1 of "replaced",
        ROC AUC of the "replaced" probability (threshold-free), the replaced-token rate, and the two constant
        baselines the discriminator must beat: the accuracy of predicting "real" everywhere (1 - replaced rate) and
        the log-loss of predicting the replaced rate everywhere (its binary entropy, against disc_loss); and
        token_only_auc, the AUC the token's identity alone reaches on these batches (disc_auc above it is
        context)."""
        n = max(float(stats["disc_count"]), 1.0)
        tp, pred_pos, replaced = (float(stats[k]) for k in ("disc_true_pos", "disc_pred_pos", "disc_replaced"))
        precision, recall = tp / max(pred_pos, 1.0), tp / max(replaced, 1.0)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        return {**mlm_metrics(stats),
                "sampled_accuracy": float(stats["sampled_correct"]) / max(float(stats["mlm_count"]), 1.0),
                "disc_loss": float(stats["disc_loss_sum"]) / n, "disc_accuracy": float(stats["disc_correct"]) / n,
                "disc_precision": precision, "disc_recall": recall, "disc_f1": f1, "replaced_rate": replaced / n,
                "all_real_accuracy": 1.0 - replaced / n, "all_real_loss": binary_entropy(replaced / n),
                "disc_auc": roc_auc(stats["disc_hist_replaced"], stats["disc_hist_real"]),
                "token_only_auc": token_only_auc(stats["token_replaced"], stats["token_real"])}

    def exports(self, encoder: nn.Module) -> dict[str, Export]:
        """hf/ holds the discriminator (ElectraForPreTraining), hf_generator/ the generator (ElectraForMaskedLM),
        both as the ELECTRA family."""
        require(not self.config.pads_positions,
                f"objective=rtd on model.family={self.config.family} has no transformers ELECTRA counterpart (its "
                "position ids start at pad_token_id + 1); set trainer.export_hf=false or use model.family=electra "
                "or bert")

        def named(prefix: str, module: nn.Module) -> dict[str, torch.Tensor]:
            return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}

        gen = self.generator_of(encoder)
        return {"hf": Export({**named("encoder", encoder), **named("objective.disc_head", self.disc_head)},
                             dataclasses.replace(self.config, family=self.export_family), False, True),
                "hf_generator": Export({**named("encoder", gen), **named("objective.mlm_head", self.mlm_head)},
                                       dataclasses.replace(self.generator_config, family=self.export_family), False)}

    def sentence_scores(self, encoder: nn.Module, sentences: Sequence[Sequence[int]], specials: SpecialIds,
                        words: Sequence[Sequence[int | None]] | None = None,
                        first_only: bool = False) -> dict[str, torch.Tensor]:
        """The discriminator's summed log-probability that every token is original; beside it the generator's
        pseudo-log-likelihood and, given words, its PLL-word-l2r (ELECTRA's generator is a masked LM)."""
        def original_logp(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return F.logsigmoid(-self.disc_head(encoder(ids, torch.zeros_like(ids), mask), mask).float())  # (B, T)
        disc = per_token_sum(device_of(encoder), original_logp, sentences, [specials.cls], [specials.sep], specials.pad)
        if first_only:
            return {"disc": disc}
        gen = self.generator_of(encoder)
        generator = pseudo_log_likelihood(gen, lambda h: self.mlm_logits(gen, h), sentences, specials, words)
        return {"disc": disc, **{name.replace("pll", "generator"): s for name, s in generator.items()}}
