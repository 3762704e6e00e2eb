import { describe, expect, it, vi } from "vitest";

vi.mock("@tauri-apps/api/core", () => ({ convertFileSrc: (f: string) => f, invoke: vi.fn(), Channel: class {} }));

import { AppState, type Api } from "./app.svelte";
import type { Attachment, CameraEvent, MicEvent, StreamEvent, TurnStarted } from "../ipc/bindings";

// A fake of the generated bindings (test only): records calls, streams what the test says.
function fakeApi() {
  let onEvent: ((e: StreamEvent) => void) | null = null;
  const api = {
    modelStatus: vi.fn(async () => null),
    generationPresets: vi.fn(async () => []),
    listConversations: vi.fn(async () => []),
    searchConversations: vi.fn(async () => []),
    sendMessage: vi.fn(async (_args: unknown, ch: { onmessage: (e: StreamEvent) => void }) => {
      onEvent = ch.onmessage;
      ch.onmessage({ kind: "text", text: "early " }); // before the command returns
      const started: TurnStarted = {
        conversation_id: 5, message_id: 11, request_id: 3,
        user: { id: 10, role: "user", mode: "chat", status: "done", segments: [{ kind: "text", text: "hi" }], error: null, created_ms: 0 },
      };
      return started;
    }),
    cancel: vi.fn(async () => {}),
    importMedia: vi.fn(async () => { throw { code: "INVALID_INPUT", message: "bad.png is not a readable picture" }; }),
    prepareMedia: vi.fn(async () => {}),
  };
  const channel = <T,>(f: (m: T) => void) => ({ onmessage: f }) as never;
  return { api, channel, emit: (e: StreamEvent) => onEvent!(e) };
}

