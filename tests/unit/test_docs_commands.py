"""Every command documented in README.md and docs/**/*.md still composes.

The commands are taken from fenced code blocks (```bash, ```sh, ```shell, ```console or a plain ```) and from
inline code spans that start with `python -m runner`, `torchrun` or `make`. Each is one test case, named
<file>:<line>, checked without training anything:

- `python -m runner [-m] overrides...` (also behind `torchrun ... -m runner`, `/usr/bin/time -v`, `VAR=value`):
  composed with Hydra's compose API against conf/ (every combination of a sweep, or a covering set when there are
  many), the sweeps an experiment sets in `hydra.sweeper.params` included, then put through the runner's
  cross-key checks (runner.build.validate), which `python -m runner` runs before any work. A sweep value
  without `-m` (and without an experiment that sets hydra.mode=MULTIRUN) is an error.
- `python -m runner.finetune <run dir> eval.*=...`: the overrides are applied as runner.finetune applies them.
- `python -m runner.<module> args` (compare, crossover, ...): the module exists and its argparse parser accepts
  the arguments (the parse is intercepted: nothing runs).
- `make [VAR=value ...] target`: the target and variables exist in the Makefile; `make run` composes RUN_ARGS.
- `python benchmarks/<script>.py`: the script exists.

Placeholders (`<run dir>`, `<overrides>`), `...` and bracketed syntax (`[eval.*=...]`) are dropped or stand in
for a value (a path is never checked for existence); a group choice left as a placeholder (`model=<preset>`) is
dropped, and a command holding a placeholder value skips the cross-key checks (compose only)."""
from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import inspect
import itertools
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from runner.build import register

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
register()

SHELL_LANGS = {"", "bash", "sh", "shell", "console", "shell-session", "zsh"}
PLACEHOLDER = "PLACEHOLDER"
MAX_COMBINATIONS = 24  # compose every combination of a sweep up to this many, else a covering set
RUNNER_FLAGS_WITH_ARG = {"--cfg", "-c", "--package", "-p", "--info", "-i", "--config-name", "-cn"}
RUNNER_FLAGS = {"-m", "--multirun", "--help", "-h", "--hydra-help", "--resolve", "--version", "--run", "-r",
                "--shell-completion", "-sc"}
WRAPPERS = {"time", "nohup", "env", "exec", "srun", "uv"}


class DocCommandError(AssertionError):
    """A documented command that does not compose or parse."""


@dataclass
class Command:
    """One documented command: where it is, and its text after comments and continuations are removed."""

    file: str
    line: int
    text: str
    case_id: str = ""  # file:line, with #2, #3 ... for further commands on the same line

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"


# --------------------------------------------------------------------------------------------------- extraction

def doc_files() -> list[Path]:
    """README.md and every Markdown page under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _logical_lines(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Join backslash continuations; keep the first line's number."""
    out, buf, start = [], "", 0
    for number, line in lines:
        if not buf:
            start = number
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        out.append((start, buf + stripped))
        buf = ""
    if buf:
        out.append((start, buf))
    return out


def _is_listing(block: list[tuple[int, str]]) -> bool:
    """A plain block that is a directory tree or file listing (`runner/   the package`), not commands."""
    first = next((s.split()[0] for _, s in block if s.strip() and not s.lstrip().startswith("#")), "")
    return first.endswith("/") or bool(re.search(r"\.(py|ya?ml|json|md|txt)$", first))


def fenced_commands(text: str) -> list[tuple[int, str]]:
    """(line, command) of every shell line in fenced code blocks; console blocks: only `$ ` lines."""
    found: list[tuple[int, str]] = []
    block: list[tuple[int, str]] | None = None
    fence, lang = "", ""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if block is None:
            m = re.match(r"^(`{3,}|~{3,})\s*([\w+-]*)", stripped)
            if m:
                fence, lang, block = m.group(1), m.group(2).lower(), []
            continue
        if stripped.startswith(fence) and stripped.strip(fence[0]) == "":
            if lang in SHELL_LANGS and not (lang == "" and _is_listing(block)):
                prompts = [(n, s) for n, s in block if s.lstrip().startswith("$ ")]
                if prompts or lang == "console":
                    block = [(n, s.lstrip()[2:]) for n, s in prompts]
                found += [(n, s) for n, s in _logical_lines(block) if s.strip()]
            block = None
            continue
        block.append((number, line))
    return found


