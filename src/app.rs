//! The one way a running node is put together, for `serve`, the test
//! harnesses and the benches alike: configuration → database (migrated) → key
//! ring → registry (built-in descriptors from `descriptors/`, bound to their
//! native connectors where `kind: native`, then the runtime descriptors stored
//! in the database) → services → the API router and the sync engine.
//!
//! Error type: [`AppError`], for everything that stops a node from starting.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::api::extract::OperatorTokens;
use crate::api::{App, AppState};
use crate::config::{Config, redact_url};
use crate::connector::native::{self, Native};
use crate::crypto::{CryptoError, KeyRing, KeySource};
use crate::db::repo::providers;
use crate::db::{Db, StoreError};
use crate::descriptor::compile::CompiledDescriptor;
use crate::descriptor::diagnostic::Diagnostic;
use crate::descriptor::load::Loader;
use crate::domain::{Ambient, Random};
use crate::engine::http::{HttpClient, NetworkPolicy};
use crate::registry::{NativeEnv, Registry, RegistryError};
use crate::services::Services;
use crate::sync::executor::{Executor, ExecutorSettings};
use crate::sync::queue::QueueSettings;
use crate::sync::scheduler;

/// Why a node cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Built-in descriptors have problems (and invalid ones are not skipped).
    #[error(
        "{} problem(s) in {}; fix them (see `poblysh-connectors check`) or start with --skip-invalid",
        .diagnostics.len(),
        .dir.display()
    )]
    InvalidDescriptors {
        /// The directory.
        dir: PathBuf,
        /// Every problem.
        diagnostics: Vec<Diagnostic>,
    },
    /// The encryption keys cannot be used.
    #[error(transparent)]
    Keys(#[from] CryptoError),
    /// No operator token in production.
    #[error(
        "POBLYSH_OPERATOR_TOKENS (or POBLYSH_OPERATOR_TOKEN) is required when POBLYSH_ENV=production"
    )]
    NoOperatorToken,
    /// A development file cannot be read or written.
    #[error("cannot use {path}: {reason}")]
    DevFile {
        /// The file.
        path: String,
        /// What failed.
        reason: String,
    },
    /// The database cannot be opened, migrated or read.
    #[error("database {url}: {source}")]
    Database {
        /// The URL, without its password.
        url: String,
        /// What failed.
        source: StoreError,
    },
    /// The connectors do not fit together.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Where the built-in descriptors come from.
#[derive(Debug)]
enum Builtins {
    /// A directory, loaded like `check`; invalid ones left out when `skip_invalid`.
    Dir { dir: PathBuf, skip_invalid: bool },
    /// Already compiled.
    Compiled(Vec<CompiledDescriptor>),
}

/// Puts a node together.
#[derive(Debug)]
#[must_use]
pub struct Builder {
    config: Config,
    builtins: Builtins,
    natives: Vec<Native>,
    ambient: Ambient,
}

impl Builder {
    /// A node from `config`: the built-in descriptors of
    /// `config.descriptors_dir`, the shipped native connectors, the real clock.
    pub fn new(config: Config) -> Self {
        Builder {
            builtins: Builtins::Dir {
                dir: config.descriptors_dir.clone(),
                skip_invalid: false,
            },
            config,
            natives: native::all(),
            ambient: Ambient::system(),
        }
    }

    /// Starts even when some built-in descriptors are invalid (they are
    /// logged and left out).
    pub fn skip_invalid(mut self, skip: bool) -> Self {
        if let Builtins::Dir { skip_invalid, .. } = &mut self.builtins {
            *skip_invalid = skip;
        }
        self
    }

    /// Uses these built-in descriptors instead of a directory (none: an empty
    /// catalogue, as tests start).
    pub fn builtins(mut self, compiled: Vec<CompiledDescriptor>) -> Self {
        self.builtins = Builtins::Compiled(compiled);
        self
    }

