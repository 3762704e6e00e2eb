// The model manager's state and services: inspect a folder (sizes, memory needed), load it
// with the chosen backend (local, or an LM server) / device / precision / GGUF file, download
// a release from Hugging Face and import a release folder, both with streamed progress, ETA
// and cancel. Talks only through the generated bindings.
import type {
  Backend, DownloadResult, ImportEvent, ImportResult, LoadArgs, ModelFolder, PrecisionArg, Quant,
  RemoteApiArg, ServeStatus,
} from "../ipc/bindings";
import type { Api, AppState, MakeChannel } from "./app.svelte";

export type ModelsApi = Pick<Api, "inspectModel" | "importReleaseFolder" | "downloadRelease" | "cancelImport" | "serveStart" | "serveStop">;

/** The releases the manager offers to download. */
export const RELEASES = ["m-a-p/MIO-7B-Instruct", "m-a-p/MIO-7B-Base"] as const;

export interface ImportProgressView {
  stage: string;
  file: string;
  fraction: number;
  rate: number;
  eta: number | null;
}

/** Words for an import stage. */
export function stageLabel(stage: string): string {
  return ({ verify: "Verifying checksums", check: "Re-checking finished files", write: "Converting", download: "Downloading" } as Record<string, string>)[stage] ?? stage;
}

export class ModelManager {
  open = $state(false);
  folder = $state("");
  device = $state("cpu");
  backend = $state<Backend>("candle");
  precision = $state<PrecisionArg>("f32");
  gpuLayers = $state<number | null>(null);
  lmFile = $state<string | null>(null);
  info = $state<ModelFolder | null>(null);
  source = $state("");
  dest = $state("");
  quant = $state<Quant>("q4_k_m");
  progress = $state<ImportProgressView | null>(null);
  importing = $state(false);
  cancelling = $state(false);
  imported = $state<ImportResult | null>(null);
  remoteUrl = $state("");
  remoteApi = $state<RemoteApiArg>("llamacpp");
  remoteKey = $state("");
  remoteModel = $state("");
  repo = $state<string>(RELEASES[0]);
  downloadDest = $state("");
  /** Which long job `progress` belongs to. */
  job = $state<"import" | "download" | null>(null);
  downloaded = $state<DownloadResult | null>(null);
  servePort = $state(8080);
  serveLan = $state(false);
  serveKey = $state("");
  serving = $state<ServeStatus | null>(null);
  serveBusy = $state(false);

  constructor(private app: AppState, private api: ModelsApi, private channel: MakeChannel) {}

  loadArgs(): LoadArgs {
    return {
      model_dir: this.folder.trim() || null,
      device: this.device,
      backend: this.backend,
      precision: this.precision,
      gpu_layers: this.backend === "llamacpp" ? this.gpuLayers : null,
      lm_file: this.backend === "remote" ? null : this.lmFile,
      remote: this.backend === "remote"
        ? { url: this.remoteUrl.trim(), api: this.remoteApi, api_key: this.remoteKey.trim() || null, model: this.remoteModel.trim() || null }
        : null,
    };
  }

  /** Reads what the chosen folder holds (sizes, memory estimates, GGUF files). */
  async inspect() {
    try {
      this.info = await this.api.inspectModel(this.folder.trim() || null);
      if (this.lmFile && !this.info.lm_files.includes(this.lmFile)) this.lmFile = null;
      if (this.backend === "llamacpp" && !this.info.lm_files.length && !this.info.imported_quant) this.backend = "candle";
    } catch (e) {
      this.info = null;
      this.app.toast(e);
    }
  }

  async load() {
    await this.app.loadModel(this.loadArgs());
    if (this.app.model) this.open = false;
  }

  private progressChannel() {
    return this.channel<ImportEvent>((ev) => {
      this.progress = {
        stage: ev.stage, file: ev.file, rate: ev.rate_bytes_per_s, eta: ev.eta_s,
        fraction: ev.bytes_total ? ev.bytes_done / ev.bytes_total : 0,
      };
    });
  }

  /** Runs one long job (import or download) with progress; one at a time. */
  private async runJob<T>(job: "import" | "download", stage: string, work: () => Promise<T>): Promise<T | null> {
    if (this.importing) return null;
    this.importing = true;
    this.job = job;
    this.cancelling = false;
    this.progress = { stage, file: "", fraction: 0, rate: 0, eta: null };
    try {
      return await work();
    } catch (e) {
      this.app.toast(e);
      return null;
    } finally {
      this.importing = false;
      this.job = null;
      this.progress = null;
    }
  }

  /** Imports the source folder; progress streams into `progress`. */
  async startImport() {
    if (this.importing || !this.source.trim()) return;
    this.imported = null;
    const r = await this.runJob("import", "verify", () => this.api.importReleaseFolder(
      { release_dir: this.source.trim(), out_dir: this.dest.trim() || null, quant: this.quant }, this.progressChannel()));
    if (!r) return;
    this.imported = r;
    this.folder = r.out_dir;
    this.lmFile = null;
    await this.inspect();
  }

  /** Downloads the chosen release (resumable, verified); it becomes the import's source. */
  async startDownload() {
    if (this.importing) return;
    this.downloaded = null;
    const r = await this.runJob("download", "download", () => this.api.downloadRelease(
      { repo: this.repo, out_dir: this.downloadDest.trim() || null }, this.progressChannel()));
    if (!r) return;
    this.downloaded = r;
    this.source = r.out_dir;
  }

  /** Serves the loaded model over the OpenAI API (other programs use it at `serving.url`). */
  async startServing() {
    if (this.serveBusy || this.serving) return;
    this.serveBusy = true;
    try {
      this.serving = await this.api.serveStart({ port: this.servePort, lan: this.serveLan, api_key: this.serveKey.trim() || null });
    } catch (e) {
      this.app.toast(e);
    } finally {
      this.serveBusy = false;
    }
  }

  async stopServing() {
    if (this.serveBusy || !this.serving) return;
    this.serveBusy = true;
    try {
      await this.api.serveStop();
      this.serving = null;
    } catch (e) {
      this.app.toast(e);
    } finally {
      this.serveBusy = false;
    }
  }

  async cancelImport() {
    if (!this.importing) return;
    this.cancelling = true;
    try {
      await this.api.cancelImport();
    } catch (e) {
      this.app.toast(e);
    }
  }
}
