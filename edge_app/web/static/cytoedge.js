// CytoEdge web view: the live page (frames + counts) and the review queue's remembered reviewer name.
// Plain JavaScript, no build step. Text goes into the page with textContent only.
"use strict";

const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

function setText(id, value) {
  const el = document.getElementById(id);
  if (el) el.textContent = value;
}

// Frames: ask for one newer than the last (the server holds the request until one exists),
// show it, then wait out the rest of the interval. A hidden tab asks for nothing.
async function frameLoop(interval) {
  const img = document.getElementById("frame");
  let version = 0;
  for (;;) {
    if (document.hidden) { await sleep(1000); continue; }
    const t0 = performance.now();
    try {
      const r = await fetch("/live/frame.jpg?after=" + version, { credentials: "same-origin", cache: "no-store" });
      if (r.status === 200) {
        version = Number(r.headers.get("X-Frame-Version")) || version + 1;
        const url = URL.createObjectURL(await r.blob());
        const old = img.src;
        img.onload = () => { if (old.startsWith("blob:")) URL.revokeObjectURL(old); };
        img.src = url;
        img.hidden = false;
        document.getElementById("no-frame").hidden = true;
      } else if (r.status !== 204) {
        await sleep(2000);
      }
    } catch (e) {
      await sleep(2000);
    }
    const left = interval - (performance.now() - t0);
    if (left > 0) await sleep(left);
  }
}

function showCounts(s) {
  const state = s.running ? "capturing" : (s.ended ? "finished: " + s.ended : "waiting");
  setText("state", state);
  const link = document.getElementById("slide");
  if (s.slide && link) { link.textContent = s.slide; link.href = "/slides/" + encodeURIComponent(s.slide); }
  setText("frame-name", s.frame_name || "–");
  setText("fps", Number(s.fps).toFixed(1));
  setText("frame-cells", String(s.cells_in_frame));
  showStage(s.stage);
  const c = s.counts;
  if (!c) return;
  showProgress(s.slide, c.progress);
  setText("frames-total", String(c.frames));
  setText("cells-total", String(c.cells));
  setText("abnormal-fraction", c.abnormal_fraction_text);  // formatted by the server, as on every other page
  for (const [g, n] of Object.entries(c.per_group)) setText("group-" + g, String(n));
  const body = document.getElementById("class-counts");
  const rows = [];
  for (const [name, n] of Object.entries(c.per_class)) {
    const tr = document.createElement("tr");
    const group = c.class_groups[name] || "unknown";
    tr.className = "g-" + group;
    for (const [text, cls] of [[name, ""], [group, ""], [String(n), "num"]]) {
      const td = document.createElement("td");
      td.textContent = text;
      if (cls) td.className = cls;
      tr.appendChild(td);
    }
    rows.push(tr);
  }
  body.replaceChildren(...rows);
}

// Manual stage: the focus score against the slide's threshold (the bar is half full at the threshold)
// and what the device does with the view: moving, out of focus, settling or counted.
function showStage(st) {
  const box = document.getElementById("stage");
  if (!box || !st) return;
  box.hidden = false;
  const share = Math.max(0, Math.min(2, Number(st.focus_share)));
  const bar = document.getElementById("focus-bar");
  bar.style.width = (50 * share).toFixed(0) + "%";
  bar.className = share >= 1 ? "ok" : "low";
  setText("focus-value", Number(st.focus).toFixed(1) + " (needs " + Number(st.threshold).toFixed(1) + ")");
  const state = document.getElementById("stage-state");
  state.textContent = st.state;
  state.className = "badge state-" + st.state.replace(/ /g, "-");
}

let coverageFields = -1;
function showProgress(slide, p) {
  const box = document.getElementById("progress");
  if (!box || !p) return;
  box.hidden = false;
  setText("fields-total", String(p.fields));
  setText("coverage-fields", String(p.coverage_fields));
  setText("classifiable", String(p.classifiable));
  setText("adequacy-threshold", String(p.threshold));
  setText("abnormal-so-far", (100 * p.abnormal_fraction).toFixed(1) + " %");
  document.getElementById("adequacy-bar").style.width = Math.min(100, 100 * p.classifiable / p.threshold).toFixed(0) + "%";
  const ad = document.getElementById("adequacy");
  ad.textContent = p.adequacy_text;
  ad.className = "badge " + (p.adequate ? "ok" : "");
  const img = document.getElementById("coverage");
  if (p.fields > 0 && p.fields !== coverageFields) {  // a new field: fetch the map again
    coverageFields = p.fields;
    img.src = "/slides/" + encodeURIComponent(slide) + "/coverage.png?fields=" + p.fields;
    img.hidden = false;
  }
}

async function countsLoop() {
  for (;;) {
    try {
      const r = await fetch("/api/live", { credentials: "same-origin", cache: "no-store" });
      if (r.ok) showCounts(await r.json());
    } catch (e) { /* the server restarted or the network dropped: try again */ }
    await sleep(document.hidden ? 5000 : 1000);
  }
}

function reviewQueue() {
  const name = document.getElementById("reviewer-name");
  if (!name) return;
  const KEY = "cytoedge.reviewer";
  name.value = localStorage.getItem(KEY) || "";
  name.addEventListener("change", () => localStorage.setItem(KEY, name.value.trim()));
  for (const form of document.querySelectorAll("form.review-form")) {
    form.addEventListener("submit", (ev) => {
      const who = name.value.trim();
      if (!who) {
        ev.preventDefault();
        document.getElementById("reviewer-missing").hidden = false;
        name.focus();
        return;
      }
      localStorage.setItem(KEY, who);
      form.elements.reviewer.value = who;
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const live = document.getElementById("live");
  if (live) {
    frameLoop(Number(live.dataset.interval) || 200);
    countsLoop();
  }
  reviewQueue();
});
