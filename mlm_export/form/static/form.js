// mlm-export form: the page's behaviour. Hand-written, no library, nothing loaded from elsewhere.
// Every value goes to the server as plain JSON; the server turns it into export_item's arguments.
"use strict";

const $ = (selector) => document.querySelector(selector);
const TOKEN = document.querySelector('meta[name="mlm-form-token"]').content;
const OPTIONS = JSON.parse($("#options").textContent);
let measured = false;
let uploaded = null;  // name|size|lastModified of the file the server holds
let checkSeq = 0;
let checkTimer = null;
// The fields a check reports on (the export and publish steps keep their own messages).
const CHECKED_FIELDS = [...document.querySelectorAll(".problem")].map((p) => p.dataset.field)
  .filter((f) => f !== "export" && f !== "publish");

function el(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text) node.textContent = text;
  return node;
}

async function api(path, body, headers = {}) {
  const options = {method: "POST", headers: {"X-MLM-Form-Token": TOKEN, ...headers}, body};
  if (!(body instanceof Blob)) options.headers["Content-Type"] = "application/json";
  const response = await fetch(path, options);
  let answer;
  try { answer = await response.json(); } catch (e) { answer = {error: {message: `HTTP ${response.status}`}}; }
  return {ok: response.ok && !answer.error, status: response.status, answer};
}

// --- problems next to their fields -------------------------------------------------------------------------------
function clearProblems(fields) {
  document.querySelectorAll(".problem").forEach((p) => {
    if (!fields || fields.includes(p.dataset.field)) { p.textContent = ""; p.classList.remove("shown"); }
  });
}

function showProblem(field, text) {
  const target = document.querySelector(`.problem[data-field="${field}"]`) ||
    document.querySelector('.problem[data-field="general"]');
  target.textContent = target.textContent ? `${target.textContent}\n${text}` : text;
  target.classList.add("shown");
}

function showError(answer, fallbackField) {
  const error = answer.error || {};
  const field = error.field && error.field !== "general" ? error.field : fallbackField;
  showProblem(field, error.message + (error.hint ? ` Hint: ${error.hint}` : ""));
}

// --- step 1: the model ----------------------------------------------------------------------------------------------
function measureValues() {
  return {
    path: $("#path").value, model_class: $("#model_class").value, model_kwargs: $("#model_kwargs").value,
    input_shape: $("#input_shape").value, trust_pickle: $("#trust_pickle").checked,
  };
}

function humanBytes(size) {
  if (size === undefined || size === null) return "?";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = size, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return unit ? `${value.toFixed(1)} ${units[unit]}` : `${size} B`;
}

function showFacts(answer) {
  const facts = answer.facts;
  const list = $("#facts-list");
  list.replaceChildren();
  const rows = [
    ["framework", `${facts.framework || "?"} ${facts.framework_version || ""}`],
    ["architecture", facts.architecture], ["tasks inferred", (facts.tasks || []).join(", ") || "-"],
    ["parameters", facts.total_parameters], ["memory", humanBytes(facts.memory_size)],
    ["file", facts.file.name], ["file size", `${humanBytes(facts.file.size)} (${facts.file.size} bytes)`],
    ["checksum (sha2-256 multihash)", facts.file.checksum],
  ];
  for (const [key, value] of rows) {
    list.append(el("dt", {}, key), el("dd", {"data-fact": key}, String(value ?? "?")));
  }
  const body = $("#tensors tbody");
  body.replaceChildren();
  for (const [kind, specs] of [["input", facts.inputs], ["output", facts.outputs]]) {
    for (const spec of specs) {
      const tensor = spec.input || spec.result || spec;
      const dynamic = tensor.dim_order.filter((_, i) => tensor.shape[i] === -1);
      const row = el("tr", {"data-tensor": `${kind}:${spec.name}`});
      for (const text of [kind, spec.name, `[${tensor.shape.join(", ")}]`, tensor.dim_order.join(", "),
        tensor.data_type, dynamic.join(", ") || "-"]) row.append(el("td", {}, text));
      body.append(row);
    }
  }
  showInputSections(facts.inputs);
  const notes = $("#notes");
  notes.replaceChildren();
  for (const note of answer.notes || []) notes.append(el("li", {class: "note"}, `note: ${note}`));
  for (const warning of answer.warnings || []) notes.append(el("li", {class: "warn"}, `warning: ${warning}`));
  $("#facts").hidden = false;
}

