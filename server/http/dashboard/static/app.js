// xdream-rig dashboard: plain browser JavaScript modules, no build step and no packages.
// It reads the REST API and listens to the server-sent-event stream /api/live, which pushes
// the session list, the rig clients and (for the open session) its progress on every change.
import { AlarmBoard } from "./alarms.js";
import { drawCurve, fmt, followPointer } from "./curve.js";
import { el } from "./dom.js";
import { renderThreadCards, ThreadRows } from "./threads.js";

const $ = (id) => document.getElementById(id);
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
  history: emptyHistory(),
  threadHistories: [], // each thread's history, for a session of several threads
  threadsDrawn: -1,    // generations in the thread cards as drawn
  threadRows: null,    // the form's extra threads (ThreadRows)
  shown: null,         // the open session's summary as last drawn (live or past)
  references: [],     // each reference image's mean score (whole list on every push)
  notes: [],
  config: null,       // the open session's settings
  curvePick: "score", // what the curve showed when last drawn
  channelsListed: -1, // channels in the picker
  notesShown: -1,     // notes in the list as drawn
  rigNames: null,     // the presenter names offered, as listed
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

// ``pushed`` (generations ``pushed.start`` on) into ``history``, which it returns.
function merge(history, pushed) {
  for (const key of Object.keys(history)) {
    history[key] = history[key].slice(0, pushed.start).concat(pushed[key] || []);
  }
  return history;
}

function emptyHistory() {
  return { max: [], mean: [], reference_mean: [], channels: [], reference_channels: [], best_positions: [] };
}

// -- small helpers --------------------------------------------------------------------------

// Seconds as h:mm:ss (or m:ss).
function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  const [h, m, r] = [Math.floor(s / 3600), Math.floor((s % 3600) / 60), s % 60];
  const two = (v) => String(v).padStart(2, "0");
  return h ? `${h}:${two(m)}:${two(r)}` : `${m}:${two(r)}`;
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
  if (!$("new").hidden) renderRigNames();
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
  merge(state.history, h);
  (detail.thread_histories || []).forEach((th, k) => {
    state.threadHistories[k] = merge(state.threadHistories[k] || emptyHistory(), th);
  });
  if (h.references) state.references = h.references;  // sent when a generation was added
  if (detail.config) state.config = detail.config;
  if (full) state.notes = [];
  state.notes = state.notes.concat(detail.notes || []);
  state.lastScores = h.last_scores;
  state.warnings = detail.warnings.slice().reverse().concat(state.warnings).slice(0, 100);
  renderSession(detail.summary, h.loop_latency_s);
  if (detail.alarm_log) renderAlarmLog(detail.alarm_log);
  renderNotes();
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
  state.threadRows.setOptions(state.options);
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
  $("f-on").value = defaults.params.on_ms;
  $("f-off").value = defaults.params.off_ms;
  renderEstimate();
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
  const target = $(`error-${name.startsWith("threads.") ? "threads" : name}`);
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
    if (input.dataset.kind === "bool") {
      config[input.name] = input.checked;
      continue;
    }
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
  // "params.on_ms" and the like are fields of a nested setting.
  for (const name of Object.keys(config).filter((n) => n.includes("."))) {
    const [outer, inner] = name.split(".");
    config[outer] = { ...(config[outer] || {}), [inner]: config[name] };
    if (problems[name]) problems[outer] = problems[name];
    delete config[name];
    delete problems[name];
  }
  objectiveOf(config);
  const recorded = recordedChannels(config.rig);
  const used = [...(config.channels || config.objective?.channels || config.objective?.drive || [0]),
    ...(config.objective?.suppress || [])];
  if (recorded !== null && used.some((c) => c >= recorded)) {
    problems.channels = `the recorder of ${config.rig || "this rig"} sends ${recorded} channels (0 to ${recorded - 1})`;
  }
  const extra = state.threadRows.read();
  if (extra.problems.length) problems.threads = extra.problems.join("; ");
  if (extra.threads.length) config.threads = [{}, ...extra.threads];
  const stop = Number($("f-stop-value").value);
  if (!Number.isInteger(stop) || stop < 1) problems[$("f-stop-kind").value] = "a whole number of at least 1";
  else config[$("f-stop-kind").value] = stop;
  return { config, problems };
}

