// xdream-rig dashboard: plain browser JavaScript modules, no build step and no packages.
// It reads the REST API and listens to the server-sent-event stream /api/live, which pushes
// the session list, the rig clients and (for the open session) its progress on every change.
import { AlarmBoard } from "./alarms.js";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const THUMB_PX = 112;
// At most one new grid of thumbnails this often: a fast in-silico run finishes a generation
// every second or two, and drawing each would cost the loop CPU for no one's benefit.
const IMAGES_EVERY_MS = 4000;

const state = {
  options: null,
  sessions: [],       // live sessions of this server run (summaries)
  past: [],           // session files of earlier runs
  openId: null,       // session shown in the session panel
  live: false,        // whether the open session is held by this run (else: a past file)
  history: { max: [], mean: [], reference_mean: [] },
  lastScores: [],
  warnings: [],
  source: null,       // the EventSource
  shownGeneration: -1,
  curveDrawn: -1,     // generations in the curve as drawn
  warningsShown: -1,  // newest warning in the list as drawn
  alarmLogShown: null, // the alarm log as drawn
  imagesBusy: false,
  imagesAt: 0,        // when the last grid of thumbnails was started
  imagesTimer: null,
  imagesGrid: 0,      // counts grids, so loads of a replaced grid are ignored
  bestShown: null,
  lastUpdate: Date.now(),  // when the stream last pushed anything
  clients: [],             // rig clients as last pushed
  board: null,             // the AlarmBoard
};
// The words for a session state on the page (an operator's stop is not a failure).
const STATE_WORDS = { aborted: "stopped" };
const PAUSE_WORDS = {
  operator: "the operator",
  stall: "a stall alarm",
  nan_generation: "a mostly unanswered generation",
  responses_refused: "refused responses",
};

// -- small helpers --------------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

function fmt(value, digits = 2) {
  return value === null || value === undefined || Number.isNaN(value) ? "–" : Number(value).toFixed(digits);
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    headers: { "Content-Type": "application/json" },
    credentials: "same-origin",
    ...options,
  });
  if (response.status === 401) {
    window.location.assign("/login");
    throw new Error("sign in first");
  }
  const json = response.status !== 204 && response.headers.get("content-type")?.includes("json");
  const body = json ? await response.json() : null;
  if (!response.ok) {
    const error = new Error(body?.message || `${response.status} ${response.statusText}`);
    error.fields = body?.fields || {};
    throw error;
  }
  return body;
}

function show(panel) {
  for (const id of ["welcome", "new", "session"]) $(id).hidden = id !== panel;
}

// -- the live stream ------------------------------------------------------------------------
function listen(sessionId) {
  if (state.source) state.source.close();
  const url = sessionId ? `/api/live?session=${encodeURIComponent(sessionId)}` : "/api/live";
  const source = new EventSource(url);
  state.source = source;
  source.onopen = () => setConnection("live", true);
  source.onerror = () => {
    if (source.readyState !== EventSource.CLOSED) {
      setConnection("connection lost, reconnecting…", false);
      return;
    }
    // Refused for good (signed out, or the session is gone): say so, and sign in if asked.
    setConnection("disconnected: reload the page", false);
    api("/api/health").catch(() => {});
  };
  source.addEventListener("update", (event) => onUpdate(JSON.parse(event.data)));
}

function setConnection(text, ok) {
  const node = $("connection");
  node.textContent = text;
  node.classList.toggle("bad", !ok);
}

function onUpdate(update) {
  state.lastUpdate = Date.now();
  // A session that ended leaves the live list: the list of past sessions now holds it.
  const now = new Set(update.sessions.map((s) => s.id));
  const ended = state.sessions.some((s) => !now.has(s.id));
  state.sessions = update.sessions;
  if (ended) loadPast().catch(() => {});
  renderLiveList();
  state.clients = update.clients;
  renderClients(0);
  state.board.setSessions(update.sessions);
  if (update.session && update.session.summary.id === state.openId) {
    applyDetail(update.session, update.full);
  }
}