async function measure() {
  clearProblems(["model", "trust_pickle", "model_class", "model_kwargs", "input_shape"]);
  const status = $("#measure-status");
  const file = $("#model-file").files[0];
  const key = file ? `${file.name}|${file.size}|${file.lastModified}` : null;
  if (file && !$("#path").value && key !== uploaded) {  // measuring again with other options: no second upload
    status.textContent = "uploading...";
    uploaded = null;
    const sent = await api("/api/upload", file, {"X-File-Name": file.name});
    if (!sent.ok) { status.textContent = "refused"; showError(sent.answer, "model"); return; }
    uploaded = key;
  }
  status.textContent = "measuring...";
  const result = await api("/api/model", JSON.stringify(measureValues()));
  if (!result.ok) {
    status.textContent = "not measured";
    $("#facts").hidden = true;
    measured = false;
    showError(result.answer, "model");
    return;
  }
  status.textContent = "measured";
  measured = true;
  showFacts(result.answer);
  scheduleCheck(0);
}

// --- step 2: the fields -----------------------------------------------------------------------------------------
function bandNames() {
  return splitBands($("#bands").value);
}

function splitBands(text) {
  return text.split(/[\n,]+/).map((b) => b.trim()).filter((b) => b);
}

// Several image inputs (with a channel axis): the first keeps the fields above, each other one gets a section.
let imageInputs = [];

function showInputSections(inputs) {
  imageInputs = inputs.filter((spec) => (spec.input || spec).dim_order.includes("channel")).map((spec) => spec.name);
  $("#bands-legend").textContent = imageInputs.length > 1
    ? `Bands of input '${imageInputs[0]}', in channel order` : "Bands of the input, in channel order";
  const more = $("#more-inputs");
  const kept = new Set(imageInputs.slice(1));
  more.querySelectorAll("fieldset").forEach((section) => { if (!kept.has(section.dataset.input)) section.remove(); });
  for (const name of imageInputs.slice(1)) {
    if (more.querySelector(`fieldset[data-input="${CSS.escape(name)}"]`)) continue;
    more.append(inputSection(name));
  }
}

function inputSection(name) {
  const section = el("fieldset", {class: "input-section", "data-input": name});
  section.append(el("legend", {}, `Bands and value scaling of input '${name}'`));
  const preset = el("select", {class: "band-preset"});
  preset.append(el("option", {value: ""}, "choose a preset..."));
  for (const key of Object.keys(OPTIONS.band_presets)) preset.append(el("option", {value: key}, key));
  const bands = el("textarea", {class: "bands", rows: "2"});
  preset.addEventListener("change", () => {
    const names = OPTIONS.band_presets[preset.value];
    if (names) { bands.value = names.join("\n"); scheduleCheck(); }
  });
  const mode = el("select", {class: "scaling-mode"});
  for (const [value, text] of [["", "unknown (left out, with a warning)"], ["rows", "as below"]]) {
    mode.append(el("option", {value}, text));
  }
  const table = el("table", {class: "scaling"});
  const body = el("tbody");
  table.append(body);
  const add = el("button", {type: "button", class: "add-scaling"}, "Add a scaling row");
  add.addEventListener("click", () => { scalingRow(undefined, body); mode.value = "rows"; scheduleCheck(); });
  const labelled = (text, node) => { const label = el("label", {}, text); label.append(node); return label; };
  section.append(labelled("Preset ", preset), labelled("Band names (one per line or comma separated) ", bands),
    labelled("Scaling ", mode), table, add);
  return section;
}

function rowsScaling(rows) {
  return [...rows].map((row) => {
    const entry = {type: row.querySelector(".scaling-type").value};
    row.querySelectorAll("input[data-key]").forEach((input) => { entry[input.dataset.key] = input.value; });
    return entry;
  });
}

