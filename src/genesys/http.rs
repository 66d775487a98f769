//! One HTTP request to the API, done right: a client-side rate limit, a cached OAuth token (one
//! re-login on 401), retries of 429 (`Retry-After`), 408, 5xx and network errors with
//! exponential back-off and full jitter within a budget, and fail-fast errors that quote
//! Genesys's `contextId`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;

use super::credentials::Credentials;
use super::model::{ErrorBody, OAuthErrorBody, TokenResponse, PATH_TOKEN};
use super::{GenesysError, Hosts};

/// Retry budget and back-off.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Total time one request may spend waiting between attempts.
    pub max_total_wait: Duration,
    /// A `Retry-After` longer than this is an error (as in the official SDKs).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_total_wait: Duration::from_secs(300),
            max_retry_after: Duration::from_secs(180),
        }
    }
}

impl RetryPolicy {
    /// Full jitter: uniform in `[0, min(max, initial · 2^attempt)]`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let cap = self
            .initial_backoff
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max_backoff);
        let ms = cap.as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(0..=ms))
    }
}

/// Counters of one extraction (cheap to share; snapshot for the summary).
#[derive(Debug, Default)]
pub struct RequestStats {
    requests: AtomicU64,
    retries: AtomicU64,
    http_429: AtomicU64,
    http_5xx: AtomicU64,
    bytes: AtomicU64,
    pages: AtomicU64,
    jobs: AtomicU64,
    logins: AtomicU64,
    repairs: AtomicU64,
}

/// A copy of [`RequestStats`] for the run summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RequestStatsSnapshot {
    pub requests: u64,
    pub retries: u64,
    pub http_429: u64,
    pub http_5xx: u64,
    pub bytes: u64,
    pub pages: u64,
    pub jobs: u64,
    pub logins: u64,
    /// Requests spent repairing a shortfall (pages asked again, intervals split).
    #[serde(default)]
    pub repairs: u64,
}

