//! mio-runtime: the assistant around the engine (worker thread, sessions, CLI).
