//! mio-runtime: the assistant around the engine (worker thread, sessions, CLI).

pub mod device;
pub mod worker;
