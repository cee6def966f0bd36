// The candidate page: read the notice, answer each question (record with the camera or choose a
// file), then submit. Plain browser APIs only; the invitation token in this page's URL is the
// credential for every call, and every call goes to this page's own server.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const interviewId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
  const token = new URLSearchParams(location.search).get("t") || "";
  // Relative to /candidate/{id}, so the page also works behind a path prefix.
  const api = (suffix) => `api/${encodeURIComponent(interviewId)}${suffix}?t=${encodeURIComponent(token)}`;
  // Formats a browser can record and the server decodes, best first.
  const RECORDING_TYPES = ["video/webm;codecs=vp8,opus", "video/webm;codecs=vp9,opus", "video/webm", "video/mp4"];

  const state = {
    interview: null,
    index: 0,
    stream: null,
    recorder: null,
    recording: null, // the last recording of the current question, not yet uploaded
    busy: false,
    timer: null,
  };

  // -- messages ---------------------------------------------------------------------------
  function showProblem(message) {
    const box = $("problem");
    box.textContent = message;
    box.hidden = false;
  }

  function clearProblem() {
    $("problem").hidden = true;
    $("problem").textContent = "";
  }

  // The server's own words when it gave them ({"error": {"message"}}), else the status.
  function messageFrom(text, status) {
    try {
      const body = JSON.parse(text);
      if (body && body.error && body.error.message) return sentence(body.error.message);
    } catch (_) {
      // Not JSON (a proxy's page, say).
    }
    return `The server answered ${status}. Please try again in a moment.`;
  }

  async function errorOf(response) {
    return messageFrom(await response.text(), response.status);
  }

  function sentence(text) {
    const trimmed = String(text).trim();
    return trimmed.charAt(0).toUpperCase() + trimmed.slice(1) + (/[.!?]$/.test(trimmed) ? "" : ".");
  }

  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }

  // -- loading -----------------------------------------------------------------------------
  async function load() {
    let response;
    try {
      response = await fetch(api(""), { cache: "no-store" });
    } catch (_) {
      $("loading").hidden = true;
      showProblem("The interview could not be loaded. Check your connection, then reload this page.");
      return;
    }
    $("loading").hidden = true;
    if (!response.ok) {
      showProblem(await errorOf(response));
      return;
    }
    state.interview = await response.json();
    if (state.interview.status !== "open") {
      finish();
      return;
    }
    const count = state.interview.questions.length;
    $("question-count").textContent = count === 1 ? "1 question" : `${count} questions`;
    $("role").textContent = state.interview.role.replace(/[-_]/g, " ");
    $("notice").hidden = false;
  }

  // Reading the notice and going on is the candidate's consent to the analysis: it is recorded
  // (with the notice's version) before anything is recorded or uploaded.
  async function begin() {
    clearProblem();
    $("begin").disabled = true;
    let response;
    try {
      response = await fetch(api("/consent"), {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ notice_version: state.interview.notice_version }),
      });
    } catch (_) {
      response = null;
    }
    $("begin").disabled = !$("notice-read").checked;
    if (!response || !response.ok) {
      showProblem(response ? await errorOf(response)
        : "Your consent could not be saved. Check your connection and try again.");
      return;
    }
    $("notice").hidden = true;
    $("interview").hidden = false;
    const first = state.interview.questions.findIndex((q) => !q.answered);
    show(first === -1 ? 0 : first);
    if (!window.MediaRecorder || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      $("record").hidden = true;
      showProblem("Recording is not available in this browser. Choose a video file for each answer instead.");
    }
  }

  // -- one question at a time ----------------------------------------------------------------
  function show(index) {
    releaseCamera();
    state.index = index;
    state.recording = null;
    const questions = state.interview.questions;
    const question = questions[index];
    $("question-number").textContent = String(index + 1);
    $("question-total").textContent = String(questions.length);
    $("question-text").textContent = question.text;
    $("previous").disabled = index === 0;
    $("next").disabled = index === questions.length - 1;
    $("preview").hidden = true;
    $("playback").hidden = true;
    $("playback").removeAttribute("src");
    $("timer").hidden = true;
    $("file").value = "";
    renderAnswerState();
    renderList();
    renderControls();
    $("question-heading").focus();
  }

  function renderAnswerState() {
    const answered = state.interview.questions[state.index].answered;
    const line = $("answer-state");
    line.textContent = answered
      ? "Your answer to this question was received. You can replace it by recording or choosing another."
      : "No answer yet.";
    line.classList.toggle("answered", answered);
  }

  function renderList() {
    const list = $("question-list");
    list.replaceChildren();
    state.interview.questions.forEach((question, index) => {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = `Question ${index + 1}`;
      if (question.answered) {
        button.classList.add("answered");
        const note = document.createElement("span");
        note.className = "visually-hidden";
        note.textContent = ", answered";
        button.append(note);
      }
      if (index === state.index) button.setAttribute("aria-current", "step");
      button.disabled = state.busy || Boolean(state.recorder);
      button.addEventListener("click", () => show(index));
      item.append(button);
      list.append(item);
    });
    const missing = state.interview.questions.filter((q) => !q.answered).length;
    $("submit").disabled = missing > 0 || state.busy || Boolean(state.recorder);
    $("submit-state").textContent = missing > 0
      ? `${missing} of ${state.interview.questions.length} questions still need an answer.`
      : "Every question has an answer. Submit when you are ready: answers cannot be changed afterwards.";
  }

  function renderControls() {
    const recording = Boolean(state.recorder);
    const locked = state.busy || recording;
    $("record").hidden = recording || Boolean(state.recording) || !window.MediaRecorder;
    $("record").disabled = state.busy;
    $("stop").hidden = !recording;
    $("use").hidden = !state.recording || recording;
    $("rerecord").hidden = !state.recording || recording;
    $("use").disabled = state.busy;
    $("rerecord").disabled = state.busy;
    $("file").disabled = locked;
    $("previous").disabled = locked || state.index === 0;
    $("next").disabled = locked || state.index === state.interview.questions.length - 1;
  }

  // -- recording ---------------------------------------------------------------------------
  async function record() {
    clearProblem();
    state.recording = null;
    $("playback").hidden = true;
    try {
      state.stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
    } catch (error) {
      const refused = error && (error.name === "NotAllowedError" || error.name === "SecurityError");
      showProblem(refused
        ? "The browser was not allowed to use your camera and microphone. Allow them for this page, or choose a video file instead."
        : "No camera or microphone could be opened. Check that they are connected, or choose a video file instead.");
      renderControls();
      return;
    }
    const preview = $("preview");
    preview.srcObject = state.stream;
    preview.hidden = false;
    preview.play().catch(() => {});
    const type = RECORDING_TYPES.find((t) => MediaRecorder.isTypeSupported(t));
    const recorder = new MediaRecorder(state.stream, type ? { mimeType: type } : undefined);
    const parts = [];
    recorder.addEventListener("dataavailable", (event) => {
      if (event.data && event.data.size > 0) parts.push(event.data);
    });
    recorder.addEventListener("stop", () => {
      state.recording = new Blob(parts, { type: recorder.mimeType || type || "video/webm" });
      state.recorder = null;
      releaseCamera();
      const playback = $("playback");
      playback.src = URL.createObjectURL(state.recording);
      playback.hidden = false;
      $("answer-state").textContent = "Recorded. Watch it back, then upload it or record again.";
      renderControls();
      renderList();
      $("use").focus();
    });
    state.recorder = recorder;
    recorder.start(1000);
    startTimer();
    $("answer-state").textContent = "Recording…";
    renderControls();
    renderList();
    $("stop").focus();
  }

  function startTimer() {
    const limit = state.interview.max_duration_s;
    const started = Date.now();
    const timer = $("timer");
    timer.hidden = false;
    const tick = () => {
      const elapsed = (Date.now() - started) / 1000;
      timer.textContent = `Recording ${clock(elapsed)} (at most ${clock(limit)})`;
      // Stop a little before the limit: the container adds a few frames past the last tick.
      if (elapsed >= limit - 1) stop();
    };
    tick();
    state.timer = setInterval(tick, 500);
  }

  function stop() {
    clearInterval(state.timer);
    state.timer = null;
    $("timer").hidden = true;
    if (state.recorder && state.recorder.state !== "inactive") state.recorder.stop();
  }

  function releaseCamera() {
    if (state.stream) state.stream.getTracks().forEach((track) => track.stop());
    state.stream = null;
    $("preview").srcObject = null;
    $("preview").hidden = true;
  }

  // -- uploading ---------------------------------------------------------------------------
  function upload(body) {
    clearProblem();
    if (body.size > state.interview.max_file_bytes) {
      showProblem("This video is larger than the server accepts. Record a shorter answer or choose a smaller file.");
      return;
    }
    const question = state.interview.questions[state.index];
    const index = state.index;
    const request = new XMLHttpRequest();
    request.open("PUT", api(`/answers/${encodeURIComponent(question.question_id)}`));
    request.setRequestHeader("Content-Type", body.type || "application/octet-stream");
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) setProgress((100 * event.loaded) / event.total);
    });
    request.addEventListener("load", () => {
      const accepted = request.status === 200;
      if (accepted) {
        question.answered = true;
        if (state.index === index) {
          state.recording = null;
          $("playback").hidden = true;
        }
      }
      done();
      if (!accepted) showProblem(messageFrom(request.responseText, request.status));
    });
    request.addEventListener("error", () => {
      done();
      showProblem("The upload was interrupted. Check your connection and upload the answer again.");
    });
    state.busy = true;
    setProgress(0);
    $("upload").hidden = false;
    $("answer-state").textContent = "Uploading your answer…";
    renderControls();
    renderList();
    request.send(body);

    function done() {
      state.busy = false;
      $("upload").hidden = true;
      if (state.index === index) renderAnswerState();
      renderList();
      renderControls();
    }
  }

  function setProgress(percent) {
    const rounded = Math.round(percent);
    $("upload-progress").value = rounded;
    $("upload-percent").textContent = `${rounded} %`;
  }

  // -- submitting --------------------------------------------------------------------------
  async function submit() {
    clearProblem();
    state.busy = true;
    renderList();
    renderControls();
    $("submit-state").textContent = "Submitting…";
    let response;
    try {
      response = await fetch(api("/complete"), { method: "POST" });
    } catch (_) {
      response = null;
    }
    state.busy = false;
    if (response && response.status === 202) {
      finish();
      return;
    }
    renderList();
    renderControls();
    showProblem(response ? await errorOf(response)
      : "The interview could not be submitted. Check your connection and try again.");
  }

  function finish() {
    releaseCamera();
    $("notice").hidden = true;
    $("interview").hidden = true;
    $("done").hidden = false;
    $("done-heading").focus();
  }

  // -- wiring ------------------------------------------------------------------------------
  document.addEventListener("DOMContentLoaded", () => {
    $("notice-read").addEventListener("change", (event) => {
      $("begin").disabled = !event.target.checked;
    });
    $("begin").addEventListener("click", begin);
    $("record").addEventListener("click", record);
    $("rerecord").addEventListener("click", record);
    $("stop").addEventListener("click", stop);
    $("use").addEventListener("click", () => state.recording && upload(state.recording));
    $("file").addEventListener("change", (event) => {
      const file = event.target.files && event.target.files[0];
      if (file) upload(file);
    });
    $("previous").addEventListener("click", () => show(state.index - 1));
    $("next").addEventListener("click", () => show(state.index + 1));
    $("submit").addEventListener("click", submit);
    load();
  });
})();
