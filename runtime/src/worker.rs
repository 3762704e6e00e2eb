//! The worker: one dedicated thread that owns the engine (and with it the device).
//!
//! Typed commands (`Load`, `Run`, `Cancel`, `Shutdown`), a ready handshake after load, a
//! per-request cancel flag that the engine checks between decode steps. Callers never block
//! on the model: they get a [`RunHandle`] whose events arrive on a channel.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{anyhow, Result};

/// What the worker drives: the real engine in the product, a fake in app tests.
pub trait Backend: 'static {
    /// Options that load a model.
    type Load: Send + 'static;
    /// What a successful load reports (model info for the UI).
    type Ready: Send + 'static;
    /// One request.
    type Request: Send + 'static;
    /// A streamed event of a request.
    type Event: Send + 'static;
    /// The final answer of a request.
    type Response: Send + 'static;

    /// Loads the model; runs on the worker thread.
    fn load(opts: Self::Load) -> Result<(Self, Self::Ready)>
    where
        Self: Sized;

    /// Runs one request, streaming events, checking `cancel` between steps.
    fn run(
        &mut self,
        request: Self::Request,
        cancel: &AtomicBool,
        emit: &mut dyn FnMut(Self::Event),
    ) -> Result<Self::Response>;
}

/// What a running request sends back.
#[derive(Debug)]
pub enum RunMessage<E, R> {
    /// A streamed event.
    Event(E),
    /// The request finished (the last message).
    Done(Result<R, String>),
}

enum Command<B: Backend> {
    Load(B::Load, Sender<Result<B::Ready, String>>),
    Run {
        request: B::Request,
        cancel: Arc<AtomicBool>,
        out: Sender<RunMessage<B::Event, B::Response>>,
    },
    Shutdown,
}

/// Handle of one request in flight.
pub struct RunHandle<B: Backend> {
    /// Request id (for [`Worker::cancel`]).
    pub id: u64,
    /// Events, then exactly one `Done`.
    pub messages: Receiver<RunMessage<B::Event, B::Response>>,
    cancel: Arc<AtomicBool>,
}

impl<B: Backend> RunHandle<B> {
    /// Asks the engine to stop this request at its next step.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    /// Waits for the end of the request, passing every event to `on_event`.
    pub fn wait(self, mut on_event: impl FnMut(B::Event)) -> Result<B::Response> {
        for message in self.messages.iter() {
            match message {
                RunMessage::Event(e) => on_event(e),
                RunMessage::Done(result) => return result.map_err(|e| anyhow!(e)),
            }
        }
        Err(anyhow!(
            "the model worker stopped before finishing the request"
        ))
    }
}

/// The worker thread and the channel to it.
pub struct Worker<B: Backend> {
    tx: Sender<Command<B>>,
    cancels: std::sync::Mutex<HashMap<u64, Arc<AtomicBool>>>,
    next_id: std::sync::atomic::AtomicU64,
    thread: Option<JoinHandle<()>>,
}

impl<B: Backend> Worker<B> {
    /// Starts the worker thread (no model loaded yet).
    pub fn spawn() -> Result<Self> {
        let (tx, rx) = mpsc::channel::<Command<B>>();
        let thread = std::thread::Builder::new()
            .name("mio-engine".into())
            .spawn(move || worker_loop::<B>(rx))
            .map_err(|e| anyhow!("cannot start the model worker thread: {e}"))?;
        Ok(Self {
            tx,
            cancels: std::sync::Mutex::new(HashMap::new()),
            next_id: std::sync::atomic::AtomicU64::new(1),
            thread: Some(thread),
        })
    }

    /// Loads a model and waits for the ready handshake.
    pub fn load(&self, opts: B::Load) -> Result<B::Ready> {
        let (reply, ready) = mpsc::channel();
        self.send(Command::Load(opts, reply))?;
        ready
            .recv()
            .map_err(|_| anyhow!("the model worker stopped while loading"))?
            .map_err(|e| anyhow!(e))
    }

