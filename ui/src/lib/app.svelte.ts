// The app's state and the services the components call; services call the generated
// bindings (`api`), which tests replace.
import { Channel } from "@tauri-apps/api/core";
import * as bindings from "../ipc/bindings";
import type {
  Attachment, CameraEvent, ConversationSummary, LoadArgs, LoadEvent, MicEvent, Mode, ModelInfo, StreamEvent,
} from "../ipc/bindings";
import { applyEvent, isLoading, progressLabel, type LiveMessage } from "./thread";
import { noteToast, toastFrom, type Toast } from "./errors";
import { ModelManager } from "./models.svelte";
import { Presets } from "./presets.svelte";

export type Api = typeof bindings;
export type MakeChannel = <T>(onMessage: (m: T) => void) => Channel<T>;

const realChannel: MakeChannel = <T>(onMessage: (m: T) => void) => {
  const ch = new Channel<T>();
  ch.onmessage = onMessage;
  return ch;
};

export class AppState {
  model = $state<ModelInfo | null>(null);
  loading = $state<{ stage: string; index: number; total: number } | null>(null);
  conversations = $state<ConversationSummary[]>([]);
  currentId = $state<number | null>(null);
  messages = $state<LiveMessage[]>([]);
  mode = $state<Mode>("chat");
  attachments = $state<Attachment[]>([]);
  /** What the engine loads for the attachments, e.g. "Loading the SEED image encoder…". */
  preparing = $state<string | null>(null);
  running = $state<{ requestId: number; messageId: number } | null>(null);
  toasts = $state<Toast[]>([]);
  query = $state("");
  lastSpeed = $state<number | null>(null);
  camera = $state({ open: false, frame: null as string | null, testDouble: false, busy: false, clipS: 3 });
  mic = $state({ active: false, handsFree: false, silenceMs: 700, level: -100, speaking: false, testDouble: false });

  models: ModelManager;
  presets = new Presets();

  constructor(
    private api: Api = bindings,
    private channel: MakeChannel = realChannel,
  ) {
    this.models = new ModelManager(this, api, channel);
  }

  toast(e: unknown) {
    this.show(toastFrom(e));
  }

  /** A note that is not an error. */
  note(title: string, advice = "") {
    this.show(noteToast(title, advice));
  }

  /** Whether a dialog (models, presets) is open: toasts then show inside it. */
  get modalOpen(): boolean {
    return this.models.open || this.presets.open;
  }

  private show(t: Toast) {
    // The same message twice (a repeated failure, the same note per turn) shows once.
    if (this.toasts.some((o) => o.title === t.title && o.advice === t.advice && o.info === t.info)) return;
    this.toasts = [...this.toasts, t];
    setTimeout(() => this.dismiss(t.id), 8000);
  }

  /** Conversations whose "oldest messages left out" note was shown (once each). */
  private leftOutNoted = new Set<number | null>();

  dismiss(id: number) {
    this.toasts = this.toasts.filter((t) => t.id !== id);
  }

  async init() {
    try {
      this.model = await this.api.modelStatus();
      this.presets.reference = await this.api.generationPresets();
      await this.refreshList();
    } catch (e) {
      this.toast(e);
    }
  }

  async loadModel(args: LoadArgs) {
    this.loading = { stage: "starting", index: 0, total: 2 };
    try {
      const ch = this.channel<LoadEvent>((ev) => (this.loading = { ...ev }));
      this.model = await this.api.loadModel(args, ch);
    } catch (e) {
      this.toast(e);
    } finally {
      this.loading = null;
    }
  }

  async refreshList() {
    this.conversations = this.query.trim()
      ? await this.api.searchConversations(this.query.trim())
      : await this.api.listConversations();
  }

  async open(id: number) {
    try {
      const view = await this.api.getConversation(id);
      this.currentId = id;
      this.messages = view.messages;
    } catch (e) {
      this.toast(e);
      await this.refreshList();
    }
  }

  newConversation() {
    this.currentId = null;
    this.messages = [];
    this.attachments = [];
  }

  async remove(id: number) {
    try {
      await this.api.deleteConversation(id);
      if (this.currentId === id) this.newConversation();
      await this.refreshList();
    } catch (e) {
      this.toast(e);
    }
  }

  async attach(name: string, bytes: Uint8Array) {
    try {
      this.addAttachment(await this.api.importMedia(name, bytes));
    } catch (e) {
      this.toast(e);
    }
  }

  /** Adds an attachment and has the engine load what it needs (the image encoder, the
   * speech codec) while the user writes, instead of when the message is sent. */
  private addAttachment(a: Attachment) {
    this.attachments = [...this.attachments, a];
    const ch = this.channel<StreamEvent>((ev) => {
      if (ev.kind === "progress" && isLoading(ev)) this.preparing = ev.step < ev.total ? progressLabel(ev) : null;
      else if (ev.kind === "failed") { this.preparing = null; this.toast(ev.error); }
    });
    // Without a model (or on an old shell) there is nothing to prepare: the turn says why.
    this.api.prepareMedia(a.kind, ch).catch(() => {});
  }

  private handler(messageId: number) {
    return (ev: StreamEvent) => {
      this.messages = this.messages.map((m) => (m.id === messageId ? applyEvent(m, ev) : m));
      if (ev.kind === "done" || ev.kind === "failed") {
        if (ev.kind === "done") {
          this.lastSpeed = ev.tokens_per_s;
          for (const w of ev.warnings) {
            if (!w.includes("left out")) {
              this.note(w);
              continue;
            }
            // Every later turn of a long conversation leaves turns out too: say it once.
            if (this.leftOutNoted.has(this.currentId)) continue;
            this.leftOutNoted.add(this.currentId);
            this.note(w, "The model no longer sees the start of this conversation; start a new one (Ctrl+N) when it matters.");
          }
        }
        if (ev.kind === "failed") this.toast(ev.error);
        if (this.running?.messageId === messageId) this.running = null;
        this.refreshList().catch((e) => this.toast(e));
      }
    };
  }

