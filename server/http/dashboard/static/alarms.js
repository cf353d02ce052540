// Alarms on the page: a banner above everything else, the tab's title, an optional sound,
// and the page's own alarm when its data go stale (the server pushes at least once a second,
// so a silent stream means a frozen or unreachable server, whatever the last numbers say).

// No update for this long: the page says its data may be out of date.
export const STALE_S = 5;
// While an alarm is unacknowledged (and sound is on), a tone this often.
const BEEP_EVERY_MS = 2500;
const SOUND_KEY = "xdream.sound";
const TITLE = "xdream-rig";

const SEVERITY_WORD = { critical: "Critical", warning: "Warning" };

export class AlarmBoard {
  // banner: the element the alarms go in; sound: the checkbox that turns the tone on;
  // acknowledge(sessionId, alarmId): tells the server an operator has seen an alarm.
  constructor(banner, sound, acknowledge) {
    this.banner = banner;
    this.sound = sound;
    this.acknowledge = acknowledge;
    this.alarms = [];      // [{session, alarm}] of every live session
    this.staleFor = 0;     // seconds since the last update (0: fresh)
    this.audio = null;
    this.beeps = 0;
    this.lastBeep = 0;
    this.shown = "";       // what the banner shows, to redraw only on change
    sound.checked = localStorage.getItem(SOUND_KEY) === "on";
    sound.addEventListener("change", () => {
      localStorage.setItem(SOUND_KEY, sound.checked ? "on" : "off");
      if (sound.checked) this.unlockAudio();
    });
  }

  // The active alarms of every live session (their summaries, as pushed).
  setSessions(sessions) {
    this.alarms = sessions.flatMap((s) => (s.alarms || []).map((alarm) => ({ session: s, alarm })));
    this.render();
  }

  setStale(seconds) {
    this.staleFor = seconds >= STALE_S ? seconds : 0;
    this.render();
  }

  // Unacknowledged alarms, the page's own included: what the title counts and the tone is for.
  unseen() {
    return this.alarms.filter(({ alarm }) => alarm.acknowledged === null).length + (this.staleFor ? 1 : 0);
  }

  render() {
    const stale = this.staleFor
      ? `No update from the server for ${Math.floor(this.staleFor)} s`
      : "";
    const key = JSON.stringify([stale, this.alarms.map(({ session, alarm }) =>
      [session.id, alarm.id, alarm.count, alarm.acknowledged, alarm.cause])]);
    if (key !== this.shown) {
      this.shown = key;
      this.draw(stale);
    }
    const unseen = this.unseen();
    const any = unseen || this.alarms.length;
    document.title = unseen ? `(${unseen}) ALARM · ${TITLE}` : any ? `⚠ ${TITLE}` : TITLE;
    document.body.classList.toggle("alarmed", Boolean(unseen));
    this.maybeBeep(unseen);
  }

  draw(stale) {
    const items = [];
    if (stale) {
      items.push(this.item("critical", "stale", "This page",
        `${stale}: what this page shows may be out of date.`,
        "Check that the server is running and that this computer reaches it; the page " +
        "reconnects by itself.", null));
    }
    const order = { critical: 0, warning: 1 };
    const sorted = [...this.alarms].sort((a, b) =>
      (order[a.alarm.severity] ?? 2) - (order[b.alarm.severity] ?? 2) || b.alarm.id - a.alarm.id);
    for (const { session, alarm } of sorted) {
      items.push(this.item(alarm.severity, alarm.kind, session.name || `session ${session.id}`,
        alarm.cause, alarm.action, { session, alarm }));
    }
    this.banner.replaceChildren(...items);
    this.banner.hidden = !items.length;
  }

  item(severity, kind, where, cause, action, source) {
    const node = document.createElement("div");
    node.className = `alarm ${severity}`;
    node.dataset.kind = kind;
    const head = document.createElement("p");
    head.className = "alarm-head";
    const word = document.createElement("strong");
    word.textContent = SEVERITY_WORD[severity] || severity;
    head.append(word, " · ");
    if (source) {
      const link = document.createElement("a");
      link.href = `#/session/${source.session.id}`;
      link.textContent = where;
      head.append(link);
      const when = new Date(source.alarm.raised * 1000).toLocaleTimeString();
      const times = source.alarm.count > 1 ? ` (${source.alarm.count} times)` : "";
      head.append(` · generation ${source.alarm.generation} · since ${when}${times}`);
    } else {
      head.append(where);
    }
    const what = document.createElement("p");
    what.className = "alarm-cause";
    what.textContent = cause;
    const todo = document.createElement("p");
    todo.className = "alarm-action";
    todo.textContent = action;
    node.append(head, what, todo);
    if (source) {
      if (source.alarm.acknowledged === null) {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = "Acknowledge";
        button.addEventListener("click", () => {
          button.disabled = true;
          this.acknowledge(source.session.id, source.alarm.id).catch(() => { button.disabled = false; });
        });
        node.append(button);
      } else {
        const seen = document.createElement("p");
        seen.className = "alarm-seen";
        seen.textContent = "Acknowledged: shown until the cause is gone.";
        node.append(seen);
      }
    }
    return node;
  }

  // Browsers play sound only after a click on the page: the sound checkbox is one.
  unlockAudio() {
    if (!this.audio && window.AudioContext) this.audio = new AudioContext();
    this.audio?.resume?.();
  }

  maybeBeep(unseen) {
    const now = Date.now();
    if (!unseen || !this.sound.checked || now - this.lastBeep < BEEP_EVERY_MS) return;
    this.lastBeep = now;
    this.beeps += 1;
    document.body.dataset.beeps = String(this.beeps);  // what tests can count
    if (!this.audio) return;
    const tone = this.audio.createOscillator();
    const gain = this.audio.createGain();
    tone.frequency.value = 880;
    gain.gain.value = 0.15;
    tone.connect(gain).connect(this.audio.destination);
    tone.start();
    tone.stop(this.audio.currentTime + 0.25);
  }
}
