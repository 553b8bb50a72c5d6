//! Micro-benchmarks of the per-request work at the edge: what every purchase pays before it
//! reaches Redis. Targets: token verification and the proof-of-work check each
//! under 5 µs (HS256 buyer tokens; RS256 and ES256 cost what their public-key check costs). Run: `cargo bench --bench edge` (figures in docs/BENCHMARKS.md).

use std::hint::black_box;
use std::sync::Arc;

use axum::response::IntoResponse;
use criterion::{Criterion, criterion_group, criterion_main};
use flashgate::testing::auth::{BuyerAuth, ClaimRules, Jwks, JwtKeys, KeySet};
use flashgate::testing::domain::{SaleId, ShardSet, UserId};
use flashgate::testing::http::ApiError;
use flashgate::testing::tokens::{Audience, TokenSigner, pow};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

fn tokens(c: &mut Criterion) {
    let signer = TokenSigner::derived_from(b"bench-secret-0123456789abcdef");
    let sale = SaleId::parse("flash-2026").unwrap();
    let user = UserId::parse("buyer-000123456").unwrap();
    let to = Audience {
        sale: &sale,
        user: &user,
    };
    let (_, token) = signer.issue_token(to, 3, i64::MAX);
    let (_, challenge) = signer.issue_challenge(to, 16, i64::MAX);
    let nonce = pow::solve(&challenge, 16);

    c.bench_function("purchase token: verify", |b| {
        b.iter(|| signer.verify_token(black_box(&token), to, 3, 0).unwrap())
    });
    c.bench_function("purchase token: verify a forgery", |b| {
        // Another valid base64url character: the forgery decodes and fails the tag check.
        let mut forged = token.clone().into_bytes();
        forged[20] = if forged[20] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        b.iter(|| {
            signer
                .verify_token(black_box(&forged), to, 3, 0)
                .unwrap_err()
        })
    });
    c.bench_function("purchase token: issue", |b| {
        b.iter(|| signer.issue_token(black_box(to), 3, i64::MAX))
    });
    c.bench_function("challenge: verify", |b| {
        b.iter(|| {
            signer
                .verify_challenge(black_box(&challenge), to, 0)
                .unwrap()
        })
    });
    c.bench_function("proof of work: check (difficulty 16)", |b| {
        b.iter(|| pow::check(black_box(&challenge), black_box(&nonce), 16).unwrap())
    });
}

/// Buyer token checks, one per way a login service may sign: HS256 (the shared secret, the
/// fast path), RS256 and ES256 (keys from a JWKS). `cargo bench --bench edge -- jwt`.
fn buyer_jwt(c: &mut Criterion) {
    let secret = b"bench-secret-0123456789abcdef";
    let user = UserId::parse("buyer-000123456").unwrap();
    let hs256 = JwtKeys::new(secret).mint(&user, i64::MAX / 2);
    let (rsa, ec) = (
        login_key("rsa-a", Algorithm::RS256),
        login_key("ec-a", Algorithm::ES256),
    );
    let jwks = JwkSet {
        keys: vec![
            jwk(&rsa, "rsa-a", Algorithm::RS256),
            jwk(&ec, "ec-a", Algorithm::ES256),
        ],
    };
    let keys = KeySet::parse(serde_json::to_string(&jwks).unwrap().as_bytes()).unwrap();
    let jwks = Some(Arc::new(Jwks::fixed(keys)));
    let auth = BuyerAuth::new(Some(JwtKeys::new(secret)), jwks, ClaimRules::default());
    let claims = serde_json::json!({ "sub": "buyer-000123456", "exp": i64::MAX / 2 });
    let signed = |key: &EncodingKey, kid: &str, alg| {
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    };
    let rs256 = signed(&rsa, "rsa-a", Algorithm::RS256);
    let es256 = signed(&ec, "ec-a", Algorithm::ES256);
    let mut group = c.benchmark_group("buyer jwt");
    for (name, token) in [
        ("verify HS256", &hs256),
        ("verify RS256", &rs256),
        ("verify ES256", &es256),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| auth.verify(black_box(token), 0).unwrap())
        });
    }
    group.finish();
}

/// A fixed test key of the "login service" (tests/fixtures/jwt/).
fn login_key(name: &str, alg: Algorithm) -> EncodingKey {
    let pem = std::fs::read(format!(
        "{}/tests/fixtures/jwt/{name}.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
        _ => EncodingKey::from_ec_pem(&pem).unwrap(),
    }
}

fn jwk(key: &EncodingKey, kid: &str, alg: Algorithm) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk
}

fn request_path(c: &mut Criterion) {
    let user = UserId::parse("buyer-000123456").unwrap();
    c.bench_function("home shard of a buyer (64 shards)", |b| {
        let shards = ShardSet::contiguous(0, 64).unwrap();
        b.iter(|| black_box(&shards).home_of(black_box(&user)))
    });
    c.bench_function("sold-out problem response", |b| {
        b.iter(|| ApiError::SoldOut.into_response())
    });
}

criterion_group!(benches, tokens, buyer_jwt, request_path);
criterion_main!(benches);
