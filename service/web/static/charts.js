// Plotly figures of a job. Plotly is loaded by index.html from the plotly package.

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
  "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
// Up to this many trials the curves plot has one trace per trial; past it, each optimizer's
// trials share one WebGL trace (gaps between trials), so 2,000 trials stay responsive.
export const MAX_TRIAL_TRACES = 300;
const CONFIG = { responsive: true, displaylogo: false };

export function colorOf(optimizers) {
  const names = [...optimizers].sort();
  return (name) => PALETTE[Math.max(0, names.indexOf(name)) % PALETTE.length];
}

function layout(title, xTitle, yTitle, extra = {}) {
  return {
    title: { text: title, font: { size: 15 } }, margin: { l: 60, r: 20, t: 40, b: 45 },
    xaxis: { title: { text: xTitle } }, yaxis: { title: { text: yTitle } },
    legend: { orientation: "h", y: -0.2 }, hovermode: "closest", ...extra,
  };
}

/** Whole-number ticks on x (trial numbers, epochs): never "1.5". */
function integerX(lay, xs) {
  const span = xs.length ? Math.max(...xs) - Math.min(...xs) : 0;
  lay.xaxis.tickformat = "d";
  lay.xaxis.dtick = Math.max(1, Math.ceil(span / 10));
  return lay;
}

/** A titled plot with a message instead of empty axes. */
function emptyPlot(id, title, message) {
  const hidden = { visible: false };
  react(id, [], {
    ...layout(title, "", ""), xaxis: hidden, yaxis: hidden,
    annotations: [{
      text: message, showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5,
      font: { color: "#667085" },
    }],
  });
}

function react(id, data, lay) {
  if (!window.Plotly) return; // Plotly still loading: the next render draws
  window.Plotly.react(id, data, lay, CONFIG);
}

/** Value of each finished trial by number, and the best so far. */
export function drawHistory(id, trials, { metric, direction }, color) {
  const done = trials.filter((t) => t.value !== null && t.value !== undefined)
    .sort((a, b) => a.number - b.number);
  if (!done.length) {
    emptyPlot(id, "Optimization history", "no finished trial yet");
    return;
  }
  const byOptimizer = new Map();
  for (const t of done) {
    const key = t.optimizer || "?";
    if (!byOptimizer.has(key)) byOptimizer.set(key, []);
    byOptimizer.get(key).push(t);
  }
  const data = [...byOptimizer].map(([name, ts]) => ({
    type: "scattergl", mode: "markers", name, x: ts.map((t) => t.number), y: ts.map((t) => t.value),
    marker: { color: color(name), size: 6 }, text: ts.map((t) => `trial ${t.number} (${t.state})`),
  }));
  const better = direction === "maximize" ? Math.max : Math.min;
  let best = null;
  const bestY = done.map((t) => (best = best === null ? t.value : better(best, t.value)));
  data.push({
    type: "scatter", mode: "lines", name: "best so far", line: { shape: "hv", color: "#222" },
    x: done.map((t) => t.number), y: bestY,
  });
  react(id, data, integerX(layout("Optimization history", "trial", metric), done.map((t) => t.number)));
}

