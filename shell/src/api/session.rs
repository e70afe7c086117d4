//! The web UI's sessions: a login with name and password sets an `HttpOnly; Secure;
//! SameSite=Strict` cookie, and every request that changes something must also carry the
//! session's CSRF token in `X-CSRF-Token` (a header another site's form cannot send). The
//! cookie's `__Host-` prefix keeps a sibling subdomain or a plain-HTTP page from planting a
//! session of its own choosing in the browser.
//!
//! Sessions live in this server's memory only: a restart logs its pages out, and a password
//! change or a removed user ends every session of that user at its next request.

use super::auth::{authenticate, unauthorized, ClientIp, Digest32};
use super::body::LOGIN_BYTES_MAX;
use super::error::ErrorBody;
use super::openapi::{BodyRejections, CallerRejections};
use super::users::RoleName;
use super::{ApiError, AppState, Body, Caller};
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use utoipa::ToSchema;

/// The session cookie's name.
pub const COOKIE: &str = super::openapi::SESSION_COOKIE;
/// The header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// A session unused this long ends.
pub const IDLE_MAX: Duration = Duration::from_secs(12 * 3600);
/// A session ends this long after its login, used or not.
pub const LIFETIME_MAX: Duration = Duration::from_secs(7 * 24 * 3600);
/// Sessions kept at most; a login beyond ends the least recently used one.
pub const SESSIONS_MAX: usize = 10_000;
/// Sessions of one user kept at most; a login beyond ends that user's least recently used
/// one, so one user logging in again and again cannot end everybody else's sessions.
pub const SESSIONS_PER_USER_MAX: usize = 32;

fn digest(text: &str) -> Digest32 {
    Sha256::digest(text.as_bytes()).into()
}

/// One logged-in page.
#[derive(Clone)]
struct Session {
    name: String,
    csrf: String,
    /// The user's password key at login: a changed password ends the session.
    key: [u8; 32],
    opened: Instant,
    used: Instant,
}

impl Session {
    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.used) > IDLE_MAX || now.duration_since(self.opened) > LIFETIME_MAX
    }
}

/// The sessions of this server, by a digest of their token (the token itself is only in the
/// browser's cookie).
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<Digest32, Session>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Digest32, Session>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens a session for `name`: its token and CSRF token.
    fn open(&self, name: String, key: [u8; 32], now: Instant) -> (String, String) {
        let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let csrf = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let mut open = self.lock();
        open.retain(|_, s| !s.expired(now));
        let least_recently_used = |open: &HashMap<Digest32, Session>, of: Option<&str>| {
            open.iter()
                .filter(|(_, s)| of.is_none_or(|name| s.name == name))
                .min_by_key(|(_, s)| s.used)
                .map(|(d, _)| *d)
        };
        if open.values().filter(|s| s.name == name).count() >= SESSIONS_PER_USER_MAX {
            if let Some(oldest) = least_recently_used(&open, Some(&name)) {
                open.remove(&oldest);
            }
        }
        if open.len() >= SESSIONS_MAX {
            if let Some(oldest) = least_recently_used(&open, None) {
                open.remove(&oldest);
            }
        }
        let session = Session { name, csrf: csrf.clone(), key, opened: now, used: now };
        open.insert(digest(&token), session);
        debug_assert!(open.len() <= SESSIONS_MAX);
        (token, csrf)
    }

    /// Whether the session of this token digest is still open (without marking it used).
    pub fn is_open(&self, token_digest: &Digest32, now: Instant) -> bool {
        self.lock().get(token_digest).is_some_and(|s| !s.expired(now))
    }

    /// The live session of `token`, marked used.
    fn find(&self, token: &str, now: Instant) -> Option<Session> {
        let mut open = self.lock();
        let d = digest(token);
        let session = open.get_mut(&d)?;
        if session.expired(now) {
            open.remove(&d);
            return None;
        }
        session.used = now;
        Some(session.clone())
    }

    fn close(&self, token: &str) {
        self.lock().remove(&digest(token));
    }

    /// Sessions open now (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The session token in a request's cookies, if any.
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// A 401 that names no Basic challenge: the page shows its own login form.
fn logged_out(message: &str) -> ApiError {
    let mut e = unauthorized(message);
    e.challenge = false;
    e
}

/// The caller a session cookie stands for; a request that changes something must carry the
/// session's CSRF token (and come from this server's own origin: [`super::same_origin`]).
pub async fn caller(state: &AppState, parts: &Parts, token: &str) -> Result<Caller, ApiError> {
    let sessions = &state.auth.sessions;
    let session = sessions
        .find(token, Instant::now())
        .ok_or_else(|| logged_out("the session ended; log in again"))?;
    let name = session.name.clone();
    let user =
        state.handle.read(move |n| n.user(&name).map(|(_, u)| (u.role, u.password.key))).await?;
    let role = match user {
        Some((role, key)) if key == session.key => role,
        _ => {
            sessions.close(token);
            return Err(logged_out("the user was removed or its password changed; log in again"));
        }
    };
    if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        check_csrf(&parts.headers, &session.csrf)?;
    }
    Ok(Caller { name: session.name, role, key: session.key, session: Some(digest(token)) })
}

