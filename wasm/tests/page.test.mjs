// The page in headless Chromium (Debian's, driven by playwright-core): it runs a small zoo model
// on WebGPU (SwiftShader's adapter), its numbers must match the native run's, a click on a
// node's box must select it and show its details, and without WebGPU the page must say so and
// still open a saved run. Screenshots go to output/screenshots/ (CI's artefacts, not
// committed).
//
//   node wasm/tests/page.test.mjs NATIVE_RUN.json   (after scripts/build-web.sh; .ci/run does both)
import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, copyFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const web = join(root, "target", "web");
const shots = join(root, "output", "screenshots");
mkdirSync(shots, { recursive: true });
const nativeFile = process.argv[2];
assert.ok(nativeFile, "usage: node page.test.mjs NATIVE_RUN.json");
const native = JSON.parse(readFileSync(nativeFile, "utf8"));
copyFileSync(nativeFile, join(web, "native-run.json"));

const port = 18000 + (process.pid % 1000);
const server = spawn("python3", ["-m", "http.server", "-b", "127.0.0.1", "-d", web, String(port)], {
  stdio: "ignore",
});
const base = `http://127.0.0.1:${port}/index.html`;
const common = [
  "--headless", "--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--use-angle=swiftshader",
];
const webgpu = ["--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader", "--enable-unsafe-swiftshader"];

async function open(flags, query) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    // playwright gives each launch a new empty profile of its own.
    args: [...common, ...flags],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const logs = [];
  page.on("console", (m) => logs.push(m.text()));
  for (let i = 0; i < 50; i++) {
    try {
      await page.goto(base + query);
      break;
    } catch (e) {
      await new Promise((r) => setTimeout(r, 200)); // the server is starting
    }
  }
  await page.waitForFunction(() => window.sfumatoReady || window.sfumatoError, null, { timeout: 300_000 });
  const err = await page.evaluate(() => window.sfumatoError);
  assert.equal(err, undefined, `the page failed: ${err}\n${logs.join("\n")}`);
  return { browser, page, logs };
}

function close(a, b, what) {
  const tol = 1e-3 * Math.max(1, Math.abs(b));
  assert.ok(Math.abs(a - b) <= tol, `${what}: page ${a}, native ${b}`);
}

let failed = false;
try {
  // 1. WebGPU: run, compare with the native run, click a node.
  {
    const { browser, page } = await open(webgpu, "?run=" + native.model);
    const adapter = await page.evaluate(() => window.sfumato.adapter());
    console.log(`adapter: ${adapter}`);
    const rec = JSON.parse(await page.evaluate((m) => window.sfumato.run(m, true), native.model));
    assert.equal(rec.results.length, native.results.length);
    for (let i = 0; i < rec.results.length; i++) {
      const [w, n] = [rec.results[i], native.results[i]];
      assert.deepEqual(w.shape, n.shape, "output shape");
      for (const k of ["min", "max", "mean"]) close(w[k], n[k], `output ${i} ${k}`);
      w.head.forEach((x, j) => close(x, n.head[j], `output ${i} value ${j}`));
    }
    console.log(`outputs match the native run: ${rec.results.map((r) => JSON.stringify(r.shape)).join(", ")}; ` +
      `${rec.profile.entries.length} kernels on ${rec.device}`);
    const conv = rec.nodes.find((n) => n.op === "Conv2d").name;
    await page.waitForTimeout(500);
    const rect = await page.evaluate((n) => window.sfumato.node_rect(n), conv);
    assert.ok(rect, `node ${conv} is drawn`);
    await page.mouse.click((rect[0] + rect[2]) / 2, (rect[1] + rect[3]) / 2);
    await page.waitForTimeout(500);
    assert.equal(await page.evaluate(() => window.sfumato.selected()), conv, "the click selected the node");
    const d = JSON.parse(await page.evaluate(() => window.sfumato.details()));
    assert.equal(d.op, "Conv2d");
    assert.ok(d.kernels.length > 0, `the detail panel lists the group's kernels: ${JSON.stringify(d)}`);
    console.log(`clicked ${conv}: ${JSON.stringify(d)}`);
    await page.screenshot({ path: join(shots, "web-page.png") });
    console.log(`screenshot: ${join(shots, "web-page.png")}`);
    await browser.close();
  }
  // 2. No WebGPU: the page says so and still opens a saved run.
  {
    const { browser, page } = await open([], "?open=native-run.json");
    const note = await page.textContent("#note");
    assert.match(note, /no WebGPU/i, "the page says there is no WebGPU");
    const nodes = await page.evaluate(() => window.sfumato.nodes());
    assert.ok(nodes.length > 0, "the saved run opened");
    console.log(`without WebGPU: "${note}"; the saved run opened (${nodes.length} nodes)`);
    await page.screenshot({ path: join(shots, "web-page-no-webgpu.png") });
    console.log(`screenshot: ${join(shots, "web-page-no-webgpu.png")}`);
    await browser.close();
  }
  console.log("web page: ok");
} catch (e) {
  console.error(e);
  failed = true;
} finally {
  server.kill();
}
process.exit(failed ? 1 : 0);