function applyDetail(detail, full) {
  const h = detail.history;
  if (full) {
    state.warnings = [];
  }
  for (const key of ["max", "mean", "reference_mean"]) {
    state.history[key] = state.history[key].slice(0, h.start).concat(h[key]);
  }
  state.lastScores = h.last_scores;
  state.warnings = detail.warnings.slice().reverse().concat(state.warnings).slice(0, 100);
  renderSession(detail.summary, h.loop_latency_s);
  renderAlarmLog(detail.alarm_log || []);
}

// Staleness, once a second: the server pushes at least that often, so a longer silence means
// it is frozen or out of reach, and every age and number shown is older than it says.
function checkStale() {
  const age = (Date.now() - state.lastUpdate) / 1000;
  state.board.setStale(age);
  const node = $("connection");
  if (age >= 2) {
    setConnection(`no update for ${Math.floor(age)} s`, false);
    renderClients(age);
  } else if (node.classList.contains("bad") && state.source?.readyState === EventSource.OPEN) {
    setConnection("live", true);
  }
}

// -- session list and clients ---------------------------------------------------------------
// Lists are updated in place (never rebuilt), so keyboard focus stays where the operator put it.
function renderList(list, items, extra, emptyText) {
  const keep = new Set(items.map((s) => s.id));
  for (const item of [...list.children]) if (!keep.has(item.dataset.id)) item.remove();
  for (const s of items) {
    let item = list.querySelector(`li[data-id="${CSS.escape(s.id)}"]`);
    if (!item) {
      item = el("li", { "data-id": s.id }, el("a", { href: `#/session/${s.id}` },
        el("span", { class: "title" }), el("span", { class: "state" }), el("span", { class: "muted small" })));
      list.append(item);
    }
    const [title, badge, detail] = item.firstChild.children;
    title.textContent = s.name || `session ${s.id}`;
    badge.textContent = s.state;
    badge.className = `state ${s.state}`;
    detail.textContent = extra(s);
    if (s.id === state.openId) item.firstChild.setAttribute("aria-current", "page");
    else item.firstChild.removeAttribute("aria-current");
  }
  if (!items.length) list.replaceChildren(el("li", { class: "empty", text: emptyText }));
}

function renderLiveList() {
  renderList($("live-list"), state.sessions,
    (s) => `gen ${s.generations_done}/${s.generations} · ${s.generator} + ${s.optimizer}`, "No sessions yet.");
}

async function loadPast() {
  const { past } = await api("/api/sessions");
  state.past = past;
  renderPastList();
}

function renderPastList() {
  // A damaged file says what is wrong with it instead of when it was made.
  renderList($("past-list"), state.past,
    (s) => s.problem || new Date(s.created * 1000).toLocaleString(), "None.");
}

// ``stale``: seconds since these ages were pushed, added so they never look fresher than they are.
function renderClients(stale) {
  const clients = state.clients;
  const body = $("clients").tBodies[0];
  body.replaceChildren(...clients.map((c) => {
    const heard = c.heard_s_ago + stale;
    const late = heard > 2.5;
    return el("tr", {},
      el("td", { text: `${c.name} (${c.client_id})` }),
      el("td", { text: c.roles.join(", ") }),
      el("td", { class: late ? "warn" : "", text: `${fmt(heard, 1)} s ago` }));
  }));
  if (!clients.length) body.append(el("tr", {}, el("td", { colspan: "3", class: "empty", text: "None connected." })));
}

// -- the new-session form -------------------------------------------------------------------
async function loadOptions() {
  state.options = await api("/api/options");
  const { generators, optimizers, defaults } = state.options;
  $("f-generator").replaceChildren(...generators.map((g) => el("option", {
    value: g.name,
    text: g.available ? g.name : `${g.name} (weights missing)`,
    ...(g.default ? { selected: "" } : {}),
  })));
  $("f-optimizer").replaceChildren(...optimizers.map((o) => el("option", {
    value: o.name,
    text: o.default ? `${o.name} (default)` : o.name,
    ...(o.default ? { selected: "" } : {}),
  })));
  describeOptimizer();
  $("f-seed").value = defaults.seed;
  $("f-stop-value").value = 75;
  $("f-channels").value = defaults.channels.join(", ");
  $("f-repeats").value = defaults.repeats;
  $("f-references").value = 4;
  $("f-timeout").value = defaults.response_timeout_s;
  $("f-represent").value = defaults.max_represent;
  // Usable only now: typing earlier would be overwritten by the defaults above.
  for (const node of document.querySelectorAll("#new-form fieldset, #create")) node.disabled = false;
}

