//! The API's OpenAPI 3 document for integrators, served without authentication at
//! `GET /api/openapi.json` (it says what the API is, nothing about the system).
//!
//! Built from the handlers' `#[utoipa::path]` annotations by the same `routes!` calls that
//! route them ([`super::routes`]), so a route cannot be served under another method or path
//! than the one documented. The tests below check the rest: every documented operation
//! reaches a handler of the real router and asks for credentials exactly when it says so,
//! and the router holds no route outside the document but the web UI's static files.

use super::error::ErrorBody;
use axum::Json;
use std::collections::BTreeMap;
use std::sync::LazyLock;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, OpenApi as Document, Ref, RefOr, Response, ResponseBuilder,
    ResponsesBuilder,
};
use utoipa::{IntoResponses, Modify, OpenApi, PartialSchema};

/// The cookie of the web UI's session.
pub const SESSION_COOKIE: &str = "__Host-hive_session";

/// What the document says before its paths: title, version, authentication, tags.
#[derive(OpenApi)]
#[openapi(
    info(title = "Hive API", version = env!("CARGO_PKG_VERSION"), description = DESCRIPTION),
    modifiers(&SecuritySchemes),
    components(schemas(ErrorBody)),
    tags(
        (name = "system", description = "The system as a whole: its identity and time, and this document."),
        (name = "servers", description = "The servers of the system, their failover settings and the routes between them."),
        (name = "cameras", description = "Cameras: add, change and remove them; where they are recorded and played."),
        (name = "video", description = "A camera's video: its recording status, recorded ranges, and its live or recorded video as fragmented MP4 (HTTP or WebSocket)."),
        (name = "users", description = "Accounts and their roles."),
        (name = "settings", description = "The system's named settings, text values."),
        (name = "licenses", description = "License keys and the channels they grant."),
        (name = "admin", description = "The owner's operations on the whole system: merge, split, rename, backup, new keys."),
        (name = "metrics", description = "Prometheus metrics of the answering server."),
        (name = "session", description = "The web UI's login: a session cookie and its CSRF token."),
    )
)]
pub struct ApiDoc;

const DESCRIPTION: &str = "\
Hive's HTTP API. Any server of a system answers it: cameras, users, settings and licenses are \
replicated to every server. Answers that depend on the server (time, recording status, metrics) \
say so.

**Authentication.** HTTP Basic with a Hive user's name and password (`basic`), or the web UI's \
session cookie `__Host-hive_session` (`session`, from `POST /api/session`; a request of a session that \
changes something must carry the session's `csrf` in `X-CSRF-Token`). A viewer reads; an admin also changes cameras, users, \
settings, servers and licenses; the owner also merges, splits and renames the system, takes \
backups and replaces its keys. Failed logins are limited per user and per address: past the \
limit every request of that user or address answers 429 with `Retry-After`, right password or not.

**Errors.** Every error answer is JSON `{ \"error\": code, \"message\": text }`: branch on \
`error`, show `message`.

**Values.** Ids are 32 hexadecimal digits. Times are ms since the Unix epoch unless the field's \
name gives another unit (`_us`: µs).";

/// Declares `basic` and `session`, the two ways a route marked with them accepts a caller.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, document: &mut Document) {
        let components = document.components.get_or_insert_with(Default::default);
        let basic = HttpBuilder::new()
            .scheme(HttpAuthScheme::Basic)
            .description(Some("A Hive user's name and password."))
            .build();
        components.add_security_scheme("basic", SecurityScheme::Http(basic));
        let session =
            ApiKeyValue::with_description(SESSION_COOKIE, "The web UI's session, set at login.");
        components.add_security_scheme("session", SecurityScheme::ApiKey(ApiKey::Cookie(session)));
    }
}

/// An error answer whose body is [`ErrorBody`].
fn error_response(description: &str) -> ResponseBuilder {
    let body = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
    ResponseBuilder::new().description(description).content("application/json", body)
}

