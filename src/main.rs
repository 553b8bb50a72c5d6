//! The `flashgate` binary: parse the command line, set up logging, run.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use flashgate::Cli;
use tracing_subscriber::EnvFilter;

// mimalloc: the gateway allocates and frees many small, short-lived buffers per request
// across threads, where glibc's allocator spent about a fifth of the gateway's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match flashgate::run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let mut message = format!("error: {error}");
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                message.push_str(&format!("\n  caused by: {cause}"));
                source = cause.source();
            }
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}
