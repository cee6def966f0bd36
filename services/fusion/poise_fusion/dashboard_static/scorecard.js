// A scorecard: each competency's score as a bar over its framework's bands, how it was made,
// the evidence behind it (quotes and episodes play the answer from their moment), the
// reviewer's override; beside it the answers themselves (answer.js).

import { ApiError, call, followEvents } from "./api.js";
import { answerPanel, behaviourName } from "./answer.js";
import {
  add, announce, h, humanise, number, problemBox, put, s, sentence, shortId, showProblem, span, when,
} from "./dom.js";

const BAND_WORDS = { insufficient_evidence: "Insufficient evidence" };

const bandWord = (band) => BAND_WORDS[band] || humanise(band);
const featureWords = (feature) => humanise(String(feature).split(".").pop());

export async function scorecardView(view, interviewId, session, signal) {
  const status = h("p", { role: "status" }, "Loading the scorecard…");
  view.replaceChildren(
    h("p", { class: "crumbs" }, h("a", { href: "#/" }, "← All interviews")),
    h("h1", { id: "view-title", tabindex: "-1" }, "Interview ", h("code", {}, shortId(interviewId))),
    status);
  let response;
  try {
    response = await call(`/v1/interviews/${encodeURIComponent(interviewId)}/scorecard`, { signal, raw: true });
  } catch (error) {
    if (error.name === "AbortError") return;
    status.textContent = {
      not_found: "There is no such interview.",
      422: "This interview could not be scored.",
    }[error.code] || error.message;
    return;
  }
  const body = await response.json();
  if (response.status === 202) {
    status.textContent = "This interview is still being scored. The scorecard will appear here when it is ready.";
    // Live: load again once the interview is scored or fails (this stream ends then, or with the view).
    const waiting = new AbortController();
    signal.addEventListener("abort", () => waiting.abort());
    followEvents((type, data) => {
      if (data.interview_id === interviewId && (type === "interview.scored" || type === "interview.failed")) {
        waiting.abort();
        announce(type === "interview.scored" ? "The scorecard is ready." : "The interview could not be scored.");
        scorecardView(view, interviewId, session, signal);
      }
    }, () => {}, waiting.signal);
    return;
  }
  status.remove();
  render(view, body, session);
}

function render(view, card, session) {
  const answers = answerPanel(card);
  const bands = (card.framework && card.framework.bands) || null;
  add(view,
    facts(card),
    h("p", { class: "recommendation" },
      "This scorecard is a recommendation to a person who reviews it, never a decision. Face and voice ",
      "measurements describe observable behaviour on camera, not feelings or personality."),
    warnings(card),
    h("div", { class: "scorecard" },
      h("section", { class: "competencies", "aria-labelledby": "competencies-heading" },
        h("h2", { id: "competencies-heading" }, "Competencies"),
        bands ? bandLegend(bands) : null,
        (card.competencies || []).map((c) => competency(card, c, bands, session, answers))),
      h("section", { class: "answers", "aria-labelledby": "answers-heading" },
        h("h2", { id: "answers-heading" }, "Answers"),
        answers.element)));
  if ((card.answers || []).length) answers.show(card.answers[0].question_id);
}

function facts(card) {
  const rows = [
    ["Role", card.role],
    ["Status", humanise(card.status)],
    ["Model version", card.model_version],
    ["Policy profile", card.policy],
    ["Framework", card.framework ? `${card.framework.name} ${card.framework.version}` : "—"],
    ["Reviewed", card.reviewed ? "Yes: a reviewer overrode a score" : "No override yet"],
    ["Consent", card.consent
      ? `Given ${when(card.consent.given_at)} (notice ${card.consent.notice_version})` : "Not recorded"],
  ];
  return h("div", { class: "facts-box" },
    h("dl", { class: "facts" }, rows.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value || "—")])),
    card.notice ? notice(card.notice) : null);
}

