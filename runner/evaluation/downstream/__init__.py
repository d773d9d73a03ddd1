"""Downstream evaluation: fine-tune a pretrained encoder on a labelled task (wiki_topic, GLUE) and report test
accuracy and macro-F1 as mean +/- std over seeds, against random-init and bag-of-words baselines."""
from runner.evaluation.downstream.classifier import (Classifier, accuracy, bow_logreg, encode, finetune, macro_f1, random_like,
                                        summarize)
from runner.evaluation.downstream.tasks import GLUE, Example, Task, glue_task, load_task, wiki_topic

__all__ = ["GLUE", "Classifier", "Example", "Task", "accuracy", "bow_logreg", "encode", "finetune", "glue_task",
           "load_task", "macro_f1", "random_like", "summarize", "wiki_topic"]
