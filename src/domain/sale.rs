//! What a sale is: its validated definition and the state it is in at a given moment.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::ids::{Quantity, SaleId};

/// Most units a sale may have. Stock is counted by Redis `HINCRBY` (64-bit integers) and by
/// the Lua scripts, whose numbers are doubles, exact only up to 2^53; a shard's fields add
/// and subtract units (`allotted + received - given`), and a purchase batch sums them. 10^9
/// keeps every such figure, on any shard and summed over all of them, far inside both, and
/// is beyond any flash sale.
pub const MAX_STOCK: u64 = 1_000_000_000;
/// Most shards a sale may be split over.
pub const MAX_SHARDS: u32 = 1024;
/// Longest sale name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Highest per-buyer limit. A buyer's record in Redis keeps one line per accepted order and
/// is rewritten by each of their purchases (`lua/purchase.lua`), so the limit bounds both its
/// size (about 130 bytes an order) and the work of one purchase; a flash sale's limit is a
/// few units.
pub const MAX_PER_USER_LIMIT: u32 = 1000;
/// Highest proof-of-work difficulty, in leading zero bits.
pub const MAX_POW_DIFFICULTY: u8 = 32;
/// Longest payment window, in seconds (a week): shops give minutes; a window beyond this is
/// a typo, and an unpaid order must not hold its units for longer.
pub const MAX_PAYMENT_WINDOW_S: u32 = 7 * 24 * 3600;

/// A sale definition as operators write it (admin API body or a `[[sales]]` config table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaleDefinition {
    /// Display name.
    pub name: String,
    /// Units for sale.
    pub stock: u64,
    /// Number of Redis shard keys the stock is split over.
    #[serde(default = "default_shards")]
    pub shards: u32,
    /// Opening instant (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    /// Closing instant (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
    /// Most units one buyer may hold.
    pub per_user_limit: u32,
    /// Most units in one order.
    pub max_per_order: u32,
    /// Proof-of-work difficulty for purchase tokens (0 = off).
    #[serde(default)]
    pub pow_difficulty: u8,
    /// Seconds an order may stay unpaid before it expires and its units return to the sale
    /// (0 = orders never expire).
    #[serde(default)]
    pub payment_window_s: u32,
}

fn default_shards() -> u32 {
    1
}

/// Why a sale definition is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaleSpecError {
    #[error("name must be 1..={MAX_NAME_CHARS} characters")]
    Name,
    #[error("stock must be at most {MAX_STOCK} units")]
    Stock,
    #[error("shards must be 1..={MAX_SHARDS}")]
    Shards,
    #[error("ends_at must be after starts_at")]
    Window,
    #[error("per_user_limit must be 1..={MAX_PER_USER_LIMIT}")]
    PerUserLimit,
    #[error("max_per_order must be 1..=per_user_limit")]
    MaxPerOrder,
    #[error("pow_difficulty must be 0..={MAX_POW_DIFFICULTY}")]
    PowDifficulty,
    #[error("payment_window_s must be 0..={MAX_PAYMENT_WINDOW_S}")]
    PaymentWindow,
}

/// A validated sale definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleSpec {
    def: SaleDefinition,
}

impl TryFrom<SaleDefinition> for SaleSpec {
    type Error = SaleSpecError;

    fn try_from(def: SaleDefinition) -> Result<Self, Self::Error> {
        if def.name.is_empty() || def.name.chars().count() > MAX_NAME_CHARS {
            return Err(SaleSpecError::Name);
        }
        if def.stock > MAX_STOCK {
            return Err(SaleSpecError::Stock);
        }
        if !(1..=MAX_SHARDS).contains(&def.shards) {
            return Err(SaleSpecError::Shards);
        }
        if def.ends_at <= def.starts_at {
            return Err(SaleSpecError::Window);
        }
        if !(1..=MAX_PER_USER_LIMIT).contains(&def.per_user_limit) {
            return Err(SaleSpecError::PerUserLimit);
        }
        if def.max_per_order == 0 || def.max_per_order > def.per_user_limit {
            return Err(SaleSpecError::MaxPerOrder);
        }
        if def.pow_difficulty > MAX_POW_DIFFICULTY {
            return Err(SaleSpecError::PowDifficulty);
        }
        if def.payment_window_s > MAX_PAYMENT_WINDOW_S {
            return Err(SaleSpecError::PaymentWindow);
        }
        Ok(Self { def })
    }
}

