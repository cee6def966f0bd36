// One answer at a time: its video (from the gateway, through a media link), a timeline of
// speech, behaviour episodes and quotes, its signals over time, and its transcript. Every
// moment listed is a button that plays the video from there.

import { ApiError, mediaUrl } from "./api.js";
import { linePlot, movePlayheads, timeline } from "./charts.js";
import { announce, clock, h, humanise, number, percent, span } from "./dom.js";

// How each behaviour is named on screen: what was observed, never a feeling.
const BEHAVIOURS = {
  smile: "Smile",
  brow_raise: "Brow raise",
  lip_press: "Lip press",
  gaze_away: "Looking away",
  long_pause: "Long pause",
};
// A link expires after a while; a player that fails later asks for a new one, but not in a loop.
const RELINK_AFTER_MS = 10000;

export const behaviourName = (name) => BEHAVIOURS[name] || humanise(name);

function seriesSpecs(answer) {
  const signals = answer.signals || {};
  const vision = signals.vision || {};
  const audio = signals.audio || {};
  const series = answer.series || {};
  const rangeOf = (values, floor, ceiling, pad) => {
    const measured = (values || []).filter((v) => v !== null && v !== undefined);
    if (!measured.length) return [floor, ceiling];
    return [Math.min(floor, Math.floor(Math.min(...measured) - pad)),
      Math.max(ceiling, Math.ceil(Math.max(...measured) + pad))];
  };
  const [pitchMin, pitchMax] = rangeOf(series.pitch_hz, 150, 250, 10);
  const [loudMin, loudMax] = rangeOf(series.loudness_db, -40, -10, 3);
  const [, rateMax] = rangeOf(series.speech_rate_wpm, 0, 200, 10);
  return [
    { key: "eye_contact", title: "Eye contact", unit: "share of each second", min: 0, max: 1, format: (v) => percent(v),
      whole: `${percent(vision.eye_contact_ratio)} of the answer` },
    { key: "speech_rate_wpm", title: "Speech rate", unit: "words per minute of speech, 5 s window", min: 0,
      max: rateMax, format: (v) => `${number(v, 0)} wpm`,
      whole: `${number(audio.speech_rate_wpm, 0)} wpm over the answer` },
    { key: "pause", title: "Pauses", unit: "share of each second silent between phrases", min: 0, max: 1,
      format: (v) => percent(v), whole: `${percent(audio.pause_ratio)} of the speaking time` },
    { key: "pitch_hz", title: "Pitch", unit: "hertz", min: pitchMin, max: pitchMax, format: (v) => `${number(v, 0)} Hz`,
      whole: `mean ${number(audio.pitch_mean_hz, 0)} Hz, varying ${number(audio.pitch_variation_st, 1)} semitones` },
    { key: "loudness_db", title: "Loudness", unit: "dB below full scale", min: loudMin, max: loudMax,
      format: (v) => `${number(v, 0)} dB`, whole: `mean ${number(audio.loudness_db, 0)} dB` },
  ];
}

export function answerPanel(card) {
  const answers = card.answers || [];
  const state = { answer: null, lastRelink: 0 };
  const video = h("video", { controls: true, preload: "metadata", playsinline: true, class: "player" });
  const mediaState = h("p", { class: "media-state", role: "status" });
  const heading = h("h3", { id: "answer-title", tabindex: "-1" });
  const question = h("p", { class: "question" });
  const body = h("div", { class: "answer-body" });
  const chooser = h("select", { id: "answer-choice" },
    answers.map((a, i) => h("option", { value: a.question_id }, `Answer ${i + 1} (${a.question_id})`)));
  chooser.addEventListener("change", () => show(chooser.value));

  const element = h("div", { class: "answer" },
    answers.length > 1
      ? h("p", { class: "chooser" }, h("label", { for: "answer-choice" }, "Answer shown "), chooser) : null,
    heading, question, video, mediaState, body);

  function seek(seconds, autoplay) {
    const go = () => {
      video.currentTime = seconds;
      if (autoplay) video.play().catch(() => {}); // a browser may refuse autoplay; the controls still work
    };
    if (video.readyState >= 1) go();
    else video.addEventListener("loadedmetadata", go, { once: true });
  }

  async function load(answer) {
    mediaState.textContent = "Loading the video…";
    try {
      video.src = await mediaUrl(card.interview_id, answer.question_id);
      mediaState.textContent = "";
    } catch (error) {
      video.removeAttribute("src");
      mediaState.textContent = error instanceof ApiError && error.code === "media_gone"
        ? "The video of this answer is no longer kept (retention or erasure); its measurements remain."
        : `The video cannot be played: ${error.message}`;
    }
  }

  // An expired link: ask for a new one and carry on from the same moment.
  video.addEventListener("error", async () => {
    if (!state.answer || Date.now() - state.lastRelink < RELINK_AFTER_MS) return;
    state.lastRelink = Date.now();
    const at = video.currentTime;
    const playing = !video.paused;
    await load(state.answer);
    seek(at, playing);
  });
  video.addEventListener("timeupdate", () => {
    if (state.answer) movePlayheads(body, video.currentTime, state.answer.duration_s);
  });

  async function show(questionId) {
    const index = answers.findIndex((a) => a.question_id === questionId);
    if (index < 0 || state.answer === answers[index]) return;
    const answer = answers[index];
    state.answer = answer;
    chooser.value = questionId;
    heading.textContent = `Answer ${index + 1} of ${answers.length}`;
    question.textContent = answer.question || `Question ${answer.question_id}`;
    video.setAttribute("aria-label", `Video of answer ${index + 1}`);
    body.replaceChildren(...details(answer));
    await load(answer);
  }

  const jump = (seconds) => {
    seek(seconds, true);
    announce(`Playing from ${clock(seconds)}`);
  };

  const details = (answer) => [timelineSection(answer, jump), signalPlots(answer, jump), transcript(answer, jump)];

  return { element, show, play: async (questionId, seconds) => {
    await show(questionId);
    seek(seconds, true);
    video.focus();
    announce(`Playing answer ${questionId} from ${clock(seconds)}`);
  } };
}

