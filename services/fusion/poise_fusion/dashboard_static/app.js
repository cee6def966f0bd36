// The dashboard's shell: sign in with an API key, then hash routes
//   #/                 the interview list
//   #/interviews/<id>  a scorecard
//   #/audit            the bias audit (admin keys)
// Each view gets an AbortSignal that ends its requests and event stream when the route changes.

import { ApiError, call, forgetKey, keepKey, storedKey, whenSignedOut } from "./api.js";
import { auditView } from "./audit.js";
import { $, h, problemBox, showProblem } from "./dom.js";
import { listView } from "./list.js";
import { scorecardView } from "./scorecard.js";

let session = null;
let current = null; // the AbortController of the view on screen

function leaveView() {
  if (current) current.abort();
  current = new AbortController();
  return current.signal;
}

function focusTitle() {
  const title = $("view-title");
  if (title) title.focus();
}

function showChrome(signedIn) {
  $("nav").hidden = !signedIn;
  $("who").hidden = !signedIn;
  $("nav-audit-item").hidden = !(signedIn && session && session.is_admin);
  if (signedIn) $("who-tenant").textContent = session.tenant;
}

function signInView(message) {
  leaveView();
  session = null;
  showChrome(false);
  document.title = "Sign in · Poise dashboard";
  const key = h("input", { id: "api-key", type: "password", autocomplete: "off", spellcheck: "false", required: true,
    "aria-describedby": "api-key-help" });
  const problem = problemBox("sign-in-problem");
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h("form", { class: "sign-in" },
    h("p", {}, h("label", { for: "api-key" }, "API key"), key),
    h("p", { id: "api-key-help", class: "muted" },
      "Your organisation's Poise API key with the scores:read scope (scores:review to override scores, admin for ",
      "the bias audit). It is kept in this browser tab only, until you sign out or close the tab."),
    problem, button);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    showProblem(problem, "");
    try {
      session = await call("./session", { key: key.value.trim() });
      keepKey(key.value.trim());
      route();
    } catch (error) {
      const words = error instanceof ApiError && error.status === 401
        ? "That API key is not valid." : error.message;
      showProblem(problem, words);
      button.disabled = false;
      key.focus();
    }
  });
  $("view").replaceChildren(h("h1", { id: "view-title", tabindex: "-1" }, "Sign in"), form);
  if (message) showProblem(problem, message);
  key.focus();
}

async function route() {
  if (!storedKey()) {
    signInView();
    return;
  }
  if (!session) {
    try {
      session = await call("./session");
    } catch (error) {
      if (error.status === 401 || error.status === 403) {
        forgetKey();
        signInView(error.status === 403 ? "This API key may not read scores." : "");
      } else {
        $("view").replaceChildren(h("p", { class: "problem", role: "alert" }, error.message));
      }
      return;
    }
  }
  showChrome(true);
  const signal = leaveView();
  const path = location.hash.replace(/^#/, "") || "/";
  const interview = path.match(/^\/interviews\/([^/?]+)$/);
  const view = $("view");
  for (const link of document.querySelectorAll("nav a")) link.removeAttribute("aria-current");
  if (interview) {
    document.title = "Scorecard · Poise dashboard";
    await scorecardView(view, decodeURIComponent(interview[1]), session, signal);
  } else if (path === "/audit") {
    document.title = "Bias audit · Poise dashboard";
    $("nav-audit").setAttribute("aria-current", "page");
    auditView(view, session);
  } else {
    document.title = "Interviews · Poise dashboard";
    $("nav-interviews").setAttribute("aria-current", "page");
    await listView(view, session, signal);
  }
  if (!signal.aborted) focusTitle();
}

function start() {
  $("booting").remove();
  whenSignedOut((message) => signInView(message));
  $("sign-out").addEventListener("click", () => {
    forgetKey();
    signInView();
  });
  // The skip link moves focus without touching the route in the address.
  $("skip").addEventListener("click", (event) => {
    event.preventDefault();
    $("main").focus();
  });
  window.addEventListener("hashchange", route);
  route();
}

start();
