"""An encoder with a classification (or regression) head, and one fine-tuning of it with one seed.

The head: the pooled hidden states (pooling, below), with per-example extra features appended when the examples
carry them (the model's own sentence score: score_feature.py), dropout, and a linear layer. Pooling: `mean` over
the real tokens; `cls`, BERT's tanh(dense(h[CLS])), with the pretrained pooler of an NSP / SOP head when the run has
one (BERT fine-tunes its pretrained pooler); `last`, the last real token of a causal Transformer-XL. `auto` is cls
where a pair task trained [CLS], last for a causal model, and mean for every other: an MLM alone never trains
[CLS] for a sentence-level output (docs/evaluation.md, the controls).

One fine-tuning (finetune_once): the head starts as the linear probe, a logistic regression (least squares for a
regression) fitted on the frozen pretrained features of the training set (`head="probe"`; LP-FT, Kumar et al.
2022: a random head's first updates distort the features a good probe would read), or at random (`head="random"`,
BERT's recipe); then AdamW with linear warmup and decay over the whole model, and the task's main metric on dev
after every epoch, epoch 0 (the probe itself) included. `select="dev"` reports the test metrics of the best dev
epoch, `"last"` those of the last epoch (GLUE's fixed recipe, reported on dev)."""
from __future__ import annotations

import copy
import statistics
import time
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from runner.config.console import progress
from runner.data.packing import first_tokens, pack, unpack
from runner.engine.optim import build_adamw
from runner.evaluation.downstream.metrics import main_metric, score_run
from runner.evaluation.downstream.score_feature import fit_logistic
from runner.evaluation.downstream.tasks import Example, Task
from runner.models.base import EncoderModule
from runner.models.encoder import init_weights

POOLINGS = ("auto", "cls", "mean", "last")
HEADS = ("probe", "random")
SELECTIONS = ("dev", "last")


def is_causal(encoder: nn.Module) -> bool:
    """A decoder (Transformer-XL without model.bidirectional): a token sees only what precedes it."""
    return isinstance(encoder, EncoderModule) and encoder.causal


def resolve_pooling(pooling: str, encoder: nn.Module, pooler: nn.Module | None) -> str:
    """auto: last for a causal model, cls where a pair task pretrained a pooler, else mean."""
    if pooling != "auto":
        return pooling
    return "last" if is_causal(encoder) else "cls" if pooler is not None else "mean"


def encode(encoder: nn.Module, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None,
           attention_mask: torch.Tensor) -> torch.Tensor:
    """Hidden states (B, T, H) of any encoder: ours through EncoderModule.encode_rows (no memory, padding keys
    blocked), anything else called as forward(input_ids, token_type_ids, attention_mask)."""
    if isinstance(encoder, EncoderModule):
        return encoder.encode_rows(input_ids, token_type_ids, attention_mask)
    out = encoder(input_ids, token_type_ids, attention_mask)
    return out[0] if isinstance(out, (tuple, list)) else out


