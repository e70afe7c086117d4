//! The web UI: three static files embedded in the binary (nothing is fetched at run time),
//! served with a Content-Security-Policy that allows only this server's own scripts, styles,
//! API and media — an injected string can neither run nor load anything.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

const INDEX_HTML: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
const STYLE_CSS: &str = include_str!("../../web/style.css");

/// What a page of ours may load: only from this server; video from `blob:` URLs (Media Source
/// Extensions); never framed by another site.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn file(body: &'static str, content_type: &'static str) -> Response {
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY)),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        // A new binary's UI is used at once: the files are small and served from memory.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    (headers, body).into_response()
}

/// `GET /`: the page.
pub async fn index() -> Response {
    file(INDEX_HTML, "text/html; charset=utf-8")
}

/// `GET /app.js`: the page's script.
pub async fn app_js() -> Response {
    file(APP_JS, "text/javascript; charset=utf-8")
}

/// `GET /style.css`: the page's style.
pub async fn style_css() -> Response {
    file(STYLE_CSS, "text/css; charset=utf-8")
}
