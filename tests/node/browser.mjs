// Drives the chat page (/) of a running `vlmc serve -m echo:DELAY` in headless Chromium.
// Usage: node browser.mjs BASE_URL API_KEY IMAGE_FILE USER_DATA_DIR
// Prints "ok NAME" / "FAIL NAME: why" lines.
import { chromium } from "playwright-core";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";

const [base, apiKey, imageFile, userDataDir] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
let failed = 0;
async function check(name, fn) {
  try { await fn(); console.log("ok   " + name); }
  catch (e) { failed++; console.log("FAIL " + name + ": " + String(e && e.message || e).split("\n")[0]); }
}
const bytes = readFileSync(imageFile);
const sha12 = createHash("sha256").update(bytes).digest("hex").slice(0, 12);

const ctx = await chromium.launchPersistentContext(userDataDir, {
  executablePath, headless: true, timeout: 20000,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = ctx.pages()[0] || await ctx.newPage();
page.setDefaultTimeout(15000);
const errors = [];
page.on("pageerror", (e) => errors.push(e.message));

async function lastAnswer() {
  return page.evaluate(() => {
    const all = document.querySelectorAll(".msg.assistant");
    const m = all[all.length - 1];
    return m ? { text: m.querySelector(".content").textContent, done: m.dataset.done === "1", finish: m.dataset.finish } : null;
  });
}

// Sends prompt and records, inside the page, every text the answer shows on its way
// (a MutationObserver), so streaming is seen however slowly this script polls.
async function askAndWatch(prompt) {
  const before = await page.locator(".msg.assistant").count();
  await page.evaluate(() => {
    window.__states = new Set();
    if (window.__observer) window.__observer.disconnect();
    window.__observer = new MutationObserver(() => {
      const all = document.querySelectorAll(".msg.assistant .content");
      const last = all[all.length - 1];
      if (last && last.textContent) window.__states.add(last.textContent);
    });
    window.__observer.observe(document.getElementById("messages"), { subtree: true, childList: true, characterData: true });
  });
  await page.fill("#prompt", prompt);
  await page.click("#send");
  await page.waitForFunction((n) => {
    const all = document.querySelectorAll(".msg.assistant");
    return all.length > n && all[all.length - 1].dataset.done === "1";
  }, before);
  const a = await lastAnswer();
  return { ...a, partials: await page.evaluate(() => window.__states.size) };
}

await check("browser: page loads and shows the model", async () => {
  await page.goto(base + "/");
  await page.fill("#api-key", apiKey);
  await page.dispatchEvent("#api-key", "change");
  await page.waitForFunction(() => document.getElementById("model").textContent === "echo");
});

await check("browser: pick an image, ask, answer streams in", async () => {
  await page.setInputFiles("#image", imageFile);
  await page.waitForSelector("#preview:not([hidden])");
  const a = await askAndWatch("what is in the picture");
  const want = `You said: what is in the picture [image 23x17 sha256:${sha12}]`;
  if (a.text !== want) throw new Error(`answer ${JSON.stringify(a.text)}, want ${JSON.stringify(want)}`);
  if (a.partials < 3) throw new Error(`saw only ${a.partials} distinct states: not streamed`);
  if (a.finish !== "stop") throw new Error("finish " + a.finish);
  if (await page.locator(".msg.user img").count() !== 1) throw new Error("the user message shows no image");
});

await check("browser: drop an image, follow-up turn", async () => {
  await page.evaluate((b64) => {
    const bin = atob(b64), u = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) u[i] = bin.charCodeAt(i);
    const dt = new DataTransfer();
    dt.items.add(new File([u], "dropped.png", { type: "image/png" }));
    document.getElementById("drop").dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, bytes.toString("base64"));
  await page.waitForSelector("#preview:not([hidden])");
  const a = await askAndWatch("and this one");
  // the conversation holds both images now
  const want = `You said: and this one [image 23x17 sha256:${sha12}] [image 23x17 sha256:${sha12}]`;
  if (a.text !== want) throw new Error(`answer ${JSON.stringify(a.text)}, want ${JSON.stringify(want)}`);
});

await check("browser: an error is shown, the page keeps working", async () => {
  await page.fill("#api-key", "wrong-key");
  await page.dispatchEvent("#api-key", "change");
  await page.fill("#prompt", "hello");
  await page.click("#send");
  await page.waitForSelector(".msg.error");
  const t = await page.locator(".msg.error").last().textContent();
  if (!/API key/i.test(t)) throw new Error("error text: " + t);
  await page.fill("#api-key", apiKey);
  await page.dispatchEvent("#api-key", "change");
  await page.click("#clear");
  const a = await askAndWatch("plain text");
  if (a.text !== "You said: plain text") throw new Error("answer " + a.text);
});

await check("browser: no page errors", async () => { if (errors.length) throw new Error(errors.join("; ")); });
await ctx.close();
process.exit(failed ? 1 : 0);
