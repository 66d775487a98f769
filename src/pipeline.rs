//! The main job: for each dataset and each of its partitions (a UTC day), lease → pull pages →
//! convert → write → publish, with a summary per partition.
//!
//! `extract` (pages from the API, one run per dataset-day) and `convert` (pages from saved
//! files, one run over the days they cover) share one orchestration, `PartitionRun`; only the
//! page feed differs. The stages run concurrently over bounded channels, so the next page is
//! being read while the last one converts, and memory stays bounded however big the day is:
//!
//! ```text
//!  feed (API task │ file thread) ──pages──▶ converter thread ──batches──▶ writers (this task)
//! ```
//! A partition becomes visible only when all of it is written ([`crate::sink::Store::publish`]);
//! a failure or a deadline leaves its previous data as it was.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::datasets::IdAudit;
use crate::datasets::{Dataset, Partitioning};
use crate::error_class::ErrorClass;
use crate::genesys::{GenesysClient, GenesysError, Mode, RequestStatsSnapshot};
use crate::interval::Interval;
use crate::page::{record_key, ArchiveStamp, Page};
use crate::sink::parquet::{ParquetMeta, ParquetSettings};
use crate::sink::{split_by_date, DayWriter, Manifest, RunId, SinkError, Store, StoreError};
use crate::tables::{ConvertError, ConvertOptions, Converter, TableBatch};

/// Settings of the pipeline (the client and the store have their own).
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// What `extract` writes (the datasets on by default, [`Dataset::defaults`]); `convert`
    /// reads pages of the first.
    pub datasets: Vec<&'static Dataset>,
    pub mode: Mode,
    /// Days extracted at once.
    pub day_concurrency: usize,
    pub parquet: ParquetSettings,
    pub convert: ConvertOptions,
    /// A table's part file is closed and a new one started past this size.
    pub max_file_bytes: u64,
    /// How long a day's lease lasts unless renewed; the store's heartbeat renews it every
    /// third of that while the run lives, so this bounds how long a crashed run blocks a day.
    pub lease_ttl: chrono::Duration,
    /// Also store the pages (filtered records, gzipped NDJSON) so `convert` can rebuild tables.
    pub archive_raw: bool,
    /// Pages fetched ahead of the converter.
    pub page_buffer: usize,
    /// Threads parsing and converting `convert`'s pages (API pages arrive one at a time and
    /// are converted on one).
    pub threads: usize,
    /// Stop starting new pages after this instant (Lambda time budget); unfinished days are
    /// reported as such and keep their previous data.
    pub deadline: Option<Instant>,
    /// Also extract again, whole, every earlier day of the datasets whose records can stay open
    /// ([`crate::datasets::RecordSpec::end`]) whose manifest still counts open records, back
    /// to [`Self::open_horizon_days`] before the range's last day (the nightly run: a status
    /// or a conversation open for weeks gets its end once it has one).
    pub reopen_open_days: bool,
    /// How far back [`Self::reopen_open_days`] looks, in days before the range's last day;
    /// records still open past it stay open in the tables.
    pub open_horizon_days: u32,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            datasets: Dataset::all().to_vec(),
            mode: Mode::Auto,
            day_concurrency: 1,
            parquet: ParquetSettings::default(),
            convert: ConvertOptions::default(),
            max_file_bytes: 256 << 20,
            lease_ttl: chrono::Duration::minutes(2),
            archive_raw: false,
            page_buffer: 4,
            threads: crate::par::workers(),
            deadline: None,
            reopen_open_days: false,
            open_horizon_days: crate::config::DEFAULT_OPEN_HORIZON_DAYS,
        }
    }
}

/// Why a day failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    #[error("day {date}: {source}")]
    Genesys {
        date: NaiveDate,
        #[source]
        source: Box<GenesysError>,
    },
    #[error("day {date}: {source}")]
    Convert {
        date: NaiveDate,
        #[source]
        source: ConvertError,
    },
    #[error("day {date}: {source}")]
    Sink {
        date: NaiveDate,
        #[source]
        source: SinkError,
    },
    #[error("day {date}: stopped before the deadline after {pages} pages; the day's previous data is unchanged, run it again")]
    Deadline { date: NaiveDate, pages: u64 },
    #[error("{0}")]
    Input(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl PipelineError {
    /// Worth retrying as is (throttling, a failing server, a held lease, a deadline).
    pub fn is_transient(&self) -> bool {
        if self.run_fatal().is_some() {
            return false;
        }
        match self {
            PipelineError::Genesys { source, .. } => source.is_transient(),
            PipelineError::Sink { source, .. } => source.is_transient(),
            PipelineError::Deadline { .. } => true,
            _ => false,
        }
    }
}

impl PipelineError {
    /// Why every other day of the run would fail the same way, if so (login refused, host
    /// unreachable, a permission missing, the store refusing access): the run stops at once
    /// with this message (prefixed with the dataset by the run), naming the cause and what to
    /// change.
    pub fn run_fatal(&self) -> Option<String> {
        match self {
            PipelineError::Genesys { source, .. } => source.run_fatal(),
            PipelineError::Sink { source, .. } if !source.is_transient() => {
                store_refuses_access(source)
            }
            _ => None,
        }
    }

    /// A run-fatal failure that concerns only its dataset (a permission the other datasets do
    /// not need): the other datasets' days go on.
    pub fn fatal_to_dataset_only(&self) -> bool {
        matches!(self, PipelineError::Genesys { source, .. }
            if matches!(**source, GenesysError::Api { status: 403, .. }))
    }

    /// A stable class: the Lambda's `errorType`, which Step Functions retries match on.
    ///
    /// A store refusing access keeps its own class (`Store.Permanent`, not retried either);
    /// the run still stops at once and its other days are `not attempted` as `Run.Fatal`.
    pub fn error_class(&self) -> ErrorClass {
        if matches!(self, PipelineError::Genesys { .. }) && self.run_fatal().is_some() {
            return ErrorClass::RunFatal;
        }
        match self {
            PipelineError::Genesys { source, .. } if source.is_transient() => {
                ErrorClass::GenesysTransient
            }
            PipelineError::Genesys { .. } => ErrorClass::GenesysPermanent,
            PipelineError::Sink { source, .. } if source.is_transient() => {
                ErrorClass::StoreTransient
            }
            PipelineError::Sink { .. } => ErrorClass::StorePermanent,
            PipelineError::Convert { .. } => ErrorClass::ConvertFailed,
            PipelineError::Deadline { .. } => ErrorClass::DeadlineIncomplete,
            PipelineError::Input(_) => ErrorClass::InputInvalid,
            PipelineError::Internal(_) => ErrorClass::Internal,
        }
    }

    /// [`PipelineError::error_class`]'s name.
    pub fn error_type(&self) -> &'static str {
        self.error_class().as_str()
    }
}

