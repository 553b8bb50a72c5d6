//! `/openapi.json` and `/docs` against a running gateway: the document lists every route
//! the router serves and every problem kind, passes an OpenAPI 3.1 validator, and the
//! reference renders in a real browser.

use std::collections::BTreeSet;

use flashgate::testing::http::ProblemKind;
use flashgate::testing::http::openapi::DOCS_PATH;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::process::Command;

use crate::support::app::{TestApp, spawn_single};
use crate::support::browser;

/// The methods the API uses.
const METHODS: [Method; 4] = [Method::GET, Method::POST, Method::PUT, Method::DELETE];

/// Every path the router matches, read from its debug form (axum lists its routes there and
/// nowhere public): `Router { path_router: .., fallback_router: .., .. }`, of which the
/// fallback's part is not routes.
fn router_paths(app: &TestApp) -> BTreeSet<String> {
    let router = flashgate::testing::http::app(app.state.clone());
    let debug = format!("{router:?}");
    let (routes, _) = debug
        .split_once("fallback_router")
        .expect("the router's debug form names its fallback router");
    let paths: BTreeSet<String> = routes
        .split("): \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|path| path.starts_with('/') && !path.contains("__private__axum"))
        .map(str::to_owned)
        .collect();
    assert!(
        paths.contains("/api/v1/sales/{sale_id}/purchase"),
        "the router's debug form no longer lists its paths: {paths:?}"
    );
    paths
}

/// `path` with every `{param}` replaced by a harmless value.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with("{*") {
                "index.html"
            } else if segment.starts_with('{') {
                "probe"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The methods `path` is served with: whatever is not answered 405, without credentials (so
/// nothing changes).
async fn served_methods(app: &TestApp, path: &str) -> Vec<Method> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = format!("{}{}", app.base, concrete(path));
    let mut served = Vec::new();
    for method in METHODS {
        let response = client.request(method.clone(), &url).send().await.unwrap();
        if response.status() != StatusCode::METHOD_NOT_ALLOWED {
            served.push(method);
        }
    }
    served
}

async fn document(app: &TestApp) -> Value {
    let response = app
        .client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_lists_every_route_and_method_the_router_serves() {
    let (_redis, app) = spawn_single().await;
    let doc = document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let assets = format!("{DOCS_PATH}/");
    let mut missing = Vec::new();
    for path in router_paths(&app) {
        if path.starts_with(&assets) {
            continue; // the reference's page and scripts, documented as `/docs`
        }
        let served = served_methods(&app, &path).await;
        assert!(!served.is_empty(), "{path} answers no method");
        for method in served {
            let name = method.as_str().to_ascii_lowercase();
            if doc["paths"][&path][&name].is_null() {
                missing.push(format!("{method} {path}"));
            }
        }
    }
    assert!(missing.is_empty(), "served but not documented: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_served() {
    let (_redis, app) = spawn_single().await;
    let doc = document(&app).await;
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 20, "{} paths", paths.len());
    for (path, item) in paths {
        let served = served_methods(&app, path).await;
        for method in METHODS {
            let name = method.as_str().to_ascii_lowercase();
            if !item[&name].is_null() {
                assert!(
                    served.contains(&method),
                    "{method} {path} is documented, not served"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_problem_kind_is_a_documented_problem_json_response() {
    let (_redis, app) = spawn_single().await;
    let doc = document(&app).await;
    let components = &doc["components"];
    let referenced = doc["paths"].to_string();
    for kind in ProblemKind::ALL {
        let slug = kind.slug();
        let response = &components["responses"][slug];
        let content = &response["content"]["application/problem+json"];
        assert_eq!(
            content["schema"]["$ref"], "#/components/schemas/Problem",
            "{slug}: {response}"
        );
        let example = &components["examples"][slug]["value"];
        assert_eq!(example["type"], format!("/problems/{slug}"));
        assert_eq!(example["status"], kind.status().as_u16());
        if kind != ProblemKind::MethodNotAllowed {
            let reference = format!("\"#/components/examples/{slug}\"");
            assert!(
                referenced.contains(&reference),
                "no operation answers {slug}"
            );
        }
    }
    let problem_types = &components["schemas"]["Problem"]["properties"]["type"]["enum"];
    assert_eq!(
        problem_types.as_array().unwrap().len(),
        ProblemKind::ALL.len()
    );
    let purchase = &doc["paths"]["/api/v1/sales/{sale_id}/purchase"]["post"];
    let conflicts = purchase["responses"]["409"]["content"]["application/problem+json"]["examples"]
        .as_object()
        .unwrap();
    assert!(conflicts.contains_key("sold-out") && conflicts.contains_key("limit-reached"));
    assert_eq!(purchase["security"][0]["buyer_jwt"], Value::Array(vec![]));
    let parameters = purchase["parameters"].to_string();
    assert!(parameters.contains("#/components/parameters/RequestId"));
    assert!(components["schemas"]["Problem"]["properties"]["instance"].is_object());
    let limited = &purchase["responses"]["429"]["headers"];
    assert!(limited["Retry-After"].is_object() && limited["RateLimit-Policy"].is_object());
    assert!(purchase["responses"]["503"]["headers"]["Retry-After"].is_object());
    let schemes = &components["securitySchemes"];
    assert_eq!(schemes["buyer_jwt"]["scheme"], "bearer");
    assert_eq!(schemes["admin_token"]["scheme"], "bearer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_passes_the_openapi_spec_validator() {
    let (_redis, app) = spawn_single().await;
    let doc = document(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let output = Command::new("python3")
        .args(["-m", "openapi_spec_validator", "--schema", "3.1"])
        .arg(&file)
        .output()
        .await
        .expect("python3 runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !report.contains("No module named"),
        "openapi-spec-validator is missing; run scripts/install-deps.sh: {report}"
    );
    assert!(output.status.success(), "the document is invalid: {report}");
    assert!(report.contains("OK"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_renders_the_reference_in_headless_chromium() {
    let (_redis, app) = spawn_single().await;
    let url = format!("{}{DOCS_PATH}/", app.base);
    let dom = browser::dom_of(&url);
    for shown in [
        "flashgate",
        "/api/v1/sales/{sale_id}/purchase",
        "/admin/v1/sales/{sale_id}/pause",
        "Buy units",
    ] {
        assert!(
            dom.contains(shown),
            "the rendered reference lacks {shown:?}"
        );
    }
    let shot = browser::screenshot(&url, "docs");
    assert!(std::fs::metadata(shot).unwrap().len() > 10_000);
}