function describeOptimizer() {
  const chosen = state.options.optimizers.find((o) => o.name === $("f-optimizer").value);
  $("help-optimizer").textContent = chosen ? chosen.description : "";
}

function clearErrors() {
  for (const node of document.querySelectorAll("#new-form .error")) node.textContent = "";
  for (const node of document.querySelectorAll("#new-form [aria-invalid]")) node.removeAttribute("aria-invalid");
  $("error-form").hidden = true;
}

function fieldError(name, message) {
  const target = $(`error-${name}`);
  if (!target) return false;
  target.textContent = message;
  const input = document.querySelector(`#new-form [name="${name}"]`) ||
    (name === "budget" || name === "generations" ? $("f-stop-value") : null) ||
    (name === "settings" ? $("f-optimizer") : null);
  if (input) {
    input.setAttribute("aria-invalid", "true");
    const ids = new Set((input.getAttribute("aria-describedby") || "").split(" ").filter(Boolean));
    ids.add(target.id);
    input.setAttribute("aria-describedby", [...ids].join(" "));
  }
  return true;
}

function readForm() {
  const form = $("new-form");
  const config = {};
  const problems = {};
  for (const input of form.querySelectorAll("input[name], select[name]")) {
    const raw = input.value.trim();
    if (!raw || input.name.startsWith("stop_")) continue;
    const kind = input.dataset.kind;
    if (kind === "ints" || kind === "floats") {
      const parts = raw.split(/[\s,]+/).filter(Boolean).map(Number);
      if (parts.some((n) => Number.isNaN(n) || (kind === "ints" && !Number.isInteger(n)))) {
        problems[input.name] = kind === "ints" ? "whole numbers separated by commas" : "numbers separated by commas";
      }
      config[input.name] = parts;
    } else if (kind === "int" || kind === "float") {
      const n = Number(raw);
      if (Number.isNaN(n) || (kind === "int" && !Number.isInteger(n))) problems[input.name] = kind === "int" ? "a whole number" : "a number";
      config[input.name] = n;
    } else {
      config[input.name] = raw;
    }
  }
  const stop = Number($("f-stop-value").value);
  if (!Number.isInteger(stop) || stop < 1) problems[$("f-stop-kind").value] = "a whole number of at least 1";
  else config[$("f-stop-kind").value] = stop;
  return { config, problems };
}

async function submitForm(event) {
  event.preventDefault();
  clearErrors();
  const { config, problems } = readForm();
  if (Object.keys(problems).length) {
    for (const [name, message] of Object.entries(problems)) fieldError(name, message);
    focusFirstError();
    return;
  }
  $("create").disabled = true;
  try {
    const created = await api("/api/sessions", { method: "POST", body: JSON.stringify(config) });
    window.location.hash = `#/session/${created.id}`;
  } catch (error) {
    let placed = false;
    for (const [name, message] of Object.entries(error.fields || {})) placed = fieldError(name, message) || placed;
    if (!placed) {
      $("error-form").textContent = error.message;
      $("error-form").hidden = false;
    }
    focusFirstError();
  } finally {
    $("create").disabled = false;
  }
}

function focusFirstError() {
  const invalid = document.querySelector("#new-form [aria-invalid]");
  (invalid || $("error-form")).focus?.();
}

// -- one session ----------------------------------------------------------------------------
async function openSession(id) {
  state.openId = id;
  state.history = { max: [], mean: [], reference_mean: [] };
  state.lastScores = [];
  state.warnings = [];
  state.shownGeneration = state.curveDrawn = state.warningsShown = -1;
  state.bestShown = null;
  state.alarmLogShown = null;
  state.imagesBusy = false;
  state.imagesAt = 0;
  state.imagesGrid += 1;
  clearTimeout(state.imagesTimer);
  $("images").replaceChildren();
  $("control-error").hidden = true;
  show("session");
  state.live = state.sessions.some((s) => s.id === id);
  if (!state.live) {
    await refreshSessions();
    state.live = state.sessions.some((s) => s.id === id);
  }
  if (state.live) {
    listen(id);
  } else {  // a past session: its file does not change, one read is enough
    listen(null);
    try {
      const detail = await api(`/api/sessions/${encodeURIComponent(id)}`);
      applyDetail({ summary: detail, history: detail.history, warnings: detail.warnings,
        alarm_log: detail.alarm_log }, true);
    } catch (error) {
      $("failure").textContent = error.message;
      $("failure").hidden = false;
      showArchive(id, state.past.find((s) => s.id === id)?.state);
    }
  }
  renderLiveList();
  renderPastList();
  $("session-title").focus();
}

