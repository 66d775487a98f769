//! A Genesys Cloud analytics API simulator: the same HTTP endpoints, JSON, paging, limits and
//! errors as `spec/genesys/API.md` describes, over deterministic data ([`Dataset`]), with
//! faults on demand. Tests, the demo and the benchmarks run against it; it serves login and API
//! on one address.

mod data;
pub mod reference;
mod reference_routes;
mod server;
mod user_details;

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{Duration, NaiveDate, Utc};

pub use data::{ConvRef, DataConfig, Dataset, ODD_MARKER};
pub use server::SimStats;

/// Test input: conversations of `date` (seed 9, `per_day` of them) as sync-query pages of 100,
/// each named by its line.
#[cfg(test)]
pub(crate) fn test_day_pages(date: NaiveDate, per_day: u32) -> Vec<crate::page::Page> {
    let cfg = SimConfig {
        seed: 9,
        per_day,
        end_date: Some(date),
        ..SimConfig::default()
    };
    let mut ndjson = Vec::new();
    Dataset::for_config(&cfg)
        .write_ndjson_pages(
            &crate::interval::Interval::day(date),
            100,
            false,
            &mut ndjson,
        )
        .expect("pages");
    ndjson
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .enumerate()
        .map(|(i, line)| {
            crate::page::Page::parse(
                bytes::Bytes::copy_from_slice(line),
                crate::page::PageOrigin::new(format!("line {}", i + 1)),
                crate::datasets::conversations::DATASET.envelope,
            )
            .expect("page")
        })
        .collect()
}
pub use user_details::{StatusRecord, UserDetailsBehaviour, PRESENCES, ROUTING};

/// Settings of the simulator (also the `simulate` subcommand's flags).
#[derive(clap::Args, Clone, Debug)]
pub struct SimConfig {
    /// Seed of the generated data (same seed, same conversations).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Conversations per simulated day.
    #[arg(long, default_value_t = 500)]
    pub per_day: u32,
    /// Agents who handle the conversations, with presence and routing-status history (0: none;
    /// agent participants then get random user ids).
    #[arg(long, default_value_t = 20)]
    pub agents: u32,
    /// Last simulated day (YYYY-MM-DD); default yesterday (UTC).
    #[arg(long)]
    pub end_date: Option<NaiveDate>,
    /// The OAuth client id the login accepts.
    #[arg(long, default_value = "demo")]
    pub client_id: String,
    /// The OAuth client secret the login accepts.
    #[arg(long, default_value = "demo")]
    pub client_secret: String,
    /// Largest pageSize of the synchronous query.
    #[arg(long, default_value_t = 100)]
    pub query_max_page_size: u32,
    /// Results the synchronous query pages through at most.
    #[arg(long, default_value_t = 100_000)]
    pub query_window: u64,
    /// Largest pageSize of job results.
    #[arg(long, default_value_t = 1000)]
    pub job_page_size_max: u32,
    /// Results one job pages through at most.
    #[arg(long, default_value_t = 400_000)]
    pub job_window: u64,
    /// Unfinished jobs an organization may have at once.
    #[arg(long, default_value_t = 10)]
    pub max_concurrent_jobs: usize,
    /// Time from submission to FULFILLED.
    #[arg(long, default_value_t = 3000)]
    pub job_ready_after_ms: u64,
    /// Lifetime of a job's results.
    #[arg(long, default_value_t = 3600)]
    pub job_expiry_secs: u64,
    /// Lifetime of access tokens.
    #[arg(long, default_value_t = 86_400)]
    pub token_lifetime_secs: u64,
    /// How far the jobs' data lake lags behind now.
    #[arg(long, default_value_t = 36_000)]
    pub availability_lag_secs: u64,
    /// API requests per token per minute before 429.
    #[arg(long, default_value_t = 300)]
    pub rate_limit_per_minute: u32,
    /// Added to every request.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Share of API requests answered 429 (Retry-After 1).
    #[arg(long, default_value_t = 0.0)]
    pub fault_429: f64,
    /// Share of API requests answered 500/502/503.
    #[arg(long, default_value_t = 0.0)]
    pub fault_5xx: f64,
    /// Revoke every token once, after this many API requests (the next call gets 401).
    #[arg(long)]
    pub fault_token_expiry_after: Option<u64>,
    /// The first N jobs end FAILED.
    #[arg(long, default_value_t = 0)]
    pub fault_job_failed: u32,
    /// After N result pages, a job expires (its results answer 404); once.
    #[arg(long)]
    pub fault_expire_cursor: Option<u32>,
    /// Share of records with a field the schema does not know.
    #[arg(long, default_value_t = 0.0)]
    pub fault_unknown_field: f64,
    /// Share of records with enum values the SDK does not know.
    #[arg(long, default_value_t = 0.0)]
    pub fault_unknown_enum: f64,
    /// Share of records that are structurally odd: a null element in a list, a string or an
    /// object where a list belongs, a list where an object belongs (`API.md`: odd records).
    #[arg(long, default_value_t = 0.0)]
    pub fault_odd_records: f64,
    #[command(flatten)]
    pub extract: ExtractBehaviour,
    /// Largest pageSize of the reference listings (users, queues, …); a bigger one is silently
    /// capped, as `API.md` reports for the queue members listing.
    #[arg(long, default_value_t = 500)]
    pub ref_page_size_cap: u32,
    /// Permissions the OAuth client lacks (comma list, e.g. `routing:queue:view,
    /// authorization:divisionDeleted:view`): the reference endpoints needing one answer 403.
    #[arg(long, value_delimiter = ',')]
    pub missing_permissions: Vec<String>,
    #[command(flatten)]
    pub user_details: UserDetailsBehaviour,
}

