//! `palisade`: the admin command (certificates, policy tooling, dev tokens).

mod policy;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use palisade_cli::{certs, token};

/// Palisade administration.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Development certificates for mutual TLS.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Policy tooling: validate and test a policy directory.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Mint a token from the DEVELOPMENT issuer (never for production).
    Token(token::TokenArgs),
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Create a development CA, a PDP certificate and agent/client certificates.
    Init(certs::InitArgs),
}

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Certs(CertsCommand::Init(args)) => certs::init(&args).map(|_| ()),
        Command::Token(args) => token::run(&args),
        Command::Policy(command) => return policy::run(&command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