LEADS = re.compile(r"^(?:python3?|\S*/python3?)\s+-m\s+runner\b|^torchrun\b|^make\b|^(?:\S*/)?time\s+-v\s+")


def inline_commands(text: str) -> list[tuple[int, str]]:
    """(line, command) of inline code spans that are commands, outside fenced blocks."""
    found, in_fence, fence = [], False, ""
    masked = []
    for line in text.splitlines():
        stripped = line.strip()
        m = re.match(r"^(`{3,}|~{3,})", stripped)
        if m and (not in_fence or stripped.startswith(fence)):
            in_fence, fence = (not in_fence), m.group(1)
            masked.append("")
            continue
        masked.append("" if in_fence else line)
    body = "\n".join(masked)
    for m in re.finditer(r"(?<!`)`([^`]+)`(?!`)", body):
        span = " ".join(m.group(1).split())
        if LEADS.match(span):
            found.append((body.count("\n", 0, m.start()) + 1, span))
    return found


MENTIONS = re.compile(r"\bpython3?\b.*\s-m\s+runner\b|\bpython3?\s+benchmarks/|\btorchrun\b|(^|[\s;&|])make(\s|$)")


def commands_in(path: Path) -> list[Command]:
    """The documented commands of one Markdown file that this test knows how to check."""
    text = path.read_text(encoding="utf-8")
    rel = path.relative_to(ROOT).as_posix()
    out: list[Command] = []
    for number, line in sorted(fenced_commands(text) + inline_commands(text), key=lambda x: x[0]):
        if not MENTIONS.search(line):
            continue  # a tree, an output line, another tool
        try:
            segments = split_shell(line)
        except DocCommandError:  # unbalanced quotes: the test case fails and says so
            out.append(Command(rel, number, line.strip()))
            continue
        for segment in segments:
            if classify(segment) is not None:
                out.append(Command(rel, number, " ".join(shlex.quote(t) for t in segment)))
    return out


def all_commands() -> list[Command]:
    cmds = [c for path in doc_files() for c in commands_in(path)]
    seen: dict[str, int] = {}
    for c in cmds:  # unique ids: a second command on one line gets #2
        seen[c.id] = seen.get(c.id, 0) + 1
        c.case_id = c.id if seen[c.id] == 1 else f"{c.id}#{seen[c.id]}"
    return cmds


# ------------------------------------------------------------------------------------------------ shell parsing

def _placeholders(line: str) -> str:
    """`<run dir>` -> PLACEHOLDER; optional syntax `[eval.*=...]` and `...` removed."""
    line = re.sub(r"<[^<>\n]+>", PLACEHOLDER, line)
    line = re.sub(r"\[[^\[\]]*\.\.\.[^\[\]]*\]", " ", line)
    return line


def split_shell(line: str) -> list[list[str]]:
    """Shell words of each command on a line (split at ; && || |), comments dropped."""
    lex = shlex.shlex(_placeholders(line), posix=True, punctuation_chars=";&|")
    lex.whitespace_split = True
    lex.commenters = "#"
    try:
        words = list(lex)
    except ValueError as e:  # an unbalanced quote
        raise DocCommandError(f"cannot split {line!r}: {e}") from None
    segments, current = [], []
    for w in words:
        if w and set(w) <= set(";&|"):
            segments.append(current)
            current = []
        elif w not in ("...", "…"):
            current.append(w)
    segments.append(current)
    return [strip_prefixes(s) for s in segments if s]


