//! `strata-operator`: `crd` prints the CRD, `run` runs the controller.
use clap::{Parser, Subcommand};

/// Strata operator.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the StorageService CustomResourceDefinition (YAML).
    Crd,
}

fn main() {
    match Cli::parse().command {
        Command::Crd => print!("{}", strata_operator::api::crd_yaml()),
    }
}
