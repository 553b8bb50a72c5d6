//! The command line: `flashgate serve` and `flashgate token`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::auth::JwtKeys;
use crate::clock::Clock;
use crate::config::{ConfigError, Settings};
use crate::domain::UserId;
use crate::startup::{Application, StartupError};

/// flashgate: a flash-sale gateway.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve {
        /// TOML configuration file (environment variables FLASHGATE_<SECTION>__<KEY> override it).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Mint a buyer JWT (HS256, signed with auth.jwt_secret) for manual tests.
    Token {
        /// The buyer's user id.
        #[arg(long)]
        user: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
        /// TOML configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error("invalid user id")]
    User(#[source] crate::domain::IdError),
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve { config } => {
            let settings = Settings::load(config.as_deref())?;
            Application::build(settings)
                .await?
                .run_until_stopped()
                .await?;
        }
        Command::Token { user, ttl, config } => {
            let settings = Settings::load(config.as_deref())?;
            let user = UserId::parse(&user).map_err(CliError::User)?;
            let exp = Clock::default().now().unix_timestamp() + ttl;
            println!(
                "{}",
                JwtKeys::new(settings.auth.jwt_secret.as_bytes()).mint(&user, exp)
            );
        }
    }
    Ok(())
}
