// The station's operator panel. No framework and no build step: the station is often offline,
// and this page only renders what the server sends (GET /api/events, server-sent events).
"use strict";

const WORDS = {passed: "\u2714 PASSED", failed: "\u2716 FAILED", error: "\u26A0 RIG FAULT",
  "harness-error": "\u26A0 RIG FAULT", skipped: "\u2013 not applicable", running: "\u25B6 RUNNING",
  waiting: "\u00B7 waiting"};
const VERDICT_CLASS = {pass: "pass", fail: "fail"};
const slots = {};          // socket name -> {el, view}
window.panelLatency = [];  // seconds from a finished test written by the run to it shown here

function $(root, sel) { return root.querySelector(sel); }

async function post(path, body) {
  const r = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json", "X-Rig-Panel": "1"},
    body: JSON.stringify(body)});
  const data = await r.json().catch(() => ({ok: false, error: `the station answered ${r.status}`}));
  if (!r.ok || !data.ok) throw new Error(data.error || `refused (${r.status})`);
  return data;
}

function makeSlot(view) {
  const el = document.getElementById("slot-template").content.firstElementChild.cloneNode(true);
  el.id = `slot-${view.name}`;
  el.dataset.socket = view.name;
  $(el, ".slot-title").textContent = `Socket ${view.name}` + (view.emulated ? " (emulated bench)" : "");
  const serial = $(el, ".serial");
  $(el, ".scan").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const refusal = $(el, ".refusal");
    refusal.textContent = "";
    try {
      await post("/api/start", {socket: view.name, serial: serial.value.trim()});
      serial.value = "";
    } catch (e) { refusal.textContent = e.message; serial.select(); }
  });
  for (const abort of el.querySelectorAll(".abort")) {  // beside the steps, and in a prompt's dialog
    abort.addEventListener("click", async () => {
      if (!abort.classList.contains("armed")) {   // a stray click must not stop a unit's test
        abort.classList.add("armed");
        abort.textContent = "Press again to abort";
        setTimeout(() => { abort.classList.remove("armed"); abort.textContent = "Abort"; }, 5000);
        return;
      }
      abort.classList.remove("armed");
      abort.textContent = "Aborting…";
      try { await post("/api/abort", {socket: view.name}); } catch (e) { $(el, ".unit-line").textContent = e.message; }
    });
  }
  const answer = (text) => {
    const p = slots[view.name].view.run && slots[view.name].view.run.prompt;
    if (p) post("/api/answer", {socket: view.name, prompt: p.id, answer: text})
      .catch((e) => { $(el, ".prompt-left").textContent = e.message; });
  };
  $(el, ".prompt-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const p = slots[view.name].view.run.prompt;
    answer(p.kind === "number" ? $(el, ".prompt-number").value.trim() : "");
  });
  $(el, ".prompt-yes").addEventListener("click", () => answer("yes"));
  $(el, ".prompt-no").addEventListener("click", () => answer("no"));
  el.addEventListener("keydown", (ev) => {
    const p = slots[view.name].view.run && slots[view.name].view.run.prompt;
    if (p && p.kind === "yes_no" && (ev.key === "y" || ev.key === "n")) answer(ev.key === "y" ? "yes" : "no");
  });
  document.getElementById("slots").appendChild(el);
  slots[view.name] = {el, view, promptShown: null, lastDone: null};
}

function num(x) { return String(Number(Number(x).toPrecision(5))); }

function measurementLine(m) {
  const v = m.value === null ? "nothing observed" : `${num(m.value)} ${m.unit}`;
  const lo = m.low === null ? "" : num(m.low), hi = m.high === null ? "" : num(m.high);
  return `${m.passed ? "\u2714" : "\u2716"} ${m.name}: ${v}  limit ${lo}..${hi} ${m.unit}`;
}

