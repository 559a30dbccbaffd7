// The outcome page: sends the form to the JSON API (/api/predict) and draws its answer.
// No inline script (the page's CSP forbids it); every text from the server is set with textContent.
"use strict";

(function () {
  const token = document.querySelector("meta[name=csrf-token]").content;
  const form = document.getElementById("patient-form");
  const status = document.getElementById("status");
  const SVG = "http://www.w3.org/2000/svg";
  const EXAMPLE = {age: 45, sex: "M", neuro_level: "C5", ais_admission: "C", uems: 20, lems: 15,
    l3_motor_l: 3, l3_motor_r: 2, s1_motor_l: 2, s1_motor_r: 3, l3_lt_l: 1, l3_lt_r: 2, s1_lt_l: 1, s1_lt_r: 1,
    days_to_rehab: 14, cord_lesion_length_mm: 20, cord_hemorrhage: 0, fracture: 1, plc_injury: 0, cord_edema: 1,
    prevertebral_edema: 0, disc_injury: 0, canal_compression: 0};

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  const pct = (p) => (100 * p).toFixed(1) + "%";
  const signed = (v) => (v >= 0 ? "+" : "−") + Math.abs(v).toFixed(3);

  function patientValues() {
    const out = {};
    for (const input of form.querySelectorAll("[data-kind]")) {
      const raw = input.value.trim();
      if (raw === "") continue; // missing: the server names it
      if (input.dataset.kind === "number") {
        const num = Number(raw);
        out[input.name] = Number.isFinite(num) ? num : raw;
      } else {
        out[input.name] = raw;
      }
    }
    return out;
  }

  function clearErrors() {
    for (const e of document.querySelectorAll(".err")) e.textContent = "";
    for (const e of document.querySelectorAll(".field.invalid")) e.classList.remove("invalid");
  }

  function showErrors(errors) {
    const rest = [];
    for (const [name, msg] of Object.entries(errors)) {
      const target = document.getElementById("err-" + name);
      if (target) {
        target.textContent = msg;
        const box = target.closest(".field");
        if (box) box.classList.add("invalid");
      } else {
        rest.push(name + ": " + msg);
      }
    }
    status.textContent = rest.length ? rest.join("; ") : "Please correct the marked fields.";
  }

  // A SHAP waterfall: from the base value (average model output on the training cohort, log-odds) through
  // this patient's largest contributions to the model's output for the patient.
  function waterfall(shap, logOdds) {
    const MAX = 10;
    const items = shap.contributions.slice(0, MAX).map((c) => ({
      label: c.label + " = " + c.value + (c.unit ? " " + c.unit : ""), v: c.shap, feature: c.feature}));
    const rest = shap.contributions.slice(MAX);
    if (rest.length) {
      items.push({label: rest.length + " other features", v: rest.reduce((s, c) => s + c.shap, 0), feature: ""});
    }
    let x = shap.base_value;
    const rows = items.map((it) => { const r = {...it, start: x, end: x + it.v}; x += it.v; return r; });
    const xs = [shap.base_value, logOdds].concat(rows.flatMap((r) => [r.start, r.end]));
    let lo = Math.min(...xs), hi = Math.max(...xs);
    if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
    const pad = 0.05 * (hi - lo);
    lo -= pad; hi += pad;
    const W = 640, left = 250, right = 70, rowH = 22, top = 24;
    const H = top + rowH * (rows.length + 1) + 28;
    const sx = (v) => left + (v - lo) / (hi - lo) * (W - left - right);
    const s = svg("svg", {class: "shap-chart", viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img",
      "aria-label": "SHAP waterfall: contributions to this patient's log-odds"});
    s.appendChild(svg("text", {x: 4, y: 14, class: "axis"},
      "base value (cohort average) " + shap.base_value.toFixed(3) + " log-odds"));
    rows.forEach((r, i) => {
      const y = top + i * rowH;
      const g = svg("g", {class: "row", "data-feature": r.feature});
      g.appendChild(svg("text", {x: left - 6, y: y + 15, "text-anchor": "end", class: "label"}, r.label));
      const x0 = sx(Math.min(r.start, r.end)), x1 = sx(Math.max(r.start, r.end));
      g.appendChild(svg("rect", {x: x0, y: y + 3, width: Math.max(x1 - x0, 1), height: rowH - 6,
        class: "bar " + (r.v >= 0 ? "up" : "down"), "data-shap": r.v}));
      g.appendChild(svg("text", {x: x1 + 4, y: y + 15, class: "value"}, signed(r.v)));
      s.appendChild(g);
    });
    const yEnd = top + rows.length * rowH;
    s.appendChild(svg("line", {x1: sx(logOdds), x2: sx(logOdds), y1: top, y2: yEnd + 4, class: "final"}));
    s.appendChild(svg("line", {x1: sx(shap.base_value), x2: sx(shap.base_value), y1: top, y2: yEnd + 4,
      class: "base"}));
    s.appendChild(svg("text", {x: left - 6, y: yEnd + 17, "text-anchor": "end", class: "label"},
      "model output f(x)"));
    s.appendChild(svg("text", {x: sx(logOdds) + 4, y: yEnd + 17, class: "value"}, logOdds.toFixed(3)));
    s.appendChild(svg("text", {x: 4, y: H - 4, class: "axis"},
      "log-odds; red pushes the probability up, blue down; values in the units entered"));
    return s;
  }

  function renderResult(r, vm) {
    const box = document.getElementById("result-" + r.model);
    if (!box) return;
    box.replaceChildren();
    if (r.unavailable) {
      box.appendChild(el("p", {class: "unavailable"}, r.unavailable));
      return;
    }
    const p = el("p", {class: "prob"});
    p.appendChild(el("span", {class: "pct", "data-probability": String(r.probability)}, pct(r.probability)));
    p.appendChild(el("span", {class: "answer " + (r.positive ? "pos" : "neg")}, " " + r.answer));
    box.appendChild(p);
    box.appendChild(el("p", {class: "exact"}, "P = " + r.probability.toFixed(6) + " (threshold " +
      r.threshold + ")"));
    if (r.interval) {
      box.appendChild(el("p", {class: "interval"}, "95% interval " + pct(r.interval.low) + " – " +
        pct(r.interval.high) + " (" + r.interval.method + ")"));
    }
    for (const w of r.outside_training_range || []) box.appendChild(el("p", {class: "warning"}, "⚠ " + w));
    if (r.target === "ambulation_discharge" && vm) {
      box.appendChild(el("p", {class: "vm-beside"}, "Beside it, van Middendorp: score " + vm.score +
        " of 40, probability " + pct(vm.probability)));
    }
    if (r.shap) box.appendChild(waterfall(r.shap, r.log_odds));
  }

  function renderImage(image) {
    const panel = document.getElementById("image-panel");
    if (!image) { panel.hidden = true; return; }
    document.getElementById("image-png").src = image.png;
    document.getElementById("image-caption").textContent = (image.pseudo_stir ? "T2w | pseudo-STIR, " : "T2w, ") +
      image.slice_choice;
    panel.hidden = false;
  }

  async function predict(ev) {
    ev.preventDefault();
    clearErrors();
    status.textContent = "Predicting…";
    const patient = patientValues();
    const t2w = document.getElementById("in-t2w").files[0];
    const labels = document.getElementById("in-labels").files[0];
    let init;
    if (t2w || labels) {
      const fd = new FormData();
      fd.append("patient", JSON.stringify(patient));
      fd.append("csrf_token", token);
      if (t2w) fd.append("t2w", t2w);
      if (labels) fd.append("labels", labels);
      init = {method: "POST", body: fd, headers: {"X-CSRF-Token": token}};
    } else {
      init = {method: "POST", body: JSON.stringify({patient: patient, explain: true}),
        headers: {"Content-Type": "application/json", "X-CSRF-Token": token}};
    }
    let resp, body;
    try {
      resp = await fetch("/api/predict", init);
      body = await resp.json();
    } catch (e) {
      status.textContent = "The server did not answer (" + e + ").";
      return;
    }
    if (!resp.ok) {
      if (body.errors) showErrors(body.errors); else status.textContent = body.error || resp.statusText;
      return;
    }
    for (const r of body.results) renderResult(r, body.van_middendorp);
    const vmBox = document.getElementById("result-vm");
    vmBox.replaceChildren(el("p", {class: "prob"}, "score " + body.van_middendorp.score + " (range −10 to 40), " +
      "probability of independent walking " + pct(body.van_middendorp.probability)));
    renderImage(body.image);
    status.textContent = "Done.";
    document.body.dataset.answered = String(Number(document.body.dataset.answered || 0) + 1);
  }

  async function batch(ev) {
    ev.preventDefault();
    const errs = document.getElementById("batch-errors");
    const link = document.getElementById("batch-download");
    errs.textContent = "";
    link.hidden = true;
    const file = document.getElementById("batch-file").files[0];
    if (!file) { errs.textContent = "Choose a CSV file first."; return; }
    const fd = new FormData();
    fd.append("file", file);
    fd.append("csrf_token", token);
    const resp = await fetch("/api/batch", {method: "POST", body: fd, headers: {"X-CSRF-Token": token}});
    if (!resp.ok) {
      const body = await resp.json();
      errs.textContent = Object.entries(body.errors || {error: body.error}).map(([k, v]) => k + ": " + v).join("; ");
      return;
    }
    link.href = URL.createObjectURL(await resp.blob());
    link.hidden = false;
  }

  document.getElementById("example").addEventListener("click", () => {
    for (const input of form.querySelectorAll("[data-kind]")) {
      if (input.name in EXAMPLE) input.value = String(EXAMPLE[input.name]);
    }
  });
  form.addEventListener("submit", predict);
  document.getElementById("batch-form").addEventListener("submit", batch);
  document.body.dataset.ready = "1";
})();
