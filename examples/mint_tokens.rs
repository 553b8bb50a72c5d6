//! Mints buyer JWTs for load tests: one token per line, for the distinct users
//! `bench-0`, `bench-1`, … so every request of a benchmark can be a different buyer.
//! Tokens expire a day after minting.
//!
//! With SALE and GENERATION, each line also carries, after a space, a purchase token for that
//! buyer and sale under that generation of the sale's definition (the record's `generation`
//! field), signed with the key the gateway derives from the
//! same secret (as if the buyer had gone through challenge and tokens).
//!
//! Usage: `cargo run --release --example mint_tokens -- SECRET COUNT OUT_FILE [SALE GENERATION]`.
//! The environment variable `MINT_USER_PREFIX` replaces the `bench-` of the user ids.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::process::ExitCode;

use flashgate::testing::auth::JwtKeys;
use flashgate::testing::clock::Clock;
use flashgate::testing::domain::{IdError, SaleId, UserId};
use flashgate::testing::tokens::{Audience, TokenSigner};

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
    let usage = || {
        eprintln!("usage: mint_tokens SECRET COUNT OUT_FILE [SALE GENERATION]");
        ExitCode::from(2)
    };
    let (secret, count, out, purchase) = match args.as_slice() {
        [secret, count, out] => (secret, count, out, None),
        [secret, count, out, sale, generation] => {
            let (Ok(sale), Ok(generation)) = (SaleId::parse(sale), generation.parse::<u64>())
            else {
                return usage();
            };
            (secret, count, out, Some((sale, generation)))
        }
        _ => return usage(),
    };
    let Ok(count) = count.parse::<u64>() else {
        eprintln!("mint_tokens: COUNT must be a non-negative integer");
        return ExitCode::from(2);
    };
    match mint(secret.as_bytes(), count, out, purchase.as_ref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let cause = std::error::Error::source(&error).map(ToString::to_string);
            eprintln!("mint_tokens: {error}: {}", cause.unwrap_or_default());
            ExitCode::FAILURE
        }
    }
}

/// Writes `count` tokens signed with `secret` to `out` (with purchase tokens for `sale` at
/// its generation, if given).
fn mint(
    secret: &[u8],
    count: u64,
    out: &str,
    purchase: Option<&(SaleId, u64)>,
) -> Result<(), MintError> {
    let keys = JwtKeys::new(secret);
    let signer = TokenSigner::derived_from(secret);
    let prefix = std::env::var("MINT_USER_PREFIX").unwrap_or_else(|_| "bench-".to_owned());
    let exp = Clock::default().now().unix_timestamp() + TTL_SECS;
    let mut file = BufWriter::with_capacity(1 << 20, File::create(out)?);
    for i in 0..count {
        let user = UserId::parse(&format!("{prefix}{i}"))?;
        let jwt = keys.mint(&user, exp);
        match purchase {
            None => writeln!(file, "{jwt}")?,
            Some((sale, generation)) => {
                let to = Audience { sale, user: &user };
                let (_, token) = signer.issue_token(to, *generation, exp * 1000);
                writeln!(file, "{jwt} {token}")?;
            }
        }
    }
    file.flush()?;
    Ok(())
}
