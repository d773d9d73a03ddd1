"""bertlab: BERT-family pretraining experiments from Hydra config groups (python -m runner).

The package is built in layers, each a folder; a module imports only from its own layer and the layers below it
(tests/unit/test_layers.py fails on any upward import, function-local ones included):"""

LAYERS = (
    "config",      # schemas, checks of values, the resume diff, discovery, errors, the console
    "data",        # corpora, tokenizers, token caches, example formats, batches, packing
    "models",      # encoder families, their configs, heads, FLOPs, the family registry
    "store",       # the run store: a run directory's layout, checkpoints, a finished run opened, run names
    "objectives",  # pretraining objectives: heads and losses, each composable with any encoder that serves it
    "hf",          # the transformers bridge: each family's adapter, export and import
    "engine",      # the loop, its state and checkpoints, feeds, runtime, parallelism, precision, the lock
    "evaluation",  # downstream fine-tuning, probes, the crossover, the checks only evaluation can make
    "reporting",   # the logger and its backends, the summary, comparison tables and reports, the watch
    "sweeps",      # Hydra multiruns: the sweep callback, the value a sweeper optimises
)
# above them all: __main__.py, run.py (the sequence of a run), build.py (assembly, registration, validation) and the
# python -m runner.X entry points (finetune.py; compare, watch, tensorboard, convert and crossover are one-line aliases
# of the commands in their layers)
