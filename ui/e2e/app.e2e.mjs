// End-to-end test of the real app: drives the debug build of src-tauri through tauri-driver
// (WebKitWebDriver underneath) with plain W3C WebDriver HTTP calls; run it under Xvfb:
//   xvfb-run -a node ui/e2e/app.e2e.mjs PATH/TO/mio-desktop
// It loads the bundled tiny model (random weights), sends a message and sees streamed text,
// attaches a picture by dropping it, switches modes, cancels, and reopens the app to find the
// conversation in the history. Screenshots of each state go to $E2E_SHOTS (default
// ./e2e-shots).
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import assert from "node:assert/strict";

const app = resolve(process.argv[2] ?? "target/debug/mio-desktop");
const shots = resolve(process.env.E2E_SHOTS ?? "e2e-shots");
const port = 4444;
const base = `http://127.0.0.1:${port}`;
mkdirSync(shots, { recursive: true });
const dataDir = mkdtempSync(join(tmpdir(), "mio-e2e-"));
const timings = {};

const driver = spawn(process.env.TAURI_DRIVER ?? "tauri-driver", ["--port", String(port)], {
  env: { ...process.env, MIO_DATA_DIR: dataDir },
  stdio: ["ignore", "inherit", "inherit"],
});
let failed = false;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function wd(method, path, body) {
  const res = await fetch(base + path, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json.value ?? json)}`);
  return json.value;
}

class Session {
  static async start() {
    for (let i = 0; i < 50; i++) {
      try {
        const v = await wd("POST", "/session", {
          capabilities: { alwaysMatch: { "tauri:options": { application: app } } },
        });
        return new Session(v.sessionId);
      } catch (e) {
        if (i === 49) throw e;
        await sleep(200);
      }
    }
  }
  constructor(id) { this.id = id; }
  cmd(method, path, body) { return wd(method, `/session/${this.id}${path}`, body); }
  async exec(script, ...args) { return this.cmd("POST", "/execute/sync", { script, args }); }
  async find(css) {
    const v = await this.cmd("POST", "/element", { using: "css selector", value: css });
    return Object.values(v)[0];
  }
  async waitFor(css, ms = 60000, pred = "true") {
    const t0 = Date.now();
    while (Date.now() - t0 < ms) {
      // The first document may still be loading (navigation errors): try again.
      const ok = await this.exec(`const els = document.querySelectorAll(arguments[0]); const el = els[els.length - 1]; return !!el && (${pred});`, css).catch(() => false);
      if (ok) return;
      await sleep(100);
    }
    await this.shot(`timeout-${css.replace(/[^a-z0-9]+/gi, "_")}`);
    throw new Error(`timed out waiting for ${css} (${pred})`);
  }
  async click(css) { await this.cmd("POST", `/element/${await this.find(css)}/click`, {}); }
  async type(css, text) { await this.cmd("POST", `/element/${await this.find(css)}/value`, { text }); }
  async text(css) { return this.exec("const els = document.querySelectorAll(arguments[0]); return els.length ? els[els.length - 1].textContent : null;", css); }
  async shot(name) {
    await sleep(400); // let WebKit paint the last update
    const png = await this.cmd("GET", "/screenshot");
    writeFileSync(join(shots, `${name}.png`), Buffer.from(png, "base64"));
  }
  async close() { await this.cmd("DELETE", ""); }
}

async function send(s, text) {
  const before = await s.exec("return document.querySelectorAll('.msg.assistant').length;");
  await s.type("textarea", text);
  await s.click("[data-action=send]");
  await s.waitFor(".msg.assistant", 10000, `document.querySelectorAll('.msg.assistant').length > ${before}`);
}

async function finished(s, ms = 120000) {
  await s.waitFor(".msg.assistant", ms, "el.dataset.status !== 'streaming'");
  return s.exec("const els = document.querySelectorAll('.msg.assistant'); return els[els.length - 1].dataset.status;");
}

// A 64×64 test picture (PNG) dropped onto the composer as a file, the way a user drops one.
const picture = readFileSync(new URL("./fixture.png", import.meta.url)).toString("base64");
const DROP = `
  const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));
  const dt = new DataTransfer();
  dt.items.add(new File([bytes], "sample.png", { type: "image/png" }));
  document.querySelector(".composer").dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
  return true;`;

async function main() {
  let s = await Session.start();
  const t0 = Date.now();
  await s.waitFor("[data-action=load]", 30000);
  timings.first_paint_ms = Date.now() - t0;
  // The theme is remembered across runs: start from light.
  if ((await s.exec("return document.documentElement.dataset.theme;")) === "dark") await s.click("[data-action=theme]");
  await s.shot("00-start");
  await s.click("[data-action=load]");
  await s.waitFor("[data-model-loaded]", 120000);
  assert.match(await s.text("[data-model-loaded]"), /random weights/);

  // Chat: streamed text.
  const sent = Date.now();
  await send(s, "Hello, who are you?");
  await s.waitFor(".msg.assistant [data-segment=text]", 60000, "el.textContent.length > 0");
  timings.first_token_ms = Date.now() - sent;
  assert.equal(await finished(s), "done");
  assert.ok((await s.text(".msg.assistant [data-segment=text]")).length > 0);
  await s.shot("chat");

  // Edit: attach a picture (drop), the user's message shows it.
  await s.click("[data-mode=edit]");
  await s.exec(DROP, picture);
  await s.waitFor("[data-attachment=image]", 20000);
  await send(s, "Make the sky purple.");
  await s.waitFor(".msg.user [data-segment=image]", 10000);
  assert.equal(await finished(s), "done");
  await s.shot("edit");

  // Guide mode.
  await s.click("[data-mode=guide]");
  await send(s, "How do I plant a tree?");
  assert.equal(await finished(s), "done");
  await s.shot("guide");

  // Voice mode: the speech block of the answer (a player, or a note when it has no frames).
  await s.click("[data-mode=voice]");
  await send(s, "Please say hello.");
  assert.equal(await finished(s, 300000), "done");
  await s.waitFor(".msg.assistant [data-segment=audio]", 5000);
  await s.shot("voice");

  // Cancel: stop a long voice answer right away.
  await send(s, "Tell me a long story.");
  await s.click("[data-action=stop]");
  assert.equal(await finished(s), "cancelled");
  await s.shot("cancelled");

  // Dark theme.
  await s.click("[data-action=theme]");
  assert.equal(await s.exec("return document.documentElement.dataset.theme;"), "dark");
  await s.shot("dark");
  await s.click("[data-action=theme]");
  const title = await s.text(".list li.active .title");
  await s.close();

  // Reopen: the conversation is in the history with its messages.
  s = await Session.start();
  await s.waitFor("[data-conversation]", 30000);
  assert.equal(await s.text(".list li .title"), title);
  await s.click(".list li .title");
  await s.waitFor(".msg.assistant", 10000, "document.querySelectorAll('.msg').length === 10");
  await s.shot("history");
  await s.close();
}

try {
  await main();
  console.log(`e2e passed; screenshots in ${shots}; timings ${JSON.stringify(timings)}`);
} catch (e) {
  failed = true;
  console.error(`e2e FAILED: ${e.stack ?? e}`);
} finally {
  driver.kill();
  rmSync(dataDir, { recursive: true, force: true });
  process.exit(failed ? 1 : 0);
}
