//! Every problem the gateway answers, in the document: the `Problem` schema (RFC 9457), one
//! example and one named response per [`ProblemKind`] (`components.responses.<slug>`), and
//! on each operation the problems it may answer, one response per status.
//!
//! Which operation answers which problems is the table [`answers`]; the problems common to
//! all (an outage, a timeout, a bug), to every operation that takes credentials and to every
//! one that reads a JSON body are added from the operation's own description.

use std::collections::BTreeMap;

use serde_json::json;
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};
use utoipa::openapi::{Components, ContentBuilder, OpenApi, Ref, RefOr};

use super::PROBLEM_JSON;
use crate::http::error::ProblemKind::{self, *};

/// The problems `operation_id` answers, beyond the common ones.
fn answers(operation_id: &str) -> Option<&'static [ProblemKind]> {
    let kinds: &'static [ProblemKind] = match operation_id {
        "get_sale" | "my_orders" | "get_order" | "sale_status" | "reconcile_sale" => &[NotFound],
        "challenge" => &[
            NotFound,
            SaleNotStarted,
            SaleEnded,
            SalePaused,
            SoldOut,
            RateLimited,
        ],
        "issue_token" => &[
            NotFound,
            SaleNotStarted,
            SaleEnded,
            SalePaused,
            SoldOut,
            InvalidToken,
            TokenUsed,
            RateLimited,
        ],
        "purchase" => &[
            NotFound,
            SaleNotStarted,
            SaleEnded,
            SalePaused,
            SoldOut,
            InsufficientStock,
            LimitReached,
            IdempotencyConflict,
            InvalidToken,
            TokenUsed,
            RateLimited,
        ],
        "cancel_order" | "mark_paid" => &[NotFound, OrderState],
        "put_sale" => &[SaleLive, SaleHasOrders, ChangeInProgress],
        "reshard_sale" | "change_stock" => &[NotFound, SaleEnded, ChangeInProgress],
        "delete_sale" => &[NotFound, SaleLive, ChangeInProgress, OrdersPending],
        "pause_sale" | "resume_sale" | "end_sale" => &[NotFound, ChangeInProgress],
        "retry_dead_letter" | "drop_dead_letter" => &[NotFound, DeadLetterRefused],
        "list_sales" | "list_dead_letters" | "live" | "ready" | "openapi_json" | "docs"
        | "dashboard" => &[],
        "metrics" => &[NotFound],
        _ => return None,
    };
    Some(kinds)
}

/// Problems any request may meet: an outage or a request over its time (`overloaded`,
/// 503), a bug (`internal`, 500).
const EVERYWHERE: [ProblemKind; 2] = [Overloaded, Internal];

/// Problems of reading a JSON body.
const BODY: [ProblemKind; 3] = [Validation, PayloadTooLarge, RequestTimeout];

/// Adds the `Problem` schema, one example and one response per kind, and each operation's
/// problem responses. Panics on an operation missing from [`answers`]: the document is built
/// in tests, and a new operation must say what it answers.
pub fn document(api: &mut OpenApi) {
    let components = api.components.get_or_insert_with(Components::new);
    components
        .schemas
        .insert("Problem".to_owned(), problem_schema().into());
    for kind in ProblemKind::ALL {
        let example = ExampleBuilder::new()
            .summary(kind.title())
            .value(Some(example_body(kind)))
            .build();
        components
            .examples
            .insert(kind.slug().to_owned(), example.into());
        let response = problem_response(kind.title(), &[kind]);
        components
            .responses
            .insert(kind.slug().to_owned(), response.into());
    }
    for (path, item) in api.paths.paths.iter_mut() {
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            add_problems(path, operation);
        }
    }
}

fn add_problems(path: &str, operation: &mut Operation) {
    let id = operation.operation_id.as_deref().unwrap_or_default();
    let own = answers(id)
        .unwrap_or_else(|| panic!("{path}: operation `{id}` is missing from problems::answers"));
    let mut kinds: Vec<ProblemKind> = own.to_vec();
    if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
        kinds.push(Unauthorized);
    }
    if operation.request_body.is_some() {
        kinds.extend(BODY);
    }
    kinds.extend(EVERYWHERE);
    let mut by_status: BTreeMap<u16, Vec<ProblemKind>> = BTreeMap::new();
    for kind in kinds {
        let of_status = by_status.entry(kind.status().as_u16()).or_default();
        if !of_status.contains(&kind) {
            of_status.push(kind);
        }
    }
    for (status, kinds) in by_status {
        let slugs: Vec<&str> = kinds.iter().map(|k| k.slug()).collect();
        let response = problem_response(&slugs.join(", "), &kinds);
        operation
            .responses
            .responses
            .insert(status.to_string(), response.into());
    }
}

