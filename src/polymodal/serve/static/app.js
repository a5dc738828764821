// The polymodal web page: a form built from /metadata, predictions with probabilities and contributions.
"use strict";

const ACCEPT = { image: "image/*", audio: "audio/*", video: "video/*" };
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

function inputFor(field) {
  const attrs = { name: field.name, id: "field-" + field.name };
  if (ACCEPT[field.type]) return el("input", { ...attrs, type: "file", accept: ACCEPT[field.type] });
  if (field.type === "text") return el("textarea", attrs);
  if (field.type === "number") return el("input", { ...attrs, type: "number", step: "any" });
  if (field.type === "category") {
    const list = el("datalist", { id: "choices-" + field.name }, ...(field.choices || []).map((c) => el("option", { value: c })));
    const input = el("input", { ...attrs, type: "text", list: list.id });
    const span = document.createElement("span");
    span.append(input, list);
    return span;
  }
  return el("input", { ...attrs, type: "text", placeholder: "[0.1, 0.2, ...] (JSON list)" });
}

function buildForm(meta) {
  const box = document.getElementById("fields");
  for (const [name, modality] of Object.entries(meta.modalities)) {
    const set = el("fieldset", { "data-modality": name }, el("legend", {}, `${name} (${modality.type})`));
    for (const field of modality.fields) {
      set.append(el("label", { class: "field" }, el("span", {}, `${field.name} - ${field.type}`), inputFor(field)));
    }
    box.append(set);
  }
  if (!meta.explain) document.getElementById("explain").closest("label").hidden = true;
}

function formData(form) {
  const data = new FormData();
  for (const input of form.querySelectorAll("input[name], textarea[name]")) {
    if (input.type === "file") {
      if (input.files.length) data.append(input.name, input.files[0]);
    } else if (input.value.trim() !== "") {
      data.append(input.name, input.value);
    }
  }
  return data;
}

function bars(target, entries, top) {
  target.replaceChildren();
  for (const [label, value] of entries) {
    const bar = el("div", { class: "bar" + (label === top ? " top" : ""), style: `width:${(100 * value).toFixed(1)}%` });
    target.append(el("div", { class: "bar-row", "data-label": label }, el("span", {}, label),
      el("div", { class: "bar-track" }, bar), el("span", { class: "value" }, value.toFixed(3))));
  }
}

function fmt(v) {
  return v !== 0 && Math.abs(v) < 0.001 ? v.toExponential(1) : v.toFixed(3);
}

function contributionChart(target, contributions) {
  const entries = Object.entries(contributions);
  const width = 560, row = 28, left = 120, mid = left + (width - left) / 2;
  const scale = Math.max(1e-9, ...entries.map(([, v]) => Math.abs(v)));
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("width", width);
  svg.setAttribute("height", row * entries.length + 10);
  svg.setAttribute("role", "img");
  const add = (tag, attrs, text) => {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
  };
  entries.forEach(([name, value], i) => {
    const y = 5 + i * row, w = (Math.abs(value) / scale) * ((width - left) / 2 - 50);
    add("text", { x: 0, y: y + 17, "font-size": 13 }, name);
    add("rect", { x: value >= 0 ? mid : mid - w, y: y + 4, width: w, height: row - 10,
                  fill: value >= 0 ? "#16a34a" : "#dc2626", "data-modality": name, "data-value": value });
    add("text", { x: value >= 0 ? mid + w + 4 : mid - w - 4, y: y + 17, "font-size": 12,
                  "text-anchor": value >= 0 ? "start" : "end" }, fmt(value));
  });
  add("line", { x1: mid, x2: mid, y1: 0, y2: row * entries.length + 10, stroke: "#6b7280" });
  target.replaceChildren(svg);
}

function show(result) {
  document.getElementById("prediction").textContent = String(result.prediction);
  const probs = result.probabilities;
  document.getElementById("probabilities-box").hidden = !probs;
  if (probs) bars(document.getElementById("probabilities"), Object.entries(probs).sort((a, b) => b[1] - a[1]), String(result.prediction));
  const exp = result.explanation;
  document.getElementById("contributions-box").hidden = !exp;
  if (exp) {
    contributionChart(document.getElementById("contributions"), exp.contributions);
    document.getElementById("contributions-note").textContent =
      `confidence with every modality ${exp.value_full.toFixed(3)}, with none ${exp.value_empty.toFixed(3)}; ` +
      "the contributions add up to the difference.";
  }
  document.getElementById("result").hidden = false;
}

// A server started with an API key answers 401: ask for the key once, keep it for this tab, send it as X-API-Key.
async function call(url, options = {}) {
  const send = () => fetch(url, { ...options, headers: { "X-API-Key": sessionStorage.getItem("apiKey") || "" } });
  let response = await send();
  if (response.status === 401) {
    sessionStorage.setItem("apiKey", window.prompt("This server needs an API key:") || "");
    response = await send();
  }
  return response;
}

async function submit(event) {
  event.preventDefault();
  const error = document.getElementById("error");
  const button = document.getElementById("submit");
  error.hidden = true;
  button.disabled = true;
  try {
    const explain = document.getElementById("explain").checked;
    const response = await call(`/predict?explain=${explain}`, { method: "POST", body: formData(event.target) });
    const body = await response.json();
    if (!response.ok) throw new Error(body.detail || JSON.stringify(body));
    show(body.predictions[0]);
  } catch (err) {
    document.getElementById("result").hidden = true;
    error.textContent = err.message;
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
}

function switchTab(button) {
  for (const tab of document.querySelectorAll(".tab")) {
    tab.classList.toggle("active", tab === button);
    document.getElementById(tab.dataset.panel).hidden = tab !== button;
  }
  const frame = document.getElementById("report-frame");
  if (button.id === "tab-report" && frame.getAttribute("src") === "about:blank") frame.src = "/report";
}

async function init() {
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => switchTab(tab));
  document.getElementById("predict-form").addEventListener("submit", submit);
  const meta = await (await call("/metadata")).json();
  document.getElementById("title").textContent = `polymodal: ${meta.name}`;
  const classes = meta.target.classes.length ? `, classes ${meta.target.classes.join(", ")}` : "";
  document.getElementById("subtitle").textContent =
    `${meta.task} on ${Object.keys(meta.modalities).join(" + ")} (fusion ${meta.fusion.name}${classes}) - polymodal ${meta.version}`;
  buildForm(meta);
  document.body.dataset.ready = "true";
}

init().catch((err) => {
  const error = document.getElementById("error");
  error.textContent = `cannot load /metadata: ${err.message}`;
  error.hidden = false;
});