// Rows of the timeline: speech, one row per kind of behaviour episode, quotes.
function timelineRows(answer) {
  const spans = (items, title) => items.map((item) => ({ start: item.start_s, end: item.end_s,
    title: `${title(item)} ${span(item.start_s, item.end_s)}` }));
  const episodes = answer.episodes || [];
  const behaviours = [...new Set(episodes.map((e) => e.behaviour))];
  return [
    { label: "Speech", kind: "speech", spans: spans(answer.speech_segments || [], () => "Speech") },
    ...behaviours.map((b) => ({
      label: behaviourName(b), kind: b === "long_pause" ? "pause" : "episode",
      spans: spans(episodes.filter((e) => e.behaviour === b), () => behaviourName(b)),
    })),
    { label: "Quotes", kind: "quote", spans: spans(answer.quotes || [], (q) => `“${q.text}”`) },
  ];
}

function timelineSection(answer, jump) {
  const duration = answer.duration_s || 0;
  const episodes = [...(answer.episodes || [])].sort((a, b) => a.start_s - b.start_s);
  const label = `Timeline of the answer (${clock(duration)}): speech, behaviour episodes and quotes; `
    + "the episodes are listed below, the quotes with the competencies.";
  return h("section", { class: "timeline-box", "aria-labelledby": "timeline-heading" },
    h("h4", { id: "timeline-heading" }, "Timeline"),
    timeline({ duration, rows: timelineRows(answer), onSeek: jump, label }),
    h("details", {},
      h("summary", {}, `Behaviour episodes (${episodes.length})`),
      episodes.length
        ? h("ul", { class: "moments" }, episodes.map((e) => h("li", {},
          h("button", { type: "button", class: "link", onclick: () => jump(e.start_s) },
            `${behaviourName(e.behaviour)}, ${span(e.start_s, e.end_s)}`))))
        : h("p", {}, "No behaviour episodes in this answer.")));
}

// A signal's values as a table, filled when first opened (a long answer has many seconds).
function valueTable(spec, values, step) {
  const body = h("tbody");
  const box = h("details", {}, h("summary", {}, `${spec.title}: the values`),
    h("table", { class: "values" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "From"), h("th", { scope: "col" }, spec.title))),
      body));
  box.addEventListener("toggle", () => {
    if (!box.open || body.childElementCount) return;
    body.append(...values.map((v, i) => h("tr", {},
      h("td", {}, clock(i * step)), h("td", {}, v === null ? "not measured" : spec.format(v)))));
  });
  return box;
}

function signalPlots(answer, jump) {
  const series = answer.series;
  const box = h("section", { class: "signals", "aria-labelledby": "signals-heading" },
    h("h4", { id: "signals-heading" }, "Signals over time"));
  if (!series) {
    box.append(h("p", {}, "This answer was scored before signals over time were recorded."));
    return box;
  }
  for (const spec of seriesSpecs(answer)) {
    const values = series[spec.key] || [];
    const measured = values.some((v) => v !== null && v !== undefined);
    box.append(h("figure", { class: "signal", dataset: { series: spec.key } },
      h("figcaption", {}, h("strong", {}, spec.title), ` (${spec.unit}): ${spec.whole}`),
      measured
        ? linePlot({ values, step: series.step_s, duration: answer.duration_s, min: spec.min, max: spec.max,
          format: spec.format, onSeek: jump, label: `${spec.title} over time; ${spec.whole}` })
        : h("p", { class: "muted" }, "Not measured in this answer."),
      measured ? valueTable(spec, values, series.step_s) : null));
  }
  return box;
}

function transcript(answer, jump) {
  const segments = answer.transcript || [];
  return h("section", { class: "transcript", "aria-labelledby": "transcript-heading" },
    h("h4", { id: "transcript-heading" }, "Transcript"),
    segments.length
      ? h("ol", { class: "moments" }, segments.map((seg) => h("li", {},
        h("button", { type: "button", class: "link", onclick: () => jump(seg.start_s) },
          h("span", { class: "time" }, clock(seg.start_s)), " ", seg.text))))
      : h("p", {}, "Nothing was transcribed."));
}
