// The recommend panel: POST /v1/recommendations with a task, show the ranked list.

import { api } from "./api.js";
import { $, el, fmt } from "./dom.js";

export function prefillRecommend(task) {
  $("recommend-task").value = JSON.stringify({ model: task.model, dataset: task.dataset });
}

export function setupRecommend() {
  $("recommend-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("recommend-error").textContent = "";
    $("recommend-note").textContent = "";
    $("recommend-list").replaceChildren();
    let task;
    try {
      task = JSON.parse($("recommend-task").value);
    } catch (error) {
      $("recommend-error").textContent = `task: not JSON (${error.message})`;
      return;
    }
    try {
      const k = Number($("recommend-k").value) || 5;
      const answer = await api("/v1/recommendations", { method: "POST", body: { task, method: "nearest", k } });
      const items = answer.items || [];
      $("recommend-note").textContent = `learnt from ${answer.n_past_tasks} past task(s), method ${answer.method}`;
      if (!items.length) $("recommend-error").textContent = "no finished job to learn from yet";
      $("recommend-list").replaceChildren(...items.map(item));
    } catch (error) {
      $("recommend-error").textContent = error.message;
    }
  });
}

function item(r) {
  const support = r.support || [];
  return el("li", {},
    el("strong", {}, r.optimizer), ` · expected score ${fmt(r.expected_score, 3)}`,
    r.similarity !== undefined ? ` · similarity ${fmt(r.similarity, 3)}` : "",
    ` · backed by ${support.length} trial${support.length === 1 ? "" : "s"}`,
    el("pre", {}, JSON.stringify({ hyperparameters: r.hyperparameters, schedule: r.schedule ?? null }, null, 1)));
}