describe("AppState", () => {
  it("sends, buffers early events, streams into the new message and stops", async () => {
    const { api, channel, emit } = fakeApi();
    const app = new AppState(api as unknown as Api, channel);
    expect(await app.send("hi")).toBe(true);
    expect(app.currentId).toBe(5);
    expect(app.messages.map((m) => m.id)).toEqual([10, 11]);
    emit({ kind: "text", text: "world" });
    expect(app.messages[1].segments).toEqual([{ kind: "text", text: "early world" }]);
    await app.stop();
    expect(api.cancel).toHaveBeenCalledWith(3);
    emit({ kind: "done", message: { ...app.messages[1], status: "cancelled" }, tokens_per_s: 2, warnings: ["the 2 oldest messages were left out: the whole conversation does not fit"] });
    expect(app.running).toBeNull();
    expect(app.messages[1].status).toBe("cancelled");
    // The engine's note is shown as a note, not an error.
    expect(app.toasts.map((t) => [t.title.slice(0, 33), t.info])).toEqual([["the 2 oldest messages were left o", true]]);
    expect(app.toasts[0].advice).toMatch(/start a new one/);
  });

  it("notes left-out turns once per conversation and never shows the same toast twice", async () => {
    const { api, channel, emit } = fakeApi();
    const app = new AppState(api as unknown as Api, channel);
    const leftOut = (n: number) => `the ${n} oldest messages were left out: the whole conversation does not fit`;
    for (const n of [2, 4, 6]) {
      expect(await app.send("again")).toBe(true);
      emit({ kind: "done", message: { ...app.messages[app.messages.length - 1], status: "done" }, tokens_per_s: 2, warnings: [leftOut(n)] });
    }
    // Three long turns of conversation 5: one note, the first.
    expect(app.toasts.map((t) => t.title)).toEqual([leftOut(2)]);
    // The same failure twice while the first toast is up: one toast.
    await app.attach("bad.png", new Uint8Array([1]));
    await app.attach("bad.png", new Uint8Array([1]));
    expect(app.toasts.filter((t) => /not a readable picture/.test(t.title))).toHaveLength(1);
    // Dismissed, it can show again.
    app.dismiss(app.toasts[1].id);
    await app.attach("bad.png", new Uint8Array([1]));
    expect(app.toasts.filter((t) => /not a readable picture/.test(t.title))).toHaveLength(1);
  });

  it("shows toasts inside an open dialog instead of over it", () => {
    const { api, channel } = fakeApi();
    const app = new AppState(api as unknown as Api, channel);
    expect(app.modalOpen).toBe(false);
    app.models.open = true;
    expect(app.modalOpen).toBe(true);
    app.models.open = false;
    app.presets.open = true;
    expect(app.modalOpen).toBe(true);
  });

  it("turns a refused attachment into a toast and stays usable", async () => {
    const { api, channel } = fakeApi();
    const app = new AppState(api as unknown as Api, channel);
    await app.attach("bad.png", new Uint8Array([1, 2]));
    expect(app.attachments).toEqual([]);
    expect(app.toasts[0].title).toMatch(/not a readable picture/);
  });

  it("edit-and-resend replaces the thread after the message and streams the new answer", async () => {
    const { api, channel } = fakeApi();
    const user = { id: 10, role: "user", mode: "chat", status: "done", segments: [{ kind: "text", text: "hi again" }], error: null, created_ms: 0 } as const;
    const live = { id: 30, role: "assistant", mode: "chat", status: "streaming", segments: [], error: null, created_ms: 0 } as const;
    let stream: ((e: StreamEvent) => void) | null = null;
    Object.assign(api, {
      resendMessage: vi.fn(async (_c: number, _m: number, _t: string, ch: { onmessage: (e: StreamEvent) => void }) => {
        stream = ch.onmessage;
        return { conversation_id: 5, message_id: 30, request_id: 9, user };
      }),
      getConversation: vi.fn(async () => ({ summary: { id: 5, title: "t", updated_ms: 0, messages: 2 }, messages: [user, live] })),
    });
    const app = new AppState(api as unknown as Api, channel);
    await app.send("hi");
    app.running = null;
    await app.resend(10, "hi again");
    expect((api as unknown as { resendMessage: ReturnType<typeof vi.fn> }).resendMessage.mock.calls[0].slice(0, 3)).toEqual([5, 10, "hi again"]);
    expect(app.messages.map((m) => m.id)).toEqual([10, 30]);
    expect(app.running).toEqual({ requestId: 9, messageId: 30 });
    stream!({ kind: "text", text: "new" });
    expect(app.messages[1].segments).toEqual([{ kind: "text", text: "new" }]);
  });

  it("imports a JSON export and opens it; a bad file is one toast", async () => {
    const { api, channel } = fakeApi();
    const summary = { id: 8, title: "t", updated_ms: 0, messages: 1 };
    Object.assign(api, {
      importConversation: vi.fn(async (b: Uint8Array) => {
        if (b.length === 1) throw { code: "INVALID_INPUT", message: "this is not a MIO conversation export (JSON): x" };
        return summary;
      }),
      getConversation: vi.fn(async () => ({ summary, messages: [] })),
    });
    const app = new AppState(api as unknown as Api, channel);
    await app.importConversation(new Uint8Array([1, 2]));
    expect(app.currentId).toBe(8);
    await app.importConversation(new Uint8Array([1]));
    expect(app.toasts.map((t) => t.title)).toEqual(["this is not a MIO conversation export (JSON): x"]);
    expect(app.currentId).toBe(8);
  });

  it("records from the microphone into an attachment; a missing device is one toast", async () => {
    const { api, channel } = fakeApi();
    let ev: ((e: MicEvent) => void) | null = null;
    const att: Attachment = { kind: "audio", name: "recording 1.wav", segment: { kind: "audio", file: "mic-1.wav", duration_s: 0.8 } };
    Object.assign(api, {
      micStart: vi.fn(async (_a: unknown, ch: { onmessage: (e: MicEvent) => void }) => { ev = ch.onmessage; return { test_double: true }; }),
      micStop: vi.fn(async () => { ev!({ kind: "utterance", attachment: att, duration_s: 0.8 }); ev!({ kind: "stopped" }); }),
    });
    const app = new AppState(api as unknown as Api, channel);
    app.mic.handsFree = true;
    app.mic.silenceMs = 500;
    await app.micStart();
    expect((api as unknown as { micStart: ReturnType<typeof vi.fn> }).micStart.mock.calls[0][0]).toEqual({ hands_free: true, silence_ms: 500 });
    expect(app.mic.active && app.mic.testDouble).toBe(true);
    ev!({ kind: "level", db: -20, speaking: true });
    expect(app.mic.speaking).toBe(true);
    await app.micStop();
    expect(app.attachments).toEqual([att]);
    expect(app.mic.active).toBe(false);

    Object.assign(api, { micStart: vi.fn(async () => { throw { code: "DEVICE", message: "no microphone to record from: no input device" }; }) });
    await app.micStart();
    expect(app.mic.active).toBe(false);
    expect(app.toasts.map((t) => t.title)).toEqual(["no microphone to record from: no input device"]);
  });

  it("has the engine load what an attachment needs while the user writes, and says so", async () => {
    const { api, channel } = fakeApi();
    let ev: ((e: StreamEvent) => void) | null = null;
    const pic: Attachment = { kind: "image", name: "a.png", segment: { kind: "image", file: "a.png", width: 4, height: 4 } };
    Object.assign(api, {
      importMedia: vi.fn(async () => pic),
      prepareMedia: vi.fn(async (_k: unknown, ch: { onmessage: (e: StreamEvent) => void }) => { ev = ch.onmessage; }),
    });
    const app = new AppState(api as unknown as Api, channel);
    await app.attach("a.png", new Uint8Array([1]));
    expect(app.attachments).toEqual([pic]);
    expect((api as unknown as { prepareMedia: ReturnType<typeof vi.fn> }).prepareMedia.mock.calls[0][0]).toBe("image");
    ev!({ kind: "progress", stage: "loading the SEED image encoder", step: 0, total: 1 });
    expect(app.preparing).toBe("Loading the SEED image encoder…");
    ev!({ kind: "progress", stage: "loading the SEED image encoder", step: 1, total: 1 });
    expect(app.preparing).toBeNull();
    ev!({ kind: "progress", stage: "loading the SEED image encoder", step: 0, total: 1 });
    ev!({ kind: "failed", error: { code: "ENGINE", message: "invalid checkpoint eva_vit_g.pth" }, message: null });
    expect(app.preparing).toBeNull();
    expect(app.toasts.map((t) => t.title)).toEqual(["invalid checkpoint eva_vit_g.pth"]);
  });

  it("opens the camera with a live preview, takes a snapshot and a clip, closes", async () => {
    const { api, channel } = fakeApi();
    let ev: ((e: CameraEvent) => void) | null = null;
    const snap: Attachment = { kind: "image", name: "camera snapshot.png", segment: { kind: "image", file: "c.png", width: 4, height: 4 } };
    const clip: Attachment = { kind: "video", name: "camera clip 3 s", segment: { kind: "video", file: "c.gif", frames: ["f.png"], times_s: [0], width: 4, height: 4 } };
    Object.assign(api, {
      cameraStart: vi.fn(async (ch: { onmessage: (e: CameraEvent) => void }) => { ev = ch.onmessage; return { test_double: true }; }),
      cameraSnapshot: vi.fn(async () => snap),
      cameraClip: vi.fn(async () => clip),
      cameraStop: vi.fn(async () => ev!({ kind: "stopped" })),
    });
    const app = new AppState(api as unknown as Api, channel);
    await app.cameraOpen();
    ev!({ kind: "frame", data_url: "data:image/jpeg;base64,AA", width: 4, height: 4 });
    expect(app.camera.frame).toBe("data:image/jpeg;base64,AA");
    await app.cameraCapture(false);
    await app.cameraCapture(true);
    expect(app.attachments).toEqual([snap, clip]);
    await app.cameraClose();
    expect(app.camera.open).toBe(false);
    expect(app.camera.frame).toBeNull();
  });
});
