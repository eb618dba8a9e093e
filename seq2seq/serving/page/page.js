// seq2seq-serve's page: translate a sentence with one model (or two, with compare=) and show the
// n-best list and an interactive attention heat-map: the mean over the top layer's heads by default, or any
// layer and head of the cross-attention or of a Transformer encoder's self-attention. Plain DOM, nothing
// fetched but this server's API.
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

// Every layer's and head's attention ("layers": true) when the answer stays within the server's
// max_attention_cells; else the mean map alone, marked layersLeftOut.
async function postWithLayers(body) {
  try {
    return await post({ ...body, layers: true });
  } catch (err) {
    if (!err.message.includes("max_attention_cells")) throw err;
    return { ...(await post(body)), layersLeftOut: true };
  }
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
    const answers = await Promise.all(models.map((m) => postWithLayers({ ...body, model: m.name })));
    const results = $("#results");
    results.replaceChildren(...answers.map((answer, i) => panel(models[i], answer)));
    const note = answers.some((a) => a.layersLeftOut)
      ? "; every layer and head would pass the server's max_attention_cells: the mean map only" : "";
    setStatus(`translated in ${Math.round(performance.now() - started)} ms (${greedy ? "greedy" : `beam ${beam}`})${note}`);
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
  node.querySelectorAll(".view select").forEach((select) => select.addEventListener("change", () => {
    fillControls(node, answer, select.classList.contains("kind"));
    draw(node, answer);
  }));
  choose(node, answer, 0);
  return node;
}

function choose(node, answer, k) {
  $(".nbest", node).querySelectorAll("button").forEach((b, i) => b.setAttribute("aria-pressed", String(i === k)));
  node.dataset.hypothesis = k;
  fillControls(node, answer, false);
  draw(node, answer);
}

// The layers of one kind of attention ("cross" for hypothesis k, or the encoder's "self"), each a list of its
// heads' maps; null when the answer has the mean map only.
function layersOf(answer, k, kind) {
  const layers = kind === "self" ? answer.self_attention : answer.cross_attention && answer.cross_attention[k];
  return layers && layers.length ? layers : null;
}

// The layer and head choices for the chosen kind of attention: the current ones where they still exist, else
// (and when ``reset``) the top layer and the mean of its heads.
function fillControls(node, answer, reset) {
  const kind = $(".kind", node);
  $("option[value=self]", kind).disabled = !answer.self_attention;
  if (!answer.self_attention) kind.value = "cross";
  kind.disabled = !answer.self_attention;
  const layers = layersOf(answer, Number(node.dataset.hypothesis), kind.value);
  const top = layers ? layers.length - 1 : -1; // -1: the mean map only, of the top layer
  const layerChoices = layers ? layers.map((_, i) => [i, `${i + 1} of ${top + 1}${i === top ? " (top)" : ""}`])
    : [[-1, "top"]];
  setOptions($(".layer", node), layerChoices, top, reset);
  const heads = layers ? layers[Number($(".layer", node).value)] : [];
  const mean = heads.length === 1 ? "its one head" : `mean of ${heads.length || "the"} heads`;
  const headChoices = [[-1, mean], ...(heads.length > 1 ? heads.map((_, h) => [h, `head ${h + 1}`]) : [])];
  setOptions($(".head", node), headChoices, -1, reset);
}

function setOptions(select, choices, fallback, reset) {
  const keep = reset ? null : select.value;
  select.replaceChildren(...choices.map(([value, text]) => new Option(text, value)));
  select.value = choices.some(([value]) => String(value) === keep) ? keep : String(fallback);
  select.disabled = choices.length < 2;
}

function draw(node, answer) {
  const k = Number(node.dataset.hypothesis), kind = $(".kind", node).value;
  const weights = chosenMap(answer, k, kind, Number($(".layer", node).value), Number($(".head", node).value));
  const rows = kind === "self" ? answer.src_pieces : [...answer.tgt_pieces[k], EOS].slice(0, weights.length);
  const readout = $(".readout", node);
  $(".heatmap-wrap", node).replaceChildren(heatmap(answer.src_pieces, rows, weights, readout,
    kind === "self" ? "source" : "target"));
  readout.textContent = "\u00a0";
}

// One head's map (head >= 0) or the mean over the layer's heads; the mean of the top layer's cross-attention
// is the map search reported, answer.attention (as fairseq reports alignments).
function chosenMap(answer, k, kind, layer, head) {
  const layers = layersOf(answer, k, kind);
  if (!layers || (kind === "cross" && layer === layers.length - 1 && head < 0)) return answer.attention[k];
  return head < 0 ? meanOf(layers[layer]) : layers[layer][head];
}

function meanOf(maps) {
  return maps[0].map((row, r) => row.map((_, c) => maps.reduce((sum, m) => sum + m[r][c], 0) / maps.length));
}

function heatmap(cols, rows, weights, readout, rowKind) {
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
  const show = (cell) => highlight(table, cell, rows, cols, readout, rowKind);
  table.addEventListener("mouseover", (e) => e.target.matches("td[data-weight]") && show(e.target));
  table.addEventListener("focusin", (e) => e.target.matches("td[data-weight]") && show(e.target));
  table.addEventListener("mouseleave", () => show(null));
  table.addEventListener("keydown", (e) => move(table, e));
  return table;
}

function header(text, scope) {
  const th = document.createElement("th");
  th.scope = scope;
  th.textContent = text;
  return th;
}

function highlight(table, cell, rows, cols, readout, rowKind) {
  table.querySelectorAll(".on").forEach((x) => x.classList.remove("on"));
  if (!cell) { readout.textContent = "\u00a0"; return; }
  const r = Number(cell.dataset.row), c = Number(cell.dataset.col);
  cell.classList.add("on");
  table.tHead.rows[0].cells[c + 1].classList.add("on");
  table.tBodies[0].rows[r].cells[0].classList.add("on");
  readout.textContent = `${rowKind} ${rows[r]} ← source ${cols[c]}: weight ${Number(cell.dataset.weight).toFixed(3)}`;
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
