// URLs of media files: served by the shell's scoped `media:` protocol from the app data
// folder only (media://localhost/NAME on Linux and macOS, http://media.localhost/NAME on
// Windows; convertFileSrc picks the right form).
import { convertFileSrc } from "@tauri-apps/api/core";

export function mediaUrl(file: string): string {
  return convertFileSrc(file, "media");
}
