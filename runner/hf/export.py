"""A finished run as transformers directories (hf/, and hf_generator/ for ELECTRA): what the objective declares
it exports (Objective.exports), skipped with a note where transformers has no class for it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.config.errors import ConfigError
from runner.config.console import console
from runner.hf.mapping import export, exported_parameters, hf_unsupported
from runner.store.layout import HF


def exports_of(built: Any) -> tuple[dict[str, Any], str | None]:
    """The objective's declared exports and why no transformers class holds them (None: every part has one)."""
    try:
        parts = built.objective.exports(built.module.encoder)
    except ConfigError as e:
        return {}, str(e)
    for part in parts.values():
        if (why := hf_unsupported(part.config, part.pair_head)) is not None:
            return parts, why
    return parts, None


def unsupported(built: Any) -> str | None:
    """Why this run cannot be exported (no transformers class holds it), or None."""
    return exports_of(built)[1]


def export_run(built: Any, run_dir: Path) -> str | None:
    """Write run_dir/hf (and the objective's other exports), if transformers is installed and has the classes."""
    try:
        import transformers  # noqa: F401
    except ImportError:
        console.print("[yellow]transformers is not installed: skipped the hf/ export (pip install -e '.[hf]')")
        return None

    # Sharing, factorization or a pair head that no transformers class holds (ALBERT's share=attention|ffn
    # ablations, BERT-style NSP on the ELECTRA architecture): the run trained fine and its checkpoint stands, so
    # skip the export with a note rather than fail at the end.
    built.module.cpu()
    parts, why = exports_of(built)
    if why is not None:
        console.print(f"[yellow]skipped the hf/ export: {why}", highlight=False, soft_wrap=True)
        return None
    for sub, part in parts.items():
        export(part.state, part.config, part.pair_head, built.data.tokenizer, Path(run_dir) / sub,
               discriminator=part.discriminator)
    return str(Path(run_dir) / HF)


def exported_counts(built: Any) -> dict[str, int]:
    """Parameters of each exported model as transformers counts them, by subdirectory ({} where none exists)."""
    parts, why = exports_of(built)
    return {} if why is not None else exported_parameters(parts)
