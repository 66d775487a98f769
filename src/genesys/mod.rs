//! The Genesys Cloud client: OAuth client credentials, HTTP with retries and a rate limiter,
//! async details jobs (the bulk path) and the synchronous details query (the recent path).
//!
//! The contract of [`GenesysClient::extract`]: extracting `[start, end)` yields exactly the
//! conversations whose `conversationStart` is in `[start, end)`, each once. The API returns
//! every conversation with *activity* in an interval, so records are filtered on
//! `conversationStart`, and deduplicated by `conversationId`: in `auto` mode the synchronous
//! query's part comes first (its data is fresher than the jobs' data lake) and the freshest copy
//! wins; later copies of an id are dropped.

mod credentials;
mod error;
mod hosts;
mod http;
mod jobs;
pub mod model;
mod query;
pub mod reference;
pub mod user_details;

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use reqwest::Method;
use serde::Serialize;

pub use credentials::Credentials;
pub use error::GenesysError;
pub use hosts::{regions, Hosts};
pub use http::{RequestStats, RequestStatsSnapshot, RetryPolicy};
pub use jobs::JobRegistry;

use crate::datasets::conversations::DATASET as CONVERSATIONS;
use crate::interval::Interval;
use crate::page::{record_key, Page};
use http::{Request, Transport};
use model::{DataAvailabilityResponse, PATH_JOBS_AVAILABILITY};

/// Which API path extracts an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Jobs up to the data lake's availability date, the synchronous query after it.
    Auto,
    /// Prefer async jobs (bulk history); the part past the availability date still comes from
    /// the synchronous query, as a job would return it partial.
    Jobs,
    /// The synchronous query only (recent data; slow for big intervals).
    Query,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Auto => "auto",
            Mode::Jobs => "jobs",
            Mode::Query => "query",
        })
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Mode::Auto),
            "jobs" => Ok(Mode::Jobs),
            "query" => Ok(Mode::Query),
            other => Err(format!(
                "unknown mode {other:?} (expected auto, jobs or query)"
            )),
        }
    }
}

/// Client settings; [`ClientConfig::new`] gives production defaults.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub hosts: Hosts,
    pub credentials: Credentials,
    /// Client-side limit, below the platform's ~300 per token per minute.
    pub requests_per_minute: u32,
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// Synchronous query page size (at most 100).
    pub query_page_size: u32,
    /// Results the synchronous query may page through; bigger intervals are split.
    pub query_window: u64,
    /// Job results page size (at most 1000).
    pub job_page_size: u32,
    /// Longest interval of one job; longer intervals run as several jobs.
    pub max_job_interval: chrono::Duration,
    /// Jobs running at once.
    pub job_concurrency: usize,
    pub job_poll_initial: Duration,
    pub job_poll_max: Duration,
    /// A job not finished after this is an error.
    pub job_timeout: Duration,
    /// Submissions after the first when a job fails or expires.
    pub job_resubmits: u32,
    /// Intervals are not split below this.
    pub min_split: chrono::Duration,
    /// Rounds of asking again for the pages around tied start times when a query interval
    /// returned fewer conversations than its totalHits (before splitting it).
    pub query_repair_rounds: u32,
    /// Polls of a job in a state this build does not know before it counts as failed.
    pub unknown_state_polls: u32,
    /// pageSize of the reference listings (users, queues, …). The maximum is documented for
    /// few of them (`API.md`); a bigger one is silently capped, and paging follows pageCount.
    pub reference_page_size: u32,
    /// User-details query page size (`API.md`: maximum unverified; 100 in production use).
    pub user_details_query_page_size: u32,
    /// User-details job results page size (`API.md`: maximum unverified).
    pub user_details_job_page_size: u32,
}