async function refreshSessions() {
  const { sessions } = await api("/api/sessions");
  state.sessions = sessions;
}

function renderSession(s, latency) {
  const base = `/api/sessions/${encodeURIComponent(s.id)}`;
  $("session-title").textContent = s.name || `Session ${s.id}`;
  $("state").textContent = STATE_WORDS[s.state] || s.state;
  $("state").className = `state ${s.state}`;
  $("state").dataset.state = s.state;
  $("pause-info").hidden = !["pausing", "paused"].includes(s.state) || Boolean(s.failure);
  const by = PAUSE_WORDS[s.pause_reason] || "the operator or a restart";
  $("pause-info").textContent = s.state === "pausing"
    ? `Pausing (asked by ${by}): the rig finishes the block it has, then the session pauses. ` +
      "Keep the animal working until it says paused."
    : `Paused by ${by}. Nothing is on the rig: the animal can rest. Resume goes on with the ` +
      (s.pause_reason && s.pause_reason !== "operator" ? "held generation." : "next generation.");
  $("session-info").textContent =
    `${s.id} · ${s.generator} + ${s.optimizer} · ${s.population} images per generation` +
    (s.rig ? ` · presenter ${s.rig}` : "") + ` · ${s.data_file}`;
  $("failure").hidden = !s.failure;
  $("failure").textContent = s.failure ? `Stopped on an error: ${s.failure}. Restart the server to resume from the file.` : "";

  showControls(s);
  // Saved under the server's names: <session>-g<generation>-best.png, <session>-montage-....png.
  $("download-data").href = `${base}/data`;
  $("download-best").href = `${base}/best.png`;
  $("download-montage").href = `${base}/montage.png`;
  for (const id of ["download-best", "download-montage"]) $(id).hidden = s.best_score === null;

  // Generations are numbered from 0, as in the files, the montage, the logs and the API.
  const c = s.current;
  $("stat-generation").textContent = `${c ? c.generation : "–"} (${s.generations_done} of ${s.generations} done)`;
  $("stat-presented").textContent = c ? `${c.presented} / ${c.responses} of ${c.responses_wanted}` : "–";
  $("stat-block").textContent = c ? `${c.block}${c.acknowledged ? ", acknowledged" : ", not acknowledged"}${c.missing ? ` · ${c.missing} missing` : ""}` : "–";
  $("stat-best").textContent = fmt(s.best_score);
  $("stat-latency").textContent = latency && latency.last !== null
    ? `${fmt(latency.last * 1000, 0)} ms (median ${fmt(latency.median * 1000, 0)})` : "–";
  $("stat-warnings").textContent = String(state.warnings.length);

  // Redrawn only when they change: pushes come several times a second while a rig answers.
  if (state.history.max.length !== state.curveDrawn) drawCurve();
  if ((state.warnings[0]?.seq ?? 0) !== state.warningsShown) renderWarnings();
  if (s.generations_done - 1 !== state.shownGeneration) renderImages(s);
  $("best").hidden = s.best_score === null;  // no image yet: no broken-image icon either
  if (s.best_score !== state.bestShown && s.best_score !== null) {
    state.bestShown = s.best_score;
    $("best").src = `${base}/best.png?score=${s.best_score}`;
    $("best").alt = `Best image so far, score ${fmt(s.best_score)}`;
    $("best-caption").textContent = `(score ${fmt(s.best_score)})`;
  }
}