/// The server is stopping (or a credentials check it shared was abandoned): try again, or
/// another server.
fn unavailable() -> Response {
    error_response("The server is stopping (`stopping`); ask again or ask another server.").build()
}

/// What a route that takes a [`Caller`](super::Caller) may answer before its handler runs.
pub struct CallerRejections;

impl IntoResponses for CallerRejections {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let challenge = HeaderBuilder::new()
            .schema(String::schema())
            .description(Some("`Basic realm=\"hive\"`"))
            .build();
        let retry_after = HeaderBuilder::new()
            .schema(u64::schema())
            .description(Some("Seconds to wait before trying again."))
            .build();
        ResponsesBuilder::new()
            .response(
                "401",
                error_response(
                    "No credentials, or a wrong user name or password (`unauthorized`).",
                )
                .header("WWW-Authenticate", challenge),
            )
            .response(
                "429",
                error_response(
                    "Too many failed logins for this user or from this address \
                     (`too_many_failures`); nothing is checked until `Retry-After` has passed.",
                )
                .header("Retry-After", retry_after),
            )
            .response("503", unavailable())
            .build()
            .into()
    }
}

/// What a route without authentication that reads the server's state may answer instead.
pub struct Unavailable;

impl IntoResponses for Unavailable {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        ResponsesBuilder::new().response("503", unavailable()).build().into()
    }
}

/// What a route that takes a JSON body ([`Body`](super::Body)) may answer besides the 400 of
/// a malformed one, which each route documents with its own reasons.
pub struct BodyRejections;

impl IntoResponses for BodyRejections {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        ResponsesBuilder::new()
            .response("413", error_response("The body is too large (`payload_too_large`)."))
            .response(
                "415",
                error_response(
                    "The body is not declared `Content-Type: application/json` \
                     (`unsupported_media_type`).",
                ),
            )
            .build()
            .into()
    }
}

/// The document: [`ApiDoc`] with every route of [`super::routes`].
pub fn document() -> Document {
    super::routes().into_openapi()
}

/// Built once: it depends on nothing but the code.
static DOCUMENT: LazyLock<Document> = LazyLock::new(document);

/// This document.
///
/// The OpenAPI 3 description of every route of the API, for client generators and API
/// explorers. It needs no credentials: it describes the API, not the system.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "system",
    operation_id = "get_openapi",
    responses((status = 200, description = "The OpenAPI document.", body = Object)),
)]
pub async fn openapi_json() -> Json<&'static Document> {
    Json(&DOCUMENT)
}

#[cfg(test)]
mod tests {
    //! axum's `Router` cannot list its routes, so the router and the document are built from
    //! one table ([`super::super::routes`], whose `routes!` take each method and path from the
    //! handler's annotation). What the table cannot rule out is checked here against the real
    //! router: a documented operation that no handler answers (or answers under other
    //! methods), security that does not match what the handler asks for, and a plain
    //! `.route(..)` that serves a path without documenting it.

    use super::super::{router, stopped_state, AppState, NO_SUCH_ENDPOINT};
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use serde_json::Value;
    use std::collections::BTreeSet;
    use tower::ServiceExt;

    /// Paths the router serves that are not part of the API, and why they are left out of the
    /// document. Only these may be routed with a plain `.route(..)` in `mod.rs`.
    const NOT_API: [(&str, &str); 3] = [
        ("/", "the web UI's page, a static file"),
        ("/app.js", "the web UI's script, a static file"),
        ("/style.css", "the web UI's style sheet, a static file"),
    ];

    /// The methods a path item of OpenAPI 3 may hold.
    const OPERATIONS: [&str; 8] =
        ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

    /// Methods probed on every documented path: each either is documented there or answers
    /// 405. (axum answers `HEAD` wherever it answers `GET`, and `OPTIONS` nowhere; neither is
    /// part of the API.)
    const PROBED: [&str; 5] = ["get", "post", "put", "patch", "delete"];

