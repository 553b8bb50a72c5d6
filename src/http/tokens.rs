//! The anti-bot steps before a purchase: `POST .../challenge` hands out a signed proof-of-work
//! puzzle, `POST .../tokens` exchanges its answer for a single-use purchase token. Both are
//! open only while the sale is live, and both count against the buyer's issuance limit
//! (`limits.issue`, checked before any body is read).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{ApiJson, IssuingBuyer, SalePath};
use super::state::AppState;
use crate::clock::{from_unix_ms, unix_ms};
use crate::domain::{SaleId, Window};
use crate::stock::SaleRuntime;
use crate::store::tokens::{self as store, Issue, IssueCall};
use crate::tokens::{Audience, CLOCK_SKEW_MARGIN_MS, InvalidToken, pow};

/// A challenge as the buyer receives it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChallengeView {
    /// The puzzle: find a decimal `nonce` such that `sha256(challenge + ":" + nonce)` has at
    /// least `difficulty` leading zero bits (`docs/pow.js` does it in a browser).
    challenge: String,
    /// Leading zero bits required; 0 accepts any nonce.
    difficulty: u8,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

/// The answer to a challenge.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The challenge, as received.
    challenge: String,
    /// The solution: 1..=20 decimal digits.
    #[schema(pattern = "^[0-9]{1,20}$", examples("4711"))]
    nonce: String,
}

/// A purchase token as the buyer receives it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    purchase_token: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

/// The sale, if it exists, is live and not known to be sold out. (Unlike a purchase, no
/// buyer is let through a sold-out sale here: a buyer retrying an accepted purchase resends
/// its original request, token included, and needs no new token.)
async fn live_sale(
    state: &AppState,
    sale_id: &SaleId,
    now: OffsetDateTime,
) -> Result<Arc<SaleRuntime>, ApiError> {
    let rt = state
        .sales
        .get(sale_id)
        .await?
        .ok_or(ApiError::NotFound("no such sale"))?;
    match rt.sale.spec.window(now) {
        Window::Before => {
            let starts_at = rt.sale.spec.starts_at();
            return Err(ApiError::SaleNotStarted { starts_at });
        }
        Window::After => return Err(ApiError::SaleEnded),
        Window::Open if rt.paused => return Err(ApiError::SalePaused),
        Window::Open => {}
    }
    if rt.is_sold_out() {
        return Err(ApiError::SoldOut);
    }
    Ok(rt)
}

/// `POST /api/v1/sales/{sale_id}/challenge`: a puzzle at the sale's difficulty.
#[utoipa::path(
    post,
    path = "/api/v1/sales/{sale_id}/challenge",
    tag = "buyer",
    summary = "A proof-of-work challenge, while the sale is live",
    params(("sale_id" = SaleId, Path, description = "The sale")),
    responses((status = 200, description = "The challenge", body = ChallengeView)),
    security(("buyer_jwt" = [])),
)]
pub async fn challenge(
    State(state): State<AppState>,
    IssuingBuyer(user): IssuingBuyer,
    SalePath(sale_id): SalePath,
) -> Result<Json<ChallengeView>, ApiError> {
    let now = state.clock.now();
    let rt = live_sale(&state, &sale_id, now).await?;
    let now_ms = unix_ms(now);
    let expires_ms = now_ms.saturating_add_unsigned(state.settings.tokens.challenge_ttl_ms);
    let difficulty = rt.sale.spec.pow_difficulty();
    let to = Audience {
        sale: &sale_id,
        user: &user,
    };
    let (_, challenge) = state.tokens.issue_challenge(to, difficulty, expires_ms);
    Ok(Json(ChallengeView {
        challenge,
        difficulty,
        expires_at: from_unix_ms(expires_ms),
    }))
}

/// `POST /api/v1/sales/{sale_id}/tokens`: a purchase token for a solved challenge, once.
#[utoipa::path(
    post,
    path = "/api/v1/sales/{sale_id}/tokens",
    tag = "buyer",
    summary = "Exchange a solved challenge for a single-use purchase token",
    params(("sale_id" = SaleId, Path, description = "The sale")),
    request_body = TokenRequest,
    responses((status = 201, description = "The purchase token", body = TokenView)),
    security(("buyer_jwt" = [])),
)]
pub async fn issue_token(
    State(state): State<AppState>,
    IssuingBuyer(user): IssuingBuyer,
    SalePath(sale_id): SalePath,
    ApiJson(body): ApiJson<TokenRequest>,
) -> Result<(StatusCode, Json<TokenView>), ApiError> {
    let now = state.clock.now();
    let rt = live_sale(&state, &sale_id, now).await?;
    let settings = &state.settings.tokens;
    let now_ms = unix_ms(now);
    let to = Audience {
        sale: &sale_id,
        user: &user,
    };
    let challenge = state
        .tokens
        .verify_challenge(&body.challenge, to, now_ms)
        .map_err(InvalidToken::from)?;
    pow::check(&body.challenge, &body.nonce, challenge.difficulty).map_err(InvalidToken::from)?;
    let expires_ms = now_ms.saturating_add_unsigned(settings.token_ttl_ms);
    let (token, text) = state.tokens.issue_token(to, rt.generation, expires_ms);
    let call = IssueCall {
        sale: &sale_id,
        challenge: &challenge,
        token: &token,
        now_ms,
        cap: issue_cap(settings.issue_cap_per_unit, rt.remaining()),
        margin_ms: CLOCK_SKEW_MARGIN_MS,
    };
    match store::issue(&mut state.redis.conn(), state.redis.keys(), &call).await? {
        Issue::Issued => Ok((
            StatusCode::CREATED,
            Json(TokenView {
                purchase_token: text,
                expires_at: from_unix_ms(expires_ms),
            }),
        )),
        Issue::ChallengeUsed => Err(ApiError::TokenUsed(
            "this challenge was already exchanged for a purchase token; ask for a new one",
        )),
        Issue::Capped { .. } => Err(ApiError::Overloaded(
            "as many purchase tokens as the remaining stock warrants are out; retry shortly",
        )),
    }
}

/// Most unexpired tokens for a sale with `remaining` units: `per_unit` of them per unit,
/// at least one while anything may remain; 0 (no cap) when `per_unit` is 0.
fn issue_cap(per_unit: f64, remaining: u64) -> u64 {
    if per_unit <= 0.0 {
        return 0;
    }
    ((per_unit * remaining as f64).ceil() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_scales_with_remaining_stock() {
        assert_eq!(issue_cap(0.0, 100), 0, "off");
        assert_eq!(issue_cap(2.0, 100), 200);
        assert_eq!(issue_cap(1.5, 3), 5);
        assert_eq!(
            issue_cap(2.0, 0),
            1,
            "at least one while the sale is not known sold out"
        );
    }
}
