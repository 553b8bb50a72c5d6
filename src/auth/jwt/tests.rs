//! The dispatcher's checks: each algorithm, each claim rule, alg confusion, unknown keys.

use serde_json::json;

use super::*;
use crate::auth::test_keys::{SigningKey, fixture, key_set};

const NOW: i64 = 1_800_000_000;
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn rsa_a() -> SigningKey {
    SigningKey::rsa("rsa-a", "rsa-a.pem")
}

fn ec_a() -> SigningKey {
    SigningKey::ec("ec-a", "ec-a.pem")
}

/// Accepts HS256 under `SECRET` and the JWKS of `rsa-a` and `ec-a`.
fn auth() -> BuyerAuth {
    let jwks = Jwks::fixed(key_set(&[&rsa_a(), &ec_a()]));
    let rules = ClaimRules {
        issuer: Some("https://login.shop.example/".into()),
        audience: Some("flashgate".into()),
        leeway_s: 30,
    };
    BuyerAuth::new(Some(JwtKeys::new(SECRET)), Some(Arc::new(jwks)), rules)
}

fn claims(sub: &str) -> serde_json::Value {
    json!({
        "sub": sub,
        "exp": NOW + 60,
        "iss": "https://login.shop.example/",
        "aud": ["account", "flashgate"],
    })
}

fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

/// Signs `header.payload` (both JSON) with HMAC under `secret`, however unusual.
fn hs_signed(secret: &[u8], header: &str, payload: &str) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    format!("{input}.{}", JwtKeys::new(secret).sign(&input))
}

#[test]
fn rs256_and_es256_tokens_from_the_jwks_name_their_buyer() {
    for key in [rsa_a(), ec_a()] {
        let token = key.sign(&claims("alice"));
        assert_eq!(auth().verify(&token, NOW), Ok(user("alice")), "{}", key.kid);
    }
}

#[test]
fn an_hs256_token_with_the_common_header_takes_the_fast_path_and_verifies() {
    let token = hs_signed(
        SECRET,
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &claims("alice").to_string(),
    );
    assert!(token.starts_with(STANDARD_HEADER));
    assert_eq!(auth().verify(&token, NOW), Ok(user("alice")));
    let other_header = hs_signed(
        SECRET,
        r#"{"typ":"JWT","alg":"HS256"}"#,
        &claims("bob").to_string(),
    );
    assert_eq!(auth().verify(&other_header, NOW), Ok(user("bob")));
}

#[test]
fn minted_tokens_verify_and_expire_without_leeway_under_the_hs256_only_verifier() {
    let keys = JwtKeys::new(SECRET);
    let hs = BuyerAuth::hs256(SECRET);
    assert_eq!(
        hs.verify(&keys.mint(&user("alice"), NOW + 1), NOW),
        Ok(user("alice"))
    );
    assert_eq!(
        hs.verify(&keys.mint(&user("alice"), NOW), NOW),
        Err(JwtError::Expired)
    );
}

#[test]
fn each_claim_rule_is_enforced_for_jwks_tokens() {
    let key = rsa_a();
    let with = |field: &str, value: serde_json::Value| {
        let mut claims = claims("alice");
        claims[field] = value;
        key.sign(&claims)
    };
    let cases = [
        (with("exp", json!(NOW - 31)), JwtError::Expired),
        (with("nbf", json!(NOW + 31)), JwtError::NotYetValid),
        (
            with("iss", json!("https://evil.example/")),
            JwtError::Issuer,
        ),
        (with("aud", json!("another-api")), JwtError::Audience),
    ];
    for (token, expected) in cases {
        assert_eq!(auth().verify(&token, NOW), Err(expected));
    }
}

#[test]
fn a_kid_not_in_the_jwks_is_an_unknown_key_and_so_is_no_kid() {
    let stranger = SigningKey::rsa("rsa-b", "rsa-b.pem");
    assert_eq!(
        auth().verify(&stranger.sign(&claims("alice")), NOW),
        Err(JwtError::UnknownKey)
    );
    let no_kid = rsa_a().sign_as(None, &claims("alice"));
    assert_eq!(auth().verify(&no_kid, NOW), Err(JwtError::UnknownKey));
}

#[test]
fn a_known_kid_on_a_token_signed_by_another_key_is_refused() {
    let impostor = SigningKey::rsa("rsa-b", "rsa-b.pem");
    let token = impostor.sign_as(Some("rsa-a"), &claims("alice"));
    assert_eq!(auth().verify(&token, NOW), Err(JwtError::Signature));
}

