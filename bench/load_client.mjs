// Load client for bench/load_serve.sh: C concurrent clients (default 8) send chat
// requests to BASE for SECONDS, each client in a loop, over keep-alive connections.
// Mix: plain JSON answers, SSE streams, requests with an image (data URL; the same
// few images, so the image cache is exercised), and one request in ten a stream the
// client abandons after its first chunk (the server must cancel it and free the slot).
// Checks every answer: the echo backend's exact text, or with LOAD_EXPECT=any (a real model) a well-formed answer.
// Prints one JSON line: {"requests", "ok", "rejected_503", "failures", "rps", ...}.
// Node's http module only (no npm packages).
import http from "node:http";
import { readFileSync } from "node:fs";

const [base, seconds = "20", clients = "8", imagesDir = "tests/data/images"] = process.argv.slice(2);
const url = new URL(base);
const agent = new http.Agent({ keepAlive: true, maxSockets: Number(clients) });
const images = ["rgb.png", "q.jpg", "lossy.webp"].map((f) => "data:image/png;base64," + readFileSync(imagesDir + "/" + f).toString("base64"));
const stats = { requests: 0, ok: 0, rejected_503: 0, aborted_by_client: 0, failures: 0, streamed: 0, with_image: 0, failure_samples: [] };
const latencies = [];
const echo = (process.env.LOAD_EXPECT || "echo") === "echo";

function post(body, abandon = false) {
  return new Promise((resolve) => {
    const data = JSON.stringify(body);
    const req = http.request({ host: url.hostname, port: url.port, path: "/v1/chat/completions", method: "POST", agent,
      headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(data) }, timeout: 30000 },
      (res) => {
        const chunks = [];
        if (abandon && res.statusCode === 200) {
          res.once("data", () => { req.destroy(); resolve({ status: "abandoned", body: "" }); });
          return;
        }
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString("utf8") }));
        res.on("error", (e) => resolve({ status: -1, body: String(e) }));
      });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", (e) => resolve({ status: -1, body: String(e) }));
    req.end(data);
  });
}

function fail(why) {
  stats.failures++;
  if (stats.failure_samples.length < 5) stats.failure_samples.push(why.slice(0, 200));
}

async function client(id, deadline) {
  let i = 0;
  while (Date.now() < deadline) {
    i++;
    const words = Array.from({ length: 1 + ((id * 7 + i) % 20) }, (_, k) => "w" + k).join(" ");
    const abandon = i % 10 === 5, stream = abandon || i % 3 === 0, withImage = i % 4 === 1;
    const content = withImage ? [{ type: "text", text: words }, { type: "image_url", image_url: { url: images[i % images.length] } }] : words;
    const t0 = performance.now();
    const r = await post({ model: "echo", messages: [{ role: "user", content }], stream, max_tokens: 64 }, abandon);
    latencies.push(performance.now() - t0);
    stats.requests++;
    if (r.status === "abandoned") { stats.aborted_by_client++; continue; }
    if (r.status === 503) { stats.rejected_503++; await new Promise((ok) => setTimeout(ok, 25)); continue; } // back off, as Retry-After asks
    if (r.status !== 200) { fail(`status ${r.status}: ${r.body}`); continue; }
    let text = "";
    try {
      if (stream) {
        if (!r.body.endsWith("data: [DONE]\n\n")) throw new Error("stream not ended by [DONE]");
        for (const ev of r.body.split("\n\n")) {
          if (!ev.startsWith("data: {")) continue;
          const j = JSON.parse(ev.slice(6));
          for (const c of j.choices) text += c.delta.content || "";
        }
        stats.streamed++;
      } else {
        text = JSON.parse(r.body).choices[0].message.content;
      }
    } catch (e) { fail("bad body: " + e.message + " " + r.body.slice(0, 100)); continue; }
    const want = "You said: " + words;
    if (echo && (!text.startsWith(want) || (withImage && !text.includes("[image 23x17 sha256:")))) { fail(`answer ${JSON.stringify(text)}`); continue; }
    if (typeof text !== "string") { fail(`answer ${JSON.stringify(text)}`); continue; }
    if (withImage) stats.with_image++;
    stats.ok++;
  }
}

const t0 = Date.now(), deadline = t0 + Number(seconds) * 1000;
await Promise.all(Array.from({ length: Number(clients) }, (_, k) => client(k, deadline)));
const elapsed = (Date.now() - t0) / 1000;
latencies.sort((a, b) => a - b);
const pct = (p) => latencies.length ? Math.round(latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] * 10) / 10 : 0;
console.log(JSON.stringify({ ...stats, seconds: Math.round(elapsed * 10) / 10, clients: Number(clients),
  rps: Math.round(stats.requests / elapsed * 10) / 10, p50_ms: pct(0.5), p99_ms: pct(0.99) }));
agent.destroy();
process.exit(stats.failures ? 1 : 0);
