// recpipe console: copy buttons, the player with its waveform (a recording's page, a
// room's), and a room's participant lanes following the mix.
// Everything shown here came from the server as data; it is put on the page only with
// textContent and canvas drawing, never as HTML.
"use strict";

document.addEventListener("click", (event) => {
  const button = event.target.closest("button.copy");
  if (!button) return;
  const text = button.dataset.copy || "";
  const done = () => { button.textContent = "copied"; setTimeout(() => { button.textContent = "copy"; }, 1200); };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, () => selectText(button));
  } else {
    selectText(button);
  }
});

function selectText(button) {
  const code = button.parentElement.querySelector("code");
  if (!code) return;
  const range = document.createRange();
  range.selectNodeContents(code);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

// --- refreshing a page whose work is in progress ----------------------------------
// The page says how often (`data-refresh`, seconds). It is not reloaded while a player
// plays or a field has the focus: the countdown starts again once it is quiet.

function refreshWhenQuiet() {
  const seconds = Number(document.body.dataset.refresh || 0);
  if (!seconds) return;
  let due = Date.now() + seconds * 1000;
  const busy = () =>
    [...document.querySelectorAll("audio, video")].some((m) => !m.paused && !m.ended) ||
    (document.activeElement !== null && document.activeElement.matches("input, select, textarea"));
  setInterval(() => {
    if (busy()) {
      due = Date.now() + seconds * 1000;
    } else if (Date.now() >= due) {
      window.location.reload();
    }
  }, 250);
}
document.addEventListener("DOMContentLoaded", refreshWhenQuiet);

// --- the player --------------------------------------------------------------------

function pageData() {
  const element = document.getElementById("page-data");
  return element ? JSON.parse(element.textContent) : null;
}

// audiowaveform JSON (version 1 or 2): [min, max] per pixel of the first channel, -1..1.
function peaksFromAudiowaveform(json) {
  if (!json || !Array.isArray(json.data) || !json.length) return null;
  const channels = json.channels || 1;
  const scale = 2 ** ((json.bits || 8) - 1);
  const out = [];
  for (let i = 0; i < json.length; i++) {
    const at = 2 * channels * i;
    out.push([Number(json.data[at]) / scale, Number(json.data[at + 1]) / scale]);
  }
  return {
    peaks: out,
    duration: (json.length * (json.samples_per_pixel || 256)) / (json.sample_rate || 44100),
  };
}

// Without a peaks.json beside the media: decode the audio here and take its peaks.
async function peaksFromAudio(url, columns) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) throw new Error("media answered " + response.status);
  const bytes = await response.arrayBuffer();
  const context = new OfflineAudioContext(1, 1, 44100);
  const audio = await context.decodeAudioData(bytes);
  const samples = audio.getChannelData(0);
  const step = Math.max(1, Math.floor(samples.length / columns));
  const out = [];
  for (let c = 0; c < columns; c++) {
    let lo = 0, hi = 0;
    const end = Math.min(samples.length, (c + 1) * step);
    for (let i = c * step; i < end; i++) {
      const v = samples[i];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    out.push([lo, hi]);
  }
  return { peaks: out, duration: audio.duration };
}

function draw(canvas, wave, timeline, position) {
  const ctx = canvas.getContext("2d");
  const width = canvas.width, height = canvas.height, mid = height / 2;
  ctx.clearRect(0, 0, width, height);
  const duration = wave.duration || 1;
  const x = (seconds) => (seconds / duration) * width;
  if (timeline) {
    for (const gap of timeline.gaps || []) {
      ctx.fillStyle = gap.reason === "missing" ? "rgba(192,57,43,.35)" : "rgba(104,112,131,.35)";
      ctx.fillRect(x(gap.start_s), 0, Math.max(1, x(gap.duration_s)), height);
    }
    for (const user of timeline.speech || []) {
      ctx.fillStyle = "rgba(31,143,78,.35)";
      for (const span of user.spans || []) {
        ctx.fillRect(x(span[0]), height - 8, Math.max(1, x(span[1]) - x(span[0])), 8);
      }
    }
  }
  ctx.fillStyle = "#2456c9";
  const n = wave.peaks.length;
  // Scaled to the loudest peak, so a quiet recording still shows its shape.
  if (!wave.loudest) {
    wave.loudest = 0.01;
    for (const [lo, hi] of wave.peaks) wave.loudest = Math.max(wave.loudest, -lo, hi);
  }
  const gain = 1 / wave.loudest;
  for (let px = 0; px < width; px++) {
    const [lo, hi] = wave.peaks[Math.min(n - 1, Math.floor((px / width) * n))] || [0, 0];
    const top = mid - Math.max(0.01, hi * gain) * mid * 0.95;
    const bottom = mid - Math.min(-0.01, lo * gain) * mid * 0.95;
    ctx.fillRect(px, top, 1, Math.max(1, bottom - top));
  }
  if (position > 0) {
    ctx.fillStyle = "#c0392b";
    ctx.fillRect(x(position), 0, 2, height);
  }
}

