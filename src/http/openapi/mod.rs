//! The machine-readable API: `GET /openapi.json`, an OpenAPI 3.1 document generated from the
//! handlers' `#[utoipa::path]` annotations and their request and response types, and
//! `GET /docs`, a browsable reference (Swagger UI, its assets built into the binary).
//!
//! Every route the router serves is in the document, and every [`ProblemKind`] is a named
//! `application/problem+json` response in it; the tests that walk the router and the
//! problem kinds keep it so.
//!
//! [`ProblemKind`]: super::error::ProblemKind

mod problems;
mod schemas;

use std::sync::LazyLock;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Components, ContentBuilder, OpenApi as Document, Ref, RefOr, Required};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::{Config, SwaggerUi};

use super::state::AppState;
use super::{admin, buyer, dashboard, health, lifecycle, metrics, operator, tokens};

/// The media type of every non-2xx answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Where the browsable reference is served; its page and assets live under it.
pub const DOCS_PATH: &str = "/docs";

/// The security scheme of buyers' JWTs.
pub const BUYER_JWT: &str = "buyer_jwt";

/// The security scheme of the operators' token.
pub const ADMIN_TOKEN: &str = "admin_token";

/// The document's description of the gateway.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "flashgate",
        description = "A flash-sale gateway: sale information, proof-of-work purchase tokens, \
            purchases answered in milliseconds, order status, and the operators' controls. \
            Every non-2xx answer is RFC 9457 `application/problem+json`; its `type` is \
            `/problems/<slug>`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        buyer::get_sale,
        tokens::challenge,
        tokens::issue_token,
        buyer::purchase,
        buyer::my_orders,
        buyer::get_order,
        lifecycle::cancel_order,
        lifecycle::mark_paid,
        operator::list_sales,
        admin::put_sale,
        admin::sale_status,
        admin::delete_sale,
        operator::pause_sale,
        operator::resume_sale,
        operator::end_sale,
        admin::change_stock,
        admin::reshard_sale,
        admin::reconcile_sale,
        admin::list_dead_letters,
        admin::retry_dead_letter,
        admin::drop_dead_letter,
        dashboard::page,
        health::live,
        health::ready,
        metrics::render,
        openapi_json,
    ),
    modifiers(&Gateway),
    tags(
        (name = "buyer", description = "What a shop's frontend calls for its buyers"),
        (name = "operator", description = "Sale management (admin token)"),
        (name = "service", description = "Probes and the API description"),
    )
)]
pub struct ApiDoc;

/// What the derive cannot say: the security schemes, the problem responses, `/docs`.
struct Gateway;

impl Modify for Gateway {
    fn modify(&self, api: &mut Document) {
        let components = api.components.get_or_insert_with(Components::new);
        let buyer = Http::builder()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(
                "A buyer's JWT, minted by the shop's login service (HS256, claims `sub` and `exp`).",
            ))
            .build();
        let admin = Http::builder()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("The operators' token (`admin.token`)."))
            .build();
        components
            .security_schemes
            .insert(BUYER_JWT.to_owned(), SecurityScheme::Http(buyer).into());
        components
            .security_schemes
            .insert(ADMIN_TOKEN.to_owned(), SecurityScheme::Http(admin).into());
        api.paths
            .paths
            .insert(DOCS_PATH.to_owned(), docs_path_item());
        request_id(api);
        problems::document(api);
    }
}

/// `X-Request-Id`, which every operation takes (optionally) and answers with.
fn request_id(api: &mut Document) {
    let text = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(128));
    let parameter = ParameterBuilder::new()
        .name("X-Request-Id")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "The request's id (1 to 128 visible ASCII characters), generated when absent; \
             answered in X-Request-Id, logged with the request, and the `instance` of a problem",
        ))
        .schema(Some(text))
        .build();
    let components = api.components.get_or_insert_with(Components::new);
    components
        .parameters
        .insert("RequestId".to_owned(), parameter.into());
    let reference = Ref::new("#/components/parameters/RequestId");
    for item in api.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            let parameters = operation.parameters.get_or_insert_with(Vec::new);
            parameters.push(RefOr::Ref(reference.clone()));
        }
    }
}

/// `GET /docs`, served by Swagger UI rather than a handler of ours.
fn docs_path_item() -> PathItem {
    let page = ResponseBuilder::new()
        .description("The API reference, an HTML page rendering this document")
        .content("text/html", ContentBuilder::new().build())
        .build();
    let operation = OperationBuilder::new()
        .tag("service")
        .operation_id(Some("docs"))
        .summary(Some("A browsable API reference"))
        .response("200", page)
        .build();
    PathItem::new(HttpMethod::Get, operation)
}

/// The document as served, serialised once.
static DOCUMENT: LazyLock<Bytes> = LazyLock::new(|| {
    let json = ApiDoc::openapi()
        .to_json()
        .expect("the OpenAPI document serialises");
    Bytes::from(json)
});

/// The OpenAPI document.
pub fn document() -> Document {
    ApiDoc::openapi()
}

/// `/openapi.json` and `/docs`.
pub fn router() -> Router<AppState> {
    let docs = SwaggerUi::new(DOCS_PATH).config(Config::from("/openapi.json"));
    Router::new()
        .route("/openapi.json", get(openapi_json))
        .merge(docs)
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "service",
    responses((status = 200, description = "This document", content_type = "application/json")),
)]
async fn openapi_json() -> Response {
    let mut response = DOCUMENT.clone().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_builds_and_names_every_operation() {
        let doc = document();
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["openapi"], "3.1.0");
        for (path, item) in json["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                assert!(
                    operation["operationId"].is_string(),
                    "{method} {path} has no operation id"
                );
            }
        }
    }
}
