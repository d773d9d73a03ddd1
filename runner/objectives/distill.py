"""Knowledge distillation (Sanh et al. 2019, DistilBERT): a student encoder learns masked language modelling from a
frozen teacher's output distribution and hidden states as well as from the labels.

The loss is DistilBERT's (its distiller.py): alpha_ce x T^2 x KL(softmax(teacher / T) || softmax(student / T)) over
the masked positions (the soft-target cross-entropy less the teacher's entropy, a constant: the same gradient),
plus alpha_mlm x the masked-LM cross-entropy, plus alpha_cos x (1 - cos(student hidden, teacher hidden)) over every
real token when their widths match. Each term is logged. The teacher is any finished run of ours whose objective has
an MLM head (its checkpoint, run in our own modules, packed rows included) or any transformers directory with a
masked-LM head (run by transformers on right-padded rows); it is frozen, in eval mode, never saved with the student,
and the student reads the teacher's tokenizer. With init_from_teacher, the student starts from the teacher's
embeddings, every other layer (DistilBERT section 3) and MLM head wherever the shapes agree."""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from runner.data.packing import real_tokens, unpack
from runner.data.tokenizer import SpecialIds
from runner.config.errors import ConfigError
from runner.models.flops import encoder_flops, mlm_head_flops
from runner.models.config import EncoderConfig
from runner.objectives.base import Report, Stats
from runner.config.errors import require
from runner.objectives.masking import IGNORE
from runner.objectives.mlm import MaskedLM, MLMConfig, mlm_metrics
from runner.models.heads import MLMHead
from runner.models.registry import build_encoder, model_config
from runner.store.layout import HF, SUMMARY, FinishedRun, is_finished, is_run, open_run
from runner.data.batches import to_device


@dataclass
class DistillConfig(MLMConfig):
    """objective=distill: the student's masked-LM training against a teacher (DistilBERT's defaults)."""

    _target_: str = "runner.objectives.distill.Distillation"
    name: str = "distill"
    teacher: Optional[str] = None  # a finished run directory, or a transformers directory with a masked-LM head
    # overrides of a run that trains the teacher into `teacher` first when that holds no finished run
    # (experiment=distil: teach, then distil, in one command); [] : the teacher must exist
    teach: List[str] = field(default_factory=list)
    temperature: float = 2.0
    alpha_ce: float = 5.0  # soft targets (KL at temperature T, times T^2)
    alpha_mlm: float = 2.0  # the masked-LM loss on the labels
    alpha_cos: float = 1.0  # cosine between student and teacher last hidden states (when widths match)
    init_from_teacher: bool = True  # embeddings, every other layer, MLM head copied where the shapes agree

    def check(self) -> None:
        """The masking keys, a teacher, a positive temperature, non-negative weights."""
        super().check()
        require(bool(self.teacher), "objective=distill needs objective.teacher=<a finished run directory or a "
                "transformers directory with a masked-LM head>, or experiment=distil (trains one first)")
        require(self.temperature > 0, f"objective.temperature={self.temperature} must be > 0")
        for key in ("alpha_ce", "alpha_mlm", "alpha_cos"):
            require(getattr(self, key) >= 0, f"objective.{key}={getattr(self, key)} must be >= 0")
        require(self.alpha_ce + self.alpha_mlm + self.alpha_cos > 0,
                "objective.alpha_ce, alpha_mlm and alpha_cos are all 0: nothing to learn from")


# ---- the teacher --------------------------------------------------------------------------------------------------

def not_a_directory(key: str, path: Any) -> ConfigError:
    """The one-line error for a teacher (or frozen generator) path that is no directory."""
    return ConfigError(f"{key}={path} is not a directory; pass a finished run's directory (outputs/runs/<run>) or a "
                       "transformers directory" + (", or use experiment=distil" if key == "objective.teacher" else ""))


