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
pub const SESSION_COOKIE: &str = "hive_session";

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
        (name = "video", description = "What is recorded of a camera: its recording status and recorded ranges."),
        (name = "users", description = "Accounts and their roles."),
        (name = "settings", description = "The system's named settings, text values."),
        (name = "licenses", description = "License keys and the channels they grant."),
        (name = "admin", description = "The owner's operations on the whole system: merge, split, rename, backup, new keys."),
        (name = "metrics", description = "Prometheus metrics of the answering server."),
    )
)]
pub struct ApiDoc;

const DESCRIPTION: &str = "\
Hive's HTTP API. Any server of a system answers it: cameras, users, settings and licenses are \
replicated to every server. Answers that depend on the server (time, recording status, metrics) \
say so.

**Authentication.** HTTP Basic with a Hive user's name and password (`basic`), or the web UI's \
session cookie `hive_session` (`session`). A viewer reads; an admin also changes cameras, users, \
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
