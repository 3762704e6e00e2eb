// Error toasts: a clear sentence from the typed error and advice for its code.
import type { AppError, ErrorCode } from "../ipc/bindings";

const ADVICE: Record<ErrorCode, string> = {
  NO_MODEL: "Load a model first: the tiny test model is one click away in the header.",
  MODEL_LOAD: "Pick a MIO release folder (with config.json and the weights) and try again.",
  ENGINE: "The model failed during the answer; what it produced is kept. Try again or regenerate.",
  INVALID_INPUT: "Check the message or the attached file.",
  NOT_FOUND: "It may have been deleted; the list is refreshed.",
  STORAGE: "Check free disk space and permissions of the app data folder.",
  DEVICE: "Connect a microphone or camera (or check that no other app holds it) and try again.",
  IMPORT: "Check the release folder and the free disk space; importing again resumes where it stopped.",
  INTERNAL: "Something unexpected happened; the app is still usable.",
};

let next = 1;

export interface Toast {
  id: number;
  title: string;
  advice: string;
  /** A note, not an error (e.g. the engine left old turns out of the prompt). */
  info?: boolean;
}

/** A note toast. */
export function noteToast(title: string, advice: string): Toast {
  return { id: next++, title, advice, info: true };
}


/** A toast from anything thrown by a command (typed `AppError` or not). */
export function toastFrom(e: unknown): Toast {
  const err = asAppError(e);
  return { id: next++, title: err.message, advice: ADVICE[err.code] ?? ADVICE.INTERNAL };
}

export function asAppError(e: unknown): AppError {
  if (e && typeof e === "object" && "code" in e && "message" in e) {
    const code = (e as AppError).code;
    if (code in ADVICE) return e as AppError;
  }
  return { code: "INTERNAL", message: e instanceof Error ? e.message : String(e) };
}
