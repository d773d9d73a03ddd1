"""The training loop: accumulate, clip, step, log, evaluate, checkpoint; exact resume on CPU."""
from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from runner import checkpoint, distributed
from runner.budget import budget_of
from runner.crossover import Snapshots, crossover_tasks_of, evaluate_snapshots, snapshot_points
from runner.build import Built, albert_contrast, parameter_counts
from runner.data.batches import Batch, Batches, batch_loader, trim
from runner.data.lm_stream import stream_batches, stream_rows
from runner.data.stream import TokenStream
from runner.errors import ConfigError, TrainingError
from runner.evaluation import (downstream_enabled, downstream_eval, downstream_metrics, finetune_hint,
                               prepare_downstream, store_downstream)
from runner.flops import train_flops, txl_train_flops
from runner.lm_eval import compare_contexts, context_metrics, context_table
from runner.data.unigram import unigram_entropy
from runner.logging import NullLogger, RunLogger, console, progress
from runner.parallel import Parallel
from runner.precision import Precision
from runner.preemption import Preempted, StopSignals
from runner.probes.report import Probes, build_probes
from runner.summary import report_table, validation_line
from runner.validate import resolve_device

NO_STEP_LIMIT = 10 ** 12  # a minutes budget: the clock, not a step count, ends the run


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _cpu(tree: Any) -> Any:
    """A nest of dicts and lists with its tensors moved to the CPU (for pickling between ranks)."""
    if isinstance(tree, torch.Tensor):
        return tree.cpu()
    if isinstance(tree, dict):
        return {k: _cpu(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_cpu(v) for v in tree)
    return tree


class Trainer:
    """Runs one pretraining job in its run directory."""

    def __init__(self, cfg: DictConfig, built: Built, run_dir: Path):
        self.cfg, self.t, self.built, self.run_dir = cfg, cfg.trainer, built, Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.t.threads:
            torch.set_num_threads(self.t.threads)
        distributed.init()
        self.device = distributed.local_device(resolve_device(self.t.device))
        self.world = distributed.world_size()
        # FSDP moves each block to the device as it shards it: no rank ever holds the whole model there
        fsdp = self.world > 1 and self.t.strategy == "fsdp"
        self.module = built.module if fsdp else built.module.to(self.device)
        # DDP averages gradients over ranks; accumulate() normalises each rank's loss by the global counts and
        # scales it by the world size, so the gradient is the single-process one over the global batch (FSDP's
        # reduce-scatter averages the same way)
        self.parallel = Parallel(self.module, self.t.strategy, self.world, self.device)
        scaler = None
        if self.parallel.sharded:  # fp16 under FSDP: the ranks must agree whether a step overflowed
            from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler as scaler
        self.amp = Precision(self.t.precision, self.device, scaler)
        self.precision = self.amp.name
        if self.t.compile:  # the training forward; evaluation stays eager (no second graph for no_grad)
            self.parallel.compile()
        self.txl = built.config.family == "txl"
        obj = built.objective
        rank, world = distributed.rank(), self.world
        # Background loader over batch indices, opened on first use at the (possibly resumed) position.
        self._stream: Any = None  # iterator of the DataLoader (it keeps the loader alive)
        self._next_index = 0
        if built.config.family == "txl":  # rows continue their streams step to step, so the memory holds context
            try:
                self.batches, self.val = stream_batches(built.data, built.objective, cfg, rank, world)
            except ValueError as e:  # a split too short for the rows: one line naming the keys
                raise ConfigError(str(e)) from None
        else:
            static = getattr(obj, "masking", "dynamic") == "static"
            copies = obj.dupe_factor if static else 1
            rnp = getattr(obj, "random_next_prob", 0.5)
            train = built.data.examples("train", copies, cfg.seed, rnp)
            # Static (BERT): each copy of each example keeps one set of masks; dynamic (RoBERTa): new masks per batch.
            self.batches = Batches(train, self.t.batch_size, cfg.seed, prepare=obj.prepare, rank=rank,
                                   world_size=world, static=static)
            val = built.data.examples("validation", 1, cfg.seed + 1, rnp)
            n_val = min(len(val), self.t.eval_batches * self.t.batch_size)
            # Validation masks are drawn once, so every evaluation of every run with this seed scores the same task.
            val = obj.prepare(val.rows(range(n_val)), torch.Generator().manual_seed(cfg.seed + 29))
            self.val = [trim({k: v[i:i + self.t.batch_size] for k, v in val.items()})
                        for i in range(0, n_val, self.t.batch_size)]
        self.budget = budget_of(self.t.get("budget"))
        self.max_steps, schedule_steps = self.plan()
        self.optimizer, self.scheduler = instantiate(cfg.optimizer)(module=self.module, max_steps=max(schedule_steps, 1))
        self.step, self.tokens, self.flops, self.elapsed = 0, 0, 0.0, 0.0
        self.skipped = self.skipped_in_a_row = 0  # updates skipped for a non-finite loss (trainer.nonfinite=skip)
        self.first_val: dict[str, float] | None = None
        self.first_probes: dict[str, float] | None = None
        self.probes: Probes | None = None  # zero-shot minimal pairs, scored at every validation (run() sets them)
        self.unigram_entropy: float | None = None  # the context-blind loss of the training tokens (run() sets it)
        self.eval_s = 0.0  # seconds of validation and probes in this invocation
        self.last_validation: tuple[int, dict[str, float], dict[str, float]] | None = None  # (step, val, probes)
        # crossover.enabled: the weights at a geometric series of training FLOPs (runner/crossover.py)
        x = cfg.get("crossover")
        on = x is not None and x.enabled and self.budget is not None and self.budget.kind == "flops"
        points = snapshot_points(x.start_flops, x.per_decade, self.budget.amount) if on else []
        self.snapshots = Snapshots(self.run_dir, points)

    def plan(self) -> tuple[int, int]:
        """(the most steps the loop takes, the steps the schedule spans): trainer.max_steps, or the budget's plan
        from the cost of step 0's micro-batches (a minutes budget: no step limit, a schedule on the clock)."""
        if self.budget is None or self.t.max_steps == 0:  # max_steps=0 builds only, budget or not
            return self.t.max_steps, self.t.max_steps
        if self.budget.kind == "minutes":
            return NO_STEP_LIMIT, self.budget.plan(0, 0.0)
        micro = [self.batches.get(m) for m in range(self.t.grad_accum)]
        cost = distributed.all_sum({"tokens": sum(int(b["attention_mask"].sum()) for b in micro),
                                    "flops": sum(self.step_flops(b) for b in micro)}, self.device)  # all ranks
        steps = self.budget.plan(int(cost["tokens"]), cost["flops"])
        return steps, steps

    def finished(self) -> bool:
        """Whether the run is complete: its steps taken or its budget spent."""
        spent = self.budget is not None and self.budget.spent(self.step, self.tokens, self.flops, self.elapsed)
        return self.step >= self.max_steps or spent

    # ---- state -------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything needed to continue bit for bit (every rank's RNG state; called on every rank)."""
        rngs = distributed.gather(checkpoint.rng_state())
        # Transformer-XL: each rank's rows carry their own memories (the module's extra state holds rank 0's)
        memories = distributed.gather(_cpu(self.module.encoder.get_extra_state())) if self.txl else None
        module, optimizer = self.parallel.state_dict(self.optimizer)
        return {"module": module, "optimizer": optimizer, "precision": self.amp.state_dict(),
                "scheduler": self.scheduler.state_dict(), "step": self.step, "tokens": self.tokens,
                "flops": self.flops, "elapsed": self.elapsed, "first_val": self.first_val,
                "first_probes": self.first_probes,
                "rng": rngs[0], "rng_ranks": rngs, "memory_ranks": memories, "world_size": self.world,
                "strategy": self.parallel.strategy if self.world > 1 else "single", "skipped": self.skipped,
                "model_config": OmegaConf.to_container(self.cfg.model)}

    def save_checkpoint(self) -> None:
        """checkpoints/last.pt, written by rank 0 (every rank contributes its RNG state)."""
        state = self.state()
        if distributed.is_main():
            checkpoint.save(self.run_dir, state, keep=self.t.keep_checkpoints)

    def restore(self) -> None:
        """Load checkpoints/last.pt of this run directory."""
        s = checkpoint.load(self.run_dir)
        if s["model_config"] != OmegaConf.to_container(self.cfg.model):
            raise TrainingError(f"the checkpoint in {self.run_dir} was trained with another model config; "
                                "resume with the run's own overrides or start a new run directory")
        self.parallel.load_state_dict(self.optimizer, s["module"], s["optimizer"])
        self.scheduler.load_state_dict(s["scheduler"])
        self.amp.load_state_dict(s.get("precision"))
        self.step, self.tokens, self.flops, self.elapsed = s["step"], s["tokens"], s["flops"], s["elapsed"]
        self.snapshots.skip_reached(self.flops)
        self.first_val = s["first_val"]
        self.first_probes = s.get("first_probes")
        self.skipped = s.get("skipped", 0)
        ranks = s.get("rng_ranks") or [s["rng"]]
        # the same world size continues every rank's own random stream; another one gives each rank rank 0's
        checkpoint.set_rng_state(ranks[distributed.rank()] if len(ranks) == self.world else s["rng"])
        memories = s.get("memory_ranks")
        if self.txl and memories and len(memories) == self.world:  # each rank's rows continue with their memory
            self.module.encoder.set_extra_state(memories[distributed.rank()])
        elif self.txl and memories:  # rows are dealt to ranks anew: no row's memory is its own any more
            self.module.encoder.reset_memory()
            if distributed.is_main():
                console.print(f"[yellow]note:[/] the checkpoint was written by {len(memories)} ranks, this run has "
                              f"{self.world}: Transformer-XL memories start empty", highlight=False, soft_wrap=True)

    # ---- data --------------------------------------------------------------------------------------------
    def batch(self, index: int) -> Batch:
        """The index-th batch, from the background loader when trainer.num_workers > 0 (same batches either way)."""
        if self.t.num_workers == 0:
            return self.batches.get(index)
        end_step = self.max_steps if self.t.stop_after is None else min(self.max_steps, self.t.stop_after)
        end = max(end_step * self.t.grad_accum, index + 1)
        if self._stream is None or index != self._next_index:  # first use, or a jump (resume): start there
            self.close()
            self._stream = iter(batch_loader(self.batches, index, end, self.t.num_workers))
        try:
            out = next(self._stream)
        except StopIteration:  # called past the planned end (accumulate() by hand): reopen from here
            self.close()
            return self.batch(index)
        self._next_index = index + 1
        return out

    def close(self) -> None:
        """Stop the data loader's worker processes, if any are running."""
        stream, self._stream = self._stream, None
        if stream is not None and hasattr(stream, "_shutdown_workers"):
            stream._shutdown_workers()  # persistent workers outlive the iterator otherwise, until GC

    # ---- work --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Validation metrics over the fixed, pre-masked validation batches."""
        self.module.eval()
        totals: dict[str, torch.Tensor] = {}
        for batch in self.val:
            b = _to(batch, self.device)
            with self.amp.autocast():
                _, stats = self.module(b, {k: 1.0 for k in self.built.objective.normalizers(b)})
            for k, v in stats.items():
                # summed as float64 tensors: counts stay exact, and vector stats (ELECTRA's histograms) add up
                v = v.detach().to("cpu", torch.float64)
                totals[k] = totals[k] + v if k in totals else v
        self.module.train()
        return self.built.objective.metrics(totals)

    def validate(self) -> tuple[dict[str, float], dict[str, float]]:
        """Validation metrics (with the gap to the unigram entropy) and probe accuracies, timed as evaluation."""
        start = time.perf_counter()
        val = self.evaluate()
        key = self.built.objective.lm_metric
        if self.unigram_entropy is not None and key in val:  # > 0: the model uses context
            val["unigram_gap"] = self.unigram_entropy - val[key]
        probes = self.probes.evaluate(self.built.objective, self.module.encoder) if self.probes is not None else {}
        self.eval_s += time.perf_counter() - start
        self.last_validation = (self.step, val, probes)
        return val, probes

    def final_validation(self) -> tuple[dict[str, float], dict[str, float]]:
        """The validation of the current step: the loop's last one when it ran at this step (it is
        deterministic), else a new one."""
        if self.last_validation is not None and self.last_validation[0] == self.step:
            return self.last_validation[1], self.last_validation[2]
        return self.validate()

    def accumulate(self) -> dict[str, float]:
        """Forward and backward over grad_accum micro-batches; losses are normalised over all of them, so the
        gradient equals that of one batch of batch_size x grad_accum."""
        accum = self.t.grad_accum
        micro = [self.batch(self.step * accum + m) for m in range(accum)]
        norms: dict[str, float] = {}
        for b in micro:
            for k, v in self.built.objective.normalizers(b).items():
                norms[k] = norms.get(k, 0.0) + float(v)
        norms = distributed.all_sum(norms, self.device)  # over every rank's micro-batches: the global batch
        loss_total, tokens, flops = 0.0, 0, 0.0
        for i, b in enumerate(micro):
            b = _to(b, self.device)
            with self.parallel.sync(last=i == accum - 1):  # gradients communicated on the last micro-batch only
                with self.amp.autocast():
                    loss, _ = self.parallel.forward_module()(b, norms)
                self.amp.backward(loss * self.world)
            loss_total += float(loss.detach())
            tokens += int(b["attention_mask"].sum())
            flops += self.step_flops(b)
        total = distributed.all_sum({"loss": loss_total, "tokens": tokens, "flops": flops}, self.device)
        self.flops += total["flops"]
        return {"loss": total["loss"], "batch_tokens": int(total["tokens"])}

    def step_flops(self, b: dict[str, torch.Tensor]) -> float:
        """Training FLOPs of one micro-batch."""
        c, obj, (B, T) = self.built.config, self.built.objective, b["input_ids"].shape
        if c.family == "txl":
            return txl_train_flops(c, B, T, c.mem_len)
        return train_flops(c, B, T, int(b["labels"].ne(-100).sum()), hasattr(obj, "pair_head"),
                           getattr(obj, "generator_config", None))  # ELECTRA's generator

    def compare_contexts(self) -> dict[str, Any]:
        """Transformer-XL's evaluation three ways on validation rows: with memory, without, sliding window."""

        c, t = self.built.config, self.t
        tgt = c.eval_tgt_len or self.cfg.data.seq_len
        mem = c.eval_mem_len if c.eval_mem_len is not None else c.mem_len
        stream = TokenStream(self.built.data.splits["validation"], self.built.data.specials.sep)
        R = min(t.batch_size, 4)  # a few long rows: the memory matters more the longer a row runs
        n = min(stream.length // R - 1, t.eval_batches * tgt)
        rows = torch.from_numpy(stream_rows(stream, R, n + 1)).to(self.device)  # (R, n + 1)
        with self.amp.autocast():
            return compare_contexts(self.module.encoder, self.built.objective, rows, tgt_len=tgt, mem_len=mem,
                                    clamp_len=c.clamp_len, same_length=c.same_length,
                                    sliding_tokens=self.built.objective.compare_tokens)

    def train_step(self) -> dict[str, float]:
        """One optimizer step: accumulate, stop on a non-finite loss, clip, step the optimizer and schedule."""
        out = self.accumulate()
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
                raise TrainingError(f"loss became {out['loss']} (gradient norm {grad_norm}) at step {self.step + 1}"
                                    f"{again}; stopped without saving, the last good checkpoint in "
                                    f"{self.run_dir / 'checkpoints'} is kept; lower optimizer.lr or raise "
                                    "optimizer.warmup_fraction")
            self.skipped += 1
            self.amp.skip(overflow=False)
            console.print(f"[yellow]warning:[/] loss {out['loss']} at step {self.step + 1}: update skipped "
                          f"(trainer.nonfinite=skip, {self.skipped} so far)", highlight=False, soft_wrap=True)
        else:
            self.skipped_in_a_row = 0
            self.amp.step(self.optimizer)
        if self.budget is not None and self.budget.kind == "minutes":  # the schedule follows the clock
            self.scheduler.last_epoch = self.budget.tick(self.elapsed) - 1
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens += out["batch_tokens"]
        return {**out, "lr": lr, "grad_norm": grad_norm, "skipped": self.skipped, "loss_scale": self.amp.scale}

    def fit(self, logger: RunLogger) -> dict[str, Any]:
        """Train to trainer.max_steps or the budget (or stop_after), evaluating, logging and checkpointing on the
        way."""
        t, last = self.t, {}
        end = self.max_steps if t.stop_after is None else min(self.max_steps, t.stop_after)
        if self.step == 0 and t.max_steps > 0:
            self.first_val, self.first_probes = self.validate()
            logger.log({**{f"val/{k}": v for k, v in self.first_val.items()},
                        **{f"probe/{k}": v for k, v in self.first_probes.items()}}, step=0)
        window_tokens, window_start = 0, time.perf_counter()
        with progress() as bar, contextlib.closing(self), StopSignals() as stop:  # no loader workers outlive it
            total = None if self.max_steps == NO_STEP_LIMIT else self.max_steps  # minutes: no step count known
            task = bar.add_task("train", total=total, completed=self.step, loss=float("nan"), tps=0.0)
            while self.step < end and not self.finished():
                start = time.perf_counter()
                out = self.train_step()
                self.elapsed += time.perf_counter() - start
                if self.world > 1 and self.budget is not None and self.budget.kind == "minutes":
                    self.elapsed = distributed.broadcast(self.elapsed)  # rank 0's clock: all ranks stop together
                window_tokens += out["batch_tokens"]
                last = out
                if self.step % t.log_every == 0 or self.step == end:
                    now = time.perf_counter()
                    tps = window_tokens / max(now - window_start, 1e-9)
                    logger.log({"train/loss": out["loss"], "train/lr": out["lr"], "train/grad_norm": out["grad_norm"],
                                "train/tokens": self.tokens, "train/tokens_per_s": tps, "train/flops": self.flops,
                                "train/epoch": self.batches.epoch_of(self.step * t.grad_accum - 1),
                                "train/skipped_steps": self.skipped,
                                **({"train/loss_scale": out["loss_scale"], "train/fp16_overflows": self.amp.overflows}
                                   if out["loss_scale"] is not None else {})}, step=self.step)
                    window_tokens, window_start = 0, now
                    bar.update(task, loss=out["loss"], tps=tps)
                done = self.finished()
                # a copy of the weights at these FLOPs; at the end, at any threshold left (a budget's last step can
                # end a little under it: FLOPs per step vary with the tokens a batch holds)
                if due := (self.snapshots.pending if done else self.snapshots.due(self.flops)):
                    module_state, _ = self.parallel.state_dict(self.optimizer)  # every rank (FSDP: a collective)
                    self.snapshots.save(due, module_state, self.step, self.flops, self.tokens,
                                        write=distributed.is_main())
                if self.step % t.eval_every == 0 or done:
                    val, probes = self.validate()
                    logger.log({**{f"val/{k}": v for k, v in val.items()},
                                **{f"probe/{k}": v for k, v in probes.items()}}, step=self.step)
                    # one line per evaluation, above the bar (and the only progress in non-terminal logs)
                    if distributed.is_main():
                        bar.console.print(validation_line(self.step, total, out["loss"], val, probes),
                                          highlight=False, soft_wrap=True)
                signum = stop.requested(self.device)  # SIGTERM / SIGUSR1: checkpoint after this step, then stop
                if self.step % t.checkpoint_every == 0 or self.step == end or done or signum:
                    self.save_checkpoint()
                bar.update(task, completed=self.step)
                if signum and not done:
                    stopped = Preempted(signum, self.step, self.run_dir)
                    if stop.signum and stop.handed_over_to() is not None:  # submitit's: requeues the job, exits
                        console.print(f"[yellow]stopped:[/] {stopped}; passing it to {stop.handed_over_to()}",
                                      highlight=False, soft_wrap=True)
                        self.close()
                        stop.hand_over()
                    raise stopped
        return last


def run(cfg: DictConfig, built: Built, run_dir: Path) -> dict[str, Any]:
    """Train (or, with trainer.max_steps=0, only build) and write the run's summary."""
    started = time.perf_counter()
    main = distributed.is_main()  # ranks > 0 train and evaluate, and write nothing
    # the downstream task is loaded before any training: a bad eval.task or an unreachable dataset stops the run now
    task = prepare_downstream(cfg, built) if main and cfg.trainer.max_steps > 0 else None
    crossover_tasks = crossover_tasks_of(cfg, built) if main and cfg.trainer.max_steps > 0 else {}
    trainer = Trainer(cfg, built, run_dir)
    # trainer.resume=auto: continue when the run directory has a checkpoint (a requeued job), else start; a submitit
    # job resumes that way by default (the job's directory holds a checkpoint only when this is a requeue)
    auto = cfg.trainer.resume == "auto" or (cfg.trainer.resume is False and distributed.in_submitit_job())
    resuming = cfg.trainer.resume is True or (auto and checkpoint.exists(run_dir))
    if resuming:
        trainer.restore()
    m, o, d = cfg.model.name, cfg.objective.name, cfg.data.name
    name = cfg.logger.name or f"{m}-{o}-{d}-{run_dir.name[:19]}"
    tags = list(dict.fromkeys([m, o, d, cfg.model.family, f"masking={cfg.objective.get('masking', 'none')}",
                               *cfg.logger.tags]))
    group = cfg.logger.group or f"{m}-{o}"  # dashboards group runs by variant (a sweep: by sweep, runner.sweep)
    logger = RunLogger(cfg.logger, run_dir, OmegaConf.to_container(cfg, resolve=True), name, tags,
                       resume_step=trainer.step if resuming else None, group=group) if main else NullLogger()
    if cfg.trainer.max_steps > 0:  # what a context-blind model reaches, and the minimal pairs
        start = time.perf_counter()
        trainer.unigram_entropy = unigram_entropy(built.data.splits["train"], built.data.specials.num_special)
        trainer.probes = build_probes(cfg, built.data)
        built.seconds += time.perf_counter() - start
    try:
        last = trainer.fit(logger) if cfg.trainer.max_steps > 0 else {}
    except BaseException:
        logger.abort()
        raise
    final_val, final_probes = trainer.final_validation() if cfg.trainer.max_steps > 0 else ({}, {})
    if trainer.parallel.sharded:  # FSDP: gather the shards (every rank takes part) into one module on rank 0
        built.module = trainer.module = trainer.parallel.unsharded()
    if not main:  # no collective follows training: leave rank 0 to the end-of-run work
        distributed.shutdown(barrier=False)
        return {"name": name, "rank": distributed.rank(), "steps": trainer.step, "final_val": final_val}
    start = time.perf_counter()
    context = trainer.compare_contexts() if getattr(built.objective, "streams", False) and final_val else None
    trainer.eval_s += time.perf_counter() - start
    start = time.perf_counter()
    finished = bool(final_val) and trainer.finished()
    downstream = downstream_eval(cfg, built, trainer.device, task) if task is not None and finished else None
    finetune_s = time.perf_counter() - start
    summary = {
        "name": name, "model": m, "objective": o, "data": d, "run_dir": str(run_dir),
        "parameters": parameter_counts(built.module), "steps": trainer.step, "max_steps": trainer.max_steps,
        "effective_batch": cfg.trainer.batch_size * cfg.trainer.grad_accum * trainer.world, "world_size": trainer.world,
        "seq_len": cfg.data.seq_len,
        "tokens_seen": trainer.tokens, "train_flops": trainer.flops, "final_train_loss": last.get("loss"),
        "initial_val": trainer.first_val or {}, "final_val": final_val, "train_time_s": trainer.elapsed,
        "tokens_per_s": trainer.tokens / trainer.elapsed if trainer.elapsed else 0.0,
        "device": str(trainer.device), "precision": trainer.precision, "data_stats": built.data.stats(),
        "wandb_mode": logger.mode, "wandb_group": group, "skipped_steps": trainer.skipped,
    }
    if trainer.unigram_entropy is not None:
        summary["unigram_entropy"] = trainer.unigram_entropy
    if trainer.probes is not None:
        p = cfg.probes
        summary["probes"] = {"pairs": trainer.probes.counts(), "scorers": trainer.probes.scorers, "split": p.split,
                             "seed": p.seed, "words": [p.min_words, p.max_words],
                             "initial": trainer.first_probes or {}, "final": final_probes}
    if trainer.budget is not None:  # what ended the run, and how much of it was used
        b = trainer.budget
        used = {"steps": trainer.step, "tokens": trainer.tokens, "flops": trainer.flops,
                "minutes": trainer.elapsed / 60}[b.kind]
        summary["budget"] = {"kind": b.kind, "amount": b.amount, "used": used, "complete": trainer.finished()}
    if downstream is not None:  # summary["downstream"] and summary["downstream_tasks"][task]
        store_downstream(summary, downstream)
        logger.log(downstream_metrics(downstream), step=trainer.step)
    if context is not None:  # Transformer-XL section 4.3 / Table 9: what the memory buys, and how fast
        summary["context_comparison"] = context
        logger.log(context_metrics(context), step=trainer.step)
    if cfg.model.family == "albert":  # the paper's headline contrast, counted from the presets (Table 2)
        summary["albert_vs_bert"] = albert_contrast()
    if crossover_tasks and finished:  # every snapshot probed and fine-tuned (the baselines come from the cache)
        start = time.perf_counter()
        summary["crossover"] = evaluate_snapshots(cfg, built, run_dir, trainer.probes, trainer.device,
                                                  crossover_tasks)["crossovers"]
        finetune_s += time.perf_counter() - start
    start = time.perf_counter()
    if cfg.trainer.export_hf and cfg.trainer.max_steps > 0 and trainer.finished():
        summary["hf_export"] = export_run(built, run_dir)
    export_s = time.perf_counter() - start
    summary["wall_time_s"] = time.perf_counter() - started + built.seconds  # data, evaluation, export included
    # where this invocation's time went (training: the loop's steps, all invocations of a resumed run)
    summary["time_s"] = {"data": built.seconds, "training": trainer.elapsed, "validation_probes": trainer.eval_s,
                         "finetuning": finetune_s, "export": export_s, "total": summary["wall_time_s"]}
    logger.finish(summary)
    distributed.shutdown(barrier=False)
    console.print(report_table(summary))
    if finished and not downstream_enabled(cfg):
        console.print(finetune_hint(run_dir), highlight=False, soft_wrap=True)
    if context is not None:
        console.print(context_table(context))
    if "albert_vs_bert" in summary:
        c = summary["albert_vs_bert"]
        console.print(f"ALBERT Table 2: albert_large {c['albert_large'] / 1e6:.1f}M vs bert_large "
                      f"{c['bert_large'] / 1e6:.0f}M parameters ({c['ratio']:.1%}); this run "
                      f"{summary['parameters']['total']:,}", highlight=False, soft_wrap=True)
    return summary


def export_run(built: Built, run_dir: Path) -> str | None:
    """Write run_dir/hf as a transformers directory, if transformers is installed."""
    try:
        import transformers  # noqa: F401
    except ImportError:
        console.print("[yellow]transformers is not installed: skipped the hf/ export (pip install -e '.[hf]')")
        return None
    from runner.models.hf import export, hf_unsupported

    # Sharing, factorization or a pair head that no transformers class holds (ALBERT's share=attention|ffn
    # ablations, BERT-style NSP on the ELECTRA architecture): the run trained fine and its checkpoint stands, so
    # skip the export with a note rather than fail at the end.
    obj = built.objective
    if (why := hf_unsupported(built.config, hasattr(obj, "pair_head"))) is not None:
        console.print(f"[yellow]skipped the hf/ export: {why}", highlight=False, soft_wrap=True)
        return None
    if hasattr(obj, "hf_exports"):  # ELECTRA: the discriminator to hf/, the generator to hf_generator/
        return export_electra(obj, built, Path(run_dir))
    out = export(built.module.cpu(), built.config, hasattr(obj, "pair_head"), built.data.tokenizer,
                 Path(run_dir) / "hf")
    return str(out)


def export_electra(obj: Any, built: Built, run_dir: Path) -> str | None:
    """Write run_dir/hf (ElectraForPreTraining) and run_dir/hf_generator (ElectraForMaskedLM), or say why not."""
    from runner.errors import ConfigError
    from runner.models.hf import export, hf_unsupported

    module = built.module.cpu()
    try:
        parts = obj.hf_exports(module.encoder)
    except ConfigError as e:
        console.print(f"[yellow]skipped the hf/ export: {e}", highlight=False, soft_wrap=True)
        return None
    for _, config, _ in parts.values():
        if (why := hf_unsupported(config)) is not None:
            console.print(f"[yellow]skipped the hf/ export: {why}", highlight=False, soft_wrap=True)
            return None
    for sub, (state, config, discriminator) in parts.items():
        export(state, config, False, built.data.tokenizer, run_dir / sub, discriminator=discriminator)
    return str(run_dir / "hf")