function showControls(s) {
  const editable = state.live;
  $("start").hidden = !(editable && s.state === "created");
  $("pause").hidden = !(editable && s.state === "running");
  // Resume needs a restart after a failure; while pausing it cancels the pause.
  $("resume").hidden = !(editable && ["pausing", "paused"].includes(s.state) && !s.failure);
  $("stop").hidden = !(editable && ["created", "running", "pausing", "paused"].includes(s.state));
  showArchive(s.id, s.state);
}

// Ended and damaged sessions can be archived: their files move out of the list (not deleted).
function showArchive(id, sessionState) {
  const held = state.sessions.some((s) => s.id === id);
  $("archive").hidden = held || !["finished", "aborted", "damaged"].includes(sessionState);
}

async function archiveOpenSession() {
  $("control-error").hidden = true;
  try {
    await api(`/api/sessions/${encodeURIComponent(state.openId)}/archive`, { method: "POST" });
    await loadPast();
    window.location.hash = "#/";
  } catch (error) {
    $("control-error").textContent = error.message;
    $("control-error").hidden = false;
  }
}

function renderImages(s) {
  // One batch of thumbnails at a time: a fast simulated rig must not queue up requests.
  if (state.imagesBusy || s.generations_done < 1) return;
  const wait = state.imagesAt + IMAGES_EVERY_MS - Date.now();
  if (wait > 0) {
    clearTimeout(state.imagesTimer);
    state.imagesTimer = setTimeout(() => {
      const latest = state.sessions.find((x) => x.id === s.id);
      if (latest && state.openId === s.id) renderImages(latest);
    }, wait);
    return;
  }
  const generation = s.generations_done - 1;
  state.shownGeneration = generation;
  state.imagesAt = Date.now();
  const scores = state.lastScores.map((score, position) => ({ score, position }));
  scores.sort((a, b) => (b.score ?? -Infinity) - (a.score ?? -Infinity));
  const base = `/api/sessions/${encodeURIComponent(s.id)}/generations/${generation}/thumbnails`;
  let pending = scores.length;
  state.imagesBusy = pending > 0;
  const grid = ++state.imagesGrid;
  const done = () => {
    if (grid !== state.imagesGrid) return;  // a grid since replaced (another session opened)
    pending -= 1;
    if (pending === 0) {
      state.imagesBusy = false;
      const latest = state.sessions.find((x) => x.id === s.id);
      if (latest && latest.generations_done - 1 !== state.shownGeneration) renderImages(latest);
    }
  };
  $("images-title").textContent = `Last complete generation (${generation}), best first`;
  $("images").replaceChildren(...scores.map(({ score, position }) => {
    const img = el("img", {
      src: `${base}/${position}.jpg?size=${THUMB_PX}`, width: THUMB_PX, height: THUMB_PX,
      alt: `image ${position}, score ${fmt(score)}`, loading: "eager",
    });
    img.addEventListener("load", done, { once: true });
    img.addEventListener("error", done, { once: true });
    return el("figure", {}, img, el("figcaption", { text: fmt(score, 1) }));
  }));
}

function renderWarnings() {
  state.warningsShown = state.warnings[0]?.seq ?? 0;
  const list = $("warnings");
  list.replaceChildren(...state.warnings.map((w) => el("li", { class: w.severity || "info" },
    el("time", { text: new Date(w.time * 1000).toLocaleTimeString() }),
    ` ${w.severity || "info"} · gen ${w.generation}: ${w.message}`)));
  if (!state.warnings.length) list.append(el("li", { class: "empty", text: "None." }));
}

// Every alarm of the open session, active or cleared: what happened while no one looked.
function renderAlarmLog(log) {
  const key = JSON.stringify(log.map((a) => [a.id, a.count, a.acknowledged, a.cleared]));
  if (key === state.alarmLogShown) return;
  state.alarmLogShown = key;
  const time = (t) => new Date(t * 1000).toLocaleTimeString();
  $("alarm-log").replaceChildren(...log.map((a) => el("li", { class: a.active ? a.severity : "cleared" },
    el("time", { text: time(a.raised) }),
    ` ${a.severity} · gen ${a.generation}: ${a.cause}`,
    el("span", { class: "muted", text: (a.acknowledged ? ` · acknowledged ${time(a.acknowledged)}` : "") +
      (a.cleared ? ` · cleared ${time(a.cleared)}` : " · active") }))));
  if (!log.length) $("alarm-log").append(el("li", { class: "empty", text: "None." }));
}

