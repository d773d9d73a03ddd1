"""ELECTRA (Clark et al. 2020): parameter counts and logits against transformers, replaced-token labels, gradient
isolation of the generator, embedding sharing, export, and `python -m runner model=electra` end to end.
The tests of this file that train or start a process: tests/integration/test_electra.py."""
from __future__ import annotations

import io
import re
from types import SimpleNamespace

import pytest
import torch

from runner.build import Pretrainer, build, encoder_config, parameter_counts
from runner.data.batches import widen
from runner.data.tokenizer import SpecialIds
from runner.config.errors import ConfigError
from runner.models.flops import encoder_flops, train_flops
from runner.models.config import EncoderConfig
from runner.models.encoder import Encoder
from runner.hf.mapping import build_hf_model, hf_config, hf_model_class, hf_unsupported
from runner.objectives.masking import IGNORE
from runner.objectives.mlm import MaskedLM
from runner.objectives.rtd import (CLEAR_MARGIN, ReplacedTokenDetection, binary_entropy, generator_config,
                                   probability_histograms, roc_auc, token_only_auc)
from runner.engine.validation import validation_line
from tests.conftest import TINY, make_cfg, cli


transformers = pytest.importorskip("transformers")


SP = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4, num_special=5)


# transformers' counts from ../shared/reference/papers.md (ElectraForPreTraining / ElectraForMaskedLM)
DISCRIMINATORS = [("electra_small", 13_549_057), ("electra_base", 109_483_009), ("electra_large", 335_142_913)]


def preset(name: str) -> EncoderConfig:
    return encoder_config(make_cfg(f"model={name}"))


def rtd(config: EncoderConfig, **kw) -> Pretrainer:
    """Encoder (discriminator) + RTD objective, attached as a run builds them."""
    return Pretrainer(Encoder(config), ReplacedTokenDetection.create(config, SP, config.vocab_size, **kw))


def tiny(**kw) -> EncoderConfig:
    base = dict(family="electra", vocab_size=120, hidden_size=48, embedding_size=24, num_layers=2, num_heads=4,
                intermediate_size=96, max_position_embeddings=66, hidden_dropout=0.0, attention_dropout=0.0)
    return EncoderConfig(**{**base, **kw})