class Classifier(nn.Module):
    """An encoder and a head: pooled features (+ `extra` per-example features), dropout, linear to num_labels
    (1 for a regression). pooler: a pretrained dense layer for cls pooling (copied), else a fresh one."""

    def __init__(self, encoder: nn.Module, num_labels: int, pooling: str = "auto", dropout: float = 0.1,
                 hidden_size: int | None = None, initializer_range: float = 0.02, pooler: nn.Module | None = None,
                 extra: int = 0):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling={pooling!r} must be one of {', '.join(POOLINGS)}")
        if pooling == "cls" and is_causal(encoder):
            raise ValueError("pooling=cls on a causal Transformer-XL sees only the first token; use last or mean")
        self.encoder = encoder
        self.pooling = resolve_pooling(pooling, encoder, pooler)
        H = hidden_size or encoder.config.hidden_size
        self.pooler = None
        if self.pooling == "cls":
            self.pooler = copy.deepcopy(pooler) if pooler is not None else nn.Linear(H, H)
            if pooler is None:
                init_weights(self.pooler, initializer_range)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(H + extra, num_labels)
        init_weights(self.out, initializer_range)
        self.extra = extra

    def pooled(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled features (B, H [+ extra]) of a collated batch, right-padded or packed (runner/data/packing.py)."""
        if "sequence_ids" not in batch:
            h = encode(self.encoder, batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])  # (B, T, H)
            if self.pooling == "cls":
                pooled = torch.tanh(self.pooler(h[:, 0]))
            elif self.pooling == "last":
                last = batch["attention_mask"].long().sum(1).clamp(min=1) - 1  # right padding: the last real token
                pooled = h[torch.arange(h.shape[0], device=h.device), last]
            else:
                m = batch["attention_mask"].to(h.dtype)  # (B, T)
                pooled = (h * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1)
        else:
            h = self.encoder.encode_batch(batch)  # (R, T, H): several examples per row
            if self.pooling == "cls":
                pooled = torch.tanh(self.pooler(first_tokens(h, batch["starts"])))
            elif self.pooling == "last":
                pooled = h.reshape(-1, h.shape[-1]).index_select(0, batch["starts"] + batch["lengths"] - 1)
            else:
                rows = unpack(h, batch)  # (B, L, H), zeros past each example's end
                pooled = rows.sum(1) / batch["lengths"][:, None].to(h.dtype)
        if self.extra:
            pooled = torch.cat([pooled, batch["features"].to(pooled.dtype)], -1)
        return pooled

    def classify(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits (B, num_labels) of a collated batch."""
        return self.out(self.dropout(self.pooled(batch)))

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None,
                attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_labels) of right-padded rows without extra features."""
        return self.classify({"input_ids": input_ids, "token_type_ids": token_type_ids,
                              "attention_mask": attention_mask})


def batch_of(model: Classifier, examples: Sequence[Example], pad_id: int, seq_len: int, device: torch.device,
             packing: bool) -> dict[str, torch.Tensor]:
    """The examples collated as right-padded rows; with packing (eval.packing, an encoder of ours that packs), packed
    into rows of seq_len tokens."""
    b = collate(examples, pad_id, seq_len, device)
    if packing and isinstance(model.encoder, EncoderModule) and model.encoder.packs:
        features = b.pop("features", None)
        b = pack(b, seq_len, pad_id)
        if features is not None:
            b["features"] = features
    return b


def collate(examples: Sequence[Example], pad_id: int, seq_len: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Right-padded input_ids, token_type_ids, attention_mask and labels (floats for a regression), and the
    examples' extra features when they carry them; inputs longer than seq_len keep their first seq_len - 1 tokens
    and their final [SEP]."""
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
    labels = torch.tensor([ex.label for ex in examples],
                          dtype=torch.float if isinstance(examples[0].label, float) else torch.long)
    out = {"input_ids": ids.to(device), "token_type_ids": types.to(device), "attention_mask": mask.to(device),
           "labels": labels.to(device)}
    if examples[0].features is not None:
        out["features"] = torch.tensor([ex.features for ex in examples], dtype=torch.float).to(device)
    return out


@torch.no_grad()
def outputs(model: Classifier, examples: Sequence[Example], pad_id: int, seq_len: int, batch_size: int,
            device: torch.device, packing: bool = False, pooled: bool = False) -> torch.Tensor:
    """The model's logits (N, labels) in eval mode, or its pooled features (pooled=True), on the CPU."""
    model.eval()
    out = []
    for lo in range(0, len(examples), batch_size):
        b = batch_of(model, examples[lo:lo + batch_size], pad_id, seq_len, device, packing)
        out.append((model.pooled(b) if pooled else model.classify(b)).float().cpu())
    return torch.cat(out)


def predictions(logits: torch.Tensor, regression: bool) -> list:
    """Label indices, or the scores of a regression."""
    return logits[:, 0].tolist() if regression else logits.argmax(-1).tolist()


def predict(model: Classifier, examples: Sequence[Example], pad_id: int, seq_len: int, batch_size: int,
            device: torch.device, packing: bool = False, regression: bool = False) -> list:
    """Predicted label indices (scores for a regression)."""
    return predictions(outputs(model, examples, pad_id, seq_len, batch_size, device, packing), regression)


def evaluate(model: Classifier, task: Task, subset: str, seq_len: int, batch_size: int, device: torch.device,
             packing: bool) -> dict[str, float]:
    """Every metric of the task on a subset (train, dev, test or an extra test set's name)."""
    examples = task.extra_tests[subset] if subset in task.extra_tests else getattr(task, subset)
    pred = predict(model, examples, task.pad_id, seq_len, batch_size, device, packing, task.regression)
    return score_run(task, [ex.label for ex in examples], pred)


def fit_probe(model: Classifier, task: Task, seq_len: int, batch_size: int, device: torch.device,
              packing: bool) -> None:
    """Set the head's linear layer to the linear probe of the frozen features of the training set: logistic
    regression (score_feature.fit_logistic), least squares with a small ridge for a regression."""
    x = outputs(model, task.train, task.pad_id, seq_len, batch_size, device, packing, pooled=True).double()
    if task.regression:
        y = torch.tensor([ex.label for ex in task.train], dtype=torch.float64)
        mu, sd = x.mean(0), x.std(0).clamp(min=1e-8)
        z = torch.cat([(x - mu) / sd, torch.ones(len(x), 1, dtype=torch.float64)], 1)
        ridge = 1e-2 * torch.eye(z.shape[1], dtype=torch.float64)
        ridge[-1, -1] = 0
        coef = torch.linalg.solve(z.T @ z + ridge, z.T @ y)
        w = (coef[:-1] / sd)[None]
        b = coef[-1:] - (w * mu).sum(1)
    else:
        lin = fit_logistic(x, torch.tensor([ex.label for ex in task.train]), len(task.labels))
        w, b = lin.weight.detach(), lin.bias.detach()
    with torch.no_grad():
        model.out.weight.copy_(w.to(model.out.weight))
        model.out.bias.copy_(b.to(model.out.bias))


