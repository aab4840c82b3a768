// The labeling page. Everything from the server (model output, prompts, names) is inserted
// with textContent or as element attributes — never as HTML.
"use strict";
let current = null;
let busy = false;
let players = [];
let polling = null;
let progress = { done: 0, open: 0 };  // read from /api/me, counted here in between
const $ = (id) => document.getElementById(id);
const PAIRS = ["segments", "text_pair"];
const RATINGS = ["rating", "clip_rating"];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else if (k === "on") for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

// A label that reads "Left"/"Right" beside each other, "Top"/"Bottom" when stacked (phones).
function sideName(i) {
  return el("span", {}, el("span", { class: "wide-only", text: i ? "Right" : "Left" }),
    el("span", { class: "narrow-only", text: i ? "Bottom" : "Top" }));
}

async function api(path, options = {}) {
  const resp = await fetch(path, { credentials: "same-origin", headers: { "content-type": "application/json" }, ...options });
  if (resp.status === 401) {
    $("task").replaceChildren(el("p", { text: "Not signed in: open your personal sign-in link." }));
    $("keys").replaceChildren();
    throw new Error("401");
  }
  return resp;
}

const STATES = {
  waiting: "Training is paused until more judgements arrive — yours count right now.",
  over: "This run is over: its remaining queries were withdrawn. Thank you — there is nothing more to judge here.",
};

async function loadMe() {
  const me = await (await api("/api/me")).json();
  $("who").textContent = me.name;
  $("admin-link").hidden = !me.admin;
  $("status").textContent = STATES[me.run_state] || "";
  $("status").className = me.run_state;
  progress = { done: me.done, open: me.open };
  return me;
}

function showProgress(done, open) {
  $("progress").textContent = `${done} ${done === 1 ? "judgement" : "judgements"} · ${open} waiting`;
}

async function next() {
  $("error").textContent = "";
  clearTimeout(polling);
  const resp = await api("/api/next", { method: "POST" });
  if (resp.status === 204) {
    current = null;
    players = [];
    const me = await loadMe();
    showProgress(progress.done, progress.open);
    const text = me.run_state === "over" ? "Nothing more to judge: the run is over." : "Nothing to judge right now. New queries appear here as training goes on.";
    $("task").replaceChildren(el("p", { class: "muted", text }));
    showKeys(null);
    if (me.run_state !== "over") polling = setTimeout(() => { if (!current) next(); }, 3000);
    return;
  }
  current = await resp.json();
  showProgress(progress.done, progress.open);
  render(current);
}

