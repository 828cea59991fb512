// The job page: progress and ETA, history, learning curves, best configuration,
// per-optimizer summary, importance, and a compare/sweep job's comparison plots.
// Loaded once from the API (paged), then kept current from the job's event stream.

import { api, allPages, followEvents } from "./api.js";
import {
  colorOf, drawComparison, drawCurves, drawHistory, drawImportance, drawSensitivity,
  MAX_TRIAL_TRACES,
} from "./charts.js";
import { $, el, fmt, duration, ageOf } from "./dom.js";
import { etaSeconds, progressOf, plannedTrials } from "./progress.js";

const CURVE_PAGE = 100;
const RENDER_EVERY_MS = 500;
const POLL_MS = 5000;
const FINISHED = new Set(["completed", "failed", "cancelled"]);

/** y of a stored curve point: the job's metric at that epoch. */
function pointValue(point, metric) {
  if (point.val_metric !== null && point.val_metric !== undefined) return point.val_metric;
  if (point.metrics && point.metrics[metric] !== undefined) return point.metrics[metric];
  return metric === "train_loss" ? point.train_loss : point.val_loss;
}

export class JobPage {
  constructor(jobId) {
    this.id = jobId;
    this.abort = new AbortController();
    this.trials = new Map(); // number -> {number, optimizer, state, value, epochs}
    this.curves = new Map(); // number -> {number, optimizer, points: [{epoch, y}]}
    this.timer = null;
    this.refreshing = null;
  }

  close() {
    this.abort.abort();
    clearTimeout(this.timer);
  }

  async open() {
    const signal = this.abort.signal;
    this.job = await api(`/v1/jobs/${this.id}`, { signal });
    this.startSeq = this.job.event_seq ?? null;
    this.metric = this.job.spec.task.metric;
    this.direction = this.job.spec.task.direction;
    this.color = colorOf(Object.keys(this.job.resolved_space.optimizers || {}));
    this.header();
    await Promise.all([this.loadTrials(signal), this.loadCurves(signal)]);
    this.render();
    this.loadExtras(signal);
    if (!FINISHED.has(this.job.status)) this.follow(signal);
  }

  header() {
    const job = this.job;
    $("job-title").textContent = job.name || job.id;
    $("job-status").textContent = job.status;
    $("job-status").className = `status ${job.status}`;
    $("job-meta").textContent =
      `${job.spec.mode} · ${job.spec.task.model.name} on ${job.spec.task.dataset.name} · ` +
      `${plannedTrials(job)} trials × ${job.spec.task.epochs} epochs · ${this.metric} (${this.direction}) · ` +
      `created ${ageOf(job.created_at)} ago`;
    $("job-optuna").href = `/optuna/${job.id}/dashboard`;
    $("job-error").textContent = job.error || "";
    const best = job.best;
    $("job-best").textContent = best
      ? JSON.stringify({ trial: best.trial, value: best.value, optimizer: best.optimizer,
        hyperparameters: best.hyperparameters, params: best.params }, null, 2)
      : "no completed trial yet";
  }

  async loadTrials(signal) {
    const rows = await allPages(`/v1/jobs/${this.id}/trials`, { signal });
    for (const t of rows) this.upsertTrial(t.number, t);
  }

  async loadCurves(signal) {
    await allPages(`/v1/jobs/${this.id}/curves?metric=${encodeURIComponent(this.metric)}`, {
      limit: CURVE_PAGE, signal,
      onPage: (items) => {
        for (const c of items) {
          const points = c.points.map((p) => ({ epoch: p.epoch, y: pointValue(p, this.metric) }));
          this.curves.set(c.number, { number: c.number, optimizer: c.optimizer, points });
          this.upsertTrial(c.number, { optimizer: c.optimizer, state: c.state, value: c.value, epochs: points.length });
        }
        this.schedule();
      },
    });
  }

  loadExtras(signal) {
    api(`/v1/jobs/${this.id}/importance`, { signal })
      .then((imp) => drawImportance("plot-importance", imp))
      .catch((e) => { if (!signal.aborted) $("plot-importance").textContent = `Importance: ${e.message}`; });
    const mode = this.job.spec.mode;
    $("compare-section").hidden = mode !== "compare";
    $("sensitivity-section").hidden = mode !== "sweep";
    if (mode === "compare") {
      api(`/v1/jobs/${this.id}/comparison`, { signal })
        .then((c) => { drawComparison("plot-comparison", c, this.color); this.comparisonTable(c); })
        .catch((e) => { if (!signal.aborted) $("plot-comparison").textContent = e.message; });
    }
    if (mode === "sweep") {
      api(`/v1/jobs/${this.id}/sensitivity`, { signal })
        .then((s) => drawSensitivity("plot-sensitivity", s, this.color))
        .catch((e) => { if (!signal.aborted) $("plot-sensitivity").textContent = e.message; });
    }
  }

  upsertTrial(number, fields) {
    const t = this.trials.get(number) || { number, epochs: 0 };
    for (const [k, v] of Object.entries(fields)) if (v !== undefined) t[k] = v;
    this.trials.set(number, t);
    return t;
  }

  async follow(signal) {
    try {
      // the job was read before its trials and curves: every later event is still applied
      const after = this.startSeq;
      await followEvents(this.id, (type, e) => this.onEvent(type, e), { signal, after });
    } catch (error) {
      if (signal.aborted) return;
      $("job-error").textContent = `no live updates (${error.message}): refreshing every ${POLL_MS / 1000}s`;
      this.poll(signal);
    }
  }

