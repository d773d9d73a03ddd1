"""Input formats (data.format): RoBERTa's Table 2 (Liu et al. 2019, section 4.2), ALBERT's sentence-order pairs
(Lan et al. 2020, section 4.1) and the contiguous stream; their fit with the objective; short real runs.
This file holds the tests that train or start a process; the others: tests/unit/test_formats.py."""
from __future__ import annotations

import pytest

from tests.unit.test_formats import train


@pytest.mark.slow
@pytest.mark.parametrize("overrides,fmt,metric", [
    (["objective=mlm", "data.format=doc_sentences"], "doc_sentences", "mlm_loss"),
    (["model=bert", "data.format=sentence_pair"], "sentence_pair", "nsp_accuracy"),
])
def test_two_steps_in_each_format(tmp_path, overrides, fmt, metric):
    s = train(tmp_path, *overrides)
    assert s["steps"] == 2 and metric in s["final_val"]
    ex = s["data_stats"]["examples"]
    assert ex["format"] == fmt
    assert 0.0 < ex["train"]["padding_fraction"] < 1.0 and ex["train"]["examples"] > 0
    assert "validation" in ex