  /** Sends the composer's text and attachments; the answer streams into the thread. */
  async send(text: string): Promise<boolean> {
    if (this.running) return false;
    // The message id is known only once the command returns; buffer events until then.
    const pending: StreamEvent[] = [];
    let target: number | null = null;
    const ch = this.channel<StreamEvent>((ev) => (target === null ? pending.push(ev) : deliver(ev)));
    let deliver: (ev: StreamEvent) => void = () => {};
    try {
      const started = await this.api.sendMessage(
        { conversation_id: this.currentId, text, attachments: this.attachments, mode: this.mode, max_new_tokens: null,
          params: this.presets.forMode(this.mode) },
        ch,
      );
      this.currentId = started.conversation_id;
      const live: LiveMessage = {
        id: started.message_id, role: "assistant", mode: this.mode, status: "streaming",
        segments: [], error: null, created_ms: Date.now(),
      };
      this.messages = [...this.messages, ...(started.user ? [started.user] : []), live];
      this.attachments = [];
      this.running = { requestId: started.request_id, messageId: started.message_id };
      target = started.message_id;
      deliver = this.handler(target);
      pending.splice(0).forEach(deliver);
      await this.refreshList();
      return true;
    } catch (e) {
      this.toast(e);
      return false;
    }
  }

  async regenerate() {
    if (this.running || this.currentId === null) return;
    const pending: StreamEvent[] = [];
    let deliver: ((ev: StreamEvent) => void) | null = null;
    const ch = this.channel<StreamEvent>((ev) => (deliver ? deliver(ev) : pending.push(ev)));
    try {
      const started = await this.api.regenerate(this.currentId, ch);
      const view = await this.api.getConversation(started.conversation_id);
      this.messages = view.messages.map((m) => (m.id === started.message_id ? { ...m } : m));
      this.running = { requestId: started.request_id, messageId: started.message_id };
      deliver = this.handler(started.message_id);
      pending.splice(0).forEach(deliver);
    } catch (e) {
      this.toast(e);
    }
  }

  /** Edit-and-resend: the user message gets `text`, everything after it goes, a new answer streams. */
  async resend(messageId: number, text: string) {
    if (this.running || this.currentId === null) return;
    const pending: StreamEvent[] = [];
    let deliver: ((ev: StreamEvent) => void) | null = null;
    const ch = this.channel<StreamEvent>((ev) => (deliver ? deliver(ev) : pending.push(ev)));
    try {
      const started = await this.api.resendMessage(this.currentId, messageId, text, ch);
      const view = await this.api.getConversation(started.conversation_id);
      this.messages = view.messages.map((m) => ({ ...m }));
      this.running = { requestId: started.request_id, messageId: started.message_id };
      deliver = this.handler(started.message_id);
      pending.splice(0).forEach(deliver);
    } catch (e) {
      this.toast(e);
    }
  }

  /** Imports a conversation exported as JSON and opens it. */
  async importConversation(bytes: Uint8Array) {
    try {
      const summary = await this.api.importConversation(bytes);
      await this.refreshList();
      await this.open(summary.id);
    } catch (e) {
      this.toast(e);
    }
  }

  /** Starts the microphone (push-to-talk: until `micStop`; hands-free: utterances cut by silence). */
  async micStart() {
    if (this.mic.active) return;
    this.mic.active = true;
    const ch = this.channel<MicEvent>((ev) => {
      if (ev.kind === "level") { this.mic.level = ev.db; this.mic.speaking = ev.speaking; }
      else if (ev.kind === "utterance") this.addAttachment(ev.attachment);
      else if (ev.kind === "failed") this.toast(ev.error);
      else if (ev.kind === "stopped") { this.mic.active = false; this.mic.speaking = false; }
    });
    try {
      const started = await this.api.micStart({ hands_free: this.mic.handsFree, silence_ms: this.mic.silenceMs }, ch);
      this.mic.testDouble = started.test_double;
    } catch (e) {
      this.mic.active = false;
      this.toast(e);
    }
  }

  async micStop() {
    try {
      await this.api.micStop();
    } catch (e) {
      this.toast(e);
    }
  }

  /** Opens the camera: live preview frames stream in until `cameraClose`. */
  async cameraOpen() {
    if (this.camera.open) return;
    this.camera.open = true;
    const ch = this.channel<CameraEvent>((ev) => {
      if (ev.kind === "frame") this.camera.frame = ev.data_url;
      else if (ev.kind === "failed") this.toast(ev.error);
      else if (ev.kind === "stopped") { this.camera.open = false; this.camera.frame = null; }
    });
    try {
      this.camera.testDouble = (await this.api.cameraStart(ch)).test_double;
    } catch (e) {
      this.camera.open = false;
      this.toast(e);
    }
  }

  /** A snapshot (`clip` false) or a short clip from the open camera, as an attachment. */
  async cameraCapture(clip: boolean) {
    this.camera.busy = true;
    try {
      const a = clip ? await this.api.cameraClip(this.camera.clipS) : await this.api.cameraSnapshot();
      this.addAttachment(a);
    } catch (e) {
      this.toast(e);
    } finally {
      this.camera.busy = false;
    }
  }

  async cameraClose() {
    try {
      await this.api.cameraStop();
    } catch (e) {
      this.toast(e);
    }
    this.camera.open = false;
    this.camera.frame = null;
  }

  async stop() {
    if (!this.running) return;
    try {
      await this.api.cancel(this.running.requestId);
    } catch (e) {
      this.toast(e);
    }
  }
}