// The objective select and its fields as the config's ``objective`` (server/engine/
// objectives.py); the plain mean keeps ``channels`` and ``channel_weights`` as they are.
function objectiveOf(config) {
  const kind = config.objective_kind;
  delete config.objective_kind;
  const extra = config.objective || {};
  delete config.objective;
  if (kind === "mean") return;
  const channels = config.channels || [0];
  const objective = { kind: kind === "mean-min" ? "mean" : kind };
  if (kind === "mean-min") Object.assign(objective, { channels, minimize: true, weights: config.channel_weights });
  else if (kind === "selectivity") Object.assign(objective, { drive: channels, suppress: extra.suppress || [] });
  else if (kind === "target") Object.assign(objective, { channels, target: extra.target || [] });
  else objective.channels = channels;
  delete config.channels;
  delete config.channel_weights;
  config.objective = objective;
}

// Only the fields of the chosen objective show.
function showObjectiveFields() {
  const kind = $("f-objective").value;
  for (const field of document.querySelectorAll("#new-form [data-objective]")) {
    field.hidden = !field.dataset.objective.split(" ").includes(kind);
  }
}

// The fewest channels a recorder of ``rig`` (any, if empty) last sent; null if unknown.
function recordedChannels(rig) {
  const known = state.clients.filter((c) => c.channels !== null && c.channels !== undefined &&
    (!rig || c.name === rig)).map((c) => c.channels);
  return known.length ? Math.min(...known) : null;
}

// The presenter field offers the presenters connected now, and says when the name typed
// is not one of them (a presenter may still connect later: not an error).
function renderRigNames() {
  const names = [...new Set(state.clients.filter((c) => c.roles.includes("presenter")).map((c) => c.name))].sort();
  const key = names.join("\n");
  if (key !== state.rigNames) {
    state.rigNames = key;
    $("rig-names").replaceChildren(...names.map((n) => el("option", { value: n })));
  }
  const typed = $("f-rig").value.trim();
  const help = $("help-rig");
  const known = names.length ? `Connected: ${names.join(", ")}.` : "No presenter is connected now.";
  help.textContent = typed && !names.includes(typed)
    ? `No presenter named ${typed} is connected now. ${known}` : `The presenter's hello name; empty: any. ${known}`;
  help.classList.toggle("warn", Boolean(typed && !names.includes(typed)));
}

