// Reading page: one case at a time, window/level and slice scrolling on a canvas, answers saved on every click.
// Keyboard: arrows/PgUp/PgDn change the slice (never an answer, whatever has focus); the answer shortcuts are
// printed beside each option (data-key); n/p move to the next/previous case. Reading time per case is posted
// to /api/TOKEN/time/CASE whenever the case leaves the screen (next case, hidden tab, closed page).
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
  let zoom = 1, panX = 0, panY = 0;  // view transform shared by the case and the T2w pane
  let t2w = null;         // the subject's T2w stack (same shape) when the study shows it
  const t2wCanvas = $("t2w");
  let shownAt = null;     // when the current case came on screen (reading time), null while hidden
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

  function draw(target, stack, lvl, wid) {
    const { data, S, H, W } = stack;
    if (target.width !== W || target.height !== H) { target.width = W; target.height = H; }
    const c2 = target.getContext("2d");
    const out = c2.createImageData(W, H);
    const low = lvl - wid / 2, scale = 255 / wid;
    for (let h = 0; h < H; h++) {
      for (let w = 0; w < W; w++) {
        const v = data[slice + S * (h + H * w)];  // NIfTI voxel order: first axis fastest
        const g = Math.max(0, Math.min(255, (v - low) * scale));
        const p = 4 * (h * W + w);
        out.data[p] = out.data[p + 1] = out.data[p + 2] = g;
        out.data[p + 3] = 255;
      }
    }
    c2.putImageData(out, 0, 0);
  }

  function render() {
    if (!img) return;
    if (img.png) { renderPng(); return; }
    draw(canvas, img, level, width);
    if (t2wCanvas && t2w && t2w.S === img.S) draw(t2wCanvas, t2w, DEFAULT_LEVEL, DEFAULT_WIDTH);
    fitCanvas();
    $("slice-text").textContent = (slice + 1) + " / " + img.S;
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
    // Physical aspect ratio (pixel spacing dh x dw), scaled to the available space; then zoom and pan.
    const wrap = $("canvas-wrap");
    const physW = img.W * img.dw, physH = img.H * img.dh;
    const maxW = Math.max(200, wrap.clientWidth - 8), maxH = Math.max(300, window.innerHeight - 220);
    const k = Math.min(maxW / physW, maxH / physH);
    for (const c of [canvas, t2wCanvas]) {
      if (!c) continue;
      c.style.width = Math.round(physW * k) + "px";
      c.style.height = Math.round(physH * k) + "px";
      c.style.transform = "translate(" + panX + "px, " + panY + "px) scale(" + zoom + ")";
    }
    $("zoom-text").textContent = Math.round(zoom * 100) + "%";
  }

  function setZoom(z) {
    zoom = Math.max(1, Math.min(8, z));
    if (zoom === 1) { panX = 0; panY = 0; }
    if (img) fitCanvas();
  }

  function setSlice(s) {
    if (!img) return;
    slice = Math.max(0, Math.min(img.S - 1, s));
    render();
  }

  async function loadT2w(caseInfo) {
    t2w = null;
    if (!t2wCanvas) return;
    try {
      const r = await fetch(api("cases/" + caseInfo.id + "/t2w.nii"));
      if (!r.ok) throw new Error("HTTP " + r.status);
      t2w = parseNifti(await r.arrayBuffer());
    } catch (err) {
      setStatus("T2w not shown (" + err.message + ")", true);
    }
  }

  async function loadImage(caseInfo) {
    img = null;
    await loadT2w(caseInfo);
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
    $("case-title").textContent = (st.session ? "Session " + st.session.index + " of " + st.session.count + " · " : "")
      + "Case " + (index + 1) + " of " + st.total;
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

  const queued = {};  // "case|field" -> saves of that field still on their way (their local value wins)

  function save(caseId, field, value) {
    pending++;
    const q = caseId + "|" + field;
    queued[q] = (queued[q] || 0) + 1;
    setStatus("Saving…");
    saving = saving.then(async () => {
      let inQueue = true;
      try {
        const r = await fetch(api("answer/" + caseId), {
          method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ [field]: value }),
        });
        const body = await r.json().catch(() => ({}));
        queued[q]--;
        inQueue = false;
        if (!r.ok) throw new Error(body.error || ("HTTP " + r.status));
        // The server's answer, except fields whose later clicks are still queued (not yet known to it).
        const merged = Object.assign({}, body.answer);
        for (const name of Object.keys(merged)) {
          if (queued[caseId + "|" + name] > 0) merged[name] = (st.answers[caseId] || {})[name];
        }
        st.answers[caseId] = merged;
        pending--;
        if (pending === 0) setStatus("All answers saved");
      } catch (err) {
        if (inQueue) queued[q]--;
        pending--;
        setStatus("Not saved: " + err.message, true);
      }
      if (st.cases[index].id === caseId) fillForm();
      updateProgress();
    });
    return saving;
  }

  // ------------------------------------------------------------------------------------------ reading time
  const timePosts = new Set();  // reading-time reports still on their way

  function flushTime() {
    // Seconds the current case was on screen since it was shown (or the page became visible again).
    if (shownAt === null || !st || !st.cases.length) return;
    const seconds = (performance.now() - shownAt) / 1000;
    shownAt = null;
    if (!(seconds > 0.05)) return;
    const p = fetch(api("time/" + st.cases[index].id), {
      method: "POST", headers: { "Content-Type": "application/json" }, keepalive: true,
      body: JSON.stringify({ seconds: Math.min(seconds, 3600) }),
    }).catch(() => {}).finally(() => timePosts.delete(p));
    timePosts.add(p);
  }

  function startClock() {
    if (document.visibilityState === "visible") shownAt = performance.now();
  }

  async function showCase(i) {
    flushTime();
    index = Math.max(0, Math.min(st.total - 1, i));
    startClock();
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
    flushTime();  // the current case's time, while its session is still open
    await saving;
    await Promise.all(Array.from(timePosts));
    const r = await fetch(api("submit"), { method: "POST" });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) { setStatus("Not submitted: " + (body.error || r.status), true); return; }
    if (body.session_submitted) {  // session 1 locked: reload, the page then shows the washout
      shownAt = null;
      await Promise.all(Array.from(timePosts));
      location.reload();
      return;
    }
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
  $("submit").addEventListener("click", () => { flushTime(); startClock(); $("confirm-panel").hidden = false; });
  $("cancel-submit").addEventListener("click", () => { $("confirm-panel").hidden = true; });
  $("confirm-submit").addEventListener("click", submitAll);
  $("slice").addEventListener("input", (ev) => setSlice(Number(ev.target.value)));
  $("level").addEventListener("input", (ev) => { level = Number(ev.target.value); render(); });
  $("width").addEventListener("input", (ev) => { width = Number(ev.target.value); render(); });
  $("reset-wl").addEventListener("click", () => { level = DEFAULT_LEVEL; width = DEFAULT_WIDTH; render(); });
  $("zoom-in").addEventListener("click", () => setZoom(zoom * 1.25));
  $("zoom-out").addEventListener("click", () => setZoom(zoom / 1.25));
  $("zoom-fit").addEventListener("click", () => setZoom(1));
  for (const c of [canvas, t2wCanvas]) {
    if (!c) continue;
    c.addEventListener("wheel", (ev) => { ev.preventDefault(); setSlice(slice + Math.sign(ev.deltaY)); },
                       { passive: false });
    let drag = null;
    c.addEventListener("pointerdown", (ev) => {
      drag = { x: ev.clientX, y: ev.clientY, level, width, panX, panY, pan: ev.shiftKey };
      c.setPointerCapture(ev.pointerId);
    });
    c.addEventListener("pointermove", (ev) => {
      if (!drag) return;
      if (drag.pan) {  // Shift+drag pans the (zoomed) view
        panX = drag.panX + (ev.clientX - drag.x);
        panY = drag.panY + (ev.clientY - drag.y);
        fitCanvas();
        return;
      }
      if (c !== canvas) return;  // window/level applies to the case image only
      width = Math.max(0.05, drag.width + (ev.clientX - drag.x) * 0.005);
      level = drag.level - (ev.clientY - drag.y) * 0.005;
      render();
    });
    c.addEventListener("pointerup", () => { drag = null; });
  }

  const SLICE_KEYS = { ArrowUp: -1, ArrowLeft: -1, PageUp: -1, ArrowDown: 1, ArrowRight: 1, PageDown: 1 };
  const RANGES = new Set(["slice", "level", "width"]);

  function answerByKey(key) {
    // The radio whose data-key matches (e.g. "r", "3", "shift+3", "b"); checking it fires the usual save.
    const input = document.querySelector("#answer-form input[data-key='" + CSS.escape(key) + "']");
    if (!input || input.disabled) return false;
    if (!input.checked) {
      input.checked = true;
      input.dispatchEvent(new Event("change", { bubbles: true }));
    }
    return true;
  }

  // Capture phase: runs before the focused element's own key handling, so an arrow key pressed while a radio
  // button has focus changes the slice and can never move the checked answer.
  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const onRange = ev.target && RANGES.has(ev.target.id);
    if (ev.key in SLICE_KEYS) {
      if (onRange && ev.target.id !== "slice") return;  // the level/window sliders keep their own arrows
      ev.preventDefault();
      ev.stopPropagation();
      if (ev.target && ev.target.type === "radio") ev.target.blur();
      setSlice(slice + SLICE_KEYS[ev.key]);
      return;
    }
    if (ev.key === "Home" || ev.key === "End") {
      if (onRange) return;
      ev.preventDefault();
      if (img) setSlice(ev.key === "Home" ? 0 : img.S - 1);
      return;
    }
    if (!st || ev.repeat) return;
    const digit = /^Digit([1-5])$/.exec(ev.code || "");
    const letter = (ev.key || "").length === 1 ? ev.key.toLowerCase() : "";
    let handled = false;
    if (digit) handled = answerByKey((ev.shiftKey ? "shift+" : "") + digit[1]);
    else if (letter === "n" && !ev.shiftKey) { showCase(index + 1); handled = true; }
    else if (letter === "p" && !ev.shiftKey) { showCase(index - 1); handled = true; }
    else if (letter === "z") { setZoom(zoom * 1.25); handled = true; }
    else if (letter === "x") { setZoom(zoom / 1.25); handled = true; }
    else if (letter === "f") { setZoom(1); handled = true; }
    else if (letter === "w") { level = DEFAULT_LEVEL; width = DEFAULT_WIDTH; render(); handled = true; }
    else if (letter) handled = answerByKey((ev.shiftKey ? "shift+" : "") + letter);
    if (handled) ev.preventDefault();
  }, true);
  window.addEventListener("resize", () => { if (img) fitCanvas(); });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") startClock(); else flushTime();
  });
  window.addEventListener("pagehide", flushTime);
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
    if (st.total === 0 && st.session) {  // between the two sessions: nothing to read until the washout is over
      $("case-title").textContent = "Session " + (st.session.index - 1) + " submitted";
      setStatus("Session " + st.session.index + " opens " + new Date(st.session.opens_at).toLocaleString());
      for (const id of ["viewer", "answer-form"]) $(id).hidden = true;
      document.body.dataset.ready = "1";
      return;
    }
    setStatus(st.submitted_at ? "Submitted" : "Ready");
    await showCase(st.resume_index);
    document.body.dataset.ready = "1";
  })();
})();
