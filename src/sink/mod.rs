//! Where the tables go: Parquet parts streamed to a [`Store`] (a local folder or S3), made
//! visible a whole day at a time.
//!
//! A day is the unit of atomicity. A run writes its parts where readers don't look (a staging
//! folder, or a run-specific prefix), then [`Store::publish`] makes them the day's content in
//! every table at once, replacing the previous run. A run that fails or is killed before that
//! leaves the previous data of the day exactly as it was; its leftovers are swept by the next run.

pub mod catalog;
pub mod commit;
mod encoder;
mod keys;
pub mod parquet;
pub mod run;
pub mod s3;
pub mod storage;

use std::fmt;

use crate::datasets::Dataset;
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

pub use commit::DayStore;
pub use run::{split_by_date, DayWriter, SinkError};

/// The raw page archive is published like a table under this name.
pub const RAW_TABLE: &str = "_raw";

/// A run's identity: unique per (day, attempt), sortable by start time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RunId(pub String);

impl RunId {
    /// `20261122T014501Z-3f9a1c2e`: start time first so listings sort by age.
    pub fn new(now: DateTime<Utc>) -> Self {
        let rand = uuid::Uuid::new_v4().simple().to_string();
        RunId(format!("{}-{}", now.format("%Y%m%dT%H%M%SZ"), &rand[..8]))
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a store operation failed, naming where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{op} {location}: {source}")]
    Io {
        op: &'static str,
        location: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{op} s3://{bucket}/{key}: {message}")]
    S3 {
        op: &'static str,
        bucket: String,
        key: String,
        message: String,
        transient: bool,
    },
    #[error("day {date} is being written by run {holder} since {since} (lease expires {expires}); try again later")]
    LeaseHeld {
        date: NaiveDate,
        holder: String,
        since: String,
        expires: String,
    },
    #[error("lease on day {date} for run {run} was lost: {reason}")]
    LeaseLost {
        date: NaiveDate,
        run: String,
        reason: String,
    },
    #[error("{location}: {message}")]
    Corrupt { location: String, message: String },
    /// A conditional write or delete found the object created or changed by someone else.
    #[error("{op} {location}: the object was changed by another writer (condition failed)")]
    Precondition { op: &'static str, location: String },
    #[error(
        "{op} Glue table {table}{}: {message}",
        .partition.as_ref().map(|p| format!(" partition {p}")).unwrap_or_default()
    )]
    Catalog {
        op: &'static str,
        /// `database.table`
        table: String,
        partition: Option<String>,
        message: String,
        transient: bool,
    },
}

impl StoreError {
    pub(crate) fn io(
        op: &'static str,
        location: impl fmt::Display,
        source: std::io::Error,
    ) -> Self {
        StoreError::Io {
            op,
            location: location.to_string(),
            source,
        }
    }

    /// Worth retrying later (a lease held by a live run, a throttled or failing server).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::S3 { transient, .. } | StoreError::Catalog { transient, .. } => *transient,
            StoreError::LeaseHeld { .. } => true,
            _ => false,
        }
    }
}

/// The exclusive right to write one partition (a dataset's day), until `expires`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub dataset: &'static Dataset,
    pub date: NaiveDate,
    pub run: RunId,
    pub since: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    /// `host/pid` of the holder, so a local store can take over at once from a dead process.
    pub holder: Option<String>,
    /// Keeps the lease's heartbeat going while any copy of the lease lives: a run whose
    /// future is dropped (cancelled, timed out) stops renewing, and its lease lapses.
    pub guard: LeaseGuard,
}

/// An opaque handle a store ties to a lease (see [`Lease::guard`]); equal to any other.
#[derive(Clone, Default)]
pub struct LeaseGuard(pub Option<std::sync::Arc<dyn std::any::Any + Send + Sync>>);

impl fmt::Debug for LeaseGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LeaseGuard")
    }
}

