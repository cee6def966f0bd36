// The interview list: newest first, filtered by role and status, paged with the API's cursor,
// and kept current by the live event stream (a row's status changes where it stands).

import { call, followEvents } from "./api.js";
import { announce, h, humanise, problemBox, shortId, showProblem, when } from "./dom.js";

const PAGE = 50;
const STATUSES = ["processing", "scored", "failed"];
const LIVE_WORDS = {
  connecting: "Live updates: connecting…",
  live: "Live updates: on",
  offline: "Live updates: reconnecting…",
};
// Several events in a burst (one per answer) cause one reload of the first page.
const RELOAD_DELAY_MS = 300;

export function listView(view, session, signal) {
  const state = { rows: new Map(), cursor: null, reloadTimer: null };
  const role = h("select", { id: "filter-role" }, h("option", { value: "" }, "Every role"),
    (session.roles || []).map((r) => h("option", { value: r.name }, r.name)));
  const status = h("select", { id: "filter-status" }, h("option", { value: "" }, "Every status"),
    STATUSES.map((name) => h("option", { value: name }, humanise(name))));
  const live = h("p", { id: "live-state", class: "live", role: "status" }, LIVE_WORDS.connecting);
  const rows = h("tbody", { id: "interview-rows" });
  const empty = h("p", { id: "no-interviews", hidden: true }, "No interviews match.");
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Show more interviews");
  const problem = problemBox("list-problem");

  view.replaceChildren(
    h("h1", { id: "view-title", tabindex: "-1" }, "Interviews"),
    h("div", { class: "toolbar" },
      h("form", { class: "filters", "aria-label": "Filter the interviews", onsubmit: (e) => e.preventDefault() },
        h("p", {}, h("label", { for: "filter-role" }, "Role"), role),
        h("p", {}, h("label", { for: "filter-status" }, "Status"), status)),
      live),
    problem,
    h("table", { class: "interviews" },
      h("caption", { class: "visually-hidden" }, "Interviews, newest first"),
      h("thead", {}, h("tr", {}, ["Interview", "Role", "Status", "Answers", "Created", "Scored"]
        .map((name) => h("th", { scope: "col" }, name)))),
      rows),
    empty, more);

  function row(item) {
    const tr = h("tr", { dataset: { id: item.interview_id } },
      h("th", { scope: "row" }, h("a", {
        href: `#/interviews/${encodeURIComponent(item.interview_id)}`,
        "aria-label": `Interview ${shortId(item.interview_id)}, ${item.role}`,
      }, h("code", {}, shortId(item.interview_id)))),
      h("td", {}, item.role),
      h("td", {}, h("span", { class: `status status-${item.status}` }, humanise(item.status))),
      h("td", { class: "num" }, item.answer_count ?? ""),
      h("td", {}, when(item.created_at)),
      h("td", { class: "scored-at" }, when(item.scored_at)));
    state.rows.set(item.interview_id, tr);
    return tr;
  }

  async function load(append) {
    const query = new URLSearchParams({ limit: String(PAGE) });
    if (role.value) query.set("role", role.value);
    if (status.value) query.set("status", status.value);
    if (append && state.cursor) query.set("cursor", state.cursor);
    try {
      const page = await call(`/v1/interviews?${query}`, { signal });
      showProblem(problem, "");
      if (!append) {
        state.rows.clear();
        rows.replaceChildren();
      }
      rows.append(...page.items.filter((item) => !state.rows.has(item.interview_id)).map(row));
      state.cursor = page.next_cursor;
      more.hidden = !state.cursor;
      empty.hidden = state.rows.size > 0;
    } catch (error) {
      if (error.name !== "AbortError") showProblem(problem, error.message);
    }
  }

  // An event about a row on screen changes that row; any other reloads the first page.
  function onEvent(type, data) {
    const tr = state.rows.get(data.interview_id);
    const next = { "interview.scored": "scored", "interview.failed": "failed" }[type];
    if (tr && next) {
      const badge = tr.querySelector(".status");
      badge.className = `status status-${next}`;
      badge.textContent = humanise(next);
      tr.querySelector(".scored-at").textContent = next === "scored" ? when(data.created_at) : "";
      tr.classList.add("changed");
      announce(`Interview ${shortId(data.interview_id)} is ${next}.`);
      return;
    }
    if (tr) return;
    clearTimeout(state.reloadTimer);
    state.reloadTimer = setTimeout(() => load(false), RELOAD_DELAY_MS);
  }

  role.addEventListener("change", () => load(false));
  status.addEventListener("change", () => load(false));
  more.addEventListener("click", () => load(true));
  signal.addEventListener("abort", () => clearTimeout(state.reloadTimer));
  let linked = false;
  followEvents(onEvent, (linkState) => {
    live.textContent = LIVE_WORDS[linkState];
    // Whatever happened while the stream was not there is caught up once it is.
    if (linkState === "live" && !linked) load(false);
    linked = linkState === "live";
  }, signal);
  return load(false);
}