async function setUpPlayer() {
  const data = pageData();
  const audio = document.getElementById("player");
  const canvas = document.getElementById("waveform");
  const source = document.getElementById("waveform-source");
  if (!data || !audio || !canvas || !data.media) return;
  canvas.width = Math.max(300, Math.floor(canvas.clientWidth * (window.devicePixelRatio || 1)));
  let wave = null, timeline = null;
  try {
    const response = await fetch(data.player, { credentials: "same-origin" });
    const extra = response.ok ? await response.json() : {};
    timeline = extra.timeline || null;
    wave = peaksFromAudiowaveform(extra.peaks);
    if (wave) source.textContent = "(waveform from peaks.json)";
  } catch (error) {
    wave = null;
  }
  if (!wave) {
    try {
      wave = await peaksFromAudio(data.media, canvas.width);
      source.textContent = "(waveform decoded in the browser)";
    } catch (error) {
      source.textContent = "(no waveform: " + error.message + ")";
      return;
    }
  }
  canvas.dataset.drawn = "true";
  const redraw = () => draw(canvas, wave, timeline, audio.currentTime);
  redraw();
  audio.addEventListener("timeupdate", redraw);
  audio.addEventListener("loadedmetadata", () => {
    if (Number.isFinite(audio.duration) && audio.duration > 0) wave.duration = audio.duration;
    redraw();
  });
  canvas.addEventListener("click", (event) => {
    const rect = canvas.getBoundingClientRect();
    const fraction = (event.clientX - rect.left) / rect.width;
    const duration = Number.isFinite(audio.duration) ? audio.duration : wave.duration;
    audio.currentTime = Math.max(0, Math.min(duration, fraction * duration));
    redraw();
  });
}

// A room's page: every participant's lane shows where the mix is, and seeks when clicked.
function setUpLanes() {
  const audio = document.getElementById("player");
  const lanes = Array.from(document.querySelectorAll("svg.lane"));
  if (!audio || !lanes.length) return;
  const seconds = Number(lanes[0].dataset.seconds) || 1;
  const follow = () => {
    const x = String(Math.max(0, Math.min(1, audio.currentTime / seconds)) * 1000);
    for (const lane of lanes) {
      const line = lane.querySelector("line.playhead");
      line.setAttribute("x1", x);
      line.setAttribute("x2", x);
    }
  };
  audio.addEventListener("timeupdate", follow);
  for (const lane of lanes) {
    lane.addEventListener("click", (event) => {
      const rect = lane.getBoundingClientRect();
      const at = ((event.clientX - rect.left) / rect.width) * seconds;
      const end = Number.isFinite(audio.duration) ? audio.duration : seconds;
      audio.currentTime = Math.max(0, Math.min(end, at));
      follow();
    });
  }
}

document.addEventListener("DOMContentLoaded", setUpPlayer);
document.addEventListener("DOMContentLoaded", setUpLanes);

// --- the transcript beside the player -------------------------------------------------
// A click (or Enter) on a line seeks there; the line being played is highlighted; `cue`
// (a search hit, a flag) opens the player at its second.

function followTranscript() {
  const audio = document.getElementById("player");
  const data = pageData();
  if (!audio) return;
  if (data && typeof data.cue === "number") {
    const cue = () => { audio.currentTime = data.cue; };
    if (audio.readyState >= 1) cue(); else audio.addEventListener("loadedmetadata", cue, { once: true });
  }
  const list = document.getElementById("transcript");
  if (!list) return;
  const lines = [...list.querySelectorAll("li[data-start]")];
  const seek = (line) => { audio.currentTime = Number(line.dataset.start); audio.play().catch(() => {}); };
  list.addEventListener("click", (event) => {
    const line = event.target.closest("li[data-start]");
    if (line) seek(line);
  });
  list.addEventListener("keydown", (event) => {
    const line = event.target.closest("li[data-start]");
    if (line && event.key === "Enter") seek(line);
  });
  let current = null;
  audio.addEventListener("timeupdate", () => {
    const t = audio.currentTime;
    const playing = lines.find((l) => Number(l.dataset.start) <= t && t < Number(l.dataset.end) + 0.25) || null;
    if (playing === current) return;
    if (current) current.classList.remove("current");
    current = playing;
    if (current) {
      current.classList.add("current");
      current.scrollIntoView({ block: "nearest" });
    }
  });
}
document.addEventListener("DOMContentLoaded", followTranscript);