// How long the images take to show, from the form: generations x stimuli x presentations
// x (on + off). Re-presented and aborted trials come on top.
function renderEstimate() {
  if (!state.options) return;
  const value = (id) => Number($(id).value);
  const optimizer = state.options.optimizers.find((o) => o.name === $("f-optimizer").value);
  const population = value("f-population") || optimizer?.population?.[$("f-generator").value] || 0;
  const stop = value("f-stop-value");
  const generations = $("f-stop-kind").value === "generations" ? stop : Math.ceil(stop / (population || 1));
  // Every thread's images are in every block: a thread without its own count has the
  // session's; a thread per channel is one per channel scored.
  const perChannel = $("f-thread-per-channel").checked
    ? ($("f-channels").value.split(/[\s,]+/).filter(Boolean).length - 1) * population : 0;
  const extra = perChannel +
    state.threadRows.read().threads.reduce((n, t) => n + (t.population || population), 0);
  const trials = (population + extra + value("f-references")) * (value("f-repeats") || 1);
  const seconds = (generations * trials * (value("f-on") + value("f-off"))) / 1000;
  $("estimate").textContent = Number.isFinite(seconds) && seconds > 0 && population
    ? `About ${duration(seconds)} (h:mm:ss) of presentation: ${generations} generations × ${trials} trials × ` +
      `${value("f-on") + value("f-off")} ms. Re-presented and aborted trials come on top.`
    : "";
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
  state.history = emptyHistory();
  state.threadHistories = [];
  state.threadsDrawn = -1;
  state.shown = null;
  $("threads").replaceChildren();
  state.references = [];
  state.notes = [];
  state.config = null;
  state.channelsListed = -1;
  state.notesShown = -1;
  $("references").replaceChildren();
  $("best-strip").replaceChildren();
  $("channel").value = "score";
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
        alarm_log: detail.alarm_log, notes: detail.notes, config: detail.config,
        thread_histories: detail.thread_histories }, true);
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
  state.shown = s;
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
  const many = (s.threads || []).length > 1;
  // With several threads, the large views are thread 0's (the cards below show each).
  const first = many ? ` (${s.threads[0].name || "thread 0"})` : "";
  for (const node of document.querySelectorAll(".of-thread")) node.textContent = first;
  $("session-info").textContent =
    (many ? `${s.id} · ${s.threads.length} threads (below)` :
      `${s.id} · ${s.generator} + ${s.optimizer} · ${s.population} images per generation` +
      (s.objective ? ` · ${s.objective}` : "") + (s.start ? ` · ${s.start}` : "")) +
    (s.rig ? ` · presenter ${s.rig}` : "") + ` · ${s.data_file}`;
  $("failure").hidden = !s.failure;
  $("failure").textContent = s.failure ? `Stopped on an error: ${s.failure}. Restart the server to resume from the file.` : "";

  showControls(s);
  // Saved under the server's names: <session>-g<generation>-best.png, <session>-montage-....png,
  // <session>.nwb.
  $("download-data").href = `${base}/data`;
  $("download-best").href = `${base}/best.png`;
  $("download-montage").href = `${base}/montage.png`;
  $("download-scores").href = `${base}/scores.csv`;
  $("download-nwb").href = `${base}/session.nwb`;
  for (const id of ["download-best", "download-montage", "download-scores"]) $(id).hidden = s.best_score === null;
  $("note-form").hidden = !state.live;

  // Generations are numbered from 0, as in the files, the montage, the logs and the API.
  const c = s.current;
  $("stat-generation").textContent = `${c ? c.generation : "–"} (${s.generations_done} of ${s.generations} done)`;
  $("stat-presented").textContent = c ? `${c.presented} / ${c.responses} of ${c.responses_wanted}` : "–";
  $("stat-block").textContent = c ? `${c.block}${c.acknowledged ? ", acknowledged" : ", not acknowledged"}${c.missing ? ` · ${c.missing} missing` : ""}` : "–";
  $("stat-best").textContent = fmt(s.best_score);
  const best = bestReference();
  $("stat-reference").textContent = best ? `${fmt(best.mean)} (image ${best.image}, ${best.showings}×)` : "–";
  const p = s.progress || {};
  $("stat-time").textContent = `${duration(p.running_s)} · ${p.eta_s === null || p.eta_s === undefined ? "left: –" : `${duration(p.eta_s)} left`}`;
  $("stat-rate").textContent = p.s_per_generation ? `${fmt(p.responses_per_s, 1)} · ${fmt(p.s_per_generation, 1)} s/gen` : fmt(p.responses_per_s, 1);
  $("stat-latency").textContent = latency && latency.last !== null
    ? `${fmt(latency.last * 1000, 0)} ms (median ${fmt(latency.median * 1000, 0)})` : "–";
  $("stat-warnings").textContent = String(state.warnings.length);

  // Redrawn only when they change: pushes come several times a second while a rig answers.
  renderChannelPicker(state.config);
  if (state.history.max.length !== state.curveDrawn || $("channel").value !== state.curvePick) redrawCurve();
  if (s.generations_done !== state.threadsDrawn) {
    state.threadsDrawn = s.generations_done;
    renderThreadCards($("threads"), $("threads-box"), s, state.threadHistories);
  }

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
  renderReferences(s);  // they change with each generation too: drawn at the same pace
  renderBestStrip(s);
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
  const which = (s.threads || []).length > 1 ? ` of ${s.threads[0].name || "thread 0"}` : "";
  $("images-title").textContent = `Last complete generation (${generation})${which}, best first`;
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

// Figures kept by key: a thumbnail already on the page stays (no new request, no new
// decode); captions change in place and the order follows ``items``.
function syncFigures(container, items) {
  const old = new Map([...container.children].map((f) => [f.dataset.key, f]));
  const keep = new Set(items.map((item) => item.key));
  for (const [key, figure] of old) if (!keep.has(key)) figure.remove();
  for (const item of items) {
    let figure = old.get(item.key);
    if (!figure) {
      figure = el("figure", { "data-key": item.key },
        el("img", { src: item.src, width: item.size, height: item.size, alt: item.alt }),
        el("figcaption"));
    }
    figure.firstChild.alt = item.alt;
    if (figure.lastChild.textContent !== item.caption) figure.lastChild.textContent = item.caption;
    container.append(figure);  // moves it into place if it was there already
  }
}

// The natural reference images, best mean first: what the evolved images must beat.
function renderReferences(s) {
  const base = `/api/sessions/${encodeURIComponent(s.id)}/references`;
  const sorted = [...state.references].sort((a, b) => b.mean - a.mean);
  syncFigures($("references"), sorted.map((r) => ({
    key: String(r.image), src: `${base}/${r.image}.jpg?size=${THUMB_PX}`, size: THUMB_PX,
    alt: `reference image ${r.image}, mean score ${fmt(r.mean)}`,
    caption: `${fmt(r.mean, 1)} (${r.showings}×)`,
  })));
  $("references-box").hidden = !sorted.length;
}