// -- the clip player: play/pause, replay, slow motion, frame counter, loop marker ------------
function player(item, i) {
  const name = i ? "Right" : "Left";
  const video = el("video", { src: item.clip, muted: "", playsinline: "", loop: "", autoplay: "", preload: "auto", "aria-label": `${name} clip` });
  video.muted = true;
  const mark = el("span", { class: "loopmark", text: "↻ loop" });
  const fill = el("div", { class: "fill" });
  const counter = el("span", { class: "counter", text: "frame –" });
  const fps = item.fps || 20;
  const frames = item.frames || null;
  const playBtn = el("button", { type: "button", title: "play / pause (space)", "aria-label": `play or pause ${name}`, text: "Pause" });
  const slowBtn = el("button", { type: "button", title: "slow motion ¼× (s)", "aria-pressed": "false", "aria-label": `slow motion ${name}`, text: "¼×" });
  const replayBtn = el("button", { type: "button", title: "replay from the start (r)", "aria-label": `replay ${name}`, text: "↺ Replay" });
  const p = {
    video,
    toggle() { if (video.paused) video.play(); else video.pause(); },
    replay() { video.currentTime = 0; p.loops = 0; video.play(); },
    slow(on) { video.playbackRate = on ? 0.25 : 1; slowBtn.setAttribute("aria-pressed", String(on)); },
    loops: 0,
    last: 0,
  };
  playBtn.addEventListener("click", () => p.toggle());
  replayBtn.addEventListener("click", () => p.replay());
  slowBtn.addEventListener("click", () => p.slow(video.playbackRate === 1));
  video.addEventListener("play", () => { playBtn.textContent = "Pause"; });
  video.addEventListener("pause", () => { playBtn.textContent = "Play"; });
  const tick = () => {
    if (!video.isConnected) return;
    const t = video.currentTime;
    if (t + 0.05 < p.last) {  // time went back without a replay: the clip looped
      p.loops += 1;
      mark.textContent = `↻ loop ${p.loops}`;
      mark.classList.add("show");
      setTimeout(() => mark.classList.remove("show"), 600);
    }
    p.last = t;
    const total = frames || Math.max(1, Math.round((video.duration || 0) * fps));
    const frame = Math.min(total, Math.floor(t * fps + 1e-6) + 1);
    counter.textContent = `frame ${frame} / ${total}`;
    fill.style.width = `${(100 * frame) / total}%`;
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
  const box = el("div", { class: "item", "data-side": name.toLowerCase() }, el("h3", {}, sideName(i)),
    el("div", { class: "screen" }, video, mark),
    el("div", { class: "timeline", title: "the red mark is where the clip loops back to its start" }, fill, el("div", { class: "end" })),
    el("div", { class: "controls" }, playBtn, replayBtn, slowBtn, counter));
  return [box, p];
}

function itemBox(i, item, title) {
  if (!("text" in item) && item.clip && (item.mime || "").startsWith("video/")) {
    const [box, p] = player(item, i);
    players.push(p);
    return box;
  }
  const box = el("div", { class: "item" }, el("h3", {}, title ? document.createTextNode(title) : sideName(i)));
  if (!("text" in item)) box.append(item.clip ? el("img", { src: item.clip, alt: i ? "Right" : "Left" }) : el("p", { class: "muted", text: "(no clip rendered for this segment)" }));
  else box.append(el("pre", { class: "text", text: item.text }));
  return box;
}

// Process feedback: which side is better on each of the query's aligned parts (optional:
// judge every part or none). The choices live in `partChoices`, sent with the whole-pair choice.
let partChoices = [];
function partRows(q) {
  partChoices = new Array(q.parts).fill(null);
  const frames = q.items[0].frames;
  const rows = partChoices.map((_, j) => {
    const span = frames ? ` (frames ${Math.floor((j * frames) / q.parts) + 1}–${Math.floor(((j + 1) * frames) / q.parts)})` : "";
    const buttons = [["left", "Left"], ["equal", "Equal"], ["cant_tell", "Can't tell"], ["right", "Right"]].map(([choice, text]) =>
      el("button", { type: "button", "data-part": String(j), "data-choice": choice, "aria-pressed": "false", text, on: { click: (e) => {
        partChoices[j] = choice;
        for (const b of e.target.parentNode.querySelectorAll("button")) b.setAttribute("aria-pressed", String(b === e.target));
      } } }));
    return el("div", { class: "buttons part" }, el("span", { text: `Part ${j + 1}${span}:` }), ...buttons);
  });
  return el("fieldset", { class: "parts" }, el("legend", { text: "Optional: which side is better in each part of the clips?" }), ...rows);
}

function pairAnswer(choice) {
  if (!current || !current.parts) return { choice };
  const given = partChoices.filter((c) => c !== null).length;
  if (given === 0) return { choice };
  if (given < partChoices.length) { $("error").textContent = "Judge every part, or none of them."; return null; }
  return { choice, parts: partChoices };
}

function submitChoice(choice) {
  const answer = pairAnswer(choice);
  if (answer) submit(answer);
}

function choiceButtons() {
  const b = (choice, ...label) => el("button", { type: "button", "data-choice": choice, on: { click: () => submitChoice(choice) } }, ...label);
  const better = (i) => el("span", {}, el("span", { class: "wide-only", text: i ? "Right better ▶" : "◀ Left better" }), el("span", { class: "narrow-only", text: i ? "▼ Bottom better" : "▲ Top better" }));
  return el("div", { class: "buttons choices" }, b("left", better(0)), b("equal", "Equal"), b("cant_tell", "Can't tell"), b("right", better(1)));
}

// Only the keys of the query at hand.
function showKeys(q) {
  const k = (...keys) => keys.map((key) => el("kbd", { text: key }));
  const parts = [];
  const add = (keys, what) => { if (parts.length) parts.push(" · "); parts.push(...k(...keys), ` ${what}`); };
  if (q && PAIRS.includes(q.kind)) {
    add(["←", "1"], "left better"); add(["→", "2"], "right better"); add(["↑", "3"], "equal"); add(["↓", "4"], "can't tell");
    if (players.length) { add(["space"], "play/pause"); add(["r"], "replay"); add(["s"], "slow motion"); }
  } else if (q && RATINGS.includes(q.kind)) {
    add(["1", "7"], "rate (1 worst, 7 best)");
  }
  $("keys").replaceChildren(...(parts.length ? [el("span", { class: "keyboard" }, "Keys: ", ...parts)] : []));
}

function rankingParts(q) {
  const list = el("div", { class: "pair" });
  const selects = q.items.map((item, i) => {
    const sel = el("select", { "data-position": String(i), "aria-label": `rank of response ${i + 1}` });
    q.items.forEach((_, r) => sel.append(el("option", { value: String(r), text: `rank ${r + 1}` })));
    sel.value = String(i);
    list.append(el("div", {}, itemBox(i, item, `Response ${i + 1}`), sel));
    return sel;
  });
  const go = () => {
    const ranks = selects.map((s) => Number(s.value));
    if (new Set(ranks).size !== ranks.length) { $("error").textContent = "Give every response a different rank."; return; }
    submit({ ranking: ranks.map((r, i) => [r, i]).sort((a, b) => a[0] - b[0]).map((p) => p[1]) });
  };
  return [list, el("div", { class: "buttons" }, el("button", { type: "button", class: "primary", text: "Submit ranking", on: { click: go } }))];
}

function render(q) {
  players = [];
  const parts = [];
  if (q.question != null) parts.push(el("div", { class: "prompt" }, el("strong", { text: "Question" }), el("p", { text: q.question })));
  if (q.prompt != null) parts.push(el("div", { class: "prompt" }, el("strong", { text: "Prompt" }), el("pre", { class: "text", text: q.prompt })));
  if (PAIRS.includes(q.kind)) {
    parts.push(el("div", { class: "pair" }, itemBox(0, q.items[0]), itemBox(1, q.items[1])));
    if (q.parts) parts.push(partRows(q));
    parts.push(choiceButtons());
  } else if (q.kind === "ranking") {
    parts.push(...rankingParts(q));
  } else if (RATINGS.includes(q.kind)) {
    const buttons = el("div", { class: "buttons" });
    for (let r = 1; r <= 7; r++) buttons.append(el("button", { type: "button", "data-rating": String(r), text: String(r), on: { click: () => submit({ rating: r }) } }));
    const what = q.kind === "rating" ? "Response" : "Clip";
    parts.push(itemBox(0, q.items[0], what), el("p", { class: "muted", text: `How good is this ${what.toLowerCase()}? 1 = very bad · 7 = excellent` }), buttons);
  } else {
    const area = el("textarea", { id: "answer-text", maxlength: "20000" });
    if (q.kind === "correction") area.value = q.items[0].text;
    const label = q.kind === "critique" ? "What is wrong with this response?" : "Edit the response into a good one:";
    parts.push(itemBox(0, q.items[0], "Response"), el("p", { text: label }), area,
      el("div", { class: "buttons" }, el("button", { type: "button", class: "primary", text: "Submit", on: { click: () => submit({ text: area.value }) } })));
  }
  $("task").replaceChildren(...parts);
  showKeys(q);
}

async function submit(answer) {
  if (!current || busy) return;
  busy = true;
  try {
    const resp = await api("/api/answer", { method: "POST", body: JSON.stringify({ query_id: current.query_id, lease: current.lease, ...answer }) });
    if (!resp.ok) {
      const message = (await resp.json()).detail;
      if (resp.status === 409) await next();
      $("error").textContent = message;  // after next(), which clears it
      return;
    }
    progress = { done: progress.done + 1, open: Math.max(0, progress.open - 1) };
    if (progress.done % 10 === 0) await loadMe();  // others' answers and new queries, now and then
    await next();
  } finally {
    busy = false;
  }
}

const KEYS = { ArrowLeft: "left", "1": "left", ArrowRight: "right", "2": "right", ArrowUp: "equal", "3": "equal", ArrowDown: "cant_tell", "4": "cant_tell" };
const PLAYER_KEYS = { " ": (p) => p.toggle(), r: (p) => p.replay(), s: (p) => p.slow(p.video.playbackRate === 1) };
document.addEventListener("keydown", (e) => {
  if (!current || e.altKey || e.ctrlKey || e.metaKey || ["TEXTAREA", "SELECT", "INPUT"].includes(e.target.tagName)) return;
  if (PAIRS.includes(current.kind)) {
    if (KEYS[e.key]) { e.preventDefault(); submitChoice(KEYS[e.key]); }
    else if (players.length && PLAYER_KEYS[e.key]) { e.preventDefault(); players.forEach(PLAYER_KEYS[e.key]); }
  } else if (RATINGS.includes(current.kind) && /^[1-7]$/.test(e.key)) {
    e.preventDefault();
    submit({ rating: Number(e.key) });
  }
});

loadMe().then(next).catch((err) => { if (err.message !== "401") $("error").textContent = String(err); });
