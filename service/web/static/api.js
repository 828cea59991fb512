// The API as the dashboard uses it: the key from localStorage, errors as messages.

const KEY = "optserve.apiKey";

export const auth = {
  get key() { return localStorage.getItem(KEY); },
  set key(value) { value ? localStorage.setItem(KEY, value) : localStorage.removeItem(KEY); },
};

export class ApiError extends Error {
  constructor(status, body) {
    super(errorMessage(status, body));
    this.status = status;
    this.body = body;
  }
}

/** The first error of optserve's envelope ({"detail": [{"loc", "msg"}]}) as one line. */
export function errorMessage(status, body) {
  const detail = body && body.detail;
  if (Array.isArray(detail) && detail.length) {
    const first = detail[0];
    const where = Array.isArray(first.loc) ? first.loc.join(".") : "";
    return `${status}: ${where ? where + ": " : ""}${first.msg}`;
  }
  if (typeof detail === "string") return `${status}: ${detail}`;
  return `HTTP ${status}`;
}

function headers(extra = {}) {
  const h = { Accept: "application/json", ...extra };
  if (auth.key) h.Authorization = `Bearer ${auth.key}`;
  return h;
}

export async function api(path, { method = "GET", body, signal, key } = {}) {
  const h = headers(body === undefined ? {} : { "Content-Type": "application/json" });
  if (key) h.Authorization = `Bearer ${key}`;
  const response = await fetch(path, {
    method, signal, headers: h, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** Every item of a paged listing, `limit` at a time (the API caps a page at 500). */
export async function allPages(path, { limit = 500, signal, onPage } = {}) {
  const items = [];
  for (let offset = 0; ; offset += limit) {
    const sep = path.includes("?") ? "&" : "?";
    const page = await api(`${path}${sep}limit=${limit}&offset=${offset}`, { signal });
    items.push(...page.items);
    if (onPage) onPage(page.items, page.total);
    if (page.items.length < limit || items.length >= page.total) return items;
  }
}

/**
 * Follow a job's events (Server-Sent Events) with fetch, since EventSource cannot send
 * an Authorization header. Reconnects with Last-Event-ID until `job.finished` arrives or
 * `signal` aborts. `after`: the seq already reflected by what the page loaded (the job's
 * `event_seq`, read before its trials and curves), so a big job's history is not replayed.
 */
export async function followEvents(jobId, onEvent, { signal, retryMs = 2000, after = null } = {}) {
  let lastId = after;
  let finished = false;
  while (!finished && !signal.aborted) {
    try {
      const h = headers({ Accept: "text/event-stream" });
      if (lastId !== null) h["Last-Event-ID"] = String(lastId);
      const response = await fetch(`/v1/jobs/${jobId}/events`, { headers: h, signal });
      if (response.status >= 400 && response.status < 500) {
        throw new ApiError(response.status, await response.json().catch(() => null));
      }
      if (!response.ok || !response.body) throw new Error(`events: HTTP ${response.status}`);
      for await (const event of parseSse(response.body)) {
        if (event.id !== null) lastId = event.id;
        if (!event.data) continue;
        const data = JSON.parse(event.data);
        onEvent(event.type || data.type, data);
        if ((event.type || data.type) === "job.finished") finished = true;
      }
    } catch (error) {
      if (signal.aborted || error instanceof ApiError) throw error;
    }
    if (!finished && !signal.aborted) await new Promise((r) => setTimeout(r, retryMs));
  }
}

/** Yield {id, type, data} for each event of a text/event-stream body (the WHATWG rules). */
export async function* parseSse(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = { id: null, type: null, data: [] };
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let nl;
      while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + (buffer.startsWith("\r\n", nl) ? 2 : 1));
        if (line === "") {
          if (event.data.length) yield { id: event.id, type: event.type, data: event.data.join("\n") };
          event = { id: event.id, type: null, data: [] };
          continue;
        }
        if (line.startsWith(":")) continue; // keep-alive comment
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "data") event.data.push(value);
        else if (field === "event") event.type = value;
        else if (field === "id") event.id = Number(value);
      }
    }
  } finally {
    reader.releaseLock();
  }
}
