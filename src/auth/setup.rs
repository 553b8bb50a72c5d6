//! The buyer verifier that `[auth]` describes: its HS256 secret, its JWKS sources loaded
//! once, and its claim rules.

use std::sync::Arc;

use super::{BuyerAuth, ClaimRules, Jwks, JwksError, JwksSource, JwtKeys};
use crate::config::AuthSettings;

/// The verifier of `settings` (validated), its JWKS loaded at `now_unix`.
pub async fn buyer_auth(settings: &AuthSettings, now_unix: i64) -> Result<BuyerAuth, JwksError> {
    let hs256 =
        (!settings.jwt_secret.is_empty()).then(|| JwtKeys::new(settings.jwt_secret.as_bytes()));
    let mut sources = Vec::new();
    if !settings.jwks_file.is_empty() {
        sources.push(JwksSource::file(&settings.jwks_file));
    }
    if !settings.jwks_url.is_empty() {
        sources.push(JwksSource::url(&settings.jwks_url)?);
    }
    let jwks = if sources.is_empty() {
        None
    } else {
        let min_early_s = i64::try_from(settings.jwks_min_refresh_s).unwrap_or(i64::MAX);
        Some(Arc::new(Jwks::load(sources, min_early_s, now_unix).await?))
    };
    Ok(BuyerAuth::new(hs256, jwks, claim_rules(settings)))
}

fn claim_rules(settings: &AuthSettings) -> ClaimRules {
    let set = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    ClaimRules {
        issuer: set(&settings.issuer),
        audience: set(&settings.audience),
        leeway_s: i64::try_from(settings.leeway_s).unwrap_or(i64::MAX),
    }
}