// bands and value_scaling: lists for the first image input, or mappings by input name once another one is filled.
function bandsAndScaling() {
  const values = {bands: bandNames(), value_scaling: scalingValue()};
  const sections = [...document.querySelectorAll("#more-inputs fieldset")].map((section) => ({
    name: section.dataset.input, bands: splitBands(section.querySelector(".bands").value),
    scaling: section.querySelector(".scaling-mode").value === "rows"
      ? rowsScaling(section.querySelectorAll(".scaling-row")) : null,
  }));
  if (!sections.some((s) => s.bands.length || s.scaling)) return values;
  const bands = {}, scaling = {};
  for (const s of [{name: imageInputs[0], bands: values.bands, scaling: values.value_scaling}, ...sections]) {
    if (s.bands.length) bands[s.name] = s.bands;
    if (s.scaling !== null) scaling[s.name] = s.scaling;
  }
  return {bands: Object.keys(bands).length ? bands : null, value_scaling: Object.keys(scaling).length ? scaling : null};
}

function scalingRow(entry = {type: "scale"}, body = $("#scaling tbody")) {
  const row = el("tr", {class: "scaling-row"});
  const type = el("select", {class: "scaling-type"});
  for (const kind of Object.keys(OPTIONS.value_scaling)) type.append(el("option", {value: kind}, kind));
  type.value = entry.type;
  const keys = el("td", {class: "scaling-keys"});
  const drawKeys = () => {
    keys.replaceChildren();
    for (const key of OPTIONS.value_scaling[type.value]) {
      const input = el("input", {type: "text", size: "10", "data-key": key, placeholder: key});
      if (entry[key] !== undefined) input.value = entry[key];
      keys.append(el("label", {}, `${key} `), input);
    }
  };
  type.addEventListener("change", () => { drawKeys(); scheduleCheck(); });
  drawKeys();
  const remove = el("button", {type: "button", class: "remove"}, "remove");
  remove.addEventListener("click", () => { row.remove(); scheduleCheck(); });
  const cell = el("td");
  cell.append(type);
  const last = el("td");
  last.append(remove);
  row.append(cell, keys, last);
  body.append(row);
  return row;
}

function scalingValue() {
  const mode = $("#scaling-mode").value;
  if (mode !== "rows") return mode || null;
  return rowsScaling(document.querySelectorAll("#scaling .scaling-row"));
}

function classRow(entry = {}) {
  const body = $("#classes tbody");
  const row = el("tr", {class: "class-row"});
  const value = el("input", {type: "number", class: "class-value", value: entry.value ?? body.children.length});
  const name = el("input", {type: "text", class: "class-name", value: entry.name || ""});
  const description = el("input", {type: "text", class: "class-description", value: entry.description || ""});
  const colour = el("input", {type: "color", class: "class-colour", value: entry.colour || "#808080"});
  const used = el("input", {type: "checkbox", class: "class-colour-used", title: "give this colour"});
  used.checked = Boolean(entry.colour);
  colour.addEventListener("input", () => { used.checked = true; });
  const remove = el("button", {type: "button", class: "remove"}, "remove");
  remove.addEventListener("click", () => { row.remove(); scheduleCheck(); });
  for (const node of [value, name, description]) { const cell = el("td"); cell.append(node); row.append(cell); }
  const colourCell = el("td");
  colourCell.append(colour, used);
  const last = el("td");
  last.append(remove);
  row.append(colourCell, last);
  body.append(row);
  return row;
}

function classesValue() {
  return [...document.querySelectorAll(".class-row")].map((row) => ({
    value: row.querySelector(".class-value").value,
    name: row.querySelector(".class-name").value,
    description: row.querySelector(".class-description").value,
    color_hint: row.querySelector(".class-colour-used").checked ? row.querySelector(".class-colour").value : "",
  }));
}