def batch_of(obj: ReplacedTokenDetection, seed: int = 0, pad_tail: bool = True) -> dict[str, torch.Tensor]:
    """A prepared batch of 3 x 20 tokens, the second row padded after 14 tokens."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 120, (3, 20), generator=g)
    ids[:, 0], ids[:, -1] = SP.cls, SP.sep
    mask = torch.ones_like(ids)
    if pad_tail:
        ids[1, 13], ids[1, 14:], mask[1, 14:] = SP.sep, SP.pad, 0
    special = (ids < SP.num_special)
    clean = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids),
             "special_tokens_mask": special}
    return obj.prepare(clean, torch.Generator().manual_seed(seed + 1))


@pytest.mark.parametrize("model,expected", DISCRIMINATORS)
def test_discriminator_count_equals_transformers(model, expected):
    config = preset(model)
    size = make_cfg(f"model={model}").objective.generator_size
    with torch.device("meta"):
        ours = rtd(config, generator_size=size)
        theirs = hf_model_class("electra", False, True)(hf_config(config, False, {}, discriminator=True))
    disc = sum(p.numel() for p in torch.nn.ModuleList([ours.encoder, ours.objective.disc_head]).parameters())
    assert disc == expected == sum(p.numel() for p in theirs.parameters())


def test_the_cpu_electra_is_the_objective_on_a_modern_encoder_and_the_other_presets_stay_bert_style():
    """model=electra (make run) puts ELECTRA on a modern encoder, where its discriminator learns context at CPU
    compute; electra_bert keeps the published BERT-style encoder at the same sizes, as do the paper-size presets."""
    modern, classic = preset("electra"), preset("electra_bert")
    assert (modern.position, modern.ffn, modern.norm_position, modern.bias, modern.local_window) == \
        ("rope", "geglu", "pre", False, 32)
    for key in ("vocab_size", "hidden_size", "num_layers", "num_heads", "embedding_size", "tokenizer", "activation"):
        assert getattr(modern, key) == getattr(classic, key), key
    for name in ("electra_bert", "electra_small", "electra_base", "electra_large"):
        c = preset(name)
        assert (c.position, c.ffn, c.norm_position, c.bias, c.local_window) == ("learned", "mlp", "post", True, None)
    assert hf_unsupported(classic) is None and "model.position=rope" in hf_unsupported(modern)


def test_small_generator_before_sharing_equals_electra_for_masked_lm():
    config = preset("electra_small")
    gen = generator_config(config, 0.25, "embeddings")
    assert (gen.hidden_size, gen.num_heads, gen.intermediate_size, gen.embedding_size) == (64, 1, 256, 128)
    with torch.device("meta"):
        ours = torch.nn.ModuleList([Encoder(gen), ReplacedTokenDetection.create(config, SP, config.vocab_size).mlm_head])
        theirs = hf_model_class("electra", False)(hf_config(gen, False, {}))
    assert sum(p.numel() for p in ours.parameters()) == 4_620_026 == sum(p.numel() for p in theirs.parameters())


def test_base_generator_is_a_third_and_projects_shared_768_wide_embeddings():
    gen = generator_config(preset("electra_base"), make_cfg("model=electra_base").objective.generator_size,
                           "embeddings")
    assert (gen.hidden_size, gen.num_heads, gen.intermediate_size, gen.embedding_size) == (256, 4, 1024, 768)


@pytest.mark.parametrize("experiment,preset_name,batch,steps,lr,mask,gen", [
    ("electra_small_paper", "electra_small", 128, 1_000_000, 5e-4, 0.15, 0.25),
    ("electra_base_paper", "electra_base", 256, 766_000, 2e-4, 0.15, 0.33333),
    ("electra_large_paper", "electra_large", 2048, 400_000, 2e-4, 0.25, 0.25),
])
def test_paper_experiments_compose_the_recipe(experiment, preset_name, batch, steps, lr, mask, gen):
    cfg = make_cfg(f"experiment={experiment}")
    assert cfg.model.name == preset_name and cfg.objective.name == "rtd" and cfg.objective.disc_weight == 50.0
    assert cfg.trainer.batch_size * cfg.trainer.grad_accum == batch and cfg.trainer.max_steps == steps
    assert (cfg.optimizer.lr, cfg.optimizer.warmup_steps, cfg.optimizer.eps) == (lr, 10_000, 1e-6)
    assert (cfg.objective.mask_prob, cfg.objective.generator_size) == (mask, gen)
    assert cfg.data.seq_len == (128 if preset_name == "electra_small" else 512)


def test_shared_embeddings_are_one_tensor_counted_once_and_survive_a_checkpoint():
    torch.manual_seed(0)
    module = rtd(tiny())
    gen, disc = module.objective.generator.embeddings, module.encoder.embeddings
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings", "norm"):
        assert getattr(gen, name).weight is getattr(disc, name).weight, name
    assert gen.project is not disc.project  # each network projects E to its own hidden size
    counts = parameter_counts(module)
    shared = sum(p.numel() for n in ("word_embeddings", "position_embeddings", "token_type_embeddings", "norm")
                 for p in getattr(disc, n).parameters())
    assert counts["total"] == counts["embeddings"] + counts["encoder_layers"] + counts["mlm_head"] + \
        counts["generator"] - shared + counts["disc_head"]
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    torch.manual_seed(1)
    fresh = rtd(tiny())
    fresh.load_state_dict(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    tied = fresh.objective.generator.embeddings.word_embeddings.weight
    assert tied is fresh.encoder.embeddings.word_embeddings.weight
    for (name, a), (_, b) in zip(module.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), name


def test_tie_all_makes_the_generator_the_discriminator():
    module = rtd(tiny(embedding_size=None), generator_size=1.0, tie_embeddings="all")
    assert module.objective.generator is None
    assert module.objective.generator_of(module.encoder) is module.encoder
    untied = rtd(tiny(embedding_size=None), tie_embeddings="none")
    assert untied.objective.generator.embeddings.word_embeddings.weight.shape == (120, 12)  # its own H_gen tables


def test_labels_mark_replacements_and_a_sample_equal_to_the_original_is_real():
    torch.manual_seed(0)
    module = rtd(tiny(), mask_prob=0.5).eval()
    obj, enc = module.objective, module.encoder
    batch = batch_of(obj)
    selected = batch["labels"].ne(IGNORE)
    original = torch.where(selected, batch["labels"], batch["input_ids"])
    forced = int(original[selected][0])  # a token that occurs at a selected position
    with torch.no_grad():  # force the generator: every sample is `forced`
        obj.mlm_head.bias.fill_(-1e4)
        obj.mlm_head.bias[forced] = 1e4
        gen = obj.generator_of(enc)
        logits, idx, _ = obj.selected_logits(gen, gen(batch["input_ids"], None, batch["attention_mask"]),
                                             batch["labels"])
        corrupted, replaced = obj.corrupt(batch, logits, idx)
    assert torch.equal(corrupted[selected], torch.full_like(corrupted[selected], forced))
    assert torch.equal(corrupted[~selected], original[~selected])
    expected = selected & original.ne(forced)
    assert torch.equal(replaced, expected)
    assert bool((selected & ~expected).any()), "the batch must hold a selected token equal to its sample"
    _, stats = module(batch, {k: float(v) for k, v in obj.normalizers(batch).items()})
    assert int(stats["disc_replaced"]) == int(expected.sum())
    assert int(stats["disc_count"]) == int(batch["attention_mask"].sum())  # all non-padding tokens, [CLS] included


def pairwise_auc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """The exact ROC AUC: the share of (positive, negative) pairs ordered right, ties counted half."""
    diff = scores[positive][:, None] - scores[~positive][None, :]
    return float((diff > 0).double().mean() + 0.5 * (diff == 0).double().mean())


def test_auc_from_histograms_matches_the_pairwise_auc_and_a_constant_scores_half():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 50, generator=g)
    replaced = torch.rand(6, 50, generator=g) < torch.sigmoid(2 * logits)  # informative but noisy scores
    scored = torch.rand(6, 50, generator=g) < 0.9  # padding is left out
    halves = [probability_histograms(logits[r], replaced[r], scored[r]) for r in (slice(0, 3), slice(3, 6))]
    pos, neg = halves[0][0] + halves[1][0], halves[0][1] + halves[1][1]  # summed across batches, as evaluate()
    exact = pairwise_auc(torch.sigmoid(logits)[scored], replaced[scored])
    assert 0.6 < exact < 0.95
    assert abs(roc_auc(pos, neg) - exact) < 2e-3  # only pairs sharing a 0.001-wide bin count as ties
    assert int(pos.sum() + neg.sum()) == int(scored.sum())
    assert roc_auc(*probability_histograms(torch.full((6, 50), -3.0), replaced, scored)) == 0.5  # "all real"
    assert roc_auc(*probability_histograms(torch.where(replaced, 2.0, -2.0), replaced, scored)) == 1.0
    assert abs(binary_entropy(0.25) - 0.5623351446) < 1e-9 and binary_entropy(0.0) == 0.0


def test_sampling_follows_the_batch_generator():
    torch.manual_seed(0)
    module = rtd(tiny()).eval()
    a, b = batch_of(module.objective, seed=3), batch_of(module.objective, seed=3)
    other = batch_of(module.objective, seed=4)
    norms = {k: float(v) for k, v in module.objective.normalizers(a).items()}
    with torch.no_grad():
        la, _ = module(a, norms)
        lb, _ = module(b, norms)
    assert torch.equal(la, lb)
    assert a["sample_uniform"].shape == a["input_ids"].shape  # one draw per token: follows per-token re-layouts
    assert not torch.equal(a["sample_uniform"], other["sample_uniform"])
    # integers (u * 2^24): the pipeline's int64 widening, which feeds.py applies to validation batches, keeps them
    assert torch.equal(widen(a)["sample_uniform"], a["sample_uniform"])


def test_control_replacements_are_uniform_or_the_training_frequencies_and_skip_the_generator():
    """objective.replacements: uniform over the regular tokens, or by the training split's token counts; the
    generator's logits are ignored, and generator_weight=0 leaves the generator without gradient."""
    torch.manual_seed(0)
    logits, idx, u = torch.randn(6000, 120) * 5, torch.arange(6000), torch.rand(6000)  # a generator's, ignored
    uniform = ReplacedTokenDetection.create(tiny(), SP, 120, replacements="uniform")
    counts = torch.bincount(uniform.sample(uniform.replacement_logits({}, logits, idx), u), minlength=120)
    assert int(counts[:SP.num_special].sum()) == 0  # never a special token
    assert int(counts[SP.num_special:].min()) > 20 and int(counts[SP.num_special:].max()) < 90  # 52 each expected
    unigram = ReplacedTokenDetection.create(tiny(), SP, 120, replacements="unigram")
    with pytest.raises(ConfigError, match="replacements=unigram needs the training tokens"):
        unigram.replacement_logits({}, logits, idx)
    train = torch.tensor([2, 7, 7, 7, 9, 3, 2, 7, 7, 7, 9, 3])  # 7 three times as frequent as 9; specials not counted
    unigram.use_data(SimpleNamespace(splits={"train": SimpleNamespace(ids=train)}))
    draws = unigram.sample(unigram.replacement_logits({}, logits, idx), u)
    assert set(draws.tolist()) == {7, 9} and 2.7 < float((draws == 7).sum() / (draws == 9).sum()) < 3.3
    module = rtd(tiny(), replacements="uniform", generator_weight=0.0)
    batch = batch_of(module.objective)
    loss, stats = module(batch, {k: float(v) for k, v in module.objective.normalizers(batch).items()})
    loss.backward()
    assert float(loss.detach()) == pytest.approx(50.0 * float(stats["disc_loss_sum"]) / float(stats["disc_count"]),
                                                 rel=1e-5)
    for name, p in module.named_parameters():  # the generator's own weights: no gradient at generator_weight=0
        if name.startswith(("objective.generator.", "objective.mlm_head.")):
            assert p.grad is None or not p.grad.any(), name


