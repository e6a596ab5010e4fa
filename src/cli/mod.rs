//! The command line: one binary, one subcommand per job. This is glue: it
//! reads the environment, builds what the library needs and reports with
//! `anyhow`.

mod admin;
mod check;
mod docs;
mod map;
mod schema;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Poblysh Connectors: turns activity in SaaS tools into normalized Signals.
#[derive(Debug, Parser)]
#[command(name = "poblysh-connectors", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output format of `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// `file:line:col: path: message` lines and a summary.
    Text,
    /// One JSON document with every diagnostic.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate descriptor files (JSON Schema, then every semantic check).
    ///
    /// Prints one line per problem, `file:line:col: field.path: message`, then a
    /// summary. Exits 0 when every descriptor is valid, 1 otherwise.
    Check {
        /// Descriptor files or directories (searched for .yaml, .yml, .json).
        #[arg(default_value = "descriptors/")]
        paths: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// Print the descriptor JSON Schema, or write/verify the committed copy.
    Schema {
        /// Write the schema to `--out` instead of printing it.
        #[arg(long, conflicts_with = "check")]
        write: bool,
        /// Exit 1 if the file at `--out` differs from the generated schema.
        #[arg(long)]
        check: bool,
        /// Where the committed schema lives.
        #[arg(long, default_value = crate::descriptor::schema::SCHEMA_PATH)]
        out: PathBuf,
    },
    /// Write or verify the per-provider pages (`docs/providers/<id>.md`),
    /// generated from the descriptors and their golden fixtures.
    Docs {
        /// Exit 1 if a page is stale (or has no descriptor) instead of writing.
        #[arg(long, conflicts_with = "write")]
        check: bool,
        /// Write the pages (the default; kept for symmetry with `schema`).
        #[arg(long)]
        write: bool,
        /// The descriptors.
        #[arg(long, default_value = "descriptors/")]
        descriptors: PathBuf,
        /// The golden fixtures (examples).
        #[arg(long, default_value = "fixtures/")]
        fixtures: PathBuf,
        /// Where the pages go.
        #[arg(long, default_value = crate::descriptor::docs::DOCS_DIR)]
        out: PathBuf,
    },
    /// Dry-run a descriptor's mapping: print the Signals a payload yields.
    ///
    /// Signals go to stdout as JSON (tenant and connection ids are nil in a dry
    /// run); skipped items and their reasons go to stderr.
    Map(map::MapArgs),
    /// Run the service: the REST API (Swagger UI at /docs, webhooks at
    /// /webhooks/{provider}) and the sync engine (scheduler and job workers).
    Serve(serve::ServeArgs),
    /// Print the OpenAPI document.
    Openapi,
    /// Apply, revert or list database migrations (`DATABASE_URL`).
    Migrate {
        /// What to do.
        #[command(subcommand)]
        command: admin::MigrateCommand,
    },
    /// Manage the encryption keys of stored secrets.
    Keys {
        /// What to do.
        #[command(subcommand)]
        command: admin::KeysCommand,
    },
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check { paths, format } => Ok(check::run(&paths, format)),
        Command::Schema { write, check, out } => schema::run(write, check, &out),
        Command::Docs {
            check,
            write: _,
            descriptors,
            fixtures,
            out,
        } => docs::run(check, &descriptors, &fixtures, &out),
        Command::Map(args) => map::run(&args),
        Command::Serve(args) => serve::run(args),
        Command::Openapi => admin::openapi(),
        Command::Migrate { command } => admin::migrate(&command),
        Command::Keys { command } => admin::keys(&command),
    }
}

/// Logs to stderr; `POBLYSH_LOG_FORMAT=json` for JSON lines, `RUST_LOG` filters.
pub(crate) fn init_tracing() {
    // `.env` first: it may set RUST_LOG and POBLYSH_LOG_FORMAT.
    let _ = dotenvy::dotenv();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = std::env::var("POBLYSH_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
