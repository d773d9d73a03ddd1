"""Every model preset with every objective: it builds, or bertlab refuses it in one line before any work. A recipe
that sets keys another objective lacks (XLNet's objective.reuse_len) is refused from the config files (runner/fit.py)
before Hydra composes, naming the model, the objective and the objectives that fit; every other mismatch is one
line from the checks of runner/build.py (validate, the objective's check of the encoder)."""
from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from runner.build import encoder_config, objective_options, validate
from runner.config.errors import ConfigError
from runner.fit import CONF, command_line_refusal, objectives, preset_recipe, recipe_objective, refusal
from runner.models.registry import build_encoder

PRESETS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))


def test_the_xlnet_recipe_on_rtd_is_refused_in_one_line():
    why = refusal("xlnet", "rtd")
    assert why == ("model=xlnet does not train with objective=rtd: its recipe (conf/recipe/xlnet.yaml) sets "
                   "objective.reuse_len, which objective=rtd does not have; objectives that fit model=xlnet: plm "
                   "(or leave objective= out for the recipe's plm)")
    assert refusal("xlnet_large", "mlm") is not None and refusal("xlnet", "plm") is None
    assert refusal("bert", "plm") is None  # composes; the objective's own check refuses the family (below)


def test_the_command_line_pairs():
    assert command_line_refusal(["model=xlnet", "objective=rtd"]).startswith("model=xlnet does not train")
    assert command_line_refusal(["model=xlnet"]) is None  # no objective given: the recipe's
    assert command_line_refusal(["objective=rtd"], default_model="xlnet") is not None
    assert command_line_refusal(["objective=rtd"], default_model="bert") is None
    # a multirun's values: every combination
    assert "model=xlnet" in command_line_refusal(["-m", "model=bert,xlnet", "objective=mlm,plm"])
    assert command_line_refusal(["model=nope", "objective=rtd"]) is None  # Hydra names an unknown preset


def test_every_preset_names_a_recipe():
    assert all(preset_recipe(m) for m in PRESETS)


def test_every_preset_with_every_objective_builds_or_is_refused_in_one_line():
    """Whether a pair composes depends on the objective keys the preset's recipe sets (a preset sets model keys
    only): one preset per distinct set of recipe keys is composed with every objective, and refusal() must say
    exactly which fail. Then every preset with every objective that composes is validated and built (the preset's
    encoder on the meta device, the objective's options and its check of the encoder), or refused with a one-line
    ConfigError."""
    built, refused = 0, 0
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        nodes: dict[frozenset[str], dict[str, object]] = {}  # recipe keys -> objective -> its composed node or None
        for model in PRESETS:
            keys = recipe_objective(preset_recipe(model))[1]
            if keys in nodes:
                continue
            nodes[keys] = {}
            for objective in objectives():
                try:
                    node = compose("config", overrides=[f"model={model}", f"objective={objective}"]).objective
                except ConfigCompositionException:
                    node = None
                assert (node is None) == (refusal(model, objective) is not None), (model, objective)
                nodes[keys][objective] = node
        assert len(nodes) >= 3  # none, XLNet's reuse_len, ModernBERT's mask_prob, ...
        for model in PRESETS:
            base = compose("config", overrides=[f"model={model}"])
            with torch.device("meta"):  # the encoder does not depend on the objective: built once per preset
                build_encoder(encoder_config(base))
            picked, keys = recipe_objective(preset_recipe(model))
            own = base.objective  # the recipe's objective with the recipe's values
            for objective, node in nodes[keys].items():
                if node is None:
                    why = refusal(model, objective)
                    assert "\n" not in why and f"model={model}" in why and f"objective={objective}" in why
                    refused += 1
                    continue
                assert refusal(model, objective) is None
                base.objective = own if objective == picked else node
                try:
                    validate(base)
                    objective_options(base.objective, encoder_config(base))  # and its check of the encoder
                    built += 1
                except ConfigError as e:
                    assert "\n" not in str(e) and str(e), (model, objective)
                    refused += 1
    assert built + refused == len(PRESETS) * len(objectives()) and built > len(PRESETS)


def test_the_command_refuses_before_hydra_composes(capsys):
    from tests.conftest import cli

    r = cli("model=xlnet", "objective=rtd")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"error: {refusal('xlnet', 'rtd')}"]
