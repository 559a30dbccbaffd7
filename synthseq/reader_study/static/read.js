// Reading page: one case at a time, window/level and slice scrolling on a canvas, answers saved on every click.
// Plain JS, no external resources. The image is the case's float32 NIfTI stack (S, H, W) in windowed units
// (1st/99th percentile = 0/1), so window/level works on the full range, not on an 8-bit rendering.
"use strict";
(function () {
  const token = document.body.dataset.token;
  const api = (path) => "/api/" + encodeURIComponent(token) + "/" + path;
  const $ = (id) => document.getElementById(id);
  const canvas = $("image");
  const ctx = canvas.getContext("2d");
  const fields = Array.from(document.querySelectorAll("fieldset[data-field]"));
  const DEFAULT_LEVEL = 0.5, DEFAULT_WIDTH = 1.0;

  let st = null;          // server state: cases, answers, progress, submission
  let index = 0;          // current case position in this reader's order
  let img = null;         // {data: Float32Array, S, H, W, dh, dw} of the current case
  let slice = 0, level = DEFAULT_LEVEL, width = DEFAULT_WIDTH;
  let saving = Promise.resolve();  // saves run one after another, in click order
  let pending = 0;

  function setStatus(text, isError) {
    const el = $("save-status");
    el.textContent = text;
    el.classList.toggle("error", !!isError);
  }

  function isComplete(answer) {
    return !!answer && fields.every((fs) => answer[fs.dataset.field] !== null && answer[fs.dataset.field] !== undefined);
  }

  // ------------------------------------------------------------------------------------------------ image
  function parseNifti(buf) {
    const dv = new DataView(buf);
    if (dv.getInt32(0, true) !== 348) throw new Error("not a little-endian NIfTI-1 file");
    const dim = (k) => dv.getInt16(40 + 2 * k, true);
    const pixdim = (k) => dv.getFloat32(76 + 4 * k, true);
    if (dv.getInt16(70, true) !== 16) throw new Error("expected float32 voxels");
    const S = dim(1), H = dim(2), W = dim(3);
    const offset = Math.round(dv.getFloat32(108, true));
    return { data: new Float32Array(buf.slice(offset, offset + 4 * S * H * W)), S, H, W,
             dh: pixdim(2) || 1, dw: pixdim(3) || 1 };
  }

  function render() {
    if (!img) return;
    if (img.png) { renderPng(); return; }
    const { data, S, H, W } = img;
    if (canvas.width !== W || canvas.height !== H) { canvas.width = W; canvas.height = H; }
    const out = ctx.createImageData(W, H);
    const low = level - width / 2, scale = 255 / width;
    for (let h = 0; h < H; h++) {
      for (let w = 0; w < W; w++) {
        const v = data[slice + S * (h + H * w)];  // NIfTI voxel order: first axis fastest
        const g = Math.max(0, Math.min(255, (v - low) * scale));
        const p = 4 * (h * W + w);
        out.data[p] = out.data[p + 1] = out.data[p + 2] = g;
        out.data[p + 3] = 255;
      }
    }
    ctx.putImageData(out, 0, 0);
    fitCanvas();
    $("slice-text").textContent = (slice + 1) + " / " + S;
    $("slice").value = slice;
    $("level").value = level;
    $("width").value = width;
  }

  function renderPng() {
    // Fallback when the float stack cannot be read: the 8-bit display PNG (default window only).
    const picture = new Image();
    picture.onload = () => {
      canvas.width = picture.width; canvas.height = picture.height;
      ctx.drawImage(picture, 0, 0);
      fitCanvas();
    };
    picture.src = api("cases/" + img.id + "/slice_" + String(slice).padStart(3, "0") + ".png");
    $("slice-text").textContent = (slice + 1) + " / " + img.S;
    $("slice").value = slice;
  }

  function fitCanvas() {
    // Physical aspect ratio (pixel spacing dh x dw), scaled to the available space.
    const wrap = $("canvas-wrap");
    const physW = img.W * img.dw, physH = img.H * img.dh;
    const maxW = Math.max(200, wrap.clientWidth - 8), maxH = Math.max(300, window.innerHeight - 220);
    const k = Math.min(maxW / physW, maxH / physH);
    canvas.style.width = Math.round(physW * k) + "px";
    canvas.style.height = Math.round(physH * k) + "px";
  }

  function setSlice(s) {
    if (!img) return;
    slice = Math.max(0, Math.min(img.S - 1, s));
    render();
  }

  async function loadImage(caseInfo) {
    img = null;
    try {
      const r = await fetch(api("cases/" + caseInfo.id + "/stack.nii"));
      if (!r.ok) throw new Error("HTTP " + r.status);
      img = parseNifti(await r.arrayBuffer());
    } catch (err) {
      setStatus("Showing the fixed-window image (" + err.message + ")", true);
      const [, dh, dw] = caseInfo.spacing_mm;
      img = { png: true, id: caseInfo.id, S: caseInfo.n_slices, H: caseInfo.height, W: caseInfo.width, dh, dw };
    }
    slice = Math.floor(img.S / 2);
    $("slice").max = img.S - 1;
    render();
  }

  // ---------------------------------------------------------------------------------------------- answers
  function fillForm() {
    const c = st.cases[index];
    const answer = st.answers[c.id] || {};
    const locked = !!st.submitted_at;
    $("case-title").textContent = "Case " + (index + 1) + " of " + st.total;
    for (const fs of fields) {
      const name = fs.dataset.field;
      const value = answer[name];
      for (const input of fs.querySelectorAll("input")) {
        input.checked = value !== null && value !== undefined && String(value) === input.value;
        input.disabled = locked;
      }
      fs.classList.toggle("unanswered", value === null || value === undefined);
    }
  }

  function updateProgress() {
    const done = st.cases.filter((c) => isComplete(st.answers[c.id])).length;
    st.complete = done;
    $("progress").max = st.total;
    $("progress").value = done;
    $("progress-text").textContent = done + " of " + st.total + " complete";
    const dots = $("case-dots");
    dots.replaceChildren(...st.cases.map((c, i) => {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = String(i + 1);
      b.title = "Case " + (i + 1) + (isComplete(st.answers[c.id]) ? " (complete)" : "");
      b.classList.toggle("done", isComplete(st.answers[c.id]));
      b.classList.toggle("current", i === index);
      b.addEventListener("click", () => showCase(i));
      return b;
    }));
    $("prev").disabled = index === 0;
    $("next").disabled = index === st.total - 1;
    const locked = !!st.submitted_at;
    $("submit").disabled = locked || done !== st.total;
    $("submit").hidden = locked;
    $("submitted-note").hidden = !locked;
  }

  function save(caseId, field, value) {
    pending++;
    setStatus("Saving…");
    saving = saving.then(async () => {
      try {
        const r = await fetch(api("answer/" + caseId), {
          method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ [field]: value }),
        });
        const body = await r.json().catch(() => ({}));
        if (!r.ok) throw new Error(body.error || ("HTTP " + r.status));
        st.answers[caseId] = body.answer;
        pending--;
        if (pending === 0) setStatus("All answers saved");
      } catch (err) {
        pending--;
        setStatus("Not saved: " + err.message, true);
      }
      if (st.cases[index].id === caseId) fillForm();
      updateProgress();
    });
    return saving;
  }

  async function showCase(i) {
    index = Math.max(0, Math.min(st.total - 1, i));
    fillForm();
    updateProgress();
    try {
      await loadImage(st.cases[index]);
    } catch (err) {
      setStatus("Image error: " + err.message, true);
    }
  }

  async function submitAll() {
    $("confirm-panel").hidden = true;
    await saving;
    const r = await fetch(api("submit"), { method: "POST" });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) { setStatus("Not submitted: " + (body.error || r.status), true); return; }
    st.submitted_at = body.submitted_at;
    setStatus("Submitted");
    fillForm();
    updateProgress();
  }

  // ----------------------------------------------------------------------------------------------- events
  document.getElementById("answer-form").addEventListener("change", (ev) => {
    const input = ev.target;
    const fs = input.closest("fieldset");
    if (!fs || st.submitted_at) return;
    const value = fs.dataset.numeric ? Number(input.value) : input.value;
    const caseId = st.cases[index].id;
    st.answers[caseId] = Object.assign({}, st.answers[caseId] || {}, { [fs.dataset.field]: value });
    fs.classList.remove("unanswered");
    save(caseId, fs.dataset.field, value);
  });
  $("prev").addEventListener("click", () => showCase(index - 1));
  $("next").addEventListener("click", () => showCase(index + 1));
  $("submit").addEventListener("click", () => { $("confirm-panel").hidden = false; });
  $("cancel-submit").addEventListener("click", () => { $("confirm-panel").hidden = true; });
  $("confirm-submit").addEventListener("click", submitAll);
  $("slice").addEventListener("input", (ev) => setSlice(Number(ev.target.value)));
  $("level").addEventListener("input", (ev) => { level = Number(ev.target.value); render(); });
  $("width").addEventListener("input", (ev) => { width = Number(ev.target.value); render(); });
  $("reset-wl").addEventListener("click", () => { level = DEFAULT_LEVEL; width = DEFAULT_WIDTH; render(); });
  canvas.addEventListener("wheel", (ev) => { ev.preventDefault(); setSlice(slice + Math.sign(ev.deltaY)); },
                          { passive: false });
  let drag = null;
  canvas.addEventListener("pointerdown", (ev) => {
    drag = { x: ev.clientX, y: ev.clientY, level, width };
    canvas.setPointerCapture(ev.pointerId);
  });
  canvas.addEventListener("pointermove", (ev) => {
    if (!drag) return;
    width = Math.max(0.05, drag.width + (ev.clientX - drag.x) * 0.005);
    level = drag.level - (ev.clientY - drag.y) * 0.005;
    render();
  });
  canvas.addEventListener("pointerup", () => { drag = null; });
  document.addEventListener("keydown", (ev) => {
    if (ev.target.tagName === "INPUT") return;  // radios use arrow keys themselves
    if (ev.key === "ArrowUp" || ev.key === "PageUp") { setSlice(slice - 1); ev.preventDefault(); }
    if (ev.key === "ArrowDown" || ev.key === "PageDown") { setSlice(slice + 1); ev.preventDefault(); }
  });
  window.addEventListener("resize", () => { if (img) fitCanvas(); });
  window.addEventListener("beforeunload", (ev) => { if (pending > 0) ev.preventDefault(); });

  (async function start() {
    try {
      const r = await fetch(api("state"), { cache: "no-store" });
      if (!r.ok) throw new Error("HTTP " + r.status);
      st = await r.json();
    } catch (err) {
      setStatus("Cannot load the study: " + err.message, true);
      return;
    }
    setStatus(st.submitted_at ? "Submitted" : "Ready");
    await showCase(st.resume_index);
    document.body.dataset.ready = "1";
  })();
})();
