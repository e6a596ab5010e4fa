//! `map`: dry-run a descriptor's mapping over a payload and print the Signals.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::descriptor::load::load_file;
use crate::domain::{ConnectionId, TenantId};
use crate::engine::mapping::{MapContext, PayloadInput, PayloadKind, map_payload};

/// How to read the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputAs {
    /// A polled response page.
    Page,
    /// A webhook body.
    Webhook,
}

/// Options of `map`.
#[derive(Debug, Args)]
pub struct MapArgs {
    /// The descriptor file.
    #[arg(long)]
    pub descriptor: PathBuf,
    /// The payload (JSON), or `-` for standard input.
    #[arg(long)]
    pub input: PathBuf,
    /// The webhook event type (otherwise read from the headers or the body).
    #[arg(long)]
    pub event: Option<String>,
    /// A JSON object of request headers (webhooks).
    #[arg(long)]
    pub headers: Option<PathBuf>,
    /// Read the input as a page or a webhook (default: a webhook when `--event` or
    /// `--headers` is given or the connector does not poll, else a page).
    #[arg(long = "as", value_enum)]
    pub input_as: Option<InputAs>,
}

/// Runs `map`: Signals as pretty JSON on stdout, skipped items on stderr.
pub fn run(args: &MapArgs) -> anyhow::Result<ExitCode> {
    let descriptor = match load_file(&args.descriptor) {
        Ok(d) => d,
        Err(diagnostics) => {
            for d in &diagnostics {
                eprintln!("{d}");
            }
            eprintln!(
                "error: {} is not a valid descriptor",
                args.descriptor.display()
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let body = match read_json(&args.input) {
        Ok(v) => v,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let headers = match &args.headers {
        None => HeaderMap::new(),
        Some(path) => match read_json(path).and_then(|v| header_map(path, &v)) {
            Ok(h) => h,
            Err(message) => {
                eprintln!("error: {message}");
                return Ok(ExitCode::FAILURE);
            }
        },
    };
    let ctx = MapContext {
        tenant_id: TenantId::nil(),
        connection_id: ConnectionId::nil(),
        received_at: crate::domain::Ambient::system().now(),
    };
    let input = PayloadInput {
        body: &body,
        headers: &headers,
        event: args.event.as_deref(),
        kind: args.input_as.map(|a| match a {
            InputAs::Page => PayloadKind::Page,
            InputAs::Webhook => PayloadKind::Webhook,
        }),
    };
    let out = match map_payload(&descriptor, input, &ctx) {
        Ok(out) => out,
        Err(e) => {
            eprintln!("error: {e} (pass --event TYPE, or --headers FILE with the event header)");
            return Ok(ExitCode::FAILURE);
        }
    };
    if !out.handled {
        eprintln!(
            "event `{}` is not in the descriptor's eventTypes: it would be acknowledged and dropped",
            out.event.as_deref().unwrap_or_default()
        );
    }
    for skipped in &out.mapped.skipped {
        match &skipped.id {
            Some(id) => eprintln!(
                "skipped item {} (id {id}): {}",
                skipped.index, skipped.reason
            ),
            None => eprintln!("skipped item {}: {}", skipped.index, skipped.reason),
        }
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&out.mapped.signals).context("cannot print the signals")?
    );
    eprintln!(
        "{} signal(s), {} skipped",
        out.mapped.signals.len(),
        out.mapped.skipped.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn read_json(path: &Path) -> Result<Value, String> {
    let label = path.display().to_string();
    let bytes = if label == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        buf
    } else {
        std::fs::read(path).map_err(|e| format!("cannot read {label}: {e}"))?
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "{label}:{}:{}: invalid JSON: {}",
            e.line(),
            e.column(),
            e.to_string()
                .rsplit_once(" at line ")
                .map_or(e.to_string(), |(m, _)| m.to_owned())
        )
    })
}

fn header_map(path: &Path, value: &Value) -> Result<HeaderMap, String> {
    let object = value.as_object().ok_or_else(|| {
        format!(
            "{}: headers must be a JSON object of name → value",
            path.display()
        )
    })?;
    let mut headers = HeaderMap::new();
    for (name, v) in object {
        let text = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{}: `{name}` is not a valid header name", path.display()))?;
        let value = HeaderValue::from_str(&text).map_err(|_| {
            format!(
                "{}: the value of `{name}` is not a valid header value",
                path.display()
            )
        })?;
        headers.insert(name, value);
    }
    Ok(headers)
}
