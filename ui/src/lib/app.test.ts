import { describe, expect, it, vi } from "vitest";

vi.mock("@tauri-apps/api/core", () => ({ convertFileSrc: (f: string) => f, invoke: vi.fn(), Channel: class {} }));

import { AppState, type Api } from "./app.svelte";
import type { StreamEvent, TurnStarted } from "../ipc/bindings";

// A fake of the generated bindings (test only): records calls, streams what the test says.
function fakeApi() {
  let onEvent: ((e: StreamEvent) => void) | null = null;
  const api = {
    modelStatus: vi.fn(async () => null),
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
    emit({ kind: "done", message: { ...app.messages[1], status: "cancelled" }, tokens_per_s: 2 });
    expect(app.running).toBeNull();
    expect(app.messages[1].status).toBe("cancelled");
  });

  it("turns a refused attachment into a toast and stays usable", async () => {
    const { api, channel } = fakeApi();
    const app = new AppState(api as unknown as Api, channel);
    await app.attach("bad.png", new Uint8Array([1, 2]));
    expect(app.attachments).toEqual([]);
    expect(app.toasts[0].title).toMatch(/not a readable picture/);
  });
});
