// The jobs table: status, progress, best value and age, newest first, a page at a time.

import { api } from "./api.js";
import { $, el, fmt, ageOf } from "./dom.js";
import { plannedTrials } from "./progress.js";

const PAGE = 25;

export class JobsPage {
  constructor() {
    this.offset = 0;
    this.timer = null;
    $("jobs-prev").onclick = () => { this.offset = Math.max(0, this.offset - PAGE); this.load(); };
    $("jobs-next").onclick = () => { this.offset += PAGE; this.load(); };
  }

  close() { clearTimeout(this.timer); this.closed = true; }

  async open() { this.closed = false; await this.load(); }

  async load() {
    clearTimeout(this.timer);
    const page = await api(`/v1/jobs?limit=${PAGE}&offset=${this.offset}`);
    if (this.closed) return;
    $("jobs-table").tBodies[0].replaceChildren(...page.items.map(row));
    $("jobs-page").textContent = page.total
      ? `${this.offset + 1}–${this.offset + page.items.length} of ${page.total}` : "no jobs yet";
    $("jobs-prev").disabled = this.offset === 0;
    $("jobs-next").disabled = this.offset + PAGE >= page.total;
    // running jobs move: refresh while this page is shown
    if (page.items.some((j) => j.status === "queued" || j.status === "running")) {
      this.timer = setTimeout(() => this.load().catch(() => {}), 3000);
    }
  }
}

function row(job) {
  const planned = Math.max(1, plannedTrials(job));
  const done = ["completed", "failed", "cancelled"].includes(job.status) ? planned : job.n_finished;
  return el("tr", { "data-job": job.id },
    el("td", {}, el("a", { href: `#/jobs/${job.id}` }, job.name || job.id.slice(0, 8))),
    el("td", {}, job.spec.mode),
    el("td", {}, el("span", { class: `status ${job.status}` }, job.status)),
    el("td", {}, el("progress", { max: planned, value: Math.min(done, planned) }), ` ${job.n_finished}/${planned}`),
    el("td", {}, job.best ? fmt(job.best.value) : "–"),
    el("td", {}, ageOf(job.created_at)));
}
