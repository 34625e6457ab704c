use std::{io, process::ExitCode};

use clap::Parser as _;
use tracer::{
    check,
    cli::{Cli, Invocation},
    daemon, replay, report, top,
};

/// A reader that closed our stdout (`tracer ... | head`) is a normal way to stop.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<io::Error>())
        .any(|io| io.kind() == io::ErrorKind::BrokenPipe)
}

fn main() -> ExitCode {
    let invocation = Cli::parse().resolve();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let config = match invocation {
        Invocation::Check { json, attach, cri } => {
            return match check::run(json, attach, &cri) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(error) => fail(&error),
            };
        }
        Invocation::Replay {
            file,
            pipeline,
            format,
        } => {
            return match replay::run(&file, pipeline, format) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
                Err(error) => fail(&error),
            };
        }
        Invocation::Report { file, output } => {
            return match report::run(&file, output.as_deref()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
                Err(error) => fail(&error),
            };
        }
        Invocation::Top(config) => {
            return match top::run(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => fail(&error),
            };
        }
        Invocation::TopReplay(file) => {
            return match top::replay(file) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => fail(&error),
            };
        }
        Invocation::Trace(config) => config,
    };
    match daemon::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

fn fail(error: &anyhow::Error) -> ExitCode {
    eprintln!("tracer: {error:#}");
    ExitCode::FAILURE
}
