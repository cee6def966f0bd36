// Small DOM and wording helpers shared by the dashboard's views. Elements are built with
// properties and text nodes only (never parsed from a string), so what the API returns is never markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function fill(node, props, children) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "class") node.setAttribute("class", value);
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// h("p", {class: "x", onclick: fn}, "text", child): an HTML element.
export function h(tag, props, ...children) {
  return fill(document.createElement(tag), props, children);
}

// An SVG element; attributes as given.
export function s(tag, props, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), props, children);
}

// Appends children (arrays flattened; null, undefined and false left out, unlike Node.append).
export function add(node, ...children) {
  return fill(node, {}, children);
}

// Replaces the children, as add appends them.
export function put(node, ...children) {
  node.replaceChildren();
  return fill(node, {}, children);
}

export const $ = (id) => document.getElementById(id);

// Seconds as m:ss (h:mm:ss past an hour).
export function clock(seconds) {
  const total = Math.max(0, Math.floor(Number(seconds) || 0));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const rest = String(total % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${rest}` : `${minutes}:${rest}`;
}

export function span(start, end) {
  return `${clock(start)}–${clock(end)}`;
}

// "eye_contact_ratio" -> "Eye contact ratio".
export function humanise(name) {
  const words = String(name || "").replace(/[_.]+/g, " ").trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

export function sentence(text) {
  const trimmed = String(text || "").trim();
  if (!trimmed) return "";
  return trimmed.charAt(0).toUpperCase() + trimmed.slice(1) + (/[.!?]$/.test(trimmed) ? "" : ".");
}

export function when(unixSeconds) {
  if (unixSeconds === null || unixSeconds === undefined) return "";
  return new Date(unixSeconds * 1000).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function shortId(id) {
  return String(id).slice(0, 8);
}

export function number(value, digits = 1) {
  if (value === null || value === undefined) return "not measured";
  return Number(value).toLocaleString(undefined, { maximumFractionDigits: digits });
}

export function percent(share, digits = 0) {
  if (share === null || share === undefined) return "not measured";
  return `${(share * 100).toFixed(digits)} %`;
}

// Tells screen reader users what changed without moving their focus.
export function announce(message) {
  const box = $("announcer");
  box.textContent = "";
  // A fresh text node in a new task is announced even when the text repeats.
  setTimeout(() => { box.textContent = message; }, 50);
}

export function problemBox(id) {
  return h("div", { id, class: "problem", role: "alert", hidden: true });
}

export function showProblem(box, message) {
  box.textContent = message;
  box.hidden = !message;
}