    /// Adds a native connector (tests bring their own).
    pub fn native(mut self, native: Native) -> Self {
        self.natives.push(native);
        self
    }

    /// Runs the node on this clock and randomness.
    pub fn ambient(mut self, ambient: Ambient) -> Self {
        self.ambient = ambient;
        self
    }

    /// Opens and migrates the database, loads the connectors and builds the
    /// services.
    pub async fn build(self) -> Result<Node, AppError> {
        let Builder {
            config,
            builtins,
            natives,
            ambient,
        } = self;
        // The recorder first: the connectors' series start at zero as they load.
        crate::api::metrics::handle();
        let native_ids: Vec<String> = natives.iter().map(|n| n.id().to_owned()).collect();
        let native_ids: Vec<&str> = native_ids.iter().map(String::as_str).collect();
        let loader = Loader::with_natives(&native_ids);
        let builtins = match builtins {
            Builtins::Compiled(c) => c,
            Builtins::Dir { dir, skip_invalid } => {
                let report = loader.load_paths(std::slice::from_ref(&dir));
                if !report.is_ok() {
                    if !skip_invalid {
                        return Err(AppError::InvalidDescriptors {
                            dir,
                            diagnostics: report.diagnostics,
                        });
                    }
                    for d in &report.diagnostics {
                        tracing::warn!(problem = %d, "invalid descriptor left out");
                    }
                }
                report.loaded.into_iter().map(|l| l.compiled).collect()
            }
        };
        let keys = key_ring(&config)?;
        let operator_tokens = operator_tokens(&config)?;

        let url = redact_url(&config.database_url);
        let database = |source| AppError::Database {
            url: url.clone(),
            source,
        };
        tracing::info!(database = %url, "opening the database");
        let db = Db::connect(&config.database_url)
            .await
            .map_err(database)?
            .with_ambient(ambient.clone());
        db.migrate().await.map_err(database)?;
        providers::sync_builtins(
            &db,
            &builtins.iter().map(|c| &c.descriptor).collect::<Vec<_>>(),
        )
        .await
        .map_err(database)?;

        let http = HttpClient::new(NetworkPolicy {
            allow_private: config.allow_private_networks,
        })
        .with_ambient(ambient.clone());
        if config.allow_private_networks {
            tracing::warn!(
                "POBLYSH_ALLOW_PRIVATE_NETWORKS is set: outbound requests may reach private addresses"
            );
        }
        let registry = Registry::new(
            natives,
            NativeEnv {
                http: http.clone(),
                ambient: ambient.clone(),
                config: config.clone(),
            },
        )?;
        for id in registry.native_ids() {
            if !builtins.iter().any(|c| c.id() == id) {
                tracing::warn!(
                    native = id,
                    "a native connector has no `kind: native` descriptor among the built-ins; it is not registered"
                );
            }
        }
        for compiled in builtins {
            registry.insert(compiled, true)?;
        }
        crate::upkeep::providers::catch_up(&db, &registry)
            .await
            .map_err(database)?;
        tracing::info!(providers = registry.len(), "providers loaded");
        Ok(Node {
            services: Arc::new(Services {
                db,
                keys,
                registry,
                http,
                config,
                ambient,
                stopping: tokio::sync::watch::Sender::new(false),
            }),
            operator_tokens,
        })
    }
}

/// A node's services, ready to serve the API and run jobs.
#[derive(Debug)]
pub struct Node {
    /// Everything the node shares.
    pub services: Arc<Services>,
    operator_tokens: OperatorTokens,
}

impl Node {
    /// The API's state (starts the webhook gateway's writer: call inside the runtime).
    pub fn state(&self) -> AppState {
        AppState(Arc::new(App::new(
            Arc::clone(&self.services),
            self.operator_tokens.clone(),
        )))
    }

    /// The API router.
    pub fn router(&self) -> axum::Router {
        crate::api::router(self.state())
    }

