//! The `poblysh-connectors` binary: parses the command line and runs it.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: the sync path allocates per item and per row (JSON values, SQL
/// arguments); glibc malloc cost a third of its CPU time (`cargo bench --bench sync`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = poblysh_connectors::cli::Cli::parse();
    match poblysh_connectors::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