function usePaste() {
  const lines = $("#class-paste").value.split("\n").map((l) => l.trim()).filter((l) => l);
  $("#classes tbody").replaceChildren();
  lines.forEach((line, index) => {
    const parts = line.split(/[,\t]/).map((p) => p.trim());
    const colour = parts.find((p, i) => i > 0 && /^#[0-9a-fA-F]{6}$/.test(p));
    const description = parts.slice(1).filter((p) => p !== colour).join(", ");
    classRow({value: index, name: parts[0], description, colour: colour ? colour.toLowerCase() : ""});
  });
  scheduleCheck();
}

function derivedRow() {
  const row = el("tr", {class: "derived-row"});
  const href = el("input", {type: "text", class: "derived-href", size: "40"});
  const split = el("select", {class: "derived-split"});
  split.append(el("option", {value: ""}, "-"));
  for (const name of OPTIONS.splits) split.append(el("option", {value: name}, name));
  const title = el("input", {type: "text", class: "derived-title"});
  const remove = el("button", {type: "button", class: "remove"}, "remove");
  remove.addEventListener("click", () => { row.remove(); scheduleCheck(); });
  for (const node of [href, split, title, remove]) { const cell = el("td"); cell.append(node); row.append(cell); }
  $("#derived tbody").append(row);
  return row;
}

function derivedValue() {
  return [...document.querySelectorAll(".derived-row")].map((row) => ({
    href: row.querySelector(".derived-href").value, split: row.querySelector(".derived-split").value,
    title: row.querySelector(".derived-title").value,
  }));
}

// --- the map: drag a box, or type W S E N ----------------------------------------------------------------------
const SVG = "http://www.w3.org/2000/svg";
let dragStart = null;

function lonLat(event) {
  const svg = $("#map");
  const point = svg.createSVGPoint();
  point.x = event.clientX;
  point.y = event.clientY;
  const local = point.matrixTransform(svg.getScreenCTM().inverse());
  const clamp = (v, limit) => Math.max(-limit, Math.min(limit, v));
  return [clamp(local.x, 180), clamp(-local.y, 90)];
}

function round(value) { return String(Math.round(value * 100) / 100); }

function bboxInputs() { return ["#bbox-w", "#bbox-s", "#bbox-e", "#bbox-n"].map((s) => $(s)); }

function drawBox() {
  const group = $("#boxes");
  group.replaceChildren();
  const [w, s, e, n] = bboxInputs().map((i) => parseFloat(i.value));
  if ([w, s, e, n].some((v) => Number.isNaN(v))) return;
  const spans = w <= e ? [[w, e]] : [[w, 180], [-180, e]];  // W > E: across the antimeridian
  for (const [west, east] of spans) {
    const rect = document.createElementNS(SVG, "rect");
    rect.setAttribute("class", "box");
    rect.setAttribute("x", west);
    rect.setAttribute("y", -Math.max(s, n));
    rect.setAttribute("width", Math.max(east - west, 0.2));
    rect.setAttribute("height", Math.max(Math.abs(n - s), 0.2));
    group.append(rect);
  }
}

function setBox(a, b) {
  const values = [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[0], b[0]), Math.max(a[1], b[1])];
  bboxInputs().forEach((input, i) => { input.value = round(values[i]); });
  drawBox();
}

function initMap() {
  const svg = $("#map");
  svg.addEventListener("mousedown", (event) => { event.preventDefault(); dragStart = lonLat(event); });
  svg.addEventListener("mousemove", (event) => { if (dragStart) setBox(dragStart, lonLat(event)); });
  window.addEventListener("mouseup", (event) => {
    if (!dragStart) return;
    setBox(dragStart, lonLat(event));
    dragStart = null;
    scheduleCheck();
  });
  bboxInputs().forEach((input) => input.addEventListener("input", drawBox));
  $("#clear-bbox").addEventListener("click", () => {
    bboxInputs().forEach((input) => { input.value = ""; });
    drawBox();
    scheduleCheck();
  });
}

// --- step 3: live validation ------------------------------------------------------------------------------------
function formValues() {
  const pretrained = $("#pretrained").value;
  const bbox = bboxInputs().map((i) => i.value.trim());
  return {
    ...measureValues(),
    name: $("#name").value, description: $("#description").value,
    tasks: [...document.querySelectorAll("#task-list input:checked")].map((i) => i.value),
    ...bandsAndScaling(), resize_type: $("#resize_type").value,
    classes: classesValue(), bbox: bbox.every((v) => v === "") ? null : bbox,
    datetime: $("#datetime").value, start_datetime: $("#start_datetime").value,
    end_datetime: $("#end_datetime").value, license: $("#license").value, doi: $("#doi").value,
    citation: $("#citation").value, container: $("#container").value,
    source_code: $("#source_code").value, collection: $("#collection").value,
    pretrained: pretrained === "" ? null : pretrained === "true", pretrained_source: $("#pretrained_source").value,
    artifact_format: $("#artifact_format").value, derived_from: derivedValue(),
  };
}

function scheduleCheck(delay = 300) {
  if (!measured) return;
  document.body.dataset.checking = "1";  // until the answer of the newest check is shown
  clearTimeout(checkTimer);
  checkTimer = setTimeout(() => { checkTimer = null; check(); }, delay);
}

