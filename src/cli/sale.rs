//! `flashgate sale list|pause|resume|end|topup|reshard`: an operator's actions on a running
//! gateway's sales, through its admin API, so that nobody needs curl. Prints the gateway's
//! JSON answer; a refusal is an error naming the problem.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::CliError;
use super::admin_client::AdminClient;
use crate::config::Settings;
use crate::domain::SaleId;

/// Where the gateway is and which admin credential to present.
#[derive(Debug, Args)]
pub struct SaleArgs {
    /// The gateway's base URL (plain http).
    #[arg(
        long,
        env = "FLASHGATE_GATEWAY",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub gateway: String,
    /// The admin token to present (default: the config file's admin.token).
    #[arg(
        long,
        env = "FLASHGATE_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub admin_token: Option<String>,
    /// TOML configuration file to take admin.token from when no token is given.
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub action: SaleAction,
}

/// What to do to the gateway's sales.
#[derive(Debug, Subcommand)]
pub enum SaleAction {
    /// List every sale: state, stock total, remaining units, shards.
    List,
    /// Pause a sale: every instance answers its purchases 409 sale-paused.
    Pause { sale: String },
    /// Resume a paused sale.
    Resume { sale: String },
    /// End a sale now.
    End { sale: String },
    /// Add units to a sale's stock, spread over its shards.
    Topup {
        sale: String,
        /// Units to add; a negative number removes up to that many unsold units.
        #[arg(long, allow_negative_numbers = true)]
        add: i64,
    },
    /// Split a sale's stock over a new number of shards, live.
    Reshard {
        sale: String,
        /// The new number of shards.
        #[arg(long)]
        shards: u32,
    },
}

/// Runs `args` against the gateway and prints its answer.
pub async fn run(args: SaleArgs) -> Result<(), CliError> {
    let token = admin_token(args.admin_token, args.config.as_deref())?;
    let client = AdminClient::new(&args.gateway, token)?;
    let path = |sale: &str, verb: &str| -> Result<String, CliError> {
        let sale = SaleId::parse(sale).map_err(CliError::Id)?;
        Ok(format!("/admin/v1/sales/{sale}/{verb}"))
    };
    let answer = match args.action {
        SaleAction::List => client.get("/admin/v1/sales").await?,
        SaleAction::Pause { sale } => client.post(&path(&sale, "pause")?, None).await?,
        SaleAction::Resume { sale } => client.post(&path(&sale, "resume")?, None).await?,
        SaleAction::End { sale } => client.post(&path(&sale, "end")?, None).await?,
        SaleAction::Topup { sale, add } => {
            let body = json!({ "add": add });
            client.post(&path(&sale, "stock")?, Some(body)).await?
        }
        SaleAction::Reshard { sale, shards } => {
            let body = json!({ "shards": shards });
            client.post(&path(&sale, "reshard")?, Some(body)).await?
        }
    };
    println!("{}", pretty(&answer));
    Ok(())
}

/// The token given, else the configuration file's `admin.token`.
fn admin_token(
    given: Option<String>,
    config: Option<&std::path::Path>,
) -> Result<String, CliError> {
    if let Some(token) = given.filter(|t| !t.is_empty()) {
        return Ok(token);
    }
    let Some(config) = config else {
        return Err(CliError::NoAdminToken);
    };
    let token = Settings::load(Some(config))?.admin.token;
    if token.is_empty() {
        return Err(CliError::NoAdminToken);
    }
    Ok(token)
}

fn pretty(answer: &Value) -> String {
    serde_json::to_string_pretty(answer).unwrap_or_else(|_| answer.to_string())
}
