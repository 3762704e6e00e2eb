//! Device selection: `cpu`, `cuda[:N]`, `metal[:N]`, with a clear error when the build
//! lacks the feature or the machine lacks the device.

use anyhow::{bail, Context, Result};
use candle_core::Device;

/// Which accelerator the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceKind {
    /// The CPU (always available).
    #[default]
    Cpu,
    /// An NVIDIA GPU through CUDA, by ordinal.
    Cuda(usize),
    /// An Apple GPU through Metal, by ordinal.
    Metal(usize),
}

impl std::str::FromStr for DeviceKind {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let (name, ordinal) = match s.split_once(':') {
            Some((n, o)) => {
                let o: usize = o
                    .parse()
                    .with_context(|| format!("bad device ordinal in {s:?}"))?;
                (n, o)
            }
            None => (s, 0),
        };
        match name.to_ascii_lowercase().as_str() {
            "cpu" => Ok(DeviceKind::Cpu),
            "cuda" | "gpu" => Ok(DeviceKind::Cuda(ordinal)),
            "metal" => Ok(DeviceKind::Metal(ordinal)),
            other => bail!("unknown device {other:?}: use cpu, cuda[:N] or metal[:N]"),
        }
    }
}

impl std::fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceKind::Cpu => write!(f, "cpu"),
            DeviceKind::Cuda(n) => write!(f, "cuda:{n}"),
            DeviceKind::Metal(n) => write!(f, "metal:{n}"),
        }
    }
}

impl DeviceKind {
    /// Opens the device, or explains why it cannot be used.
    pub fn open(self) -> Result<Device> {
        match self {
            DeviceKind::Cpu => Ok(Device::Cpu),
            DeviceKind::Cuda(n) => {
                if !candle_core::utils::cuda_is_available() {
                    bail!("device cuda:{n} is not available: this build of mio was compiled without the `cuda` feature (rebuild with `--features cuda`)");
                }
                Device::new_cuda(n).map_err(|e| anyhow::anyhow!("cannot open CUDA device {n}: {e}"))
            }
            DeviceKind::Metal(n) => {
                if !candle_core::utils::metal_is_available() {
                    bail!("device metal:{n} is not available: this build of mio was compiled without the `metal` feature (rebuild with `--features metal`)");
                }
                Device::new_metal(n)
                    .map_err(|e| anyhow::anyhow!("cannot open Metal device {n}: {e}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!("cpu".parse::<DeviceKind>().ok(), Some(DeviceKind::Cpu));
        assert_eq!(
            "cuda:1".parse::<DeviceKind>().ok(),
            Some(DeviceKind::Cuda(1))
        );
        assert_eq!(
            "Metal".parse::<DeviceKind>().ok(),
            Some(DeviceKind::Metal(0))
        );
        assert!("tpu".parse::<DeviceKind>().is_err());
        assert!("cuda:x".parse::<DeviceKind>().is_err());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_feature_is_a_clear_error() {
        let err = DeviceKind::Cuda(0)
            .open()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("without the `cuda` feature"), "{err}");
    }
}
