import { describe, expect, it } from "vitest";
import { applyEvent, closeStep, groupSteps, mediaKindOf, progressLabel, type LiveMessage } from "./thread";
import { asAppError, toastFrom } from "./errors";

const base: LiveMessage = {
  id: 2, role: "assistant", mode: "chat", status: "streaming", segments: [], error: null, created_ms: 0,
};

describe("applyEvent", () => {
  it("accumulates text and keeps media in order", () => {
    let m = applyEvent(base, { kind: "text", text: "Hel" });
    m = applyEvent(m, { kind: "text", text: "lo" });
    m = applyEvent(m, { kind: "progress", stage: "image", step: 3, total: 20 });
    expect(m.progress).toEqual({ stage: "image", step: 3, total: 20 });
    m = applyEvent(m, { kind: "segment", segment: { kind: "image", file: "a.png", width: 8, height: 8 } });
    m = applyEvent(m, { kind: "text", text: " again" });
    expect(m.segments.map((s) => s.kind)).toEqual(["text", "image", "text"]);
    expect(m.segments[0]).toEqual({ kind: "text", text: "Hello" });
    expect(m.progress).toBeNull();
    expect(base.segments).toEqual([]);
  });
  it("shows the speech preview until the final message replaces it", () => {
    let m = applyEvent(base, { kind: "speech_preview", index: 0, segment: { kind: "audio", file: "p.wav", duration_s: 1 } });
    expect(m.preview?.kind).toBe("audio");
    const final = { ...base, status: "done" as const, segments: [{ kind: "audio" as const, file: "s.wav", duration_s: 1 }] };
    m = applyEvent(m, { kind: "done", message: final, tokens_per_s: 10, warnings: [] });
    expect(m.preview).toBeNull();
    expect(m.status).toBe("done");
  });
  it("marks failures and keeps what was produced", () => {
    let m = applyEvent(base, { kind: "text", text: "part" });
    m = applyEvent(m, { kind: "failed", error: { code: "ENGINE", message: "boom" }, message: null });
    expect(m.status).toBe("failed");
    expect(m.error).toBe("boom");
    expect(m.segments).toHaveLength(1);
  });
});

describe("engine guide steps and previews", () => {
  it("a step replaces the text and picture since the previous one; previews come and go", () => {
    const step0 = { kind: "step", index: 0, text: "Dig", file: "s0.png", width: 2, height: 2 } as const;
    let m = { id: 1, role: "assistant", mode: "guide", status: "streaming", segments: [], error: null, created_ms: 0 } as LiveMessage;
    m = applyEvent(m, { kind: "text", text: "Dig" });
    m = applyEvent(m, { kind: "image_preview", step: 5, total: 20, segment: { kind: "image", file: "p.png", width: 2, height: 2 } });
    expect(m.imagePreview?.kind).toBe("image");
    m = applyEvent(m, { kind: "segment", segment: { kind: "image", file: "s0.png", width: 2, height: 2 } });
    expect(m.imagePreview).toBeNull();
    m = applyEvent(m, { kind: "guide_step", segment: step0 });
    expect(m.segments).toEqual([step0]);
    m = applyEvent(m, { kind: "text", text: " Water" });
    expect(closeStep(m.segments, { kind: "step", index: 1, text: "Water", file: null, width: 0, height: 0 }).map((s) => s.kind)).toEqual(["step", "step"]);
  });
});

describe("a model part loading on first use", () => {
  it("shows while it loads and goes once loaded; image steps keep their counts", () => {
    const loading = { kind: "progress", stage: "loading the SEED image encoder", step: 0, total: 1 } as const;
    let m = applyEvent(base, loading);
    expect(m.progress && progressLabel(m.progress)).toBe("Loading the SEED image encoder…");
    m = applyEvent(m, { ...loading, step: 1 });
    expect(m.progress).toBeNull();
    m = applyEvent(m, { kind: "progress", stage: "image", step: 3, total: 20 });
    expect(m.progress && progressLabel(m.progress)).toBe("Drawing the picture: step 3 of 20");
  });
});

describe("groupSteps", () => {
  it("starts a step at each numbered line and attaches media", () => {
    const steps = groupSteps([
      { kind: "text", text: "1. Mix flour\n2. Add water" },
      { kind: "image", file: "b.png", width: 1, height: 1 },
      { kind: "text", text: "3. Bake" },
    ]);
    expect(steps.map((s) => s.text)).toEqual(["1. Mix flour", "2. Add water", "3. Bake"]);
    expect(steps[1].media).toHaveLength(1);
  });
});

describe("files and errors", () => {
  it("recognises media by type or extension", () => {
    expect(mediaKindOf({ type: "image/png", name: "x" })).toBe("image");
    expect(mediaKindOf({ type: "", name: "a.WAV" })).toBe("audio");
    expect(mediaKindOf({ type: "text/plain", name: "a.txt" })).toBeNull();
    expect(mediaKindOf({ type: "", name: "clip.MP4" })).toBe("video");
    expect(mediaKindOf({ type: "video/webm", name: "x" })).toBe("video");
  });
  it("turns typed and untyped errors into toasts with advice", () => {
    expect(toastFrom({ code: "NO_MODEL", message: "load a model first" }).advice).toMatch(/tiny test model/);
    expect(asAppError(new Error("x"))).toEqual({ code: "INTERNAL", message: "x" });
    expect(asAppError("plain").message).toBe("plain");
  });
});
