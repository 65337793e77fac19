use clap::Parser;

use ragprobe::cli::{Cli, Command};
use ragprobe::commands;

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => commands::run::run(args),
        Command::Validate(args) => commands::validate::validate(args),
        Command::Diff(args) => commands::diff::diff(args),
        Command::Show(args) => commands::show::show(args),
        Command::Export(args) => commands::export::export(args),
        Command::Import(args) => commands::import::import(args),
        Command::Index(args) => commands::index::index(args),
        Command::Merge(args) => commands::merge::merge(args),
        Command::Plan(args) => commands::plan::plan(args),
        Command::Repro(args) => commands::repro::repro(args),
        Command::Triage(args) => commands::repro::triage(args),
        Command::Calibrate(args) => commands::calibrate::calibrate(args),
        Command::Init(args) => commands::init::init(args),
        Command::Completions(args) => commands::completions::completions(args),
    };
    let code = match result {
        Ok(outcome) => outcome.code(),
        Err(err) => {
            // An error may quote a server's reply, which may echo a credential.
            ragprobe::out::eprintln(&ragprobe::secrets::scrub(&err.report()));
            err.exit_code()
        }
    };
    std::process::exit(code);
}