/// A store error that no day can avoid: access denied, a bucket that does not exist.
fn store_refuses_access(e: &SinkError) -> Option<String> {
    let text = e.to_string();
    let denied = text.contains("AccessDenied")
        || text.to_ascii_lowercase().contains("access denied")
        || matches!(e, SinkError::Store(StoreError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::PermissionDenied);
    let no_bucket = text.contains("does not exist") && text.contains("bucket");
    (denied || no_bucket).then(|| {
        format!(
            "the store refuses access ({text}): check the output location (--out / GP_OUT) and \
             that the role or user may write there"
        )
    })
}

impl From<(NaiveDate, StoreError)> for PipelineError {
    fn from((date, e): (NaiveDate, StoreError)) -> Self {
        PipelineError::Sink {
            date,
            source: e.into(),
        }
    }
}

/// What happened to one partition (a dataset's day).
#[derive(Debug, Clone, Serialize)]
pub struct DaySummary {
    pub dataset: &'static str,
    pub date: NaiveDate,
    pub interval: String,
    pub partial_day: bool,
    /// `ok`, `failed`, or `incomplete` (deadline reached; retry the day).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether retrying the day as is may succeed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transient: Option<bool>,
    /// The error's class, as the Lambda reports it (`Genesys.Transient`, `Store.Permanent`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_availability_date: Option<DateTime<Utc>>,
    /// Records written (conversations for the conversations dataset; the manifest's count).
    pub conversations: u64,
    pub rows: BTreeMap<String, u64>,
    pub files: u64,
    pub bytes: u64,
    pub pages: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<RequestStatsSnapshot>,
    /// Fields kept in `extra` because their value had an unexpected type.
    pub type_mismatches: u64,
    /// Rows dropped as belonging to another partition (datasets partitioned by each row's
    /// day, whose records span days).
    #[serde(skip_serializing_if = "is_zero")]
    pub rows_other_days: u64,
    /// What the partition lacks and why, though written (an optional listing refused).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub seconds: f64,
}

impl DaySummary {
    fn new(dataset: &'static Dataset, date: NaiveDate, interval: &Interval) -> Self {
        Self {
            dataset: dataset.name,
            date,
            interval: interval.to_genesys(),
            partial_day: !interval.is_whole_days(),
            status: "failed",
            error: None,
            transient: None,
            error_type: None,
            run_id: None,
            mode: None,
            data_availability_date: None,
            conversations: 0,
            rows: BTreeMap::new(),
            files: 0,
            bytes: 0,
            pages: 0,
            requests: None,
            type_mismatches: 0,
            rows_other_days: 0,
            warnings: Vec::new(),
            seconds: 0.0,
        }
    }

    fn record_manifest(&mut self, m: &Manifest) {
        self.status = "ok";
        self.conversations = m.conversations;
        self.rows = m.rows.clone();
        self.files = m.files.len() as u64;
        self.bytes = m.files.iter().map(|f| f.bytes).sum();
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The summary of a whole run: printed by the CLI, returned by the Lambda.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub ok: bool,
    pub output: String,
    pub days: Vec<DaySummary>,
    /// Conversations written (records of the conversations dataset; see `records`).
    pub conversations: u64,
    /// Records written per dataset.
    pub records: BTreeMap<&'static str, u64>,
    pub files: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// `convert` only: coverage, and records dropped as outside it or as older copies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub convert: Option<ConvertTotals>,
    /// Why the run stopped before trying every day (a failure no day can avoid), and what to
    /// change; those days are `not attempted`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fatal: Option<String>,
    /// Warnings of all partitions (each listed in its partition's `warnings`).
    pub warnings: u64,
    /// Per reference table written in the run: ids the run's published rows carry (queue,
    /// wrap-up code, user, division ids) that its snapshot does not list, so a join finds no
    /// name for them (deleted before the snapshot; an earlier snapshot may still name them in
    /// the `_latest` view).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub unresolved_ids: BTreeMap<String, u64>,
    /// Partitions (`dataset/date`) before the range extracted again because their manifest
    /// counted open records ([`PipelineConfig::reopen_open_days`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reopened: Vec<String>,
    /// Why the partitions with open records could not be listed (they are then left to the
    /// next run; counted in `warnings`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reopen_error: Option<String>,
}

impl RunSummary {
    fn new(output: String, mut days: Vec<DaySummary>, started: Instant) -> Self {
        days.sort_by_key(|d| (d.date, d.dataset));
        Self {
            fatal: None,
            ok: days.iter().all(|d| d.status == "ok"),
            output,
            conversations: days
                .iter()
                .filter(|d| d.dataset == crate::datasets::conversations::DATASET.name)
                .map(|d| d.conversations)
                .sum(),
            records: days.iter().fold(BTreeMap::new(), |mut m, d| {
                *m.entry(d.dataset).or_insert(0) += d.conversations;
                m
            }),
            files: days.iter().map(|d| d.files).sum(),
            bytes: days.iter().map(|d| d.bytes).sum(),
            seconds: started.elapsed().as_secs_f64(),
            warnings: days.iter().map(|d| d.warnings.len() as u64).sum(),
            unresolved_ids: BTreeMap::new(),
            days,
            convert: None,
            reopened: Vec::new(),
            reopen_error: None,
        }
    }

    /// Days that did not finish (failed or cut by the deadline) in any dataset, for a retry.
    pub fn unfinished(&self) -> Vec<NaiveDate> {
        let mut days: Vec<NaiveDate> = self
            .days
            .iter()
            .filter(|d| d.status != "ok")
            .map(|d| d.date)
            .collect();
        days.dedup();
        days
    }
}

/// Observes progress (the CLI draws a bar; the Lambda logs).
pub trait Progress: Send + Sync {
    fn day_started(&self, _date: NaiveDate) {}
    /// Pages were converted: `conversations` (records) since the last call (calls may cover
    /// many pages).
    fn page_done(&self, _date: NaiveDate, _conversations: u64) {}
    fn day_finished(&self, _summary: &DaySummary) {}
}

/// A [`Progress`] that shows nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Checks a requested range: whole UTC days unless `partial_days`.
pub fn check_range(range: &Interval, partial_days: bool) -> Result<(), PipelineError> {
    if !partial_days && !range.is_whole_days() {
        return Err(PipelineError::Input(format!(
            "range {range} does not start and end on UTC midnight: each day's partition would \
             hold only part of the day. Use whole days (e.g. --start 2026-11-20 --end 2026-11-21) \
             or pass --partial-days to write those days with only that part"
        )));
    }
    Ok(())
}

/// The partitions (dataset, day) a run of `extract` writes for `range`: every day of it for
/// datasets partitioned by day, today's snapshot for those partitioned by run date.
fn partitions(
    datasets: &[&'static Dataset],
    range: &Interval,
) -> Vec<(&'static Dataset, Interval)> {
    let mut out = Vec::new();
    for d in datasets {
        match d.partitioning {
            Partitioning::RecordDay { .. } | Partitioning::RowDay { .. } => {
                out.extend(range.split_days().into_iter().map(|day| (*d, day)))
            }
            Partitioning::RunDate { .. } => {
                out.push((*d, Interval::day(Utc::now().date_naive())));
            }
        }
    }
    out
}

/// Extracts `range` day by day into `store`, for each dataset of `cfg.datasets`.
pub async fn extract(
    client: &GenesysClient,
    store: Arc<dyn Store>,
    range: Interval,
    cfg: &PipelineConfig,
    progress: Arc<dyn Progress>,
) -> RunSummary {
    let started = Instant::now();
    let mut units = partitions(&cfg.datasets, &range);
    let (reopened, reopen_error) = if cfg.reopen_open_days {
        match open_days(&*store, cfg, &range).await {
            Ok(days) => (days, None),
            Err(e) => {
                tracing::error!(error = %e, "could not list the partitions with open records; the next run tries again");
                (Vec::new(), Some(e.to_string()))
            }
        }
    } else {
        (Vec::new(), None)
    };
    units.extend(reopened.iter().map(|(d, date)| (*d, Interval::day(*date))));
    // The first failure that no day can avoid, of the run (a refused login) or of one dataset
    // (a permission only it needs); days not started by then are not attempted.
    let fatal: std::sync::Mutex<Fatal> = std::sync::Mutex::new(Fatal::default());
    let fatal_now = |dataset: &str| {
        fatal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .cause(dataset)
    };
    let audit = IdAudit::default();
    let summaries: Vec<DaySummary> = futures::stream::iter(units)
        .map(|(dataset, day)| {
            let store = store.clone();
            let progress = progress.clone();
            let fatal = &fatal;
            let audit = &audit;
            async move {
                let date = day.start.date_naive();
                let mut summary = DaySummary::new(dataset, date, &day);
                if let Some(cause) = fatal_now(dataset.name) {
                    summary.status = "not attempted";
                    summary.transient = Some(false);
                    summary.error_type = Some(ErrorClass::RunFatal.as_str().to_string());
                    summary.error = Some(format!("not attempted: {cause}"));
                    return summary;
                }
                progress.day_started(date);
                let t0 = Instant::now();
                let run = extract_day(client, store, dataset, day, cfg, &*progress, &mut summary);
                if let Err(e) = run.await.map(|ids| audit.merge(&ids)) {
                    summary.status = if matches!(e, PipelineError::Deadline { .. }) {
                        "incomplete"
                    } else {
                        "failed"
                    };
                    summary.transient = Some(e.is_transient());
                    summary.error_type = Some(e.error_type().to_string());
                    summary.error = Some(e.to_string());
                    if let Some(cause) = e.run_fatal() {
                        let cause = format!("{} dataset: {cause}", dataset.name);
                        let mut f = fatal.lock().unwrap_or_else(|p| p.into_inner());
                        if e.fatal_to_dataset_only() {
                            tracing::error!(%date, dataset = dataset.name, error = %e, "stopping the dataset: {cause}");
                            f.datasets.entry(dataset.name).or_insert(cause);
                        } else {
                            tracing::error!(%date, dataset = dataset.name, error = %e, "stopping the run: {cause}");
                            f.run.get_or_insert(cause);
                        }
                    } else {
                        tracing::error!(%date, dataset = dataset.name, error = %e, "day failed");
                    }
                }
                summary.seconds = t0.elapsed().as_secs_f64();
                progress.day_finished(&summary);
                summary
            }
        })
        .buffer_unordered(cfg.day_concurrency.max(1))
        .collect()
        .await;
    let mut summary = RunSummary::new(store.location(), summaries, started);
    summary.fatal = fatal
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .summary();
    summary.unresolved_ids = audit.unresolved();
    summary.reopened = reopened
        .iter()
        .map(|(d, date)| format!("{}/{date}", d.name))
        .collect();
    if reopen_error.is_some() {
        summary.warnings += 1;
    }
    summary.reopen_error = reopen_error;
    summary
}

/// The partitions before `range` (within the horizon) whose latest manifest counts open
/// records, of every dataset partitioned by day whose records can stay open: one listing of
/// manifests per dataset. No dataset is named: the descriptor says whether records can be open.
async fn open_days(
    store: &dyn Store,
    cfg: &PipelineConfig,
    range: &Interval,
) -> Result<Vec<(&'static Dataset, NaiveDate)>, StoreError> {
    let Some(last) = range.dates().last().copied() else {
        return Ok(Vec::new());
    };
    let from = last - chrono::Duration::days(i64::from(cfg.open_horizon_days));
    let to = range.start.date_naive();
    let mut out = Vec::new();
    for d in &cfg.datasets {
        let by_day = matches!(
            d.partitioning,
            Partitioning::RecordDay { .. } | Partitioning::RowDay { .. }
        );
        if !by_day || d.record.end.is_none() || from >= to {
            continue;
        }
        for date in store.open_partitions(d, from..to).await? {
            out.push((*d, date));
        }
    }
    Ok(out)
}

/// Failures that stop the rest of a run, or the rest of one dataset's days.
#[derive(Default)]
struct Fatal {
    run: Option<String>,
    datasets: BTreeMap<&'static str, String>,
}

impl Fatal {
    /// Why a day of `dataset` is not attempted, if it is not.
    fn cause(&self, dataset: &str) -> Option<String> {
        self.run
            .clone()
            .or_else(|| self.datasets.get(dataset).cloned())
    }

    /// The run's `fatal`: every cause, the run's first (the run fails loudly either way).
    fn summary(self) -> Option<String> {
        let causes: Vec<String> = self
            .run
            .into_iter()
            .chain(self.datasets.into_values())
            .collect();
        (!causes.is_empty()).then(|| causes.join("; "))
    }
}

/// Time the publish of a day needs: a base for the commit's requests plus the buffered rows
/// still to encode and upload. The fetch stops this long before the deadline.
fn publish_margin(buffered_bytes: usize) -> Duration {
    const BASE: Duration = Duration::from_secs(2);
    // A conservative encode-and-upload rate for what is still buffered.
    const BYTES_PER_SEC: u64 = 8 << 20;
    BASE + Duration::from_millis(buffered_bytes as u64 * 1000 / BYTES_PER_SEC)
}

/// How long deleting the jobs a stopped day leaves behind may take.
const JOB_CLEANUP: Duration = Duration::from_secs(5);

/// One dataset-day from the API: plan, lease, then the shared run.
async fn extract_day(
    client: &GenesysClient,
    store: Arc<dyn Store>,
    dataset: &'static Dataset,
    day: Interval,
    cfg: &PipelineConfig,
    progress: &dyn Progress,
    summary: &mut DaySummary,
) -> Result<IdAudit, PipelineError> {
    let date = day.start.date_naive();
    let started = Utc::now();
    let run = RunId::new(started);
    summary.run_id = Some(run.to_string());
    let planning = dataset.source.plan(client, day, cfg.mode);
    let planned = match cfg.deadline {
        Some(d) => tokio::time::timeout_at(stop_at(d, 0), planning)
            .await
            .map_err(|_| PipelineError::Deadline { date, pages: 0 })?,
        None => planning.await,
    };
    let plan = planned.map_err(|source| PipelineError::Genesys {
        date,
        source: Box::new(source),
    })?;
    summary.mode = Some(plan.paths.clone());
    summary.data_availability_date = plan.data_availability_date;
    let mut parts = PartitionRun::new(dataset, store, run, started, [(date, day)]);
    // Leased before the first request for pages: a day another run holds costs no API work.
    parts.lease(date, cfg).await?;
    let extraction = (plan.start)();
    let stats = extraction.stats.clone();
    let cleanup = extraction.cleanup.clone();
    let warnings = extraction.warnings.clone();
    let stamp = ArchiveStamp {
        interval: day,
        extracted_at: started,
    };
    let feed = Feed::api(extraction.pages, date, cfg);
    let result = parts
        .stream(feed, cfg, progress, cfg.archive_raw.then_some(stamp))
        .await;
    if result.is_err() {
        // A stopped fetch leaves its jobs behind: they count against the org's job limit.
        let _ = tokio::time::timeout(JOB_CLEANUP, cleanup.delete_jobs()).await;
    }
    summary.requests = Some(stats.snapshot());
    summary.warnings = warnings.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let counts = parts.counts(date);
    summary.pages = counts.pages;
    summary.type_mismatches = counts.type_mismatches;
    summary.rows_other_days = parts.rows_elsewhere;
    match result {
        Ok(()) => {
            let m = parts.publish(date, cfg).await?;
            summary.record_manifest(&m);
            Ok(parts.ids)
        }
        Err(e) => {
            parts.abort().await;
            Err(e)
        }
    }
}

/// When the fetch must stop so that a publish of `buffered_bytes` ends by `deadline`.
fn stop_at(deadline: Instant, buffered_bytes: usize) -> tokio::time::Instant {
    let at = deadline
        .checked_sub(publish_margin(buffered_bytes))
        .unwrap_or(deadline);
    tokio::time::Instant::from_std(at)
}

/// A page on its way to the converter, with how many of its records each partition gets.
struct Fed {
    page: FedPage,
    /// Records per partition (the page counts for the first); counted by the converter for a
    /// raw page.
    days: Vec<(NaiveDate, u64)>,
}

/// A page for the converter: split (and filtered) already, or raw.
enum FedPage {
    Split(Page),
    /// Split and filtered as the converter reads it ([`OnceFilter`]: `convert`'s single read).
    Raw(crate::files::RawPage, Arc<OnceFilter>),
}

/// Where a run's pages come from: a task or thread sending them, and its outcome.
struct Feed {
    pages: mpsc::Receiver<Fed>,
    /// The feeder's outcome: the pages it read, or why it stopped.
    done: tokio::task::JoinHandle<Result<u64, PipelineError>>,
    /// Pages read so far (for a deadline's message).
    read: Arc<std::sync::atomic::AtomicU64>,
    /// Threads converting its pages: API pages arrive one at a time, files as fast as the
    /// cores parse them.
    workers: usize,
}

impl Feed {
    /// The pages of one API extraction (already filtered to `date` and deduplicated), pulled
    /// by a task of its own: at the deadline (less the time the publish needs) or on a
    /// converter or writer error it is cancelled wherever it waits (a job poll, a retry
    /// back-off, a request), not only between pages.
    fn api(
        pages: futures::stream::BoxStream<'static, Result<Page, GenesysError>>,
        date: NaiveDate,
        cfg: &PipelineConfig,
    ) -> Feed {
        let (tx, rx) = mpsc::channel::<Fed>(cfg.page_buffer.max(1));
        let deadline = cfg.deadline;
        let read = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = read.clone();
        let done = tokio::spawn(async move {
            let mut pages = pages;
            loop {
                let n = counter.load(std::sync::atomic::Ordering::Relaxed);
                if deadline.is_some_and(|d| tokio::time::Instant::now() >= stop_at(d, 0)) {
                    return Err(PipelineError::Deadline { date, pages: n });
                }
                match pages.next().await {
                    None => return Ok(n),
                    Some(Err(source)) => {
                        return Err(PipelineError::Genesys {
                            date,
                            source: Box::new(source),
                        })
                    }
                    Some(Ok(page)) => {
                        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let days = vec![(date, page.len() as u64)];
                        let page = FedPage::Split(page);
                        if tx.send(Fed { page, days }).await.is_err() {
                            // The converter stopped; its error is the one to report.
                            return Ok(n + 1);
                        }
                    }
                }
            }
        });
        Feed {
            pages: rx,
            done,
            read,
            workers: 1,
        }
    }

    /// The second read of `convert`'s files: only the kept copy of each record, on a
    /// blocking thread. Pages are not parsed again: each must be the page the first read
    /// found (length and hash), and is split where that read found its records; the
    /// converter then parses each record in full.
    fn files(
        dataset: &'static Dataset,
        paths: Vec<std::path::PathBuf>,
        plan: ConvertPlan,
        threads: usize,
    ) -> Feed {
        let workers = threads.max(1);
        Feed::on_thread(workers, move |tx, counter| {
            let (mut seq, mut pages_read) = (0usize, 0usize);
            let mut failed: Result<(), PipelineError> = Ok(());
            let plan = &plan;
            crate::par::ordered_map(
                crate::files::raw_pages(&paths, dataset.envelope).enumerate(),
                vec![(); workers],
                |(), (i, (_, raw))| {
                    let raw = raw.map_err(input_error)?;
                    match plan.pages.get(i) {
                        Some(p) if p.fingerprint == raw.fingerprint() => {
                            raw.with_records(p.records.clone()).map_err(input_error)
                        }
                        _ => Err(plan.input_changed(
                            plan.pages[..i.min(plan.pages.len())]
                                .iter()
                                .map(|p| p.records.len())
                                .sum(),
                        )),
                    }
                },
                |page| {
                    let mut page = match page {
                        Ok(p) => p,
                        Err(e) => {
                            failed = Err(e);
                            return false;
                        }
                    };
                    pages_read += 1;
                    let mut days: Vec<(NaiveDate, u64)> = Vec::new();
                    let retained = page.try_retain(|_, _| {
                        let this = seq;
                        seq += 1;
                        if !plan.kept[this] {
                            return Ok(false);
                        }
                        count_record(&mut days, plan.record_days[this]);
                        Ok::<bool, std::convert::Infallible>(true)
                    });
                    if let Err(never) = retained {
                        match never {}
                    }
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    // An error: the converter or the writer stopped; theirs is the one to report.
                    let page = FedPage::Split(page);
                    tx.blocking_send(Fed { page, days }).is_ok()
                },
            );
            failed?;
            if tx.is_closed() {
                return Ok(());
            }
            // The plan holds only for the input it read: a pipe reads empty the second time.
            if pages_read != plan.pages.len() || seq != plan.kept.len() {
                return Err(plan.input_changed(seq));
            }
            Ok(())
        })
    }

    /// `convert`'s files read once, when the days it replaces are known before reading
    /// (`--start`/`--end`): the pages go to the converters unparsed, which split each as they
    /// convert it, dropping records outside `days` ([`OnceFilter`]).
    fn files_once(
        dataset: &'static Dataset,
        paths: Vec<std::path::PathBuf>,
        days: std::collections::BTreeSet<NaiveDate>,
        threads: usize,
        once: Arc<OnceRead>,
    ) -> Feed {
        let filter = Arc::new(OnceFilter {
            dataset,
            days,
            once,
            seen: Default::default(),
        });
        Feed::on_thread(threads.max(1), move |tx, counter| {
            for (_, raw) in crate::files::raw_pages(&paths, dataset.envelope) {
                let page = FedPage::Raw(raw.map_err(input_error)?, filter.clone());
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let days = Vec::new();
                if tx.blocking_send(Fed { page, days }).is_err() {
                    // The converter or the writer stopped; theirs is the error to report.
                    break;
                }
            }
            Ok(())
        })
    }

    /// A feed whose pages `send` sends from a blocking thread (files are read with blocking
    /// I/O), counting each in its counter; its outcome is the pages sent.
    fn on_thread(
        workers: usize,
        send: impl FnOnce(&mpsc::Sender<Fed>, &std::sync::atomic::AtomicU64) -> Result<(), PipelineError>
            + Send
            + 'static,
    ) -> Feed {
        let (tx, rx) = mpsc::channel::<Fed>(2);
        let read = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = read.clone();
        let done = tokio::task::spawn_blocking(move || {
            send(&tx, &counter)?;
            Ok(counter.load(std::sync::atomic::Ordering::Relaxed))
        });
        Feed {
            pages: rx,
            done,
            read,
            workers,
        }
    }
}

/// Counts a record of a page in its partition ([`Fed::days`]).
fn count_record(days: &mut Vec<(NaiveDate, u64)>, date: NaiveDate) {
    match days.iter_mut().find(|(d, _)| *d == date) {
        Some((_, n)) => *n += 1,
        None => days.push((date, 1)),
    }
}

/// What [`Feed::files_once`] reports besides its pages.
#[derive(Default)]
struct OnceRead {
    /// Records dropped for starting outside the covered days.
    outside: std::sync::atomic::AtomicU64,
    /// A record appeared twice: the read stopped there.
    duplicate: std::sync::atomic::AtomicBool,
}

/// What [`Feed::files_once`] keeps and drops, applied by the converter as it reads each page
/// (one pass: splitting pages first took a tenth of `convert`'s CPU). Records outside `days`
/// are dropped (counted in `once.outside`). Which copy of a record to keep cannot be chosen in
/// one read, so the first record seen twice stops the read (`once.duplicate`); the caller
/// discards what was written and reads twice.
struct OnceFilter {
    dataset: &'static Dataset,
    days: std::collections::BTreeSet<NaiveDate>,
    once: Arc<OnceRead>,
    /// The record ids seen, folded to 64 bits (half the memory; two ids that fold alike only
    /// cost the second read a real duplicate takes), in about 9 bytes each: the only memory of
    /// `convert` that grows with the day. Used by the converter loop's one ordered consumer, so
    /// in page order.
    seen: std::sync::Mutex<crate::id_set::IdSet>,
}

/// A raw page as [`OnceFilter::convert`] read it.
struct OnceConverted {
    /// Its kept records.
    page: Page,
    /// Per record read (kept or dropped): its index in the page, id key and start.
    ids: Vec<(usize, u128, usize)>,
    days: Vec<(NaiveDate, u64)>,
    /// Batches that filled up.
    batches: Vec<TableBatch>,
}

impl OnceFilter {
    /// Splits `raw` into records as `conv` converts the kept ones.
    fn convert(
        &self,
        raw: crate::files::RawPage,
        conv: &mut Converter,
    ) -> Result<OnceConverted, PipelineError> {
        use crate::page::Take;
        let origin = raw.origin().clone();
        let mut failed = None;
        let (mut ids, mut days, mut batches, mut outside) = (Vec::new(), Vec::new(), Vec::new(), 0);
        let page = raw.parse_each(&mut |text, i, start| {
            let key = record_key(&text[start..], &self.dataset.record).map_err(|reason| {
                failed = Some(PipelineError::Input(format!(
                    "{origin}: record {i}: {reason}"
                )));
            })?;
            ids.push((i, crate::genesys::id_key(&key.id), start));
            let day = record_day(self.dataset, &key);
            if !self.days.contains(&day) {
                outside += 1;
                return Ok(Take::Drop);
            }
            let end = conv
                .push_record_at(text, start, &origin, i, &mut batches)
                .map_err(|source| {
                    failed = Some(PipelineError::Convert { date: day, source });
                })?;
            count_record(&mut days, day);
            Ok(Take::Read(end))
        });
        if let Some(e) = failed {
            return Err(e);
        }
        let page = page.map_err(input_error)?;
        self.once
            .outside
            .fetch_add(outside, std::sync::atomic::Ordering::Relaxed);
        Ok(OnceConverted {
            page,
            ids,
            days,
            batches,
        })
    }

    /// In page order: the first id seen twice stops the read.
    fn check(&self, page: &Page, ids: &[(usize, u128, usize)]) -> Result<(), PipelineError> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        for &(i, id, start) in ids {
            if seen.insert((id as u64) ^ (id >> 64) as u64) {
                continue;
            }
            self.once
                .duplicate
                .store(true, std::sync::atomic::Ordering::Relaxed);
            let id = std::str::from_utf8(&page.body()[start..])
                .ok()
                .and_then(|text| record_key(text, &self.dataset.record).ok())
                .map(|k| k.id.to_string())
                .unwrap_or_default();
            return Err(PipelineError::Input(format!(
                "{}: record {i}: {} {id} appears a second time in the input",
                page.origin, self.dataset.record.name,
            )));
        }
        Ok(())
    }
}

/// A page of `convert`'s files, parsed, with its records' id keys and partitions.
type KeyedPage = (Page, Vec<(u128, NaiveDate)>);

fn keyed_page(
    dataset: &'static Dataset,
    raw: Result<crate::files::RawPage, crate::files::FileError>,
) -> Result<KeyedPage, PipelineError> {
    let page = raw.and_then(|r| r.parse()).map_err(input_error)?;
    let keys = page
        .records()
        .enumerate()
        .map(|(i, text)| {
            let key = record_key(text, &dataset.record).map_err(|reason| {
                PipelineError::Input(format!("{}: record {i}: {reason}", page.origin))
            })?;
            Ok((crate::genesys::id_key(&key.id), record_day(dataset, &key)))
        })
        .collect::<Result<Vec<_>, PipelineError>>()?;
    Ok((page, keys))
}

/// The partition a record's rows go to, for datasets partitioned by the record's day.
fn record_day(dataset: &Dataset, key: &crate::page::RecordKey<'_>) -> NaiveDate {
    match dataset.partitioning {
        Partitioning::RecordDay { .. } | Partitioning::RowDay { .. } => key.start().date_naive(),
        Partitioning::RunDate { .. } => Utc::now().date_naive(),
    }
}

/// What the converter thread sends to the writer.
enum Converted {
    Batches(Vec<TableBatch>),
    /// One gzipped NDJSON file of archived pages.
    Raw(Bytes),
    /// Progress: per partition, (pages, records) converted since the last such message.
    Pages(BTreeMap<NaiveDate, (u64, u64)>),
}

/// Progress the converter could not hand over yet (the channel was full).
#[derive(Default)]
struct PendingProgress(BTreeMap<NaiveDate, (u64, u64)>);

impl PendingProgress {
    fn add(&mut self, days: &[(NaiveDate, u64)]) {
        for (i, (d, n)) in days.iter().enumerate() {
            let e = self.0.entry(*d).or_default();
            // A page counts once, for its first partition.
            e.0 += u64::from(i == 0);
            e.1 += n;
        }
    }

    /// Hands the counts over if the channel has room: progress must never make the converter
    /// wait for the writer, or converting and encoding would take turns instead of overlapping.
    fn offer(&mut self, tx: &mpsc::Sender<Converted>) -> Result<(), ()> {
        if self.0.is_empty() {
            return Ok(());
        }
        match tx.try_send(Converted::Pages(std::mem::take(&mut self.0))) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(Converted::Pages(back))) => {
                self.0 = back;
                Ok(())
            }
            Err(_) => Err(()),
        }
    }
}

