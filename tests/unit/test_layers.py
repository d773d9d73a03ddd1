"""The package's layers (runner/__init__.py LAYERS): imports only go down, function-local imports of runner modules
only defer a heavy optional dependency, module names explain themselves, and the top holds few modules."""
from __future__ import annotations

import ast
import shutil
import sys
from pathlib import Path

import pytest

import runner

ROOT = Path(runner.__file__).resolve().parent
TOP = len(runner.LAYERS)  # __main__, run, build and the entry points sit above every layer


def layer_of(module: str) -> int:
    """The layer index of a dotted runner module (or of a package of one layer)."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in runner.LAYERS:
        return runner.LAYERS.index(parts[1])
    return TOP


def modules(root: Path) -> dict[str, Path]:
    """Every module of the package at root, by dotted name (packages by their own name)."""
    out = {}
    for f in root.rglob("*.py"):
        parts = f.relative_to(root.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def imported(module: str, file: Path) -> list[tuple[str, int, bool]]:
    """(runner module imported, line, whether inside a function or class) for every import in the file."""
    out = []
    tree = ast.parse(file.read_text(encoding="utf-8"))
    base = module if file.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against the importing package
                pkg = base.split(".")[: len(base.split(".")) - node.level + 1]
                mod = ".".join(pkg + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names = [f"{mod}.{a.name}" for a in node.names] if mod in ("runner", *[f"runner.{x}" for x in runner.LAYERS]) \
                else [mod]
        else:
            continue
        out += [(n, node.lineno, node.col_offset > 0) for n in names if n == "runner" or n.startswith("runner.")]
    return out


def upward_imports(root: Path) -> list[str]:
    """'module -> imported (line N)' for every import of a higher layer, function-local ones included."""
    found = []
    for module, file in sorted(modules(root).items()):
        for name, line, _ in imported(module, file):
            if name == "runner":
                continue
            if layer_of(name) > layer_of(module):
                found.append(f"{module} -> {name} (line {line})")
    return found


def test_the_layers_are_the_folders():
    folders = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert folders == set(runner.LAYERS)


def test_imports_only_go_down():
    assert upward_imports(ROOT) == []


@pytest.mark.parametrize("where, line", [
    ("config/errors.py", "from runner.engine.loop import Trainer\n"),  # at the top of a module
    ("models/base.py", "\n\ndef later():\n    from runner.reporting import logger\n    return logger\n"),  # in a function
    ("data/corpus.py", "from runner import build\n"),  # the top level, from a layer
])
def test_the_check_fails_on_a_planted_upward_import(tmp_path, where, line):
    copy = tmp_path / "runner"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / where, "a", encoding="utf-8") as f:
        f.write(line)
    found = upward_imports(copy)
    assert len(found) == 1 and found[0].startswith(f"runner.{where[:-3].replace('/', '.')} -> ")


def test_function_local_runner_imports_only_defer_a_heavy_dependency_and_say_which():
    unexplained = []
    for module, file in sorted(modules(ROOT).items()):
        lines = file.read_text(encoding="utf-8").splitlines()
        for name, line, local in imported(module, file):
            said = " ".join(lines[max(0, line - 2):line])
            if local and "defer" not in said:
                unexplained.append(f"{module}:{line} imports {name} inside a function without saying what it defers")
    assert unexplained == []


def test_at_most_eight_top_level_modules_besides_one_line_aliases():
    top = [p for p in ROOT.glob("*.py") if len([ln for ln in p.read_text().splitlines() if ln.strip()]) > 10]
    assert len(top) <= 8, sorted(p.name for p in top)
    aliases = [p for p in ROOT.glob("*.py") if p not in top and p.name != "__init__.py"]
    for p in aliases:  # an alias imports the moved command's main and runs it: nothing else
        tree = ast.parse(p.read_text())
        assert [type(n).__name__ for n in tree.body] in (["Expr", "ImportFrom", "If"],), p.name


SUFFIXES = ("ations", "ation", "ions", "ion", "ings", "ing", "ates", "ate", "ers", "er", "ed", "es", "s", "e")


def stem(name: str) -> str:
    for s in SUFFIXES:
        if name.endswith(s) and len(name) - len(s) >= 3:
            return name[: -len(s)]
    return name


def one_edit_apart(a: str, b: str) -> bool:
    """Names of four letters or more one insertion, deletion or substitution apart (the objectives' three-letter
    acronyms, mlm, clm and plm, are the papers' names)."""
    if abs(len(a) - len(b)) > 1 or a == b or min(len(a), len(b)) < 4:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b)) == 1
    short, long = sorted((a, b), key=len)
    return any(long[:i] + long[i + 1:] == short for i in range(len(long)))


def module_names() -> set[str]:
    return {p.stem for p in ROOT.rglob("*.py")} - {"__init__", "__main__"} | \
        {p.name for p in ROOT.rglob("*") if p.is_dir() and (p / "__init__.py").is_file()}


def test_no_module_is_named_like_a_standard_library_module():
    assert module_names() & set(sys.stdlib_module_names) == set()


# pairs a user-facing command fixes: the command's name is the users' interface, the layer's is the code's
COMMAND_NAMES = {("evaluate", "evaluation"): "python -m runner.evaluate (issue 27) runs the evaluation layer's suites"}


def test_no_two_module_names_differ_by_a_letter_or_a_suffix():
    names = sorted(module_names())
    clashes = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]
               if (one_edit_apart(a, b) or stem(a) == stem(b)) and (a, b) not in COMMAND_NAMES]
    assert clashes == []
    assert all((ROOT / f"{command}.py").is_file() for command, _ in COMMAND_NAMES), "an exemption outlived its command"


@pytest.mark.parametrize("a, b", [("run", "runs"), ("validate", "validation"), ("build", "built"),
                                  ("tokenizer", "tokenized"), ("pretraining", "pretrainer")])
def test_the_name_check_catches_the_names_it_replaced(a, b):
    assert one_edit_apart(a, b) or stem(a) == stem(b)
