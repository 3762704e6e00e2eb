//! Sound devices: listing, selection by name or id, and a timeout around every call into the
//! sound system, so a machine without a sound card or server gets a clear error, never a hang.
//! Shared by the microphone (`capture.rs`) and the speaker (`playback.rs`).

use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use cpal::traits::{DeviceTrait, HostTrait};

/// How long opening a sound device may take before we give up.
pub const DEVICE_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `f` on a helper thread and gives up after [`DEVICE_TIMEOUT`] (a stuck sound
/// system keeps that one thread; the caller gets an error and goes on).
pub(crate) fn within_timeout<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("mio-sound-probe".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .context("cannot spawn the sound probe thread")?;
    match rx.recv_timeout(DEVICE_TIMEOUT) {
        Ok(r) => r,
        Err(_) => bail!(
            "{what}: the sound system did not answer within {} s",
            DEVICE_TIMEOUT.as_secs()
        ),
    }
}

fn device_names(input: bool) -> Result<Vec<String>> {
    let host = cpal::default_host();
    let devices = if input {
        host.input_devices()
    } else {
        host.output_devices()
    };
    let devices = devices.map_err(|e| anyhow!("the sound system is not available: {e}"))?;
    Ok(devices.map(|d| d.to_string()).collect())
}

/// Names of the input devices (microphones) of the default sound host.
pub fn list_input_devices() -> Result<Vec<String>> {
    within_timeout("listing input devices", || device_names(true))
}

/// Names of the output devices (speakers) of the default sound host.
pub fn list_output_devices() -> Result<Vec<String>> {
    within_timeout("listing output devices", || device_names(false))
}

/// Finds a device by exact name or id (`alsa:hw:CARD=PCH,DEV=0`, or its part after the host
/// name), else by a unique case-insensitive substring of its name; `None` takes the host's
/// default.
pub(crate) fn find_device(input: bool, name: Option<&str>) -> Result<cpal::Device> {
    let kind = if input { "input" } else { "output" };
    let host = cpal::default_host();
    let Some(name) = name else {
        let default = if input {
            host.default_input_device()
        } else {
            host.default_output_device()
        };
        return default.ok_or_else(|| anyhow!("this machine has no default {kind} device"));
    };
    let devices: Vec<cpal::Device> = if input {
        host.input_devices()
    } else {
        host.output_devices()
    }
    .map_err(|e| anyhow!("the sound system is not available: {e}"))?
    .collect();
    let exact = devices.iter().find(|d| {
        d.to_string() == name
            || d.id()
                .is_ok_and(|id| id.to_string() == name || id.id() == name)
    });
    if let Some(d) = exact {
        return Ok(d.clone());
    }
    let names: Vec<String> = devices.iter().map(|d| d.to_string()).collect();
    let wanted = name.to_lowercase();
    let hits: Vec<usize> = (0..names.len())
        .filter(|&i| names[i].to_lowercase().contains(&wanted))
        .collect();
    match hits.as_slice() {
        [i] => Ok(devices[*i].clone()),
        [] if names.is_empty() => bail!("no {kind} device named '{name}': this machine has none"),
        [] => bail!(
            "no {kind} device named '{name}'; available: {}",
            names.join(", ")
        ),
        _ => bail!(
            "'{name}' matches several {kind} devices: {}",
            hits.iter()
                .map(|&i| names[i].as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A key that finds `device` again: its id where the host gives one, else its name.
pub(crate) fn device_key(device: &cpal::Device) -> String {
    device
        .id()
        .map(|id| id.to_string())
        .unwrap_or_else(|_| device.to_string())
}

/// Explains a failure to use a device that exists but does not work.
pub(crate) fn no_sound_hint(e: &cpal::Error) -> String {
    format!("{e} (is there a sound card, and is the sound server running?)")
}
