import { afterEach, describe, expect, it, vi } from "vitest";
import { flushSync, mount, unmount } from "svelte";

vi.mock("@tauri-apps/api/core", () => ({
  convertFileSrc: (f: string, p: string) => `${p}://localhost/${f}`,
  invoke: vi.fn(),
  Channel: class {},
}));

import Message from "./Message.svelte";
import type { LiveMessage } from "../lib/thread";

// Fakes of fetch and object URLs (jsdom has neither for the media: scheme).
const fetched: string[] = [];
vi.stubGlobal("fetch", async (url: string) => {
  fetched.push(url);
  const blob = Object.assign(new Blob([url]), { file: url.split("/").pop() });
  return { ok: true, status: 200, blob: async () => blob };
});
URL.createObjectURL = (b: Blob) => `blob:${(b as Blob & { file?: string }).file}`;
URL.revokeObjectURL = () => {};

let comp: ReturnType<typeof mount> | null = null;
afterEach(() => {
  if (comp) unmount(comp);
  comp = null;
  document.body.innerHTML = "";
});

function render(props: Record<string, unknown>) {
  comp = mount(Message, { target: document.body, props: props as never });
  flushSync();
  return document.body;
}

const msg = (over: Partial<LiveMessage>): LiveMessage => ({
  id: 1, role: "assistant", mode: "chat", status: "done", segments: [], error: null, created_ms: 0, ...over,
});

describe("Message", () => {
  it("renders segments in order with a renderer per kind", async () => {
    const body = render({
      message: msg({
        segments: [
          { kind: "text", text: "**Hi** <b>x</b>" },
          { kind: "image", file: "a.png", width: 64, height: 64 },
          { kind: "audio", file: "s.wav", duration_s: 1.5 },
        ],
      }),
    });
    const kinds = [...body.querySelectorAll("[data-segment]")].map((e) => e.getAttribute("data-segment"));
    expect(kinds).toEqual(["text", "image", "audio"]);
    expect(body.querySelector(".md")!.innerHTML).toContain("<strong>Hi</strong> &lt;b&gt;x&lt;/b&gt;");
    expect(body.querySelector("img")!.getAttribute("src")).toBe("media://localhost/a.png");
    // The player gets the clip as a blob (WebKitGTK cannot play from the media: scheme).
    await vi.waitFor(() => expect(body.querySelector("audio")?.getAttribute("src")).toBe("blob:s.wav"));
    expect(fetched).toContain("media://localhost/s.wav");
  });

  it("labels an empty speech block instead of showing a broken player", () => {
    const body = render({ message: msg({ segments: [{ kind: "audio", file: "e.wav", duration_s: 0 }] }) });
    expect(body.querySelector("audio")).toBeNull();
    expect(body.querySelector("[data-segment=audio]")!.textContent).toContain("empty speech block");
  });

  it("opens a picture in a lightbox with a save link", () => {
    const body = render({ message: msg({ segments: [{ kind: "image", file: "a.png", width: 8, height: 8 }] }) });
    (body.querySelector(".thumb") as HTMLButtonElement).click();
    flushSync();
    expect(body.querySelector(".lightbox a[download]")).not.toBeNull();
  });

  it("shows the progressive preview, progress and streaming state", () => {
    const body = render({
      message: msg({
        status: "streaming",
        preview: { kind: "audio", file: "p.wav", duration_s: 0.5 },
        progress: { stage: "image", step: 4, total: 20 },
      }),
    });
    expect(body.querySelector(".audio.preview")).not.toBeNull();
    expect(body.querySelector("[data-progress]")!.textContent).toContain("step 4 of 20");
    expect(body.querySelector(".typing")).not.toBeNull();
  });

  it("lays out Guide answers as steps and Edit answers as before and after", () => {
    let body = render({ message: msg({ mode: "guide", segments: [{ kind: "text", text: "1. One\n2. Two" }] }) });
    expect(body.querySelectorAll(".steps > li")).toHaveLength(2);
    unmount(comp!);
    comp = null;
    body = render({
      message: msg({ mode: "edit", segments: [{ kind: "image", file: "after.png", width: 8, height: 8 }] }),
      before: { kind: "image", file: "before.png", width: 8, height: 8 },
    });
    const labels = [...body.querySelectorAll(".before-after .label")].map((e) => e.textContent);
    expect(labels).toEqual(["Before", "After"]);
  });

  it("renders the engine's guide steps numbered with their pictures", () => {
    const body = render({
      message: msg({
        mode: "guide",
        segments: [
          { kind: "step", index: 0, text: "Dig a hole", file: "s0.png", width: 8, height: 8 },
          { kind: "step", index: 1, text: "Water it", file: null, width: 0, height: 0 },
        ],
      }),
    });
    const steps = [...body.querySelectorAll("[data-segment=step]")];
    expect(steps.map((s) => s.querySelector(".step-n")!.textContent)).toEqual(["1", "2"]);
    expect(steps[0].querySelector("img")!.getAttribute("src")).toBe("media://localhost/s0.png");
    expect(steps[1].querySelector("img")).toBeNull();
  });

  it("plays a Video answer's frames as a slideshow", async () => {
    vi.useFakeTimers();
    const frame = (f: string) => ({ kind: "image", file: f, width: 8, height: 8 }) as const;
    const body = render({ message: msg({ mode: "video", segments: [frame("f0.png"), frame("f1.png"), frame("f2.png")] }) });
    expect(body.querySelectorAll(".strip .frame")).toHaveLength(3);
    const stage = () => body.querySelector(".keyframe-stage")!.getAttribute("src");
    expect(stage()).toBe("media://localhost/f0.png");
    (body.querySelector("[data-action=slideshow]") as HTMLButtonElement).click();
    vi.advanceTimersByTime(1100);
    flushSync();
    expect(stage()).toBe("media://localhost/f2.png");
    vi.useRealTimers();
  });

  it("shows an attached video's keyframes as a strip with their times", () => {
    const body = render({
      message: msg({ role: "user", segments: [{ kind: "video", file: "v.mp4", frames: ["k0.png", "k1.png"], times_s: [0, 1.5], width: 8, height: 8 }] }),
    });
    expect(body.querySelector("[data-segment=video] [data-segment=keyframes]")!.getAttribute("data-frames")).toBe("2");
    (body.querySelectorAll(".strip .frame")[1] as HTMLButtonElement).click();
    flushSync();
    expect(body.querySelector(".keyframe-bar .meta")!.textContent).toContain("1.5 s");
  });

  it("offers regenerate on the last finished answer and shows errors", () => {
    const onregenerate = vi.fn();
    const body = render({ message: msg({ status: "failed", error: "boom" }), last: true, onregenerate });
    expect(body.querySelector(".error")!.textContent).toBe("boom");
    (body.querySelector("[data-action=regenerate]") as HTMLButtonElement).click();
    expect(onregenerate).toHaveBeenCalled();
  });
});