impl PartialEq for LeaseGuard {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for LeaseGuard {}

/// `host/pid` of this process.
pub fn this_holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("{host}/{}", std::process::id())
}

/// One Parquet file of a finished run, as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub table: String,
    /// Key relative to the output root, where readers find it once the run is published.
    pub key: String,
    pub rows: u64,
    pub bytes: u64,
    /// CRC-64/NVME of the file's bytes, base64 of its big-endian value: S3's default object
    /// checksum, in the form S3 reports it (`ChecksumCRC64NVME`). A check against corruption,
    /// not tampering (whoever can rewrite a file can rewrite its manifest). Manifests written
    /// before 2026-12-03 carried a SHA-256 instead (it cost 3-5% of `convert`'s CPU); they read
    /// with this empty.
    #[serde(default)]
    pub crc64nvme: String,
}

/// What a finished run wrote for one day: written last, so a reader or a check can verify a day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub date: NaiveDate,
    pub run_id: RunId,
    pub interval: String,
    pub partial_day: bool,
    pub schema_version: String,
    pub tool_version: String,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    pub conversations: u64,
    pub rows: std::collections::BTreeMap<String, u64>,
    pub files: Vec<ManifestFile>,
    /// Values kept in `extra` because their type or shape was not the schema's.
    #[serde(default)]
    pub type_mismatches: u64,
    /// Records still open when extracted (no end: [`crate::datasets::RecordSpec::end`]): a
    /// nightly run extracts the partition again while this is not zero, within its horizon.
    /// Manifests written before this count read as 0.
    #[serde(default)]
    pub open: u64,
}

/// A streaming upload of one object; invisible until [`Upload::complete`].
#[async_trait]
pub trait Upload: Send {
    async fn write(&mut self, data: Bytes) -> Result<(), StoreError>;
    /// Finishes the object; returns its size in bytes.
    async fn complete(self: Box<Self>) -> Result<u64, StoreError>;
    /// Drops everything written so far (no orphan parts left behind).
    async fn abort(self: Box<Self>) -> Result<(), StoreError>;

    /// The upload keeps what is written in memory until this many bytes are buffered (a
    /// multipart part); `None` when writes go straight out. Counted in the memory budget.
    fn part_size(&self) -> Option<usize> {
        None
    }
}

/// A place the tables are written to, with the day-replacement protocol of its kind.
#[async_trait]
pub trait Store: fmt::Debug + Send + Sync + 'static {
    /// Where this store writes, for messages (`/data/out`, `s3://bucket/prefix`).
    fn location(&self) -> String;

    /// Takes the lease on `dataset`'s partition `date` for `run`, sweeping what dead runs
    /// left; fails with [`StoreError::LeaseHeld`] while another live run holds it.
    async fn acquire_lease(
        &self,
        dataset: &'static Dataset,
        date: NaiveDate,
        run: &RunId,
        ttl: chrono::Duration,
    ) -> Result<Lease, StoreError>;

    /// Leases taken from now on are never renewed past `until` (a Lambda invocation's
    /// deadline: the runtime kills it there, and a retry must find its days free).
    fn renew_until(&self, _until: Option<DateTime<Utc>>) {}

    /// Gives the lease up (best effort; an expired lease is taken over anyway).
    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError>;

    /// Opens part `part` of `table` for the run; readers cannot see it until [`Store::publish`].
    /// Returns the upload and the key (relative to the store's root) the part will have once
    /// published.
    async fn create_part(
        &self,
        lease: &Lease,
        table: &str,
        part: u32,
    ) -> Result<(Box<dyn Upload>, String), StoreError>;

    /// Makes the run's parts the day's content in every table, replacing the previous run,
    /// and records `manifest`.
    async fn publish(&self, lease: &Lease, manifest: &Manifest) -> Result<(), StoreError>;

    /// Removes an unfinished run's parts (after a failure); the previous data stays. A run whose
    /// publish got past its commit point is left alone: the next run of the day finishes it.
    async fn discard(&self, lease: &Lease) -> Result<(), StoreError>;

    /// The manifest of the day's visible run, if any.
    async fn manifest(
        &self,
        dataset: &'static Dataset,
        date: NaiveDate,
    ) -> Result<Option<Manifest>, StoreError>;

    /// The partitions of `dataset` dated in `days` whose visible run's manifest counts open
    /// records ([`Manifest::open`] > 0), oldest first: one listing of the dataset's manifests,
    /// then a read of each pointer manifest in `days` (never a scan of the tables).
    async fn open_partitions(
        &self,
        dataset: &'static Dataset,
        days: std::ops::Range<NaiveDate>,
    ) -> Result<Vec<NaiveDate>, StoreError>;

    /// Stores one raw API page (gzipped NDJSON) of the run in the raw archive.
    async fn put_raw(&self, lease: &Lease, name: &str, data: Bytes) -> Result<(), StoreError>;

    /// The key (relative to the root) [`Store::put_raw`] writes `name` under, for the manifest.
    fn raw_key(&self, lease: &Lease, name: &str) -> String {
        format!(
            "{RAW_TABLE}/{}/{name}",
            lease.dataset.partition_folder(lease.date)
        )
    }
}