/// Refuses a changing request without the session's CSRF token.
fn check_csrf(headers: &HeaderMap, csrf: &str) -> Result<(), ApiError> {
    let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    // Digests compared: no timing tells how much of a guess was right.
    if digest(sent) != digest(csrf) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "this request needs the session's X-CSRF-Token header",
        ));
    }
    Ok(())
}

/// `POST /api/session`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    name: String,
    password: String,
}

/// Who a session is.
#[derive(Serialize, ToSchema)]
pub struct SessionView {
    /// Login name.
    pub name: String,
    /// Role.
    pub role: RoleName,
    /// The token to send in `X-CSRF-Token` with every request that changes something;
    /// `null` for a caller without a session (HTTP Basic).
    pub csrf: Option<String>,
}

fn set_cookie(value: &str) -> HeaderValue {
    // A token is URL-safe base64; an empty value clears the cookie.
    let max_age = if value.is_empty() { 0 } else { LIFETIME_MAX.as_secs() };
    let text =
        format!("{COOKIE}={value}; Path=/; Max-Age={max_age}; Secure; HttpOnly; SameSite=Strict");
    HeaderValue::from_str(&text)
        .unwrap_or_else(|_| HeaderValue::from_static("__Host-hive_session="))
}

/// Logs in with a user's name and password (the same limits on failures as HTTP Basic) and
/// sets the session cookie.
///
/// The answer's `csrf` must come back in `X-CSRF-Token` with every request of the session that
/// changes something. The cookie is `Secure; HttpOnly; SameSite=Strict`.
#[utoipa::path(
    post,
    path = "/api/session",
    tag = "session",
    operation_id = "log_in",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in; `Set-Cookie` carries the session.", body = SessionView,
         headers(("Set-Cookie" = String, description = "`__Host-hive_session=…; Path=/; Secure; HttpOnly; SameSite=Strict`"))),
        (status = 400, description = "The body is not `{name, password}`.", body = ErrorBody),
        (status = 401, description = "Wrong user name or password (`unauthorized`).", body = ErrorBody),
        (status = 429, description = "Too many failed logins (`too_many_failures`); see `Retry-After`.", body = ErrorBody),
        BodyRejections,
    ),
)]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Body(req): Body<LoginRequest, LOGIN_BYTES_MAX>,
) -> Result<Response, ApiError> {
    // The page shows its own form again: a Basic challenge would bring the browser's dialog.
    let caller = authenticate(&state, ip, req.name, req.password).await.map_err(|mut e| {
        e.challenge = false;
        e
    })?;
    let lookup = caller.name.clone();
    let key = state
        .handle
        .read(move |n| n.user(&lookup).map(|(_, u)| u.password.key))
        .await?
        .ok_or_else(|| logged_out("wrong user name or password"))?;
    let (token, csrf) = state.auth.sessions.open(caller.name.clone(), key, Instant::now());
    tracing::info!(user = ?caller.name, %ip, "web session opened");
    let view = SessionView { name: caller.name, role: caller.role.into(), csrf: Some(csrf) };
    Ok(([(header::SET_COOKIE, set_cookie(&token))], Json(view)).into_response())
}

/// Who the caller is, with its session's CSRF token: what a page asks when it loads.
#[utoipa::path(
    get,
    path = "/api/session",
    tag = "session",
    operation_id = "get_session",
    security(("basic" = []), ("session" = [])),
    responses(
        (status = 200, description = "The caller; `csrf` is `null` without a session.", body = SessionView),
        CallerRejections,
    ),
)]
pub async fn whoami(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
) -> Json<SessionView> {
    let csrf = cookie_token(&headers)
        .and_then(|t| state.auth.sessions.find(&t, Instant::now()))
        .map(|s| s.csrf);
    Json(SessionView { name: caller.name, role: caller.role.into(), csrf })
}

