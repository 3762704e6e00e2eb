//! The bounded queue in front of the one engine worker, and the bridge from the worker's
//! channel to the async handlers. A request whose [`Running`] is dropped (the client hung
//! up, the SSE stream closed) is cancelled on the worker.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use mio_models::engine::{Event, Request, Response};
use tokio::sync::mpsc;

use super::error::ApiError;
use crate::engine_backend::{EngineBackend, EngineWorker};
use crate::worker::{RunHandle, RunMessage};

/// A message of a running request.
pub type Message = RunMessage<Event, Response>;

/// At most `waiting + 1` requests (the running one and `waiting` queued) are admitted.
pub struct Queue {
    worker: Arc<EngineWorker>,
    in_flight: Arc<AtomicUsize>,
    waiting: usize,
}

/// A place in the queue, given back when the worker has finished the request.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Cancels the request on the worker when dropped before its end.
struct CancelGuard {
    worker: Arc<EngineWorker>,
    id: u64,
    done: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.done {
            eprintln!("request {}: client gone, cancelling", self.id);
            self.worker.cancel(self.id);
        }
    }
}

/// A request admitted to the worker.
pub struct Running {
    /// Worker request id.
    pub id: u64,
    rx: mpsc::UnboundedReceiver<Message>,
    guard: CancelGuard,
}

impl Queue {
    /// A queue of `waiting` places in front of `worker` (which may also serve others, as the
    /// app's does: their requests wait on the worker but take no place here).
    pub fn new(worker: Arc<EngineWorker>, waiting: usize) -> Self {
        Self {
            worker,
            in_flight: Arc::new(AtomicUsize::new(0)),
            waiting,
        }
    }

    /// Admits `request` or answers 429 when the queue is full.
    pub fn submit(&self, request: Request) -> Result<Running, ApiError> {
        let limit = self.waiting + 1;
        self.in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .map_err(|_| ApiError::queue_full(self.waiting))?;
        let slot = Slot(self.in_flight.clone());
        let handle = self
            .worker
            .run(request)
            .map_err(|e| ApiError::engine(format!("{e:#}")))?;
        let id = handle.id;
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name(format!("mio-serve-{id}"))
            .spawn(move || forward(handle, tx, slot))
            .map_err(|e| ApiError::engine(format!("cannot start a request thread: {e}")))?;
        Ok(Running {
            id,
            rx,
            guard: CancelGuard {
                worker: self.worker.clone(),
                id,
                done: false,
            },
        })
    }
}

/// Passes the worker's messages on until `Done`; cancels when the receiver is gone.
fn forward(handle: RunHandle<EngineBackend>, tx: mpsc::UnboundedSender<Message>, slot: Slot) {
    let mut gone = false;
    let mut tokens = 0;
    for message in handle.messages.iter() {
        let last = matches!(message, RunMessage::Done(_));
        if matches!(message, RunMessage::Event(Event::Token { .. })) {
            tokens += 1;
        }
        if last {
            log_done(handle.id, &message, tokens);
        }
        if !gone && tx.send(message).is_err() {
            gone = true;
            handle.cancel();
        }
        if last {
            break;
        }
    }
    drop(slot);
}

/// One line per request on stderr: how it ended and after how many streamed tokens.
fn log_done(id: u64, message: &Message, tokens: usize) {
    match message {
        RunMessage::Done(Ok(Response::Chat { finish_reason, .. })) => {
            eprintln!("request {id}: finished ({finish_reason:?}) after {tokens} tokens")
        }
        RunMessage::Done(Ok(_)) => eprintln!("request {id}: finished"),
        RunMessage::Done(Err(e)) => eprintln!("request {id}: failed ({e}) after {tokens} tokens"),
        RunMessage::Event(_) => {}
    }
}

impl Running {
    /// The next message; `None` when the worker stopped.
    pub async fn next(&mut self) -> Option<Message> {
        let message = self.rx.recv().await;
        if matches!(message, Some(RunMessage::Done(_)) | None) {
            self.guard.done = true;
        }
        message
    }

    /// Waits for the answer, dropping the streamed events.
    pub async fn finish(mut self) -> Result<Response, ApiError> {
        loop {
            match self.next().await {
                Some(RunMessage::Event(_)) => continue,
                Some(RunMessage::Done(Ok(r))) => return Ok(r),
                Some(RunMessage::Done(Err(e))) => return Err(ApiError::engine(e)),
                None => return Err(ApiError::engine("the model worker stopped")),
            }
        }
    }
}
