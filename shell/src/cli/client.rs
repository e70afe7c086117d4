//! The CLI's client of a server's API: HTTPS trusting the server's pinned certificate (or a
//! CA), or plain HTTP for a server started with `--http-plain`.

use super::known_servers::{KnownServers, KnownServersError};
use super::trust::{self, PinCheck, PinSlot, TrustError};
use crate::fingerprint::Fingerprint;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Mutex;
use thiserror::Error;

/// How the client trusts an HTTPS server.
#[derive(Clone, Debug)]
pub enum Trust {
    /// Pin each server's certificate on first use in this known servers file (`None`: the
    /// default, `$HOME/.config/hive/known_servers`).
    Pin(Option<PathBuf>),
    /// Trust certificates issued by the CA in this PEM file.
    Ca(PathBuf),
}

/// Why a CLI request failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The server could not be reached.
    #[error("cannot reach {url}: {source}")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// The error.
        source: reqwest::Error,
    },
    /// The server answered with an error.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        /// HTTP status.
        status: u16,
        /// The API's error code.
        code: String,
        /// The API's message.
        message: String,
    },
    /// The answer was not what the API promises.
    #[error("unexpected answer from {url}: {reason}")]
    Unexpected {
        /// The URL asked.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// A plain HTTP request was cut off after connecting: most likely an HTTPS server.
    #[error(
        "{url}: the server closed the connection; if it serves HTTPS (the default), use https://"
    )]
    PlainToHttps {
        /// The URL asked.
        url: String,
    },
    /// The server presented another certificate than the one pinned for it.
    #[error(
        "the certificate of {server} has changed: pinned SHA-256 {pinned}, presented SHA-256 \
         {presented}. Either the server's certificate was replaced, or someone is intercepting \
         the connection. If you trust the new certificate, remove the line for {server} from \
         {file} (hive pins the new one at the next use), or pass --ca with the CA that issued it."
    )]
    CertificateChanged {
        /// `HOST:PORT`.
        server: String,
        /// What was pinned.
        pinned: Fingerprint,
        /// What the server presented.
        presented: Fingerprint,
        /// The known servers file.
        file: PathBuf,
    },
    /// The URL is not an `https://` or `http://` URL with a host.
    #[error("{url:?} is not a server's API URL (https://HOST:PORT or http://HOST:PORT)")]
    BadUrl {
        /// The URL.
        url: String,
    },
    /// The known servers file could not be used.
    #[error(transparent)]
    KnownServers(#[from] KnownServersError),
    /// The TLS configuration could not be made.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Build(reqwest::Error),
}

/// One HTTPS server's pin: where it is kept and what the handshakes found.
struct Pinning {
    /// `HOST:PORT`, the key in the known servers file.
    server: String,
    known: Mutex<KnownServers>,
    slot: PinSlot,
}

/// A server's API with credentials.
pub struct Client {
    base: String,
    user: String,
    password: String,
    http: reqwest::Client,
    /// Set for an `https://` URL trusted by pinning.
    pinning: Option<Pinning>,
}

impl Client {
    /// A client of the API at `base` (e.g. `https://10.0.0.2:7080`); `trust` applies to
    /// `https://` URLs.
    pub fn new(
        base: &str,
        user: &str,
        password: &str,
        trust: &Trust,
    ) -> Result<Client, ClientError> {
        let base = base.trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&base)
            .ok()
            .filter(|u| u.host_str().is_some() && matches!(u.scheme(), "https" | "http"))
            .ok_or_else(|| ClientError::BadUrl { url: base.clone() })?;
        let builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(60));
        let (builder, pinning) = match (url.scheme(), trust) {
            ("https", Trust::Ca(file)) => (builder.use_preconfigured_tls(trust::ca(file)?), None),
            ("https", Trust::Pin(file)) => {
                let file = match file {
                    Some(f) => f.clone(),
                    None => KnownServers::default_path()?,
                };
                let known = KnownServers::load(&file)?;
                let host = url.host_str().unwrap_or_default();
                let server = format!("{host}:{}", url.port_or_known_default().unwrap_or(443));
                let slot = PinSlot::default();
                trust::lock(&slot).pinned = known.pin(&server);
                let config = trust::pinned(PinSlot::clone(&slot))?;
                let pinning = Pinning { server, known: Mutex::new(known), slot };
                (builder.use_preconfigured_tls(config), Some(pinning))
            }
            _ => (builder, None),
        };
        Ok(Client {
            base,
            user: user.to_owned(),
            password: password.to_owned(),
            http: builder.build().map_err(ClientError::Build)?,
            pinning,
        })
    }

    /// After a handshake: pins a certificate seen for the first time; after a failure: the
    /// refused certificate if that was why.
    fn check_pin(&self, connected: bool) -> Result<(), ClientError> {
        let Some(p) = &self.pinning else { return Ok(()) };
        let last = trust::lock(&p.slot).last.take();
        let mut known = p.known.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match last {
            Some(PinCheck::New(fingerprint)) if connected => {
                known.add(&p.server, fingerprint)?;
                eprintln!(
                    "Pinned the certificate of {} (SHA-256 {fingerprint}) in {}; \
                     hive will refuse this server if its certificate changes.",
                    p.server,
                    known.path().display()
                );
                Ok(())
            }
            Some(PinCheck::Changed { pinned, presented }) => Err(ClientError::CertificateChanged {
                server: p.server.clone(),
                pinned,
                presented,
                file: known.path().to_owned(),
            }),
            _ => Ok(()),
        }
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let sent = req.basic_auth(&self.user, Some(&self.password)).send().await;
        self.check_pin(sent.is_ok())?;
        let response = sent.map_err(|source| {
            if url.starts_with("http://") && !source.is_connect() && !source.is_timeout() {
                ClientError::PlainToHttps { url: url.to_owned() }
            } else {
                ClientError::Unreachable { url: url.to_owned(), source }
            }
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        Err(ClientError::Api {
            status,
            code: body["error"].as_str().unwrap_or("unknown").to_owned(),
            message: body["message"].as_str().unwrap_or("no message").to_owned(),
        })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<T, ClientError> {
        self.send(req, url)
            .await?
            .json()
            .await
            .map_err(|e| ClientError::Unexpected { url: url.to_owned(), reason: e.to_string() })
    }

    /// `GET path` as JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        self.json(self.http.get(&url), &url).await
    }

    /// `GET path` as bytes.
    pub async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}{path}", self.base);
        let r = self.send(self.http.get(&url), &url).await?;
        r.bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| ClientError::Unexpected { url, reason: e.to_string() })
    }

    /// `POST path` with a JSON body.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        self.json(self.http.post(&url).json(body), &url).await
    }

    /// `PATCH path` with a JSON body.
    pub async fn patch<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        self.json(self.http.patch(&url).json(body), &url).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Result<(), ClientError> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.delete(&url), &url).await.map(|_| ())
    }
}
