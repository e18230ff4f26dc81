// Talks to a running `vlmc serve -m echo` with the official openai package.
// Usage: node openai_client.mjs BASE_URL API_KEY IMAGES_DIR
// Prints "ok NAME" / "FAIL NAME: why" lines (tests/cli_serve.sh counts them).
import OpenAI from "openai";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";

const [base, apiKey, imagesDir] = process.argv.slice(2);
const client = new OpenAI({ baseURL: base + "/v1", apiKey, maxRetries: 0, timeout: 20000 });
let failed = 0;
async function check(name, fn) {
  try { await fn(); console.log("ok   " + name); }
  catch (e) { failed++; console.log("FAIL " + name + ": " + (e && e.stack ? e.stack.split("\n").slice(0, 3).join(" | ") : e)); }
}
function assert(cond, msg) { if (!cond) throw new Error(msg); }
function eq(a, b, what) { assert(a === b, `${what}: expected ${JSON.stringify(b)}, got ${JSON.stringify(a)}`); }
function dataUrl(file, mime) {
  const bytes = readFileSync(imagesDir + "/" + file);
  return { url: `data:${mime};base64,${bytes.toString("base64")}`, sha: createHash("sha256").update(bytes).digest("hex") };
}

await check("openai: models.list", async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  eq(ids.join(","), "echo", "model ids");
});

await check("openai: chat completion", async () => {
  const r = await client.chat.completions.create({ model: "echo", messages: [
    { role: "system", content: "Be brief." }, { role: "user", content: "hello openai world" }] });
  eq(r.object, "chat.completion", "object");
  eq(r.choices.length, 1, "choices");
  eq(r.choices[0].message.role, "assistant", "role");
  eq(r.choices[0].message.content, "You said: hello openai world", "content");
  eq(r.choices[0].finish_reason, "stop", "finish_reason");
  eq(r.usage.prompt_tokens, 5, "prompt_tokens");
  eq(r.usage.completion_tokens, 5, "completion_tokens");
  eq(r.usage.total_tokens, 10, "total_tokens");
  assert(/^chatcmpl-/.test(r.id), "id " + r.id);
});

await check("openai: streaming", async () => {
  const stream = await client.chat.completions.create({ model: "echo", stream: true,
    stream_options: { include_usage: true },
    messages: [{ role: "user", content: [{ type: "text", text: "stream this please" }] }] });
  let text = "", chunks = 0, finish = null, usage = null, ids = new Set();
  for await (const c of stream) {
    eq(c.object, "chat.completion.chunk", "object");
    ids.add(c.id);
    if (c.usage) usage = c.usage;
    for (const ch of c.choices) {
      if (ch.delta.content) { text += ch.delta.content; chunks++; }
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  eq(text, "You said: stream this please", "streamed text");
  eq(chunks, 5, "content chunks");
  eq(finish, "stop", "finish_reason");
  eq(ids.size, 1, "one id for all chunks");
  assert(usage && usage.completion_tokens === 5 && usage.prompt_tokens === 3, "usage " + JSON.stringify(usage));
});

for (const [file, mime] of [["rgb.png", "image/png"], ["q.jpg", "image/jpeg"], ["lossy.webp", "image/webp"]]) {
  await check(`openai: image as data URL (${mime})`, async () => {
    const img = dataUrl(file, mime);
    const r = await client.chat.completions.create({ model: "echo", messages: [{ role: "user", content: [
      { type: "image_url", image_url: { url: img.url, detail: "auto" } }, { type: "text", text: "What is this?" }] }] });
    eq(r.choices[0].message.content, `You said: What is this? [image 23x17 sha256:${img.sha.slice(0, 12)}]`, "content");
    eq(r.usage.prompt_tokens, 4, "prompt_tokens (3 words + 1 image)");
  });
}

await check("openai: streaming with an image", async () => {
  const img = dataUrl("rgb.png", "image/png");
  const stream = await client.chat.completions.create({ model: "echo", stream: true, messages: [{ role: "user",
    content: [{ type: "text", text: "describe" }, { type: "image_url", image_url: { url: img.url } }] }] });
  let text = "";
  for await (const c of stream) for (const ch of c.choices) text += ch.delta.content || "";
  eq(text, `You said: describe [image 23x17 sha256:${img.sha.slice(0, 12)}]`, "text");
});

await check("openai: max_tokens and stop", async () => {
  const a = await client.chat.completions.create({ model: "echo", max_tokens: 2,
    messages: [{ role: "user", content: "one two three" }] });
  eq(a.choices[0].message.content, "You said:", "max_tokens text");
  eq(a.choices[0].finish_reason, "length", "max_tokens finish");
  const b = await client.chat.completions.create({ model: "echo", stop: [" two", "zzz"], seed: 7, temperature: 0,
    top_p: 0.5, max_completion_tokens: 50, messages: [{ role: "user", content: "one two three" }] });
  eq(b.choices[0].message.content, "You said: one", "stop text");
  eq(b.choices[0].finish_reason, "stop", "stop finish");
});

await check("openai: a 400 is an APIError with the param", async () => {
  try {
    await client.chat.completions.create({ model: "echo", n: 2, messages: [{ role: "user", content: "x" }] });
    throw new Error("no error thrown");
  } catch (e) {
    assert(e instanceof OpenAI.APIError, "not an APIError: " + e);
    eq(e.status, 400, "status");
    eq(e.param, "n", "param");
    eq(e.type, "invalid_request_error", "type");
  }
});

await check("openai: a wrong key is a 401 AuthenticationError", async () => {
  const bad = new OpenAI({ baseURL: base + "/v1", apiKey: "wrong", maxRetries: 0 });
  try { await bad.models.list(); throw new Error("no error thrown"); }
  catch (e) { assert(e instanceof OpenAI.AuthenticationError, "not an AuthenticationError: " + e); eq(e.code, "invalid_api_key", "code"); }
});

process.exit(failed ? 1 : 0);