function median(values) {
  const v = values.filter((x) => x !== null && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

/** Each optimizer's median curve: per epoch, the median over its trials that reached it. */
export function medianCurves(curves) {
  const byOptimizer = new Map();
  for (const c of curves) {
    const key = c.optimizer || "?";
    if (!byOptimizer.has(key)) byOptimizer.set(key, new Map());
    const epochs = byOptimizer.get(key);
    for (const p of c.points) {
      if (!epochs.has(p.epoch)) epochs.set(p.epoch, []);
      epochs.get(p.epoch).push(p.y);
    }
  }
  return [...byOptimizer].map(([optimizer, epochs]) => {
    const xs = [...epochs.keys()].sort((a, b) => a - b);
    return { optimizer, x: xs, y: xs.map((e) => median(epochs.get(e))) };
  });
}

/**
 * Learning curves: one line per trial coloured by optimizer (trace meta
 * {kind: "trial", trial}), plus each optimizer's median curve (meta {kind: "median"}).
 * `curves` is [{number, optimizer, points: [{epoch, y}]}].
 */
export function drawCurves(id, curves, metric, color) {
  if (!curves.some((c) => c.points.length)) {
    emptyPlot(id, "Learning curves", "no epoch finished yet");
    return true;
  }
  const data = [];
  const perTrial = curves.length <= MAX_TRIAL_TRACES;
  if (perTrial) {
    for (const c of curves) {
      data.push({
        type: "scattergl", mode: c.points.length > 1 ? "lines" : "markers",
        name: `trial ${c.number}`, legendgroup: c.optimizer,
        showlegend: false, meta: { kind: "trial", trial: c.number },
        x: c.points.map((p) => p.epoch), y: c.points.map((p) => p.y),
        line: { color: color(c.optimizer), width: 1.5 }, marker: { color: color(c.optimizer), size: 4 },
        opacity: 0.5,
        hovertemplate: `trial ${c.number} (${c.optimizer})<br>epoch %{x}<br>%{y}<extra></extra>`,
      });
    }
  } else {
    const merged = new Map();
    for (const c of curves) {
      if (!merged.has(c.optimizer)) merged.set(c.optimizer, { x: [], y: [], n: 0 });
      const m = merged.get(c.optimizer);
      for (const p of c.points) { m.x.push(p.epoch); m.y.push(p.y); }
      m.x.push(null); m.y.push(null); m.n += 1;
    }
    for (const [optimizer, m] of merged) {
      data.push({
        type: "scattergl", mode: "lines", name: `${optimizer} (${m.n} trials)`, showlegend: false,
        meta: { kind: "trials", optimizer, n: m.n }, x: m.x, y: m.y, connectgaps: false,
        line: { color: color(optimizer), width: 1 }, opacity: 0.25, hoverinfo: "skip",
      });
    }
  }
  for (const m of medianCurves(curves)) {
    data.push({
      type: "scatter", mode: m.x.length > 1 ? "lines" : "lines+markers",
      name: `${m.optimizer} median`, meta: { kind: "median" },
      x: m.x, y: m.y, line: { color: color(m.optimizer), width: 3 },
    });
  }
  const epochs = curves.flatMap((c) => (c.points.length ? [c.points[c.points.length - 1].epoch] : []));
  react(id, data, integerX(layout("Learning curves", "epoch", metric), [1, ...epochs]));
  return perTrial;
}

export function drawImportance(id, importance) {
  const entries = Object.entries(importance.importances || {}).sort((a, b) => a[1] - b[1]);
  if (!entries.length) {
    emptyPlot(id, "Hyperparameter importance", `needs more completed trials (${importance.n_trials ?? 0} so far)`);
    return;
  }
  react(id, [{
    type: "bar", orientation: "h", x: entries.map((e) => e[1]), y: entries.map((e) => e[0]),
    marker: { color: "#1f77b4" },
  }], layout(`Hyperparameter importance (${importance.method}, ${importance.n_trials} trials)`,
    "importance", "", { margin: { l: 160, r: 20, t: 40, b: 45 } }));
}

/** A compare job: each optimizer's expected best value against the trial budget. */
export function drawComparison(id, comparison, color) {
  const data = comparison.optimizers.map((o) => ({
    type: "scatter", mode: "lines+markers", name: o.optimizer, line: { color: color(o.optimizer) },
    x: o.expected_best.map((e) => e.k), y: o.expected_best.map((e) => e.mean),
    error_y: {
      type: "data", symmetric: false, visible: true,
      array: o.expected_best.map((e) => (e.high !== null && e.mean !== null ? e.high - e.mean : 0)),
      arrayminus: o.expected_best.map((e) => (e.low !== null && e.mean !== null ? e.mean - e.low : 0)),
    },
  }));
  const lay = layout(
    `Expected best ${comparison.metric} by tuning budget (${comparison.budget_per_optimizer} trials each)`,
    "trials of tuning", comparison.metric,
  );
  react(id, data, integerX(lay, comparison.optimizers.flatMap((o) => o.expected_best.map((e) => e.k))));
}

/** A sweep job: final metric against learning rate, per optimizer, seeds as points. */
export function drawSensitivity(id, sensitivity, color) {
  const data = [];
  for (const o of sensitivity.optimizers) {
    data.push({
      type: "scatter", mode: "lines+markers", name: o.optimizer, line: { color: color(o.optimizer) },
      x: o.points.map((p) => p.lr), y: o.points.map((p) => p.mean),
    });
    data.push({
      type: "scatter", mode: "markers", name: `${o.optimizer} seeds`, showlegend: false,
      marker: { color: color(o.optimizer), size: 5, opacity: 0.5 },
      x: o.points.flatMap((p) => p.values.map(() => p.lr)), y: o.points.flatMap((p) => p.values),
    });
  }
  react(id, data, layout(`${sensitivity.metric} against learning rate`, "learning rate",
    sensitivity.metric, { xaxis: { type: "log", title: { text: "learning rate" } } }));
}
