//! `palisade policy validate|test DIR`: policy tooling for CI.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;
use palisade_pdp::cases;
use palisade_pdp::policy::{PolicyProblem, load_dir};

/// Policy tooling.
#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Parse the schema, policies and targets of DIR and validate them strictly.
    Validate {
        /// The policy directory.
        dir: PathBuf,
    },
    /// Run the cases of DIR/tests.toml against the policies of DIR.
    Test {
        /// The policy directory.
        dir: PathBuf,
    },
}

fn print_problems(problems: &[PolicyProblem]) {
    for p in problems {
        eprintln!("error: {p}");
    }
}

/// Runs a policy command; the exit code tells CI whether it passed.
pub fn run(command: &PolicyCommand) -> ExitCode {
    match command {
        PolicyCommand::Validate { dir } => match load_dir(dir) {
            Ok(snapshot) => {
                println!(
                    "{}: {} policies in {} files, version {}: valid",
                    dir.display(),
                    snapshot.policy_ids().len(),
                    snapshot.files.len(),
                    snapshot.version
                );
                ExitCode::SUCCESS
            }
            Err(problems) => {
                print_problems(&problems);
                eprintln!("{} problem(s) in {}", problems.len(), dir.display());
                ExitCode::FAILURE
            }
        },
        PolicyCommand::Test { dir } => {
            let snapshot = match load_dir(dir) {
                Ok(s) => Arc::new(s),
                Err(problems) => {
                    print_problems(&problems);
                    return ExitCode::FAILURE;
                }
            };
            let results = match cases::run(dir, &snapshot) {
                Ok(r) => r,
                Err(problems) => {
                    print_problems(&problems);
                    return ExitCode::FAILURE;
                }
            };
            let failed = results.iter().filter(|r| !r.passed).count();
            for r in &results {
                let mark = if r.passed { "ok  " } else { "FAIL" };
                println!(
                    "{mark} {}:{} {} — {}",
                    cases::CASES_FILE,
                    r.line,
                    r.name,
                    r.detail
                );
            }
            println!(
                "{} cases, {} passed, {failed} failed",
                results.len(),
                results.len() - failed
            );
            if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
