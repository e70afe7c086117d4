//! Requests from other sites' pages are refused before they reach a handler.
//!
//! A browser attaches credentials to requests another site's page starts: HTTP Basic
//! credentials it cached from its own login dialog (SameSite does not cover them), and the
//! session cookie to a top-level form post if it ever went cross-site. Every browser names the
//! page's origin in `Origin` (and modern ones the relation in `Sec-Fetch-Site`) on such a
//! request, and a page cannot forge either. So every request that may change something, and
//! every WebSocket handshake, is refused when the browser says it came from elsewhere.
//! Clients that are not browsers (the CLI, scripts, other servers) send neither header.

use super::ApiError;
use axum::extract::Request;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Whether `headers` say the request came from a page of this server's own origin, or from
/// no page at all.
pub fn check(headers: &HeaderMap) -> Result<(), ApiError> {
    let text = |name| headers.get(name).map(|v| v.to_str().unwrap_or(""));
    if let Some(site) = text("sec-fetch-site") {
        // `none`: the person typed the address or used a bookmark.
        if site != "same-origin" && site != "none" {
            return Err(refused(format!("a request from a {site} page")));
        }
    }
    let Some(origin) = text(header::ORIGIN.as_str()) else { return Ok(()) };
    // `null`: a sandboxed frame, a file, a redirect from elsewhere — never this server's page.
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    let host = text(header::HOST.as_str());
    match (origin_host, host) {
        (Some(origin_host), Some(host)) if origin_host.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err(refused(format!("a request from {origin:?}"))),
    }
}

fn refused(what: String) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "cross_origin",
        format!("{what} may not act on this server; use its own pages"),
    )
}

/// Whether a request of `method` may change something (and so must not come from elsewhere).
fn may_change(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The middleware: refuses a changing request or a WebSocket handshake from another origin.
pub async fn refuse_cross_site(request: Request, next: Next) -> Response {
    let handshake = request.headers().contains_key(header::UPGRADE);
    if may_change(request.method()) || handshake {
        if let Err(e) = check(request.headers()) {
            tracing::debug!(method = %request.method(), path = %request.uri().path(), "{}", e.message);
            return e.into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8443"));
        for (name, value) in pairs {
            h.insert(*name, HeaderValue::from_static(value));
        }
        h
    }

    #[test]
    fn our_own_pages_and_clients_without_a_page_pass() {
        assert!(check(&headers(&[])).is_ok(), "the CLI sends no Origin");
        assert!(check(&headers(&[("origin", "https://127.0.0.1:8443")])).is_ok());
        assert!(check(&headers(&[
            ("origin", "https://127.0.0.1:8443"),
            ("sec-fetch-site", "same-origin")
        ]))
        .is_ok());
        assert!(
            check(&headers(&[("sec-fetch-site", "none")])).is_ok(),
            "typed into the address bar"
        );
    }

    #[test]
    fn another_origin_a_null_origin_or_another_site_is_refused() {
        for pairs in [
            &[("origin", "https://evil.example")][..],
            &[("origin", "https://127.0.0.1:8444")],
            &[("origin", "null")],
            &[("sec-fetch-site", "cross-site")],
            &[("sec-fetch-site", "same-site")],
            &[("origin", "https://127.0.0.1:8443"), ("sec-fetch-site", "cross-site")],
        ] {
            let e = check(&headers(pairs)).unwrap_err();
            assert_eq!((e.status, e.code), (StatusCode::FORBIDDEN, "cross_origin"), "{pairs:?}");
        }
    }
}
