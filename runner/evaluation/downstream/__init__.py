"""Downstream evaluation: fine-tune a pretrained encoder on a labelled task (wiki_topic, wiki_acceptability, GLUE)
over seeds and a learning-rate grid, beside a linear probe, the model's own score and the random-init and
bag-of-words baselines (protocol.py); GLUE as its papers report it (glue.py)."""
from runner.evaluation.downstream.bag_of_words import bow_logreg
from runner.evaluation.downstream.classifier import Classifier, encode, random_like
from runner.evaluation.downstream.glue import GLUE, glue_task
from runner.evaluation.downstream.metrics import accuracy, macro_f1, summarize
from runner.evaluation.downstream.protocol import finetune
from runner.evaluation.downstream.registry import load_task
from runner.evaluation.downstream.tasks import Example, Task, wiki_topic

__all__ = ["GLUE", "Classifier", "Example", "Task", "accuracy", "bow_logreg", "encode", "finetune", "glue_task",
           "load_task", "macro_f1", "random_like", "summarize", "wiki_topic"]
