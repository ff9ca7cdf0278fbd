//! The `tokengate` binary: parses the command line and maps failures to exit codes.

use std::process::ExitCode;

use clap::Parser;
use tokengate_cli::cli::{self, Cli};

fn main() -> ExitCode {
    match cli::run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tokengate: error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