/// What the converter saw, by partition.
#[derive(Debug, Default, Clone, Copy)]
struct DayCounts {
    pages: u64,
    records: u64,
    type_mismatches: u64,
}

/// The shared half of `extract` and `convert`: one run writing some partitions of one dataset.
/// Pages come from a [`Feed`]; the converter turns them into batches on a thread of its own;
/// batches go to the writer of their partition, leased on first sight (or up front); then each
/// partition is published, or all are discarded.
struct PartitionRun {
    dataset: &'static Dataset,
    store: Arc<dyn Store>,
    run: RunId,
    started: DateTime<Utc>,
    /// The partitions this run may write, and the interval each covers.
    targets: BTreeMap<NaiveDate, Interval>,
    writers: BTreeMap<NaiveDate, DayWriter>,
    counts: BTreeMap<NaiveDate, DayCounts>,
    /// Rows of other partitions, dropped ([`Partitioning::RowDay`] only).
    rows_elsewhere: u64,
    /// Ids its rows carry that reference tables name, or that a reference snapshot lists.
    ids: IdAudit,
}

impl PartitionRun {
    fn new(
        dataset: &'static Dataset,
        store: Arc<dyn Store>,
        run: RunId,
        started: DateTime<Utc>,
        targets: impl IntoIterator<Item = (NaiveDate, Interval)>,
    ) -> Self {
        Self {
            dataset,
            store,
            run,
            started,
            targets: targets.into_iter().collect(),
            writers: BTreeMap::new(),
            counts: BTreeMap::new(),
            rows_elsewhere: 0,
            ids: IdAudit::default(),
        }
    }

