//! `salve`: one binary, one subcommand per component.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "salve",
    version,
    about = "Heals infrastructure: alerts in, verified remediations out."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions (or write/check them in a directory).
    Crd {
        /// Write one file per CRD into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
        /// With --out-dir: fail if the files there differ from what the types generate.
        #[arg(long, requires = "out_dir")]
        check: bool,
    },
    /// Run the operator: the Incident and PlaybookCatalog controllers.
    Operator(Box<salve_operator::OperatorArgs>),
    /// Run the Alertmanager webhook shim: every alert becomes exactly one Incident.
    Webhook(Box<salve_webhook::Config>),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd { out_dir, check } => crd(out_dir, check),
        Command::Operator(args) => operator(*args),
        Command::Webhook(config) => webhook(*config),
    }
}

fn operator(args: salve_operator::OperatorArgs) -> anyhow::Result<()> {
    init_logging();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(salve_operator::run(args))?;
    Ok(())
}

/// JSON logs to stderr; `RUST_LOG` filters (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn webhook(config: salve_webhook::Config) -> anyhow::Result<()> {
    salve_webhook::logging::init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(salve_webhook::run(config))?;
    Ok(())
}

fn crd(out_dir: Option<PathBuf>, check: bool) -> anyhow::Result<()> {
    let Some(dir) = out_dir else {
        for crd in salve_api::crds() {
            print!("---\n{}", salve_api::crd_yaml(&crd)?);
        }
        return Ok(());
    };
    let mut drift = Vec::new();
    for crd in salve_api::crds() {
        let name = crd
            .metadata
            .name
            .clone()
            .context("generated CRD has no name")?;
        let path = dir.join(format!("{name}.yaml"));
        let want = salve_api::crd_yaml(&crd)?;
        if check {
            let have = std::fs::read_to_string(&path).unwrap_or_default();
            if have != want {
                drift.push(path.display().to_string());
            }
        } else {
            std::fs::create_dir_all(&dir)?;
            std::fs::write(&path, want).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    if !drift.is_empty() {
        bail!(
            "CRDs out of date: {} (run `make generate`)",
            drift.join(", ")
        );
    }
    Ok(())
}