/// Documented habits of the API the extractor must survive (issue 13 §1, §2, §5, §6), each a
/// setting so a test can play it. Record-shape habits live in the fields above.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ExtractBehaviour {
    /// A fixed `dataAvailabilityDate` (RFC 3339) instead of now minus the lag: jobs over an
    /// interval ending after it return only what started before it (partial, with no flag).
    #[arg(long)]
    pub availability_date: Option<chrono::DateTime<Utc>>,
    /// Job result pages report this `dataAvailabilityDate` (RFC 3339) instead of the job's
    /// own, and hold only what started before it: a lake that moved back, or a stale page.
    #[arg(long)]
    pub job_page_availability_date: Option<chrono::DateTime<Utc>>,
    /// Synchronous query responses leave `totalHits` out (the SDK model marks it optional).
    #[arg(long)]
    pub omit_total_hits: bool,
    /// Share of conversations that start in the same millisecond as another one.
    #[arg(long, default_value_t = 0.0)]
    pub ties: f64,
    /// Conversations with the same start come back in a new order on every query request.
    #[arg(long)]
    pub unstable_tie_order: bool,
    /// Jobs report this state (unknown to the SDK) between QUEUED and FULFILLED.
    #[arg(long)]
    pub unknown_job_state: Option<String>,
    /// After N result pages, a job's cursor is refused: 400 "Invalid cursor"; once.
    #[arg(long)]
    pub fault_invalid_cursor: Option<u32>,
    /// The first N job submissions create the job but answer only after this many ms (past a
    /// client's timeout: the job is orphaned).
    #[arg(long, default_value_t = 0)]
    pub fault_slow_submit: u32,
    #[arg(long, default_value_t = 0)]
    pub slow_submit_ms: u64,
    /// Share of API requests answered 200 with an HTML maintenance page (a proxy's).
    #[arg(long, default_value_t = 0.0)]
    pub fault_html_200: f64,
    /// API requests answer 403: the OAuth client lacks `analytics:conversationDetail:view`.
    #[arg(long)]
    pub fault_missing_permission: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            sim: SimConfig,
        }
        // The flags' defaults are the one source of truth; parsing no flags cannot fail.
        <Defaults as clap::Parser>::try_parse_from(["simulate"])
            .map(|d| d.sim)
            .unwrap_or_else(|e| unreachable!("simulator flag defaults: {e}"))
    }
}

impl SimConfig {
    pub fn end_date(&self) -> NaiveDate {
        self.end_date
            .unwrap_or_else(|| Utc::now().date_naive() - Duration::days(1))
    }

    pub fn data(&self) -> DataConfig {
        DataConfig {
            seed: self.seed,
            per_day: self.per_day,
            end_date: self.end_date(),
            unknown_field: self.fault_unknown_field,
            unknown_enum: self.fault_unknown_enum,
            odd_records: self.fault_odd_records,
            ties: self.extract.ties,
            agents: self.agents,
        }
    }
}

impl Dataset {
    /// The data set a simulator with `cfg` serves.
    pub fn for_config(cfg: &SimConfig) -> Dataset {
        Dataset::new(cfg.data())
    }
}

/// A running simulator.
pub struct SimHandle {
    addr: SocketAddr,
    state: Arc<server::State>,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl SimHandle {
    /// `http://127.0.0.1:PORT`: both the login and the API base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn dataset(&self) -> &Dataset {
        &self.state.data
    }

    pub fn stats(&self) -> SimStats {
        self.state.stats()
    }

    /// Sets the instant the simulated service answers as of (`None`: the wall clock again).
    pub fn set_now(&self, now: Option<chrono::DateTime<chrono::Utc>>) {
        self.state.set_now(now)
    }

    pub async fn shutdown(self) {
        let _ = self.shutdown.send(());
        let _ = self.task.await;
    }
}

/// Starts a simulator on 127.0.0.1 with a free port.
pub async fn start(cfg: SimConfig) -> std::io::Result<SimHandle> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    serve(listener, cfg).await
}

/// Serves on `listener` until the handle is shut down.
pub async fn serve(
    listener: tokio::net::TcpListener,
    cfg: SimConfig,
) -> std::io::Result<SimHandle> {
    let addr = listener.local_addr()?;
    let state = Arc::new(server::State::new(cfg));
    let app = server::router(state.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    Ok(SimHandle {
        addr,
        state,
        shutdown: tx,
        task,
    })
}

/// The `simulate` subcommand: prints `listening on http://ADDR` first, serves until Ctrl-C.
pub async fn run_cli(cfg: SimConfig, listen: SocketAddr) -> std::io::Result<()> {
    use std::io::Write;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let end = cfg.end_date();
    let handle = serve(listener, cfg.clone()).await?;
    let mut out = std::io::stdout();
    writeln!(out, "listening on {}", handle.base_url())?;
    out.flush()?;
    eprintln!(
        "simulating {} conversations/day up to {end} (seed {}); client id/secret: {}/<as given>; Ctrl-C stops",
        cfg.per_day, cfg.seed, cfg.client_id
    );
    let _ = tokio::signal::ctrl_c().await;
    handle.shutdown().await;
    Ok(())
}