def test_token_only_auc_is_what_the_tokens_identity_tells():
    def halves(*rows):  # per-id counts (V,) of the even positions' and the odd ones'
        return torch.tensor(rows, dtype=torch.long)

    # id 5 always replaced, id 6 always real, in both halves: identity separates them perfectly
    assert token_only_auc(halves([0, 0, 0, 0, 0, 2, 0], [0, 0, 0, 0, 0, 2, 0]),
                          halves([0, 0, 0, 0, 0, 0, 5], [0, 0, 0, 0, 0, 0, 4])) == 1.0
    # replaced tokens drawn by the real tokens' frequencies: identity tells nothing
    assert token_only_auc(halves([0, 1, 2], [0, 1, 2]), halves([0, 10, 20], [0, 10, 20])) == pytest.approx(0.5)
    # ids seen in one half only tell nothing, however their occurrences fall: no occurrence scores itself
    assert token_only_auc(halves([0, 3, 0], [0, 0, 0]), halves([0, 0, 0], [0, 0, 4])) == 0.5
    # by hand: half 0's occurrences scored by half 1's shares (id 1: 1 of 2 replaced, id 2: 1 of 3) and half 1's by
    # half 0's (id 1: 1 of 1, id 2: 0 of 2)
    rep = [1 / 2, 1.0, 0.0]  # id 1 in half 0; id 1 and id 2 in half 1
    real = [1 / 3, 1 / 3, 1.0, 0.0, 0.0]  # id 2 in half 0 (twice); id 1 and id 2 (twice) in half 1
    by_hand = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in rep for b in real) / (len(rep) * len(real))
    assert token_only_auc(halves([0, 1, 0], [0, 1, 1]), halves([0, 0, 2], [0, 1, 2])) == pytest.approx(by_hand)


