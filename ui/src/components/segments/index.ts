// The segment renderers: one component per segment kind. A new kind is a variant in
// src-tauri's ipc.rs (regenerating bindings.ts) plus one entry here; TypeScript fails the
// build until every kind has a renderer.
import type { Component } from "svelte";
import type { Segment } from "../../ipc/bindings";
import TextSegment from "./TextSegment.svelte";
import ImageSegment from "./ImageSegment.svelte";
import AudioSegment from "./AudioSegment.svelte";
import StepSegment from "./StepSegment.svelte";
import VideoSegment from "./VideoSegment.svelte";

type Renderers = { [K in Segment["kind"]]: Component<{ segment: Extract<Segment, { kind: K }> }> };

export const renderers: Renderers = {
  text: TextSegment,
  image: ImageSegment,
  audio: AudioSegment,
  step: StepSegment,
  video: VideoSegment,
};

export function rendererFor(segment: Segment): Component<{ segment: Segment }> {
  return renderers[segment.kind] as Component<{ segment: Segment }>;
}