async function check() {
  const seq = ++checkSeq;
  $("#validity").textContent = "checking...";
  $("#validity").className = "status";
  const result = await api("/api/check", JSON.stringify(formValues()));
  if (seq !== checkSeq || checkTimer !== null || result.answer.stale) return;  // a newer check is on its way
  document.body.dataset.checking = "0";
  clearProblems(CHECKED_FIELDS);
  const answer = result.answer;
  const warnings = $("#warnings");
  warnings.replaceChildren();
  for (const w of answer.warnings || []) warnings.append(el("li", {class: "warn"}, `warning: ${w}`));
  if (answer.arguments) $("#call").textContent = answer.arguments;
  if (answer.valid) {
    $("#validity").textContent = "valid: the Item passes every schema and check";
    $("#validity").className = "status valid";
    return;
  }
  $("#validity").textContent = "not valid yet: see the problems next to the fields";
  $("#validity").className = "status invalid";
  if (answer.problems && answer.problems.length) {
    for (const p of answer.problems) showProblem(p.field, `${p.path || "/"}: ${p.message}`);
  } else if (answer.error) {
    showError(answer, "general");
  }
}

// --- step 4: results -------------------------------------------------------------------------------------------
async function exportItem() {
  clearProblems(["export"]);
  $("#export-status").textContent = "making the Item...";
  const result = await api("/api/export", JSON.stringify(formValues()));
  if (!result.ok) {
    $("#export-status").textContent = "failed";
    showError(result.answer, "export");
    return;
  }
  $("#export-status").textContent = `made ${result.answer.item_id} (${result.answer.files.join(", ")})`;
  $("#downloads").hidden = false;
}

async function publishItem() {
  clearProblems(["publish"]);
  const token = $("#api_token");
  const values = {
    api_url: $("#api_url").value, collection_id: $("#collection_id").value, href_base: $("#href_base").value,
    if_exists: $("#if_exists").value, api_token: token.value,
  };
  token.value = "";  // sent once, kept nowhere on the page
  $("#publish-status").textContent = "publishing...";
  const result = await api("/api/publish", JSON.stringify(values));
  if (!result.ok) {
    $("#publish-status").textContent = "not published";
    showError(result.answer, "publish");
    return;
  }
  const a = result.answer;
  $("#publish-status").textContent = `published ${a.published.join(", ") || "nothing"} to ${a.collection_id}` +
    (a.skipped.length ? ` (skipped ${a.skipped.join(", ")})` : "");
}

// --- start ------------------------------------------------------------------------------------------------------
function init() {
  $("#max-upload").textContent = humanBytes(Number(document.querySelector('meta[name="mlm-form-max-upload"]').content));
  for (const task of OPTIONS.tasks) {
    const input = el("input", {type: "checkbox", value: task, id: `task-${task}`});
    const label = el("label", {class: "check"});
    label.append(input, ` ${task}`);
    $("#task-list").append(label);
  }
  for (const name of Object.keys(OPTIONS.band_presets)) $("#band-preset").append(el("option", {value: name}, name));
  $("#band-preset").addEventListener("change", (event) => {
    const preset = OPTIONS.band_presets[event.target.value];
    if (preset) { $("#bands").value = preset.join("\n"); scheduleCheck(); }
  });
  for (const kind of OPTIONS.resize_types) $("#resize_type").append(el("option", {value: kind}, kind));
  $("#resize_type").append(el("option", {value: "none"}, "none applies"));
  for (const kind of OPTIONS.artifact_formats) $("#artifact_format").append(el("option", {value: kind}, kind));
  for (const id of OPTIONS.licenses) $("#licenses").append(el("option", {value: id}));
  $("#measure").addEventListener("click", measure);
  $("#add-scaling").addEventListener("click", () => { scalingRow(); $("#scaling-mode").value = "rows"; scheduleCheck(); });
  $("#add-class").addEventListener("click", () => { classRow(); scheduleCheck(); });
  $("#use-paste").addEventListener("click", usePaste);
  $("#add-derived").addEventListener("click", () => { derivedRow(); scheduleCheck(); });
  $("#export").addEventListener("click", exportItem);
  $("#publish-form").addEventListener("submit", (event) => { event.preventDefault(); publishItem(); });
  $("#step-fields").addEventListener("input", () => scheduleCheck());
  $("#step-fields").addEventListener("change", () => scheduleCheck());
  initMap();
}

init();
