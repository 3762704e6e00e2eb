//! Schedulers of the unCLIP pipeline: the PNDM denoiser (PLMS only) and the DDPM image-noising
//! schedule.
//!
//! Ports diffusers 0.20.2 `PNDMScheduler` (`scheduling_pndm.py`: `set_timesteps` with
//! "leading" spacing and `skip_prk_steps`, `step_plms`, `_get_prev_sample` with epsilon or
//! v-prediction) and the `alphas_cumprod` / `add_noise` of `DDPMScheduler`
//! (`scheduling_ddpm.py`, `betas_for_alpha_bar` for `squaredcos_cap_v2`). Configs mirror
//! `scheduler/scheduler_config.json` and `image_noising_scheduler/scheduler_config.json`.
//!
//! Arithmetic follows torch's float32: betas are computed in f64 and rounded to f32 as
//! `torch.tensor(..., dtype=float32)` does, `alphas_cumprod` is a running f32 product and
//! the step coefficients are f32 scalars. Deviation: the Runge-Kutta (PRK) warm-up is not
//! ported; a config without `skip_prk_steps` is refused.

use std::path::Path;

use candle_core::Tensor;
use serde::Deserialize;

use crate::{Error, Result};

/// The fields of a diffusers scheduler config we use (defaults equal to diffusers').
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct SchedulerConfig {
    /// Training steps (1000).
    pub num_train_timesteps: usize,
    /// First beta.
    pub beta_start: f64,
    /// Last beta.
    pub beta_end: f64,
    /// `linear`, `scaled_linear` or `squaredcos_cap_v2`.
    pub beta_schedule: String,
    /// `epsilon` or `v_prediction`.
    pub prediction_type: String,
    /// PNDM: use the PLMS steps only.
    pub skip_prk_steps: bool,
    /// PNDM: final alpha is 1 (else `alphas_cumprod[0]`).
    pub set_alpha_to_one: bool,
    /// Offset added to every inference timestep.
    pub steps_offset: usize,
    /// `leading` (the only spacing ported).
    pub timestep_spacing: String,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            beta_start: 0.0001,
            beta_end: 0.02,
            beta_schedule: "linear".into(),
            prediction_type: "epsilon".into(),
            skip_prk_steps: false,
            set_alpha_to_one: false,
            steps_offset: 0,
            timestep_spacing: "leading".into(),
        }
    }
}

impl SchedulerConfig {
    /// Reads a `scheduler_config.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::Json {
            path: path.into(),
            message: e.to_string(),
        })
    }

    /// `alphas_cumprod` (float32, as torch computes it) of this config's beta schedule.
    pub fn alphas_cumprod(&self) -> Result<Vec<f32>> {
        let n = self.num_train_timesteps;
        let betas: Vec<f32> = match self.beta_schedule.as_str() {
            "linear" => linspace(self.beta_start, self.beta_end, n),
            "scaled_linear" => linspace(self.beta_start.sqrt(), self.beta_end.sqrt(), n)
                .into_iter()
                .map(|b| b * b)
                .collect(),
            "squaredcos_cap_v2" => cosine_betas(n),
            other => {
                return Err(Error::Unsupported(format!("beta_schedule {other}")));
            }
        };
        let mut acc = 1f32;
        Ok(betas
            .into_iter()
            .map(|b| {
                acc *= 1f32 - b;
                acc
            })
            .collect())
    }
}

/// `torch.linspace(start, end, n, dtype=float32)`.
fn linspace(start: f64, end: f64, n: usize) -> Vec<f32> {
    let step = if n > 1 {
        (end - start) / (n - 1) as f64
    } else {
        0.0
    };
    (0..n).map(|i| (start + step * i as f64) as f32).collect()
}

/// `betas_for_alpha_bar(n, "cosine")` with `max_beta = 0.999`, then cast to f32.
fn cosine_betas(n: usize) -> Vec<f32> {
    let alpha_bar = |t: f64| {
        ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
            .cos()
            .powi(2)
    };
    (0..n)
        .map(|i| {
            let (t1, t2) = (i as f64 / n as f64, (i + 1) as f64 / n as f64);
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999) as f32
        })
        .collect()
}

/// The DDPM schedule that noises the image embedding (`image_noising_scheduler`).
#[derive(Debug, Clone)]
pub struct DdpmNoising {
    alphas_cumprod: Vec<f32>,
}

