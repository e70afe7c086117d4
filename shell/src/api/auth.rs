//! Who is calling: HTTP Basic credentials checked against the replicated users, a cache of
//! recent successes (argon2 is slow on purpose), and limits on failures that are applied
//! before any password is checked ([`LoginLimiter`]).

use super::login_limit::{LoginLimiter, Refusal};
use super::{ApiError, AppState};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use hive_core::resources::{PasswordVerifier, Role};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long a checked password is trusted without deriving its key again.
const CACHE_TTL: Duration = Duration::from_secs(300);
/// Checked credentials remembered at most.
const CACHE_LEN_MAX: usize = 10_000;

pub(super) type Digest32 = [u8; 32];

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// The user's password key when the caller was checked: a changed password revokes it.
    pub(super) key: [u8; 32],
    /// The digest of the web session's token, when the caller came with one.
    pub(super) session: Option<Digest32>,
}

/// How often a long answer (an event stream, a video) checks that its caller still holds.
pub const REVOCATION_CHECK: Duration = Duration::from_secs(1);

impl Caller {
    /// A caller of HTTP Basic credentials.
    pub(super) fn basic(name: String, verifier: &PasswordVerifier, role: Role) -> Self {
        Caller { name, role, key: verifier.key, session: None }
    }

    /// A caller of no credentials, for handler tests.
    #[cfg(test)]
    pub(crate) fn for_test(name: &str, role: Role) -> Self {
        Caller { name: name.to_owned(), role, key: [0; 32], session: None }
    }

    /// Whether the caller still stands as checked: the user exists with the same role and
    /// password, and its web session (if it came with one) is still open.
    pub(super) async fn still_holds(&self, state: &AppState) -> bool {
        if let Some(session) = &self.session {
            if !state.auth.sessions.is_open(session, Instant::now()) {
                return false;
            }
        }
        let name = self.name.clone();
        let user = state.handle.read(move |n| n.user(&name).map(|(_, u)| (u.role, u.password.key)));
        matches!(user.await, Ok(Some((role, key))) if role == self.role && key == self.key)
    }

    /// Completes once the caller no longer holds (logged out, its password changed, its role
    /// changed, the user removed, or the server stopping): a long answer ends with it, so
    /// access never outlives the credentials it was given for.
    pub(super) async fn revoked(self, state: AppState) {
        loop {
            tokio::time::sleep(REVOCATION_CHECK).await;
            if !self.still_holds(&state).await {
                tracing::debug!(user = ?self.name, "caller revoked; ending its stream");
                return;
            }
        }
    }

    /// Refuses callers below `Admin`.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Owner | Role::Admin => Ok(()),
            Role::Viewer => Err(ApiError::forbidden("this needs an administrator")),
        }
    }

    /// Refuses callers who are not the owner.
    pub fn require_owner(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Owner => Ok(()),
            _ => Err(ApiError::forbidden("this needs the system owner")),
        }
    }
}

/// Failure limits and the cache of checked credentials.
#[derive(Default)]
pub struct AuthState {
    limiter: LoginLimiter,
    /// `digest(name, password, salt)` → verified key and when it was checked.
    checked: Mutex<HashMap<Digest32, ([u8; 32], Instant)>>,
    /// Checks in flight by credentials digest: identical requests in parallel (a client's
    /// first burst) wait for one check instead of each counting an attempt.
    in_flight: Mutex<HashMap<Digest32, watch::Receiver<Option<Checked>>>>,
    /// Keys the digests so they are useless outside this process.
    pepper: [u8; 32],
    /// The web UI's sessions on this server.
    pub sessions: super::session::Sessions,
}

/// What one check of some credentials found, shared with the requests that waited for it.
#[derive(Clone, Debug)]
enum Checked {
    Right,
    Wrong,
    Refused(ApiError),
}

/// Whether this request checks its credentials or waits for an identical one that does.
enum Turn<'a> {
    Lead(Lead<'a>),
    Follow(watch::Receiver<Option<Checked>>),
}

/// The request that checks; leaving (even if its client goes away) frees the digest.
struct Lead<'a> {
    auth: &'a AuthState,
    digest: Digest32,
    outcome: watch::Sender<Option<Checked>>,
}

impl Lead<'_> {
    fn finish(self, checked: Checked) {
        let _ = self.outcome.send(Some(checked));
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        self.auth.in_flight.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.digest);
    }
}

impl AuthState {
    /// Fresh state with a random pepper.
    pub fn new() -> Self {
        AuthState { pepper: rand::random(), ..AuthState::default() }
    }

    /// A digest of credentials, with the salt of the user's verifier (`None`: unknown user).
    fn digest(&self, name: &str, password: &str, verifier: Option<&PasswordVerifier>) -> Digest32 {
        Sha256::new_with_prefix(self.pepper)
            .chain_update((name.len() as u64).to_le_bytes())
            .chain_update(name)
            .chain_update(verifier.map_or([0; 17], |v| {
                let mut known = [1; 17];
                known[1..].copy_from_slice(&v.salt);
                known
            }))
            .chain_update(password)
            .finalize()
            .into()
    }

    fn turn(&self, digest: Digest32) -> Turn<'_> {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(outcome) = in_flight.get(&digest) {
            return Turn::Follow(outcome.clone());
        }
        let (outcome, waiting) = watch::channel(None);
        in_flight.insert(digest, waiting);
        Turn::Lead(Lead { auth: self, digest, outcome })
    }

    /// Whether these credentials were checked recently (no derivation needed).
    fn recently_checked(&self, digest: &Digest32, verifier: &PasswordVerifier) -> bool {
        let checked = self.checked.lock().unwrap_or_else(PoisonError::into_inner);
        checked
            .get(digest)
            .is_some_and(|(key, at)| *key == verifier.key && at.elapsed() < CACHE_TTL)
    }

    fn remember(&self, digest: Digest32, verifier: &PasswordVerifier) {
        let mut checked = self.checked.lock().unwrap_or_else(PoisonError::into_inner);
        if checked.len() >= CACHE_LEN_MAX {
            checked.clear();
        }
        checked.insert(digest, (verifier.key, Instant::now()));
    }
}

