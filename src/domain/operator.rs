//! Who an operator is: the name of the admin credential they presented.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest operator name, in characters.
pub const MAX_OPERATOR_NAME: usize = 64;

/// Why a text is not an operator name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an operator name must be 1..={MAX_OPERATOR_NAME} characters of [A-Za-z0-9_.-]")]
pub struct OperatorNameError;

/// The name of an admin credential (`admin` for `admin.token`, the key of an `admin.tokens`
/// entry otherwise): what the audit trail records as the actor of a change.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Operator(String);

impl Operator {
    /// The name of the credential configured as `admin.token`.
    pub const DEFAULT_NAME: &'static str = "admin";

    /// Parses `s`: 1..=64 characters of `[A-Za-z0-9_.-]`.
    pub fn parse(s: &str) -> Result<Self, OperatorNameError> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
        if (1..=MAX_OPERATOR_NAME).contains(&s.len()) && s.chars().all(allowed) {
            Ok(Self(s.to_owned()))
        } else {
            Err(OperatorNameError)
        }
    }

    /// The actor of the reshards the gateway starts by itself to spread a sale's shards
    /// evenly over the cluster's masters again (`sales::rebalance`).
    pub fn rebalance() -> Self {
        Self("rebalance".to_owned())
    }

    /// The operator of `admin.token`.
    pub fn default_admin() -> Self {
        Self(Self::DEFAULT_NAME.to_owned())
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Operator {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Operator {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_outside_the_alphabet_or_length_are_refused() {
        for bad in ["", "a b", "al:ce", "é", &"a".repeat(MAX_OPERATOR_NAME + 1)] {
            assert_eq!(Operator::parse(bad), Err(OperatorNameError), "{bad:?}");
        }
        assert!(Operator::parse(&"a".repeat(MAX_OPERATOR_NAME)).is_ok());
        assert_eq!(Operator::default_admin().as_str(), "admin");
    }

    proptest! {
        #[test]
        fn every_name_of_the_alphabet_parses_and_round_trips(name in "[A-Za-z0-9_.-]{1,64}") {
            let operator = Operator::parse(&name).unwrap();
            let json = serde_json::to_string(&operator).unwrap();
            prop_assert_eq!(serde_json::from_str::<Operator>(&json).unwrap(), operator);
        }
    }
}
