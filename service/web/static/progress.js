// A job's progress and ETA, counted in epochs so the bar moves within a trial.

const TERMINAL = new Set(["complete", "pruned", "fail", "cancelled"]);

/** Trials the job will run: its budget, plus confirmation reruns of a compare job. */
export function plannedTrials(job) {
  const spec = job.spec;
  let n = spec.n_trials;
  if (spec.mode === "compare") n += (spec.confirm_seeds || 0) * Object.keys(job.resolved_space.optimizers || {}).length;
  return n;
}

/**
 * Fraction done: finished trials count whole, running ones by their epochs.
 * `trials` is a Map number -> {state, epochs}.
 */
export function progressOf(job, trials) {
  if (["completed", "failed", "cancelled"].includes(job.status)) return 1;
  const epochs = Math.max(1, job.spec.task.epochs);
  const planned = Math.max(1, plannedTrials(job), trials.size);
  let done = 0;
  for (const t of trials.values()) {
    done += TERMINAL.has(t.state) ? epochs : Math.min(epochs, t.epochs || 0);
  }
  return Math.min(1, done / (planned * epochs));
}

/** Seconds left at the pace so far (null until there is a pace). */
export function etaSeconds(job, fraction, now = Date.now()) {
  if (!job.started_at || fraction <= 0 || fraction >= 1) return null;
  const elapsed = (now - Date.parse(job.started_at)) / 1000;
  return (elapsed * (1 - fraction)) / fraction;
}