impl SaleSpec {
    /// The definition this spec was validated from.
    pub fn definition(&self) -> &SaleDefinition {
        &self.def
    }

    /// Display name.
    pub fn name(&self) -> &str {
        &self.def.name
    }

    /// Units the sale was created with.
    pub fn stock(&self) -> u64 {
        self.def.stock
    }

    /// Number of stock shards (at least 1).
    pub fn shards(&self) -> u32 {
        self.def.shards
    }

    /// Opening instant.
    pub fn starts_at(&self) -> OffsetDateTime {
        self.def.starts_at
    }

    /// Closing instant.
    pub fn ends_at(&self) -> OffsetDateTime {
        self.def.ends_at
    }

    /// Most units one buyer may hold.
    pub fn per_user_limit(&self) -> u32 {
        self.def.per_user_limit
    }

    /// Most units in one order.
    pub fn max_per_order(&self) -> u32 {
        self.def.max_per_order
    }

    /// Proof-of-work difficulty in leading zero bits.
    pub fn pow_difficulty(&self) -> u8 {
        self.def.pow_difficulty
    }

    /// How long an order may stay unpaid, in milliseconds; `None` when orders never expire.
    pub fn payment_window_ms(&self) -> Option<i64> {
        (self.def.payment_window_s > 0).then(|| i64::from(self.def.payment_window_s) * 1000)
    }

    /// Whether `quantity` is allowed in one order.
    pub fn allows_order_of(&self, quantity: Quantity) -> bool {
        quantity.get() <= self.def.max_per_order
    }

    /// This definition ended at `now`: `ends_at` moved to `now`, and, for a sale not yet
    /// open, `starts_at` to a second before, so that the window stays non-empty and lies
    /// wholly in the past. `None` if the sale has already ended at `now`.
    pub fn ended_at(&self, now: OffsetDateTime) -> Option<Self> {
        if self.window(now) == Window::After {
            return None;
        }
        let mut def = self.def.clone();
        def.ends_at = now;
        def.starts_at = def.starts_at.min(now - time::Duration::SECOND);
        Some(Self { def })
    }

    /// Where the sale's clock stands at `now`, ignoring stock and the kill switch.
    pub fn window(&self, now: OffsetDateTime) -> Window {
        if now < self.def.starts_at {
            Window::Before
        } else if now >= self.def.ends_at {
            Window::After
        } else {
            Window::Open
        }
    }
}

/// A sale's position in its time window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Before `starts_at`.
    Before,
    /// Between `starts_at` (inclusive) and `ends_at` (exclusive).
    Open,
    /// At or after `ends_at`.
    After,
}

/// The state a buyer sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SaleState {
    Upcoming,
    Live,
    SoldOut,
    Ended,
    Paused,
}

impl SaleState {
    /// Combines the time window, the kill switch and whether any stock remains.
    pub fn of(window: Window, paused: bool, remaining: u64) -> Self {
        match window {
            Window::Before => Self::Upcoming,
            Window::After => Self::Ended,
            Window::Open if paused => Self::Paused,
            Window::Open if remaining == 0 => Self::SoldOut,
            Window::Open => Self::Live,
        }
    }
}

