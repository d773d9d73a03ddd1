"""runner.reporting.compare --html: the self-contained comparison.html, from fake run dirs (no training); a headless Chromium
loads it where Debian's chromium is installed.
This file holds the tests that train or start a process; the others: tests/unit/test_html_report.py."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from runner.reporting.compare import compare
from runner.reporting.html_report import HTML_FILE
from tests.unit.test_html_report import report_json
from tests.unit import test_html_report as unit

sweep = unit.sweep  # the unit tier's fixture, shared


# Sort by the validation loss both ways, switch the curves to steps on a log axis, hide the first run.
READER = """
setTimeout(() => {
  const names = () => Array.from(document.querySelectorAll('#comparison tbody tr'), r => r.cells[0].textContent);
  const th = Array.from(document.querySelectorAll('#comparison th')).find(h => h.textContent.startsWith('val'));
  th.click(); const asc = names(); th.click(); const desc = names();
  const div = document.querySelector('[data-metric="val/mlm_loss"]');
  const xs = () => div.data.filter(t => !t.fill).map(t => Array.from(t.x));
  const flops = xs();
  const sel = document.getElementById('xaxis');
  sel.value = 'step'; sel.dispatchEvent(new Event('change'));
  document.getElementById('logx').click();
  document.querySelector('#legend span').click();
  const hidden = div.data.filter(t => t.meta.run === 0).map(t => t.visible);
  document.querySelector('#legend span').click();
  const shown = div.data.filter(t => t.meta.run === 0).map(t => t.visible);
  const pre = document.createElement('pre');
  pre.id = 'seen';
  pre.textContent = JSON.stringify({asc, desc, flops, steps: xs(), title: div.layout.xaxis.title.text,
                                    xtype: div.layout.xaxis.type, hidden, shown});
  document.body.appendChild(pre);
}, 200);
"""


def chromium(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Headless Chromium on a throwaway profile, scripts given time to run."""
    cmd = [shutil.which("chromium"), "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (apt install chromium)")
def test_chromium_renders_the_table_and_every_plot(sweep, tmp_path):
    from PIL import Image

    rows = compare([sweep], html=True)
    url = (sweep / HTML_FILE).resolve().as_uri()
    png = tmp_path / "shot.png"
    shot = chromium(f"--screenshot={png}", "--window-size=1400,2000", url, tmp_path=tmp_path)
    assert png.is_file(), shot.stderr[-2000:]
    pixels = Image.open(png).convert("RGB")
    assert pixels.size == (1400, 2000)
    colours = pixels.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # text, lines, bars: not a blank page
    white = sum(n for n, c in colours if min(c) > 245)
    assert 1400 * 2000 - white > 40_000, "almost nothing drawn"
    assert sum(n for n, c in colours if c == (31, 119, 180)) > 100  # the first run's line colour (PALETTE[0])

    # the same page with a script that clicks like a reader and writes what it saw into the DOM
    clicked = tmp_path / "clicked.html"
    clicked.write_text((sweep / HTML_FILE).read_text().replace("</body>", f"<script>{READER}</script></body>"))
    dom = chromium("--dump-dom", clicked.as_uri(), tmp_path=tmp_path).stdout
    seen = json.loads(re.search(r'<pre id="seen">(.*?)</pre>', dom).group(1).replace("&quot;", '"'))
    assert seen["asc"] == ["bert-mlm-wiki", "bert-mlm-wiki", "electra-rtd-wiki", "3_roberta_mlm", "4_txl_clm"]
    assert seen["desc"] == ["electra-rtd-wiki", "bert-mlm-wiki", "bert-mlm-wiki", "3_roberta_mlm", "4_txl_clm"]
    assert seen["flops"] == [[0, 1.5e12, 2.5e12], [0, 1.5e12, 2.5e12], [0, 2.5e12]]  # the default x-axis
    assert seen["steps"] == [[0, 15, 25], [0, 15, 25], [0, 25]] and seen["title"] == "step"
    assert seen["xtype"] == "log" and seen["hidden"] == [False] and seen["shown"] == [True]
    data = report_json(dom)
    plots = len(data["curves"]) + len(data["bars"])
    assert dom.count('class="main-svg"') >= plots and dom.count('class="scatterlayer') == plots
    assert dom.count('class="plot curve-plot') == len(data["curves"])
    chunk = dom.split('data-metric="val/mlm_loss"')[1].split("data-metric=")[0]
    assert len(re.findall(r'class="trace scatter', chunk)) == 3  # one line per run that logged it
    chunk = dom.split('data-metric="probe/overall"')[1].split("data-metric=")[0]
    assert len(re.findall(r'class="trace scatter', chunk)) == 4  # two runs: a line and a band each
    assert dom.count('class="trace bars"') == 4 + 3  # probes: 3 kinds + generator; downstream: model + baselines
    assert len(re.findall(r'<tr class="status-', dom)) == len(rows)
    assert 'id="legend"' in dom and dom.count("<option") == len(data["axes"])
