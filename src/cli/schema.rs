//! `schema`: print, write or verify the descriptor JSON Schema.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::descriptor::schema::generate_pretty;

/// Prints the schema, writes it to `out`, or checks `out` is current.
pub fn run(write: bool, check: bool, out: &Path) -> anyhow::Result<ExitCode> {
    let schema = generate_pretty();
    if check {
        let committed = std::fs::read_to_string(out)
            .with_context(|| format!("cannot read {}", out.display()))?;
        if committed == schema {
            println!("{} is up to date", out.display());
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!(
            "{} is stale: run `poblysh-connectors schema --write`",
            out.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    if write {
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(out, &schema).with_context(|| format!("cannot write {}", out.display()))?;
        println!("wrote {}", out.display());
    } else {
        print!("{schema}");
    }
    Ok(ExitCode::SUCCESS)
}