impl RequestStats {
    pub fn snapshot(&self) -> RequestStatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RequestStatsSnapshot {
            requests: g(&self.requests),
            retries: g(&self.retries),
            http_429: g(&self.http_429),
            http_5xx: g(&self.http_5xx),
            bytes: g(&self.bytes),
            pages: g(&self.pages),
            jobs: g(&self.jobs),
            logins: g(&self.logins),
            repairs: g(&self.repairs),
        }
    }

    pub(crate) fn page(&self) {
        self.pages.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn job(&self) {
        self.jobs.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn repair(&self) {
        self.repairs.fetch_add(1, Ordering::Relaxed);
    }
}

/// Spaces requests evenly to stay under a per-minute limit (shared by every task of a client).
#[derive(Debug)]
pub struct Limiter {
    spacing: Duration,
    next: tokio::sync::Mutex<tokio::time::Instant>,
}

impl Limiter {
    pub fn new(per_minute: u32) -> Self {
        Self {
            spacing: Duration::from_secs(60) / per_minute.max(1),
            next: tokio::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    /// Waits for the next free slot.
    pub async fn acquire(&self) {
        let at = {
            let mut next = self.next.lock().await;
            let now = tokio::time::Instant::now();
            let at = (*next).max(now);
            *next = at + self.spacing;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

struct Token {
    value: String,
    refresh_at: Instant,
}

/// The authenticated, rate-limited, retrying transport.
pub struct Transport {
    http: reqwest::Client,
    hosts: Hosts,
    credentials: Credentials,
    pub retry: RetryPolicy,
    limiter: Limiter,
    token: tokio::sync::Mutex<Option<Token>>,
}

/// Enough of a request to send it again.
pub struct Request<'a> {
    pub method: Method,
    pub path: String,
    pub query: Vec<(&'a str, String)>,
    pub body: Option<Vec<u8>>,
    /// For messages: "POST …/details/query (2026-11-20T00…, page 3)".
    pub what: String,
    /// Whether sending it twice does no harm. A request that is not (a job submission) is
    /// sent again only when the failure shows the service never acted on it.
    pub idempotent: bool,
}

impl Transport {
    pub fn new(
        hosts: Hosts,
        credentials: Credentials,
        retry: RetryPolicy,
        requests_per_minute: u32,
        timeout: Duration,
    ) -> Result<Self, GenesysError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .gzip(true)
            .user_agent(concat!("genesys-parquet/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GenesysError::BadUrl {
                url: hosts.api.to_string(),
                reason: format!("HTTP client: {e}"),
            })?;
        Ok(Self {
            http,
            hosts,
            credentials,
            retry,
            limiter: Limiter::new(requests_per_minute),
            token: tokio::sync::Mutex::new(None),
        })
    }

    fn url(&self, base: &Url, path: &str) -> Result<Url, GenesysError> {
        base.join(path.trim_start_matches('/'))
            .map_err(|e| GenesysError::BadUrl {
                url: format!("{base}{path}"),
                reason: e.to_string(),
            })
    }

    /// A valid token, logging in when there is none or it is about to expire.
    async fn token(&self, stats: &RequestStats) -> Result<String, GenesysError> {
        let mut guard = self.token.lock().await;
        if let Some(t) = guard.as_ref() {
            if Instant::now() < t.refresh_at {
                return Ok(t.value.clone());
            }
        }
        let t = self.login(stats).await?;
        let value = t.value.clone();
        *guard = Some(t);
        Ok(value)
    }

    async fn forget_token(&self, used: &str) {
        let mut guard = self.token.lock().await;
        if guard.as_ref().is_some_and(|t| t.value == used) {
            *guard = None;
        }
    }

    async fn login(&self, stats: &RequestStats) -> Result<Token, GenesysError> {
        let url = self.url(&self.hosts.login, PATH_TOKEN)?;
        let host = self.hosts.login.to_string();
        let mut attempt = 0;
        let mut unreachable = true;
        let mut reread = false;
        loop {
            stats.logins.fetch_add(1, Ordering::Relaxed);
            let (client_id, secret) = self.credentials.current();
            let sent = self
                .http
                .post(url.clone())
                .basic_auth(client_id, Some(secret))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("grant_type=client_credentials")
                .send()
                .await;
            let failure = match sent {
                Ok(resp) if resp.status().is_success() => {
                    let body = resp.bytes().await.map_err(|e| GenesysError::Decode {
                        what: format!("login to {host}"),
                        reason: e.to_string(),
                    })?;
                    let t: TokenResponse =
                        serde_json::from_slice(&body).map_err(|e| GenesysError::Decode {
                            what: format!("login to {host}"),
                            reason: e.to_string(),
                        })?;
                    // Refresh a minute (or a tenth of the lifetime) before it expires.
                    let life = Duration::from_secs(t.expires_in.max(1) as u64);
                    let margin = (life / 10).min(Duration::from_secs(60));
                    return Ok(Token {
                        value: t.access_token,
                        refresh_at: Instant::now() + life - margin,
                    });
                }
                Ok(resp) => {
                    let status = resp.status();
                    let body = resp.bytes().await.unwrap_or_default();
                    let message = serde_json::from_slice::<OAuthErrorBody>(&body)
                        .ok()
                        .and_then(|b| {
                            let d = b.error_description.or(b.description)?;
                            Some(match b.error {
                                Some(e) => format!("{d} ({e})"),
                                None => d,
                            })
                        })
                        .unwrap_or_else(|| status.to_string());
                    let err = GenesysError::Login {
                        host: host.clone(),
                        status: status.as_u16(),
                        message,
                    };
                    // Refused credentials may have been rotated since they were read: read the
                    // secret once more.
                    if status == StatusCode::UNAUTHORIZED && !reread {
                        reread = true;
                        if self.credentials.reread().await {
                            continue;
                        }
                    }
                    if !(status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS) {
                        return Err(err);
                    }
                    unreachable = false;
                    err.to_string()
                }
                Err(e) => {
                    unreachable &= e.is_connect() || e.is_timeout();
                    format!("login to {host}: {e}")
                }
            };
            attempt += 1;
            if attempt >= 4 {
                return Err(GenesysError::RetriesExhausted {
                    what: format!("login to {host}"),
                    attempts: attempt,
                    last: failure,
                    unreachable,
                });
            }
            tokio::time::sleep(self.retry.backoff(attempt)).await;
        }
    }

    /// Sends the request until it succeeds or must fail; returns the body.
    pub async fn send(
        &self,
        req: &Request<'_>,
        stats: &RequestStats,
    ) -> Result<Bytes, GenesysError> {
        let url = self.url(&self.hosts.api, &req.path)?;
        let mut attempt: u32 = 0;
        let mut waited = Duration::ZERO;
        let mut relogged = false;
        let mut unreachable = true;
        loop {
            self.limiter.acquire().await;
            let token = self.token(stats).await?;
            stats.requests.fetch_add(1, Ordering::Relaxed);
            let mut b = self
                .http
                .request(req.method.clone(), url.clone())
                .bearer_auth(&token)
                .query(&req.query);
            if let Some(body) = &req.body {
                b = b
                    .header("content-type", "application/json")
                    .body(body.clone());
            }
            // `resent_safely`: the failure shows the service did not act on the request.
            let (failure, wait, resent_safely) = match b.send().await {
                Err(e) => {
                    unreachable &= e.is_connect() || e.is_timeout();
                    (format!("{e}"), None, e.is_connect())
                }
                Ok(resp) => {
                    unreachable = false;
                    let status = resp.status();
                    if status.is_success() {
                        match resp.bytes().await {
                            Ok(body) if looks_like_json(&body) => {
                                stats.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                                return Ok(body);
                            }
                            // A proxy's maintenance page: the service was never reached.
                            Ok(body) => (
                                format!(
                                    "HTTP {status} with a body that is not JSON ({} bytes starting {:?})",
                                    body.len(),
                                    String::from_utf8_lossy(&body[..body.len().min(40)])
                                ),
                                None,
                                true,
                            ),
                            Err(e) => (format!("reading the response: {e}"), None, false),
                        }
                    } else if status == StatusCode::UNAUTHORIZED && !relogged {
                        // Expired or revoked: one new token, then the same request again.
                        relogged = true;
                        self.forget_token(&token).await;
                        continue;
                    } else if status == StatusCode::TOO_MANY_REQUESTS {
                        stats.http_429.fetch_add(1, Ordering::Relaxed);
                        let after = resp
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.trim().parse::<u64>().ok());
                        if let Some(s) = after {
                            if Duration::from_secs(s) > self.retry.max_retry_after {
                                return Err(GenesysError::RetryAfterTooLong {
                                    what: req.what.clone(),
                                    seconds: s,
                                    max: self.retry.max_retry_after.as_secs(),
                                });
                            }
                        }
                        (
                            "HTTP 429 Too Many Requests".to_string(),
                            after.map(Duration::from_secs),
                            true,
                        )
                    } else if status == StatusCode::REQUEST_TIMEOUT
                        || (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED)
                    {
                        stats.http_5xx.fetch_add(1, Ordering::Relaxed);
                        let e = api_error(&req.what, resp).await;
                        (
                            e.to_string(),
                            None,
                            status == StatusCode::SERVICE_UNAVAILABLE,
                        )
                    } else {
                        return Err(api_error(&req.what, resp).await);
                    }
                }
            };
            attempt += 1;
            if !req.idempotent && !resent_safely {
                // It may have been acted on (a job created): the caller decides what to do.
                return Err(GenesysError::Unconfirmed {
                    what: req.what.clone(),
                    last: failure,
                });
            }
            let wait = wait.unwrap_or_else(|| self.retry.backoff(attempt));
            if attempt >= self.retry.max_attempts || waited + wait > self.retry.max_total_wait {
                return Err(GenesysError::RetriesExhausted {
                    what: req.what.clone(),
                    attempts: attempt,
                    last: failure,
                    unreachable,
                });
            }
            stats.retries.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(what = %req.what, attempt, ?wait, %failure, "retrying");
            tokio::time::sleep(wait).await;
            waited += wait;
        }
    }
}

/// Whether a success body can be the JSON every endpoint answers (or empty, as a DELETE's).
fn looks_like_json(body: &[u8]) -> bool {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => true,
        Some(b) => matches!(b, b'{' | b'['),
    }
}

/// A non-success response as an error quoting Genesys's message, code and contextId.
async fn api_error(what: &str, resp: reqwest::Response) -> GenesysError {
    let status = resp.status();
    let correlation_id = resp
        .headers()
        .get("inin-correlation-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.bytes().await.unwrap_or_default();
    let parsed: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
    GenesysError::Api {
        what: what.to_string(),
        status: status.as_u16(),
        code: parsed.code.unwrap_or_else(|| "-".into()),
        message: parsed
            .message
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned()),
        context_id: parsed.context_id.unwrap_or_else(|| "-".into()),
        correlation_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_within_the_cap() {
        let p = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            ..RetryPolicy::default()
        };
        for attempt in 0..12 {
            let cap = Duration::from_millis(100 * (1u64 << attempt)).min(Duration::from_secs(2));
            for _ in 0..50 {
                assert!(p.backoff(attempt) <= cap);
            }
        }
        // Jitter: not always the same value.
        let v: std::collections::HashSet<_> = (0..50).map(|_| p.backoff(5)).collect();
        assert!(v.len() > 5);
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_spaces_requests() {
        let l = Limiter::new(120); // one every 500 ms
        let t0 = tokio::time::Instant::now();
        for _ in 0..5 {
            l.acquire().await;
        }
        let elapsed = t0.elapsed();
        assert!(elapsed >= Duration::from_millis(2000), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(2100), "{elapsed:?}");
    }
}