    /// Queues a request; returns at once.
    pub fn run(&self, request: B::Request) -> Result<RunHandle<B>> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let cancel = Arc::new(AtomicBool::new(false));
        if let Ok(mut map) = self.cancels.lock() {
            map.retain(|_, flag| Arc::strong_count(flag) > 1);
            map.insert(id, cancel.clone());
        }
        let (out, messages) = mpsc::channel();
        self.send(Command::Run {
            request,
            cancel: cancel.clone(),
            out,
        })?;
        Ok(RunHandle {
            id,
            messages,
            cancel,
        })
    }

    /// Cancels request `id` if it is still queued or running.
    pub fn cancel(&self, id: u64) {
        if let Ok(map) = self.cancels.lock() {
            if let Some(flag) = map.get(&id) {
                flag.store(true, Ordering::SeqCst);
            }
        }
    }

    fn send(&self, command: Command<B>) -> Result<()> {
        self.tx
            .send(command)
            .map_err(|_| anyhow!("the model worker has stopped"))
    }
}

impl<B: Backend> Drop for Worker<B> {
    fn drop(&mut self) {
        if let Ok(map) = self.cancels.lock() {
            map.values()
                .for_each(|flag| flag.store(true, Ordering::SeqCst));
        }
        let _ = self.tx.send(Command::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn worker_loop<B: Backend>(rx: Receiver<Command<B>>) {
    let mut backend: Option<B> = None;
    for command in rx.iter() {
        match command {
            Command::Load(opts, reply) => {
                backend = None; // free the old model before loading the new one
                let result = match B::load(opts) {
                    Ok((b, ready)) => {
                        backend = Some(b);
                        Ok(ready)
                    }
                    Err(e) => Err(format!("{e:#}")),
                };
                let _ = reply.send(result);
                crate::memory::release_free_memory();
            }
            Command::Run {
                request,
                cancel,
                out,
            } => {
                let result = match backend.as_mut() {
                    None => Err("no model is loaded".to_string()),
                    Some(_) if cancel.load(Ordering::SeqCst) => Err("cancelled".to_string()),
                    Some(b) => {
                        let mut emit = |e| {
                            let _ = out.send(RunMessage::Event(e));
                        };
                        b.run(request, &cancel, &mut emit)
                            .map_err(|e| format!("{e:#}"))
                    }
                };
                let _ = out.send(RunMessage::Done(result));
                crate::memory::release_free_memory();
            }
            Command::Shutdown => break,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// A fake engine for worker tests (labelled as such): it counts to `n`, one event per
    /// step, and honours cancel.
    struct CountingFake {
        step_delay: std::time::Duration,
    }

    impl Backend for CountingFake {
        type Load = u64;
        type Ready = String;
        type Request = u32;
        type Event = u32;
        type Response = u32;

        fn load(delay_ms: u64) -> Result<(Self, String)> {
            if delay_ms == 999 {
                anyhow::bail!("fake load failure");
            }
            let b = CountingFake {
                step_delay: std::time::Duration::from_millis(delay_ms),
            };
            Ok((b, "ready".into()))
        }

        fn run(&mut self, n: u32, cancel: &AtomicBool, emit: &mut dyn FnMut(u32)) -> Result<u32> {
            for i in 0..n {
                if cancel.load(Ordering::SeqCst) {
                    anyhow::bail!("cancelled");
                }
                std::thread::sleep(self.step_delay);
                emit(i);
            }
            Ok(n)
        }
    }

    #[test]
    fn runs_after_ready_handshake_and_streams() {
        let worker = Worker::<CountingFake>::spawn().unwrap();
        assert_eq!(worker.load(0).unwrap(), "ready");
        let mut seen = vec![];
        let done = worker.run(3).unwrap().wait(|e| seen.push(e)).unwrap();
        assert_eq!((done, seen), (3, vec![0, 1, 2]));
    }

    #[test]
    fn run_without_model_and_failed_load_are_errors() {
        let worker = Worker::<CountingFake>::spawn().unwrap();
        let err = worker.run(1).unwrap().wait(|_| {}).unwrap_err();
        assert!(err.to_string().contains("no model is loaded"));
        let err = worker.load(999).unwrap_err();
        assert!(err.to_string().contains("fake load failure"));
    }

    #[test]
    fn cancel_stops_between_steps() {
        let worker = Worker::<CountingFake>::spawn().unwrap();
        worker.load(5).unwrap();
        let handle = worker.run(10_000).unwrap();
        let id = handle.id;
        let mut count = 0;
        let result = handle.wait(|_| {
            count += 1;
            if count == 3 {
                worker.cancel(id);
            }
        });
        assert!(result.unwrap_err().to_string().contains("cancelled"));
        assert!(count < 10_000);
    }
}
