"""Zero-shot probes: minimal pairs from held-out text (pairs.py), scored by each objective's own head
(Objective.sentence_scores), reported as accuracy with a 95% binomial interval (report.py)."""
