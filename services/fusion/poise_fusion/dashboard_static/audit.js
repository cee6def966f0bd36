// The bias audit (admin keys): rates and impact ratios by sex, race/ethnicity and their
// intersections over the tenant's scored interviews of one role, as GET /v1/audit computes them.

import { call } from "./api.js";
import { h, humanise, number, percent, problemBox, showProblem } from "./dom.js";

const DIMENSIONS = { sex: "sex", race_ethnicity: "race/ethnicity", intersectional: "sex and race/ethnicity together" };

export function auditView(view, session) {
  if (!session.is_admin) {
    view.replaceChildren(h("h1", { id: "view-title", tabindex: "-1" }, "Bias audit"),
      h("p", {}, "The bias audit needs an API key with the admin scope."));
    return;
  }
  const roles = session.roles || [];
  const role = h("select", { id: "audit-role", required: true },
    roles.map((r) => h("option", { value: r.name }, r.name)));
  const competency = h("select", { id: "audit-competency" });
  const mode = h("select", { id: "audit-mode" },
    h("option", { value: "scoring_rate" }, "Scoring rate (above the median)"),
    h("option", { value: "selection_rate" }, "Selection rate (at or above a threshold)"));
  const threshold = h("input",
    { id: "audit-threshold", type: "number", min: 0, max: 100, step: "any", disabled: true });
  const run = h("button", { type: "submit" }, "Run the audit");
  const problem = problemBox("audit-problem");
  const report = h("div", { id: "audit-report", "aria-live": "polite" });

  const fillCompetencies = () => {
    const chosen = roles.find((r) => r.name === role.value);
    competency.replaceChildren(h("option", { value: "" }, "Overall (mean of the scored competencies)"),
      (chosen ? chosen.competencies : []).map((c) => h("option", { value: c.name }, c.label)));
  };
  role.addEventListener("change", fillCompetencies);
  mode.addEventListener("change", () => {
    threshold.disabled = mode.value !== "selection_rate";
    threshold.required = !threshold.disabled;
  });
  fillCompetencies();

  const query = (format) => {
    const params = new URLSearchParams({ role: role.value, mode: mode.value, format });
    if (competency.value) params.set("competency", competency.value);
    if (!threshold.disabled && threshold.value !== "") params.set("threshold", threshold.value);
    return `/v1/audit?${params}`;
  };

  const form = h("form", { class: "audit-form" },
    h("p", {}, h("label", { for: role.id }, "Role"), role),
    h("p", {}, h("label", { for: competency.id }, "Score audited"), competency),
    h("p", {}, h("label", { for: mode.id }, "Rate"), mode),
    h("p", {}, h("label", { for: threshold.id }, "Passing score (selection rate)"), threshold),
    run);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showProblem(problem, "");
    run.disabled = true;
    try {
      const result = await call(query("json"));
      report.replaceChildren(...reportOf(result, query, problem).flat());
    } catch (error) {
      report.replaceChildren();
      showProblem(problem, error.message);
    } finally {
      run.disabled = false;
    }
  });

  view.replaceChildren(
    h("h1", { id: "view-title", tabindex: "-1" }, "Bias audit"),
    h("p", {}, "In the style of NYC Local Law 144: each category's rate, and its impact ratio to the highest ",
      "category's rate. Ratios below 0.8 are flagged (the four-fifths rule). Categories are what candidates ",
      "reported about themselves; they are never used in scoring."),
    form, problem, report);
}

function reportOf(result, query, problem) {
  const facts = [
    ["Audit date", result.audit_date], ["Data source", result.data_source], ["Role", result.role],
    ["Score audited", humanise(result.competency)], ["Rate", humanise(result.mode)],
    ["Interviews in the sample", result.sample_size], ["Scored interviews left out (no score for it)", result.unscored],
    ["Median score", number(result.median, 2)],
    ["Passing score", result.threshold === null ? "—" : number(result.threshold, 2)],
    ["Categories under this share are left out of ratios", percent(result.min_share, 1)],
  ];
  return [
    h("h2", { id: "report-heading" }, "Report"),
    h("dl", { class: "facts" }, facts.map(([term, value]) => [h("dt", {}, term), h("dd", {}, String(value))])),
    h("h3", {}, "Flags"),
    (result.flags || []).length
      ? h("ul", { class: "flags" }, result.flags.map((f) => h("li", {}, f.message)))
      : h("p", {}, "No impact ratio below the four-fifths line."),
    Object.entries(result.dimensions || {}).map(([name, dimension]) => dimensionTable(name, dimension)),
    h("p", { class: "downloads" },
      download("Download the report (HTML)", query("html"), "bias-audit.html", problem),
      download("Download the report (Markdown)", query("markdown"), "bias-audit.md", problem)),
  ];
}

function dimensionTable(name, dimension) {
  const words = DIMENSIONS[name] || humanise(name).toLowerCase();
  return h("section", { "aria-label": `By ${words}` },
    h("h3", {}, `By ${words}`),
    h("p", {}, `Unknown or not said: ${dimension.unknown}.`),
    h("table", {},
      h("thead", {}, h("tr", {}, ["Category", "Count", "Share", "Passed", "Rate", "Impact ratio", "Note"]
        .map((col) => h("th", { scope: "col" }, col)))),
      h("tbody", {}, dimension.categories.map((c) => h("tr", { class: c.four_fifths ? "flagged" : "" },
        h("th", { scope: "row" }, c.category), h("td", { class: "num" }, c.count),
        h("td", { class: "num" }, percent(c.share, 1)),
        h("td", { class: "num" }, c.passed), h("td", { class: "num" }, c.rate === null ? "—" : number(c.rate, 3)),
        h("td", { class: "num" }, c.impact_ratio === null ? "—" : number(c.impact_ratio, 3)),
        h("td", {}, c.excluded ? `Left out: ${c.exclusion_reason}` : c.four_fifths ? "Below four-fifths" : ""))))));
}

// The server's rendering of the same report, fetched with the key and saved as a file.
function download(label, url, filename, problem) {
  return h("button", { type: "button", class: "secondary", onclick: async (event) => {
    const button = event.currentTarget;
    button.disabled = true;
    try {
      const response = await call(url, { raw: true });
      const link = h("a", { href: URL.createObjectURL(await response.blob()), download: filename });
      link.click();
      setTimeout(() => URL.revokeObjectURL(link.href), 1000);
    } catch (error) {
      showProblem(problem, error.message);
    } finally {
      button.disabled = false;
    }
  } }, label);
}