function notice(given) {
  return h("details", { class: "notice" }, h("summary", {}, "Notice given to the candidate"),
    h("dl", {}, Object.entries(given).map(([key, value]) => [
      h("dt", {}, humanise(key)),
      h("dd", {}, Array.isArray(value) ? value.join(", ")
        : typeof value === "object" && value ? JSON.stringify(value) : String(value)),
    ])));
}

function warnings(card) {
  if (!(card.warnings || []).length) return null;
  return h("section", { class: "warnings", "aria-labelledby": "warnings-heading" },
    h("h2", { id: "warnings-heading" }, "Warnings"),
    h("ul", {}, card.warnings.map((w) => h("li", {}, sentence(w)))));
}

function bandLegend(bands) {
  let from = 0;
  return h("p", { class: "legend" }, "Bands: ", bands.map((band, i) => {
    const words = `${bandWord(band.name)} ${from}–${Math.min(band.below, 100)}`;
    from = band.below;
    return h("span", { class: `chip band-${i}` }, words);
  }));
}

// The score as a bar over the bands; the model's score, and the reviewer's where it differs.
function scoreBar(competency, bands) {
  const model = competency.score;
  const final = competency.final_score ?? model;
  const parts = [];
  let from = 0;
  (bands || []).forEach((band, i) => {
    const to = Math.min(band.below, 100);
    parts.push(s("rect", { class: `band-${i}`, x: from, y: 0, width: Math.max(0, to - from), height: 16 }));
    from = to;
  });
  if (final !== null && final !== undefined) {
    parts.push(s("rect", { class: "fill", x: 0, y: 4, width: final, height: 8 }));
  }
  if (competency.override && model !== null && model !== undefined) {
    parts.push(s("rect", { class: "model-mark", x: Math.max(0, model - 0.4), y: 0, width: 0.8, height: 16 }));
  }
  const label = final === null || final === undefined
    ? "No score: insufficient evidence"
    : `Score ${number(final)} of 100, band ${bandWord(bandOf(final, bands) || competency.band)}` +
      (competency.override ? `; the model's score was ${number(model)}` : "");
  return s("svg",
    { class: "bar", viewBox: "0 0 100 16", preserveAspectRatio: "none", role: "img", "aria-label": label }, parts);
}

function bandOf(score, bands) {
  const band = (bands || []).find((b) => score < b.below);
  return band ? band.name : null;
}

function competency(card, c, bands, session, answers) {
  const id = `competency-${c.name}`;
  const box = h("article", { class: "competency", id, "aria-labelledby": `${id}-title` });
  const fill = () => {
    const final = c.final_score ?? c.score;
    put(box,
      h("header", {},
        h("h3", { id: `${id}-title` }, c.label || humanise(c.name)),
        h("p", { class: "score" },
          final === null || final === undefined ? "No score" : h("strong", {}, number(final)),
          final === null || final === undefined ? "" : " / 100 · ",
          h("span", { class: "band-name" }, bandWord(c.override ? bandOf(final, bands) || c.band : c.band)))),
      scoreBar(c, bands),
      c.reason ? h("p", { class: "reason" }, sentence(c.reason)) : null,
      c.override ? h("p", { class: "override" },
        h("strong", {}, "Reviewer's score "), `${number(c.override.score)} (the model's: ${number(c.score)}). `,
        "Reason: ", h("q", {}, c.override.reason), ` — key ${c.override.reviewer}, ${when(c.override.at)}.`) : null,
      contributions(c),
      evidence(c, card, answers),
      session.may_review && card.status === "scored" ? overrideForm(card, c, (stored) => {
        c.override = { score: stored.score, reason: stored.reason, reviewer: stored.reviewer, at: stored.created_at };
        c.final_score = stored.score;
        fill();
        announce(`Override saved: ${c.label || c.name} is now ${number(stored.score)}.`);
        box.querySelector("h3").focus();
      }) : null);
    box.querySelector("h3").tabIndex = -1;
  };
  fill();
  return box;
}

