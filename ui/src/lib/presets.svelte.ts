// Generation presets per task: the reference presets (from the shell) and the user's
// overrides per mode, remembered in localStorage and sent with each turn.
import type { GenOverrides, Mode, ModePreset } from "../ipc/bindings";

const KEY = "mio.presets";
export const FIELDS = ["max_new_tokens", "num_beams", "do_sample", "temperature", "top_p", "repetition_penalty", "seed"] as const;
export type Field = (typeof FIELDS)[number];

export function emptyOverrides(): GenOverrides {
  return { max_new_tokens: null, num_beams: null, do_sample: null, temperature: null, top_p: null, repetition_penalty: null, seed: null };
}

export class Presets {
  open = $state(false);
  reference = $state<ModePreset[]>([]);
  overrides = $state<Partial<Record<Mode, GenOverrides>>>({});

  constructor(private storage: Pick<Storage, "getItem" | "setItem"> | null = typeof localStorage === "undefined" ? null : localStorage) {
    try {
      this.overrides = JSON.parse(this.storage?.getItem(KEY) ?? "{}") ?? {};
    } catch {
      this.overrides = {};
    }
  }

  /** Sets one field of `mode` (`null` returns it to the preset). */
  set(mode: Mode, field: Field, value: number | boolean | null) {
    const o = { ...emptyOverrides(), ...this.overrides[mode] } as Record<Field, number | boolean | null>;
    o[field] = value;
    this.overrides = { ...this.overrides, [mode]: o as unknown as GenOverrides };
    this.save();
  }

  reset(mode: Mode) {
    const { [mode]: _, ...rest } = this.overrides;
    this.overrides = rest;
    this.save();
  }

  /** What a turn in `mode` sends: the overrides, or `null` when it keeps the preset. */
  forMode(mode: Mode): GenOverrides | null {
    const o = this.overrides[mode];
    if (!o || FIELDS.every((f) => o[f] === null || o[f] === undefined)) return null;
    return { ...emptyOverrides(), ...o };
  }

  private save() {
    this.storage?.setItem(KEY, JSON.stringify(this.overrides));
  }
}