// The best image of each of the last generations: how the evolved images change.
const STRIP = 12;
function renderBestStrip(s) {
  const positions = state.history.best_positions;
  const base = `/api/sessions/${encodeURIComponent(s.id)}/generations`;
  const items = [];
  for (let g = Math.max(0, positions.length - STRIP); g < positions.length; g += 1) {
    if (positions[g] === null) continue;
    items.push({ key: String(g), src: `${base}/${g}/thumbnails/${positions[g]}.jpg?size=80`, size: 80,
      alt: `best image of generation ${g}, score ${fmt(state.history.max[g])}`,
      caption: `${g}: ${fmt(state.history.max[g], 1)}` });
  }
  syncFigures($("best-strip"), items);
  $("best-strip-box").hidden = !items.length;
}

function renderNotes() {
  if (state.notes.length === state.notesShown) return;
  state.notesShown = state.notes.length;
  const list = $("notes");
  list.replaceChildren(...state.notes.map((n) => el("li", {},
    el("time", { text: new Date(n.time * 1000).toLocaleString() }), ` gen ${n.generation}: ${n.text}`)));
  if (!state.notes.length) list.append(el("li", { class: "empty", text: "None." }));
}

async function addNote(event) {
  event.preventDefault();
  const text = $("note-text").value.trim();
  $("note-error").textContent = "";
  if (!text) return;
  try {
    await api(`/api/sessions/${encodeURIComponent(state.openId)}/notes`, { method: "POST", body: JSON.stringify({ text }) });
    $("note-text").value = "";  // the stream brings it into the list
  } catch (error) {
    $("note-error").textContent = error.message;
  }
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

// The curve shows the score (generation max and mean, the references' mean, the best
// reference image's mean across the run), or one recorded channel's mean count.
function redrawCurve() {
  const h = state.history;
  const pick = $("channel").value || "score";
  let series;
  const marks = [];
  if (pick === "score") {
    series = [
      { name: "generation max", cls: "max", values: h.max },
      { name: "generation mean", cls: "mean", values: h.mean },
      { name: "references (mean)", cls: "ref", values: h.reference_mean },
    ];
    const best = bestReference();
    if (best) marks.push({ name: `best reference image (${best.image}, mean of ${best.showings})`, cls: "bestref", value: best.mean });
  } else {
    const c = Number(pick);
    const at = (rows) => rows.map((row) => (row ? row[c] ?? null : null));
    series = [
      { name: `channel ${c}, evolved (mean)`, cls: "mean", values: at(h.channels) },
      { name: `channel ${c}, references (mean)`, cls: "ref", values: at(h.reference_channels) },
    ];
  }
  drawCurve($("curve"), series, marks);
  $("legend").replaceChildren(...[...series, ...marks].map((s) =>
    el("li", {}, el("span", { class: `swatch ${s.cls}` }), s.name)));
  state.curveDrawn = h.max.length;
  state.curvePick = pick;
}

function bestReference() {
  return state.references.reduce((best, r) => (!best || r.mean > best.mean ? r : best), null);
}

// The channel picker lists every channel the recorder sent (their count can grow).
function renderChannelPicker(config) {
  const recorded = Math.max(0, ...state.history.channels.map((row) => (row ? row.length : 0)));
  if (recorded === state.channelsListed) return;
  state.channelsListed = recorded;
  const picker = $("channel");
  const kept = picker.value || "score";
  const objective = config?.objective;
  const scored = new Set(objective ? [...(objective.channels || objective.drive || []), ...(objective.suppress || [])]
    : config?.channels || []);
  picker.replaceChildren(el("option", { value: "score", text: `score (channels ${[...scored].join(", ") || "–"})` }),
    ...Array.from({ length: recorded }, (_, c) => el("option", { value: String(c),
      text: `channel ${c}${scored.has(c) ? " (scored)" : ""}` })));
  picker.value = [...picker.options].some((o) => o.value === kept) ? kept : "score";
  $("channel-field").hidden = recorded === 0;
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
      renderRigNames();
      renderEstimate();
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
  state.threadRows = new ThreadRows($("thread-rows"), $("add-thread"));
  setInterval(checkStale, 1000);
  $("new-form").addEventListener("submit", submitForm);
  $("new-form").addEventListener("input", () => { renderEstimate(); renderRigNames(); });
  $("new-form").addEventListener("change", renderEstimate);
  $("f-optimizer").addEventListener("change", describeOptimizer);
  $("f-objective").addEventListener("change", showObjectiveFields);
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
  window.addEventListener("resize", () => {
    redrawCurve();
    if (state.shown) renderThreadCards($("threads"), $("threads-box"), state.shown, state.threadHistories);
  });
  $("channel").addEventListener("change", redrawCurve);
  followPointer($("curve"), $("curve-readout"));
  $("note-form").addEventListener("submit", addNote);
  try {
    await Promise.all([loadOptions(), loadPast(), refreshSessions()]);
  } catch (error) {
    setConnection(`cannot reach the server: ${error.message}`, false);
  }
  await route();
}

main();
