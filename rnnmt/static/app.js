// rnnmt's page: calls POST /translate and POST /explain, draws the attention heatmap and the explain panel.
// Plain browser JavaScript with no build step and nothing fetched from elsewhere; the server's
// Content-Security-Policy allows no inline script, so everything the page does is in this file.
"use strict";

const $ = (id) => document.getElementById(id);
const DEVANAGARI = /[\u0900-\u097F]/;
const MAX_VECTOR = 64; // values drawn per vector in the explain panel
const MAX_INLINE = 8; // number lists and objects up to this size are written on one line
const WORD_START = "\u2581"; // SentencePiece's mark of a piece that begins a word
let shown = null; // the translation whose attention the heatmap draws

/**
 * POST (or GET without a body) JSON to the API, with the API key when one was typed; throw the server's error
 * message on failure. A 401 shows the API key field.
 */
async function api(path, body) {
  const key = $("api-key").value.trim();
  const headers = key ? { "X-API-Key": key } : {};
  const options = body === undefined ? { headers } : {
    method: "POST", headers: { ...headers, "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (response.status === 401) $("key-box").hidden = false;
  if (!response.ok) {
    const message = (data.error && data.error.message) || `${response.status} ${response.statusText}`;
    throw new Error(response.status === 401 ? `${message} (type it in the API key field)` : message);
  }
  return data;
}

/** An element with optional class and text; text never goes through innerHTML. */
function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  if (text && DEVANAGARI.test(text)) node.lang = "hi";
  return node;
}

/** A heatmap label: SentencePiece's word marker dropped, a bare marker shown as ␣ (explain shows raw pieces). */
function showToken(piece) {
  return String(piece).replace(/\u2581/g, "") || "␣";
}

function showNumber(value) {
  return Number.isInteger(value) ? String(value) : value.toFixed(4);
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

/** Fill the header line, the beam choices and the text limit from GET /model. */
async function loadModel() {
  try {
    const info = await api("/model");
    const scores = info.scores || {};
    const chrf = scores.dev_chrf === undefined ? "" : `, dev chrF++ ${scores.dev_chrf.toFixed(1)}`;
    $("model-info").textContent = `Model “${info.name}”: ${info.cell.toUpperCase()} with ${info.attention} ` +
      `attention, ${info.size.parameters.toLocaleString()} parameters, trained on ` +
      `${(info.training_data || []).join(", ")}${chrf}.`;
    $("source").maxLength = info.limits.max_chars;
    fillBeams(info.limits.max_beam, info.search.beam_size);
  } catch (err) {
    $("model-info").textContent = `Model details unavailable: ${err.message}`;
  }
}

function fillBeams(maxBeam, chosen) {
  const select = $("beam");
  select.replaceChildren();
  for (let k = 1; k <= maxBeam; k++) {
    const option = el("option", k === 1 ? "1 (greedy)" : String(k));
    option.value = String(k);
    option.selected = k === chosen;
    select.append(option);
  }
}

/** Disable the buttons while a request runs, and always enable them again. */
async function busy(work) {
  const buttons = [$("translate"), $("explain")];
  buttons.forEach((b) => { b.disabled = true; });
  document.body.setAttribute("aria-busy", "true");
  showError("");
  try {
    await work();
  } catch (err) {
    showError(err.message);
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
    document.body.removeAttribute("aria-busy");
  }
}

function sourceText() {
  const text = $("source").value.trim();
  if (!text) throw new Error("Type an English sentence first.");
  return text;
}

/**
 * The glossary box's terms as [{source, target}]: one a line, "English = Hindi" or English, a tab, Hindi (the
 * first tab, else the first "=", splits a line); empty lines are skipped, a line without both sides is an error.
 */
function glossaryTerms(text) {
  const terms = [];
  text.split("\n").forEach((line, i) => {
    if (!line.trim()) return;
    const cut = line.includes("\t") ? line.indexOf("\t") : line.indexOf("=");
    const source = cut < 0 ? "" : line.slice(0, cut).trim();
    const target = cut < 0 ? "" : line.slice(cut + 1).trim();
    if (!source || !target) throw new Error(`Glossary line ${i + 1}: write “English = Hindi”, with both sides.`);
    terms.push({ source, target });
  });
  return terms;
}

async function translate() {
  const beam = Number($("beam").value);
  const body = { text: sourceText(), beam_size: beam, n_best: Math.min(beam, 5) };
  const terms = glossaryTerms($("glossary").value);
  if (terms.length) body.glossary = terms;
  const data = await api("/translate", body);
  const t = data.translations[0];
  $("hindi").textContent = t.text || "(empty translation)";
  const score = t.score === null ? "n/a" : t.score.toFixed(2);
  $("score").textContent = `log P = ${score} · beam ${data.beam_size} · ` +
    `${data.timings.total_ms.toFixed(0)} ms (model ${data.timings.model_ms.toFixed(0)} ms)`;
  renderTerms(t);
  renderAlternatives(t.n_best.slice(1));
  $("result").hidden = false;
  renderHeatmap(t);
}

/** The glossary terms the translation was made to use, and those it could not use, with why. */
function renderTerms(t) {
  const used = t.terms.map((term) => `${term.source} → ${term.target}`);
  const lines = (used.length ? [`Glossary terms used: ${used.join(", ")}.`] : []).concat(t.warnings);
  $("terms").textContent = lines.join(" ");
  $("terms").hidden = lines.length === 0;
}

function renderAlternatives(others) {
  $("alternatives").replaceChildren(...others.map((a) => el("li", `${a.text || "(empty)"}  (${
    a.score === null ? "n/a" : a.score.toFixed(2)})`)));
  $("alternatives-box").hidden = others.length === 0;
}

/** Show a translation's attention, in the view the toggle asks for. */
function renderHeatmap(t) {
  shown = t;
  $("attention-panel").hidden = !t.attention;
  if (t.attention) drawHeatmap();
}

/** Redraw the heatmap of the shown translation: by words (the default) or by subword pieces. */
function drawHeatmap() {
  if (!shown || !shown.attention) return;
  const pieces = document.querySelector('input[name="attention-view"]:checked').value === "pieces";
  const view = pieces ? { src: shown.src_tokens, tgt: shown.tgt_tokens, attention: shown.attention } : byWords(shown);
  const head = el("tr");
  head.append(el("td"), ...view.src.map((tok) => Object.assign(el("th", showToken(tok)), { scope: "col" })));
  const rows = view.attention.map((weights, i) => {
    const row = el("tr");
    const label = Object.assign(el("th", showToken(view.tgt[i])), { scope: "row", lang: "hi" });
    row.append(label, ...weights.map(heatCell));
    return row;
  });
  const table = $("heatmap");
  table.replaceChildren(el("thead"), el("tbody"));
  table.tHead.append(head);
  table.tBodies[0].append(...rows);
}

/**
 * The token indices of each word: a piece that starts with ▁ begins one, and </s> is a word of its own. Tokens
 * without any ▁ (a word vocabulary) are each a word.
 */
function wordGroups(tokens) {
  const subwords = tokens.some((tok) => tok.startsWith(WORD_START));
  const groups = [];
  tokens.forEach((tok, i) => {
    if (!groups.length || !subwords || tok.startsWith(WORD_START) || tok === "</s>" || tokens[i - 1] === "</s>") {
      groups.push([]);
    }
    groups[groups.length - 1].push(i);
  });
  return groups;
}

/**
 * Attention between words: an English word's column is the sum of its pieces' columns, and a Hindi word's row is
 * the mean of its pieces' rows (their sum over their count), so each row still sums to 1.
 */
function byWords(t) {
  const columns = wordGroups(t.src_tokens), rows = wordGroups(t.tgt_tokens);
  const join = (tokens, group) => group.map((i) => tokens[i]).join("");
  const total = (row, column) => row.reduce((sum, i) => sum + column.reduce((s, j) => s + t.attention[i][j], 0), 0);
  return {
    src: columns.map((group) => join(t.src_tokens, group)),
    tgt: rows.map((group) => join(t.tgt_tokens, group)),
    attention: rows.map((row) => columns.map((column) => total(row, column) / row.length)),
  };
}

function heatCell(weight) {
  const cell = el("td", String(Math.round(weight * 100)));
  cell.style.background = `rgba(29, 78, 216, ${Math.min(1, weight).toFixed(3)})`;
  cell.style.color = weight > 0.5 ? "#fff" : "#1f2937";
  cell.title = weight.toFixed(4);
  return cell;
}

async function explain() {
  const record = await api("/explain", { text: sourceText() });
  renderExplain(record);
  $("explain-panel").hidden = false;
  $("explain-panel").scrollIntoView({ block: "start" });
}

/**
 * The explain record, whatever its fields: plain values first, then each object in a foldable section (settings
 * folded, data open), then the per-step list with a stepper.
 */
function renderExplain(record) {
  const entries = Object.entries(record);
  const steps = entries.find(([, v]) => isObjectList(v));
  const sections = entries.filter(([, v]) => isPlainObject(v));
  const plain = entries.filter((entry) => entry !== steps && !sections.includes(entry));
  const body = $("explain-body");
  body.replaceChildren(renderObject(Object.fromEntries(plain)));
  for (const [key, value] of sections) {
    const box = el("details");
    box.open = !isFlat(value);
    box.append(el("summary", key), renderObject(value));
    body.append(box);
  }
  if (steps) body.append(el("h3", `${steps[0]}: ${steps[1].length} steps`), stepper(steps[1]));
}

function isObjectList(value) {
  return Array.isArray(value) && value.length > 0 && value.every(isPlainObject);
}

function isPlainObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** Fits on one line: a scalar, or a short list of numbers. */
function isSimple(value) {
  return value === null || typeof value !== "object" ||
    (Array.isArray(value) && value.length <= MAX_INLINE && value.every((v) => typeof v === "number"));
}

/** An object of a few simple values, such as a vector's summary or one candidate word. */
function isFlat(value) {
  return isPlainObject(value) && Object.values(value).every(isSimple);
}

/** What a step is called on its button: its chosen word where it has one, else its number. */
function stepLabel(step, i) {
  const chosen = isPlainObject(step.chosen) ? step.chosen.piece : step.chosen;
  return typeof chosen === "string" ? `${i + 1} ${chosen}` : String(i + 1);
}

/** One step at a time, with Previous/Next buttons and a button per step named by its first text field. */
function stepper(steps) {
  const view = el("div", undefined, "step");
  view.setAttribute("aria-live", "polite");
  const counter = el("span");
  const prev = el("button", "← Previous step");
  const next = el("button", "Next step →");
  const words = el("div", undefined, "step-words");
  words.setAttribute("role", "group");
  words.setAttribute("aria-label", "Jump to a step");
  let current = 0;
  const show = (i) => {
    current = Math.max(0, Math.min(steps.length - 1, i));
    counter.textContent = `Step ${current + 1} of ${steps.length}`;
    view.replaceChildren(renderObject(steps[current]));
    prev.disabled = current === 0;
    next.disabled = current === steps.length - 1;
    [...words.children].forEach((b, j) => {
      if (j === current) b.setAttribute("aria-current", "step"); else b.removeAttribute("aria-current");
    });
  };
  steps.forEach((step, i) => {
    const button = el("button", stepLabel(step, i));
    button.type = "button";
    button.addEventListener("click", () => show(i));
    words.append(button);
  });
  [prev, next].forEach((b) => { b.type = "button"; });
  prev.addEventListener("click", () => show(current - 1));
  next.addEventListener("click", () => show(current + 1));
  const bar = el("div", undefined, "stepper");
  bar.append(prev, counter, next);
  const box = el("div");
  box.append(words, bar, view);
  show(0);
  return box;
}

/** Any JSON value as HTML: short values inline, token lists, long vectors as colour strips, tables of objects. */
function renderValue(value) {
  if (isSimple(value)) return el("span", showSimple(value));
  if (isFlat(value) && Object.keys(value).length <= MAX_INLINE) return inline(value);
  if (!Array.isArray(value)) return renderObject(value);
  if (value.length && value.every((v) => typeof v === "number")) return vector(value);
  if (value.every((v) => typeof v === "string")) return tokenList(value);
  if (isObjectList(value)) return objectTable(value);
  const list = el("div");
  value.forEach((v) => list.append(renderValue(v)));
  return list;
}

function showSimple(value) {
  if (Array.isArray(value)) return `[${value.map((v) => showNumber(v)).join(", ")}]`;
  return typeof value === "number" ? showNumber(value) : String(value);
}

/** A flat object on one line: "key value · key value". */
function inline(object) {
  const line = el("span", undefined, "inline");
  Object.entries(object).forEach(([key, value], i) => {
    if (i) line.append(" · ");
    line.append(el("span", key, "key"), " ", el("span", showSimple(value)));
  });
  return line;
}

function renderObject(object) {
  const list = el("dl", undefined, "record");
  for (const [key, value] of Object.entries(object)) {
    const dd = el("dd");
    dd.append(renderValue(value));
    list.append(el("dt", key), dd);
  }
  return list;
}

function tokenList(tokens) {
  const list = el("ul", undefined, "tokens");
  list.append(...tokens.map((tok) => el("li", tok)));
  return list;
}

/** A vector as a strip of cells: orange for positive, blue for negative, stronger for larger magnitude. */
function vector(values) {
  const strip = el("span", undefined, "vector");
  const shown = values.slice(0, MAX_VECTOR);
  const low = Math.min(...values), high = Math.max(...values);
  strip.setAttribute("role", "img");
  strip.setAttribute("aria-label", `${values.length} values from ${showNumber(low)} to ${showNumber(high)}`);
  const scale = Math.max(Math.abs(low), Math.abs(high)) || 1;
  strip.append(...shown.map((v) => {
    const cell = el("span");
    const alpha = Math.min(1, Math.abs(v) / scale).toFixed(3);
    const colour = v >= 0 ? `rgba(234, 88, 12, ${alpha})` : `rgba(29, 78, 216, ${alpha})`;
    cell.style.backgroundImage = `linear-gradient(${colour}, ${colour})`; // over the cell's white
    cell.title = showNumber(v);
    return cell;
  }));
  const wrap = el("span");
  wrap.append(strip);
  if (values.length > MAX_VECTOR) wrap.append(el("span", `+${values.length - MAX_VECTOR} more`, "more"));
  return wrap;
}

function objectTable(rows) {
  const keys = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const table = el("table", undefined, "rows");
  const head = el("tr");
  head.append(...keys.map((k) => Object.assign(el("th", k), { scope: "col" })));
  table.append(el("thead"), el("tbody"));
  table.tHead.append(head);
  table.tBodies[0].append(...rows.map((r) => {
    const row = el("tr");
    row.append(...keys.map((k) => {
      const cell = el("td");
      if (k in r) cell.append(renderValue(r[k]));
      return cell;
    }));
    return row;
  }));
  return table;
}

/** In the glossary box Enter starts a new term; Ctrl/Cmd+Enter translates. */
function onGlossaryKey(event) {
  if (event.key !== "Enter" || event.isComposing || !(event.ctrlKey || event.metaKey)) return;
  event.preventDefault();
  $("translate-form").requestSubmit();
}

/** Enter or Ctrl/Cmd+Enter translates; Shift+Enter keeps its new line; IME composition is left alone. */
function onKey(event) {
  if (event.key !== "Enter" || event.isComposing || (event.shiftKey && !event.ctrlKey && !event.metaKey)) return;
  event.preventDefault();
  $("translate-form").requestSubmit();
}

document.addEventListener("DOMContentLoaded", () => {
  $("translate-form").addEventListener("submit", (event) => {
    event.preventDefault();
    busy(translate);
  });
  $("explain").addEventListener("click", () => busy(explain));
  $("source").addEventListener("keydown", onKey);
  $("glossary").addEventListener("keydown", onGlossaryKey);
  $("api-key").addEventListener("change", loadModel);
  document.getElementsByName("attention-view").forEach((radio) => radio.addEventListener("change", drawHeatmap));
  loadModel();
});
