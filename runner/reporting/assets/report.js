// comparison.html's script (runner/reporting/html_report.py inlines it): render the embedded figures, sort the
// table, switch the curves' x-axis, filter and toggle runs. Vanilla JS: the page opens offline.
(function () {
  const DATA = JSON.parse(document.getElementById('report-data').textContent);
  const CONFIG = {displaylogo: false, responsive: true};
  const curveDivs = [];
  let axis = DATA.default_axis;

  // numbers (data-sort) compare as numbers, text naturally; '-' (no value) stays last in both directions
  function sortBy(th) {
    const table = th.closest('table'), body = table.tBodies[0], col = th.cellIndex;
    const dir = th.dataset.dir === 'asc' ? 'desc' : 'asc';
    table.querySelectorAll('th').forEach(h => delete h.dataset.dir);
    th.dataset.dir = dir;
    const rows = Array.from(body.rows);
    rows.sort((a, b) => {
      const x = a.cells[col], y = b.cells[col];
      const ex = x.textContent === '-', ey = y.textContent === '-';
      if (ex || ey) return ex - ey;
      const nx = x.dataset.sort, ny = y.dataset.sort;
      let c;
      if (nx !== undefined && ny !== undefined) c = Number(nx) - Number(ny);
      else if (nx !== undefined || ny !== undefined) c = nx !== undefined ? -1 : 1;
      else c = x.textContent.localeCompare(y.textContent, undefined, {numeric: true});
      return dir === 'asc' ? c : -c;
    });
    rows.forEach(r => body.appendChild(r));
  }
  document.querySelectorAll('table.sortable th').forEach(th => th.addEventListener('click', () => sortBy(th)));

  function xs(trace, key) {
    if (key === 'step') return trace.meta.steps;
    const look = DATA.runs[trace.meta.run].axes[key];
    return trace.meta.steps.map(s => look && look[s] !== undefined ? look[s] : null);
  }
  function axisTitle(key) { return DATA.axes.find(a => a.key === key).title; }

  function setAxis(key) {
    axis = key;
    const logx = document.getElementById('logx').checked;
    curveDivs.forEach(div => {
      Plotly.restyle(div, {x: div.data.map(t => xs(t, key))});
      Plotly.relayout(div, {'xaxis.title.text': axisTitle(key), 'xaxis.type': logx ? 'log' : 'linear'});
    });
  }

  function drawBars() {
    const box = document.getElementById('bars');
    DATA.bars.forEach(fig => {
      const div = document.createElement('div');
      div.className = fig.wide ? 'plot bar-plot wide' : 'plot bar-plot';
      div.id = fig.id;
      box.appendChild(div);
      Plotly.newPlot(div, fig.data, fig.layout, CONFIG);
    });
    if (!DATA.bars.length) box.textContent = 'No run has probe, suite or downstream results.';
  }

  function drawCurves() {
    const box = document.getElementById('curves');
    const groups = {};
    DATA.curves.forEach(fig => {
      if (!groups[fig.group]) {
        const det = document.createElement('details');
        det.open = true;
        det.innerHTML = '<summary></summary><div class="grid"></div>';
        box.appendChild(det);
        groups[fig.group] = det;
      }
      const det = groups[fig.group];
      const div = document.createElement('div');
      div.className = 'plot curve-plot';
      div.dataset.metric = fig.metric;
      det.querySelector('.grid').appendChild(div);
      fig.data.forEach(t => { t.x = xs(t, axis); });
      fig.layout.xaxis.title.text = axisTitle(axis);
      Plotly.newPlot(div, fig.data, fig.layout, CONFIG);
      curveDivs.push(div);
    });
    Object.entries(groups).forEach(([g, det]) => {
      det.querySelector('summary').textContent = g + ' (' + det.querySelectorAll('.curve-plot').length + ')';
    });
    if (!DATA.curves.length) box.textContent = 'No run logged metrics (metrics.jsonl).';
  }

  function controls() {
    const sel = document.getElementById('xaxis');
    DATA.axes.forEach(a => {
      const o = document.createElement('option');
      o.value = a.key; o.textContent = a.title; o.selected = a.key === axis;
      sel.appendChild(o);
    });
    sel.addEventListener('change', () => setAxis(sel.value));
    document.getElementById('logx').addEventListener('change', () => setAxis(axis));
    document.getElementById('logy').addEventListener('change', e => curveDivs.forEach(div =>
      Plotly.relayout(div, {'yaxis.type': e.target.checked ? 'log' : 'linear'})));
    document.getElementById('filter').addEventListener('input', e => {
      const q = e.target.value.toLowerCase();
      curveDivs.forEach(div => { div.style.display = div.dataset.metric.toLowerCase().includes(q) ? '' : 'none'; });
    });
    const legend = document.getElementById('legend');
    DATA.runs.forEach((run, i) => {
      if (!run.plotted) return;  // a job that failed before logging has no line to show or hide
      const s = document.createElement('span');
      s.innerHTML = '<i></i>';
      s.querySelector('i').style.background = run.color;
      s.appendChild(document.createTextNode(run.label));
      s.title = run.path + ' (click to hide or show)';
      s.addEventListener('click', () => {
        const on = s.classList.toggle('off') === false;
        curveDivs.forEach(div => {
          const idx = div.data.map((t, j) => t.meta.run === i ? j : -1).filter(j => j >= 0);
          if (idx.length) Plotly.restyle(div, {visible: on}, idx);
        });
      });
      legend.appendChild(s);
    });
  }

  controls();
  drawBars();
  drawCurves();
})();