impl ClientConfig {
    pub fn new(hosts: Hosts, credentials: Credentials) -> Self {
        Self {
            hosts,
            credentials,
            requests_per_minute: 240,
            request_timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            query_page_size: 100,
            query_window: 100_000,
            job_page_size: 1000,
            max_job_interval: chrono::Duration::days(1),
            job_concurrency: 2,
            job_poll_initial: Duration::from_secs(1),
            job_poll_max: Duration::from_secs(15),
            job_timeout: Duration::from_secs(1800),
            job_resubmits: 2,
            min_split: chrono::Duration::minutes(1),
            query_repair_rounds: 8,
            unknown_state_polls: 120,
            reference_page_size: 100,
            user_details_query_page_size: 100,
            user_details_job_page_size: 1000,
        }
    }
}

/// How an interval will be extracted (auto mode resolved).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtractPlan {
    pub interval: Interval,
    /// The mode asked for.
    pub mode: Mode,
    pub data_availability_date: Option<DateTime<Utc>>,
    pub query_part: Option<Interval>,
    pub jobs_part: Option<Interval>,
}

impl ExtractPlan {
    /// Splits `interval` at the data lake's availability date `avail` (jobs before it, the
    /// query after; `query` mode: the query only).
    pub fn split(interval: Interval, mode: Mode, avail: Option<DateTime<Utc>>) -> Self {
        let mut plan = ExtractPlan {
            interval,
            mode,
            data_availability_date: None,
            query_part: None,
            jobs_part: None,
        };
        match mode {
            Mode::Query => plan.query_part = Some(interval),
            // No mode takes from a job what the lake does not hold yet: `jobs` only prefers them.
            Mode::Jobs | Mode::Auto => {
                plan.data_availability_date = avail;
                match avail {
                    Some(a) if a >= interval.end => plan.jobs_part = Some(interval),
                    Some(a) if a > interval.start => {
                        plan.jobs_part = Interval::new(interval.start, a).ok();
                        plan.query_part = Interval::new(a, interval.end).ok();
                    }
                    // Nothing of the interval is in the lake yet (or the date is unknown).
                    _ => plan.query_part = Some(interval),
                }
            }
        }
        plan
    }

    /// The path(s) actually used: `jobs`, `query` or `jobs+query`.
    pub fn paths(&self) -> &'static str {
        match (&self.jobs_part, &self.query_part) {
            (Some(_), Some(_)) => "jobs+query",
            (Some(_), None) => "jobs",
            _ => "query",
        }
    }
}

/// The pages of an extraction, filtered and deduplicated, with its request counters.
pub struct Extraction {
    pub pages: BoxStream<'static, Result<Page, GenesysError>>,
    pub stats: Arc<RequestStats>,
    /// Deletes the jobs a stopped extraction leaves behind.
    pub cleanup: JobCleanup,
    /// What the extraction had to leave out and why (an optional listing refused), for the
    /// summary; complete once `pages` is drained.
    pub warnings: Warnings,
}

/// Warnings an extraction collects while its pages stream.
pub type Warnings = Arc<std::sync::Mutex<Vec<String>>>;

/// The jobs of one extraction not deleted yet, and how to delete them.
#[derive(Clone)]
pub struct JobCleanup {
    transport: Arc<Transport>,
    stats: Arc<RequestStats>,
    pub jobs: JobRegistry,
}

impl JobCleanup {
    /// Deletes the jobs left behind (call once the pages stream is dropped); returns how many.
    pub async fn delete_jobs(&self) -> usize {
        jobs::delete_all(&self.transport, &self.jobs, &self.stats).await
    }

    /// The request counters of the extraction.
    pub fn stats(&self) -> Arc<RequestStats> {
        self.stats.clone()
    }
}

/// A Genesys Cloud analytics client (cheap to clone).
#[derive(Clone)]
pub struct GenesysClient {
    cfg: Arc<ClientConfig>,
    transport: Arc<Transport>,
}

impl fmt::Debug for GenesysClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenesysClient")
            .field("hosts", &self.cfg.hosts)
            .field("client_id", &self.cfg.credentials.client_id())
            .finish()
    }
}

