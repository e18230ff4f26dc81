// vlmc chat page: plain JavaScript, no build step. Talks to the server's
// OpenAI-compatible POST /v1/chat/completions with stream: true and shows the
// answer as the Server-Sent Events arrive (fetch + ReadableStream).
"use strict";

const $ = (id) => document.getElementById(id);
// The sampling temperature from the header's field (0 = greedy, the default; the server's own default would be 1).
function temperature() {
  const t = Number($("temperature").value);
  return Number.isFinite(t) && t >= 0 && t <= 2 ? t : 0;
}
const state = { history: [], image: null, busy: false, controller: null, model: "echo" };

const keyInput = $("api-key");
keyInput.value = localStorage.getItem("vlmc-api-key") || "";
keyInput.addEventListener("change", () => { localStorage.setItem("vlmc-api-key", keyInput.value); loadModel(); });

function headers() {
  const h = { "Content-Type": "application/json" };
  if (keyInput.value) h["Authorization"] = "Bearer " + keyInput.value;
  return h;
}

async function loadModel() {
  try {
    const r = await fetch("/v1/models", { headers: headers() });
    const j = await r.json();
    if (!r.ok) throw new Error(j.error ? j.error.message : r.statusText);
    state.model = j.data[0].id;
    $("model").textContent = state.model;
  } catch (e) {
    $("model").textContent = "(" + e.message + ")";
  }
}

function setImage(file) {
  if (!file) return;
  if (!file.type.startsWith("image/")) { status("not an image: " + file.name); return; }
  const reader = new FileReader();
  reader.onload = () => {
    state.image = reader.result; // a data: URL
    $("preview").src = state.image;
    $("preview").hidden = false;
    $("remove-image").hidden = false;
    $("drop-hint").hidden = true;
    status("image: " + file.name + " (" + Math.round(file.size / 1024) + " KiB)");
  };
  reader.readAsDataURL(file);
}

function clearImage() {
  state.image = null;
  $("preview").hidden = true;
  $("preview").removeAttribute("src");
  $("remove-image").hidden = true;
  $("drop-hint").hidden = false;
  $("image").value = "";
}

function status(text) { $("status").textContent = text; }

function addMessage(role, text, image) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  if (image) { const img = document.createElement("img"); img.src = image; div.appendChild(img); }
  const span = document.createElement("span");
  span.className = "content";
  span.textContent = text;
  div.appendChild(span);
  $("messages").appendChild(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

// Reads an SSE body: calls onEvent(data) for each "data:" event.
async function readSSE(body, onEvent) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let sep;
    while ((sep = buf.indexOf("\n\n")) >= 0) {
      const event = buf.slice(0, sep);
      buf = buf.slice(sep + 2);
      const data = event.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
      if (data && onEvent(data) === false) return;
    }
  }
}

async function send(ev) {
  ev.preventDefault();
  if (state.busy) { if (state.controller) state.controller.abort(); return; }
  const text = $("prompt").value.trim();
  if (!text) return;
  const content = [];
  if (state.image) content.push({ type: "image_url", image_url: { url: state.image } });
  content.push({ type: "text", text });
  const userMsg = { role: "user", content: state.image ? content : text };
  addMessage("user", text, state.image);
  $("prompt").value = "";
  clearImage();
  const out = addMessage("assistant", "");
  out.classList.add("streaming");
  const span = out.querySelector(".content");
  state.busy = true;
  state.controller = new AbortController();
  $("send").textContent = "Stop";
  status("generating…");
  let answer = "", finish = null, usage = null;
  try {
    const r = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), signal: state.controller.signal,
      body: JSON.stringify({ model: state.model, messages: state.history.concat([userMsg]), stream: true,
                             temperature: temperature(), stream_options: { include_usage: true } }),
    });
    if (!r.ok) {
      let msg = r.status + " " + r.statusText;
      try { const j = await r.json(); if (j.error) msg = j.error.message; } catch (_) { /* not JSON */ }
      throw new Error(msg);
    }
    await readSSE(r.body, (data) => {
      if (data === "[DONE]") return false;
      const j = JSON.parse(data);
      if (j.error) throw new Error(j.error.message);
      if (j.usage) usage = j.usage;
      for (const c of j.choices || []) {
        if (c.delta && c.delta.content) { answer += c.delta.content; span.textContent = answer; out.scrollIntoView({ block: "end" }); }
        if (c.finish_reason) finish = c.finish_reason;
      }
      return true;
    });
    state.history.push(userMsg, { role: "assistant", content: answer });
    out.dataset.finish = finish || "";
    status("done" + (finish ? " (" + finish + ")" : "") +
           (usage ? ": " + usage.prompt_tokens + " prompt + " + usage.completion_tokens + " completion tokens" : ""));
  } catch (e) {
    if (e.name === "AbortError") { status("stopped"); state.history.push(userMsg, { role: "assistant", content: answer }); }
    else { addMessage("error", e.message); status("error"); }
  } finally {
    out.classList.remove("streaming");
    out.dataset.done = "1";
    state.busy = false;
    state.controller = null;
    $("send").textContent = "Send";
  }
}

$("composer").addEventListener("submit", send);
$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
});
$("image").addEventListener("change", (e) => setImage(e.target.files[0]));
$("remove-image").addEventListener("click", clearImage);
$("clear").addEventListener("click", () => { state.history = []; $("messages").textContent = ""; status(""); });
const drop = $("drop");
["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
drop.addEventListener("drop", (e) => { if (e.dataTransfer.files.length) setImage(e.dataTransfer.files[0]); });
document.addEventListener("paste", (e) => {
  for (const item of e.clipboardData.items) if (item.type.startsWith("image/")) setImage(item.getAsFile());
});
loadModel();