/// Bytes and checksum of what went through an [`UploadWriter`], readable after the Parquet
/// writer that owned it is gone.
#[derive(Debug)]
pub struct UploadProgress {
    state: std::sync::Mutex<(crc_fast::Digest, u64)>,
}

impl Default for UploadProgress {
    fn default() -> Self {
        Self {
            state: std::sync::Mutex::new((crc_fast::Digest::new(CRC64NVME), 0)),
        }
    }
}

const CRC64NVME: crc_fast::CrcAlgorithm = crc_fast::CrcAlgorithm::Crc64Nvme;

/// The manifest's form of a CRC-64/NVME ([`ManifestFile::crc64nvme`]).
fn crc64nvme_text(crc: u64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes())
}

/// [`ManifestFile::crc64nvme`] of `data`.
pub fn crc64nvme(data: &[u8]) -> String {
    crc64nvme_text(crc_fast::checksum(CRC64NVME, data))
}

impl UploadProgress {
    fn add(&self, data: &[u8]) {
        // A poisoned lock only means another writer panicked; the counts are still usable.
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.0.update(data);
        st.1 += data.len() as u64;
    }

    pub fn bytes(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1
    }

    /// [`ManifestFile::crc64nvme`] of everything written so far.
    pub fn crc64nvme(&self) -> String {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        crc64nvme_text(st.0.finalize())
    }
}

type SharedUpload = std::sync::Arc<tokio::sync::Mutex<Option<Box<dyn Upload>>>>;

/// Adapts an [`Upload`] to the parquet crate's async writer.
pub struct UploadWriter {
    inner: SharedUpload,
    progress: std::sync::Arc<UploadProgress>,
}

/// Kept by whoever gave an [`UploadWriter`] away: progress, and the means to abort the upload
/// if the Parquet writer that owns the writer fails or is dropped.
#[derive(Clone)]
pub struct UploadHandle {
    inner: SharedUpload,
    pub progress: std::sync::Arc<UploadProgress>,
    part_size: Option<usize>,
}

impl UploadHandle {
    /// What the upload's buffer held (written but not sent yet) when `written` bytes had been
    /// written.
    pub fn buffered_at(&self, written: u64) -> usize {
        self.part_size
            .filter(|p| *p > 0)
            .map_or(0, |p| (written % p as u64) as usize)
    }

    /// Aborts the upload unless it was completed already.
    pub async fn abort(&self) -> Result<(), StoreError> {
        let upload = self.inner.lock().await.take();
        match upload {
            Some(u) => u.abort().await,
            None => Ok(()),
        }
    }
}

