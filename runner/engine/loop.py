"""The training loop: accumulate, clip, step, log, evaluate, checkpoint; exact resume. It knows no family and no
objective: the model, the objective, the feed and the checkpoint state answer through their declared interfaces."""
from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from runner.engine import distributed, runtime, threads
from runner.config.budget import budget_of
from runner.engine.assembly import Built
from runner.engine.snapshots import Snapshots, snapshot_points
from runner.data.batches import to_device
from runner.data.packing import layout_counts
from runner.config.errors import TrainingError
from runner.engine.feeds import build_feed
from runner.config.console import console, progress
from runner.engine.preemption import Preempted, StopSignals
from runner.engine.state import Checkpointer, Progress
from runner.engine.validation import MetricsLog, Validator, validation_line

NO_STEP_LIMIT = 10 ** 12  # a minutes budget: the clock, not a step count, ends the run


class Trainer:
    """Runs one pretraining job in its run directory."""

    def __init__(self, cfg: DictConfig, built: Built, run_dir: Path):
        self.cfg, self.t, self.built, self.run_dir = cfg, cfg.trainer, built, Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        rt = runtime.start(self.t, built.module)
        self.device, self.world, self.module, self.parallel, self.amp = rt.device, rt.world, rt.module, \
            rt.parallel, rt.amp
        self.precision, self.threads = self.amp.name, rt.threads  # threads: how many and why (summary.json)
        self.objective, self.encoder = built.objective, built.module.encoder
        self.feed = build_feed(built, cfg, distributed.rank(), self.world)
        self.validate = Validator(self.module, self.objective, self.feed.val, self.device, self.amp)
        self.progress = Progress()
        self.words_per_token: float | None = None  # corpus words per training token (the run sets it: train/words)
        self.budget = budget_of(self.t.get("budget"))
        self.max_steps, schedule_steps = self.plan()
        end = self.max_steps if self.t.stop_after is None else min(self.max_steps, self.t.stop_after)
        self.feed.end = end * self.t.grad_accum
        self.optimizer, self.scheduler = instantiate(cfg.optimizer)(module=self.module, max_steps=max(schedule_steps, 1))
        self.skipped_in_a_row = 0
        self.window: dict[str, torch.Tensor] = {}  # the objective's stats summed since the last training record
        self.checkpointer = Checkpointer(self.run_dir, self.t.keep_checkpoints, cfg.model, {
            "parallel": self.parallel, "optimizer": self.optimizer, "scheduler": self.scheduler,
            "precision": self.amp, "feed": self.feed, "encoder": self.encoder, "progress": self.progress,
            "world": self.world, "grad_accum": self.t.grad_accum})
        # crossover.enabled: the weights at a geometric series of training FLOPs (runner/evaluation/crossover.py)
        x = cfg.get("crossover")
        on = x is not None and x.enabled and self.budget is not None and self.budget.kind == "flops"
        self.snapshots = Snapshots(self.run_dir, snapshot_points(x.start_flops, x.per_decade, self.budget.amount)
                                   if on else [])

    @property
    def step(self) -> int:
        """Optimizer steps taken."""
        return self.progress.step

    def plan(self) -> tuple[int, int]:
        """(the most steps the loop takes, the steps the schedule spans): trainer.max_steps, or the budget's plan
        from the cost of step 0's micro-batches (a minutes budget: no step limit, a schedule on the clock)."""
        if self.budget is None or self.t.max_steps == 0:  # max_steps=0 builds only, budget or not
            return self.t.max_steps, self.t.max_steps
        if self.budget.kind == "minutes":
            return NO_STEP_LIMIT, self.budget.plan(0, 0.0)
        micro = [self.feed.batches.get(m) for m in range(self.t.grad_accum)]
        cost = distributed.all_sum({"tokens": sum(int(b["attention_mask"].sum()) for b in micro),
                                    "flops": sum(self.objective.train_flops(self.encoder, b) for b in micro)},
                                   self.device)  # all ranks
        steps = self.budget.plan(int(cost["tokens"]), cost["flops"])
        return steps, steps

    def finished(self) -> bool:
        """Whether the run is complete: its steps taken or its budget spent."""
        p = self.progress
        spent = self.budget is not None and self.budget.spent(p.step, p.tokens, p.flops, p.elapsed)
        return p.step >= self.max_steps or spent

    def restore(self) -> None:
        """Continue from checkpoints/last.pt of the run directory."""
        note = self.checkpointer.restore()
        self.snapshots.skip_reached(self.progress.flops)
        if note and distributed.is_main():
            console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)

    def accumulate(self) -> dict[str, float]:
        """Forward and backward over grad_accum micro-batches; losses are normalised over all of them, so the
        gradient equals that of one batch of batch_size x grad_accum."""
        accum = self.t.grad_accum
        micro = [self.feed.next() for _ in range(accum)]
        norms: dict[str, float] = {}
        for b in micro:
            for k, v in self.objective.normalizers(b).items():
                norms[k] = norms.get(k, 0.0) + float(v)
        norms = distributed.all_sum(norms, self.device)  # over every rank's micro-batches: the global batch
        loss_total, tokens, flops, computed, rows, padded = 0.0, 0, 0.0, 0, 0, 0
        for i, b in enumerate(micro):
            r, c, p = layout_counts(b)  # real tokens, positions attention computes, and as right-padded rows
            computed, padded = computed + c, padded + p
            rows += r if self.encoder.unpads else c  # what the token-wise layers compute
            b = to_device(b, self.device)
            with self.parallel.sync(last=i == accum - 1):  # gradients communicated on the last micro-batch only
                with self.amp.autocast():
                    loss, stats = self.parallel.forward_module()(b, norms)
                self.amp.backward(loss * self.world)
            for k, v in stats.items():  # on the device, no synchronisation: read at the next training record
                v = v.detach()
                self.window[k] = self.window[k] + v if k in self.window else v
            loss_total += float(loss.detach())
            tokens += int(b["attention_mask"].sum())
            flops += self.objective.train_flops(self.encoder, b)
        total = distributed.all_sum({"loss": loss_total, "tokens": tokens, "flops": flops, "computed": computed,
                                     "rows": rows, "padded": padded}, self.device)
        self.progress.flops += total["flops"]
        self.progress.positions += int(total["computed"])
        self.progress.token_rows += int(total["rows"])
        self.progress.padded_positions += int(total["padded"])
        return {"loss": total["loss"], "batch_tokens": int(total["tokens"])}

    def train_step(self) -> dict[str, float]:
        """One optimizer step: accumulate, stop on a non-finite loss, clip, step the optimizer and schedule."""
        self.threads, out, p = threads.refresh(self.threads), self.accumulate(), self.progress  # threads: re-shared
        self.amp.unscale(self.optimizer)
        grad_norm = self.parallel.clip(self.t.grad_clip if self.t.grad_clip > 0 else float("inf"))
        lr = self.scheduler.get_last_lr()[0]
        # fp16: an overflowing gradient skips the step and halves the loss scale (GradScaler), as long as the scale
        # stays >= 1; a scale driven below that means the gradients are non-finite at any scale
        if math.isfinite(out["loss"]) and self.amp.overflowed(grad_norm) and self.amp.scale >= 1:
            self.amp.skip(overflow=True)
        elif not (math.isfinite(out["loss"]) and math.isfinite(grad_norm)):
            self.skipped_in_a_row += 1  # the same on every rank: loss and gradient norm are global
            if self.t.nonfinite != "skip" or self.skipped_in_a_row > self.t.max_skipped_steps:
                again = f" ({self.skipped_in_a_row} steps in a row)" if self.t.nonfinite == "skip" else ""
                raise TrainingError(f"loss became {out['loss']} (gradient norm {grad_norm}) at step {p.step + 1}"
                                    f"{again}; stopped without saving, the last good checkpoint in "
                                    f"{self.run_dir / 'checkpoints'} is kept; lower optimizer.lr or raise "
                                    "optimizer.warmup_fraction")
            p.skipped += 1
            self.amp.skip(overflow=False)
            console.print(f"[yellow]warning:[/] loss {out['loss']} at step {p.step + 1}: update skipped "
                          f"(trainer.nonfinite=skip, {p.skipped} so far)", highlight=False, soft_wrap=True)
        else:
            self.skipped_in_a_row = 0
            self.amp.step(self.optimizer)
        if self.budget is not None and self.budget.kind == "minutes":  # the schedule follows the clock
            self.scheduler.last_epoch = self.budget.tick(p.elapsed) - 1
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        p.step += 1
        p.tokens += out["batch_tokens"]
        return {**out, "lr": lr, "grad_norm": grad_norm, "skipped": p.skipped, "loss_scale": self.amp.scale}

    def loss_terms(self) -> dict[str, float]:
        """Each term of the objective's loss (train/mlm_loss, train/disc_loss, ...) over the steps since the last
        training record, from their summed stats (every rank's); the window starts again."""
        if not self.window or not self.objective.loss_terms:
            return {}
        stats, self.window = distributed.all_sum_tensors(self.window, self.device), {}
        metrics = self.objective.metrics(stats)
        return {f"train/{k}": metrics[k] for k in self.objective.loss_terms if k in metrics}

    def log_validation(self, logger: MetricsLog) -> tuple[dict[str, float], dict[str, float]]:
        """Validate at this step and log it."""
        val, probes = self.validate(self.step)
        suites = self.validate.suite_scores.get(self.step, {})
        logger.log({**{f"val/{k}": v for k, v in val.items()}, **{f"probe/{k}": v for k, v in probes.items()},
                    **{f"suite/{k}": v for k, v in suites.items()}, **self.compute_axes()}, step=self.step)
        return val, probes

    def compute_axes(self) -> dict[str, float]:
        """The compute axes every record carries (dashboards compare runs at equal FLOPs, tokens or words): tokens and
        FLOPs so far, and the corpus words those tokens hold (BabyLM's axis; when the data's words per token is
        known)."""
        p = self.progress
        out = {"train/tokens": p.tokens, "train/flops": p.flops}
        if self.words_per_token is not None:
            out["train/words"] = round(p.tokens * self.words_per_token)
        return out

    def fit(self, logger: MetricsLog) -> dict[str, Any]:
        """Train to trainer.max_steps or the budget (or stop_after), evaluating, logging and checkpointing on the
        way."""
        t, p, last = self.t, self.progress, {}
        end = self.max_steps if t.stop_after is None else min(self.max_steps, t.stop_after)
        if p.step == 0 and t.max_steps > 0:
            p.first_val, p.first_probes = self.log_validation(logger)
        if self.finished():  # a resumed run that had already ended: no bar at "loss nan, 0 tok/s"
            if distributed.is_main():
                console.print(f"the run in {self.run_dir} is complete (step {p.step:,}): nothing left to train",
                              highlight=False, soft_wrap=True)
            return last
        window_tokens, window_start = 0, time.perf_counter()
        with progress(disable=not distributed.is_main()) as bar, contextlib.closing(self.feed), StopSignals() as stop:  # no loader workers outlive it
            total = None if self.max_steps == NO_STEP_LIMIT else self.max_steps  # minutes: no step count known
            task = bar.add_task("train", total=total, completed=p.step, loss=float("nan"), tps=0.0)
            while p.step < end and not self.finished():
                start = time.perf_counter()
                out = self.train_step()
                p.elapsed += time.perf_counter() - start
                if self.world > 1 and self.budget is not None and self.budget.kind == "minutes":
                    p.elapsed = distributed.broadcast(p.elapsed)  # rank 0's clock: all ranks stop together
                window_tokens += out["batch_tokens"]
                last = out
                if p.step % t.log_every == 0 or p.step == end:
                    now = time.perf_counter()
                    tps = window_tokens / max(now - window_start, 1e-9)
                    logger.log({"train/loss": out["loss"], **self.loss_terms(), "train/lr": out["lr"],
                                "train/grad_norm": out["grad_norm"],
                                **self.compute_axes(), "train/tokens_per_s": tps,
                                "train/epoch": self.feed.epoch_of(p.step * t.grad_accum - 1),
                                "train/skipped_steps": p.skipped,
                                **({"train/loss_scale": out["loss_scale"], "train/fp16_overflows": self.amp.overflows}
                                   if out["loss_scale"] is not None else {})}, step=p.step)
                    window_tokens, window_start = 0, now
                    bar.update(task, loss=out["loss"], tps=tps)
                done = self.finished()
                # a copy of the weights at these FLOPs; at the end, at any threshold left (a budget's last step can
                # end a little under it: FLOPs per step vary with the tokens a batch holds)
                if due := (self.snapshots.pending if done else self.snapshots.due(p.flops)):
                    module_state, _ = self.parallel.state_dict(self.optimizer)  # every rank (FSDP: a collective)
                    self.snapshots.save(due, module_state, p.step, p.flops, p.tokens, write=distributed.is_main())
                if p.step % t.eval_every == 0 or done:
                    val, probes = self.log_validation(logger)
                    if distributed.is_main():  # one line per evaluation, above the bar (and in non-terminal logs)
                        bar.console.print(validation_line(p.step, total, out["loss"], val, probes,
                                                          self.validate.suite_scores.get(p.step),
                                                          self.objective.headline),
                                          highlight=False, soft_wrap=True)
                signum = stop.requested(self.device)  # SIGTERM / SIGUSR1: checkpoint after this step, then stop
                if p.step % t.checkpoint_every == 0 or p.step == end or done or signum:
                    self.checkpointer.save()
                bar.update(task, completed=p.step)
                if signum and not done:
                    stopped = Preempted(signum, p.step, self.run_dir)
                    if stop.signum and stop.handed_over_to() is not None:  # submitit's: requeues the job, exits
                        console.print(f"[yellow]stopped:[/] {stopped}; passing it to {stop.handed_over_to()}",
                                      highlight=False, soft_wrap=True)
                        self.feed.close()
                        stop.hand_over()
                    raise stopped
        return last