/// 429 with how long to wait.
fn too_many(refusal: Refusal, ip: IpAddr) -> ApiError {
    let wait_s = refusal.wait().as_secs() + 1;
    let whose = match refusal {
        Refusal::Address { .. } => format!("from {ip}"),
        Refusal::User { .. } => "for this user".to_owned(),
    };
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_failures",
        format!("too many failed logins {whose}; try again in {wait_s} s"),
    );
    e.retry_after_s = Some(wait_s);
    e
}

pub(super) fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// Splits an `Authorization: Basic` header into name and password.
fn basic_credentials(parts: &Parts) -> Option<(String, String)> {
    use base64::Engine;
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic "))?;
    let text =
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?)
            .ok()?;
    let (name, password) = text.split_once(':')?;
    Some((name.to_owned(), password.to_owned()))
}

/// The address a request came from (`0.0.0.0` when the server did not record it).
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ip = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        Ok(ClientIp(ip.unwrap_or(IpAddr::from([0, 0, 0, 0]))))
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    /// HTTP Basic when the request carries it (integrators, the CLI), else the web UI's
    /// session cookie, which changes nothing without the session's CSRF token.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Ok(ClientIp(ip)) = ClientIp::from_request_parts(parts, state).await;
        if let Some((name, password)) = basic_credentials(parts) {
            return authenticate(state, ip, name, password).await;
        }
        if let Some(token) = super::session::cookie_token(&parts.headers) {
            return super::session::caller(state, parts, &token).await;
        }
        let mut refusal = unauthorized("credentials required (HTTP Basic or a session)");
        // A page's script asking gets no Basic challenge: the browser would answer it with
        // its own password dialog instead of letting the page show its login form.
        if parts.headers.get("sec-fetch-mode").is_some_and(|m| m != "navigate") {
            refusal.challenge = false;
        }
        Err(refusal)
    }
}

/// Checks `name` and `password` against the replicated users, within the failure limits.
pub(super) async fn authenticate(
    state: &AppState,
    ip: IpAddr,
    name: String,
    password: String,
) -> Result<Caller, ApiError> {
    let lookup = name.clone();
    let user = state
        .handle
        .read(move |node| {
            node.user(&lookup).map(|(_, u)| (u.role, u.password.clone(), u.login.is_some()))
        })
        .await?;
    let needs_login = user.as_ref().is_some_and(|u| !u.2);
    let user = user.map(|(role, verifier, _)| (role, verifier));
    let auth = &state.auth;
    let verifier = user.as_ref().map(|(_, v)| v);
    let digest = auth.digest(&name, &password, verifier);
    if let Some((role, verifier)) = &user {
        if auth.recently_checked(&digest, verifier) {
            // Checked before: the limits still apply (a blocked caller stays blocked
            // whatever it sends), but nothing is counted and no key is derived.
            auth.limiter.admit(&name, ip, Instant::now()).map_err(|r| too_many(r, ip))?;
            return Ok(Caller::basic(name, verifier, *role));
        }
    }
    let checked = match auth.turn(digest) {
        Turn::Follow(mut outcome) => {
            let shared = outcome.wait_for(Option::is_some).await.ok().and_then(|c| c.clone());
            let checked = shared.ok_or_else(|| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "check_abandoned",
                    "the check of these credentials was abandoned; try again",
                )
            })?;
            if let Checked::Right = checked {
                auth.limiter.admit(&name, ip, Instant::now()).map_err(|r| too_many(r, ip))?;
            }
            checked
        }
        // An identical check may have finished since the cache was looked at.
        Turn::Lead(lead) if verifier.is_some_and(|v| auth.recently_checked(&digest, v)) => {
            let admitted = auth.limiter.admit(&name, ip, Instant::now());
            let checked =
                admitted.map_or_else(|r| Checked::Refused(too_many(r, ip)), |()| Checked::Right);
            lead.finish(checked.clone());
            checked
        }
        Turn::Lead(lead) => {
            let checked = match auth.limiter.reserve(&name, ip, Instant::now()) {
                Err(refusal) => {
                    tracing::debug!(user = ?name, %ip, "login refused: too many failures");
                    Checked::Refused(too_many(refusal, ip))
                }
                // Known or not, exactly one derivation: an unknown name meets a dummy.
                Ok(attempt) => match state.passwords.verify(&password, verifier).await? {
                    true => {
                        auth.limiter.succeeded(attempt, Instant::now());
                        if needs_login {
                            super::login_migration::register_in_background(
                                state,
                                name.clone(),
                                password.clone(),
                            );
                        }
                        if let Some(v) = verifier {
                            auth.remember(digest, v);
                        }
                        Checked::Right
                    }
                    false => {
                        // Debug-formatted: a newline in a name cannot forge a log line.
                        tracing::info!(user = ?name, %ip, "failed login");
                        Checked::Wrong
                    }
                },
            };
            lead.finish(checked.clone());
            checked
        }
    };
    match (checked, user) {
        (Checked::Right, Some((role, verifier))) => Ok(Caller::basic(name, &verifier, role)),
        (Checked::Refused(e), _) => Err(e),
        _ => Err(unauthorized("wrong user name or password")),
    }
}
