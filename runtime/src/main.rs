//! `mio`: the headless command line of MIO Desktop.
//!
//! Errors are one sentence on stderr and exit code 1; panics are caught and reported the
//! same way (they are bugs, but the user still gets a sentence, not a backtrace).

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static ALLOC: mio_runtime::memory::TensorAllocator = mio_runtime::memory::TensorAllocator;

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown failure".into());
        eprintln!("error: internal error ({msg}); please report it");
    }));
    mio_runtime::memory::tune_allocator();
    // `MIO_NO_AVX512=1`: the AVX2 matrix tile on AVX-512 CPUs too (bit-equal results; for
    // comparing the two in `mio bench`).
    mio_models::sgemm::keep_avx2_tile(std::env::var_os("MIO_NO_AVX512").is_some());
    let cli = mio_runtime::cli::Cli::parse();
    match mio_runtime::commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", mio_runtime::commands::one_sentence(&e));
            ExitCode::FAILURE
        }
    }
}
