//! OpenAPI schemas of the domain's identifiers and amounts. They serialise as plain strings
//! and numbers; their schemas say which strings and numbers parse (the same rules as
//! `domain::ids`), so a client can validate before it sends.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::domain::{OrderId, Quantity, SaleId};
use crate::store::dead_letters::DeadLetterId;

/// A string of 1..=64 characters of `[A-Za-z0-9_-]`.
fn token_schema(description: &str, example: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(64))
        .pattern(Some("^[A-Za-z0-9_-]{1,64}$"))
        .description(Some(description))
        .examples([example])
        .into()
}

/// An order id: its sale, the shard, and a unique suffix (opaque to clients).
fn order_id_schema(description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .into()
}

impl PartialSchema for SaleId {
    fn schema() -> RefOr<Schema> {
        token_schema("A sale's id.", "spring-drop")
    }
}

impl ToSchema for SaleId {}

impl PartialSchema for OrderId {
    fn schema() -> RefOr<Schema> {
        order_id_schema("An order's id, as the purchase answered it (opaque).")
    }
}

impl ToSchema for OrderId {}

impl PartialSchema for DeadLetterId {
    fn schema() -> RefOr<Schema> {
        order_id_schema("A dead letter's id: the id of the order it holds.")
    }
}

impl ToSchema for DeadLetterId {}

impl PartialSchema for Quantity {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(u32::MAX))
            .description(Some("A number of units; never zero."))
            .into()
    }
}

impl ToSchema for Quantity {}
