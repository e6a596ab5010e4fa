//! Every integration test, in one binary (the crate is linked once, not once
//! per file): the API over a spawned server (`api`), the sync engine and the
//! webhook gateway in process (`sync`, `webhooks`), the CLI commands, the
//! loader and compile checks, the mapping engine and the golden fixtures.
//! Run one part with `cargo test --test main <module>::`, e.g. `golden::`.

#![expect(
    clippy::disallowed_methods,
    reason = "tests use real time and randomness where they mean to; the service may not"
)]

mod pg;

mod api;
mod check_cli;
mod compile_checks;
mod env_example;
mod fuzz_loader;
mod fuzz_mapping;
mod golden;
mod hostile_props;
mod load_formats;
mod map_cli;
mod mapping;
mod native_golden;
mod provider_docs;
mod push;
mod schema;
mod serve;
mod signals_doc;
mod sync;
mod ui;
mod webhooks;
