//! `palisade`: the admin command (certificates, policy tooling, dev tokens).

mod approvals;
mod policy;
mod remote;
mod sessions;

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
    /// Recorded sessions.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Show a recorded session as a timeline.
    Replay(sessions::ReplayArgs),
    /// The audit trail's integrity.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Statements held for review: list, show, approve, deny (with your own token).
    #[command(subcommand)]
    Approvals(approvals::ApprovalsCommand),
}

#[derive(Subcommand)]
enum SessionsCommand {
    /// List recorded sessions, newest first.
    List(sessions::ListArgs),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chains; names the first broken event.
    Verify(sessions::VerifyArgs),
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Create a development CA, a PDP certificate and agent/client certificates.
    Init(certs::InitArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Certs(CertsCommand::Init(args)) => certs::init(&args).map(|_| ()),
        Command::Token(args) => token::run(&args),
        Command::Policy(command) => return policy::run(&command),
        Command::Sessions(SessionsCommand::List(args)) => sessions::list(&args).await,
        Command::Replay(args) => sessions::replay(&args).await,
        Command::Approvals(command) => approvals::run(&command).await,
        Command::Audit(AuditCommand::Verify(args)) => match sessions::verify(&args).await {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(2),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
