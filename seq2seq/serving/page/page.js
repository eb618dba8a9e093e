// seq2seq-serve's page: translate a sentence with one model (or two, with compare=) and show the
// n-best list and an interactive attention heat-map. Plain DOM, nothing fetched but this server's API.
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
const EOS = "</s>";
let info = null;

function setStatus(text, isError = false) {
  const status = $("#status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

function describe(model) {
  const bleu = model.best_valid_bleu === null ? "" : `, best validation BLEU ${model.best_valid_bleu.toFixed(2)}`;
  return `${model.pair}, ${model.attention} attention, ${(model.parameters / 1e6).toFixed(2)} M parameters${bleu}`;
}

async function loadInfo() {
  const response = await fetch("/info");
  info = await response.json();
  $("#beam-size").textContent = info.decode.beam_size;
  const models = [info, info.compare].filter(Boolean);
  $("#model-info").textContent = models.map((m) => `${m.name}: ${m.checkpoint} (${describe(m)})`).join(" · ");
  $("#source").maxLength = info.limits.max_chars;
}

async function post(body) {
  const response = await fetch("/translate", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data.translations[0];
}

async function translate(event) {
  event.preventDefault();
  const text = $("#source").value.trim();
  if (!text) { setStatus("Type a sentence first.", true); return; }
  const greedy = $("input[name=search]:checked").value === "greedy";
  const beam = greedy ? 1 : info.decode.beam_size;
  const body = { text: [text], beam_size: beam, nbest: Math.min(beam, 5), attention: true };
  if (greedy) body.alpha = 0; // as configs/decode/greedy.yaml: no length penalty
  const models = [info, info.compare].filter(Boolean);
  $("#translate").disabled = true;
  setStatus("translating…");
  try {
    const started = performance.now();
    const answers = await Promise.all(models.map((m) => post({ ...body, model: m.name })));
    const results = $("#results");
    results.replaceChildren(...answers.map((answer, i) => panel(models[i], answer)));
    setStatus(`translated in ${Math.round(performance.now() - started)} ms (${greedy ? "greedy" : `beam ${beam}`})`);
  } catch (err) {
    setStatus(err.message, true);
  } finally {
    $("#translate").disabled = false;
  }
}

function panel(model, answer) {
  const node = $("#panel").content.firstElementChild.cloneNode(true);
  node.dataset.model = model.name;
  $(".model", node).textContent = `${model.name}: ${describe(model)}`;
  $(".translation", node).textContent = answer.text;
  $(".translation", node).lang = model.tgt_lang;
  const list = $(".nbest", node);
  answer.hypotheses.forEach((hypothesis, k) => {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = hypothesis;
    button.setAttribute("aria-pressed", String(k === 0));
    button.addEventListener("click", () => choose(node, answer, k));
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = ` ${answer.scores[k].toFixed(4)}`;
    item.append(button, score);
    list.append(item);
  });
  choose(node, answer, 0);
  return node;
}

function choose(node, answer, k) {
  $(".nbest", node).querySelectorAll("button").forEach((b, i) => b.setAttribute("aria-pressed", String(i === k)));
  const weights = answer.attention[k];
  const rows = [...answer.tgt_pieces[k], EOS].slice(0, weights.length);
  $(".heatmap-wrap", node).replaceChildren(heatmap(answer.src_pieces, rows, weights, $(".readout", node)));
  $(".readout", node).textContent = "\u00a0";
}

function heatmap(cols, rows, weights, readout) {
  const table = document.createElement("table");
  table.className = "heatmap";
  const head = table.createTHead().insertRow();
  head.append(document.createElement("td"));
  for (const piece of cols) head.append(header(piece, "col"));
  const body = table.createTBody();
  rows.forEach((piece, r) => {
    const row = body.insertRow();
    row.append(header(piece, "row"));
    weights[r].forEach((w, c) => {
      const cell = row.insertCell();
      cell.dataset.row = r;
      cell.dataset.col = c;
      cell.dataset.weight = w;
      cell.tabIndex = r === 0 && c === 0 ? 0 : -1; // one tab stop; the arrow keys move inside
      cell.style.background = `rgba(31, 95, 191, ${Math.max(w, 0.02).toFixed(3)})`;
      cell.setAttribute("aria-label", `${piece} ← ${cols[c]}: ${w.toFixed(3)}`);
      cell.title = `${piece} ← ${cols[c]}: ${w.toFixed(3)}`;
    });
  });
  const show = (cell) => highlight(table, cell, rows, cols, readout);
  table.addEventListener("mouseover", (e) => e.target.matches("td[data-weight]") && show(e.target));
  table.addEventListener("focusin", (e) => e.target.matches("td[data-weight]") && show(e.target));
  table.addEventListener("mouseleave", () => highlight(table, null, rows, cols, readout));
  table.addEventListener("keydown", (e) => move(table, e));
  return table;
}

function header(text, scope) {
  const th = document.createElement("th");
  th.scope = scope;
  th.textContent = text;
  return th;
}

function highlight(table, cell, rows, cols, readout) {
  table.querySelectorAll(".on").forEach((x) => x.classList.remove("on"));
  if (!cell) { readout.textContent = "\u00a0"; return; }
  const r = Number(cell.dataset.row), c = Number(cell.dataset.col);
  cell.classList.add("on");
  table.tHead.rows[0].cells[c + 1].classList.add("on");
  table.tBodies[0].rows[r].cells[0].classList.add("on");
  readout.textContent = `target ${rows[r]} ← source ${cols[c]}: weight ${Number(cell.dataset.weight).toFixed(3)}`;
}

function move(table, event) {
  const steps = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
  const cell = event.target;
  if (!(event.key in steps) || !cell.matches("td[data-weight]")) return;
  event.preventDefault();
  const [dr, dc] = steps[event.key];
  const next = table.querySelector(
    `td[data-row="${Number(cell.dataset.row) + dr}"][data-col="${Number(cell.dataset.col) + dc}"]`);
  if (!next) return;
  cell.tabIndex = -1;
  next.tabIndex = 0;
  next.focus();
}

$("#form").addEventListener("submit", translate);
loadInfo().catch((err) => setStatus(`cannot reach the server: ${err.message}`, true));
