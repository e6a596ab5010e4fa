//! `serve`: build the node (`crate::app`: descriptors through the same loader
//! as `check`, the database opened and migrated) and run the API and/or the
//! sync engine until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use crate::app::{AppError, Builder};
use crate::config::Config;

/// Stack of each runtime thread (tokio's default is 2 MiB): templates, JSON
/// and YAML are depth-bounded well below what this holds.
pub const WORKER_STACK_BYTES: usize = 8 << 20;

/// What a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// The API, the scheduler and job workers.
    All,
    /// Only the API.
    Api,
    /// Only the scheduler and job workers (and `/healthz`, `/readyz`, `/metrics`).
    Worker,
}

/// Options of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// What this node runs (several `worker` or `all` nodes may share one PostgreSQL).
    #[arg(long, value_enum, default_value_t = Role::All)]
    pub role: Role,
    /// Address to listen on (default `API_BIND_ADDR`, else 0.0.0.0:8080).
    #[arg(long)]
    pub bind: Option<std::net::SocketAddr>,
    /// Directory of built-in descriptors (default `POBLYSH_DESCRIPTORS_DIR`, else `descriptors`).
    #[arg(long)]
    pub descriptors: Option<PathBuf>,
    /// Start even if some descriptors are invalid (they are logged and left out).
    #[arg(long)]
    pub skip_invalid: bool,
}

/// Runs the server.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    super::init_tracing();
    let mut config = Config::from_env()?;
    if let Some(bind) = args.bind {
        config.bind = bind;
    }
    if let Some(dir) = args.descriptors {
        config.descriptors_dir = dir;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // A margin over the recursion the bounds on untrusted input allow.
        .thread_stack_size(WORKER_STACK_BYTES)
        .build()
        .context("cannot start the async runtime")?;
    let role = args.role;
    runtime.block_on(async {
        let node = match Builder::new(config).skip_invalid(args.skip_invalid).build().await {
            Ok(node) => node,
            Err(AppError::InvalidDescriptors { dir, diagnostics }) => {
                for d in &diagnostics {
                    eprintln!("{d}");
                }
                eprintln!(
                    "error: {} problem(s) in {}; fix them (see `poblysh-connectors check`) or start with --skip-invalid",
                    diagnostics.len(),
                    dir.display()
                );
                return Ok(ExitCode::FAILURE);
            }
            Err(e) => return Err(e.into()),
        };
        // The first SIGINT/SIGTERM stops the node: the API stops accepting,
        // running jobs stop at their next page boundary after a commit and go
        // back to the queue; after `POBLYSH_SHUTDOWN_SECONDS` the node exits
        // anyway (the jobs' leases expire and they resume from their last
        // commit elsewhere). A second signal exits at once.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            let _ = stop.send(true);
            shutdown_signal().await;
            eprintln!("second signal: exiting now");
            std::process::exit(130);
        });
        let mut background = node.spawn_upkeep(&stopped);
        if role != Role::Api {
            background.extend(node.spawn_engine(
                node.executor_settings(),
                std::time::Duration::from_secs(5),
                &stopped,
            ));
        }
        let stopping = {
            let mut stopped = stopped.clone();
            let services = Arc::clone(&node.services);
            async move {
                let _ = stopped.wait_for(|s| *s).await;
                services.stopping.send_replace(true);
            }
        };
        let bind = node.services.config.bind;
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .with_context(|| format!("cannot listen on {bind}"))?;
        let local = listener.local_addr()?;
        println!("listening on http://{local}");
        // A worker serves /healthz, /readyz and /metrics only.
        let router = if role == Role::Worker {
            tracing::info!(%local, "listening (health and metrics only)");
            node.ops_router()
        } else {
            tracing::info!(%local, "listening");
            node.router()
        };
        // The peer's address: the dashboard limits sign-in attempts per client.
        let app = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
        axum::serve(listener, app)
            .with_graceful_shutdown(stopping)
            .await
            .context("server error")?;
        let deadline = std::time::Duration::from_secs(node.services.config.shutdown_seconds);
        let finished = tokio::time::timeout(deadline, async {
            for task in background {
                let _ = task.await;
            }
        })
        .await;
        if finished.is_err() {
            tracing::warn!(
                seconds = deadline.as_secs(),
                "running jobs did not stop in time; they resume from their last commit once their leases expire"
            );
        }
        Ok(ExitCode::SUCCESS)
    })
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
}