    /// The status and JSON body (`Null` if none) of `method path` without credentials.
    async fn ask(state: &AppState, method: &str, path: &str) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(Method::from_bytes(method.to_uppercase().as_bytes()).unwrap())
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let response = router(state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// Whether an answer is the router's fallback: no route has that path.
    fn is_fallback(status: StatusCode, body: &Value) -> bool {
        status == StatusCode::NOT_FOUND && body["message"] == NO_SUCH_ENDPOINT
    }

    /// The document as `GET /api/openapi.json` serves it.
    async fn served_document(state: &AppState) -> Value {
        let (status, document) = ask(state, "get", "/api/openapi.json").await;
        assert_eq!(status, StatusCode::OK);
        document
    }

    /// `path` with every `{parameter}` filled in with a valid id (also a valid setting name).
    fn concrete(path: &str) -> String {
        let mut out = String::new();
        let mut rest = path;
        while let Some((before, after)) = rest.split_once('{') {
            let (_, after) = after.split_once('}').unwrap();
            out.push_str(before);
            out.push_str("0000000000000000000000000000abcd");
            rest = after;
        }
        out.push_str(rest);
        out
    }

    /// Every (path, method, operation) of the document.
    fn operations(document: &Value) -> Vec<(&str, &str, &Value)> {
        let paths = document["paths"].as_object().unwrap();
        let mut all = Vec::new();
        for (path, item) in paths {
            for method in OPERATIONS {
                if let Some(operation) = item.get(method) {
                    all.push((path.as_str(), method, operation));
                }
            }
        }
        all
    }

    #[tokio::test]
    async fn every_documented_operation_reaches_its_handler_and_asks_for_credentials_as_documented()
    {
        let state = stopped_state();
        let (status, body) = ask(&state, "get", "/api/no-such-thing").await;
        assert!(is_fallback(status, &body), "the fallback is recognised: {status} {body}");
        let document = served_document(&state).await;
        let operations = operations(&document);
        // A floor, so that a document that lost its paths cannot pass by checking nothing.
        assert!(operations.len() >= 30, "{} operations", operations.len());
        for (path, method, operation) in &operations {
            let (status, body) = ask(&state, method, &concrete(path)).await;
            let what = format!("{} {path}: {status} {body}", method.to_uppercase());
            assert!(!is_fallback(status, &body), "documented but not routed: {what}");
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "documented but not routed: {what}");
            let secured = operation["security"].as_array().is_some_and(|s| !s.is_empty());
            if secured {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "documented as authenticated: {what}");
            } else {
                assert_ne!(status, StatusCode::UNAUTHORIZED, "documented as public: {what}");
            }
        }
        for (path, item) in document["paths"].as_object().unwrap() {
            for method in PROBED.iter().filter(|m| item.get(**m).is_none()) {
                let (status, body) = ask(&state, method, &concrete(path)).await;
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "served but not documented: {} {path}: {body}",
                    method.to_uppercase()
                );
            }
        }
    }

    /// The string literal `text` starts with (after white space), if it starts with one.
    fn path_literal(text: &str) -> Option<&str> {
        let rest = text.trim_start().strip_prefix('"')?;
        rest.split_once('"').map(|(path, _)| path)
    }

    #[test]
    fn the_router_serves_no_path_outside_the_document_but_the_listed_ones() {
        // Routes added with `routes!` are documented by construction; a plain `.route(..)`
        // (or `.route_service`, `.nest`, `.nest_service`) is not, so each one in mod.rs must
        // be a path of `NOT_API`.
        let source = include_str!("mod.rs");
        let code: String = source
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .map(|line| format!("{line}\n"))
            .collect();
        let not_api: BTreeSet<&str> = NOT_API.iter().map(|(path, _)| *path).collect();
        for call in [".route(", ".route_service(", ".nest(", ".nest_service("] {
            for (at, _) in code.match_indices(call) {
                let path = path_literal(&code[at + call.len()..]);
                let Some(path) = path else {
                    panic!("`{call}..)` in mod.rs must name its path as a literal");
                };
                assert!(
                    not_api.contains(path),
                    "{path} is served with `{call}..)` but not documented: route it with \
                     `routes!` and a `#[utoipa::path]` on its handler, or, if it is not part of \
                     the API, list it in NOT_API with the reason"
                );
            }
        }
        let documented = super::document();
        for (path, _) in NOT_API {
            assert!(!documented.paths.paths.contains_key(path), "{path} is listed as not API");
        }
    }

    /// Every `$ref` under `value`.
    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r);
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[tokio::test]
    async fn the_served_document_is_openapi_3_with_an_answer_for_every_operation() {
        let document = served_document(&stopped_state()).await;
        assert!(document["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{document}");
        assert_eq!(document["info"]["title"], "Hive API");
        assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
        let schemes = &document["components"]["securitySchemes"];
        assert_eq!(
            schemes["basic"],
            serde_json::json!({
                "type": "http", "scheme": "basic", "description": "A Hive user's name and password."
            })
        );
        assert_eq!(schemes["session"]["type"], "apiKey");
        assert_eq!(schemes["session"]["in"], "cookie");
        assert_eq!(schemes["session"]["name"], super::SESSION_COOKIE);
        let tags: BTreeSet<&str> = document["tags"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();

        let paths = document["paths"].as_object().unwrap();
        assert!(!paths.is_empty());
        for (path, item) in paths {
            assert!(OPERATIONS.iter().any(|m| item.get(*m).is_some()), "{path} has no operation");
        }
        let mut operation_ids = BTreeSet::new();
        for (path, method, operation) in operations(&document) {
            let what = format!("{} {path}", method.to_uppercase());
            let id = operation["operationId"].as_str().unwrap_or_default();
            assert!(operation_ids.insert(id), "{what}: operationId {id:?} is not unique");
            assert!(operation["summary"].as_str().is_some_and(|s| !s.is_empty()), "{what}");
            let responses = operation["responses"].as_object().unwrap();
            // A success: 2xx, or 101 for the WebSocket of a camera's video.
            let success = |code: &str| code.starts_with('2') || code == "101";
            assert!(responses.keys().any(|code| success(code)), "{what}: no success");
            for (code, response) in responses.iter().filter(|(code, _)| !success(code)) {
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(schema, "#/components/schemas/ErrorBody", "{what}: {code}");
            }
            let operation_tags = operation["tags"].as_array().unwrap();
            assert_eq!(operation_tags.len(), 1, "{what}: one area");
            assert!(
                tags.contains(operation_tags[0].as_str().unwrap()),
                "{what}: {operation_tags:?}"
            );
            for requirement in operation["security"].as_array().into_iter().flatten() {
                for scheme in requirement.as_object().unwrap().keys() {
                    assert!(schemes.get(scheme).is_some(), "{what}: undeclared {scheme}");
                }
            }
            if let Some(security) = operation["security"].as_array() {
                let both = serde_json::json!([{ "basic": [] }, { "session": [] }]);
                assert_eq!(
                    Value::Array(security.clone()),
                    both,
                    "{what}: either way of logging in"
                );
            }
            let parameters: BTreeSet<&str> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str())
                .collect();
            let in_path: BTreeSet<&str> = path
                .split('{')
                .skip(1)
                .filter_map(|part| part.split_once('}').map(|(name, _)| name))
                .collect();
            assert_eq!(parameters, in_path, "{what}: path parameters");
        }
        let mut all_refs = Vec::new();
        refs(&document, &mut all_refs);
        for r in all_refs {
            let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("external $ref {r}"));
            assert!(document.pointer(pointer).is_some(), "$ref {r} resolves to nothing");
        }
    }

    #[test]
    fn the_documented_maximum_of_max_cameras_is_the_enforced_one() {
        let document = serde_json::to_value(super::document()).unwrap();
        let maximum = &document["components"]["schemas"]["ServerChange"]["properties"]
            ["max_cameras"]["maximum"];
        assert_eq!(maximum.as_u64(), Some(u64::from(super::super::servers::MAX_CAMERAS_MAX)));
    }
}