impl UploadWriter {
    pub fn new(upload: Box<dyn Upload>) -> (Self, UploadHandle) {
        let part_size = upload.part_size();
        let inner = std::sync::Arc::new(tokio::sync::Mutex::new(Some(upload)));
        let progress = std::sync::Arc::new(UploadProgress::default());
        (
            Self {
                inner: inner.clone(),
                progress: progress.clone(),
            },
            UploadHandle {
                inner,
                progress,
                part_size,
            },
        )
    }
}

fn closed_upload() -> ::parquet::errors::ParquetError {
    ::parquet::errors::ParquetError::General("upload already completed or aborted".into())
}

impl ::parquet::arrow::async_writer::AsyncFileWriter for UploadWriter {
    fn write(
        &mut self,
        bs: Bytes,
    ) -> futures::future::BoxFuture<'_, ::parquet::errors::Result<()>> {
        Box::pin(async move {
            self.progress.add(&bs);
            let mut guard = self.inner.lock().await;
            let upload = guard.as_mut().ok_or_else(closed_upload)?;
            upload
                .write(bs)
                .await
                .map_err(|e| ::parquet::errors::ParquetError::External(Box::new(e)))
        })
    }

    fn complete(&mut self) -> futures::future::BoxFuture<'_, ::parquet::errors::Result<()>> {
        Box::pin(async move {
            let upload = self.inner.lock().await.take().ok_or_else(closed_upload)?;
            upload
                .complete()
                .await
                .map(|_| ())
                .map_err(|e| ::parquet::errors::ParquetError::External(Box::new(e)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The catalogue's check value of CRC-64/NVME ("123456789" → 0xAE8B14860A799888), in the
    /// form S3 prints it; and a digest fed in pieces equals the one-shot checksum.
    #[test]
    fn crc64nvme_is_s3s_checksum() {
        use base64::Engine;
        let want = base64::engine::general_purpose::STANDARD
            .encode(0xAE8B_1486_0A79_9888_u64.to_be_bytes());
        assert_eq!(crc64nvme(b"123456789"), want);
        let p = UploadProgress::default();
        for piece in [&b"1234"[..], b"", b"56789"] {
            p.add(piece);
        }
        assert_eq!((p.crc64nvme(), p.bytes()), (want, 9));
    }

    /// A manifest written before the checksum changed (a file's `sha256`, no `crc64nvme`)
    /// still reads: the nightly run compares against the day's published manifest.
    #[test]
    fn manifests_with_sha256_still_read() {
        let t: DateTime<Utc> = "2026-11-20T01:00:00Z".parse().expect("time");
        let m = Manifest {
            date: "2026-11-19".parse().expect("date"),
            run_id: RunId::new(t),
            interval: "2026-11-19T00:00:00Z/2026-11-20T00:00:00Z".into(),
            partial_day: false,
            schema_version: "1".into(),
            tool_version: "0.1.0".into(),
            started: t,
            finished: t,
            conversations: 2,
            rows: [("calls".to_string(), 2)].into(),
            files: vec![ManifestFile {
                table: "calls".into(),
                key: "calls/call_date=2026-11-19/part-00000.parquet".into(),
                rows: 2,
                bytes: 1234,
                crc64nvme: crc64nvme(b"file"),
            }],
            type_mismatches: 0,
            open: 0,
        };
        let mut old = serde_json::to_value(&m).expect("json");
        let file = &mut old["files"][0];
        let crc = file
            .as_object_mut()
            .and_then(|f| f.remove("crc64nvme"))
            .expect("crc64nvme written");
        assert_eq!(crc, serde_json::json!(crc64nvme(b"file")));
        file["sha256"] =
            serde_json::json!("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
        let back: Manifest = serde_json::from_value(old).expect("old manifest reads");
        assert_eq!(back.files[0].crc64nvme, "");
        let mut want = m.clone();
        want.files[0].crc64nvme = String::new();
        assert_eq!(back, want);
    }
}
