//! The command line: one binary, one subcommand per job. Commands a later
//! issue owns say so in `--help` and fail clearly instead of pretending.

mod check;
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
    /// Dry-run a descriptor's mapping: print the Signals a payload yields.
    ///
    /// Signals go to stdout as JSON (tenant and connection ids are nil in a dry
    /// run); skipped items and their reasons go to stderr.
    Map(map::MapArgs),
    /// Run the REST API. Serves health and the provider catalogue today; storage,
    /// connections and the OpenAPI docs come with issue #4, the sync engine with #5,
    /// webhooks with #6.
    Serve(serve::ServeArgs),
    /// Print the OpenAPI document [not implemented yet: issue #4, REST API].
    Openapi,
    /// Apply or inspect database migrations [not implemented yet: issue #4, storage].
    Migrate {
        /// Arguments, accepted once the command exists.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    },
    /// Manage encryption keys [not implemented yet: issue #4, storage].
    Keys {
        /// Arguments, accepted once the command exists.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    },
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check { paths, format } => Ok(check::run(&paths, format)),
        Command::Schema { write, check, out } => schema::run(write, check, &out),
        Command::Map(args) => map::run(&args),
        Command::Serve(args) => serve::run(args),
        Command::Openapi => not_yet("openapi", "#4 (storage and the REST API)"),
        Command::Migrate { .. } => not_yet("migrate", "#4 (storage and the REST API)"),
        Command::Keys { .. } => not_yet("keys", "#4 (storage and the REST API)"),
    }
}

fn not_yet(command: &str, issue: &str) -> anyhow::Result<ExitCode> {
    eprintln!("error: `{command}` is not implemented yet; it comes with issue {issue}");
    Ok(ExitCode::from(2))
}