    fn counts(&self, date: NaiveDate) -> DayCounts {
        self.counts.get(&date).copied().unwrap_or_default()
    }

    fn interval(&self, date: NaiveDate) -> Interval {
        self.targets
            .get(&date)
            .copied()
            .unwrap_or_else(|| Interval::day(date))
    }

    /// Leases partition `date` for the run and opens its writer.
    async fn lease(&mut self, date: NaiveDate, cfg: &PipelineConfig) -> Result<(), PipelineError> {
        if self.writers.contains_key(&date) {
            return Ok(());
        }
        let lease = self
            .store
            .acquire_lease(self.dataset, date, &self.run, cfg.lease_ttl)
            .await
            .map_err(|e| PipelineError::from((date, e)))?;
        let meta = ParquetMeta {
            interval: self.interval(date).to_genesys(),
            extracted_at: self.started,
        };
        self.writers.insert(
            date,
            DayWriter::new(
                self.store.clone(),
                lease,
                cfg.parquet.clone(),
                meta,
                cfg.max_file_bytes,
            ),
        );
        Ok(())
    }

    fn buffered_bytes(&self) -> usize {
        self.writers.values().map(DayWriter::buffered_bytes).sum()
    }

    /// Routes converter batches to the writer of each partition they hold.
    async fn write(
        &mut self,
        batches: Vec<TableBatch>,
        cfg: &PipelineConfig,
    ) -> Result<(), PipelineError> {
        for tb in batches {
            self.ids.observe(&tb);
            let table = tb.table.name();
            for (date, part) in split_by_date(&tb).map_err(|source| PipelineError::Sink {
                date: self
                    .targets
                    .keys()
                    .next()
                    .copied()
                    .unwrap_or(NaiveDate::MIN),
                source,
            })? {
                if !self.targets.contains_key(&date) {
                    if let Partitioning::RowDay { .. } = self.dataset.partitioning {
                        // A record spans days (a status open across midnight comes back for
                        // each day it touches): its rows of other days are those days' runs'.
                        self.rows_elsewhere += part.batch.num_rows() as u64;
                        continue;
                    }
                    // The feed keeps only the run's records, whose rows all belong to the
                    // run's partitions: rows of another are a bug.
                    let target = self
                        .targets
                        .keys()
                        .next()
                        .copied()
                        .unwrap_or(NaiveDate::MIN);
                    return Err(PipelineError::Sink {
                        date: target,
                        source: SinkError::WrongDay {
                            table,
                            date: target,
                            other: date.to_string(),
                        },
                    });
                }
                self.lease(date, cfg).await?;
                if let Some(w) = self.writers.get_mut(&date) {
                    w.write(part)
                        .await
                        .map_err(|source| PipelineError::Sink { date, source })?;
                }
            }
        }
        // Each partition keeps to the budget; all stay open until the end, so keep to it
        // across them.
        while self.buffered_bytes() > cfg.parquet.max_buffered_bytes {
            let Some((date, w)) = self
                .writers
                .iter_mut()
                .max_by_key(|(_, w)| w.buffered_bytes())
            else {
                break;
            };
            let date = *date;
            w.flush_largest()
                .await
                .map_err(|source| PipelineError::Sink { date, source })?;
        }
        Ok(())
    }

