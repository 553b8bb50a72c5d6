//! A buyer token's claims and the rules they must meet: `exp` and `nbf` with a leeway for
//! clocks that disagree, `iss` and `aud` when configured, a `sub` naming the buyer.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use super::JwtError;
use super::subject::buyer_id;
use crate::domain::UserId;

/// What every accepted buyer token must meet besides its signature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimRules {
    /// The `iss` every token must carry (`None`: not checked).
    pub issuer: Option<String>,
    /// A value the token's `aud` must be or contain (`None`: not checked).
    pub audience: Option<String>,
    /// Seconds a token is still accepted after its `exp`, and before its `nbf`.
    pub leeway_s: i64,
}

/// The claims the gateway reads; others are ignored. Strings are borrowed from the decoded
/// payload unless they carry JSON escapes.
#[derive(Deserialize)]
pub(super) struct Claims<'a> {
    #[serde(borrow)]
    sub: Cow<'a, str>,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(borrow, default)]
    iss: Option<Text<'a>>,
    #[serde(borrow, default)]
    aud: Option<Audience<'a>>,
}

impl ClaimRules {
    /// The buyer named by `claims` (JSON), if they meet these rules at `now_unix`.
    pub(super) fn buyer(&self, claims: &[u8], now_unix: i64) -> Result<UserId, JwtError> {
        let claims: Claims = serde_json::from_slice(claims).map_err(|_| JwtError::Claims)?;
        if now_unix >= claims.exp.saturating_add(self.leeway_s) {
            return Err(JwtError::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| now_unix.saturating_add(self.leeway_s) < nbf)
        {
            return Err(JwtError::NotYetValid);
        }
        if let Some(issuer) = &self.issuer
            && claims.iss.as_ref().is_none_or(|iss| iss.0 != **issuer)
        {
            return Err(JwtError::Issuer);
        }
        if let Some(audience) = &self.audience
            && claims
                .aud
                .as_ref()
                .is_none_or(|aud| !aud.contains(audience))
        {
            return Err(JwtError::Audience);
        }
        buyer_id(&claims.sub).map_err(|_| JwtError::Subject)
    }
}

/// A JSON string, borrowed when it has no escapes.
pub(super) struct Text<'a>(Cow<'a, str>);

impl Text<'_> {
    pub(super) fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Borrowed(s)))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(s.to_owned())))
    }
}

/// `aud`: one string or an array of them (RFC 7519 §4.1.3).
pub(super) enum Audience<'a> {
    One(Text<'a>),
    Many(Vec<Text<'a>>),
}

impl Audience<'_> {
    fn contains(&self, wanted: &str) -> bool {
        match self {
            Audience::One(aud) => aud.0 == wanted,
            Audience::Many(auds) => auds.iter().any(|aud| aud.0 == wanted),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Audience<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AudienceVisitor)
    }
}

struct AudienceVisitor;

impl<'de> Visitor<'de> for AudienceVisitor {
    type Value = Audience<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or an array of strings")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        TextVisitor.visit_borrowed_str(s).map(Audience::One)
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        TextVisitor.visit_str(s).map(Audience::One)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut auds = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(8));
        while let Some(aud) = seq.next_element()? {
            auds.push(aud);
        }
        Ok(Audience::Many(auds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn rules() -> ClaimRules {
        ClaimRules {
            issuer: Some("https://login.shop.example/".into()),
            audience: Some("flashgate".into()),
            leeway_s: 30,
        }
    }

    fn check(rules: &ClaimRules, claims: &str) -> Result<UserId, JwtError> {
        rules.buyer(claims.as_bytes(), NOW)
    }

    fn alice() -> UserId {
        UserId::parse("alice").unwrap()
    }

    #[test]
    fn claims_meeting_every_rule_name_their_buyer() {
        let claims = format!(
            r#"{{"sub":"alice","exp":{},"nbf":{},"iss":"https://login.shop.example/","aud":"flashgate"}}"#,
            NOW + 60,
            NOW - 60
        );
        assert_eq!(check(&rules(), &claims), Ok(alice()));
    }

    #[test]
    fn a_token_past_its_exp_is_accepted_only_within_the_leeway() {
        let at = |exp: i64| {
            format!(
                r#"{{"sub":"alice","exp":{exp},"iss":"https://login.shop.example/","aud":"flashgate"}}"#
            )
        };
        assert_eq!(check(&rules(), &at(NOW - 29)), Ok(alice()));
        assert_eq!(check(&rules(), &at(NOW - 30)), Err(JwtError::Expired));
        let strict = ClaimRules::default();
        assert_eq!(
            check(&strict, r#"{"sub":"alice","exp":1800000000}"#),
            Err(JwtError::Expired)
        );
        assert_eq!(
            check(&strict, r#"{"sub":"alice","exp":1800000001}"#),
            Ok(alice())
        );
    }

    #[test]
    fn a_token_whose_nbf_is_in_the_future_is_refused_beyond_the_leeway() {
        let at = |nbf: i64| {
            format!(
                r#"{{"sub":"alice","exp":{},"nbf":{nbf},"iss":"https://login.shop.example/","aud":"flashgate"}}"#,
                NOW + 600
            )
        };
        assert_eq!(check(&rules(), &at(NOW + 30)), Ok(alice()));
        assert_eq!(check(&rules(), &at(NOW + 31)), Err(JwtError::NotYetValid));
    }

    #[test]
    fn a_wrong_or_missing_issuer_is_refused() {
        for iss in [r#","iss":"https://evil.example/""#, ""] {
            let claims = format!(r#"{{"sub":"alice","exp":9999999999,"aud":"flashgate"{iss}}}"#);
            assert_eq!(check(&rules(), &claims), Err(JwtError::Issuer), "{claims}");
        }
    }

    #[test]
    fn a_wrong_or_missing_audience_is_refused_and_an_array_may_hold_it() {
        let with = |aud: &str| {
            format!(
                r#"{{"sub":"alice","exp":9999999999,"iss":"https://login.shop.example/"{aud}}}"#
            )
        };
        for aud in [r#","aud":"another-api""#, r#","aud":["a","b"]"#, ""] {
            assert_eq!(
                check(&rules(), &with(aud)),
                Err(JwtError::Audience),
                "{aud}"
            );
        }
        assert_eq!(
            check(&rules(), &with(r#","aud":["account","flashgate"]"#)),
            Ok(alice())
        );
    }

    #[test]
    fn unconfigured_issuer_and_audience_are_not_checked() {
        let claims = r#"{"sub":"alice","exp":9999999999,"iss":"anyone","aud":["x"]}"#;
        assert_eq!(check(&ClaimRules::default(), claims), Ok(alice()));
    }

    #[test]
    fn escaped_strings_compare_by_their_value() {
        let claims = r#"{"sub":"\u0061lice","exp":9999999999,"iss":"https:\/\/login.shop.example\/","aud":"fl\u0061shgate"}"#;
        assert_eq!(check(&rules(), claims), Ok(alice()));
    }

    #[test]
    fn missing_or_mistyped_claims_are_refused() {
        for claims in [
            r#"{"exp":9999999999}"#,
            r#"{"sub":"alice"}"#,
            r#"{"sub":"alice","exp":"tomorrow"}"#,
            r#"{"sub":"alice","exp":9999999999,"aud":7}"#,
            "not json",
        ] {
            assert_eq!(
                check(&ClaimRules::default(), claims),
                Err(JwtError::Claims),
                "{claims}"
            );
        }
        assert_eq!(
            check(&ClaimRules::default(), r#"{"sub":"","exp":9999999999}"#),
            Err(JwtError::Subject)
        );
    }
}