class FinetuneBar:
    """One progress bar for a whole fine-tuning, every arm and seed ("wiki_topic pretrained lr 1e-04 seed 2/3 epoch
    4/10", advancing per step), and one line per finished seed (the progress of logs that are not a terminal)."""

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
        scores = ", ".join(f"{k} {v:.3f}" for k, v in run.items() if isinstance(v, float) and "/" not in k
                           and not k.startswith("dev"))
        epochs = run["epochs"][-1]["epoch"]
        where = f"best dev {run['dev_score']:.3f} at epoch {run['best_epoch']}/{epochs}" \
            if run["dev_score"] is not None else f"epoch {epochs}"
        self.bar.console.print(f"{self.name} {arm} seed {index}/{count} (seed {run['seed']}): test {scores}; {where}",
                               highlight=False, soft_wrap=True)


def steps_per_seed(task: Task, epochs: int, batch_size: int) -> int:
    """Optimizer steps of one seed's fine-tuning."""
    return epochs * -(-len(task.train) // batch_size)


def finetune_once(encoder: nn.Module, task: Task, *, seed: int, epochs: int, lr: float, batch_size: int,
                  seq_len: int, device: torch.device, pooling: str = "auto", warmup_fraction: float = 0.1,
                  weight_decay: float = 0.01, dropout: float = 0.1, grad_clip: float = 1.0, packing: bool = False,
                  head: str = "probe", select: str = "dev", pooler: nn.Module | None = None,
                  bar: FinetuneBar | None = None, arm: str = "", index: int = 1, count: int = 1) -> dict[str, Any]:
    """Fine-tune one encoder (modified in place) with one seed; the test metrics of the selected epoch (and of the
    linear probe, epoch 0, when head="probe"). bar shows it as seed index of count of the arm."""
    if head not in HEADS or select not in SELECTIONS:
        raise ValueError(f"head={head!r} must be one of {HEADS}, select={select!r} one of {SELECTIONS}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    extra = len(task.train[0].features or ())
    model = Classifier(encoder, 1 if task.regression else len(task.labels), pooling, dropout, pooler=pooler,
                       extra=extra).to(device)
    metric = main_metric(task)
    total = max(steps_per_seed(task, epochs, batch_size), 1)
    opt, sched = build_adamw(model, total, lr, (0.9, 0.999), 1e-8, weight_decay, warmup_fraction=warmup_fraction)
    run_eval = (lambda subset: evaluate(model, task, subset, seq_len, batch_size, device, packing))
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    curve: list[dict[str, Any]] = []
    probe: dict[str, float] | None = None

    def keep(epoch: int, train_loss: float | None) -> None:
        nonlocal best
        dev = run_eval("dev") if select == "dev" else {}
        curve.append({"epoch": epoch, "train_loss": train_loss, **{f"dev_{k}": v for k, v in dev.items()}})
        score = dev.get(metric, float(epoch))  # select="last": the latest epoch wins
        if best is None or score > best[0]:  # ties keep the earlier epoch
            best = (score, epoch, {k: v.detach().clone() if torch.is_tensor(v) else copy.deepcopy(v)
                                   for k, v in model.state_dict().items()})

    if head == "probe":
        fit_probe(model, task, seq_len, batch_size, device, packing)
        probe = {k: v for k, v in run_eval("test").items()}
        keep(0, None)  # the probe: no training loss
    for epoch in range(1, epochs + 1):
        if bar is not None:
            bar.describe(arm, index, count, epoch, epochs)
        model.train()
        order = torch.randperm(len(task.train), generator=gen).tolist()
        t0, tokens, losses = time.perf_counter(), 0, []
        for lo in range(0, len(order), batch_size):
            b = batch_of(model, [task.train[i] for i in order[lo:lo + batch_size]], task.pad_id, seq_len, device,
                         packing)
            logits = model.classify(b)
            loss = F.mse_loss(logits[:, 0], b["labels"]) if task.regression else F.cross_entropy(logits, b["labels"])
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
        keep(epoch, statistics.fmean(losses) if losses else None)
    assert best is not None
    model.load_state_dict(best[2])
    out: dict[str, Any] = {"seed": seed, **run_eval("test")}
    for name in task.extra_tests:
        out.update({f"{name}/{k}": v for k, v in run_eval(name).items()})
    out.update(dev_score=best[0] if select == "dev" else None, best_epoch=best[1], epochs=curve)
    if "accuracy" in out and select == "dev":
        out["dev_accuracy"] = curve[[c["epoch"] for c in curve].index(best[1])]["dev_accuracy"]
    if probe is not None:
        out["probe"] = probe
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
