//! `serve`: load the descriptors (the same loader as `check`), open and migrate
//! the database, and run the API until SIGINT or SIGTERM.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use crate::api::extract::OperatorTokens;
use crate::api::{App, AppState, router};
use crate::config::{Config, redact_url};
use crate::crypto::{KeyRing, KeySource};
use crate::db::Db;
use crate::db::repo::providers;
use crate::descriptor::load::{load_paths, load_str};
use crate::descriptor::source::Format;
use crate::engine::http::{HttpClient, NetworkPolicy};
use crate::registry::Registry;
use crate::services::Services;
use crate::sync::executor::{Executor, ExecutorSettings};
use crate::sync::queue::QueueSettings;
use crate::sync::scheduler;

/// What a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// The API, the scheduler and job workers.
    All,
    /// Only the API.
    Api,
    /// Only the scheduler and job workers.
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
        .build()
        .context("cannot start the async runtime")?;
    let role = args.role;
    runtime.block_on(async {
        let Some(state) = start(config, args.skip_invalid).await? else {
            return Ok(ExitCode::FAILURE);
        };
        let services = Arc::clone(&state.0.services);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut background = Vec::new();
        if role != Role::Api {
            let settings = ExecutorSettings {
                concurrency: services.config.job_concurrency,
                queue: QueueSettings {
                    tenant_concurrency: services.config.tenant_job_concurrency,
                    ..QueueSettings::default()
                },
                ..ExecutorSettings::default()
            };
            tracing::info!(worker = %settings.worker_id, concurrency = settings.concurrency, "job workers started");
            let executor = Arc::new(Executor::new(Arc::clone(&services), settings));
            background.push(tokio::spawn(executor.run_workers(stopped.clone())));
            background.push(tokio::spawn(scheduler::run(
                Arc::clone(&services),
                std::time::Duration::from_secs(5),
                stopped.clone(),
            )));
        }
        if role == Role::Worker {
            println!("worker running");
            shutdown_signal().await;
        } else {
            let listener = tokio::net::TcpListener::bind(services.config.bind)
                .await
                .with_context(|| format!("cannot listen on {}", services.config.bind))?;
            let local = listener.local_addr()?;
            println!("listening on http://{local}");
            tracing::info!(%local, "listening");
            axum::serve(listener, router(state))
                .with_graceful_shutdown(shutdown_signal())
                .await
                .context("server error")?;
        }
        let _ = stop.send(true);
        for task in background {
            let _ = task.await;
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Everything before listening; `None` when invalid descriptors stop start-up.
async fn start(config: Config, skip_invalid: bool) -> anyhow::Result<Option<AppState>> {
    let report = load_paths(std::slice::from_ref(&config.descriptors_dir));
    if !report.is_ok() {
        for d in &report.diagnostics {
            eprintln!("{d}");
        }
        if !skip_invalid {
            eprintln!(
                "error: {} problem(s) in {}; fix them (see `poblysh-connectors check`) or start with --skip-invalid",
                report.diagnostics.len(),
                config.descriptors_dir.display()
            );
            return Ok(None);
        }
        tracing::warn!(
            problems = report.diagnostics.len(),
            "invalid descriptors left out"
        );
    }
    let keys = key_ring(&config)?;
    let operator_tokens = operator_tokens(&config)?;

    tracing::info!(database = %redact_url(&config.database_url), "opening the database");
    let db = Db::connect(&config.database_url).await.with_context(|| {
        format!(
            "cannot open the database {}",
            redact_url(&config.database_url)
        )
    })?;
    db.migrate().await.context("cannot migrate the database")?;

    let builtins: Vec<_> = report.loaded.into_iter().map(|l| l.compiled).collect();
    providers::sync_builtins(
        &db,
        &builtins.iter().map(|c| &c.descriptor).collect::<Vec<_>>(),
    )
    .await
    .context("cannot record the built-in providers")?;
    let registry = Registry::with_builtins(builtins);
    for row in providers::list_runtime(&db)
        .await
        .context("cannot read runtime providers")?
    {
        let text = row.descriptor.to_string();
        match load_str(
            &format!("<stored provider {}>", row.id),
            &text,
            Format::Json,
        ) {
            Ok(compiled) => registry.insert(compiled, false),
            Err(diagnostics) => tracing::warn!(
                provider = %row.id,
                problems = diagnostics.len(),
                first = %diagnostics.first().map(ToString::to_string).unwrap_or_default(),
                "a stored runtime provider no longer passes `check`; left out"
            ),
        }
    }
    tracing::info!(providers = registry.len(), "providers loaded");
    let http = HttpClient::new(NetworkPolicy {
        allow_private: config.allow_private_networks,
    });
    if config.allow_private_networks {
        tracing::warn!(
            "POBLYSH_ALLOW_PRIVATE_NETWORKS is set: outbound requests may reach private addresses"
        );
    }
    let services = Arc::new(Services {
        db,
        keys,
        registry,
        http,
        config,
    });
    Ok(Some(AppState(Arc::new(App::new(
        services,
        operator_tokens,
    )))))
}

/// The key ring; a development key is generated (and announced loudly) only
/// outside production.
pub(super) fn key_ring(config: &Config) -> anyhow::Result<KeyRing> {
    let (keys, source) = KeyRing::from_config(
        config.crypto_key.as_deref(),
        config.crypto_previous_keys.as_deref(),
        config.production,
        &config.data_dir.join("dev-crypto.key"),
    )?;
    match source {
        KeySource::Environment => {}
        KeySource::DevelopmentFile(path) => tracing::warn!(
            "POBLYSH_CRYPTO_KEY is not set: using the DEVELOPMENT key in {path}. Never use it in production."
        ),
        KeySource::GeneratedDevelopmentFile(path) => tracing::warn!(
            "POBLYSH_CRYPTO_KEY is not set: GENERATED a DEVELOPMENT key in {path}. Secrets stored now need this file to be read. Set POBLYSH_CRYPTO_KEY for any real deployment."
        ),
    }
    Ok(keys)
}

/// The operator tokens; without any, a development token is kept in `data/`
/// outside production.
fn operator_tokens(config: &Config) -> anyhow::Result<OperatorTokens> {
    if !config.operator_tokens.is_empty() {
        return Ok(OperatorTokens::new(&config.operator_tokens));
    }
    if config.production {
        anyhow::bail!(
            "POBLYSH_OPERATOR_TOKENS (or POBLYSH_OPERATOR_TOKEN) is required when POBLYSH_ENV=production"
        );
    }
    let path = config.data_dir.join("dev-operator-token");
    let token = dev_token(&path)?;
    tracing::warn!(
        "POBLYSH_OPERATOR_TOKENS is not set: operator routes accept the DEVELOPMENT token in {}",
        path.display()
    );
    Ok(OperatorTokens::new(&[token]))
}

fn dev_token(path: &Path) -> anyhow::Result<String> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let token = text.trim().to_owned();
        if token.len() >= 16 {
            return Ok(token);
        }
    }
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let token = format!("dev-{}", hex::encode(bytes));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, format!("{token}\n"))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(token)
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
