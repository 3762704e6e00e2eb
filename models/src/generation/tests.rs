//! Generation-level tests with fake LMs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
