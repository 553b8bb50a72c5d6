//! Micro-benchmarks of the per-request work at the edge: what every purchase pays before it
//! reaches Redis. Targets: token verification and the proof-of-work check each
//! under 5 µs. Run: `cargo bench --bench edge` (figures in docs/BENCHMARKS.md).

use std::hint::black_box;

use axum::response::IntoResponse;
use criterion::{Criterion, criterion_group, criterion_main};
use flashgate::testing::auth::JwtKeys;
use flashgate::testing::domain::{SaleId, ShardRange, UserId};
use flashgate::testing::http::ApiError;
use flashgate::testing::tokens::{Audience, TokenSigner, pow};

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

fn request_path(c: &mut Criterion) {
    let jwt = JwtKeys::new(b"bench-secret-0123456789abcdef");
    let user = UserId::parse("buyer-000123456").unwrap();
    let bearer = jwt.mint(&user, i64::MAX / 2);
    c.bench_function("buyer JWT: verify", |b| {
        b.iter(|| jwt.verify(black_box(&bearer), 0).unwrap())
    });
    c.bench_function("home shard of a buyer (64 shards)", |b| {
        let range = ShardRange::new(0, 64).unwrap();
        b.iter(|| black_box(range).home_of(black_box(&user)))
    });
    c.bench_function("sold-out problem response", |b| {
        b.iter(|| ApiError::SoldOut.into_response())
    });
}

criterion_group!(benches, tokens, request_path);
criterion_main!(benches);