def strip_prefixes(words: list[str]) -> list[str]:
    """Drop `VAR=value` prefixes, `$ `, and wrappers such as `/usr/bin/time -v`."""
    words = list(words)
    while words:
        head = words[0]
        if head == "$":
            words.pop(0)
        elif re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", head):
            words.pop(0)
        elif head.rsplit("/", 1)[-1] in WRAPPERS:
            words.pop(0)
            while words and words[0].startswith("-"):
                words.pop(0)
        else:
            break
    return words


def classify(words: list[str]) -> tuple[str, str | None, list[str]] | None:
    """("runner", module, args), ("make", None, args), ("benchmark", script, args) or None (not ours)."""
    if not words:
        return None
    head = words[0].rsplit("/", 1)[-1]
    if head == "make":
        return "make", None, words[1:]
    if head == "torchrun":
        if "-m" not in words:
            return None
        i = words.index("-m")
        if i + 1 < len(words) and words[i + 1].split(".")[0] == "runner":
            return "runner", words[i + 1], words[i + 2:]
        return None
    if re.fullmatch(r"python3?(\.\d+)?|\$\(PY\)", head):
        if len(words) >= 3 and words[1] == "-m" and words[2].split(".")[0] == "runner":
            return "runner", words[2], words[3:]
        if len(words) >= 2 and words[1].startswith("benchmarks/"):
            return "benchmark", words[1], words[2:]
    return None


# ----------------------------------------------------------------------------------------------------- checking

def _fail(message: str) -> None:
    raise DocCommandError(message)


_COMPOSED: dict[tuple[str, ...], object] = {}
_CHECKED: dict[tuple[str, ...], str | None] = {}  # the runner's checks: None, or why it would stop


def _compose(overrides: list[str]):
    """conf/config.yaml composed with the overrides (hydra node included), as `python -m runner` would; cached,
    since many documented commands share their jobs (read-only use)."""
    key = tuple(overrides)
    if key not in _COMPOSED:
        try:
            with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
                _COMPOSED[key] = compose("config", overrides=list(overrides), return_hydra_config=True)
        except Exception as e:  # noqa: BLE001 - kept, so a cached failure fails again
            _COMPOSED[key] = e
    result = _COMPOSED[key]
    if isinstance(result, Exception):
        raise result
    return result


def _values(override) -> list[str]:
    """The values a sweep override takes (an Optuna interval: its two ends)."""
    if override.is_choice_sweep() or override.is_range_sweep():
        return list(override.sweep_string_iterator())
    if override.is_interval_sweep():
        v = override.value()
        return [str(v.start), str(v.end)]
    return [override.get_value_element_as_str()]


def _combinations(lists: list[list[str]]) -> list[tuple[str, ...]]:
    """Every combination when few, else a covering set (each value at least once) plus the all-last one."""
    total = 1
    for values in lists:
        total *= len(values)
    if total <= MAX_COMBINATIONS:
        return list(itertools.product(*lists))
    width = max(len(v) for v in lists)
    picks = [tuple(v[i % len(v)] for v in lists) for i in range(width)]
    return picks + [tuple(v[-1] for v in lists)]


def _semantic_checks(cfg) -> None:
    """The cross-key checks `python -m runner` runs on a composed config before building anything."""
    from runner.config.errors import ConfigError
    from runner.build import validate

    try:
        validate(cfg)
    except ConfigError as e:
        _fail(f"composes, but the runner stops: {e}")


def _is_group(key: str) -> bool:
    """Whether an override's key picks a config group option (model, hydra/launcher) rather than a value."""
    key = key.lstrip("+~").split("@")[0]
    return key.startswith("hydra/") or (CONF / key).is_dir()


