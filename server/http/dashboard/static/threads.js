// Sessions of several evolution threads: the form's rows for the threads beside the first
// (the session's own settings are thread 0), and each thread's curve and best image side by
// side on the session panel.
import { drawCurve, fmt } from "./curve.js";
import { el } from "./dom.js";

// The form's extra threads: each a row of name, generator, optimizer and population; the
// inputs carry no name, so the form's own reading leaves them to read().
export class ThreadRows {
  constructor(container, addButton) {
    this.container = container;
    this.options = null;
    addButton.addEventListener("click", () => this.add());
  }

  setOptions(options) {
    this.options = options;
  }

  add() {
    if (!this.options) return;  // the form is disabled until the options are in
    const choices = (items, blank) => [el("option", { value: "", text: blank }),
      ...items.map((i) => el("option", { value: i.name, text: i.name }))];
    const field = (text, control) => el("span", { class: "thread-field" }, el("span", { text }), control);
    const row = el("div", { class: "thread-row" },
      el("strong", { class: "thread-number" }),
      field("name", el("input", { "data-field": "name", maxlength: "64" })),
      field("generator", el("select", { "data-field": "generator" }, ...choices(this.options.generators, "as above"))),
      field("optimizer", el("select", { "data-field": "optimizer" }, ...choices(this.options.optimizers, "as above"))),
      field("images", el("input", { "data-field": "population", type: "number", min: "2", max: "1000", placeholder: "preset" })),
      el("button", { type: "button", class: "remove", text: "Remove" }));
    row.querySelector(".remove").addEventListener("click", () => {
      row.remove();
      this.number();
      this.container.dispatchEvent(new Event("change", { bubbles: true }));  // the estimate
    });
    this.container.append(row);
    this.number();
    this.container.dispatchEvent(new Event("change", { bubbles: true }));
    row.querySelector("input").focus();
  }

  // Rows are threads 1, 2, ... (thread 0 is the settings above): numbered, and their
  // controls named for screen readers, after every change.
  number() {
    [...this.container.children].forEach((row, i) => {
      const k = i + 1;
      row.dataset.thread = String(k);
      row.querySelector(".thread-number").textContent = `Thread ${k}`;
      for (const control of row.querySelectorAll("[data-field]")) {
        const what = control.dataset.field === "population" ? "images" : control.dataset.field;
        control.setAttribute("aria-label", `Thread ${k} ${what}`);
        if (control.dataset.field === "name") control.placeholder = `thread ${k}`;
      }
      row.querySelector(".remove").setAttribute("aria-label", `Remove thread ${k}`);
    });
  }

  // The rows as ThreadConfig objects (what a row leaves empty is the session's), and the
  // problems found, by row.
  read() {
    const threads = [];
    const problems = [];
    for (const row of this.container.children) {
      const thread = {};
      for (const input of row.querySelectorAll("[data-field]")) {
        const raw = input.value.trim();
        if (!raw) continue;
        if (input.dataset.field === "population") {
          const n = Number(raw);
          if (!Number.isInteger(n)) problems.push(`thread ${row.dataset.thread}: images is a whole number`);
          thread.population = n;
        } else {
          thread[input.dataset.field] = raw;
        }
      }
      threads.push(thread);
    }
    return { threads, problems };
  }
}

// One card per thread: what it runs, its curve (max, mean, references on its objective)
// and a link to its best image and montage. Drawn when a generation is added.
export function renderThreadCards(container, box, session, histories) {
  const threads = session.threads || [];
  box.hidden = threads.length < 2;
  if (threads.length < 2) return;
  const base = `/api/sessions/${encodeURIComponent(session.id)}`;
  if (container.children.length !== threads.length) {
    container.replaceChildren(...threads.map((t) => {
      const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
      svg.setAttribute("class", "curve thread-curve");
      svg.setAttribute("role", "img");
      svg.setAttribute("aria-labelledby", `thread-${t.index}-summary`);
      return el("figure", { class: "thread-card", "data-thread": String(t.index) },
        el("figcaption", {}, el("strong", { text: t.name || `thread ${t.index}` }),
          el("span", { class: "muted thread-what" })),
        svg,
        el("p", { class: "thread-best" },
          el("span", { class: "thread-score" }), " ",
          el("a", { class: "thread-best-link", text: "best image" }), " · ",
          el("a", { class: "thread-montage-link", text: "montage" })));
    }));
  }
  threads.forEach((t, k) => {
    const card = container.children[k];
    const h = histories[k] || { max: [], mean: [], reference_mean: [] };
    card.querySelector(".thread-what").textContent =
      ` · ${t.generator} + ${t.optimizer} · ${t.population} images · ${t.objective}` +
      (t.start ? ` · ${t.start}` : "");
    card.querySelector(".thread-score").textContent = `best ${fmt(t.best_score)}`;
    const best = card.querySelector(".thread-best-link");
    const montage = card.querySelector(".thread-montage-link");
    best.href = `${base}/best.png?thread=${t.index}`;
    montage.href = `${base}/montage.png?thread=${t.index}`;
    best.hidden = montage.hidden = t.best_score === null;
    drawCurve(card.querySelector("svg"), [
      { name: "generation max", cls: "max", values: h.max },
      { name: "generation mean", cls: "mean", values: h.mean },
      { name: "references (mean)", cls: "ref", values: h.reference_mean },
    ], [], `thread-${t.index}-summary`);
  });
}