function drawCurve() {
  const svg = $("curve");
  const { max, mean, reference_mean: ref } = state.history;
  // Drawn in the element's own pixels, so text keeps its size at any width.
  const W = Math.max(320, Math.round(svg.clientWidth)) || 640;
  const H = Math.max(200, Math.round(svg.clientHeight)) || 280;
  const L = 48, R = 12, T = 12, B = 36;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const values = [...max, ...mean, ...ref].filter((v) => v !== null);
  const title = el("title", { id: "curve-summary" });
  svg.replaceChildren(title);
  const n = max.length;
  state.curveDrawn = n;
  if (!n || !values.length) {
    title.textContent = "No generation scored yet.";
    return;
  }
  let lo = Math.min(...values), hi = Math.max(...values);
  if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
  const x = (i) => L + (n === 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (n - 1));
  const y = (v) => T + (H - T - B) * (1 - (v - lo) / (hi - lo));
  const add = (tag, attrs) => { const node = document.createElementNS(SVG, tag); for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v); svg.append(node); return node; };
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
  const line = (series, cls) => {
    let d = "";
    series.forEach((v, i) => { if (v !== null) d += `${d && series[i - 1] !== null ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`; });
    if (d) add("path", { d, class: `line ${cls}` });
    if (n === 1 && series[0] !== null) add("circle", { cx: x(0), cy: y(series[0]), r: 3, class: `dot ${cls}` });
  };
  line(ref, "ref");
  line(mean, "mean");
  line(max, "max");
  const last = (s) => fmt(s[s.length - 1], 1);
  title.textContent = `${n} generations scored. Last generation: max ${last(max)}, mean ${last(mean)}, reference mean ${last(ref)}.`;
  svg.dataset.generations = String(n);
}

async function control(action) {
  $("control-error").hidden = true;
  try {
    const summary = await api(`/api/sessions/${encodeURIComponent(state.openId)}/${action}`, { method: "POST" });
    showControls(summary);
    // The button just used may be hidden now (Pause becomes Resume): keep keyboard focus.
    if ($(action).hidden) {
      const next = ["start", "pause", "resume", "stop"].map($).find((b) => !b.hidden);
      (next || $("session-title")).focus();
    }
  } catch (error) {
    $("control-error").textContent = error.message;
    $("control-error").hidden = false;
  }
}

// -- routing --------------------------------------------------------------------------------
async function route() {
  const hash = window.location.hash;
  const match = hash.match(/^#\/session\/([\w-]+)$/);
  if (match) {
    await openSession(match[1]);
  } else {
    state.openId = null;
    listen(null);
    if (hash === "#/new") {
      show("new");
      $("f-name").focus();
    } else {
      show("welcome");
    }
    renderLiveList();
    renderPastList();
  }
}

async function acknowledge(sessionId, alarmId) {
  await api(`/api/sessions/${encodeURIComponent(sessionId)}/alarms/${alarmId}/acknowledge`, { method: "POST" });
}

async function main() {
  state.board = new AlarmBoard($("alarms"), $("sound"), acknowledge);
  setInterval(checkStale, 1000);
  $("new-form").addEventListener("submit", submitForm);
  $("f-optimizer").addEventListener("change", describeOptimizer);
  for (const action of ["start", "pause", "resume"]) $(action).addEventListener("click", () => control(action));
  $("archive").addEventListener("click", archiveOpenSession);
  $("stop").addEventListener("click", () => {
    $("stop-dialog").returnValue = "";  // Escape leaves the last answer in place otherwise
    $("stop-dialog").showModal();
  });
  $("stop-dialog").addEventListener("close", () => {
    if ($("stop-dialog").returnValue === "stop") control("stop");
  });
  window.addEventListener("hashchange", route);
  window.addEventListener("resize", drawCurve);
  try {
    await Promise.all([loadOptions(), loadPast(), refreshSessions()]);
  } catch (error) {
    setConnection(`cannot reach the server: ${error.message}`, false);
  }
  await route();
}

main();
