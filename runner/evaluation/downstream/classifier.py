"""Fine-tune a pretrained encoder on a classification task, over several seeds, against two baselines: the same
architecture from random weights (same fine-tuning), and bag-of-words logistic regression.

Per seed: a fresh copy of the encoder and a new head (BERT's: tanh pooler on the first token, dropout, linear;
a causal Transformer-XL: the last non-pad token, linear), AdamW with linear warmup and decay, dev accuracy after
every epoch, and the test accuracy and macro-F1 of the epoch with the best dev accuracy. Reported: mean and
sample standard deviation (ddof=1; 0 for one seed) over seeds."""
from __future__ import annotations

import contextlib
import copy
import math
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from runner.evaluation.downstream.baselines import baseline_inputs, baseline_key, cached_baselines, encoder_shape
from runner.data.packing import first_tokens, pack, unpack
from runner.evaluation.downstream.tasks import Example, Task
from runner.models.encoder import init_weights
from runner.models.base import EncoderModule
from runner.engine.optim import build_adamw
from runner.config.console import progress

POOLINGS = ("auto", "cls", "mean", "last")


# ---- metrics ----------------------------------------------------------------------------------------------------

def accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Share of correct predictions."""
    return sum(int(a == b) for a, b in zip(y_true, y_pred)) / max(len(y_true), 1)


def macro_f1(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Unweighted mean of per-label F1 over the labels in y_true or y_pred (scikit-learn's average="macro"); a
    label with no true or predicted positives scores 0."""
    labels = sorted(set(y_true) | set(y_pred))
    if not labels:
        return 0.0
    scores = []
    for c in labels:
        tp = sum(1 for a, b in zip(y_true, y_pred) if a == c and b == c)
        fp = sum(1 for a, b in zip(y_true, y_pred) if a != c and b == c)
        fn = sum(1 for a, b in zip(y_true, y_pred) if a == c and b != c)
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores)