impl GenesysClient {
    pub fn new(cfg: ClientConfig) -> Result<Self, GenesysError> {
        let transport = Transport::new(
            cfg.hosts.clone(),
            cfg.credentials.clone(),
            cfg.retry.clone(),
            cfg.requests_per_minute,
            cfg.request_timeout,
        )?;
        Ok(Self {
            cfg: Arc::new(cfg),
            transport: Arc::new(transport),
        })
    }

    /// The data lake's availability date: jobs hold complete data before it.
    pub async fn data_availability(&self) -> Result<Option<DateTime<Utc>>, GenesysError> {
        let stats = RequestStats::default();
        let req = Request {
            method: Method::GET,
            path: PATH_JOBS_AVAILABILITY.to_string(),
            query: vec![],
            body: None,
            what: "reading the jobs' data availability date".into(),
            idempotent: true,
        };
        let body = self.transport.send(&req, &stats).await?;
        let r: DataAvailabilityResponse =
            serde_json::from_slice(&body).map_err(|e| GenesysError::Decode {
                what: req.what,
                reason: e.to_string(),
            })?;
        Ok(r.data_availability_date)
    }

    /// Resolves the mode into the part(s) each path extracts.
    pub async fn plan(&self, interval: Interval, mode: Mode) -> Result<ExtractPlan, GenesysError> {
        let avail = match mode {
            Mode::Query => None,
            Mode::Jobs | Mode::Auto => self.data_availability().await?,
        };
        Ok(ExtractPlan::split(interval, mode, avail))
    }

    /// An empty job registry for an extraction, and how to delete what it leaves behind.
    pub fn job_cleanup(&self) -> JobCleanup {
        JobCleanup {
            transport: self.transport.clone(),
            stats: Arc::new(RequestStats::default()),
            jobs: JobRegistry::default(),
        }
    }

    /// Streams the plan's pages: only conversations started in the interval, each once.
    pub fn extract(&self, plan: ExtractPlan) -> Extraction {
        let stats = Arc::new(RequestStats::default());
        let registry = JobRegistry::default();
        let mut parts: Vec<BoxStream<'static, Result<Page, GenesysError>>> = Vec::new();
        if let Some(q) = plan.query_part {
            parts.push(query::query_pages(
                self.transport.clone(),
                self.cfg.clone(),
                q,
                stats.clone(),
            ));
        }
        if let Some(j) = plan.jobs_part {
            let chunks = j.split_every(self.cfg.max_job_interval);
            let (t, cfg, st) = (self.transport.clone(), self.cfg.clone(), stats.clone());
            let reg = registry.clone();
            let jobs = stream::iter(chunks)
                .map(move |c| jobs::job_pages(t.clone(), cfg.clone(), c, st.clone(), reg.clone()))
                .flatten_unordered(self.cfg.job_concurrency.max(1));
            parts.push(Box::pin(jobs));
        }
        let interval = plan.interval;
        let mut seen: HashSet<u128> = HashSet::new();
        let pages = stream::iter(parts)
            .flatten()
            .try_filter_map(move |mut page| {
                let origin = page.origin.clone();
                let kept = page.try_retain(|i, text| {
                    let key = record_key(text, &CONVERSATIONS.record).map_err(|reason| {
                        GenesysError::Page(crate::page::PageError::BadRecord {
                            origin: origin.clone(),
                            index: i,
                            reason,
                        })
                    })?;
                    Ok::<bool, GenesysError>(
                        interval.contains(key.start()) && seen.insert(id_key(&key.id)),
                    )
                });
                futures::future::ready(kept.map(|()| (!page.is_empty()).then_some(page)))
            });
        Extraction {
            pages: Box::pin(pages),
            cleanup: JobCleanup {
                transport: self.transport.clone(),
                stats: stats.clone(),
                jobs: registry,
            },
            stats,
            warnings: Warnings::default(),
        }
    }
}

/// A compact dedupe key: the UUID's 128 bits, or a hash for ids that are not UUIDs.
pub fn id_key(id: &str) -> u128 {
    match uuid::Uuid::parse_str(id) {
        Ok(u) => u.as_u128(),
        Err(_) => {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            id.hash(&mut h);
            (1u128 << 127) | u128::from(h.finish())
        }
    }
}
