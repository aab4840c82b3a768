// The admin page: agreement, gold-question accuracy over time, and the audit log. Names and
// other stored text are inserted with textContent only.
"use strict";
const $ = (id) => document.getElementById(id);
const fmt = (x, pct) => x == null ? "–" : pct ? (100 * x).toFixed(0) + "%" : Number(x).toFixed(2);
const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;

function row(values) {
  const tr = document.createElement("tr");
  for (const v of values) {
    const td = document.createElement("td");
    td.textContent = String(v);
    tr.append(td);
  }
  return tr;
}

async function get(path) {
  const resp = await fetch(path, { credentials: "same-origin" });
  if (!resp.ok) throw new Error((await resp.json()).detail);
  return resp.json();
}

async function load() {
  const s = await get("/api/admin/stats");
  $("overall").textContent =
    `${plural(s.judgements, "pairwise judgement", "pairwise judgements")} on ${plural(s.queries, "query", "queries")} · ` +
    `${s.overlapping_queries} judged more than once · Fleiss' κ ${fmt(s.fleiss_kappa)} · Krippendorff's α ${fmt(s.krippendorff_alpha)}`;
  const names = new Set([...Object.keys(s.annotators), ...Object.keys(s.gold)]);
  const body = document.querySelector("#annotators tbody");
  for (const name of names) {
    const a = s.annotators[name] || {};
    const g = s.gold[name];
    const gold = g ? `${fmt(g.accuracy, true)} of ${g.answers}` : "–";
    const trend = g ? g.over_time.map((b) => fmt(b.accuracy, true)).join(" → ") : "";
    body.append(row([name, a.count ?? 0, fmt(a.agreement_with_consensus, true), fmt(a.tie_rate, true), fmt(a.cant_tell_rate, true), fmt(a.left_shown_win_rate, true), fmt(a.median_seconds), gold, trend]));
  }
  $("gold-note").textContent = s.gold_rate > 0
    ? `Gold questions (known answers) are mixed in at ${fmt(s.gold_rate, true)} of queries; over time: accuracy in each block of 10 gold answers.`
    : "No gold questions are mixed in (rlhflab label --gold-rate 0.1, with gold questions imported by rlhflab feedback import --gold).";
  showReliability(s);
  const audit = document.querySelector("#audit tbody");
  for (const e of await get("/api/admin/audit")) {
    audit.append(row([e.at.slice(0, 19).replace("T", " "), e.actor, e.action, e.subject, JSON.stringify(e.detail)]));
  }
}

// Dawid–Skene accuracy (queries judged more than once) and the reward model's estimates.
function showReliability(s) {
  const est = new Map(s.reliability.map((e) => [e.annotator, e]));
  const names = new Set([...Object.keys(s.dawid_skene), ...est.keys()]);
  const body = document.querySelector("#reliability tbody");
  for (const name of names) {
    const e = est.get(name) || {};
    body.append(row([name, e.labels ?? "–", fmt(s.dawid_skene[name], true), fmt(e.beta), fmt(e.consensus_agreement, true), fmt(e.estimated_accuracy, true), fmt(e.z), e.flagged ? "yes" : ""]));
  }
  $("reliability-note").textContent = names.size
    ? "β: each annotator's rationality in the reward model (mean 1; near 0: their labels barely count). Suspected: disagrees with the reward model more than the others, beyond chance (docs/annotators.md)."
    : "No estimates yet: they appear once the run has fitted its reward model with several annotators, or once queries are judged twice (Dawid–Skene).";
}

load().catch((err) => { $("error").textContent = err.message; });