function renderSteps(el, tests) {
  const list = $(el, ".steps");
  list.replaceChildren(...tests.map((t) => {
    const li = document.createElement("li");
    const state = t.state === "done" ? t.verdict : t.state;
    li.className = state;
    li.dataset.nodeid = t.nodeid;
    const s = document.createElement("span"); s.className = "state"; s.textContent = WORDS[state] || state;
    const title = document.createElement("span"); title.textContent = ` ${t.title} `;
    const reqs = document.createElement("span"); reqs.className = "reqs"; reqs.textContent = t.requirements.join(", ");
    li.append(s, title, reqs);
    for (const m of t.measurements || []) {
      const line = document.createElement("span");
      line.className = "m" + (m.passed ? "" : " bad");
      line.textContent = measurementLine(m);
      li.append(line);
    }
    if (t.state === "done" && t.verdict !== "passed" && t.message) {
      const why = document.createElement("span"); why.className = "m bad"; why.textContent = t.message;
      li.append(why);
    }
    return li;
  }));
}

function verdictWhy(v) {
  if (v.verdict === "pass") return "The unit passed every end-of-line test: box it.";
  if (v.verdict === "fail") return `Failed ${v.failing.map((f) => f.id).join(", ")}: route the unit to repair.`;
  if (v.verdict === "wrong-unit") return `${v.wrong_unit}. Put the right unit on the socket or scan again.`;
  if (v.instruments.length) return `Check: ${v.instruments.join(", ")}. Not a unit failure: retest the unit.`;
  return "The unit was not judged: retest it.";
}

function renderSlot(name, live = true) {
  const {el, view} = slots[name];
  const run = view.run;
  el.classList.toggle("busy", view.busy);
  el.classList.toggle("done", !!(run && run.verdict && !view.busy));
  el.classList.toggle("asking", !!(run && run.prompt));
  if (!run) { $(el, ".steps").replaceChildren(); return; }
  const done = run.tests.filter((t) => t.state === "done").length;
  $(el, ".unit-line").textContent = run.aborting ? `Aborting ${run.serial}: making the rig safe…`
    : `Testing ${run.serial}: ${done} of ${run.tests.length} tests done`;
  const wait = $(el, ".wait"), bar = $(el, ".wait-bar");
  if (run.wait) {
    wait.textContent = `${run.wait.reason}: ${Math.max(0, run.wait.total - run.wait.elapsed).toFixed(0)} s left`;
    bar.max = run.wait.total; bar.value = run.wait.elapsed;
  } else {
    wait.textContent = run.current ? `now: ${(run.tests.find((t) => t.nodeid === run.current) || {}).title || ""}` : "";
    bar.max = Math.max(1, run.tests.length); bar.value = done;
  }
  renderSteps(el, run.tests);
  renderPrompt(name);
  const box = $(el, ".verdict");
  if (run.verdict && !view.busy) {
    box.className = "verdict " + run.verdict.class;
    box.dataset.verdict = run.verdict.verdict;
    $(box, ".word").textContent = run.verdict.word;
    $(box, ".why").textContent = verdictWhy(run.verdict);
    const reqs = $(box, ".requirements");
    reqs.replaceChildren(...run.verdict.failing.map((f) => {
      const li = document.createElement("li"); li.textContent = `${f.id}: ${f.text}`; return li;
    }));
    const safe = run.safe ? (run.safe.ok ? "Rig left in its safe state." : `RIG NOT CONFIRMED SAFE: ${run.safe.detail}`) : "";
    const faults = run.verdict.rig_faults.length ? `Rig fault: ${run.verdict.rig_faults.join("; ")}.  ` : "";
    $(box, ".record").textContent = `${run.serial}  ${run.verdict.model || ""}  ${safe}  ${faults}${run.verdict.record || ""}`;
    const cert = $(box, ".certificate");
    cert.style.display = run.verdict.certificate ? "" : "none";
    cert.href = `/certificate/${encodeURIComponent(name)}?run=${encodeURIComponent(run.started)}`;
  }
  if (run.last_done_t && run.last_done_t !== slots[name].lastDone) {
    slots[name].lastDone = run.last_done_t;
    if (live) window.panelLatency.push(Date.now() / 1000 - run.last_done_t);  // not what a (re)load finds done
  }
}

