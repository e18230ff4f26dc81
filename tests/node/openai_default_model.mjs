// Asks `vlmc serve` (the shipped default model) one question about one image with the official openai package,
// as a plain and as a streamed chat completion; both must give the expected (recorded, greedy) answer.
// Usage: node openai_default_model.mjs BASE_URL IMAGE_PNG QUESTION EXPECTED
// Prints "ok NAME" / "FAIL NAME: why" lines (tests/cli_default_model.sh counts them).
import OpenAI from "openai";
import { readFileSync } from "node:fs";

const [base, image, question, expected] = process.argv.slice(2);
const client = new OpenAI({ baseURL: base + "/v1", apiKey: "none", maxRetries: 0, timeout: 60000 });
const url = "data:image/png;base64," + readFileSync(image).toString("base64");
const messages = [{ role: "user", content: [{ type: "image_url", image_url: { url } }, { type: "text", text: question }] }];
let failed = 0;
async function check(name, fn) {
  try { await fn(); console.log("ok   " + name); }
  catch (e) { failed++; console.log("FAIL " + name + ": " + (e && e.message ? e.message : e)); }
}
function eq(a, b, what) { if (a !== b) throw new Error(`${what}: expected ${JSON.stringify(b)}, got ${JSON.stringify(a)}`); }

await check("openai client, default model: the recorded answer", async () => {
  const r = await client.chat.completions.create({ model: "default", messages, temperature: 0, max_tokens: 64 });
  eq(r.choices[0].message.content, expected, "answer");
  eq(r.choices[0].finish_reason, "stop", "finish_reason");
});
await check("openai client, default model: streamed, the same answer", async () => {
  const s = await client.chat.completions.create({ model: "default", messages, temperature: 0, max_tokens: 64, stream: true });
  let text = "";
  for await (const c of s) text += c.choices[0]?.delta?.content ?? "";
  eq(text, expected, "streamed answer");
});
process.exit(failed ? 1 : 0);
