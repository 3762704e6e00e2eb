// Human-readable sizes, rates and durations (model manager, audio clips).

/** Bytes as B / KiB / MiB / GiB. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

/** Seconds left as m:ss or h:mm:ss; "…" when not known yet. */
export function formatEta(s: number | null): string {
  if (s === null || !Number.isFinite(s)) return "…";
  const t = Math.max(0, Math.round(s));
  const h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60), sec = t % 60;
  const mm = h ? String(m).padStart(2, "0") : String(m);
  return `${h ? `${h}:` : ""}${mm}:${String(sec).padStart(2, "0")}`;
}

/** A clip's length: milliseconds under a second (a 30 ms clip is not "0.0 s"), else seconds. */
export function formatClip(s: number): string {
  if (!Number.isFinite(s) || s < 0) return "…";
  const ms = Math.round(s * 1000);
  if (ms < 1000) return `${ms} ms`;
  return `${s.toFixed(1)} s`;
}
