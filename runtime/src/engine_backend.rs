//! The real engine behind the worker.

use std::sync::atomic::AtomicBool;

use anyhow::Result;
use mio_models::engine::{Engine, EngineInfo, Event, LoadOptions, Request, Response};

use crate::device::DeviceKind;
use crate::worker::{Backend, Worker};

/// [`Engine`] as a worker [`Backend`]: loads on the worker thread, on the chosen device.
pub struct EngineBackend(Engine);

/// The worker type the CLI and the app use.
pub type EngineWorker = Worker<EngineBackend>;

impl Backend for EngineBackend {
    type Load = (LoadOptions, DeviceKind);
    type Ready = EngineInfo;
    type Request = Request;
    type Event = Event;
    type Response = Response;

    fn load((opts, device): Self::Load) -> Result<(Self, EngineInfo)> {
        let dev = device.open()?;
        let engine = Engine::load(&opts, &dev)?;
        let info = engine.info().clone();
        Ok((EngineBackend(engine), info))
    }

    fn run(
        &mut self,
        request: Request,
        cancel: &AtomicBool,
        emit: &mut dyn FnMut(Event),
    ) -> Result<Response> {
        Ok(self.0.run(request, cancel, emit)?)
    }
}