function contributions(c) {
  const rows = c.contributions || [];
  if (!rows.length) return null;
  return h("details", { class: "contributions" },
    h("summary", {}, `How the score was made (${rows.length} measurements)`),
    h("table", {},
      h("caption", {}, "Each measurement's points; they add up to the score."),
      h("thead", {}, h("tr", {}, ["Measurement", "Behaviour", "Source", "Value", "Normalised", "Weight", "Points"]
        .map((name) => h("th", { scope: "col" }, name)))),
      h("tbody", {}, rows.map((r) => h("tr", {},
        h("th", { scope: "row" }, featureWords(r.feature)), h("td", {}, r.behaviour), h("td", {}, r.modality || "—"),
        h("td", { class: "num" }, number(r.value, 2)), h("td", { class: "num" }, number(r.normalised, 2)),
        h("td", { class: "num" }, number(r.weight, 2)), h("td", { class: "num" }, number(r.points, 2)))))));
}

function evidence(c, card, answers) {
  const items = c.evidence || [];
  if (!items.length) return null;
  const answerNumber = (questionId) => (card.answers || []).findIndex((a) => a.question_id === questionId) + 1;
  return h("div", { class: "evidence" },
    h("h4", {}, "Evidence"),
    h("ul", {}, items.map((e) => {
      const where = `answer ${answerNumber(e.question_id)}`;
      if (e.kind === "quote") {
        return h("li", { class: "quote" },
          h("button", { type: "button", class: "moment", onclick: () => answers.play(e.question_id, e.start_s),
            "aria-label": `Play ${where} from ${span(e.start_s, e.end_s)}: ${e.text}` },
          h("span", { class: "time" }, span(e.start_s, e.end_s)), " ", h("q", {}, e.text)),
          h("span", { class: "meta" }, ` ${featureWords(e.feature)}, ${where}`));
      }
      if (e.kind === "episode") {
        return h("li", { class: "episode" },
          h("button", { type: "button", class: "moment", onclick: () => answers.play(e.question_id, e.start_s) },
            h("span", { class: "time" }, span(e.start_s, e.end_s)), ` ${behaviourName(e.signal)}`),
          h("span", { class: "meta" }, ` ${featureWords(e.feature)}, ${where}`));
      }
      return h("li", { class: "signal" },
        `${featureWords(e.signal || e.feature)}: ${number(e.value, 2)} over ${where}`);
    })));
}

function overrideForm(card, c, saved) {
  const id = `override-${c.name}`;
  const problem = problemBox(`${id}-problem`);
  const score = h("input", { id: `${id}-score`, type: "number", min: 0, max: 100, step: "any", required: true,
    value: c.final_score ?? c.score ?? "" });
  const reason = h("textarea", { id: `${id}-reason`, rows: 3, maxlength: 2000, required: true });
  const button = h("button", { type: "submit" }, "Save the override");
  const form = h("form", { class: "override-form", "aria-describedby": `${id}-help` },
    h("p", { id: `${id}-help`, class: "muted" },
      "The model's score stays beside yours; the latest override applies. The reason is kept with it."),
    h("p", {}, h("label", { for: score.id }, "Your score (0–100)"), score),
    h("p", {}, h("label", { for: reason.id }, "Reason"), reason),
    problem, button);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showProblem(problem, "");
    button.disabled = true;
    try {
      const stored = await call(`/v1/interviews/${encodeURIComponent(card.interview_id)}/overrides`, {
        method: "POST", body: { competency: c.name, score: Number(score.value), reason: reason.value },
      });
      saved(stored);
    } catch (error) {
      showProblem(problem, error instanceof ApiError ? error.message : String(error));
      button.disabled = false;
    }
  });
  return h("details", { class: "override-box" }, h("summary", {}, "Override this score"), form);
}
