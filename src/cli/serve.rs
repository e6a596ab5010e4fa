//! `serve`: load the descriptors (the same loader as `check`) and run the API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use crate::api::{App, AppState, router};
use crate::descriptor::load::load_paths;
use crate::registry::Registry;

/// Options of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "API_BIND_ADDR", default_value = "0.0.0.0:8080")]
    pub bind: SocketAddr,
    /// Directory of built-in descriptors.
    #[arg(long, env = "POBLYSH_DESCRIPTORS_DIR", default_value = "descriptors")]
    pub descriptors: PathBuf,
    /// Start even if some descriptors are invalid (they are logged and left out).
    #[arg(long)]
    pub skip_invalid: bool,
}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    init_tracing();
    let report = load_paths(std::slice::from_ref(&args.descriptors));
    if !report.is_ok() {
        for d in &report.diagnostics {
            eprintln!("{d}");
        }
        if !args.skip_invalid {
            eprintln!(
                "error: {} problem(s) in {}; fix them (see `poblysh-connectors check`) or start with --skip-invalid",
                report.diagnostics.len(),
                args.descriptors.display()
            );
            return Ok(ExitCode::FAILURE);
        }
        tracing::warn!(
            problems = report.diagnostics.len(),
            "invalid descriptors left out"
        );
    }
    let registry = Registry::from_loaded(report.loaded);
    tracing::info!(providers = registry.len(), "descriptors loaded");
    let state = AppState(Arc::new(App { registry }));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.bind)
            .await
            .with_context(|| format!("cannot listen on {}", args.bind))?;
        let local = listener.local_addr()?;
        println!("listening on http://{local}");
        tracing::info!(%local, "listening");
        axum::serve(listener, router(state))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("server error")
    })?;
    Ok(ExitCode::SUCCESS)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
