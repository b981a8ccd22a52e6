// Opens wasm/www/bench.html in headless Chromium (Debian's, SwiftShader's WebGPU) and prints
// Sfumato against onnxruntime-web's WebGPU execution provider, model by model, as a Markdown
// table; writes output/web-bench.json. Run by scripts/bench-web.sh, which builds what it serves.
//
//   node wasm/bench/bench.mjs [MODELS] [WARMUP] [ITERS]
import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const web = join(root, "target", "web");
const [models = "resnet-block,bert-layer,minilm-encoder", warmup = "2", iters = "5"] = process.argv.slice(2);
const port = 19000 + (process.pid % 1000);
const server = spawn("python3", ["-m", "http.server", "-b", "127.0.0.1", "-d", web, String(port)], { stdio: "ignore" });
let code = 0;
try {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader",
      "--enable-unsafe-swiftshader"],
  });
  const page = await browser.newPage();
  page.on("console", (m) => { if (m.type() === "error") console.error("page:", m.text().slice(0, 400)); });
  const url = `http://127.0.0.1:${port}/bench.html?models=${models}&warmup=${warmup}&iters=${iters}`;
  for (let i = 0; i < 50; i++) {
    try { await page.goto(url); break; } catch { await new Promise((r) => setTimeout(r, 200)); }
  }
  await page.waitForFunction(() => window.benchResult || window.benchError, null, { timeout: 1_800_000, polling: 1000 });
  const err = await page.evaluate(() => window.benchError);
  if (err) throw new Error(err);
  const r = await page.evaluate(() => window.benchResult);
  const adapter = await page.evaluate(async () => {
    const a = await navigator.gpu.requestAdapter();
    return a?.info ? `${a.info.vendor} ${a.info.architecture} ${a.info.description}`.trim() : "unknown";
  });
  console.log(`adapter: ${adapter}; onnxruntime-web ${r.ort_version}, webgpu EP; ${r.warmup} warm-up, ${r.iters} timed runs each (medians)\n`);
  console.log("| model | Sfumato ms | onnxruntime-web ms | ORT / Sfumato | max rel. diff | Sfumato dispatches |");
  console.log("|---|---|---|---|---|---|");
  for (const x of r.results) {
    console.log(`| ${x.model} | ${x.sfumato_ms.toFixed(1)} | ${x.ort_ms.toFixed(1)} | ${x.ratio.toFixed(2)}x | ${x.max_rel_diff.toExponential(2)} | ${x.dispatches} |`);
  }
  mkdirSync(join(root, "output"), { recursive: true });
  writeFileSync(join(root, "output", "web-bench.json"), JSON.stringify({ adapter, ...r }, null, 2));
  await page.screenshot({ path: join(root, "output", "web-bench.png"), fullPage: true });
  await browser.close();
} catch (e) {
  console.error(e);
  code = 1;
} finally {
  server.kill();
}
process.exit(code);