def check_runner(args: list[str]) -> int:
    """`python -m runner ARGS`: compose every job of it and check each; returns the number of configs composed."""
    multirun, raw = False, []
    it = iter(args)
    for a in it:
        if a in ("-m", "--multirun"):
            multirun = True
        elif a in RUNNER_FLAGS_WITH_ARG:
            next(it, None)
        elif a in RUNNER_FLAGS:
            continue
        elif a.startswith("-"):
            _fail(f"{a}: not an option of python -m runner (Hydra's flags: -m, --help, --hydra-help, --cfg ...)")
        elif a == PLACEHOLDER:
            continue  # `<overrides>`
        elif PLACEHOLDER in a.partition("=")[2] and _is_group(a.partition("=")[0]):
            continue  # `model=<preset>`: a group choice left to the reader
        else:
            raw.append(a)
    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(raw)
    except Exception as e:  # noqa: BLE001 - the grammar's message names the override
        _fail(f"not a Hydra override: {str(e).splitlines()[0]}")
    sweeps = {o.get_key_element(): o for o in parsed if o.is_sweep_override()}
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    first = [f"{k}={_values(o)[0]}" for k, o in sweeps.items()]
    try:
        head = _compose(fixed + first)
    except Exception as e:  # noqa: BLE001
        _fail(f"does not compose: {type(e).__name__}: {e}")
    if sweeps and not multirun and str(head.hydra.mode) != "RunMode.MULTIRUN":
        _fail(f"sweeps {', '.join(sweeps)} without -m: python -m runner would stop (add -m)")
    # the sweeps an experiment (or hydra.sweeper.params on the command line) sets; the command line wins
    config_params = {}
    params = OmegaConf.select(head, "hydra.sweeper.params")
    if params and (multirun or str(head.hydra.mode) == "RunMode.MULTIRUN"):
        for key, value in OmegaConf.to_container(params, resolve=False).items():
            o = parser.parse_overrides([f"{key}={value}"])[0]
            config_params[o.get_key_element()] = o
    axes = {**config_params, **sweeps}
    fixed = [x for x in fixed if parser.parse_overrides([x])[0].get_key_element() not in axes]
    keys = list(axes)
    combos = _combinations([_values(axes[k]) for k in keys]) if keys else [()]
    semantic = not any(PLACEHOLDER in a for a in raw)
    for combo in combos:
        overrides = fixed + [f"{k}={v}" for k, v in zip(keys, combo)]
        try:
            cfg = _compose(overrides)
        except Exception as e:  # noqa: BLE001
            _fail(f"does not compose with {' '.join(overrides)}: {type(e).__name__}: {e}")
        if semantic:
            key = tuple(overrides)
            if key not in _CHECKED:
                try:
                    _semantic_checks(cfg)
                    _CHECKED[key] = None
                except DocCommandError as e:
                    _CHECKED[key] = str(e)
            if _CHECKED[key] is not None:
                _fail(f"{' '.join(overrides)}: {_CHECKED[key]}")
    return len(combos)


def check_finetune(args: list[str]) -> None:
    """`python -m runner.finetune <run dir> [eval.key=value ...]`, as runner.finetune reads it."""
    from runner.config.errors import ConfigError
    from runner.finetune import apply_overrides

    if args and args[0] in ("-h", "--help"):
        return
    if not args:
        return  # the module named, not called
    if args[0].startswith("-") or "=" in args[0]:
        _fail(f"{args[0]!r}: python -m runner.finetune takes the run directory first")
    try:
        apply_overrides(copy.deepcopy(_compose([])), [a for a in args[1:] if a != PLACEHOLDER])
    except ConfigError as e:
        _fail(f"python -m runner.finetune would stop: {e}")


class _Parsed(Exception):
    pass