def test_the_verdict_says_whether_the_discriminator_beat_the_constant_predictor():
    obj = ReplacedTokenDetection.create(tiny(), SP, 120)
    at_chance = obj.verdict({"disc_loss": 0.3961, "all_real_loss": 0.4044, "disc_auc": 0.548, "token_only_auc": 0.51})
    assert not at_chance["learned"] and "did NOT beat" in at_chance["text"] and "0.548" in at_chance["text"]
    assert at_chance["margin"] == pytest.approx(1 - 0.3961 / 0.4044) and at_chance["margin"] < CLEAR_MARGIN
    learned = obj.verdict({"disc_loss": 0.27, "all_real_loss": 0.4158, "disc_auc": 0.87})
    assert learned["learned"] and learned["text"].startswith("the discriminator beat its constant baseline")
    assert obj.verdict({"mlm_loss": 6.0}) is None and MaskedLM.create(tiny(), SP, 120).verdict({"mlm_loss": 6}) is None


def test_the_validation_line_shows_the_objectives_headline_and_the_probes_interval():
    obj = ReplacedTokenDetection.create(tiny(), SP, 120)
    val = {"mlm_loss": 5.8, "mlm_accuracy": 0.1, "perplexity": 330.0, "disc_loss": 0.39, "disc_precision": 0.2,
           "all_real_loss": 0.40, "disc_auc": 0.55, "token_only_auc": 0.51, "unigram_gap": 0.46}
    line = validation_line(250, 1500, 40.0, val, {"overall": 0.54, "overall_lo": 0.49, "overall_hi": 0.60,
                                                  "swap": 0.5}, None, obj.headline)
    assert line == ("step 250/1500  train loss 40.0000  val mlm_loss 5.8  disc_loss 0.39  all_real_loss 0.4  "
                    "disc_auc 0.55  token_only_auc 0.51  unigram_gap 0.46  probes 0.540 [0.49, 0.60]")
    assert obj.loss_terms == ("mlm_loss", "disc_loss")


