"""The unit tier's rule, enforced: a unit test starts no process (subprocess, fork, multiprocessing) and trains
nothing (no run, no training step, no fine-tuning or fitted baseline). A test that needs either belongs in
tests/integration/ (tests/README.md)."""
from __future__ import annotations

import multiprocessing.process
import os
import subprocess

import pytest


def _refuse(what: str):
    def refused(*args, **kwargs):
        pytest.fail(f"a unit test {what}: move it to tests/integration/ (tests/README.md)", pytrace=False)
    return refused


@pytest.fixture(autouse=True)
def _unit_tier(monkeypatch):
    from runner.engine import loop
    from runner.evaluation.downstream import bag_of_words, classifier, protocol

    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse("started a subprocess"))
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", _refuse("started a process"))
    monkeypatch.setattr(os, "fork", _refuse("forked"))
    monkeypatch.setattr(loop.Trainer, "train_step", _refuse("took a training step"), raising=False)
    for module in (classifier, protocol):
        monkeypatch.setattr(module, "finetune_once", _refuse("fine-tuned a classifier"), raising=False)
    monkeypatch.setattr(bag_of_words, "_fit_logreg", _refuse("fitted a baseline"), raising=False)
