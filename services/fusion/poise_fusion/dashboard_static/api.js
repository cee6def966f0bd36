// The REST API as the dashboard uses it: the signed-in key, JSON requests, the live event
// stream and media links. The key stays in this tab's sessionStorage (gone when the tab closes)
// and travels only in the Authorization header, never in a URL.

import { sentence } from "./dom.js";

const KEY = "poise.dashboard.key";
// Reconnect delays of the event stream: doubling, capped.
const FIRST_RETRY_MS = 1000;
const MAX_RETRY_MS = 30000;

// Where /v1 lives: the configured base, else the path this page is served under.
export const apiBase = (() => {
  const configured = document.querySelector('meta[name="poise-api-base"]')?.content || "";
  if (configured) return configured.replace(/\/+$/, "");
  const path = location.pathname;
  const at = path.lastIndexOf("/dashboard/");
  return at > 0 ? path.slice(0, at) : "";
})();

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const storedKey = () => sessionStorage.getItem(KEY);
export const keepKey = (key) => sessionStorage.setItem(KEY, key);
export const forgetKey = () => sessionStorage.removeItem(KEY);

// What the dashboard does when the key stops working (app.js sets it: back to the sign-in page).
let onSignedOut = () => {};
export function whenSignedOut(handler) {
  onSignedOut = handler;
}

function authorised(headers = {}, key = storedKey()) {
  return key ? { ...headers, Authorization: `Bearer ${key}` } : headers;
}

// The server's own words ({"error": {"message"}} or FastAPI's {"detail"}), else the status.
function messageOf(body, status) {
  const error = body && body.error;
  if (error && error.message) return sentence(error.message);
  if (body && Array.isArray(body.detail) && body.detail[0] && body.detail[0].msg) return sentence(body.detail[0].msg);
  return `The server answered ${status}.`;
}

async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    // Not JSON: a proxy's page, say.
  }
  const code = (body && body.error && body.error.code) || String(response.status);
  return new ApiError(response.status, code, messageOf(body, response.status));
}

// fetch with the key; `url` relative to the API base unless it starts with "./" (the dashboard's own).
export async function call(url, { method = "GET", body, key, signal, raw = false } = {}) {
  const target = url.startsWith("./") ? url.slice(2) : apiBase + url;
  const headers = authorised(body === undefined ? {} : { "Content-Type": "application/json" }, key);
  let response;
  try {
    response = await fetch(target, {
      method, headers, signal, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "offline", "The server could not be reached. Check the connection and try again.");
  }
  if (response.status === 401 && !key) {
    forgetKey();
    onSignedOut("Your session ended: the API key is no longer accepted. Sign in again.");
  }
  if (!response.ok) throw await failure(response);
  return raw ? response : response.json();
}

// Server-sent events of the caller's tenant, through fetch so the key goes in a header. Calls
// onEvent(type, data) per event and onState("connecting" | "live" | "offline") as the link changes;
// reconnects with backoff until `signal` aborts.
export async function followEvents(onEvent, onState, signal) {
  let delay = FIRST_RETRY_MS;
  while (!signal.aborted) {
    onState("connecting");
    try {
      const response = await call("/v1/events", { signal, raw: true });
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          // The server's first comment says the subscription is in place.
          if (block.startsWith(":")) {
            onState("live");
            delay = FIRST_RETRY_MS;
            continue;
          }
          const event = parseEvent(block);
          if (event) onEvent(event.type, event.data);
        }
      }
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
        onState("offline");
        return;
      }
    }
    if (signal.aborted) return;
    onState("offline");
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, MAX_RETRY_MS);
  }
}

function parseEvent(block) {
  let type = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) type = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
  }
  if (!data.length) return null;
  try {
    return { type, data: JSON.parse(data.join("\n")) };
  } catch (_) {
    return null;
  }
}

// A URL a <video> element can play: the answer's media with a short-lived link token (a video
// element cannot send the Authorization header).
export async function mediaUrl(interviewId, questionId) {
  const path = `/v1/interviews/${encodeURIComponent(interviewId)}/answers/${encodeURIComponent(questionId)}/media`;
  const link = await call(`${path}/link`, { method: "POST" });
  return `${apiBase}${path}?t=${encodeURIComponent(link.token)}`;
}
