//! Mints buyer JWTs for load tests: one token per line, for the distinct users
//! `bench-0`, `bench-1`, … so every request of a benchmark can be a different buyer.
//! Tokens expire a day after minting.
//!
//! Usage: `cargo run --release --example mint_tokens -- SECRET COUNT OUT_FILE`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::process::ExitCode;

use flashgate::auth::JwtKeys;
use flashgate::clock::Clock;
use flashgate::domain::{IdError, UserId};

/// Lifetime of the minted tokens, in seconds.
const TTL_SECS: i64 = 24 * 3600;

/// Why minting failed.
#[derive(Debug, thiserror::Error)]
enum MintError {
    #[error("cannot write the token file")]
    Io(#[from] std::io::Error),
    #[error("invalid user id")]
    User(#[from] IdError),
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [secret, count, out] = args.as_slice() else {
        eprintln!("usage: mint_tokens SECRET COUNT OUT_FILE");
        return ExitCode::from(2);
    };
    let Ok(count) = count.parse::<u64>() else {
        eprintln!("mint_tokens: COUNT must be a non-negative integer");
        return ExitCode::from(2);
    };
    match mint(secret.as_bytes(), count, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let cause = std::error::Error::source(&error).map(ToString::to_string);
            eprintln!("mint_tokens: {error}: {}", cause.unwrap_or_default());
            ExitCode::FAILURE
        }
    }
}

/// Writes `count` tokens signed with `secret` to `out`.
fn mint(secret: &[u8], count: u64, out: &str) -> Result<(), MintError> {
    let keys = JwtKeys::new(secret);
    let exp = Clock::default().now().unix_timestamp() + TTL_SECS;
    let mut file = BufWriter::with_capacity(1 << 20, File::create(out)?);
    for i in 0..count {
        let user = UserId::parse(&format!("bench-{i}"))?;
        writeln!(file, "{}", keys.mint(&user, exp))?;
    }
    file.flush()?;
    Ok(())
}