/// A problem+json response whose body is one of `kinds`, each shown as an example.
fn problem_response(description: &str, kinds: &[ProblemKind]) -> Response {
    let examples = kinds.iter().map(|kind| {
        let reference = Ref::new(format!("#/components/examples/{}", kind.slug()));
        (
            kind.slug(),
            RefOr::<utoipa::openapi::example::Example>::Ref(reference),
        )
    });
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Problem")))
        .examples_from_iter(examples)
        .build();
    let mut response = ResponseBuilder::new()
        .description(description)
        .content(PROBLEM_JSON, content);
    for (name, about) in headers(kinds) {
        let text = ObjectBuilder::new().schema_type(Type::String);
        let header = HeaderBuilder::new()
            .schema(Some(text))
            .description(Some(about))
            .build();
        response = response.header(name, header);
    }
    response.build()
}

/// The headers that come with problems of `kinds`: when to retry, and the rate limit.
fn headers(kinds: &[ProblemKind]) -> Vec<(&'static str, &'static str)> {
    let mut headers = Vec::new();
    let status = |s: u16| kinds.iter().any(|k| k.status().as_u16() == s);
    if status(503) || kinds.contains(&RateLimited) {
        headers.push(("Retry-After", "Seconds to wait before retrying"));
    }
    if kinds.contains(&RateLimited) {
        headers.push((
            "RateLimit",
            "The quota that refused: `limit=N, remaining=0, reset=S`",
        ));
        headers.push((
            "RateLimit-Policy",
            "The quota: `N;w=S` (N requests per S seconds)",
        ));
    }
    headers
}

/// The body of a problem of `kind`, as the gateway writes it.
fn example_body(kind: ProblemKind) -> serde_json::Value {
    json!({
        "type": format!("/problems/{}", kind.slug()),
        "title": kind.title(),
        "status": kind.status().as_u16(),
        "detail": kind.title(),
    })
}

/// RFC 9457 problem details; kinds may add members (`starts_at`, `remaining`, `held`,
/// `per_user_limit`, `limit_bytes`, `scope`, `retry_after`, `reasons`).
fn problem_schema() -> Schema {
    let string = |description: &str| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(description))
            .build()
    };
    let slugs: Vec<String> = ProblemKind::ALL
        .iter()
        .map(|k| format!("/problems/{}", k.slug()))
        .collect();
    let kind = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(slugs))
        .description(Some("The kind of problem: `/problems/<slug>`."));
    let status = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .description(Some("The HTTP status, repeated."));
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "RFC 9457 problem details: every non-2xx answer of the gateway.",
        ))
        .property("type", kind)
        .property("title", string("A fixed summary of the kind."))
        .property("status", status)
        .property("detail", string("What happened, for a person."))
        .property(
            "instance",
            string("The request's id (its X-Request-Id), when request ids are on."),
        )
        .required("type")
        .required("title")
        .required("status")
        .required("detail")
        .additional_properties(Some(AdditionalProperties::FreeForm(true)))
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_but_the_routing_ones_is_answered_by_some_operation() {
        let operations = [
            "get_sale",
            "challenge",
            "issue_token",
            "purchase",
            "cancel_order",
            "put_sale",
            "delete_sale",
            "reshard_sale",
            "retry_dead_letter",
        ];
        let mut answered: Vec<ProblemKind> = operations
            .iter()
            .flat_map(|id| answers(id).unwrap().iter().copied())
            .collect();
        answered.extend(EVERYWHERE);
        answered.extend(BODY);
        answered.push(Unauthorized);
        for kind in ProblemKind::ALL {
            assert!(
                answered.contains(&kind) || kind == MethodNotAllowed,
                "{} is answered by no operation",
                kind.slug()
            );
        }
    }
}