def check_module(module: str, args: list[str]) -> None:
    """`python -m runner.<module> ARGS`: the module exists and its argparse parser accepts ARGS."""
    if importlib.util.find_spec(module) is None:
        _fail(f"no module {module}")
    if not args:
        return  # the module named, not called
    mod = importlib.import_module(module)
    main = getattr(mod, "main", None)
    # an alias (runner/compare.py) runs the main of the module the command lives in
    if main is None or "argparse" not in inspect.getsource(inspect.getmodule(main)):
        _fail(f"{module} has no argparse main() this test knows how to check; teach tests/unit/test_docs_commands.py")
    original = argparse.ArgumentParser.parse_args

    def parse_only(self, argv=None, namespace=None):
        original(self, argv, namespace)  # exits 2 on a bad argument, as on the command line
        raise _Parsed

    argparse.ArgumentParser.parse_args = parse_only
    saved_argv, sys.argv = sys.argv, [module, *args]  # for a main() that reads sys.argv
    try:  # a placeholder stands for a path: paths are not checked
        main(list(args)) if inspect.signature(main).parameters else main()
    except _Parsed:
        return
    except SystemExit as e:
        if e.code not in (0, None) or not ({"-h", "--help"} & set(args)):
            _fail(f"python -m {module} rejects {' '.join(args)!r} (exit {e.code})")
        return
    finally:
        argparse.ArgumentParser.parse_args = original
        sys.argv = saved_argv
    _fail(f"{module}.main() returned without parsing its arguments")


def makefile() -> tuple[set[str], dict[str, str]]:
    """The Makefile's targets and its variables (with their defaults)."""
    targets, variables = set(), {}
    for line in (ROOT / "Makefile").read_text().splitlines():
        if m := re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*[?:+]?=\s*(.*)$", line):
            variables[m.group(1)] = m.group(2).strip()
        elif (m := re.match(r"^([^\s:#=$][^:=]*?)\s*:(?!=)", line)) and not line.startswith("\t"):
            targets.update(t for t in m.group(1).split() if not t.startswith("."))
    return targets, variables


def check_make(args: list[str]) -> None:
    """`make [VAR=value ...] [target ...]`: the targets and variables exist; `make run` composes RUN_ARGS."""
    targets, variables = makefile()
    assigned, goals = {}, []
    for a in args:
        if m := re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", a, re.S):
            assigned[m.group(1)] = m.group(2)
        elif a.startswith("-"):
            continue
        else:
            goals.append(a)
    for name in assigned:
        if name not in variables:
            _fail(f"make {name}=...: the Makefile has no variable {name} (it has {', '.join(sorted(variables))})")
    for goal in goals or ["run"]:  # the first rule is the default goal
        if goal not in targets:
            _fail(f"make {goal}: no such target (the Makefile has {', '.join(sorted(targets))})")
    if "run" in (goals or ["run"]):
        run_args = assigned.get("RUN_ARGS", variables.get("RUN_ARGS", ""))
        check_runner(shlex.split(_placeholders(run_args)))


def check(command: str) -> None:
    """Check one documented command; raises DocCommandError with the reason."""
    for words in split_shell(command):
        kind = classify(words)
        if kind is None:
            continue
        what, target, args = kind
        if what == "make":
            check_make(args)
        elif what == "benchmark":
            if not (ROOT / target).is_file():
                _fail(f"{target} does not exist")
        elif target == "runner":
            check_runner(args)
        elif target == "runner.finetune":
            check_finetune(args)
        else:
            check_module(target, args)


# ---------------------------------------------------------------------------------------------------- the tests

COMMANDS = all_commands()


@pytest.mark.parametrize("command", COMMANDS, ids=[c.case_id for c in COMMANDS])
def test_documented_command(command: Command):
    try:
        check(command.text)
    except DocCommandError as e:
        pytest.fail(f"{command.id}: `{command.text}`: {e}", pytrace=False)


def test_the_docs_document_commands():
    """The extraction finds the README's tour and the docs' commands (an empty list would pass vacuously)."""
    files = {c.file for c in COMMANDS}
    assert "README.md" in files
    assert sum(c.file == "README.md" for c in COMMANDS) >= 8
    assert len(files) >= 4
    assert any("runner.compare" in c.text for c in COMMANDS)
    assert any(c.text.startswith("make") for c in COMMANDS)


