// The labeling page. Everything from the server (model output, prompts) is inserted with
// textContent or as element attributes — never as HTML.
"use strict";
let current = null;
let busy = false;
const $ = (id) => document.getElementById(id);

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

async function api(path, options = {}) {
  const resp = await fetch(path, { credentials: "same-origin", headers: { "content-type": "application/json" }, ...options });
  if (resp.status === 401) { $("task").replaceChildren(el("p", { text: "Not signed in: open your personal login link." })); throw new Error("401"); }
  return resp;
}

async function loadMe() {
  const me = await (await api("/api/me")).json();
  $("who").textContent = me.name;
}

function showProgress(done, open) { $("progress").textContent = `${done} done · ${open} waiting`; }

async function next() {
  $("error").textContent = "";
  const resp = await api("/api/next", { method: "POST" });
  if (resp.status === 204) {
    current = null;
    $("task").replaceChildren(el("p", { class: "muted", text: "Nothing to judge right now. New queries appear here as training goes on." }));
    const me = await (await api("/api/me")).json();
    showProgress(me.done, me.open);
    setTimeout(() => { if (!current) next(); }, 3000);
    return;
  }
  current = await resp.json();
  current.shownAt = performance.now();
  showProgress(current.done, current.open);
  render(current);
}

function itemBox(title, item) {
  const box = el("div", { class: "item" }, el("h3", { text: title }));
  if ("clip" in item) box.append(item.clip ? el("img", { src: item.clip, alt: title }) : el("p", { class: "muted", text: "(no clip rendered for this segment)" }));
  else box.append(el("pre", { class: "text", text: item.text }));
  return box;
}

function choiceButtons() {
  const b = (label, choice) => el("button", { "data-choice": choice, text: label, on: { click: () => submit({ choice }) } });
  return el("div", { class: "buttons" }, b("◀ Left better", "left"), b("Equal", "equal"), b("Can't tell", "cant_tell"), b("Right better ▶", "right"));
}

function render(q) {
  const parts = [];
  if (q.prompt != null) parts.push(el("div", { class: "prompt" }, el("strong", { text: "Prompt" }), el("pre", { class: "text", text: q.prompt })));
  if (q.kind === "segments" || q.kind === "text_pair") {
    parts.push(el("div", { class: "pair" }, itemBox("Left", q.items[0]), itemBox("Right", q.items[1])), choiceButtons());
  } else if (q.kind === "ranking") {
    const list = el("div", { class: "pair" });
    const selects = q.items.map((item, i) => {
      const sel = el("select", { "data-position": String(i) });
      q.items.forEach((_, r) => sel.append(el("option", { value: String(r), text: `rank ${r + 1}` })));
      sel.value = String(i);
      list.append(el("div", {}, itemBox(`Response ${i + 1}`, item), sel));
      return sel;
    });
    const go = () => {
      const ranks = selects.map((s) => Number(s.value));
      if (new Set(ranks).size !== ranks.length) { $("error").textContent = "Give every response a different rank."; return; }
      const ranking = ranks.map((r, i) => [r, i]).sort((a, b) => a[0] - b[0]).map((p) => p[1]);
      submit({ ranking });
    };
    parts.push(list, el("div", { class: "buttons" }, el("button", { text: "Submit ranking", on: { click: go } })));
  } else if (q.kind === "rating") {
    const buttons = el("div", { class: "buttons" });
    for (let r = 1; r <= 7; r++) buttons.append(el("button", { "data-rating": String(r), text: String(r), on: { click: () => submit({ rating: r }) } }));
    parts.push(itemBox("Response", q.items[0]), el("p", { class: "muted", text: "1 = very bad · 7 = excellent" }), buttons);
  } else {
    const area = el("textarea", { id: "answer-text" });
    if (q.kind === "correction") area.value = q.items[0].text;
    const label = q.kind === "critique" ? "What is wrong with this response?" : "Edit the response into a good one:";
    parts.push(itemBox("Response", q.items[0]), el("p", { text: label }), area,
      el("div", { class: "buttons" }, el("button", { text: "Submit", on: { click: () => submit({ text: area.value }) } })));
  }
  $("task").replaceChildren(...parts);
}

async function submit(answer) {
  if (!current || busy) return;
  busy = true;
  try {
    const resp = await api("/api/answer", { method: "POST", body: JSON.stringify({ query_id: current.query_id, lease: current.lease, ...answer }) });
    if (!resp.ok) {
      const detail = (await resp.json()).detail;
      const message = typeof detail === "string" ? detail : JSON.stringify(detail);
      if (resp.status === 409) await next();
      $("error").textContent = message;  // after next(), which clears it
      return;
    }
    await next();
  } finally {
    busy = false;
  }
}

const KEYS = { ArrowLeft: "left", "1": "left", ArrowRight: "right", "2": "right", ArrowUp: "equal", "3": "equal", "=": "equal", ArrowDown: "cant_tell", "4": "cant_tell", x: "cant_tell" };
document.addEventListener("keydown", (e) => {
  if (!current || e.target.tagName === "TEXTAREA" || e.target.tagName === "SELECT") return;
  if (current.kind === "segments" || current.kind === "text_pair") {
    if (KEYS[e.key]) { e.preventDefault(); submit({ choice: KEYS[e.key] }); }
  } else if (current.kind === "rating" && /^[1-7]$/.test(e.key)) {
    e.preventDefault();
    submit({ rating: Number(e.key) });
  }
});

loadMe().then(next).catch((err) => { if (err.message !== "401") $("error").textContent = String(err); });
