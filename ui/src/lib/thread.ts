// Pure state logic of a thread: applying stream events to the message being generated, and
// grouping an answer into Guide steps. No Svelte, no IPC: unit-tested on its own.
import type { MessageView, Segment, StreamEvent } from "../ipc/bindings";

export interface Progress {
  stage: string;
  step: number;
  total: number;
}

/** A message as shown: the stored view plus live-only state while it streams. */
export interface LiveMessage extends MessageView {
  preview?: Segment | null;
  imagePreview?: Segment | null;
  progress?: Progress | null;
}

/** Whether a progress stage is a model part loading (the engine's "loading the …"). */
export function isLoading(p: Progress): boolean {
  return p.stage.startsWith("loading the ");
}

/** What a progress bar says: "Drawing the picture: step 3 of 20", "Loading the SEED image
 * encoder…". */
export function progressLabel(p: Progress): string {
  if (isLoading(p)) return `L${p.stage.slice(1)}…`;
  const what = p.stage === "image" ? "Drawing the picture" : p.stage;
  return `${what}: step ${p.step} of ${p.total}`;
}

/** The message after one stream event (a new object; the input is not changed). */
export function applyEvent(msg: LiveMessage, ev: StreamEvent): LiveMessage {
  switch (ev.kind) {
    case "text": {
      const segments = [...msg.segments];
      const last = segments[segments.length - 1];
      if (last && last.kind === "text") segments[segments.length - 1] = { kind: "text", text: last.text + ev.text };
      else segments.push({ kind: "text", text: ev.text });
      return { ...msg, segments };
    }
    case "segment":
      return { ...msg, segments: [...msg.segments, ev.segment], progress: null, imagePreview: null };
    case "guide_step":
      return { ...msg, segments: closeStep(msg.segments, ev.segment) };
    case "image_preview":
      return { ...msg, imagePreview: ev.segment };
    case "speech_preview":
      return { ...msg, preview: ev.segment };
    case "progress":
      // A codec loading on first use ("loading the SEED image encoder"): shown until it
      // has loaded, then gone.
      if (isLoading(ev) && ev.step >= ev.total) return { ...msg, progress: null };
      return { ...msg, progress: { stage: ev.stage, step: ev.step, total: ev.total } };
    case "done":
      return { ...ev.message, preview: null, progress: null, imagePreview: null };
    case "failed":
      return {
        ...(ev.message ?? msg),
        status: "failed",
        error: ev.error.message,
        preview: null,
        progress: null,
        imagePreview: null,
      };
  }
}

/** The segments after a Guide step closed: the text and picture streamed since the
 * previous step become `step` (speech stays after it), as the shell stores them. */
export function closeStep(segments: Segment[], step: Segment): Segment[] {
  let start = 0;
  segments.forEach((s, i) => { if (s.kind === "step") start = i + 1; });
  const tail = segments.slice(start);
  return [...segments.slice(0, start), step, ...tail.filter((s) => s.kind === "audio")];
}

/** A Guide step: its words and the media that illustrate it. */
export interface Step {
  text: string;
  media: Segment[];
}

/** Splits an answer into steps: each text begins a step, media join the current one. */
export function groupSteps(segments: Segment[]): Step[] {
  const steps: Step[] = [];
  for (const s of segments) {
    if (s.kind === "text") {
      for (const part of s.text.split(/\n(?=\s*(?:\d+[.)]|step\s+\d+))/i)) {
        if (part.trim()) steps.push({ text: part.trim(), media: [] });
      }
    } else if (steps.length) steps[steps.length - 1].media.push(s);
    else steps.push({ text: "", media: [s] });
  }
  return steps;
}

/** The first picture of a message (Edit mode's "before"). */
export function firstImage(segments: Segment[]): Segment | undefined {
  return segments.find((s) => s.kind === "image");
}

/** What a dropped or pasted file is, from its type or name; `null` when unsupported. */
/** The pictures of a message (a Video answer's frames). */
export function images(segments: Segment[]): Extract<Segment, { kind: "image" }>[] {
  return segments.filter((s): s is Extract<Segment, { kind: "image" }> => s.kind === "image");
}

export function mediaKindOf(file: { type: string; name: string }): "image" | "audio" | "video" | null {
  if (file.type.startsWith("image/")) return "image";
  if (file.type.startsWith("audio/")) return "audio";
  if (file.type.startsWith("video/")) return "video";
  const ext = file.name.toLowerCase().split(".").pop() ?? "";
  if (["png", "jpg", "jpeg", "webp", "gif", "bmp"].includes(ext)) return "image";
  if (["wav", "mp3", "flac", "ogg"].includes(ext)) return "audio";
  if (["mp4", "m4v", "webm", "mkv", "mov", "avi"].includes(ext)) return "video";
  return null;
}
