//! [`HttpRelay`]: the event exchange over HTTP (`docs/relay-protocol.md`).

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;

use super::EventExchange;
use crate::contract::{HeadBody, PullResponse, PushOutcome, PushRequest, RelayEvent};
use crate::types::StoreId;
use crate::{Error, Result};

/// The relay client: `POST {base}/v1/stores/{store}/push`, `GET …/pull?after&limit&wait`,
/// with a bearer token. A pulled page may hold fewer than `limit` events while more remain
/// (pages are also capped in bytes, `contract::MAX_PAGE_BYTES`): callers page by the last
/// `seqNum`, as the engine's exchange loop does. Errors are classified like `SignerClient`'s (network, 408, 429, 5xx
/// retryable).
#[derive(Debug, Clone)]
pub struct HttpRelay {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl HttpRelay {
    /// A client for the relay under `base_url` (e.g. `https://example.com/api`).
    pub fn new(base_url: impl Into<String>, token: Option<String>) -> Result<Self> {
        let base = crate::remote::signer::parse_service_url(&base_url.into(), "relay base URL")?;
        #[cfg(not(target_arch = "wasm32"))]
        let http = crate::rt::http_client()?.connect_timeout(Duration::from_secs(10));
        #[cfg(target_arch = "wasm32")]
        let http = crate::rt::http_client()?;
        let http = http
            .build()
            .map_err(|e| Error::invalid_because("HTTP client", "cannot be built", e))?;
        Ok(Self { http, base, token })
    }

    fn url(&self, store: &StoreId, action: &str) -> String {
        format!("{}/v1/stores/{store}/{action}", self.base)
    }

    fn auth(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn pull_with(
        &self,
        store: &StoreId,
        after: u64,
        limit: usize,
        wait: Duration,
    ) -> Result<PullResponse> {
        let resp = self
            .auth(self.http.get(self.url(store, "pull")).query(&[
                ("after", after.to_string()),
                ("limit", limit.to_string()),
                ("wait", wait.as_secs().to_string()),
            ]))
            .timeout(wait + Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| net("pull", e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| net("pull", e))?;
        if !status.is_success() {
            return Err(status_err("pull", status, &text));
        }
        serde_json::from_str(&text).map_err(|e| Error::Remote {
            what: "pull: invalid response".into(),
            status: Some(status.as_u16()),
            retryable: false,
            source: Some(e.into()),
        })
    }
}

fn net(what: &str, e: reqwest::Error) -> Error {
    crate::remote::signer::network(&format!("relay {what}"), e)
}

fn status_err(what: &str, status: StatusCode, body: &str) -> Error {
    crate::remote::signer::status_error(&format!("relay {what}"), status, body)
}

#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
impl EventExchange for HttpRelay {
    async fn push(&self, store: &StoreId, batch: Vec<RelayEvent>) -> Result<PushOutcome> {
        let resp = self
            .auth(
                self.http
                    .post(self.url(store, "push"))
                    .json(&PushRequest { batch }),
            )
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(|e| net("push", e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| net("push", e))?;
        let head = || serde_json::from_str::<HeadBody>(&text).map(|b| b.head);
        match status {
            StatusCode::OK => Ok(PushOutcome::Accepted {
                head: head().unwrap_or(0),
            }),
            StatusCode::CONFLICT => match head() {
                Ok(head) => Ok(PushOutcome::ServerAhead { head }),
                Err(_) => Err(status_err("push", status, &text)),
            },
            _ => Err(status_err("push", status, &text)),
        }
    }

    async fn pull(&self, store: &StoreId, after: u64, limit: usize) -> Result<Vec<RelayEvent>> {
        Ok(self
            .pull_with(store, after, limit, Duration::ZERO)
            .await?
            .events)
    }

    async fn wait(&self, store: &StoreId, after: u64, max: Duration) -> Result<()> {
        self.pull_with(store, after, 1, max.min(Duration::from_secs(30)))
            .await
            .map(drop)
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod base_url_tests {
    use super::HttpRelay;

    /// The relay's base URL goes through `url` like the signer's: http(s), a host, no query or
    /// fragment; normalised without a trailing `/`.
    #[test]
    fn base_urls_are_parsed_and_normalised() {
        let ok = HttpRelay::new("http://Example.com:8787/api/", None).expect("valid");
        assert_eq!(ok.base, "http://example.com:8787/api");
        for bad in [
            "ftp://example.com/api",
            "http://",
            "http://h/api?x=1",
            "not a url",
        ] {
            let e = HttpRelay::new(bad, None).expect_err(bad);
            assert!(e.to_string().contains("relay base URL"), "{bad}: {e}");
        }
    }
}
