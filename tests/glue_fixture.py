"""A tiny directory laid out as GLUE's download (CoLA/, SST-2/, MRPC/, STS-B/, QQP/, MNLI/, QNLI/, RTE/, WNLI/),
each task's tsv files in GLUE's own columns, written here (no GLUE text is shipped). Each task has a signal a
small model can learn from a few examples: a cue word decides the label (STS-B: the score)."""
from __future__ import annotations

import random
from pathlib import Path

WORDS = "the a cat dog sat ran on under mat rug house tree big small red blue old new one two".split()


def _filler(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _sentence(rng: random.Random, cue: str) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randrange(4, 8))]
    words.insert(rng.randrange(len(words) + 1), cue)
    return " ".join(words)


def write_tsv(path: Path, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")


def write_glue(root: Path, n_train: int = 48, n_dev: int = 24, seed: int = 0) -> Path:
    """GLUE's nine task folders under root, n_train training and n_dev validation rows each; returns root."""
    rng = random.Random(seed)
    root = Path(root)

    def rows(n: int, make) -> list[list[str]]:
        return [make(i, i % 2) for i in range(n)]

    for split, n in (("train", n_train), ("dev", n_dev)):
        cue = ("bad", "good")
        # CoLA: no header; source, label, original label, sentence
        write_tsv(root / "CoLA" / f"{split}.tsv", rows(n, lambda i, y: ["src", str(y), "" if y else "*",
                                                                    _sentence(rng, cue[y])]))
        write_tsv(root / "SST-2" / f"{split}.tsv", [["sentence", "label"]] +
                  rows(n, lambda i, y: [_sentence(rng, cue[y]), str(y)]))
        write_tsv(root / "MRPC" / f"{split}.tsv", [["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]] +
                  rows(n, lambda i, y: [str(y), str(i), str(i + 1), _sentence(rng, "x"), _sentence(rng, cue[y])]))
        head = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2",
                "score"]
        write_tsv(root / "STS-B" / f"{split}.tsv", [head] + [
            [str(i), "g", "f", "2012", str(i), "s", "s", _sentence(rng, "x"),
             _sentence(rng, ("bad", "fine", "good")[k]), f"{2.5 * k + rng.uniform(-0.3, 0.3):.3f}"]
            for i, k in ((i, i % 3) for i in range(n))])
        write_tsv(root / "QQP" / f"{split}.tsv", [["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]] +
                  rows(n, lambda i, y: [str(i), str(2 * i), str(2 * i + 1), _sentence(rng, "x"),
                                        _sentence(rng, cue[y]), str(y)]))
        for name, hdr in (("QNLI", ["index", "question", "sentence", "label"]),
                          ("RTE", ["index", "sentence1", "sentence2", "label"]),
                          ("WNLI", ["index", "sentence1", "sentence2", "label"])):
            labels = ("not_entailment", "entailment") if name != "WNLI" else ("0", "1")
            ent = ("entailment", "not_entailment") if name != "WNLI" else ("1", "0")
            write_tsv(root / name / f"{split}.tsv", [hdr] + rows(n, lambda i, y, e=ent: [
                str(i), _sentence(rng, "x"), _sentence(rng, cue[y]), e[1 - y]]))
    mnli_head = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
                 "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label"]
    three = ("entailment", "neutral", "contradiction")
    cues = ("yes", "maybe", "no")
    for split, n in (("train", n_train), ("dev_matched", n_dev), ("dev_mismatched", n_dev)):
        write_tsv(root / "MNLI" / f"{split}.tsv", [mnli_head] + [
            [str(i), str(i), f"{i}e", "fiction", "(", "(", "(", "(", _sentence(rng, "x"), _sentence(rng, cues[i % 3]),
             three[i % 3], three[i % 3]] for i in range(n)])
    return root