impl DdpmNoising {
    /// Builds the schedule from its config.
    pub fn new(cfg: &SchedulerConfig) -> Result<Self> {
        Ok(Self {
            alphas_cumprod: cfg.alphas_cumprod()?,
        })
    }

    /// ᾱ of training timestep `t`.
    pub fn alpha_cumprod(&self, t: usize) -> Result<f32> {
        self.alphas_cumprod
            .get(t)
            .copied()
            .ok_or_else(|| Error::InvalidArgument(format!("noise level {t} is out of range")))
    }

    /// `add_noise`: `√ᾱ_t · x + √(1−ᾱ_t) · noise`.
    pub fn add_noise(&self, xs: &Tensor, noise: &Tensor, t: usize) -> Result<Tensor> {
        let a = self.alpha_cumprod(t)?;
        let (sa, s1m) = (a.sqrt(), (1f32 - a).sqrt());
        Ok(((xs * f64::from(sa))? + (noise * f64::from(s1m))?)?)
    }
}

/// PNDM (PLMS) denoising state: the timesteps of one run and the past model outputs.
#[derive(Debug, Clone)]
pub struct PndmScheduler {
    cfg: SchedulerConfig,
    alphas_cumprod: Vec<f32>,
    final_alpha_cumprod: f32,
    num_inference_steps: usize,
    timesteps: Vec<usize>,
    ets: Vec<Tensor>,
    counter: usize,
    cur_sample: Option<Tensor>,
}

impl PndmScheduler {
    /// Builds the scheduler; refuses configs this port does not cover.
    pub fn new(cfg: SchedulerConfig) -> Result<Self> {
        if !cfg.skip_prk_steps {
            return Err(Error::Unsupported("PNDM without skip_prk_steps".into()));
        }
        if cfg.timestep_spacing != "leading" {
            return Err(Error::Unsupported(format!(
                "PNDM timestep_spacing {}",
                cfg.timestep_spacing
            )));
        }
        if !matches!(cfg.prediction_type.as_str(), "epsilon" | "v_prediction") {
            return Err(Error::Unsupported(format!(
                "prediction_type {}",
                cfg.prediction_type
            )));
        }
        let alphas_cumprod = cfg.alphas_cumprod()?;
        let final_alpha_cumprod = match (cfg.set_alpha_to_one, alphas_cumprod.first()) {
            (true, _) => 1.0,
            (false, Some(a)) => *a,
            (false, None) => return Err(Error::InvalidConfig("num_train_timesteps is 0".into())),
        };
        Ok(Self {
            cfg,
            alphas_cumprod,
            final_alpha_cumprod,
            num_inference_steps: 0,
            timesteps: Vec::new(),
            ets: Vec::new(),
            counter: 0,
            cur_sample: None,
        })
    }

    /// `set_timesteps`: plans `n` inference steps (n + 1 UNet calls) and resets the state.
    pub fn set_timesteps(&mut self, n: usize) -> Result<()> {
        let train = self.cfg.num_train_timesteps;
        if n == 0 || n > train {
            return Err(Error::InvalidArgument(format!(
                "steps must be in 1..={train}, got {n}"
            )));
        }
        let ratio = train / n;
        let base: Vec<usize> = (0..n).map(|i| i * ratio + self.cfg.steps_offset).collect();
        // [t_0 .. t_{n-2}, t_{n-2}, t_{n-1}] reversed: the second-to-last repeats.
        let mut plms = base[..n - 1].to_vec();
        plms.extend(
            base.get(n.saturating_sub(2)..n.saturating_sub(1))
                .unwrap_or(&[]),
        );
        plms.extend(&base[n - 1..]);
        plms.reverse();
        self.num_inference_steps = n;
        self.timesteps = plms;
        self.reset();
        Ok(())
    }

    /// Forgets past model outputs (keeps the planned timesteps).
    pub fn reset(&mut self) {
        self.ets.clear();
        self.counter = 0;
        self.cur_sample = None;
    }