def summarize(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample std (ddof=1; 0.0 for a single run) of test accuracy and macro-F1 over runs."""
    acc = [r["accuracy"] for r in per_seed]
    f1 = [r["f1"] for r in per_seed]

    def std(x: list[float]) -> float:
        return statistics.stdev(x) if len(x) > 1 else 0.0
    return {"accuracy_mean": statistics.fmean(acc), "accuracy_std": std(acc), "f1_mean": statistics.fmean(f1),
            "f1_std": std(f1), "per_seed": per_seed}


# ---- the classifier ---------------------------------------------------------------------------------------------

def is_causal(encoder: nn.Module) -> bool:
    """A decoder (Transformer-XL without model.bidirectional): a token sees only what precedes it."""
    return isinstance(encoder, EncoderModule) and encoder.causal


def encode(encoder: nn.Module, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None,
           attention_mask: torch.Tensor) -> torch.Tensor:
    """Hidden states (B, T, H) of any encoder: ours through EncoderModule.encode_rows (no memory, padding keys
    blocked), anything else called as forward(input_ids, token_type_ids, attention_mask)."""
    if isinstance(encoder, EncoderModule):
        return encoder.encode_rows(input_ids, token_type_ids, attention_mask)
    out = encoder(input_ids, token_type_ids, attention_mask)
    return out[0] if isinstance(out, (tuple, list)) else out


class Classifier(nn.Module):
    """An encoder and a classification head. pooling: cls (BERT: tanh(dense(h[first])) then linear), last (the
    last non-pad token, for causal models), mean (mean over non-pad tokens)."""

    def __init__(self, encoder: nn.Module, num_labels: int, pooling: str = "auto", dropout: float = 0.1,
                 hidden_size: int | None = None, initializer_range: float = 0.02):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling={pooling!r} must be one of {', '.join(POOLINGS)}")
        self.encoder = encoder
        self.pooling = ("last" if is_causal(encoder) else "cls") if pooling == "auto" else pooling
        if pooling == "cls" and is_causal(encoder):
            raise ValueError("pooling=cls on a causal Transformer-XL sees only the first token; use last or mean")
        H = hidden_size or encoder.config.hidden_size
        self.pooler = nn.Linear(H, H) if self.pooling == "cls" else None
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(H, num_labels)
        for m in (self.pooler, self.out):
            if m is not None:
                init_weights(m, initializer_range)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None,
                attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_labels)."""
        h = encode(self.encoder, input_ids, token_type_ids, attention_mask)  # (B, T, H)
        m = attention_mask.to(h.dtype)  # (B, T)
        if self.pooling == "cls":
            pooled = torch.tanh(self.pooler(h[:, 0]))
        elif self.pooling == "last":
            last = attention_mask.long().sum(1).clamp(min=1) - 1  # right padding: the last real token
            pooled = h[torch.arange(h.shape[0], device=h.device), last]
        else:
            pooled = (h * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1)
        return self.out(self.dropout(pooled))

    def classify(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits (B, num_labels) of a collated batch, right-padded or packed (runner/data/packing.py)."""
        if "sequence_ids" not in batch:
            return self(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
        h = self.encoder.encode_batch(batch)  # (R, T, H): several examples per row
        if self.pooling == "cls":
            pooled = torch.tanh(self.pooler(first_tokens(h, batch["starts"])))
        elif self.pooling == "last":
            pooled = h.reshape(-1, h.shape[-1]).index_select(0, batch["starts"] + batch["lengths"] - 1)
        else:
            rows = unpack(h, batch)  # (B, L, H), zeros past each example's end
            pooled = rows.sum(1) / batch["lengths"][:, None].to(h.dtype)
        return self.out(self.dropout(pooled))


def batch_of(model: Classifier, examples: Sequence[Example], pad_id: int, seq_len: int, device: torch.device,
             packing: bool) -> dict[str, torch.Tensor]:
    """The examples collated as right-padded rows; with packing (eval.packing, an encoder of ours that packs), packed
    into rows of seq_len tokens."""
    b = collate(examples, pad_id, seq_len, device)
    if packing and isinstance(model.encoder, EncoderModule) and model.encoder.packs:
        return pack(b, seq_len, pad_id)
    return b


def collate(examples: Sequence[Example], pad_id: int, seq_len: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Right-padded input_ids, token_type_ids, attention_mask and labels; inputs longer than seq_len keep their
    first seq_len - 1 tokens and their final [SEP]."""
    rows = []
    for ex in examples:
        ids, types = list(ex.ids), list(ex.token_types) if ex.token_types is not None else [0] * len(ex.ids)
        if len(ids) > seq_len:
            ids, types = ids[:seq_len - 1] + ids[-1:], types[:seq_len - 1] + types[-1:]
        rows.append((ids, types))
    T = max(len(r[0]) for r in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    types = torch.zeros((len(rows), T), dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for i, (x, t) in enumerate(rows):
        ids[i, :len(x)], types[i, :len(t)], mask[i, :len(x)] = torch.tensor(x), torch.tensor(t), 1
    labels = torch.tensor([ex.label for ex in examples], dtype=torch.long)
    return {"input_ids": ids.to(device), "token_type_ids": types.to(device), "attention_mask": mask.to(device),
            "labels": labels.to(device)}


@torch.no_grad()
def predict(model: Classifier, examples: Sequence[Example], pad_id: int, seq_len: int, batch_size: int,
            device: torch.device, packing: bool = False) -> list[int]:
    """Predicted label indices."""
    model.eval()
    out: list[int] = []
    for lo in range(0, len(examples), batch_size):
        b = batch_of(model, examples[lo:lo + batch_size], pad_id, seq_len, device, packing)
        out.extend(model.classify(b).argmax(-1).tolist())
    return out


def random_like(encoder: nn.Module) -> nn.Module:
    """The same architecture with fresh random weights (the current torch seed): a new Encoder / TransformerXL
    from its config, or a copy whose submodules are re-initialised."""
    if isinstance(encoder, EncoderModule):
        return type(encoder)(encoder.config)
    fresh = copy.deepcopy(encoder)
    for m in fresh.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return fresh


# ---- fine-tuning ------------------------------------------------------------------------------------------------

class FinetuneBar:
    """One progress bar for a whole fine-tuning, every arm and seed ("wiki_topic pretrained seed 2/3 epoch 4/10",
    advancing per step), and one line per finished seed (the progress of logs that are not a terminal)."""

    def __init__(self, task_name: str):

        self.name, self.bar, self.job, self.total, self.planned = task_name, progress(), None, 0, set()

    def plan(self, arm: str, steps: int) -> None:
        """Count an arm's steps in the bar's total (once per arm)."""
        if arm not in self.planned:
            self.planned.add(arm)
            self.total += steps
            if self.job is not None:
                self.bar.update(self.job, total=self.total)

    def __enter__(self) -> FinetuneBar:
        self.bar.start()
        self.job = self.bar.add_task(self.name, total=self.total or None, loss=0.0, tps=0.0)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.stop()

    def describe(self, arm: str, index: int, count: int, epoch: int, epochs: int) -> None:
        self.bar.update(self.job, description=f"{self.name} {arm} seed {index}/{count} epoch {epoch}/{epochs}")

    def advance(self, loss: float, tps: float) -> None:
        self.bar.update(self.job, advance=1, loss=loss, tps=tps)

    def seed_done(self, arm: str, index: int, count: int, run: dict[str, Any]) -> None:
        self.bar.console.print(f"{self.name} {arm} seed {index}/{count} (seed {run['seed']}): test accuracy "
                               f"{run['accuracy']:.3f}, macro-F1 {run['f1']:.3f}; best dev accuracy "
                               f"{run['dev_accuracy']:.3f} at epoch {run['best_epoch']}/{len(run['epochs'])}",
                               highlight=False, soft_wrap=True)


def steps_per_seed(task: Task, epochs: int, batch_size: int) -> int:
    """Optimizer steps of one seed's fine-tuning."""
    return epochs * math.ceil(len(task.train) / batch_size)


def finetune_once(encoder: nn.Module, task: Task, *, seed: int, epochs: int, lr: float, batch_size: int,
                  seq_len: int, device: torch.device, pooling: str = "auto", warmup_fraction: float = 0.1,
                  weight_decay: float = 0.01, dropout: float = 0.1, grad_clip: float = 1.0, packing: bool = False,
                  bar: FinetuneBar | None = None, arm: str = "", index: int = 1, count: int = 1) -> dict[str, Any]:
    """Fine-tune one encoder (modified in place) with one seed; test metrics of the best-dev epoch. bar shows it
    as seed index of count of the arm."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = Classifier(encoder, len(task.labels), pooling, dropout).to(device)
    total = max(steps_per_seed(task, epochs, batch_size), 1)
    opt, sched = build_adamw(model, total, lr, (0.9, 0.999), 1e-8, weight_decay, warmup_fraction=warmup_fraction)
    y_dev = [ex.label for ex in task.dev]
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    curve = []
    for epoch in range(1, epochs + 1):
        if bar is not None:
            bar.describe(arm, index, count, epoch, epochs)
        model.train()
        order = torch.randperm(len(task.train), generator=gen).tolist()
        t0, tokens, losses = time.perf_counter(), 0, []
        for lo in range(0, len(order), batch_size):
            b = batch_of(model, [task.train[i] for i in order[lo:lo + batch_size]], task.pad_id, seq_len, device,
                         packing)
            loss = F.cross_entropy(model.classify(b), b["labels"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            tokens += int(b["attention_mask"].sum())
            if bar is not None:
                bar.advance(losses[-1], tokens / max(time.perf_counter() - t0, 1e-9))
        dev_acc = accuracy(y_dev, predict(model, task.dev, task.pad_id, seq_len, batch_size, device, packing))
        curve.append({"epoch": epoch, "train_loss": statistics.fmean(losses) if losses else float("nan"),
                      "dev_accuracy": dev_acc})
        if best is None or dev_acc > best[0]:  # ties keep the earlier epoch
            best = (dev_acc, epoch, {k: v.detach().clone() if torch.is_tensor(v) else copy.deepcopy(v)
                                    for k, v in model.state_dict().items()})
    assert best is not None
    model.load_state_dict(best[2])
    y_test = [ex.label for ex in task.test]
    pred = predict(model, task.test, task.pad_id, seq_len, batch_size, device, packing)
    return {"seed": seed, "accuracy": accuracy(y_test, pred), "f1": macro_f1(y_test, pred), "dev_accuracy": best[0],
            "best_epoch": best[1], "epochs": curve}


def finetune_seeds(encoder_factory: Callable[[], nn.Module], task: Task, *, seeds: Sequence[int],
                   show_progress: bool = True, label: str = "finetune", bar: FinetuneBar | None = None,
                   **kwargs: Any) -> dict[str, Any]:
    """finetune_once for each seed on a fresh encoder from encoder_factory(seed); summarized. The arm `label`
    shows on `bar` (its own when None and show_progress), with a line per finished seed."""
    seeds = list(seeds)
    own = FinetuneBar(task.name) if bar is None and show_progress else None
    bar = bar or own
    if bar is not None:
        bar.plan(label, len(seeds) * steps_per_seed(task, kwargs["epochs"], kwargs["batch_size"]))
    runs = []
    with own or contextlib.nullcontext():
        for i, seed in enumerate(seeds, start=1):
            torch.manual_seed(seed)  # random_init factories draw their weights from it
            runs.append(finetune_once(encoder_factory(seed), task, seed=seed, bar=bar, arm=label, index=i,
                                      count=len(seeds), **kwargs))
            if bar is not None:
                bar.seed_done(label, i, len(seeds), runs[-1])
    return summarize(runs)


def finetune(encoder_factory: Callable[[], nn.Module], task: Task, *, seeds: Sequence[int] = (0, 1, 2),
             epochs: int = 3, lr: float = 1e-4, batch_size: int = 32, seq_len: int = 128,
             device: str | torch.device = "cpu", pooling: str = "auto", warmup_fraction: float = 0.1,
             weight_decay: float = 0.01, dropout: float = 0.1, packing: bool = False,
             baselines: Sequence[str] = ("random_init", "bow_logreg"),
             random_factory: Callable[[], nn.Module] | None = None, show_progress: bool = True,
             baseline_cache: str | Path | None = None, shape: Any = None) -> dict[str, Any]:
    """Fine-tune a fresh copy of the pretrained encoder per seed (encoder_factory() returns one, e.g.
    `lambda: copy.deepcopy(built.module.encoder)`), then the baselines: random_init (the same architecture with
    random weights, from random_factory() or random_like(encoder_factory()), the same fine-tuning and seeds) and
    bow_logreg (logistic regression on bag-of-words counts, C chosen on dev). Returns {"task", "accuracy_mean",
    "accuracy_std", "f1_mean", "f1_std", "per_seed", "baselines": {...}, "sizes", "settings", "chance"}.
    show_progress: one progress bar over every arm, seed and epoch, and a line per finished seed.

    baseline_cache: a directory (runner.evaluation.downstream.baselines.cache_dir()) where the baselines are stored by a key
    of the task, the encoder's shape (`shape`: its config dataclass, else encoder_factory()'s), the settings, seeds
    and device type, and reused: the result then says "baselines_source": "cached" (or "computed") and
    "baselines_key". A random_factory that is not random_like's architecture needs its own `shape`."""
    device = torch.device(device)
    seeds = list(seeds)
    for b in baselines:
        if b not in ("random_init", "bow_logreg"):
            raise ValueError(f"unknown baseline {b!r}: random_init or bow_logreg")
    for name in ("train", "dev", "test"):
        if not getattr(task, name):
            raise ValueError(f"task {task.name}: the {name} subset is empty ({task.sizes()})")
    settings = {"seeds": list(seeds), "epochs": epochs, "lr": lr, "batch_size": batch_size, "seq_len": seq_len,
                "pooling": pooling, "warmup_fraction": warmup_fraction, "weight_decay": weight_decay,
                "dropout": dropout, "device": str(device), **({"packing": True} if packing else {})}
    common = dict(epochs=epochs, lr=lr, batch_size=batch_size, seq_len=seq_len, device=device, pooling=pooling,
                  warmup_fraction=warmup_fraction, weight_decay=weight_decay, dropout=dropout, packing=packing)
    t0 = time.perf_counter()
    key_shape = encoder_shape(shape if shape is not None else encoder_factory()) \
        if baseline_cache is not None and baselines else None
    key = inputs = None
    if key_shape is not None:
        inputs = baseline_inputs(task, key_shape, settings, seeds, device, baselines)
        key = baseline_key(inputs)
    bar = FinetuneBar(task.name) if show_progress else None
    if bar is not None:  # the random-init arm counts unless its numbers are in the cache
        per_arm = len(seeds) * steps_per_seed(task, epochs, batch_size)
        bar.plan("pretrained", per_arm)
        if "random_init" in baselines and not (key and (Path(baseline_cache) / f"{key}.json").is_file()):
            bar.plan("random init", per_arm)
    with bar or contextlib.nullcontext():
        result: dict[str, Any] = {"task": task.name, **finetune_seeds(lambda s: encoder_factory(), task, seeds=seeds,
                                                                       show_progress=show_progress, bar=bar,
                                                                       label="pretrained", **common)}

        def compute_baselines() -> dict[str, Any]:
            out: dict[str, Any] = {}
            if "random_init" in baselines:
                make = (lambda s: random_factory()) if random_factory is not None else \
                    (lambda s: random_like(encoder_factory()))
                out["random_init"] = finetune_seeds(make, task, seeds=seeds, show_progress=show_progress, bar=bar,
                                                    label="random init", **common)
            if "bow_logreg" in baselines:
                out["bow_logreg"] = bow_logreg(task)
            return out
        if key is not None:
            result["baselines"], result["baselines_source"] = cached_baselines(baseline_cache, key, inputs,
                                                                               compute_baselines)
            result["baselines_key"] = key
        else:
            result["baselines"] = compute_baselines()
            if baselines:
                result["baselines_source"], result["baselines_key"] = "computed", None
    y_train = [ex.label for ex in task.train]
    majority = max(set(y_train), key=y_train.count)
    result["chance"] = {"majority_label": task.labels[majority],
                        "majority_accuracy": accuracy([ex.label for ex in task.test], [majority] * len(task.test)),
                        "uniform_accuracy": 1 / len(task.labels)}
    result["sizes"] = task.sizes()
    result["labels"] = list(task.labels)
    result["settings"] = settings
    result["notes"] = dict(task.notes)
    result["wall_s"] = round(time.perf_counter() - t0, 2)
    return result


# ---- bag-of-words logistic regression ---------------------------------------------------------------------------

def bow_features(examples: Sequence[Example], vocab: int, num_special: int) -> torch.Tensor:
    """Sparse (N, vocab) log(1 + count) features of the non-special tokens, each row L2-normalised."""
    rows, cols = [], []
    for i, ex in enumerate(examples):
        for t in ex.ids:
            if num_special <= t < vocab:
                rows.append(i)
                cols.append(t)
    x = torch.sparse_coo_tensor(torch.tensor([rows, cols], dtype=torch.long).reshape(2, -1),
                                torch.ones(len(rows)), (len(examples), vocab), check_invariants=True).coalesce()
    v = torch.log1p(x.values())
    norms = torch.zeros(len(examples)).index_add_(0, x.indices()[0], v * v).sqrt().clamp(min=1e-12)
    return torch.sparse_coo_tensor(x.indices(), v / norms[x.indices()[0]], x.shape,
                                   check_invariants=True).coalesce()


def _fit_logreg(x: torch.Tensor, y: torch.Tensor, k: int, c: float,
                iters: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression, L2 penalty 1/(2C)·||W||² on the summed log-loss (scikit-learn's objective),
    fitted by L-BFGS."""
    w = torch.zeros(x.shape[1], k, requires_grad=True)
    b = torch.zeros(k, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=iters, history_size=20, line_search_fn="strong_wolfe")
    n = x.shape[0]

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(torch.sparse.mm(x, w) + b, y, reduction="sum") / n + (w * w).sum() / (2 * c * n)
        loss.backward()
        return loss
    opt.step(closure)
    return w.detach(), b.detach()


def bow_logreg(task: Task, cs: Sequence[float] = (0.1, 1.0, 10.0, 100.0)) -> dict[str, Any]:
    """Logistic regression on bag-of-words features (bow_features), the inverse regularisation C chosen by dev
    accuracy; deterministic, so one run (std 0)."""
    vocab = 1 + max(max(ex.ids) for part in (task.train, task.dev, task.test) for ex in part)
    feats = {n: bow_features(getattr(task, n), vocab, task.num_special) for n in ("train", "dev", "test")}
    y = {n: [ex.label for ex in getattr(task, n)] for n in ("train", "dev", "test")}
    best = None
    with torch.random.fork_rng():
        for c in cs:
            w, b = _fit_logreg(feats["train"], torch.tensor(y["train"]), len(task.labels), c)
            dev = accuracy(y["dev"], (torch.sparse.mm(feats["dev"], w) + b).argmax(-1).tolist())
            if best is None or dev > best[0]:
                best = (dev, c, w, b)
    dev_acc, c, w, b = best
    pred = (torch.sparse.mm(feats["test"], w) + b).argmax(-1).tolist()
    run = {"seed": None, "accuracy": accuracy(y["test"], pred), "f1": macro_f1(y["test"], pred),
           "dev_accuracy": dev_acc, "C": c}
    return {**summarize([run]), "C": c, "features": "log1p token counts, L2-normalised"}
