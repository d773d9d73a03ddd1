"""A family added from outside the package (docs/extending.md): a toy encoder, its transformers adapter and its model
YAML live in a temporary package and config directory; `BERTLAB_PLUGINS` imports the package and
`hydra.searchpath` finds the YAML. `python -m runner model=toy` then trains it and exports an hf/ that transformers
loads, and no file of the repository's runner/ or conf/ changes."""
from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runner.store.layout import HF, SUMMARY
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[2]

MODEL = '''\
"""The toy family: BERT's blocks (runner.models.encoder), its own config schema and family name."""
from dataclasses import dataclass

from torch import nn

from runner.models.base import EncoderModule
from runner.models.config import EncoderConfig
from runner.models.encoder import Embeddings, Layer, init_weights
from runner.models.flops import encoder_flops


@dataclass
class ToyConfig(EncoderConfig):
    schema = "base_toy"  # conf/model/toy.yaml extends it
    family: str = "toy"
    num_layers: int = 1


class ToyEncoder(EncoderModule):
    families = ("toy",)
    config_class = ToyConfig

    def __init__(self, config: ToyConfig):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(Layer(config) for _ in range(config.num_layers))
        self.apply(lambda m: init_weights(m, config.initializer_range))

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        mask = None if attention_mask is None else attention_mask.bool()[:, None, None, :]
        x = self.embeddings(input_ids, token_type_ids)
        for layer in self.layers:
            x = layer(x, mask)
        return x

    def encode_rows(self, input_ids, token_type_ids, attention_mask):
        return self(input_ids, token_type_ids, attention_mask)

    def forward_flops(self, sequences, seq_len):
        return encoder_flops(self.config, sequences * seq_len, seq_len)
'''

ADAPTER = '''\
"""The toy family's transformers adapter: its parameters are laid out as BERT's, so BertForMaskedLM holds them."""
from runner.hf.adapters.bert import BertAdapter


class ToyAdapter(BertAdapter):
    families = ("toy",)
'''

YAML = '''\
defaults:
  - base_toy
  - _self_
name: toy
family: toy
vocab_size: 1000
hidden_size: 32
num_layers: 1
num_heads: 2
intermediate_size: 64
max_position_embeddings: 128
'''


def tree_hashes(*folders: str) -> dict[str, str]:
    """sha256 of every file under the repository's folders (compiled bytecode aside), by relative path."""
    out = {}
    for folder in folders:
        for f in sorted((ROOT / folder).rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts:
                out[str(f.relative_to(ROOT))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def write_plugin(tmp_path: Path) -> tuple[Path, Path]:
    """The toy package (toyfam/: model.py, adapter.py) and a config directory holding model/toy.yaml."""
    pkg = tmp_path / "plugins" / "toyfam"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("from toyfam import adapter, model  # noqa: F401\n")
    (pkg / "model.py").write_text(MODEL)
    (pkg / "adapter.py").write_text(ADAPTER)
    conf = tmp_path / "conf"
    (conf / "model").mkdir(parents=True)
    (conf / "model" / "toy.yaml").write_text(YAML)
    return pkg.parent, conf


def runner_cli(*args: str, plugins: str, path: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """python -m runner in a fresh process with BERTLAB_PLUGINS, the plugin folder and the repository on PYTHONPATH."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", "BERTLAB_PLUGINS": plugins,
           "PYTHONPATH": os.pathsep.join([str(path), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_a_family_from_outside_the_package_trains_and_exports(tmp_path):
    transformers = pytest.importorskip("transformers")
    import torch

    path, conf = write_plugin(tmp_path)
    run_dir = tmp_path / "run"
    before = tree_hashes("runner", "conf")
    r = runner_cli("model=toy", "objective=mlm", *TINY, "trainer.max_steps=20", "trainer.eval_every=20",
                   "optimizer.lr=5e-3", f"hydra.searchpath=[file://{conf}]", f"hydra.run.dir={run_dir}",
                   plugins="toyfam", path=path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert tree_hashes("runner", "conf") == before  # nothing of the repository was edited to add the family

    summary = json.loads((run_dir / SUMMARY).read_text())
    assert (summary["model"], summary["steps"]) == ("toy", 20)
    saved = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "family: toy" in saved
    first, last = summary["initial_val"]["mlm_loss"], summary["final_val"]["mlm_loss"]
    assert math.isfinite(summary["final_train_loss"]) and math.isfinite(last) and last < first

    hf = transformers.AutoModelForMaskedLM.from_pretrained(run_dir / HF)  # the adapter's class: BertForMaskedLM
    assert type(hf).__name__ == "BertForMaskedLM"
    assert hf.num_parameters() == summary["exported_parameters"][HF]
    tok = transformers.AutoTokenizer.from_pretrained(run_dir / HF)
    with torch.no_grad():
        logits = hf(**tok(["the capital of france is [MASK] ."], return_tensors="pt")).logits
    assert logits.shape[-1] == 1000 and torch.isfinite(logits).all()


def test_a_plugin_module_that_does_not_exist_is_a_one_line_error(tmp_path):
    r = runner_cli("trainer.max_steps=0", plugins="toyfam_missing", path=tmp_path, cwd=tmp_path)
    assert r.returncode == 2
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1 and "BERTLAB_PLUGINS" in lines[0] and "'toyfam_missing'" in lines[0], lines
