import { describe, expect, it, vi } from "vitest";

vi.mock("@tauri-apps/api/core", () => ({ convertFileSrc: (f: string) => f, invoke: vi.fn(), Channel: class {} }));

import { AppState, type Api } from "./app.svelte";
import { formatBytes, formatClip, formatEta } from "./format";
import type { ImportEvent, ModelFolder } from "../ipc/bindings";

const folder: ModelFolder = {
  model_dir: "/data/models/r-q8_0", components: [{ name: "lm", format: "gguf", bytes: 2048, dtypes: [] }],
  missing: [], total_bytes: 2048, memory: [], lm_files: ["model-q8_0.gguf"], imported_quant: "q8_0",
};

// A fake of the generated bindings (test only).
function fakeApi() {
  let release: (() => void) | null = null;
  const api = {
    modelStatus: vi.fn(async () => null),
    generationPresets: vi.fn(async () => []),
    listConversations: vi.fn(async () => []),
    inspectModel: vi.fn(async () => folder),
    loadModel: vi.fn(async (_a: unknown, _c: unknown) => ({ model_dir: "/m", label: "m", random_weights: false, layers: 2, hidden_size: 8, vocab_size: 10, device: "cpu", load_s: 0.1 })),
    cancelImport: vi.fn(async () => release?.()),
    importReleaseFolder: vi.fn(async (_a: unknown, ch: { onmessage: (e: ImportEvent) => void }): Promise<unknown> => {
      ch.onmessage({ kind: "progress", stage: "write", file: "model-q8_0.gguf", bytes_done: 25, bytes_total: 100, rate_bytes_per_s: 50, eta_s: 1.5 });
      await new Promise<void>((r) => (release = r));
      throw { code: "IMPORT", message: "the import was cancelled; importing again resumes" };
    }),
    // Set per test.
    downloadRelease: vi.fn(),
    serveStart: vi.fn(),
    serveStop: vi.fn(),
  };
  const channel = <T,>(f: (m: T) => void) => ({ onmessage: f }) as never;
  return { api, channel };
}

describe("ModelManager", () => {
  it("streams import progress with an ETA, cancels with one clear toast", async () => {
    const { api, channel } = fakeApi();
    const app = new AppState(api as unknown as Api, channel);
    const m = app.models;
    m.source = "/dl/MIO-7B-Instruct";
    m.quant = "q8_0";
    const done = m.startImport();
    await Promise.resolve();
    expect(api.importReleaseFolder.mock.calls[0][0]).toEqual({ release_dir: "/dl/MIO-7B-Instruct", out_dir: null, quant: "q8_0" });
    expect(m.importing).toBe(true);
    expect(m.progress).toEqual({ stage: "write", file: "model-q8_0.gguf", fraction: 0.25, rate: 50, eta: 1.5 });
    await m.cancelImport();
    await done;
    expect(m.importing).toBe(false);
    expect(m.progress).toBeNull();
    expect(app.toasts.map((t) => t.title)).toEqual(["the import was cancelled; importing again resumes"]);
  });

  it("selects the imported folder and loads it with the chosen options", async () => {
    const { api, channel } = fakeApi();
    api.importReleaseFolder.mockImplementationOnce(async () => ({ out_dir: "/data/models/r-q8_0", written: ["a"], kept: [], unverified: [], seconds: 1 }));
    const app = new AppState(api as unknown as Api, channel);
    const m = app.models;
    m.source = "/dl/r";
    await m.startImport();
    expect(m.folder).toBe("/data/models/r-q8_0");
    expect(m.info?.imported_quant).toBe("q8_0");
    m.backend = "llamacpp";
    m.gpuLayers = 8;
    await m.load();
    expect(api.loadModel.mock.calls[0][0]).toEqual({
      model_dir: "/data/models/r-q8_0", device: "cpu", backend: "llamacpp", precision: "f32", gpu_layers: 8, lm_file: null, remote: null,
    });
    expect(app.model?.layers).toBe(2);
  });
});