#[test]
fn an_rsa_key_never_verifies_an_hs256_token_made_with_the_public_key_as_secret() {
    let header = r#"{"alg":"HS256","typ":"JWT","kid":"rsa-a"}"#;
    let token = hs_signed(
        &fixture("rsa-a.pub.pem"),
        header,
        &claims("alice").to_string(),
    );
    assert_eq!(auth().verify(&token, NOW), Err(JwtError::Signature));
    let jwks_only = BuyerAuth::new(
        None,
        Some(Arc::new(Jwks::fixed(key_set(&[&rsa_a()])))),
        ClaimRules::default(),
    );
    assert_eq!(jwks_only.verify(&token, NOW), Err(JwtError::Algorithm));
    let standard = hs_signed(
        &fixture("rsa-a.pub.pem"),
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &claims("alice").to_string(),
    );
    assert_eq!(jwks_only.verify(&standard, NOW), Err(JwtError::Algorithm));
}

#[test]
fn a_key_verifies_only_the_algorithm_of_its_kind() {
    // An ES256 header naming the RSA key, and the reverse.
    let ec_signed_naming_rsa = ec_a().sign_as(Some("rsa-a"), &claims("alice"));
    assert_eq!(
        auth().verify(&ec_signed_naming_rsa, NOW),
        Err(JwtError::Algorithm)
    );
    let rsa_signed_naming_ec = rsa_a().sign_as(Some("ec-a"), &claims("alice"));
    assert_eq!(
        auth().verify(&rsa_signed_naming_ec, NOW),
        Err(JwtError::Algorithm)
    );
}

#[test]
fn alg_none_and_unsupported_algorithms_are_refused() {
    let payload = URL_SAFE_NO_PAD.encode(claims("alice").to_string());
    for alg in ["none", "None", "HS512", "RS512", "PS256", "EdDSA"] {
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","kid":"rsa-a"}}"#));
        for signature in ["", "c2lnbmF0dXJl"] {
            let token = format!("{header}.{payload}.{signature}");
            assert_eq!(
                auth().verify(&token, NOW),
                Err(JwtError::Algorithm),
                "{alg}"
            );
        }
    }
}

#[test]
fn a_header_with_critical_extensions_is_refused() {
    let header = r#"{"alg":"HS256","crit":["exp"],"exp":1}"#;
    let token = hs_signed(SECRET, header, &claims("alice").to_string());
    assert_eq!(auth().verify(&token, NOW), Err(JwtError::Algorithm));
}

#[test]
fn providers_subjects_map_to_one_buyer_each() {
    let auth0 = rsa_a().sign(&claims("auth0|5f1e9a7c3b2d4e0012345678"));
    let email = ec_a().sign(&claims("alice@example.com"));
    let a = auth().verify(&auth0, NOW).unwrap();
    let b = auth().verify(&email, NOW).unwrap();
    assert_ne!(a, b);
    assert_eq!(b.as_str(), "h_42YGfwOEr8NJIkuRZh-JJoo3Og2qFytYOKOqqjG2XY");
}

#[test]
fn every_single_character_change_is_refused() {
    for token in [
        JwtKeys::new(SECRET).mint(&user("alice"), 9_999_999_999),
        ec_a().sign(&claims("alice")),
    ] {
        for i in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let forged = String::from_utf8(bytes).unwrap();
            if forged != token {
                assert!(
                    auth().verify(&forged, NOW).is_err(),
                    "accepted change at {i}"
                );
            }
        }
    }
}

#[test]
fn tokens_that_are_not_three_segments_are_malformed() {
    for token in ["", "a", "a.b", "a.b.c.d", "..", "!!.??.**"] {
        assert!(auth().verify(token, NOW).is_err(), "{token}");
    }
    assert_eq!(auth().verify("a.b.c.d", NOW), Err(JwtError::Malformed));
}

#[test]
fn long_claims_verify_from_the_heap() {
    let mut long = claims("alice");
    long["roles"] = json!("r".repeat(2 * STACK_CLAIMS));
    assert_eq!(auth().verify(&rsa_a().sign(&long), NOW), Ok(user("alice")));
    let hs = hs_signed(SECRET, r#"{"alg":"HS256","typ":"JWT"}"#, &long.to_string());
    assert_eq!(auth().verify(&hs, NOW), Ok(user("alice")));
}