def test_discriminator_loss_sends_no_gradient_into_the_generator():
    torch.manual_seed(0)
    module = rtd(tiny())
    obj = module.objective
    batch = batch_of(obj)
    norms = {k: float(v) for k, v in obj.normalizers(batch).items()}

    def grads(weight: float) -> dict[str, torch.Tensor | None]:
        module.zero_grad(set_to_none=True)
        obj.disc_weight = weight
        loss, _ = module(batch, norms)
        loss.backward()
        return {n: None if p.grad is None else p.grad.clone() for n, p in module.named_parameters()}

    with_disc, mlm_only = grads(50.0), grads(0.0)
    shared = {n for n, _ in module.named_parameters() if n.startswith("encoder.embeddings.") and "project" not in n}
    generator_own = [n for n, _ in module.named_parameters()
                     if n.startswith(("objective.generator.", "objective.mlm_head."))]
    assert generator_own and not any(n.startswith("objective.generator.embeddings.word") for n in generator_own)
    for n in generator_own:  # the discriminator term adds exactly nothing to the generator's own weights
        assert mlm_only[n] is not None and torch.equal(with_disc[n], mlm_only[n]), n
    for n in shared:  # shared embeddings learn from both losses, as in the paper (section 3.2)
        assert not torch.allclose(with_disc[n], mlm_only[n]), n
    assert with_disc["objective.disc_head.dense.weight"].abs().sum() > 0
    body = mlm_only["encoder.layers.0.attention.query.weight"]  # the discriminator body learns from L_Disc only
    assert body is None or not bool(body.any())


