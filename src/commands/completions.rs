//! `ragprobe completions SHELL`: the completion script clap derives from the command
//! line definitions, so it never falls out of step with them.

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::error::AppError;
use crate::exit_codes::Outcome;

pub fn completions(args: CompletionsArgs) -> Result<Outcome, AppError> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "ragprobe", &mut script);
    crate::out::print_data(String::from_utf8_lossy(&script).trim_end());
    Ok(Outcome::Ok)
}