@pytest.mark.parametrize("command", [
    "python -m runner model=nonexistent",
    "python -m runner model.hiden_size=3",
    "python -m runner optimizer.lr=abc",
    "python -m runner model=bert,electra",  # a sweep without -m
    "python -m runner -m model=bert,nonexistent",  # the last value of a sweep
    "python -m runner model=bert optimizer.lr=-1",  # composes, but the runner's checks stop it
    "python -m runner --no-such-flag",
    "OMP_NUM_THREADS=1 torchrun --nproc_per_node=2 -m runner data=nonexistent",
    "python -m runner.compare --wandb",  # its positional path is required
    "python -m runner.compare outputs/multirun/x --no-such-flag",
    "python -m runner.crossover outputs/multirun/x --outdir y",
    "python -m runner.finetune outputs/runs/x model.hidden_size=3",
    "python -m runner.finetune outputs/runs/x eval.no_such_key=1",
    "python -m runner.nonexistent --help",
    "make no-such-target",
    "make NO_SUCH_VAR=1 run",
    'make run RUN_ARGS="model=nonexistent"',
    "python benchmarks/no_such_benchmark.py",
])
def test_a_bad_command_fails(command):
    """The check can fail: bogus commands go through the same helper and are refused."""
    with pytest.raises(DocCommandError):
        check(command)


def test_extraction_handles_shell_syntax():
    text = "\n".join([
        "Run `python -m runner model=bert` or `make test`.",  # 1: two inline commands
        "```bash",  # 2
        "OMP_NUM_THREADS=1 python -m runner -m model=bert_mini,bert_small \\",  # 3
        "    trainer.max_steps=300   # a comment",  # 4
        "torchrun --nproc_per_node=2 -m runner trainer.strategy=fsdp && python -m runner.compare <sweep dir>",  # 5
        "/usr/bin/time -v make run",  # 6
        "echo not ours",  # 7
        "```",  # 8
        "```python",  # 9
        "import runner  # python -m runner model=nonexistent",  # 10
        "```",  # 11
        "```console",  # 12
        "$ python -m runner.finetune outputs/runs/<run> eval.seeds=2",  # 13
        "wrote wiki_topic to summary.json",  # 14
        "```",  # 15
        "```",  # 16: a directory tree, not commands
        "runner/reporting/compare.py   the comparison;  crossover.py",  # 17
        "                    python -m runner.crossover (snapshots)",  # 18
        "```",  # 19
    ])
    lines = sorted(fenced_commands(text) + inline_commands(text), key=lambda x: x[0])
    got = [(n, w) for n, line in lines for w in split_shell(line) if classify(w)]
    assert got == [
        (1, ["python", "-m", "runner", "model=bert"]),
        (1, ["make", "test"]),
        (3, ["python", "-m", "runner", "-m", "model=bert_mini,bert_small", "trainer.max_steps=300"]),
        (5, ["torchrun", "--nproc_per_node=2", "-m", "runner", "trainer.strategy=fsdp"]),
        (5, ["python", "-m", "runner.compare", PLACEHOLDER]),
        (6, ["make", "run"]),
        (13, ["python", "-m", "runner.finetune", "outputs/runs/" + PLACEHOLDER, "eval.seeds=2"]),
    ]


def test_a_sweep_composes_every_value():
    """An experiment's own sweep (hydra.sweeper.params) and a command-line sweep are both expanded."""
    assert check_runner(["-m", "model=bert_mini,bert_small", "optimizer.lr=3e-4,1e-3"]) == 4
    assert check_runner(["experiment=bert_improvements"]) >= 5


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(path: Path):
    """Every relative link and image of the docs points at a file that exists (the README's picture included)."""
    text = re.sub(r"(`{3,}).*?\1", "", path.read_text(encoding="utf-8"), flags=re.S)  # not inside code blocks
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        if not (path.parent / target.split("#")[0]).exists():
            broken.append(target)
    assert not broken, f"{path.relative_to(ROOT)}: broken links {broken}"
