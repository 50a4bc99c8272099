// Drives kobert web packages in headless Chromium (one launch for all pages) and prints JSON lines.
//
//   node web/browser_check.mjs REQUEST.json
//
// REQUEST: {"chromium": "/usr/bin/chromium", "pages": [{"url": "http://127.0.0.1:PORT/x/",
//           "texts": [...], "repeats": 5, "encode": [...more texts, ids only],
//           "screenshot": {"path": "x.png", "text": "리뷰"}}]}
// Prints {"event": "chromium", "pid": N} as soon as Chromium runs (so the caller can stop it),
// then {"event": "result", "pages": [{info, result, ms_per_call, encoded, shown, console}]}.
import { readFileSync } from "node:fs";
import puppeteer from "puppeteer-core";

const request = JSON.parse(readFileSync(process.argv[2], "utf-8"));
const say = (line) => process.stdout.write(JSON.stringify(line) + "\n");
const READY_TIMEOUT_MS = 120000;

const browser = await puppeteer.launch({
  executablePath: request.chromium,
  headless: true,
  // Root cannot use Chromium's sandbox; the pages are our own, served from 127.0.0.1.
  args: [...(process.getuid?.() === 0 ? ["--no-sandbox"] : []), "--disable-gpu", "--disable-dev-shm-usage"],
});
say({ event: "chromium", pid: browser.process()?.pid ?? null });

try {
  const pages = [];
  for (const spec of request.pages) pages.push(await checkPage(spec));
  say({ event: "result", pages });
} finally {
  await browser.close();
}

async function checkPage(spec) {
  const page = await browser.newPage();
  const console_ = [];
  page.on("console", (message) => console_.push(`${message.type()}: ${message.text()}`));
  page.on("pageerror", (error) => console_.push(`pageerror: ${error.message}`));
  page.on("response", (response) => {
    if (response.status() >= 400) console_.push(`http ${response.status()}: ${response.url()}`);
  });
  await page.setViewport({ width: 720, height: 560, deviceScaleFactor: 1 });
  await page.goto(spec.url, { waitUntil: "load" });
  // --dump-dom would return before the async load ends; wait for the page to say it is ready.
  await page.waitForFunction(() => window.kobert && (window.kobert.ready || window.kobert.error),
                             { timeout: READY_TIMEOUT_MS });
  const error = await page.evaluate(() => window.kobert.error);
  if (error) return { url: spec.url, error, console: console_ };

  const info = await page.evaluate(() => ({ ...window.kobert.info, crossOriginIsolated: self.crossOriginIsolated }));
  const result = await page.evaluate((texts) => window.kobert.run(texts), spec.texts);
  const times = await page.evaluate(async (texts, repeats) => {
    const times = [];
    for (let i = 0; i < repeats; i++) times.push((await window.kobert.run(texts)).ms);
    return times.sort((a, b) => a - b);
  }, spec.texts, spec.repeats ?? 5);

  const encoded = spec.encode ? await page.evaluate((texts) => window.kobert.encode(texts), spec.encode) : null;

  let shown = null;
  if (spec.screenshot) {
    await page.type("#text", spec.screenshot.text);
    await page.click("#run");
    await page.waitForSelector("#prediction");
    shown = await page.$eval("#result", (node) => node.innerText);
    await page.screenshot({ path: spec.screenshot.path, clip: await clipOf(page, "main") });
  }
  await page.close();
  return { url: spec.url, info, result, ms_per_call: times.length ? times[Math.floor(times.length / 2)] : null,
           encoded, shown, console: console_ };
}

async function clipOf(page, selector) {
  const box = await (await page.$(selector)).boundingBox();
  const margin = 12;
  return { x: Math.max(0, box.x - margin), y: Math.max(0, box.y - margin),
           width: box.width + 2 * margin, height: box.height + 2 * margin };
}