/// A sale's identity together with its validated definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sale {
    /// The sale id.
    pub id: SaleId,
    /// Its definition.
    pub spec: SaleSpec,
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn def() -> SaleDefinition {
        SaleDefinition {
            name: "Phone".into(),
            stock: 100,
            shards: 8,
            starts_at: datetime!(2026-11-21 12:00 UTC),
            ends_at: datetime!(2026-11-21 13:00 UTC),
            per_user_limit: 2,
            max_per_order: 2,
            pow_difficulty: 0,
            payment_window_s: 0,
        }
    }

    #[test]
    fn valid_definition_is_accepted() {
        assert!(SaleSpec::try_from(def()).is_ok());
    }

    #[test]
    fn every_bound_is_inclusive() {
        let mut d = def();
        d.name = "x".repeat(MAX_NAME_CHARS);
        d.stock = MAX_STOCK;
        d.shards = MAX_SHARDS;
        d.per_user_limit = MAX_PER_USER_LIMIT;
        d.max_per_order = MAX_PER_USER_LIMIT;
        d.pow_difficulty = MAX_POW_DIFFICULTY;
        d.payment_window_s = MAX_PAYMENT_WINDOW_S;
        assert!(SaleSpec::try_from(d).is_ok());
    }

    #[test]
    fn inconsistent_definitions_are_refused() {
        type Mutation = fn(&mut SaleDefinition);
        let cases: [(Mutation, SaleSpecError); 12] = [
            (|d| d.name = String::new(), SaleSpecError::Name),
            (
                |d| d.name = "x".repeat(MAX_NAME_CHARS + 1),
                SaleSpecError::Name,
            ),
            (|d| d.stock = MAX_STOCK + 1, SaleSpecError::Stock),
            (|d| d.stock = u64::MAX, SaleSpecError::Stock),
            (|d| d.shards = 0, SaleSpecError::Shards),
            (|d| d.shards = MAX_SHARDS + 1, SaleSpecError::Shards),
            (|d| d.ends_at = d.starts_at, SaleSpecError::Window),
            (|d| d.per_user_limit = 0, SaleSpecError::PerUserLimit),
            (
                |d| d.per_user_limit = MAX_PER_USER_LIMIT + 1,
                SaleSpecError::PerUserLimit,
            ),
            (|d| d.max_per_order = 3, SaleSpecError::MaxPerOrder),
            (|d| d.pow_difficulty = 33, SaleSpecError::PowDifficulty),
            (
                |d| d.payment_window_s = MAX_PAYMENT_WINDOW_S + 1,
                SaleSpecError::PaymentWindow,
            ),
        ];
        for (mutate, expected) in cases {
            let mut d = def();
            mutate(&mut d);
            assert_eq!(SaleSpec::try_from(d), Err(expected));
        }
    }

    #[test]
    fn window_boundaries_follow_starts_at_inclusive_ends_at_exclusive() {
        let spec = SaleSpec::try_from(def()).unwrap();
        assert_eq!(
            spec.window(datetime!(2026-11-21 11:59:59.999 UTC)),
            Window::Before
        );
        assert_eq!(spec.window(datetime!(2026-11-21 12:00 UTC)), Window::Open);
        assert_eq!(spec.window(datetime!(2026-11-21 13:00 UTC)), Window::After);
    }

    #[test]
    fn an_ended_definition_is_closed_at_once_and_keeps_a_valid_window() {
        let spec = SaleSpec::try_from(def()).unwrap();
        let live = datetime!(2026-11-21 12:30 UTC);
        let ended = spec.ended_at(live).unwrap();
        assert_eq!(ended.window(live), Window::After);
        assert_eq!(ended.starts_at(), spec.starts_at());
        let early = datetime!(2026-11-21 11:00 UTC);
        let ended = spec.ended_at(early).unwrap();
        assert_eq!(ended.window(early), Window::After);
        assert!(ended.starts_at() < ended.ends_at());
        assert_eq!(SaleSpec::try_from(ended.definition().clone()), Ok(ended));
        assert_eq!(spec.ended_at(datetime!(2026-11-21 13:00 UTC)), None);
    }

    #[test]
    fn state_prefers_window_then_pause_then_stock() {
        assert_eq!(SaleState::of(Window::Before, true, 0), SaleState::Upcoming);
        assert_eq!(SaleState::of(Window::Open, true, 0), SaleState::Paused);
        assert_eq!(SaleState::of(Window::Open, false, 0), SaleState::SoldOut);
        assert_eq!(SaleState::of(Window::Open, false, 1), SaleState::Live);
        assert_eq!(SaleState::of(Window::After, false, 5), SaleState::Ended);
    }
}
