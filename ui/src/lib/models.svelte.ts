// The model manager's state and services: inspect a folder (sizes, memory needed), load it
// with the chosen backend / device / precision / GGUF file, and import a release folder with
// streamed progress, ETA and cancel. Talks only through the generated bindings.
import type {
  Backend, ImportEvent, ImportResult, LoadArgs, ModelFolder, PrecisionArg, Quant,
} from "../ipc/bindings";
import type { Api, AppState, MakeChannel } from "./app.svelte";

export type ModelsApi = Pick<Api, "inspectModel" | "importReleaseFolder" | "cancelImport">;

export interface ImportProgressView {
  stage: string;
  file: string;
  fraction: number;
  rate: number;
  eta: number | null;
}

/** Words for an import stage. */
export function stageLabel(stage: string): string {
  return ({ verify: "Verifying checksums", check: "Re-checking finished files", write: "Converting" } as Record<string, string>)[stage] ?? stage;
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

  constructor(private app: AppState, private api: ModelsApi, private channel: MakeChannel) {}

  loadArgs(): LoadArgs {
    return {
      model_dir: this.folder.trim() || null,
      device: this.device,
      backend: this.backend,
      precision: this.precision,
      gpu_layers: this.backend === "llamacpp" ? this.gpuLayers : null,
      lm_file: this.lmFile,
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

  /** Imports the source folder; progress streams into `progress`. */
  async startImport() {
    if (this.importing || !this.source.trim()) return;
    this.importing = true;
    this.cancelling = false;
    this.imported = null;
    this.progress = { stage: "verify", file: "", fraction: 0, rate: 0, eta: null };
    const ch = this.channel<ImportEvent>((ev) => {
      this.progress = {
        stage: ev.stage, file: ev.file, rate: ev.rate_bytes_per_s, eta: ev.eta_s,
        fraction: ev.bytes_total ? ev.bytes_done / ev.bytes_total : 0,
      };
    });
    try {
      this.imported = await this.api.importReleaseFolder(
        { release_dir: this.source.trim(), out_dir: this.dest.trim() || null, quant: this.quant }, ch);
      this.folder = this.imported.out_dir;
      this.lmFile = null;
      await this.inspect();
    } catch (e) {
      this.app.toast(e);
    } finally {
      this.importing = false;
      this.progress = null;
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