    /// Runs feed → convert → write until the feed ends, an error, or the deadline. With
    /// `archive`, the kept pages are also stored (gzipped NDJSON) with the partition of the
    /// stamp's day.
    async fn stream(
        &mut self,
        feed: Feed,
        cfg: &PipelineConfig,
        progress: &dyn Progress,
        archive: Option<ArchiveStamp>,
    ) -> Result<(), PipelineError> {
        let Feed {
            pages,
            done: fetch,
            read,
            workers,
        } = feed;
        let first = self
            .targets
            .keys()
            .next()
            .copied()
            .unwrap_or(NaiveDate::MIN);
        let (out_tx, mut out_rx) = mpsc::channel::<Converted>(CONVERTED_QUEUE);
        let opts = cfg.convert.clone();
        let dataset = self.dataset;
        // Where the time goes (debug log): the converter waiting for the writer, or the reverse.
        let converter_waited = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let waited = converter_waited.clone();
        let mut writer_idle = Duration::ZERO;
        let t_start = Instant::now();
        let convert = tokio::task::spawn_blocking(move || {
            convert_loop(
                dataset, pages, out_tx, opts, archive, first, workers, &waited,
            )
        });
        let deadline = cfg.deadline;
        let raw_date = archive.map(|s| s.interval.start.date_naive());
        let mut raw_seq = 0u32;
        let mut write_result: Result<(), PipelineError> = Ok(());
        loop {
            let t0 = Instant::now();
            let msg = match deadline {
                Some(d) => {
                    let stop = stop_at(d, self.buffered_bytes());
                    tokio::select! {
                        m = out_rx.recv() => m,
                        () = tokio::time::sleep_until(stop) => {
                            write_result = Err(PipelineError::Deadline {
                                date: first,
                                pages: read.load(std::sync::atomic::Ordering::Relaxed),
                            });
                            break;
                        }
                    }
                }
                None => out_rx.recv().await,
            };
            writer_idle += t0.elapsed();
            let Some(msg) = msg else { break };
            let r = match msg {
                Converted::Batches(batches) => self.write(batches, cfg).await,
                Converted::Raw(gz) => {
                    raw_seq += 1;
                    let date = raw_date.unwrap_or(first);
                    match self.lease(date, cfg).await {
                        Err(e) => Err(e),
                        Ok(()) => match self.writers.get_mut(&date) {
                            Some(w) => w
                                .write_raw(raw_seq, gz)
                                .await
                                .map_err(|source| PipelineError::Sink { date, source }),
                            None => Ok(()),
                        },
                    }
                }
                Converted::Pages(days) => {
                    for (d, (pages, records)) in days {
                        let c = self.counts.entry(d).or_default();
                        c.pages += pages;
                        c.records += records;
                        progress.page_done(d, records);
                    }
                    Ok(())
                }
            };
            if let Err(e) = r {
                write_result = Err(e);
                break;
            }
        }
        if write_result.is_err() {
            // Waiting out a job poll would only delay the discard.
            fetch.abort();
        }
        // Closing the receiver stops the converter.
        drop(out_rx);
        let converted = match convert.await {
            Ok(r) => r,
            Err(e) if e.is_panic() => Err(PipelineError::Internal(
                "the converter panicked; nothing was replaced".into(),
            )),
            Err(e) => Err(PipelineError::Internal(format!("converter thread: {e}"))),
        };
        if converted.is_err() {
            fetch.abort();
        }
        let fetched = match fetch.await {
            Ok(r) => r.map(|_| ()),
            Err(e) if e.is_cancelled() => Ok(()),
            Err(e) if e.is_panic() => Err(PipelineError::Internal(
                "reading the pages panicked; nothing was replaced".into(),
            )),
            Err(e) => Err(PipelineError::Internal(format!("page feed: {e}"))),
        };
        tracing::debug!(
            dataset = self.dataset.name,
            converter_waited_ms = converter_waited.load(std::sync::atomic::Ordering::Relaxed),
            writer_idle_ms = writer_idle.as_millis() as u64,
            seconds = t_start.elapsed().as_secs_f64(),
            "converted"
        );
        // Report the first cause: a feed error explains a converter that saw its input end.
        fetched?;
        write_result?;
        for (d, n) in converted? {
            self.counts.entry(d).or_default().type_mismatches += n;
        }
        Ok(())
    }

    /// Publishes partition `date` (empty if the run wrote nothing to it) and releases it.
    async fn publish(
        &mut self,
        date: NaiveDate,
        cfg: &PipelineConfig,
    ) -> Result<Manifest, PipelineError> {
        self.lease(date, cfg).await?;
        let Some(mut writer) = self.writers.remove(&date) else {
            return Err(PipelineError::Internal(format!("no writer for {date}")));
        };
        let interval = self.interval(date);
        let counts = self.counts(date);
        writer.set_type_mismatches(counts.type_mismatches);
        let lease = writer.lease().clone();
        let published = writer
            .publish(
                interval.to_genesys(),
                !interval.is_whole_days(),
                counts.records,
                self.started,
            )
            .await
            .map_err(|source| PipelineError::Sink { date, source });
        if let Err(e) = self.store.release_lease(&lease).await {
            tracing::warn!(%date, error = %e, "could not release the lease; it expires by itself");
        }
        published
    }

    /// Discards every partition written so far (their previous data stays) and releases them.
    async fn abort(&mut self) {
        for (_, writer) in std::mem::take(&mut self.writers) {
            let lease = writer.lease().clone();
            writer.abort().await;
            let _ = self.store.release_lease(&lease).await;
        }
    }
}

/// Raw archive files are cut at about this many uncompressed bytes.
const RAW_FILE_BYTES: usize = 64 << 20;

/// Converter messages queued for the writer (batch sets of about 12 MiB of input each, one
/// more being built and one being written). At each sync the writer waits for an encoder
/// still behind the previous sync; a short queue then stopped the converter too, and the other
/// encoders ran dry: 32 MiB of input queued took 7.5-9% less time and 1-3% less CPU for 500k
/// conversations than 8 MiB (three A/Bs of 4-6 alternating runs, 2026-12-03), for 10-17 MiB
/// more, which the smaller default row-group budget
/// ([`crate::sink::parquet::DEFAULT_BUFFER_MB`]) gives back. Four batch sets of 8 MiB rather
/// than eight of 4 (2026-12-04): each batch costs every one of a table's columns a fixed
/// share in the converter and the Parquet writer, whatever its rows ([`ConvertOptions`]).
/// With 16 MiB batches, a queue of 2 or 3 peaked no lower (173 MiB, 2026-12-05).
///
/// [`ConvertOptions`]: crate::tables::ConvertOptions
const CONVERTED_QUEUE: usize = 4;

/// The converter thread: pages in, batches (and raw archive files, and progress) out; returns
/// the type mismatches per partition once the feed ends. With several workers, each converts
/// every `workers`-th page into batches of its own; what they send is handed on in page order,
/// so the output does not depend on the threads' timing.
#[allow(clippy::too_many_arguments)]
fn convert_loop(
    dataset: &'static Dataset,
    mut rx: mpsc::Receiver<Fed>,
    tx: mpsc::Sender<Converted>,
    opts: ConvertOptions,
    archive: Option<ArchiveStamp>,
    date: NaiveDate,
    workers: usize,
    waited: &std::sync::atomic::AtomicU64,
) -> Result<BTreeMap<NaiveDate, u64>, PipelineError> {
    // Per worker, one converter per root table; a page names its root (PageMeta::root), else
    // the first.
    let states: Vec<Vec<(&'static str, Converter)>> = (0..workers.max(1))
        .map(|_| {
            dataset
                .roots()
                .map(|r| (r.name(), Converter::for_root(r, opts.clone())))
                .collect()
        })
        .collect();
    let mut raw = archive.map(|s| RawArchive::new(s, dataset.envelope));
    let mut pending = PendingProgress::default();
    let err = |date, source| PipelineError::Convert { date, source };
    let mut failed: Result<(), PipelineError> = Ok(());
    let mut stopped = false;
    let mut states = crate::par::ordered_map(
        std::iter::from_fn(|| rx.blocking_recv()),
        states,
        |convs, Fed { page, days }| match page {
            FedPage::Split(page) => {
                #[cfg(test)]
                if page.origin.0.contains("converter-panics") {
                    panic!("injected converter panic");
                }
                let page_date = days.first().map_or(date, |(d, _)| *d);
                let i = page
                    .meta
                    .root
                    .and_then(|r| convs.iter().position(|(name, _)| *name == r))
                    .unwrap_or(0);
                let batches = convs[i].1.push_page(&page).map_err(|e| err(page_date, e))?;
                Ok((page, days, None, batches))
            }
            // Files hold records of the dataset's first root.
            FedPage::Raw(raw, filter) => {
                let c = filter.convert(raw, &mut convs[0].1)?;
                Ok((c.page, c.days, Some((filter, c.ids)), c.batches))
            }
        },
        |converted: Result<_, PipelineError>| {
            let (page, days, check, batches) = match converted {
                Ok(c) => c,
                Err(e) => {
                    failed = Err(e);
                    return false;
                }
            };
            if let Some((filter, ids)) = check {
                if let Err(e) = filter.check(&page, &ids) {
                    failed = Err(e);
                    return false;
                }
            }
            if let Some(raw) = raw.as_mut() {
                raw.add(&page);
                if raw.len() >= RAW_FILE_BYTES
                    && tx.blocking_send(Converted::Raw(raw.take())).is_err()
                {
                    stopped = true;
                    return false;
                }
            }
            pending.add(&days);
            let t0 = Instant::now();
            let sent = (batches.is_empty()
                || tx.blocking_send(Converted::Batches(batches)).is_ok())
                && pending.offer(&tx).is_ok();
            waited.fetch_add(
                t0.elapsed().as_millis() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            stopped = !sent;
            sent
        },
    );
    failed?;
    if stopped {
        return Ok(BTreeMap::new());
    }
    for convs in states.iter_mut() {
        for (_, conv) in convs.iter_mut() {
            let batches = conv.finish().map_err(|e| err(date, e))?;
            if !batches.is_empty() && tx.blocking_send(Converted::Batches(batches)).is_err() {
                return Ok(BTreeMap::new());
            }
        }
    }
    if !pending.0.is_empty() && tx.blocking_send(Converted::Pages(pending.0)).is_err() {
        return Ok(BTreeMap::new());
    }
    if let Some(mut raw) = raw {
        if raw.len() > 0 && tx.blocking_send(Converted::Raw(raw.take())).is_err() {
            return Ok(BTreeMap::new());
        }
    }
    let mut mismatches: BTreeMap<NaiveDate, u64> = BTreeMap::new();
    for (_, conv) in states.iter().flatten() {
        for (d, n) in &conv.stats().type_mismatches_by_date {
            *mismatches.entry(*d).or_default() += n;
        }
    }
    Ok(mismatches)
}

/// Kept records as sync-query-shaped NDJSON pages, gzipped: exactly what `convert` reads. Each
/// page records what the run covered and when ([`ArchiveStamp`]), so `convert` knows which days
/// it may replace and which copy of a conversation is the newest.
struct RawArchive {
    buf: Vec<u8>,
    /// `{"<envelope>":[`
    open: String,
    stamp: String,
}

impl RawArchive {
    fn new(stamp: ArchiveStamp, envelope: &str) -> Self {
        Self {
            buf: Vec::new(),
            open: format!("{{{}:[", serde_json::Value::from(envelope)),
            stamp: stamp.to_json(),
        }
    }

    fn add(&mut self, page: &Page) {
        if page.is_empty() {
            return;
        }
        self.buf.extend_from_slice(self.open.as_bytes());
        for (i, rec) in page.records().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            self.buf.extend_from_slice(rec.as_bytes());
        }
        self.buf.extend_from_slice(b"],\"");
        self.buf.extend_from_slice(ArchiveStamp::KEY.as_bytes());
        self.buf.extend_from_slice(b"\":");
        self.buf.extend_from_slice(self.stamp.as_bytes());
        self.buf.extend_from_slice(b"}\n");
    }

    fn len(&self) -> usize {
        self.buf.len()
    }

    fn take(&mut self) -> Bytes {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        // Writing to a Vec cannot fail.
        let _ = gz.write_all(&self.buf);
        self.buf.clear();
        Bytes::from(gz.finish().unwrap_or_default())
    }
}

/// A `convert` whose days are written (not yet published).
struct ConvertedRun {
    run: RunId,
    parts: PartitionRun,
    covered: std::collections::BTreeSet<NaiveDate>,
    totals: ConvertTotals,
}

/// Reads the files once (see [`Feed::files_once`]) into partitions `days`. On an error, what
/// was written is discarded; the flag says whether the error is a record met twice.
async fn convert_once(
    dataset: &'static Dataset,
    paths: &[std::path::PathBuf],
    days: std::collections::BTreeSet<NaiveDate>,
    store: &Arc<dyn Store>,
    cfg: &PipelineConfig,
    progress: &dyn Progress,
) -> Result<ConvertedRun, (PipelineError, bool)> {
    let once = Arc::new(OnceRead::default());
    let feed = Feed::files_once(
        dataset,
        paths.to_vec(),
        days.clone(),
        cfg.threads,
        once.clone(),
    );
    let (run, parts) = write_days(dataset, &days, feed, store, cfg, progress)
        .await
        .map_err(|e| (e, once.duplicate.load(std::sync::atomic::Ordering::Relaxed)))?;
    Ok(ConvertedRun {
        run,
        parts,
        totals: ConvertTotals {
            covered_days: days.iter().copied().collect(),
            coverage: "range",
            outside_coverage: once.outside.load(std::sync::atomic::Ordering::Relaxed),
            duplicates: 0,
        },
        covered: days,
    })
}

/// Reads the files twice: a plan first ([`plan_convert`]: coverage, which copy of each record
/// is kept), then the conversion.
async fn convert_twice(
    dataset: &'static Dataset,
    paths: Vec<std::path::PathBuf>,
    range: Option<Interval>,
    store: &Arc<dyn Store>,
    cfg: &PipelineConfig,
    progress: &dyn Progress,
) -> Result<ConvertedRun, PipelineError> {
    // Nothing encodes beside the first read: it may have every core.
    let threads = cfg.threads.max(crate::par::cores());
    let (paths, plan) = tokio::task::spawn_blocking(move || {
        let plan = plan_convert(dataset, &paths, range, threads);
        (paths, plan)
    })
    .await
    .map_err(|e| PipelineError::Internal(format!("reading the input: {e}")))?;
    let plan = plan?;
    let covered = plan.days.clone();
    let totals = plan.totals.clone();
    tracing::info!(
        dataset = dataset.name,
        days = covered.len(),
        records = plan.kept.iter().filter(|k| **k).count(),
        outside_coverage = totals.outside_coverage,
        duplicates = totals.duplicates,
        "convert planned"
    );
    let feed = Feed::files(dataset, paths, plan, cfg.threads);
    let (run, parts) = write_days(dataset, &covered, feed, store, cfg, progress).await?;
    Ok(ConvertedRun {
        run,
        parts,
        covered,
        totals,
    })
}

/// Streams `feed` into a new run's partitions `days` (written, not published); on an error
/// they are discarded.
async fn write_days(
    dataset: &'static Dataset,
    days: &std::collections::BTreeSet<NaiveDate>,
    feed: Feed,
    store: &Arc<dyn Store>,
    cfg: &PipelineConfig,
    progress: &dyn Progress,
) -> Result<(RunId, PartitionRun), PipelineError> {
    let run_started = Utc::now();
    let run = RunId::new(run_started);
    let mut parts = PartitionRun::new(
        dataset,
        store.clone(),
        run.clone(),
        run_started,
        days.iter().map(|d| (*d, Interval::day(*d))),
    );
    if let Err(e) = parts.stream(feed, cfg, progress, None).await {
        parts.abort().await;
        return Err(e);
    }
    Ok((run, parts))
}

fn no_whole_day() -> PipelineError {
    PipelineError::Input(
        "the input covers no whole UTC day (archives of part of a day, or --start/--end inside \
         one day): nothing to replace. Give the whole days the files hold with --start and --end"
            .into(),
    )
}

/// What `convert` did besides writing days (in its [`RunSummary`]).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConvertTotals {
    /// The days replaced: those the input declares it fully covers.
    pub covered_days: Vec<NaiveDate>,
    /// Where the coverage came from: `range` (--start/--end) or `archive` (`_archive` stamps).
    pub coverage: &'static str,
    /// Conversations dropped because they started outside the covered days.
    pub outside_coverage: u64,
    /// Copies of a conversation dropped for a newer copy.
    pub duplicates: u64,
}

