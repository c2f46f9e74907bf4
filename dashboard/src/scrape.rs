//! I/O: fetching `/metrics` from many targets with bounded concurrency, a per-request
//! timeout and a body size cap, so one slow or hostile target can neither stall a cycle nor
//! grow memory.

use std::time::Duration;

use futures::StreamExt;

use crate::parse::{parse_metrics, ParseError, PodSample};

/// Why one target could not be scraped. Messages never contain the URL (which may carry
/// credentials): the page shows a redacted URL separately.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// Connection refused, reset, DNS failure, …
    #[error("connection failed")]
    Connect,
    /// No complete answer within the scrape timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The target answered with a non-2xx status.
    #[error("HTTP {0}")]
    Status(u16),
    /// The body exceeded the size cap.
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    /// The body was cut off or was not UTF-8.
    #[error("unreadable response body")]
    Body,
    /// The body was not Strata metrics.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The HTTP client could not be built.
    #[error("HTTP client setup failed")]
    Client,
}

/// Settings of a [`Scraper`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScrapeSettings {
    /// Targets fetched at once.
    pub concurrency: usize,
    /// Whole-request timeout per target.
    pub timeout: Duration,
    /// Largest accepted body.
    pub max_body_bytes: usize,
}

impl Default for ScrapeSettings {
    fn default() -> Self {
        Self {
            concurrency: 64,
            timeout: Duration::from_secs(3),
            max_body_bytes: 4 * 1024 * 1024,
        }
    }
}

/// A reusable HTTP scraper (one connection pool for all targets).
#[derive(Debug, Clone)]
pub struct Scraper {
    client: reqwest::Client,
    settings: ScrapeSettings,
}

impl Scraper {
    /// Builds the client. Proxies from the environment are ignored: pod IPs are never behind
    /// one, and sending pod traffic to a proxy would be a surprise.
    pub fn new(settings: ScrapeSettings) -> Result<Self, ScrapeError> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .no_proxy()
            .pool_max_idle_per_host(2)
            .user_agent(concat!("strata-dashboard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| ScrapeError::Client)?;
        Ok(Self { client, settings })
    }

    /// The settings in force.
    pub fn settings(&self) -> ScrapeSettings {
        self.settings
    }

    /// Fetches the raw text of one target.
    pub async fn fetch(&self, url: &str) -> Result<String, ScrapeError> {
        let timeout = self.settings.timeout;
        let classify = |e: reqwest::Error| {
            if e.is_timeout() {
                ScrapeError::Timeout(timeout)
            } else if e.is_body() || e.is_decode() {
                ScrapeError::Body
            } else {
                ScrapeError::Connect
            }
        };
        let mut resp = self
            .client
            .get(url)
            .header(http::header::ACCEPT, "text/plain;version=0.0.4")
            .send()
            .await
            .map_err(classify)?;
        if !resp.status().is_success() {
            return Err(ScrapeError::Status(resp.status().as_u16()));
        }
        let max = self.settings.max_body_bytes;
        if resp.content_length().is_some_and(|n| n as usize > max) {
            return Err(ScrapeError::TooLarge(max));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > max {
                return Err(ScrapeError::TooLarge(max));
            }
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body).map_err(|_| ScrapeError::Body)
    }

    /// Fetches and parses one target.
    pub async fn scrape(&self, url: &str) -> Result<PodSample, ScrapeError> {
        let text = self.fetch(url).await?;
        Ok(parse_metrics(&text)?)
    }

    /// Scrapes every target, at most `concurrency` at once; results come back in any order.
    pub async fn scrape_all<K: Send>(
        &self,
        targets: Vec<(K, String)>,
    ) -> Vec<(K, Result<PodSample, ScrapeError>)> {
        futures::stream::iter(targets)
            .map(|(key, url)| async move {
                let result = self.scrape(&url).await;
                (key, result)
            })
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await
    }
}