def teacher_tokenizer_file(path: Path, key: str = "objective.teacher") -> Path:
    """The tokenizer.json the teacher was trained with: a run's hf/ export, or the transformers directory's own."""
    if not path.is_dir():
        raise not_a_directory(key, path)
    file = path / HF / "tokenizer.json" if is_run(path) else path / "tokenizer.json"
    if not file.is_file():
        fix = (f"export it first: python -m runner export={path}" if is_run(path) else
               "save the tokenizer beside the model (tokenizer.save_pretrained)")
        raise ConfigError(f"{key}={path} has no {file.relative_to(path)} (its tokenizer); {fix}")
    return file


class Teacher(nn.Module):
    """A frozen masked LM: logits at flat positions of a batch, and the last hidden states in the batch's layout."""

    config: Optional[EncoderConfig] = None  # ours, when the teacher runs in our modules
    hidden_size: int = 0
    name: str = "teacher"
    summary_file: Optional[Path] = None  # its run's summary.json (a run teacher), for the report

    def outputs(self, batch: dict[str, torch.Tensor], idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (M, V) at the flat positions idx, hidden states (B, T, H)) of one of the loop's batches."""
        raise NotImplementedError

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


class RunTeacher(Teacher):
    """A finished run of ours: its encoder and MLM head from its checkpoint."""

    def __init__(self, run: FinishedRun, pad_id: int, key: str = "objective.teacher"):
        super().__init__()
        cfg = run.config
        self.config = dataclasses.replace(model_config(cfg.model), pad_token_id=pad_id)
        state = run.module_state()
        if not any(k.startswith("objective.mlm_head.") for k in state):
            raise ConfigError(f"{key}={run.path} was trained with objective={cfg.objective.name}, which has no "
                              "masked-LM head; use a run with objective=mlm, mlm_nsp or mlm_sop")
        self.encoder, self.head = build_encoder(self.config), MLMHead(self.config)
        self.encoder.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("encoder.")})
        self.head.load_state_dict({k[19:]: v for k, v in state.items() if k.startswith("objective.mlm_head.")})
        self.hidden_size = self.config.hidden_size
        self.name = cfg.model.name
        self.summary_file = run.path / SUMMARY

    def outputs(self, batch: dict[str, torch.Tensor], idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encoder.encode_batch(batch)  # packed or padded, as the student reads it
        flat = hidden.reshape(-1, hidden.shape[-1]).index_select(0, idx)
        return self.head(flat, self.encoder.embeddings.word_embeddings.weight), hidden


class HFTeacher(Teacher):
    """A transformers directory with a masked-LM head (AutoModelForMaskedLM), on right-padded rows."""

    def __init__(self, path: Path, key: str = "objective.teacher"):
        super().__init__()
        import transformers

        try:
            self.model = transformers.AutoModelForMaskedLM.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as e:
            raise ConfigError(f"{key}={path} does not load as a transformers masked LM "
                              f"({type(e).__name__}: {str(e).splitlines()[0]})") from None
        self.hidden_size = int(self.model.config.hidden_size if hasattr(self.model.config, "hidden_size")
                               else self.model.config.dim)
        self.types = getattr(self.model.config, "type_vocab_size", 0) > 0
        self.name = path.name
        self.summary_file = None

    def outputs(self, batch: dict[str, torch.Tensor], idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        packed = "starts" in batch
        view = {k: unpack(batch[k], batch) if packed else batch[k]
                for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
        if not self.types:
            view.pop("token_type_ids", None)
        out = self.model(**view, output_hidden_states=True)
        logits, hidden = out.logits, out.hidden_states[-1]  # (B, L, V), (B, L, H)
        if not packed:
            return logits.reshape(-1, logits.shape[-1]).index_select(0, idx), hidden
        # back to the packed layout: the padded position of each packed position
        where = padded_positions(batch, hidden.shape[1])  # (R * T,), -1 at padding
        flat_h = hidden.reshape(-1, hidden.shape[-1])
        packed_h = flat_h.index_select(0, where.clamp(min=0)) * where.ge(0)[:, None]
        logits_at = logits.reshape(-1, logits.shape[-1]).index_select(0, where.index_select(0, idx))
        return logits_at, packed_h.view(*batch["input_ids"].shape, -1)


def padded_positions(batch: dict[str, torch.Tensor], width: int) -> torch.Tensor:
    """For each flat position of a packed batch, its flat position in the padded (B, width) layout; -1 at padding."""
    starts, lengths = batch["starts"], batch["lengths"]
    total = batch["input_ids"].numel()
    example = torch.repeat_interleave(torch.arange(starts.numel(), device=starts.device), lengths)
    within = torch.arange(int(lengths.sum()), device=starts.device) - \
        torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
    out = torch.full((total,), -1, dtype=torch.long, device=starts.device)
    out[starts[example] + within] = example * width + within
    return out


def load_teacher(path: str, pad_id: int, key: str = "objective.teacher") -> Teacher:
    """The frozen masked LM at `path` (a run directory, or a transformers directory), in eval mode; `key` names the
    option that gave the path in errors (ELECTRA's objective.frozen_generator loads one too)."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise not_a_directory(key, path)
    if is_run(p):
        teacher: Teacher = RunTeacher(open_run(p, key), pad_id, key)
    elif (p / "config.json").is_file():
        teacher = HFTeacher(p, key)
    else:
        raise ConfigError(f"{key}={path} is neither a run directory (.hydra/config.yaml) nor a "
                          "transformers directory (config.json)")
    teacher.eval()
    for param in teacher.parameters():
        param.requires_grad_(False)
    return teacher


# ---- the objective ------------------------------------------------------------------------------------------------

class Distillation(MaskedLM):
    """The student's masked LM, its labels and the teacher's soft targets and hidden states."""

    options_class = DistillConfig
    lm_metric = "mlm_loss"

    def __init__(self, options: DistillConfig, model_config: EncoderConfig, specials: SpecialIds,
                 token_vocab_size: int, word_table: Optional[torch.Tensor] = None):
        super().__init__(options, model_config, specials, token_vocab_size, word_table=word_table)
        o = options
        self.temperature, self.alpha_ce, self.alpha_mlm, self.alpha_cos = \
            o.temperature, o.alpha_ce, o.alpha_mlm, o.alpha_cos
        self.vocab = token_vocab_size  # the tokenizer's ids: both models' logits are compared over these
        # a plain attribute, not a submodule: the teacher is not trained, saved, counted or exported with the student
        self.__dict__["teacher"] = load_teacher(o.teacher, specials.pad)
        self.cosine = self.alpha_cos > 0 and self.teacher.hidden_size == model_config.hidden_size

    @classmethod
    def prerequisite(cls, options: DistillConfig) -> Optional[tuple[str, list[str]]]:
        """objective.teach: train the teacher into objective.teacher first, unless a finished run is there."""
        if not options.teach or is_finished(Path(options.teacher).expanduser()):
            return None
        return str(Path(options.teacher).expanduser()), list(options.teach)

    @classmethod
    def tokenizer_file(cls, options: DistillConfig) -> Optional[str]:
        """The student reads the teacher's tokenizer."""
        return str(teacher_tokenizer_file(Path(options.teacher).expanduser()))

    def attach(self, encoder: nn.Module) -> None:
        """DistilBERT's initialisation: the teacher's embeddings, layers 0, 2, 4, ... and MLM head into the student
        wherever names and shapes agree (our own teachers only)."""
        if not self.options.init_from_teacher or self.teacher.config is None:
            return
        ours = {**{f"e.{k}": v for k, v in encoder.state_dict().items()},
                **{f"h.{k}": v for k, v in self.mlm_head.state_dict().items()}}
        theirs = {**{f"e.{k}": v for k, v in self.teacher.encoder.state_dict().items()},
                  **{f"h.{k}": v for k, v in self.teacher.head.state_dict().items()}}
        copied = 0
        with torch.no_grad():
            for name, tensor in ours.items():
                source = name
                parts = name.split(".")
                if parts[1] == "layers" and parts[2].isdigit():  # student layer i <- teacher layer 2i
                    source = ".".join([*parts[:2], str(2 * int(parts[2])), *parts[3:]])
                src = theirs.get(source)
                if src is not None and src.shape == tensor.shape:
                    tensor.copy_(src)
                    copied += 1
        self.initialised = f"{copied} of {len(ours)} student tensors copied from the teacher"

    def loss(self, encoder: nn.Module, batch: dict[str, torch.Tensor],
             norms: dict[str, Any]) -> tuple[torch.Tensor, Stats]:
        """alpha_ce x the soft-target term + alpha_mlm x the MLM loss + alpha_cos x the cosine term, each a mean over
        the accumulated batch's selected positions (cosine: real tokens)."""
        teacher = self.teacher
        hidden = self.encode(encoder, batch)
        logits, idx, target = self.selected_logits(encoder, hidden, batch["labels"])  # (M, V)
        mlm_sum, stats = self.mlm_terms(encoder, hidden, batch["labels"], (logits, idx, target))
        if next(teacher.parameters()).device != hidden.device:
            teacher.to(hidden.device)
        with torch.no_grad():
            t_logits, t_hidden = teacher.outputs(batch, idx)
        T, V = self.temperature, self.vocab
        s_log = F.log_softmax(logits[:, :V] / T, dim=-1)
        t_prob = F.softmax(t_logits[:, :V].float() / T, dim=-1)
        ce_sum = F.kl_div(s_log, t_prob, reduction="sum") * T * T
        selected = max(float(norms["mlm"]), 1.0)
        loss = self.alpha_ce * ce_sum / selected + self.alpha_mlm * mlm_sum / selected
        stats.update(distill_ce_sum=ce_sum.detach(),
                     teacher_correct=(t_logits[:, :V].argmax(-1) == target).sum())
        if self.cosine:
            real = batch["attention_mask"].bool().reshape(-1)
            s = hidden.reshape(-1, hidden.shape[-1])[real].float()
            t = t_hidden.reshape(-1, t_hidden.shape[-1])[real].float()
            cos_sum = (1 - F.cosine_similarity(s, t, dim=-1)).sum()
            loss = loss + self.alpha_cos * cos_sum / max(float(norms["tokens"]), 1.0)
            stats.update(distill_cos_sum=cos_sum.detach(), distill_cos_count=real.sum())
        return loss, stats

    def normalizers(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Selected positions (soft targets, MLM) and real tokens (cosine)."""
        return {**super().normalizers(batch), "tokens": batch["attention_mask"].sum()}

    @property
    def loss_terms(self) -> tuple[str, ...]:
        """The masked-LM cross-entropy, the soft-target term and (hidden widths equal) the cosine term."""
        return ("mlm_loss", "distill_ce", *(("distill_cos",) if self.cosine else ()))

    def metrics(self, stats: Stats) -> dict[str, float]:
        """The student's MLM metrics, the soft-target term (distill_ce), the cosine term (distill_cos), the weighted
        total (distill_loss), and the teacher's accuracy on the same masked tokens."""
        out = mlm_metrics(stats)
        n = max(float(stats["mlm_count"]), 1.0)
        out["distill_ce"] = float(stats["distill_ce_sum"]) / n
        out["teacher_mlm_accuracy"] = float(stats["teacher_correct"]) / n
        total = self.alpha_ce * out["distill_ce"] + self.alpha_mlm * out["mlm_loss"]
        if "distill_cos_sum" in stats:
            out["distill_cos"] = float(stats["distill_cos_sum"]) / max(float(stats["distill_cos_count"]), 1.0)
            total += self.alpha_cos * out["distill_cos"]
        out["distill_loss"] = total
        return out

    def head_flops(self, batch: dict[str, torch.Tensor]) -> float:
        """The student's MLM head, and the teacher's forward (encoder and head), which has no backward: a third of
        it counts here, as train_flops triples the forward."""
        B, T = batch["input_ids"].shape
        predicted = int(batch["labels"].ne(IGNORE).sum())
        c = self.teacher.config
        if c is not None:  # ours: token-wise on the real tokens (runner/models/unpadded.py)
            teacher = encoder_flops(c, real_tokens(batch), T, B * T) + mlm_head_flops(c, predicted)
        else:
            teacher = 2.0 * self.teacher.parameter_count() * B * T
        return super().head_flops(batch) + teacher / 3.0

    def final_report(self, encoder: nn.Module, data: Any, cfg: Any, device: torch.device, autocast: Any,
                     results: Optional[dict] = None) -> Report:
        """The student against its teacher: parameters, forward speed on the validation batches (measured, same
        process), and both models' probe and downstream scores where the teacher's run recorded them."""
        from rich.table import Table

        teacher, results = self.teacher, results or {}
        student_params = sum(p.numel() for p in encoder.parameters()) + sum(p.numel() for p in self.mlm_head.parameters())
        teacher_params = teacher.parameter_count()
        val = [to_device(b, device) for b in results.get("val_batches", [])]
        speed = forward_speed(encoder, teacher, val, autocast) if val else None
        mine = {"probes": (results.get("final_probes") or {}).get("overall"),
                "downstream": (results.get("downstream") or {}).get("accuracy_mean")}
        theirs: dict[str, Any] = {"probes": None, "downstream": None}
        if teacher.summary_file is not None and teacher.summary_file.is_file():
            s = json.loads(teacher.summary_file.read_text())
            theirs = {"probes": ((s.get("probes") or {}).get("final") or {}).get("overall"),
                      "downstream": (s.get("downstream") or {}).get("accuracy_mean")}
        value = {"teacher": str(self.options.teacher), "teacher_model": teacher.name,
                 "student_parameters": student_params, "teacher_parameters": teacher_params,
                 "parameter_share": student_params / teacher_params, "speedup": speed,
                 "student": mine, "teacher_scores": theirs,
                 "score_share": {k: (mine[k] / theirs[k] if mine[k] is not None and theirs[k] else None)
                                 for k in mine}}
        table = Table(title="student against teacher")
        for col in ("", "parameters", "probes", "downstream"):
            table.add_column(col, justify="left" if not col else "right")
        fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
        table.add_row("teacher " + teacher.name, f"{teacher_params:,}", fmt(theirs["probes"]), fmt(theirs["downstream"]))
        table.add_row("student", f"{student_params:,}", fmt(mine["probes"]), fmt(mine["downstream"]))
        share = value["score_share"]
        line = (f"{value['parameter_share']:.0%} of the teacher's parameters"
                + (f", {share['probes']:.0%} of its probe score" if share["probes"] is not None else "")
                + (f", {share['downstream']:.0%} of its downstream accuracy" if share["downstream"] is not None
                   else "")
                + (f", {speed:.2f}x its forward speed" if speed else ""))
        table.caption = line
        metrics = {"distill/parameter_share": value["parameter_share"]}
        if speed:
            metrics["distill/speedup"] = speed
        return Report("distillation", {**value, "line": line}, metrics, table)


def forward_speed(student: nn.Module, teacher: Teacher, batches: list, autocast: Any, rounds: int = 3) -> float:
    """How many times faster the student's encoder forward is than the teacher's over the same batches (median of
    interleaved rounds, no gradient)."""
    import statistics

    def timed(f) -> float:
        t0 = time.perf_counter()
        with torch.no_grad(), autocast():
            for b in batches:
                f(b)
        return time.perf_counter() - t0

    was = student.training
    student.eval()
    try:
        empty = torch.empty(0, dtype=torch.long, device=batches[0]["input_ids"].device)
        runs = {"student": [], "teacher": []}
        for r in range(rounds):
            for who in (("student", "teacher") if r % 2 == 0 else ("teacher", "student")):
                runs[who].append(timed(student.encode_batch if who == "student" else
                                       (lambda b: teacher.outputs(b, empty))))
        return statistics.median(runs["teacher"]) / statistics.median(runs["student"])
    finally:
        student.train(was)
