// neartext web UI: search a collection, rate results, find more like a result. No dependencies.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { key: localStorage.getItem("neartext-key") || "", lastQuery: "", collections: [] };

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (state.key) headers.Authorization = "Bearer " + state.key;
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (resp.status === 401) { $("key-box").hidden = false; }
  if (!resp.ok) {
    const detail = data && data.detail ? data.detail : resp.statusText;
    throw new Error(detail);
  }
  return data;
}

function say(text, info) {
  const m = $("message");
  m.textContent = text || "";
  m.className = info ? "info" : "";
}

function isLink(v) { return typeof v === "string" && /^https?:\/\/\S+$/i.test(v); }

// the text columns the chosen collection's documents keep as fields (several --text columns)
function textFields() {
  const chosen = state.collections.find((c) => c.name === $("collection").value);
  return (chosen && chosen.text_fields) || [];
}

// What a result's number is, shown when the pointer rests on it: a learned ranking's scores
// order the results but are no cosine (they may be negative), which a person cannot tell.
function scoreMeaning(mode) {
  const chosen = state.collections.find((c) => c.name === $("collection").value);
  const ranking = mode || (chosen && chosen.ranking) || "semantic";
  if (ranking.includes("learned")) return "the learned ranking's score: it orders the results; it is no cosine and may be below 0";
  if (ranking.startsWith("hybrid")) return "the fused score of meaning and words (" + ranking + ")";
  if (ranking === "keyword") return "BM25 over the words";
  if (ranking === "chars") return "BM25 over character 3-4-grams";
  return "cosine similarity of meaning, from -1 to 1";
}

function render(title, hits, query, meaning) {
  const list = $("results");
  list.replaceChildren();
  $("results-title").hidden = false;
  $("results-title").textContent = title;
  const tpl = $("result-template");
  for (const hit of hits) {
    const li = tpl.content.firstElementChild.cloneNode(true);
    li.dataset.id = hit.id;
    li.querySelector(".score").textContent = hit.score.toFixed(3);
    li.querySelector(".score").title = meaning;
    li.querySelector(".doc-id").textContent = hit.id;
    // a document built from several text columns (--text title,description): the first is
    // its title, the others its text; they are not listed again among its fields
    const meta = hit.metadata || {};
    const fields = textFields().filter((f) => f in meta);
    const title = fields.length && !hit.passage ? meta[fields[0]] : null;
    if (title !== null && title !== "") {
      li.querySelector(".title").textContent = String(title);
      li.querySelector(".title").hidden = false;
    }
    li.querySelector(".text").textContent = hit.passage ||
      (title !== null ? fields.slice(1).map((f) => meta[f]).filter((v) => v).join("\n") : hit.text);
    const dl = li.querySelector(".metadata");
    const apart = title !== null ? fields : [];  // (a chunked document's passage: none)
    for (const [k, v] of Object.entries(meta)) {
      if (apart.includes(k)) continue;
      const item = document.createElement("div");  // a name and its value wrap together
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      if (isLink(v)) {
        const a = document.createElement("a");
        a.href = v; a.textContent = v; a.target = "_blank"; a.rel = "noopener noreferrer";
        dd.appendChild(a);
      } else {
        dd.textContent = v === null ? "" : String(v);
      }
      item.append(dt, dd);
      dl.appendChild(item);
    }
    li.querySelector(".rate-up").addEventListener("click", () => rate(li, query, hit.id, true));
    li.querySelector(".rate-down").addEventListener("click", () => rate(li, query, hit.id, false));
    li.querySelector(".more").addEventListener("click", () => moreLike(hit));
    list.appendChild(li);
  }
}

function settings() {
  const k = parseInt($("k").value, 10) || 5;
  const t = $("threshold").value.trim();
  // "" = the collection's tuned ranking (neartext tune), else semantic
  const mode = $("mode").value || null;
  // a threshold is a cosine: it only applies to the semantic mode (and selects it)
  return { k, mode, threshold: t === "" || (mode !== null && mode !== "semantic") ? null : parseFloat(t) };
}

async function search(ev) {
  if (ev) ev.preventDefault();
  const query = $("query").value.trim();
  const name = $("collection").value;
  if (!query || !name) return;
  const { k, mode, threshold } = settings();
  say("");
  try {
    const data = await api("POST", `/collections/${encodeURIComponent(name)}/search`, { query, k, threshold, mode });
    const hits = data.results[0];
    state.lastQuery = query;
    render(`${hits.length} result${hits.length === 1 ? "" : "s"} for “${query}”`, hits, query,
           scoreMeaning(mode));
    if (!hits.length) say(mode === "semantic" || mode === null ? "Nothing scored above the threshold."
                                              : "Nothing matched.", true);
  } catch (e) { say(e.message); }
}

async function rate(li, query, docId, relevant) {
  const name = $("collection").value;
  try {
    await api("POST", `/collections/${encodeURIComponent(name)}/feedback`, { query, doc_id: docId, relevant });
    const mark = li.querySelector(".rated");
    mark.textContent = relevant ? "rated relevant" : "rated not relevant";
    mark.className = relevant ? "rated" : "rated bad";
  } catch (e) { say(e.message); }
}

async function moreLike(hit) {
  const name = $("collection").value;
  const { k, threshold } = settings();
  try {
    const data = await api("POST", `/collections/${encodeURIComponent(name)}/paraphrases`,
      { text: hit.text, top_k: k, threshold: threshold === null ? 0.5 : threshold });
    render(`More like ${hit.id} (score ≥ ${data.threshold.toFixed(2)})`, data.results, state.lastQuery || hit.text,
           scoreMeaning("semantic"));
    say(data.notice || "", true);
  } catch (e) { say(e.message); }
}

// The header names the model of the collection being searched, not of the first one served.
function showStatus() {
  const cols = state.collections;
  const chosen = cols.find((c) => c.name === $("collection").value) || cols[0];
  $("status").textContent = cols.length
    ? `${cols.length} collection${cols.length === 1 ? "" : "s"}; ${chosen.name}: model ${chosen.model}, ` +
      `version ${chosen.version}` + (chosen.adapter ? ` (${chosen.adapter} adapter` : " (") +
      `${chosen.adapter ? ", " : ""}${chosen.ranking} ranking` +
      (chosen.mrr_at_10 != null ? `, held-out MRR@10 ${chosen.mrr_at_10.toFixed(3)})` : ")")
    : "no collections served";
}

async function loadCollections() {
  try {
    const cols = await api("GET", "/collections");
    const sel = $("collection");
    sel.replaceChildren();
    for (const c of cols) {
      const o = document.createElement("option");
      o.value = c.name;
      o.textContent = `${c.name} (${c.documents})`;
      sel.appendChild(o);
    }
    state.collections = cols;
    showStatus();
    $("key-box").hidden = true;
    document.body.dataset.ready = "1";
  } catch (e) { say(e.message); }
}

$("search-form").addEventListener("submit", search);
$("collection").addEventListener("change", showStatus);
$("key-save").addEventListener("click", () => {
  state.key = $("api-key").value.trim();
  localStorage.setItem("neartext-key", state.key);
  loadCollections();
});
loadCollections();