/// The first pass of `convert`: which days it may replace, which copy of each record is
/// kept, and where each page's records are (so that the second pass does not split the pages
/// again).
struct ConvertPlan {
    days: std::collections::BTreeSet<NaiveDate>,
    /// Per page of the input, in order.
    pages: Vec<PagePlan>,
    /// Per record (all files, in order): whether this copy is the one kept…
    kept: Vec<bool>,
    /// …and its partition.
    record_days: Vec<NaiveDate>,
    totals: ConvertTotals,
}

/// One page as the first pass read it: the second must find the same bytes.
struct PagePlan {
    /// [`crate::files::RawPage::fingerprint`].
    fingerprint: (usize, u64),
    records: Vec<std::ops::Range<usize>>,
}

impl ConvertPlan {
    fn input_changed(&self, seq: usize) -> PipelineError {
        PipelineError::Input(format!(
            "the input changed between convert's two reads of it ({} records, then {seq} \
             before it differed): convert reads its files twice, so give files that stay as \
             they are while it runs, not pipes",
            self.kept.len(),
        ))
    }
}

/// The UTC days `interval` covers whole.
fn whole_days(interval: &Interval) -> impl Iterator<Item = NaiveDate> {
    interval
        .split_days()
        .into_iter()
        .filter(Interval::is_whole_days)
        .map(|d| d.start.date_naive())
}

fn input_error(e: impl std::fmt::Display) -> PipelineError {
    PipelineError::Input(e.to_string())
}

/// The first of `convert`'s two reads of its input, before any day is touched: a bad record or
/// an input without declared coverage refuses the run with nothing written. It decompresses and
/// splits every page (as the second read does) but reads only each record's id and start
/// ([`record_key`] stops after those two keys): no conversion, no Parquet.
fn plan_convert(
    dataset: &'static Dataset,
    paths: &[std::path::PathBuf],
    range: Option<Interval>,
    threads: usize,
) -> Result<ConvertPlan, PipelineError> {
    use std::collections::hash_map::Entry;
    let mut days: std::collections::BTreeSet<NaiveDate> =
        range.iter().flat_map(whole_days).collect();
    // Per record id: (extraction time if known, sequence number, start day).
    let mut best: HashMap<u128, (Option<DateTime<Utc>>, u64, NaiveDate)> = HashMap::new();
    let (mut seq, mut duplicates) = (0u64, 0u64);
    let mut pages = Vec::new();
    let mut record_days = Vec::new();
    // Files holding a page without an archive stamp.
    let mut unstamped_files = std::collections::BTreeSet::new();
    let mut failed: Result<(), PipelineError> = Ok(());
    crate::par::ordered_map(
        crate::files::raw_pages(paths, dataset.envelope),
        vec![(); threads.max(1)],
        |(), (file, raw)| {
            let fingerprint = raw.as_ref().map(|r| r.fingerprint()).unwrap_or_default();
            keyed_page(dataset, raw).map(|k| (file, fingerprint, k))
        },
        |keyed| {
            let (file, fingerprint, (page, keys)) = match keyed {
                Ok(k) => k,
                Err(e) => {
                    failed = Err(e);
                    return false;
                }
            };
            let stamp = page.meta.archive;
            match stamp {
                None => {
                    unstamped_files.insert(file);
                }
                Some(st) if range.is_none() => days.extend(whole_days(&st.interval)),
                Some(_) => {}
            }
            let at = stamp.map(|s| s.extracted_at);
            pages.push(PagePlan {
                fingerprint,
                records: page.record_ranges().to_vec(),
            });
            for (id, day) in keys {
                record_days.push(day);
                let copy = (at, seq, day);
                seq += 1;
                match best.entry(id) {
                    Entry::Vacant(v) => {
                        v.insert(copy);
                    }
                    Entry::Occupied(mut o) => {
                        duplicates += 1;
                        // The most recently extracted copy wins; without both times, the later.
                        let older = matches!((at, o.get().0), (Some(a), Some(b)) if a < b);
                        if !older {
                            o.insert(copy);
                        }
                    }
                }
            }
            true
        },
    );
    failed?;
    let unstamped: Vec<String> = unstamped_files
        .into_iter()
        .map(|i| paths[i].display().to_string())
        .collect();
    if range.is_none() && !unstamped.is_empty() {
        return Err(PipelineError::Input(format!(
            "{} {} not say which days {} fully cover{}, so convert cannot tell a whole day from \
             a few of its conversations (job pages for one day hold conversations of the day \
             before). Pass --start and --end for the days the files hold completely, e.g. \
             --start 2026-11-20 --end 2026-11-21: those days are replaced, records outside \
             them are dropped and counted. Archives written by `extract --archive-raw` \
             (_raw/) record their coverage themselves",
            unstamped.join(", "),
            if unstamped.len() == 1 { "does" } else { "do" },
            if unstamped.len() == 1 { "it" } else { "they" },
            if unstamped.len() == 1 { "s" } else { "" },
        )));
    }
    if days.is_empty() {
        return Err(no_whole_day());
    }
    let mut outside = 0u64;
    let mut kept = vec![false; record_days.len()];
    for (_, seq, day) in best.into_values() {
        if days.contains(&day) {
            kept[seq as usize] = true;
        } else {
            outside += 1;
        }
    }
    Ok(ConvertPlan {
        totals: ConvertTotals {
            covered_days: days.iter().copied().collect(),
            coverage: if range.is_some() { "range" } else { "archive" },
            outside_coverage: outside,
            duplicates,
        },
        days,
        pages,
        kept,
        record_days,
    })
}