    /// What a worker node serves (liveness, readiness, metrics).
    pub fn ops_router(&self) -> axum::Router {
        crate::api::ops_router(self.state())
    }

    /// The executor settings the configuration asks for.
    pub fn executor_settings(&self) -> ExecutorSettings {
        let config = &self.services.config;
        ExecutorSettings {
            concurrency: config.job_concurrency,
            queue: QueueSettings {
                tenant_concurrency: config.tenant_job_concurrency,
                lease: config.ops.job_lease,
                ..QueueSettings::default()
            },
            ..ExecutorSettings::default()
        }
    }

    /// An executor with `settings`.
    pub fn executor(&self, settings: ExecutorSettings) -> Executor {
        Executor::new(Arc::clone(&self.services), settings)
    }

    /// Runs what every node runs in the background, whatever its role, until
    /// `shutdown` turns true: following other nodes' provider changes.
    pub fn spawn_upkeep(
        &self,
        shutdown: &tokio::sync::watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let ops = &self.services.config.ops;
        vec![tokio::spawn(crate::upkeep::providers::follow(
            Arc::clone(&self.services),
            ops.registry_poll,
            shutdown.clone(),
        ))]
    }

    /// Runs the sync engine (job workers, the scheduler ticking every `tick`,
    /// the connections' upkeep, pruning and push delivery) until `shutdown`
    /// turns true.
    pub fn spawn_engine(
        &self,
        settings: ExecutorSettings,
        tick: std::time::Duration,
        shutdown: &tokio::sync::watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        tracing::info!(worker = %settings.worker_id, concurrency = settings.concurrency, "job workers started");
        let executor = Arc::new(self.executor(settings));
        vec![
            tokio::spawn(crate::upkeep::connections::run(
                Arc::clone(&self.services),
                shutdown.clone(),
            )),
            tokio::spawn(crate::upkeep::retention::run(
                Arc::clone(&self.services),
                shutdown.clone(),
            )),
            tokio::spawn(crate::push::deliver::run(
                Arc::clone(&self.services),
                shutdown.clone(),
            )),
            tokio::spawn(executor.run_workers(shutdown.clone())),
            tokio::spawn(scheduler::run(
                Arc::clone(&self.services),
                tick,
                shutdown.clone(),
            )),
        ]
    }
}

/// The key ring; a development key is generated (and announced loudly) only
/// outside production.
pub fn key_ring(config: &Config) -> Result<KeyRing, CryptoError> {
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
fn operator_tokens(config: &Config) -> Result<OperatorTokens, AppError> {
    if !config.operator_tokens.is_empty() {
        return Ok(OperatorTokens::new(&config.operator_tokens));
    }
    if config.production {
        return Err(AppError::NoOperatorToken);
    }
    let path = config.data_dir.join("dev-operator-token");
    let token = dev_token(&path)?;
    tracing::warn!(
        "POBLYSH_OPERATOR_TOKENS is not set: operator routes accept the DEVELOPMENT token in {}",
        path.display()
    );
    Ok(OperatorTokens::new(&[token]))
}

/// The development operator token in `path` (created 0600 when missing or
/// unusable; an existing one is made 0600 too: it is a credential).
fn dev_token(path: &Path) -> Result<String, AppError> {
    let failed = |e: std::io::Error| AppError::DevFile {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    if let Ok(text) = std::fs::read_to_string(path) {
        let token = text.trim().to_owned();
        if token.len() >= 16 {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .map_err(failed)?;
            }
            return Ok(token);
        }
        std::fs::remove_file(path).map_err(failed)?;
    }
    // An operator credential: always the OS's randomness, never a seeded one.
    let mut bytes = [0u8; 24];
    crate::domain::OsRandom.fill(&mut bytes);
    let token = format!("dev-{}", hex::encode(bytes));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    crate::crypto::write_private(path, &token).map_err(failed)?;
    Ok(token)
}
