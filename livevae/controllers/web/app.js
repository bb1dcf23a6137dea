// livevae's browser control surface: one WebSocket to /ui/ws, JSON both ways, preview pictures as binary JPEG.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const state = { ws: null, hello: null, controls: {}, dragging: new Set(), pending: {}, queued: false,
                  learn: false, lastInput: 0, received: 0, pictures: 0, closed: "" };
  window.livevae = state; // read by the browser tests; harmless for a performer

  function pinFromUrl() { return new URLSearchParams(location.search).get("pin") || ""; }
  let pin = pinFromUrl();

  function connect() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${proto}://${location.host}/ui/ws?pin=${encodeURIComponent(pin)}`);
    ws.binaryType = "blob";
    state.ws = ws;
    ws.onmessage = (ev) => {
      if (typeof ev.data !== "string") { showPicture(ev.data); return; }
      const msg = JSON.parse(ev.data);
      state.received++;
      if (msg.hello) build(msg.hello);
      if (msg.values) for (const [t, v] of Object.entries(msg.values)) setControl(t, v);
      if (msg.show) showState(msg.show);
      if (msg.scenes) buildScenes(msg.scenes);
      if (msg.error) flash(msg.error);
    };
    ws.onopen = () => { status("connected", true); };
    ws.onclose = (ev) => {
      state.ws = null;
      state.closed = String(ev.code);
      if (ev.code === 4003) { askPin(pin ? "wrong PIN" : ""); return; }
      if (ev.code === 4029) { askPin("too many wrong PINs: wait a minute"); return; }
      status("reconnecting…", false);
      setTimeout(connect, 1000);
    };
  }

  function status(text, on) { const s = $("status"); s.textContent = text; s.className = on ? "on" : "off"; }
  let flashTimer = 0;
  function flash(text) { status(text, false); clearTimeout(flashTimer); flashTimer = setTimeout(() => status("connected", true), 2500); }

  function askPin(message) {
    $("surface").hidden = true;
    $("pinform").hidden = false;
    $("pinmsg").textContent = message;
    status("PIN needed", false);
  }
  $("pinform").addEventListener("submit", (ev) => {
    ev.preventDefault();
    pin = $("pin").value.trim();
    $("pinform").hidden = true;
    connect();
  });

  function send(obj) { if (state.ws && state.ws.readyState === 1) state.ws.send(JSON.stringify(obj)); }
  // A drag sends at most once per animation frame: the newest value of every control it moved.
  function setRemote(target, value) {
    state.pending[target] = value;
    state.lastInput = Date.now();
    if (!state.queued) {
      state.queued = true;
      requestAnimationFrame(() => { state.queued = false; send({ set: state.pending }); state.pending = {}; });
    }
  }

  function build(h) {
    state.hello = h;
    $("name").textContent = h.name;
    $("surface").hidden = false;
    const box = $("faders");
    box.textContent = "";
    state.controls = {};
    for (const c of h.controls) box.appendChild(fader(c));
    buildScenes(h.scenes);
    const sel = $("source");
    sel.textContent = "";
    h.sources.forEach((s, i) => { const o = document.createElement("option"); o.value = i; o.textContent = s.split("/").pop(); sel.appendChild(o); });
    showState(h.show);
    $("preview").hidden = !h.preview;
    placePuck();
  }

  function fader(c) {
    const el = document.createElement("div");
    el.className = "fader";
    el.dataset.target = c.target;
    el.innerHTML = `<div class="fill"></div><span class="label"></span><span class="val"></span>`;
    el.querySelector(".label").textContent = c.target;
    const ctl = { ...c, el };
    state.controls[c.target] = ctl;
    draw(ctl);
    const fromX = (ev) => {
      const r = el.getBoundingClientRect();
      const u = Math.min(1, Math.max(0, (ev.clientX - r.left) / r.width));
      ctl.value = c.lo + u * (c.hi - c.lo);
      draw(ctl);
      setRemote(c.target, ctl.value);
    };
    el.addEventListener("pointerdown", (ev) => {
      if (state.learn) { send({ action: "midi.learn", arg: c.target }); setLearn(false); return; }
      el.setPointerCapture(ev.pointerId);
      state.dragging.add(c.target);
      fromX(ev);
    });
    el.addEventListener("pointermove", (ev) => { if (state.dragging.has(c.target)) fromX(ev); });
    const end = () => state.dragging.delete(c.target);
    el.addEventListener("pointerup", end);
    el.addEventListener("pointercancel", end);
    return el;
  }

  function draw(ctl) {
    const u = (ctl.value - ctl.lo) / (ctl.hi - ctl.lo || 1);
    ctl.el.querySelector(".fill").style.width = `${(100 * u).toFixed(1)}%`;
    ctl.el.querySelector(".val").textContent = Number(ctl.value).toFixed(2);
  }

  function setControl(t, v) {
    const ctl = state.controls[t];
    if (!ctl || state.dragging.has(t)) return; // the finger on it wins
    ctl.value = v;
    draw(ctl);
    if (state.hello && state.hello.xy.includes(t) && !state.dragging.has("xy")) placePuck();
  }

  // XY pad: x and y are the first two directions, sent together
  const pad = $("xy");
  function padValue(ev) {
    const r = pad.getBoundingClientRect();
    const u = Math.min(1, Math.max(0, (ev.clientX - r.left) / r.width));
    const v = Math.min(1, Math.max(0, 1 - (ev.clientY - r.top) / r.height));
    const [tx, ty] = state.hello.xy;
    const cx = state.controls[tx], cy = state.controls[ty];
    cx.value = cx.lo + u * (cx.hi - cx.lo); cy.value = cy.lo + v * (cy.hi - cy.lo);
    draw(cx); draw(cy); placePuck();
    setRemote(tx, cx.value); setRemote(ty, cy.value);
  }
  function placePuck() {
    if (!state.hello || state.hello.xy.length < 2) { pad.hidden = true; return; }
    const cx = state.controls[state.hello.xy[0]], cy = state.controls[state.hello.xy[1]];
    $("puck").style.left = `${(100 * (cx.value - cx.lo) / (cx.hi - cx.lo)).toFixed(1)}%`;
    $("puck").style.top = `${(100 * (1 - (cy.value - cy.lo) / (cy.hi - cy.lo))).toFixed(1)}%`;
  }
  pad.addEventListener("pointerdown", (ev) => { pad.setPointerCapture(ev.pointerId); state.dragging.add("xy"); padValue(ev); });
  pad.addEventListener("pointermove", (ev) => { if (state.dragging.has("xy")) padValue(ev); });
  pad.addEventListener("pointerup", () => state.dragging.delete("xy"));
  pad.addEventListener("pointercancel", () => state.dragging.delete("xy"));

  function buildScenes(names) {
    const box = $("scenes");
    box.textContent = "";
    for (const n of names) {
      const b = document.createElement("button");
      b.textContent = n;
      b.dataset.scene = n;
      b.addEventListener("click", () => send({ action: "scene.recall", arg: n }));
      box.appendChild(b);
    }
    if (state.hello) markScene(state.hello.show.scene);
  }
  function markScene(name) { for (const b of $("scenes").children) b.classList.toggle("current", b.dataset.scene === name); }

  function showState(s) {
    if (state.hello) state.hello.show = s;
    $("record").classList.toggle("on", !!s.recording);
    $("source").value = String(s.source);
    markScene(s.scene);
  }
  $("record").addEventListener("click", () => send({ action: "record", arg: !$("record").classList.contains("on") }));
  function setLearn(on) { state.learn = on; $("learn").classList.toggle("on", on); for (const f of $("faders").children) f.classList.toggle("armed", on); }
  $("learn").addEventListener("click", () => setLearn(!state.learn));
  $("source").addEventListener("change", (ev) => send({ action: "source", arg: Number(ev.target.value) }));
  $("savebtn").addEventListener("click", () => {
    const n = $("scenename").value.trim();
    if (n) { send({ action: "scene.save", arg: n }); $("scenename").value = ""; }
  });

  let lastUrl = "";
  function showPicture(blob) {
    const url = URL.createObjectURL(blob);
    $("preview").src = url;
    if (lastUrl) URL.revokeObjectURL(lastUrl);
    lastUrl = url;
    state.pictures++;
  }

  connect();
})();