function renderPrompt(name) {
  const s = slots[name], el = s.el, p = s.view.run && s.view.run.prompt;
  if (!p) { s.promptShown = null; return; }
  $(el, ".prompt-left").textContent = `Unanswered after ${p.timeout_s} s this ends as RIG FAULT - RETEST.`;
  if (s.promptShown === p.id) return;
  s.promptShown = p.id;
  $(el, ".prompt-text").textContent = p.text;
  $(el, ".prompt-unit").textContent = p.unit || "";
  const number = $(el, ".prompt-number");
  number.style.display = p.kind === "number" ? "" : "none";
  number.value = "";
  $(el, ".prompt-continue").style.display = p.kind === "yes_no" ? "none" : "";
  $(el, ".prompt-continue").textContent = p.kind === "number" ? "OK" : "Continue";
  for (const b of [".prompt-yes", ".prompt-no"]) $(el, b).style.display = p.kind === "yes_no" ? "" : "none";
  (p.kind === "number" ? number : p.kind === "yes_no" ? $(el, ".prompt-yes") : $(el, ".prompt-continue")).focus();
}

function renderShift(shift) {
  const c = shift.counts;
  for (const [id, v] of [["n-tested", c.tested], ["n-passed", c.passed], ["n-failed", c.failed],
    ["n-retests", c.retests], ["n-rig-faults", c.rig_faults]]) document.getElementById(id).textContent = v;
  document.getElementById("n-fpy").textContent = c.first_pass_yield === null ? "-" : `${c.first_pass_yield} %`;
  document.getElementById("recent").replaceChildren(...shift.recent.map((u) => {
    const tr = document.createElement("tr");
    const cls = VERDICT_CLASS[u.verdict] || "retest";
    const word = u.verdict === "pass" ? "PASS" : u.verdict === "fail" ? "FAIL" : "RETEST";
    const why = u.failing.length ? u.failing.join(", ") : u.instruments.join(", ");
    for (const [text, c2] of [[new Date(u.t * 1000).toLocaleTimeString(), ""], [u.socket, ""], [u.serial, ""],
      [u.model || "", ""], [word, cls], [why, ""]]) {
      const td = document.createElement("td"); td.textContent = text; if (c2) td.className = c2; tr.append(td);
    }
    return tr;
  }));
}

function focusScan() {
  const active = document.activeElement;
  if (active && active.closest && active.closest(".dialog, .scan")) return;
  const idle = Object.values(slots).find((s) => !s.view.busy);
  if (idle) $(idle.el, ".serial").focus();
}

function applyState(state) {
  document.getElementById("station-name").textContent = state.station;
  document.title = `${state.station}: end-of-line station`;
  document.documentElement.style.setProperty("--cols", Math.min(state.slots.length, 2));
  for (const v of state.slots) {
    if (!slots[v.name]) makeSlot(v);
    slots[v.name].view = v;
    renderSlot(v.name, false);
  }
  renderShift(state.shift);
  focusScan();
}

function connect() {
  const link = document.getElementById("link");
  const source = new EventSource("/api/events");
  source.addEventListener("open", () => { link.textContent = "live"; link.className = ""; });
  source.addEventListener("error", () => { link.textContent = "station not reachable: reconnecting…"; link.className = "link-down"; });
  source.addEventListener("state", (ev) => applyState(JSON.parse(ev.data)));
  source.addEventListener("slot", (ev) => {
    const v = JSON.parse(ev.data);
    if (!slots[v.name]) makeSlot(v);
    slots[v.name].view = v;
    renderSlot(v.name);
    focusScan();
  });
  source.addEventListener("shift", (ev) => renderShift(JSON.parse(ev.data)));
}

connect();
