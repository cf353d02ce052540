// The score curve: one SVG line per series over generations (numbered from 0), optional
// horizontal marks (the best reference image's mean), and a readout of the generation under
// the pointer. Drawn in the element's own pixels, so text keeps its size at any width.
const SVG = "http://www.w3.org/2000/svg";

export function fmt(value, digits = 2) {
  return value === null || value === undefined || Number.isNaN(value) ? "–" : Number(value).toFixed(digits);
}

// series: [{name, cls, values}], values per generation (null: none); marks: [{name, cls,
// value}] drawn across the whole width; titleId: the id of the summary its label points to
// (one per curve on the page). Returns nothing; svg.dataset.generations says how many
// generations are drawn.
export function drawCurve(svg, series, marks = [], titleId = "curve-summary") {
  const W = Math.max(320, Math.round(svg.clientWidth)) || 640;
  const H = Math.max(200, Math.round(svg.clientHeight)) || 280;
  const L = 48, R = 12, T = 12, B = 36;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const n = Math.max(0, ...series.map((s) => s.values.length));
  const values = [...series.flatMap((s) => s.values), ...marks.map((m) => m.value)]
    .filter((v) => v !== null && v !== undefined);
  const title = document.createElementNS(SVG, "title");
  title.id = titleId;
  svg.replaceChildren(title);
  svg.dataset.generations = String(n);
  svg._curve = null;
  if (!n || !values.length) {
    title.textContent = "No generation scored yet.";
    return;
  }
  let lo = Math.min(...values), hi = Math.max(...values);
  if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
  const x = (i) => L + (n === 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (n - 1));
  const y = (v) => T + (H - T - B) * (1 - (v - lo) / (hi - lo));
  const add = (tag, attrs) => {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    svg.append(node);
    return node;
  };
  for (let k = 0; k <= 4; k += 1) {
    const v = lo + ((hi - lo) * k) / 4;
    add("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" });
    add("text", { x: L - 6, y: y(v) + 4, class: "tick", "text-anchor": "end" }).textContent = fmt(v, 1);
  }
  const every = Math.max(1, Math.ceil(n / 8));
  for (let i = 0; i < n; i += every) {
    add("text", { x: x(i), y: H - B + 16, class: "tick", "text-anchor": "middle" }).textContent = String(i);
  }
  add("text", { x: (L + W - R) / 2, y: H - 4, class: "axis", "text-anchor": "middle" }).textContent = "generation";
  for (const mark of marks) {
    if (mark.value === null || mark.value === undefined) continue;
    add("line", { x1: L, x2: W - R, y1: y(mark.value), y2: y(mark.value), class: `mark ${mark.cls}` });
  }
  for (const { values: line, cls } of series) {
    let d = "";
    line.forEach((v, i) => {
      if (v !== null) d += `${d && line[i - 1] !== null ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
    });
    if (d) add("path", { d, class: `line ${cls}` });
    if (n === 1 && line[0] !== null && line[0] !== undefined) add("circle", { cx: x(0), cy: y(line[0]), r: 3, class: `dot ${cls}` });
  }
  const cursor = add("line", { x1: 0, x2: 0, y1: T, y2: H - B, class: "cursor", visibility: "hidden" });
  const last = series.map((s) => `${s.name} ${fmt(s.values[s.values.length - 1], 1)}`).join(", ");
  title.textContent = `${n} generations scored. Last generation: ${last}.`;
  svg._curve = { n, x, L, R, W, cursor, series, marks };
}

// The readout: which generation the pointer is over, and each series' value there.
export function followPointer(svg, readout) {
  const hide = () => {
    readout.hidden = true;
    svg._curve?.cursor.setAttribute("visibility", "hidden");
  };
  svg.addEventListener("pointerleave", hide);
  svg.addEventListener("pointermove", (event) => {
    const curve = svg._curve;
    if (!curve) return hide();
    const box = svg.getBoundingClientRect();
    const px = ((event.clientX - box.left) / box.width) * curve.W;
    const span = curve.W - curve.L - curve.R;
    const i = curve.n === 1 ? 0 : Math.round(((px - curve.L) / span) * (curve.n - 1));
    const g = Math.min(curve.n - 1, Math.max(0, i));
    curve.cursor.setAttribute("x1", curve.x(g));
    curve.cursor.setAttribute("x2", curve.x(g));
    curve.cursor.setAttribute("visibility", "visible");
    const parts = curve.series.map((s) => `${s.name} ${fmt(s.values[g], 2)}`);
    const marks = curve.marks.filter((m) => m.value !== null && m.value !== undefined)
      .map((m) => `${m.name} ${fmt(m.value, 2)}`);
    readout.textContent = `generation ${g}: ${[...parts, ...marks].join(" · ")}`;
    readout.hidden = false;
  });
}
