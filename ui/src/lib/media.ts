// URLs of media files: served by the shell's scoped `media:` protocol from the app data
// folder only (media://localhost/NAME on Linux and macOS, http://media.localhost/NAME on
// Windows; convertFileSrc picks the right form).
import { convertFileSrc } from "@tauri-apps/api/core";

export function mediaUrl(file: string): string {
  return convertFileSrc(file, "media");
}

/**
 * A URL an `<audio>` element can play: the file's bytes as a blob URL. WebKitGTK's media
 * backend cannot read custom URI schemes (the element fails with NotSupportedError), while
 * `fetch` can; the caller revokes the URL when done.
 */
export async function playableUrl(file: string): Promise<string> {
  const r = await fetch(mediaUrl(file));
  if (!r.ok) throw new Error(`${file}: ${r.status}`);
  return URL.createObjectURL(await r.blob());
}
