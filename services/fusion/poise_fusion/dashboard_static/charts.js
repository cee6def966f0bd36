// SVG plots of one answer over time: a behaviour timeline and line plots of signals. They are
// pictures for sighted users; every value in them is also in a list or table next to them.

import { clock, s } from "./dom.js";

const WIDTH = 640; // viewBox units; the SVG scales to its box
const LEFT = 112; // room for row labels and the y axis
const RIGHT = 12;
const TICK_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600];

function x(t, duration) {
  return LEFT + (WIDTH - LEFT - RIGHT) * (duration > 0 ? Math.min(Math.max(t / duration, 0), 1) : 0);
}

function timeAxis(duration, top, bottom) {
  const step = TICK_STEPS.find((candidate) => duration / candidate <= 8) || 1200;
  const ticks = [];
  for (let t = 0; t <= duration + 1e-6; t += step) {
    ticks.push(s("line", { class: "grid", x1: x(t, duration), x2: x(t, duration), y1: top, y2: bottom }));
    ticks.push(s("text", { class: "tick", x: x(t, duration), y: bottom + 14, "text-anchor": "middle" }, clock(t)));
  }
  return s("g", { "aria-hidden": "true" }, ticks);
}

function playhead(top, bottom) {
  return s("line", { class: "playhead", x1: LEFT, x2: LEFT, y1: top, y2: bottom, visibility: "hidden" });
}

// Moves the playheads made by these plots to `t` seconds.
export function movePlayheads(root, t, duration) {
  for (const line of root.querySelectorAll("line.playhead")) {
    const at = x(t, duration);
    line.setAttribute("x1", at);
    line.setAttribute("x2", at);
    line.setAttribute("visibility", "visible");
  }
}

// Lets a pointer click on the plot seek the video (keyboard users have the lists beside it).
function seekOnClick(svg, duration, onSeek) {
  svg.addEventListener("click", (event) => {
    const box = svg.getBoundingClientRect();
    const at = ((event.clientX - box.left) / box.width) * WIDTH;
    if (at < LEFT) return;
    onSeek(((at - LEFT) / (WIDTH - LEFT - RIGHT)) * duration);
  });
}

// rows: [{label, kind, spans: [{start, end, title}]}] drawn as bars on one time axis.
export function timeline({ duration, rows, label, onSeek }) {
  const rowHeight = 22;
  const height = rows.length * rowHeight + 24;
  const bottom = rows.length * rowHeight + 4;
  const svg = s("svg", {
    class: "timeline", viewBox: `0 0 ${WIDTH} ${height}`, role: "img", "aria-label": label,
  });
  svg.append(timeAxis(duration, 0, bottom));
  rows.forEach((row, i) => {
    const y = i * rowHeight + 4;
    svg.append(s("text", { class: "row-label", x: 4, y: y + 14 }, row.label));
    for (const part of row.spans) {
      const left = x(part.start, duration);
      const width = Math.max(2, x(part.end, duration) - left);
      svg.append(s("rect", { class: `span span-${row.kind}`, x: left, y: y + 2, width, height: rowHeight - 6, rx: 3 },
        s("title", {}, part.title)));
    }
  });
  svg.append(playhead(0, bottom));
  seekOnClick(svg, duration, onSeek);
  return svg;
}

// One signal over time: values per bin of `step` seconds, null where not measured (a gap).
export function linePlot({ values, step, duration, min, max, label, format, onSeek }) {
  const height = 96;
  const top = 8;
  const bottom = 70;
  const y = (v) => bottom - ((v - min) / (max - min || 1)) * (bottom - top);
  const svg = s("svg", { class: "plot", viewBox: `0 0 ${WIDTH} ${height}`, role: "img", "aria-label": label });
  svg.append(timeAxis(duration, top, bottom));
  svg.append(s("text", { class: "tick", x: LEFT - 6, y: top + 4, "text-anchor": "end" }, format(max)));
  svg.append(s("text", { class: "tick", x: LEFT - 6, y: bottom, "text-anchor": "end" }, format(min)));
  let path = "";
  let open = false;
  values.forEach((value, i) => {
    if (value === null || value === undefined) {
      open = false;
      return;
    }
    const point = `${x((i + 0.5) * step, duration).toFixed(1)},${y(Math.min(Math.max(value, min), max)).toFixed(1)}`;
    path += `${open ? "L" : "M"}${point}`;
    // A lone measured bin still shows: a dot-sized segment.
    if (!open && (values[i + 1] === null || values[i + 1] === undefined)) path += `l0.1,0`;
    open = true;
  });
  svg.append(s("path", { class: "line", d: path }));
  svg.append(playhead(top, bottom));
  seekOnClick(svg, duration, onSeek);
  return svg;
}