/// Converts saved pages (files) of `cfg.datasets[0]` (conversations by default) into `store`,
/// replacing only the days the input declares it fully covers: `range` (whole UTC days) when
/// given, else the coverage archived pages record (`_archive`); without either it refuses.
/// Records outside those days are dropped and counted. Where a record appears more than once,
/// the most recently extracted copy wins (archives record when); otherwise the later one
/// (files in the order given).
///
/// With `range`, the files are read once; a record met twice discards what that read wrote
/// and starts over with two reads (the first chooses the copies), which needs files that can be
/// read again. Without `range`, the covered days are known only once every page's stamp is
/// read, so there are always two reads.
pub async fn convert_files(
    paths: Vec<std::path::PathBuf>,
    range: Option<Interval>,
    store: Arc<dyn Store>,
    cfg: &PipelineConfig,
    progress: Arc<dyn Progress>,
) -> Result<RunSummary, PipelineError> {
    let started = Instant::now();
    let dataset = *cfg
        .datasets
        .first()
        .ok_or_else(|| PipelineError::Input("convert: no dataset given".into()))?;
    if !matches!(dataset.partitioning, Partitioning::RecordDay { .. }) {
        return Err(PipelineError::Input(format!(
            "convert rebuilds datasets partitioned by their records' day; {} is not",
            dataset.name
        )));
    }
    let converted = match range {
        Some(range) => {
            let days: std::collections::BTreeSet<NaiveDate> = whole_days(&range).collect();
            if days.is_empty() {
                return Err(no_whole_day());
            }
            match convert_once(dataset, &paths, days, &store, cfg, &*progress).await {
                Ok(c) => c,
                Err((e, true)) => {
                    let rereadable = paths
                        .iter()
                        .all(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()));
                    if !rereadable {
                        return Err(PipelineError::Input(format!(
                            "{e}: convert keeps the most recent copy of a record, which takes \
                             a second read of the input, and this input is not all regular \
                             files (a pipe?): save it to a file first"
                        )));
                    }
                    tracing::info!(
                        dataset = dataset.name,
                        "a record appears twice in the input: reading it again to keep the \
                         newest copy of each"
                    );
                    convert_twice(dataset, paths, Some(range), &store, cfg, &*progress).await?
                }
                Err((e, false)) => return Err(e),
            }
        }
        None => convert_twice(dataset, paths, None, &store, cfg, &*progress).await?,
    };
    let ConvertedRun {
        run,
        mut parts,
        covered,
        totals,
    } = converted;
    let mut days = Vec::new();
    for date in covered {
        let t0 = Instant::now();
        let day = Interval::day(date);
        let mut summary = DaySummary::new(dataset, date, &day);
        summary.run_id = Some(run.to_string());
        summary.mode = Some("convert".into());
        let counts = parts.counts(date);
        summary.pages = counts.pages;
        summary.type_mismatches = counts.type_mismatches;
        // A covered day without records is empty, and replaced as such.
        match parts.publish(date, cfg).await {
            Ok(m) => summary.record_manifest(&m),
            Err(e) => {
                summary.transient = Some(e.is_transient());
                summary.error_type = Some(e.error_type().to_string());
                summary.error = Some(e.to_string());
                tracing::error!(%date, error = %e, "day failed");
            }
        }
        summary.seconds = t0.elapsed().as_secs_f64();
        progress.day_finished(&summary);
        days.push(summary);
    }
    let mut summary = RunSummary::new(store.location(), days, started);
    summary.convert = Some(totals);
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::conversations::DATASET as CONVERSATIONS;
    use crate::sink::DayStore;

    const PAGE: &str = r#"{"conversations":[{"conversationId":"c1","conversationStart":"2026-11-20T10:00:00.000Z"},{"conversationId":"c0","conversationStart":"2026-11-19T23:00:00.000Z"}]}"#;

    async fn convert(
        dir: &std::path::Path,
        files: &[(&str, &str)],
        range: Option<Interval>,
    ) -> (Result<RunSummary, PipelineError>, Arc<dyn Store>) {
        let paths = files
            .iter()
            .map(|(name, text)| {
                let p = dir.join(name);
                std::fs::write(&p, text).expect("write");
                p
            })
            .collect();
        let store: Arc<dyn Store> = Arc::new(DayStore::local(dir.join("out")).expect("store"));
        let cfg = PipelineConfig::default();
        let r = convert_files(paths, range, store.clone(), &cfg, Arc::new(NoProgress)).await;
        (r, store)
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    #[tokio::test]
    async fn a_converter_panic_fails_the_run_and_replaces_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (r, store) = convert(
            dir.path(),
            &[("good.ndjson", PAGE), ("converter-panics.ndjson", PAGE)],
            Some(Interval::day(day("2026-11-20"))),
        )
        .await;
        let err = r.expect_err("a panic is a failure");
        assert_eq!(err.error_type(), "Internal", "{err}");
        assert!(err.to_string().contains("panicked"), "{err}");
        assert_eq!(
            store
                .manifest(&CONVERSATIONS, day("2026-11-20"))
                .await
                .expect("manifest"),
            None
        );
    }

    #[tokio::test]
    async fn only_covered_days_are_replaced_and_the_rest_is_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (r, store) = convert(
            dir.path(),
            &[("p.ndjson", PAGE)],
            Some(
                Interval::new(
                    crate::interval::day_start(day("2026-11-20")),
                    crate::interval::day_start(day("2026-11-22")),
                )
                .expect("range"),
            ),
        )
        .await;
        let s = r.expect("convert");
        assert!(s.ok);
        let dates: Vec<_> = s.days.iter().map(|d| (d.date, d.conversations)).collect();
        // 11-21 is declared covered and holds nothing: it is replaced by an empty day.
        assert_eq!(dates, [(day("2026-11-20"), 1), (day("2026-11-21"), 0)]);
        let totals = s.convert.expect("totals");
        assert_eq!(totals.outside_coverage, 1);
        assert_eq!(
            store
                .manifest(&CONVERSATIONS, day("2026-11-19"))
                .await
                .expect("manifest"),
            None
        );
        let m = store
            .manifest(&CONVERSATIONS, day("2026-11-21"))
            .await
            .expect("manifest");
        assert_eq!(m.map(|m| m.conversations), Some(0));

        // Without coverage: refused, nothing written.
        let dir = tempfile::tempdir().expect("tempdir");
        let (r, store) = convert(dir.path(), &[("p.ndjson", PAGE)], None).await;
        let err = r.expect_err("no coverage").to_string();
        assert!(err.contains("p.ndjson") && err.contains("--start"), "{err}");
        assert_eq!(
            store
                .manifest(&CONVERSATIONS, day("2026-11-20"))
                .await
                .expect("manifest"),
            None
        );

        // An archive of part of a day covers no whole day: refused too.
        let dir2 = tempfile::tempdir().expect("tempdir");
        let partial = PAGE.replace(
            "]}",
            r#"],"_archive":{"interval":"2026-11-20T06:00:00.000Z/2026-11-21T00:00:00.000Z","extractedAt":"2026-11-21T01:00:00.000Z"}}"#,
        );
        let (r, store2) = convert(dir2.path(), &[("a.ndjson", &partial)], None).await;
        let err = r.expect_err("partial coverage").to_string();
        assert!(err.contains("no whole UTC day"), "{err}");
        assert_eq!(
            store2
                .manifest(&CONVERSATIONS, day("2026-11-20"))
                .await
                .expect("manifest"),
            None
        );
    }

    /// The single read splits each page as it converts it: a record broken after its keys,
    /// a dropped record (outside the days) broken anywhere, or a page broken after its list
    /// still fails the run, naming the file's line and the record, never a value, with
    /// nothing replaced; the records before it in the page were not enough to publish.
    #[tokio::test]
    async fn a_broken_record_or_page_in_the_single_read_fails_naming_line_and_record() {
        let range = Some(Interval::day(day("2026-11-20")));
        let kept = r#"{"conversationId":"c1","conversationStart":"2026-11-20T10:00:00.000Z"}"#;
        for (broken, needle) in [
            (
                r#"{"conversationId":"c2","conversationStart":"2026-11-20T11:00:00.000Z","participants":[{"purpose":"Jane Roe"},}]}"#,
                "line 2: record 1",
            ),
            (
                r#"{"conversationId":"c0","conversationStart":"2026-11-19T23:00:00.000Z","participants":[{"purpose":"Jane Roe"}}"#,
                "line 2: malformed page JSON",
            ),
            (
                r#"{"conversationId":"c2","conversationStart":"2026-11-20T11:00:00.000Z"}],"totalHits":"Jane Roe"#,
                "line 2: malformed page JSON",
            ),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let text = format!("{PAGE}\n{{\"conversations\":[{kept},{broken}]}}\n");
            let (r, store) = convert(dir.path(), &[("pages.ndjson", &text)], range).await;
            let err = r.expect_err(broken);
            let msg = err.to_string();
            assert!(
                msg.contains("pages.ndjson") && msg.contains(needle),
                "{msg}"
            );
            assert!(!msg.contains("Jane"), "{msg}");
            assert_eq!(published(&store).await, None);
        }
    }

    /// A page that changed between the reads (same length, other content) is refused, not
    /// split where the first read found its records.
    #[tokio::test]
    async fn a_page_that_changed_between_the_reads_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pages.ndjson");
        std::fs::write(&path, format!("{PAGE}\n{PAGE}\n")).expect("write");
        let range = Some(Interval::day(day("2026-11-20")));
        let plan =
            plan_convert(&CONVERSATIONS, std::slice::from_ref(&path), range, 2).expect("plan");
        // The later copy of c1 is kept; c0 started the day before, outside the range.
        assert_eq!(plan.kept, [false, false, true, false]);
        // The same length, another conversation in the second page: the second read refuses
        // it rather than trust the first read's record ranges and choice of copies.
        let changed = PAGE.replace("\"c1\"", "\"c9\"");
        std::fs::write(&path, format!("{PAGE}\n{changed}\n")).expect("write");
        let mut feed = Feed::files(&CONVERSATIONS, vec![path], plan, 2);
        let mut pages = 0;
        while feed.pages.recv().await.is_some() {
            pages += 1;
        }
        let err = feed
            .done
            .await
            .expect("join")
            .expect_err("the second page changed");
        assert_eq!(pages, 1);
        assert_eq!(err.error_type(), "Input.Invalid", "{err}");
        assert!(
            err.to_string().contains("4 records, then 2 before"),
            "{err}"
        );
    }

    /// `convert` of `text` given through a pipe, which reads once.
    #[cfg(target_os = "linux")]
    async fn convert_pipe(
        dir: &std::path::Path,
        text: &str,
        range: Option<Interval>,
    ) -> (Result<RunSummary, PipelineError>, Arc<dyn Store>) {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let (reader, mut writer) = std::io::pipe().expect("pipe");
        writer.write_all(text.as_bytes()).expect("write");
        drop(writer);
        let path = dir.join("pages.ndjson");
        std::os::unix::fs::symlink(format!("/proc/self/fd/{}", reader.as_raw_fd()), &path)
            .expect("symlink");
        let store: Arc<dyn Store> = Arc::new(DayStore::local(dir.join("out")).expect("store"));
        let r = convert_files(
            vec![path],
            range,
            store.clone(),
            &PipelineConfig::default(),
            Arc::new(NoProgress),
        )
        .await;
        drop(reader);
        (r, store)
    }

    /// The conversations `store` holds for 2026-11-20, if that day was published.
    async fn published(store: &Arc<dyn Store>) -> Option<u64> {
        store
            .manifest(&CONVERSATIONS, day("2026-11-20"))
            .await
            .expect("manifest")
            .map(|m| m.conversations)
    }

    /// With the days given, convert reads its input once: a pipe converts.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn with_the_days_given_the_input_is_read_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let range = Some(Interval::day(day("2026-11-20")));
        let (r, store) = convert_pipe(dir.path(), &format!("{PAGE}\n"), range).await;
        let s = r.expect("a pipe converts in one read");
        let totals = s.convert.expect("totals");
        assert_eq!((totals.outside_coverage, totals.duplicates), (1, 0));
        assert_eq!(published(&store).await, Some(1));
    }

    /// Without the days given, an archive is read twice (its stamps say which days it covers):
    /// the second read must meet the records the first did. A pipe reads empty the second
    /// time, which must not replace the day with an empty one.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn an_archive_that_reads_differently_the_second_time_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stamped = PAGE.replace(
            "]}",
            r#"],"_archive":{"interval":"2026-11-20T00:00:00.000Z/2026-11-21T00:00:00.000Z","extractedAt":"2026-11-21T01:00:00.000Z"}}"#,
        );
        let (r, store) = convert_pipe(dir.path(), &format!("{stamped}\n"), None).await;
        let err = r.expect_err("the second read met no records");
        assert_eq!(err.error_type(), "Input.Invalid", "{err}");
        assert!(err.to_string().contains("2 records, then 0"), "{err}");
        assert_eq!(published(&store).await, None);
    }

    /// A record met twice needs a second read to choose its copy: files are read again (the
    /// later copy wins), a pipe is refused with nothing replaced.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_record_met_twice_is_read_again_from_files_and_refused_from_a_pipe() {
        let twice = format!("{PAGE}\n{PAGE}\n");
        let range = Some(Interval::day(day("2026-11-20")));

        let dir = tempfile::tempdir().expect("tempdir");
        let (r, store) = convert(dir.path(), &[("pages.ndjson", &twice)], range).await;
        let s = r.expect("files are read again");
        let totals = s.convert.expect("totals");
        assert_eq!((totals.outside_coverage, totals.duplicates), (1, 2));
        assert_eq!(published(&store).await, Some(1));
        // Which copy wins is read back in tests/cli_e2e.rs (plain files, --start/--end).

        let dir = tempfile::tempdir().expect("tempdir");
        let (r, store) = convert_pipe(dir.path(), &twice, range).await;
        let err = r.expect_err("a pipe cannot be read again");
        assert_eq!(err.error_type(), "Input.Invalid", "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("record 0: conversation c1 appears a second time")
                && msg.contains("save it to a file"),
            "{msg}"
        );
        assert_eq!(published(&store).await, None);
    }
}

