// The chat page (/) of `vlmc serve` on a real model in headless Chromium: pick an image, ask, and the answer that
// appears must be the expected (recorded, greedy) one.
// Usage: node browser_model.mjs BASE_URL MODEL_NAME IMAGE_FILE QUESTION EXPECTED USER_DATA_DIR
// Prints "ok NAME" / "FAIL NAME: why" lines.
import { chromium } from "playwright-core";

const [base, modelName, imageFile, question, expected, userDataDir] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
let failed = 0;
async function check(name, fn) {
  try { await fn(); console.log("ok   " + name); }
  catch (e) { failed++; console.log("FAIL " + name + ": " + String(e && e.message || e).split("\n")[0]); }
}
const ctx = await chromium.launchPersistentContext(userDataDir, {
  executablePath, headless: true, timeout: 20000,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = ctx.pages()[0] || await ctx.newPage();
page.setDefaultTimeout(30000);
const errors = [];
page.on("pageerror", (e) => errors.push(e.message));

await check("browser, default model: the page shows it, a picked image and a question get the recorded answer", async () => {
  await page.goto(base + "/");
  await page.waitForFunction((n) => document.getElementById("model").textContent === n, modelName);
  await page.setInputFiles("#image", imageFile);
  await page.waitForSelector("#preview:not([hidden])");
  await page.fill("#prompt", question);
  await page.click("#send");
  await page.waitForFunction(() => {
    const all = document.querySelectorAll(".msg.assistant");
    return all.length > 0 && all[all.length - 1].dataset.done === "1";
  });
  const text = await page.evaluate(() => {
    const all = document.querySelectorAll(".msg.assistant .content");
    return all[all.length - 1].textContent;
  });
  if (text !== expected) throw new Error(`answer ${JSON.stringify(text)}, want ${JSON.stringify(expected)}`);
  if (errors.length) throw new Error("page errors: " + errors.join("; "));
});
await ctx.close();
process.exit(failed ? 1 : 0);