    /// The UNet timesteps of the planned run.
    pub fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    /// `init_noise_sigma` (1 for PNDM).
    pub fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    /// `step_plms`: one denoising step from `timestep`, returns the previous sample.
    pub fn step(
        &mut self,
        model_output: &Tensor,
        timestep: usize,
        sample: &Tensor,
    ) -> Result<Tensor> {
        if self.num_inference_steps == 0 {
            return Err(Error::InvalidArgument(
                "set_timesteps was not called".into(),
            ));
        }
        let stride = self.cfg.num_train_timesteps / self.num_inference_steps;
        let (mut t, mut prev_t) = (timestep as i64, timestep as i64 - stride as i64);
        if self.counter != 1 {
            let keep = self.ets.len().saturating_sub(3);
            self.ets.drain(..keep);
            self.ets.push(model_output.clone());
        } else {
            prev_t = timestep as i64;
            t = timestep as i64 + stride as i64;
        }
        let mut sample = sample.clone();
        let e = &self.ets;
        let n = e.len();
        let output = match (n, self.counter) {
            (1, 0) => {
                self.cur_sample = Some(sample.clone());
                model_output.clone()
            }
            (1, 1) => {
                sample = self
                    .cur_sample
                    .take()
                    .ok_or_else(|| Error::Generation("PNDM state lost its first sample".into()))?;
                ((model_output + &e[n - 1])? / 2.0)?
            }
            (2, _) => (((&e[1] * 3.0)? - &e[0])? / 2.0)?,
            (3, _) => ((((&e[2] * 23.0)? - (&e[1] * 16.0)?)? + (&e[0] * 5.0)?)? / 12.0)?,
            _ => {
                let s = (((&e[n - 1] * 55.0)? - (&e[n - 2] * 59.0)?)? + (&e[n - 3] * 37.0)?)?;
                ((s - (&e[n - 4] * 9.0)?)? / 24.0)?
            }
        };
        let prev = self.prev_sample(&sample, t, prev_t, &output)?;
        self.counter += 1;
        Ok(prev)
    }

    fn alpha_at(&self, t: i64) -> Result<f32> {
        if t < 0 {
            return Ok(self.final_alpha_cumprod);
        }
        self.alphas_cumprod
            .get(t as usize)
            .copied()
            .ok_or_else(|| Error::InvalidArgument(format!("timestep {t} is out of range")))
    }

    /// `_get_prev_sample` (formula (9) of the PNDM paper), in f32 scalars as torch does.
    fn prev_sample(&self, sample: &Tensor, t: i64, prev_t: i64, output: &Tensor) -> Result<Tensor> {
        let a_t = self.alpha_at(t)?;
        let a_prev = self.alpha_at(prev_t)?;
        let (b_t, b_prev) = (1f32 - a_t, 1f32 - a_prev);
        let output = if self.cfg.prediction_type == "v_prediction" {
            ((output * f64::from(a_t.sqrt()))? + (sample * f64::from(b_t.sqrt()))?)?
        } else {
            output.clone()
        };
        let sample_coeff = (a_prev / a_t).sqrt();
        let denom = a_t * b_prev.sqrt() + (a_t * b_t * a_prev).sqrt();
        let out = ((output * f64::from(a_prev - a_t))? / f64::from(denom))?;
        Ok(((sample * f64::from(sample_coeff))? - out)?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn pndm_cfg() -> SchedulerConfig {
        SchedulerConfig {
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: "scaled_linear".into(),
            prediction_type: "v_prediction".into(),
            skip_prk_steps: true,
            steps_offset: 1,
            ..Default::default()
        }
    }

    #[test]
    fn pndm_timesteps_match_diffusers() {
        let mut s = PndmScheduler::new(pndm_cfg()).unwrap();
        s.set_timesteps(3).unwrap();
        assert_eq!(s.timesteps(), &[667, 334, 334, 1]);
        s.set_timesteps(20).unwrap();
        let ts = s.timesteps();
        assert_eq!(ts.len(), 21);
        assert_eq!(&ts[..4], &[951, 901, 901, 851]);
        assert_eq!(ts[20], 1);
        s.set_timesteps(1).unwrap();
        assert_eq!(s.timesteps(), &[1]);
        assert!(s.set_timesteps(0).is_err());
    }

    #[test]
    fn prk_is_refused() {
        let cfg = SchedulerConfig {
            skip_prk_steps: false,
            ..pndm_cfg()
        };
        assert!(PndmScheduler::new(cfg).is_err());
    }

    #[test]
    fn cosine_alphas_start_near_one() {
        let cfg = SchedulerConfig {
            beta_schedule: "squaredcos_cap_v2".into(),
            ..Default::default()
        };
        let noising = DdpmNoising::new(&cfg).unwrap();
        let a0 = noising.alpha_cumprod(0).unwrap();
        assert!((a0 - 0.999_958_7).abs() < 1e-6, "{a0}");
        assert!(noising.alpha_cumprod(1000).is_err());
    }
}