/// A dataset that is not the conversations, declared here only (not registered): its pages go
/// through the same run, converter and store.
#[cfg(test)]
mod other_dataset {
    use super::*;
    use crate::datasets::{Dedupe, Planned, RecordSpec, Source};
    use crate::sink::DayStore;
    use crate::tables::schema::{Field, Table, TableDef, TableSpec, Ty};

    /// Plans fail with the HTTP status it holds: 403 (a permission missing), 401 (the login
    /// refused), else an error of that day only.
    struct NoSource(u16);

    #[async_trait::async_trait]
    impl Source for NoSource {
        async fn plan(
            &self,
            _: &GenesysClient,
            _: Interval,
            _: Mode,
        ) -> Result<Planned, GenesysError> {
            Err(match self.0 {
                401 => GenesysError::Login {
                    host: "login.test".into(),
                    status: 401,
                    message: "invalid_client".into(),
                },
                status => GenesysError::Api {
                    what: "listing".into(),
                    status,
                    code: "x".into(),
                    message: "missing the following permission(s): [a:b:view]".into(),
                    context_id: "c".into(),
                    correlation_id: None,
                },
            })
        }
    }

    const FIELDS: &[Field] = &[
        Field::new("id", Ty::Str, "id"),
        Field::new("startTime", Ty::Time, "start"),
        Field::new("status", Ty::Str, "status"),
    ];

    const RECORD: RecordSpec = RecordSpec {
        name: "status",
        id: "id",
        time: Some("startTime"),
        end: None,
    };

    const fn spec(dataset: &'static Dataset, name: &'static str) -> TableSpec {
        TableSpec {
            dataset,
            pos: 0,
            name,
            description: "test",
            model: "Status",
            source: "",
            parent: None,
            keys: &[],
            index: None,
            fields: FIELDS,
            lead: &[],
            required: &["id", "startTime"],
            free_text: &[],
            distinct: &[],
            children: &[],
            flatten: None,
            map: None,
            extra: true,
            raw: false,
        }
    }

    static BY_ROW: Dataset = Dataset {
        name: "test_by_row",
        description: "test",
        tables: &[Table::of(&BY_ROW_TABLE)],
        envelope: "entities",
        record: RECORD,
        dedupe: Dedupe::NewestCopy,
        partitioning: Partitioning::RowDay {
            column: "status_date",
            time_column: "start_time",
        },
        source: &NoSource(400),
        id_refs: &[],
    };
    static BY_ROW_TABLE: TableDef = TableDef::new(spec(&BY_ROW, "test_status"));
    static BY_RECORD: Dataset = Dataset {
        name: "test_by_record",
        description: "test",
        tables: &[Table::of(&BY_RECORD_TABLE)],
        envelope: "entities",
        record: RECORD,
        dedupe: Dedupe::NewestCopy,
        partitioning: Partitioning::RecordDay {
            column: "status_date",
            time_column: "start_time",
        },
        source: &NoSource(400),
        id_refs: &[],
    };
    static BY_RECORD_TABLE: TableDef = TableDef::new(spec(&BY_RECORD, "test_status_r"));

    const PAGE: &str = r#"{"entities":[
        {"id":"a","startTime":"2026-11-20T23:00:00.000Z","status":"IDLE"},
        {"id":"b","startTime":"2026-11-21T01:00:00.000Z","status":"BUSY","new":1}]}"#;

    /// Runs one page through a run of 2026-11-20 of `dataset`.
    async fn run(
        dataset: &'static Dataset,
        dir: &std::path::Path,
    ) -> (Result<Manifest, PipelineError>, u64) {
        let store: Arc<dyn Store> = Arc::new(DayStore::local(dir).expect("store"));
        let date: NaiveDate = "2026-11-20".parse().expect("date");
        let cfg = PipelineConfig {
            datasets: vec![dataset],
            ..PipelineConfig::default()
        };
        let started = Utc::now();
        let mut parts = PartitionRun::new(
            dataset,
            store,
            RunId::new(started),
            started,
            [(date, Interval::day(date))],
        );
        let (tx, rx) = mpsc::channel(1);
        let page = Page::parse(
            Bytes::from_static(PAGE.as_bytes()),
            crate::page::PageOrigin::new("test"),
            dataset.envelope,
        )
        .expect("page");
        let done = tokio::spawn(async move {
            tx.send(Fed {
                days: vec![(date, 2)],
                page: FedPage::Split(page),
            })
            .await
            .map_err(|_| PipelineError::Internal("closed".into()))?;
            Ok(1)
        });
        let feed = Feed {
            pages: rx,
            done,
            read: Arc::default(),
            workers: 1,
        };
        let r = parts.stream(feed, &cfg, &NoProgress, None).await;
        let out = match r {
            Ok(()) => parts.publish(date, &cfg).await,
            Err(e) => {
                parts.abort().await;
                Err(e)
            }
        };
        (out, parts.rows_elsewhere)
    }

    #[tokio::test]
    async fn rows_of_other_days_are_dropped_only_where_rows_have_their_own_day() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (m, elsewhere) = run(&BY_ROW, dir.path()).await;
        let m = m.expect("published");
        assert_eq!(m.rows["test_status"], 1);
        assert_eq!(elsewhere, 1);
        let files: Vec<&str> = m.files.iter().map(|f| f.key.as_str()).collect();
        assert!(
            files
                .iter()
                .all(|k| k.starts_with("test_status/status_date=2026-11-20/")),
            "{files:?}"
        );
        assert!(dir.path().join(files[0]).exists());

        // Partitioned by the record's day, a record of another day in the run is a bug.
        let dir = tempfile::tempdir().expect("tempdir");
        let (m, _) = run(&BY_RECORD, dir.path()).await;
        let err = m.expect_err("a row of another day");
        assert!(err.to_string().contains("2026-11-21"), "{err}");
    }

    static DENIED: Dataset = Dataset {
        name: "test_denied",
        source: &NoSource(403),
        ..test_dataset()
    };
    static NO_LOGIN: Dataset = Dataset {
        name: "test_no_login",
        source: &NoSource(401),
        ..test_dataset()
    };

    const TABLES: &[Table] = &[Table::of(&BY_RECORD_TABLE)];

    const fn test_dataset() -> Dataset {
        Dataset {
            name: "",
            description: "test",
            tables: TABLES,
            envelope: "entities",
            record: RECORD,
            dedupe: Dedupe::NewestCopy,
            partitioning: Partitioning::RecordDay {
                column: "status_date",
                time_column: "start_time",
            },
            source: &NoSource(400),
            id_refs: &[],
        }
    }

    /// (dataset, status) of each day of a two-day run of `datasets`.
    async fn statuses(
        datasets: Vec<&'static Dataset>,
    ) -> (Vec<(&'static str, &'static str)>, RunSummary) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(DayStore::local(dir.path()).expect("store"));
        let client = GenesysClient::new(crate::genesys::ClientConfig::new(
            crate::genesys::Hosts::custom("http://127.0.0.1:9", "http://127.0.0.1:9")
                .expect("hosts"),
            crate::genesys::Credentials::new("id".into(), "secret".into()),
        ))
        .expect("client");
        let cfg = PipelineConfig {
            datasets,
            ..PipelineConfig::default()
        };
        let range: Interval = "2026-11-20T00:00:00.000Z/2026-11-22T00:00:00.000Z"
            .parse()
            .expect("range");
        let s = extract(&client, store, range, &cfg, Arc::new(NoProgress)).await;
        let mut v: Vec<_> = s.days.iter().map(|d| (d.dataset, d.status)).collect();
        v.sort();
        (v, s)
    }

    #[tokio::test]
    async fn a_missing_permission_stops_its_dataset_and_a_refused_login_the_run() {
        let (v, s) = statuses(vec![&DENIED, &BY_ROW]).await;
        assert_eq!(
            v,
            [
                ("test_by_row", "failed"),
                ("test_by_row", "failed"),
                ("test_denied", "failed"),
                ("test_denied", "not attempted"),
            ]
        );
        let fatal = s.fatal.expect("fatal");
        assert!(
            fatal.starts_with("test_denied dataset: ") && fatal.contains("a:b:view"),
            "{fatal}"
        );

        let (v, s) = statuses(vec![&NO_LOGIN, &BY_ROW]).await;
        assert_eq!(
            v,
            [
                ("test_by_row", "not attempted"),
                ("test_by_row", "not attempted"),
                ("test_no_login", "failed"),
                ("test_no_login", "not attempted"),
            ]
        );
        assert!(s.fatal.expect("fatal").contains("login"));
    }
}
