//! The CLI's client of a server's API.

use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

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
}

/// A server's API with credentials.
pub struct Client {
    base: String,
    user: String,
    password: String,
    http: reqwest::Client,
}

impl Client {
    /// A client of the API at `base` (e.g. `http://127.0.0.1:7080`).
    pub fn new(base: &str, user: &str, password: &str) -> Client {
        Client {
            base: base.trim_end_matches('/').to_owned(),
            user: user.to_owned(),
            password: password.to_owned(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .expect("a client without TLS builds"),
        }
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let response = req
            .basic_auth(&self.user, Some(&self.password))
            .send()
            .await
            .map_err(|source| ClientError::Unreachable { url: url.to_owned(), source })?;
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

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Result<(), ClientError> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.delete(&url), &url).await.map(|_| ())
    }
}
