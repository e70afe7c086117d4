//! Who is calling: HTTP Basic credentials checked against the replicated users, a cache of
//! recent successes (argon2 is slow on purpose), and a limit on failures per client address.

use super::{ApiError, AppState};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use hive_core::auth::derive_password_key;
use hive_core::resources::{PasswordVerifier, Role};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed logins from one address before it must wait.
pub const FAILURES_MAX: u32 = 5;
/// Window in which failures are counted, and the wait once over the limit.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// How long a checked password is trusted without deriving its key again.
const CACHE_TTL: Duration = Duration::from_secs(300);

type Digest32 = [u8; 32];

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
}

impl Caller {
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

/// Failure counts and the cache of checked credentials.
#[derive(Default)]
pub struct AuthState {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    /// `digest(name, password, salt)` → verified key and when it was checked.
    checked: Mutex<HashMap<Digest32, ([u8; 32], Instant)>>,
    /// Keys the digests so they are useless outside this process.
    pepper: [u8; 32],
}

impl AuthState {
    /// Fresh state with a random pepper.
    pub fn new() -> Self {
        AuthState { pepper: rand::random(), ..AuthState::default() }
    }

    fn blocked_for(&self, ip: IpAddr) -> Option<Duration> {
        let failures = self.failures.lock().expect("not poisoned");
        let (count, since) = failures.get(&ip)?;
        let elapsed = since.elapsed();
        (*count >= FAILURES_MAX && elapsed < FAILURE_WINDOW).then(|| FAILURE_WINDOW - elapsed)
    }

    fn failed(&self, ip: IpAddr) {
        let mut failures = self.failures.lock().expect("not poisoned");
        if failures.len() >= 10_000 {
            // Many addresses failing: forget those whose window is over, so memory stays bounded.
            failures.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
        }
        let entry = failures.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= FAILURE_WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    fn digest(&self, name: &str, password: &str, verifier: &PasswordVerifier) -> [u8; 32] {
        Sha256::new_with_prefix(self.pepper)
            .chain_update((name.len() as u64).to_le_bytes())
            .chain_update(name)
            .chain_update(verifier.salt)
            .chain_update(password)
            .finalize()
            .into()
    }

    /// Whether `password` derives `verifier`'s key; slow only the first time.
    async fn check(&self, name: &str, password: &str, verifier: PasswordVerifier) -> bool {
        let digest = self.digest(name, password, &verifier);
        if let Some((key, at)) = self.checked.lock().expect("not poisoned").get(&digest) {
            if *key == verifier.key && at.elapsed() < CACHE_TTL {
                return true;
            }
        }
        let password = password.to_owned();
        let v = verifier.clone();
        let derived = tokio::task::spawn_blocking(move || {
            v.params.within_limit() && derive_password_key(&password, &v.salt, v.params) == v.key
        })
        .await
        .unwrap_or(false);
        if derived {
            let mut checked = self.checked.lock().expect("not poisoned");
            if checked.len() > 10_000 {
                checked.clear();
            }
            checked.insert(digest, (verifier.key, Instant::now()));
        }
        derived
    }
}

fn unauthorized(message: &str) -> ApiError {
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

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        if let Some(wait) = state.auth.blocked_for(ip) {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_failures",
                format!("too many failed logins from {ip}; try again in {} s", wait.as_secs() + 1),
            );
            e.retry_after_s = Some(wait.as_secs() + 1);
            return Err(e);
        }
        let Some((name, password)) = basic_credentials(parts) else {
            return Err(unauthorized("credentials required (HTTP Basic)"));
        };
        let lookup = name.clone();
        let user = state
            .handle
            .read(move |node| node.user(&lookup).map(|(_, u)| (u.role, u.password.clone())))
            .await?;
        let ok = match user {
            Some((role, verifier)) => {
                state.auth.check(&name, &password, verifier).await.then_some(role)
            }
            None => None,
        };
        match ok {
            Some(role) => Ok(Caller { name, role }),
            None => {
                state.auth.failed(ip);
                tracing::info!(user = %name, %ip, "failed login");
                Err(unauthorized("wrong user name or password"))
            }
        }
    }
}