def test_discriminator_and_generator_logits_equal_transformers_on_identical_weights():
    torch.manual_seed(0)
    module = rtd(tiny()).eval()
    obj = module.objective
    parts = obj.exports(module.encoder)
    disc = build_hf_model(parts["hf"][0], parts["hf"][1], False, discriminator=True)
    gen = build_hf_model(parts["hf_generator"][0], parts["hf_generator"][1], False)
    assert type(disc).__name__ == "ElectraForPreTraining" and type(gen).__name__ == "ElectraForMaskedLM"
    batch = batch_of(obj)
    ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
    real = mask.bool()
    with torch.no_grad():
        ours_d = obj.disc_head(module.encoder(ids, types, mask))
        g = obj.generator
        ours_g = obj.mlm_logits(g, g(ids, types, mask))
        theirs_d = disc(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        theirs_g = gen(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    assert (ours_d[real] - theirs_d[real]).abs().max() <= 1e-4
    assert (ours_g[real] - theirs_g[real]).abs().max() <= 1e-4


def test_mlm_on_the_electra_architecture_exports_as_electra_for_masked_lm():
    torch.manual_seed(0)
    config = tiny()
    module = Pretrainer(Encoder(config), MaskedLM.create(config, SP, config.vocab_size)).eval()
    hf = build_hf_model(module, config, False)
    assert type(hf).__name__ == "ElectraForMaskedLM"
    ids = torch.randint(5, 120, (2, 12))
    with torch.no_grad():
        ours = module.objective.mlm_logits(module.encoder, module.encoder(ids))
        assert (ours - hf(input_ids=ids).logits).abs().max() <= 1e-4


@pytest.mark.parametrize("family", ["electra", "roberta"])
def test_pair_heads_have_no_export_outside_bert_and_albert(family):
    config = tiny(family=family, embedding_size=None if family == "roberta" else 24, type_vocab_size=2)
    assert "next-sentence or sentence-order head" in hf_unsupported(config, nsp=True)
    assert hf_unsupported(config, nsp=False) is None
    assert hf_unsupported(tiny(family="bert", embedding_size=None), nsp=True) is None


def test_flops_count_the_generator_and_the_discriminator_head():
    c = tiny(embedding_size=None)
    base = train_flops(c, 4, 20, 12)
    # a full-size generator adds one more encoder pass and the discriminator head (dense H->H, H->1) per token
    assert train_flops(c, 4, 20, 12, generator=c) - base == 3.0 * (encoder_flops(c, 80, 20) + 80 * 2 * (48 * 48 + 48))
    small = generator_config(c, 0.25, "embeddings")
    assert base - 3.0 * 12 * 2 * (48 * 48 + 48 * 120) < train_flops(c, 4, 20, 12, generator=small) < \
        train_flops(c, 4, 20, 12, generator=c)


@pytest.mark.parametrize("overrides,key", [
    (["objective.tie_embeddings=all"], "objective.tie_embeddings=all"),
    (["objective.generator_size=1.5"], "objective.generator_size=1.5"),
    (["objective.generator_size=0"], "objective.generator_size=0"),
    (["objective.tie_embeddings=some"], "objective.tie_embeddings='some'"),
    (["model=electra_bert", "model.hidden_size=516", "model.num_heads=4", "objective.generator_size=0.25"],
     "not divisible"),
    (["objective.replacements=random"], "objective.replacements='random' must be one of generator, uniform"),
    (["objective.replacements=frozen"], "objective.replacements=frozen needs objective.frozen_generator="),
    (["objective.replacements=frozen", "objective.frozen_generator=/nonexistent"],
     "objective.frozen_generator=/nonexistent is not a directory"),
    (["objective.generator_weight=-1"], "objective.generator_weight=-1.0 must be >= 0"),
])
def test_bad_combinations_fail_before_any_data(overrides, key, monkeypatch):
    import runner.build as b

    monkeypatch.setattr(b, "build_data", lambda *a, **k: pytest.fail("data was built before the check"))
    with pytest.raises(ConfigError, match=re.escape(key)):
        build(make_cfg(*TINY, "model=electra", *overrides))


def test_bad_combination_exits_2_with_one_line(tmp_path):
    r = cli(*TINY, "model=electra", "objective.generator_size=0.5", "objective.tie_embeddings=all",
                run_dir=tmp_path / "run")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "objective.tie_embeddings=all" in lines[0] and "generator_size=1.0" in lines[0]