describe("ModelManager download and remote LM", () => {
  it("downloads with progress, then offers the folder as the import's source", async () => {
    const { api, channel } = fakeApi();
    let progressSeen: unknown = null;
    const app = new AppState(api as unknown as Api, channel);
    const m = app.models;
    api.downloadRelease.mockImplementation(async (_args: unknown, ch: { onmessage: (e: ImportEvent) => void }) => {
      ch.onmessage({ kind: "progress", stage: "download", file: "pytorch_model-00001-of-00006.bin", bytes_done: 10, bytes_total: 40, rate_bytes_per_s: 5, eta_s: 6 });
      progressSeen = { ...m.progress!, job: m.job };
      return { out_dir: "/data/downloads/MIO-7B-Base", files: 30, bytes_total: 40, bytes_fetched: 30, skipped: 4, seconds: 8 };
    });
    m.repo = "m-a-p/MIO-7B-Base";
    await m.startDownload();
    expect(api.downloadRelease.mock.calls[0][0]).toEqual({ repo: "m-a-p/MIO-7B-Base", out_dir: null });
    expect(progressSeen).toEqual({ stage: "download", file: "pytorch_model-00001-of-00006.bin", fraction: 0.25, rate: 5, eta: 6, job: "download" });
    expect(m.source).toBe("/data/downloads/MIO-7B-Base");
    expect(m.downloaded?.files).toBe(30);
    expect(m.importing).toBe(false);
    expect(m.job).toBeNull();
  });

  it("a failed download is one toast and leaves the source alone", async () => {
    const { api, channel } = fakeApi();
    api.downloadRelease.mockImplementation(async () => { throw { code: "IMPORT", message: "huggingface.co cannot be reached" }; });
    const app = new AppState(api as unknown as Api, channel);
    app.models.source = "/keep";
    await app.models.startDownload();
    expect(app.toasts.map((t) => t.title)).toEqual(["huggingface.co cannot be reached"]);
    expect(app.models.source).toBe("/keep");
    expect(app.models.downloaded).toBeNull();
  });

  it("serves the loaded model and stops; a refused start is one toast", async () => {
    const { api, channel } = fakeApi();
    api.serveStart.mockImplementation(async () => ({ url: "http://127.0.0.1:8080/v1", model: "m", lan: false, api_key: false }));
    api.serveStop.mockImplementation(async () => undefined);
    const app = new AppState(api as unknown as Api, channel);
    const m = app.models;
    await m.startServing();
    expect(api.serveStart.mock.calls[0][0]).toEqual({ port: 8080, lan: false, api_key: null });
    expect(m.serving?.url).toBe("http://127.0.0.1:8080/v1");
    await m.stopServing();
    expect(api.serveStop).toHaveBeenCalledTimes(1);
    expect(m.serving).toBeNull();
    api.serveStart.mockImplementationOnce(async () => { throw { code: "INVALID_INPUT", message: "cannot serve on port 8080: address in use (pick another port)" }; });
    m.serveLan = true;
    m.serveKey = " k ";
    await m.startServing();
    expect(api.serveStart.mock.calls[1][0]).toEqual({ port: 8080, lan: true, api_key: "k" });
    expect(m.serving).toBeNull();
    expect(app.toasts.map((t) => t.title)).toEqual(["cannot serve on port 8080: address in use (pick another port)"]);
  });

  it("loads with an LM server: URL, API, key and model are sent, local file options are not", async () => {
    const { api, channel } = fakeApi();
    const app = new AppState(api as unknown as Api, channel);
    const m = app.models;
    m.lmFile = "model-q8_0.gguf";
    m.backend = "remote";
    m.remoteUrl = " http://gpu-box:8080 ";
    m.remoteApi = "openai";
    m.remoteModel = "mio";
    await m.load();
    expect(api.loadModel.mock.calls[0][0]).toEqual({
      model_dir: null, device: "cpu", backend: "remote", precision: "f32", gpu_layers: null, lm_file: null,
      remote: { url: "http://gpu-box:8080", api: "openai", api_key: null, model: "mio" },
    });
  });
});

describe("format", () => {
  it("sizes and ETAs", () => {
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(3 * 1024 ** 2)).toBe("3.0 MiB");
    expect(formatBytes(28 * 1024 ** 3)).toBe("28.00 GiB");
    expect(formatEta(null)).toBe("…");
    expect(formatEta(75)).toBe("1:15");
    expect(formatEta(3725)).toBe("1:02:05");
  });

  it("clip lengths: milliseconds under a second", () => {
    expect(formatClip(0.032)).toBe("32 ms");
    expect(formatClip(0.9996)).toBe("1.0 s");
    expect(formatClip(1)).toBe("1.0 s");
    expect(formatClip(12.34)).toBe("12.3 s");
    expect(formatClip(Number.NaN)).toBe("…");
  });
});