/// Ends the caller's session and clears its cookie.
#[utoipa::path(
    delete,
    path = "/api/session",
    tag = "session",
    operation_id = "log_out",
    security(("basic" = []), ("session" = [])),
    responses(
        (status = 200, description = "Logged out; `Set-Cookie` clears the cookie.", body = Object),
        (status = 403, description = "No or a wrong `X-CSRF-Token` (`csrf`), or another origin (`cross_origin`).", body = ErrorBody),
        CallerRejections,
    ),
)]
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    _caller: Caller,
) -> Response {
    if let Some(token) = cookie_token(&headers) {
        state.auth.sessions.close(&token);
    }
    ([(header::SET_COOKIE, set_cookie(""))], Json(serde_json::json!({}))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_token_only_until_it_idles_out() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let (token, csrf) = sessions.open("ann".into(), [1; 32], t0);
        assert_ne!(token, csrf);
        assert_eq!(sessions.find(&token, t0).map(|s| s.name), Some("ann".into()));
        assert!(sessions.find("not-the-token", t0).is_none());
        let later = t0 + IDLE_MAX + Duration::from_secs(1);
        assert!(sessions.find(&token, later).is_none());
        assert!(sessions.is_empty(), "an expired session is removed when found");
    }

    #[test]
    fn use_keeps_a_session_alive_but_not_past_its_lifetime() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let (token, _) = sessions.open("ann".into(), [1; 32], t0);
        let mut t = t0;
        while t < t0 + LIFETIME_MAX - IDLE_MAX {
            t += IDLE_MAX / 2;
            assert!(sessions.find(&token, t).is_some());
        }
        assert!(sessions.find(&token, t0 + LIFETIME_MAX + Duration::from_secs(1)).is_none());
    }

    #[test]
    fn logins_beyond_the_bound_end_the_least_recently_used_session() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let (first, _) = sessions.open("first".into(), [0; 32], t0);
        let (second, _) = sessions.open("second".into(), [0; 32], t0 + Duration::from_secs(1));
        sessions.find(&first, t0 + Duration::from_secs(2));
        for i in 2..SESSIONS_MAX {
            sessions.open(format!("u{i}"), [0; 32], t0 + Duration::from_secs(3));
        }
        assert_eq!(sessions.len(), SESSIONS_MAX);
        sessions.open("one more".into(), [0; 32], t0 + Duration::from_secs(4));
        assert_eq!(sessions.len(), SESSIONS_MAX);
        assert!(sessions.find(&second, t0 + Duration::from_secs(5)).is_none());
        assert!(sessions.find(&first, t0 + Duration::from_secs(5)).is_some());
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers
            .insert(header::COOKIE, HeaderValue::from_static("a=1; __Host-hive_session=tok; b=2"));
        assert_eq!(cookie_token(&headers).as_deref(), Some("tok"));
        headers.insert(header::COOKIE, HeaderValue::from_static("__Host-hive_sessionx=tok"));
        assert_eq!(cookie_token(&headers), None);
        // Without the prefix: planted by a page that could not set a `__Host-` cookie.
        headers.insert(header::COOKIE, HeaderValue::from_static("hive_session=tok"));
        assert_eq!(cookie_token(&headers), None);
    }

    #[test]
    fn a_changing_request_needs_the_token() {
        let mut headers = HeaderMap::new();
        assert_eq!(check_csrf(&headers, "right").unwrap_err().code, "csrf");
        headers.insert(CSRF_HEADER, HeaderValue::from_static("wrong"));
        assert_eq!(check_csrf(&headers, "right").unwrap_err().code, "csrf");
        headers.insert(CSRF_HEADER, HeaderValue::from_static("right"));
        assert!(check_csrf(&headers, "right").is_ok());
    }

    #[test]
    fn one_user_logging_in_again_and_again_ends_only_its_own_sessions() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let (owner, _) = sessions.open("owner".into(), [1; 32], t0);
        let mut viewer = Vec::new();
        for i in 0..SESSIONS_MAX as u64 {
            let at = t0 + Duration::from_millis(i + 1);
            viewer.push(sessions.open("viewer".into(), [2; 32], at).0);
        }
        let now = t0 + Duration::from_secs(60);
        assert!(sessions.find(&owner, now).is_some(), "the owner's session is untouched");
        assert_eq!(sessions.len(), 1 + SESSIONS_PER_USER_MAX);
        let kept = viewer.iter().filter(|t| sessions.find(t, now).is_some()).count();
        assert_eq!(kept, SESSIONS_PER_USER_MAX);
        assert!(sessions.find(viewer.last().unwrap(), now).is_some(), "the newest is kept");
    }

    #[test]
    fn a_closed_or_expired_session_is_no_longer_open() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let (token, _) = sessions.open("ann".into(), [1; 32], t0);
        assert!(sessions.is_open(&digest(&token), t0));
        assert!(!sessions.is_open(&digest(&token), t0 + IDLE_MAX + Duration::from_secs(1)));
        sessions.close(&token);
        assert!(!sessions.is_open(&digest(&token), t0));
    }

    #[test]
    fn the_cookie_is_secure_http_only_and_strict() {
        let v = set_cookie("tok");
        let text = v.to_str().unwrap();
        for part in ["__Host-hive_session=tok", "Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(text.contains(part), "{text}");
        }
        assert!(set_cookie("").to_str().unwrap().contains("Max-Age=0"));
    }
}
