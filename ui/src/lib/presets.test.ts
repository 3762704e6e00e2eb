import { describe, expect, it } from "vitest";
import { Presets } from "./presets.svelte";

function memory() {
  const m = new Map<string, string>();
  return { getItem: (k: string) => m.get(k) ?? null, setItem: (k: string, v: string) => void m.set(k, v) };
}

describe("Presets", () => {
  it("keeps the preset until a field is set, remembers overrides per mode", () => {
    const store = memory();
    const p = new Presets(store);
    expect(p.forMode("guide")).toBeNull();
    p.set("guide", "temperature", 0.8);
    p.set("guide", "do_sample", false);
    expect(p.forMode("guide")).toMatchObject({ temperature: 0.8, do_sample: false, num_beams: null });
    expect(p.forMode("chat")).toBeNull();
    // Remembered across restarts.
    expect(new Presets(store).forMode("guide")?.temperature).toBe(0.8);
    p.set("guide", "temperature", null);
    p.set("guide", "do_sample", null);
    expect(p.forMode("guide")).toBeNull();
    p.set("voice", "max_new_tokens", 64);
    p.reset("voice");
    expect(p.forMode("voice")).toBeNull();
  });

  it("survives a corrupt stored value", () => {
    const store = memory();
    store.setItem("mio.presets", "{not json");
    expect(new Presets(store).forMode("chat")).toBeNull();
  });
});