  /** Without an event stream (a proxy that refuses it): re-read the job now and then. */
  async poll(signal) {
    while (!signal.aborted && !FINISHED.has(this.job.status)) {
      await new Promise((r) => setTimeout(r, POLL_MS));
      try {
        await Promise.all([this.refreshJob(), this.loadTrials(signal), this.loadCurves(signal)]);
      } catch {
        // a failed round is retried at the next one
      }
      this.schedule();
    }
    if (!signal.aborted) this.loadExtras(signal);
  }

  onEvent(type, e) {
    if (type === "trial.started") {
      if (this.job.status === "queued") this.refreshJob(); // status and start time
      this.upsertTrial(e.trial, { optimizer: e.optimizer, state: "running", epochs: 0, value: null });
      this.curves.set(e.trial, { number: e.trial, optimizer: e.optimizer, points: [] });
    } else if (type === "trial.epoch") {
      const curve = this.curves.get(e.trial) || { number: e.trial, optimizer: this.trials.get(e.trial)?.optimizer, points: [] };
      const y = e.value ?? (e.metrics || {})[this.metric] ?? null;
      curve.points = curve.points.filter((p) => p.epoch !== e.epoch).concat([{ epoch: e.epoch, y }]);
      this.curves.set(e.trial, curve);
      this.upsertTrial(e.trial, { epochs: curve.points.length });
    } else if (type === "trial.finished") {
      this.upsertTrial(e.trial, { state: e.state, value: e.value });
      this.refreshJob();
    } else if (type === "job.started" || type === "job.updated" || type === "job.finished") {
      this.refreshJob().then(() => { if (type === "job.finished") this.loadExtras(this.abort.signal); });
    }
    this.schedule();
  }

  /** Re-read the job (best, counts, status), one request at a time. */
  refreshJob() {
    if (!this.refreshing) {
      this.refreshing = api(`/v1/jobs/${this.id}`, { signal: this.abort.signal })
        .then((job) => { this.job = job; this.header(); this.schedule(); })
        .catch(() => {})
        .finally(() => { this.refreshing = null; });
    }
    return this.refreshing;
  }

  schedule() {
    if (this.timer === null) {
      // a redraw of many traces takes a while: space them out on big jobs
      const delay = RENDER_EVERY_MS + 5 * this.curves.size;
      this.timer = setTimeout(() => { this.timer = null; this.render(); }, delay);
    }
  }

  render() {
    if (this.abort.signal.aborted) return;
    const fraction = progressOf(this.job, this.trials);
    $("job-progress").value = fraction;
    const finished = [...this.trials.values()].filter((t) => ["complete", "pruned", "fail", "cancelled"].includes(t.state)).length;
    $("job-progress-text").textContent = `${(100 * fraction).toFixed(1)}% · ${finished}/${plannedTrials(this.job)} trials`;
    const eta = FINISHED.has(this.job.status) ? null : etaSeconds(this.job, fraction);
    $("job-eta").textContent = eta === null ? "" : `· ETA ${duration(eta)}`;
    const trials = [...this.trials.values()];
    drawHistory("plot-history", trials, { metric: this.metric, direction: this.direction }, this.color);
    const curves = [...this.curves.values()].sort((a, b) => a.number - b.number);
    const perTrial = drawCurves("plot-curves", curves, this.metric, this.color);
    $("curves-note").textContent = perTrial ? "" :
      `${curves.length} trials: over ${MAX_TRIAL_TRACES}, each optimizer's trials are drawn as one WebGL trace.`;
    this.summaryTable(trials);
  }

  summaryTable(trials) {
    const rows = new Map();
    for (const t of trials) {
      const key = t.optimizer || "?";
      if (!rows.has(key)) rows.set(key, { n: 0, complete: 0, pruned: 0, fail: 0, values: [] });
      const r = rows.get(key);
      r.n += 1;
      if (t.state in r) r[t.state] += 1;
      if (t.state === "complete" && t.value !== null && t.value !== undefined) r.values.push(t.value);
    }
    const pick = this.direction === "maximize" ? Math.max : Math.min;
    const body = $("job-summary").tBodies[0];
    body.replaceChildren(...[...rows].sort().map(([name, r]) => {
      const sorted = [...r.values].sort((a, b) => a - b);
      const med = sorted.length ? sorted[Math.floor((sorted.length - 1) / 2)] : null;
      return el("tr", {},
        el("td", {}, el("span", { class: "swatch", style: `background:${this.color(name)}` }), name),
        el("td", {}, r.n), el("td", {}, r.complete), el("td", {}, r.pruned), el("td", {}, r.fail),
        el("td", {}, r.values.length ? fmt(pick(...r.values)) : "–"), el("td", {}, fmt(med)));
    }));
  }

  comparisonTable(c) {
    const body = $("comparison-table").tBodies[0];
    body.replaceChildren(...c.optimizers.map((o) => el("tr", {},
      el("td", {}, o.optimizer), el("td", {}, o.finished), el("td", {}, o.failed),
      el("td", {}, fmt(o.best_value)),
      el("td", {}, o.confirmations.length ? `${fmt(o.confirmation_mean)} ± ${fmt(o.confirmation_std)}` : "–"),
      el("td", {}, o.time_to_target.trials === null ? "not reached"
        : `${o.time_to_target.trials} trials, ${duration(o.time_to_target.seconds)}`))));
  }
}
