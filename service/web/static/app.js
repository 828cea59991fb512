// Entry point: login, then a hash router between the jobs table, a job and the
// recommend panel.

import { api, auth } from "./api.js";
import { $ } from "./dom.js";
import { JobPage } from "./job.js";
import { JobsPage } from "./jobs.js";
import { prefillRecommend, setupRecommend } from "./recommend.js";

const VIEWS = ["login-view", "jobs-view", "job-view", "recommend-view"];
let current = null;
let jobsPage = null;

function show(view) {
  for (const v of VIEWS) $(v).hidden = v !== view;
  $("nav").hidden = view === "login-view";
}

async function route() {
  if (current) current.close();
  current = null;
  if (!auth.key) { show("login-view"); return; }
  const hash = location.hash || "#/";
  const job = hash.match(/^#\/jobs\/([0-9a-f-]{36})$/);
  try {
    if (job) {
      show("job-view");
      current = new JobPage(job[1]);
      await current.open();
      prefillRecommend(current.job.spec.task);
    } else if (hash === "#/recommend") {
      show("recommend-view");
    } else {
      show("jobs-view");
      jobsPage = jobsPage || new JobsPage();
      current = jobsPage;
      await current.open();
    }
  } catch (error) {
    if (error.status === 401) { logout(); return; }
    $(job ? "job-error" : "login-error").textContent = error.message;
  }
}

async function login(event) {
  event.preventDefault();
  const key = $("api-key").value.trim();
  $("login-error").textContent = "";
  try {
    // checks the key and sets the cookie that Optuna's dashboard (/optuna/...) reads
    await api("/web/session", { method: "POST", key });
    auth.key = key;
    $("api-key").value = "";
    route();
  } catch (error) {
    $("login-error").textContent = error.status === 401 ? "This key is invalid or revoked." : error.message;
  }
}

function logout() {
  auth.key = null;
  fetch("/web/session", { method: "DELETE" }).catch(() => {});
  route();
}

$("login-form").addEventListener("submit", login);
$("logout").addEventListener("click", logout);
window.addEventListener("hashchange", route);
setupRecommend();
route();
