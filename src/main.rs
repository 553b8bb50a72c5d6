//! The `flashgate` binary: parse the command line, run.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use flashgate::Cli;

// mimalloc: the gateway allocates and frees many small, short-lived buffers per request
// across threads, where glibc's allocator spent about a fifth of the gateway's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // Logging starts once the configuration is read: `log.format` chooses its shape.
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
