//! The partition-commit protocol, written once over [`ObjectStorage`].
//!
//! A partition (a dataset's table-day: the dataset's name, its partition column and a date,
//! e.g. `conversations`, `conversation_date`, `2026-11-20`, all from its
//! [`Dataset`] descriptor) is written by one run at a time and becomes visible whole. A
//! publish is a small state machine whose steps are named and idempotent:
//!
//! ```text
//! TakeLease → Stage → WriteManifest → Commit → MakeVisible → Sweep → Release
//! ```
//! - **TakeLease**: create `_leases/{dataset}/{col}={v}.json` (put-if-absent), or take over an
//!   expired one (put-if-match on the version read). A lease lasts `ttl` (2 minutes by default)
//!   and a heartbeat renews it (put-if-match) every third of that while the run lives. A lease
//!   found in the `Publishing` state is a publish interrupted past its commit point: it is
//!   rolled forward first. Then the partition's staging is cleared of every other run (a dead
//!   run's parts and uploads).
//! - **Stage**: parts are written where readers do not look (`_staging/…/run=R/`, or in
//!   catalog mode the run's own folder, which no partition points at yet).
//! - **WriteManifest**: `_manifests/{dataset}/{col}={v}/run=R.json`, the run's files.
//! - **Commit** (the commit point, one conditional write): the lease is rewritten, if-match the
//!   version this run holds, to `Publishing { run, previous }`. A run that lost its lease fails
//!   here and changes nothing. The lease in that state is also the listable record of a publish
//!   in flight: the next run, of any partition, lists `_leases/` once and finishes it.
//! - **MakeVisible**: per [`Visibility`]: swap folders (local), copy parts (S3 read by
//!   listing) or point the Glue partitions at the run's folder (catalog mode); then the
//!   partition's pointer manifest `_manifests/{dataset}/{col}={v}.json` names the run.
//! - **Sweep**: removes the previous run's files (only those its manifest lists: a foreign file
//!   under a partition is never ours), this run's staging, and the previous run's manifest.
//! - **Release**: delete-if-match of the lease: never the lease of a run that took over.
//!
//! **Local folders.** A reader that globs (DuckDB) sees one whole run per table at every
//! instant: MakeVisible exchanges the staged partition folder with the visible one in one
//! `renameat2(RENAME_EXCHANGE)` (another tool's files copied into the new folder first), and
//! the previous content, now in the run's staging, goes with the Sweep. Chosen over a symlink
//! per partition (readers and copy tools differ on following directory links, and Hive-style
//! discovery would see the link and the run folders behind it) and over renaming the new files
//! in before removing the old (two runs at once). Where there is no exchange (not Linux, or a
//! file system without it) it falls back to two renames, between which the partition is empty
//! for an instant (never two runs). As with any replacement, a reader that opened the folder
//! just before the exchange reads the previous run's files as they are swept.
//!
//! A partition last written by the previous release's layout (before this protocol) is
//! upgraded when a run first takes it: see [`legacy`].
//!
//! A crash at any step leaves the previous content visible (before Commit) or a `Publishing`
//! lease that the next run rolls forward (after it). The longest a crashed run blocks a
//! partition is its lease's ttl (the heartbeat stops with the process).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

mod legacy;

use super::catalog::GlueCatalog;
use super::storage::{join, ObjectStorage, PutMode, S3Storage, Version};
use super::{Lease, Manifest, RunId, Store, StoreError, Upload};
use crate::datasets::Dataset;
use crate::tables::schema::Table;

/// What a lease, a manifest and a commit are keyed by: one partition of one dataset.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PartitionKey {
    pub dataset: String,
    pub column: String,
    pub value: String,
}

impl PartitionKey {
    /// `dataset`'s partition of `date`.
    pub fn new(dataset: &Dataset, date: NaiveDate) -> Self {
        Self {
            dataset: dataset.name.into(),
            column: dataset.partitioning.column().into(),
            value: date.to_string(),
        }
    }

    /// The dataset whose partition this is, if it is registered.
    fn dataset(&self) -> Result<&'static Dataset, StoreError> {
        Dataset::by_name(&self.dataset).ok_or_else(|| {
            corrupt(
                self.id(),
                format!("no dataset {} in this version", self.dataset),
            )
        })
    }

    /// `conversation_date=2026-11-20`: the Hive folder of the partition in every table.
    pub fn folder(&self) -> String {
        format!("{}={}", self.column, self.value)
    }

    fn id(&self) -> String {
        join(&[&self.dataset, &self.folder()])
    }

    fn lease_key(&self) -> String {
        format!("{LEASES}/{}.json", self.id())
    }

    fn pointer_key(&self) -> String {
        format!("{MANIFESTS}/{}.json", self.id())
    }

    fn run_manifest_key(&self, run: &str) -> String {
        format!("{MANIFESTS}/{}/run={run}.json", self.id())
    }

    fn staging(&self) -> String {
        format!("{STAGING}/{}/", self.id())
    }

    fn run_staging(&self, run: &str) -> String {
        format!("{}run={run}/", self.staging())
    }

    /// The raw page archive of the partition (not keyed by dataset yet: see issue 14's notes).
    fn raw(&self) -> String {
        format!("{RAW}/{}/", self.folder())
    }

    fn run_raw(&self, run: &str) -> String {
        format!("{}run={run}/", self.raw())
    }

    fn date(&self) -> Option<NaiveDate> {
        self.value.parse().ok()
    }
}

const LEASES: &str = "_leases";
const MANIFESTS: &str = "_manifests";
const STAGING: &str = "_staging";
const RAW: &str = super::RAW_TABLE;
/// Catalog mode: `_manifests/{dataset}/{col}={v}/run=R.superseded` marks a run that was
/// visible and was replaced (its folders stay for the lifecycle rule).
const SUPERSEDED: &str = ".superseded";

/// Every top-level folder the protocol may write or delete under: the schema's tables and our
/// own. Nothing else under the root is touched.
pub fn our_folders() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = Table::all().iter().map(|t| t.name()).collect();
    v.extend([STAGING, MANIFESTS, LEASES, RAW]);
    v
}

/// Where a lease stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum LeaseState {
    Writing,
    /// Past the commit point: `run` is being made visible, replacing `previous`.
    Publishing {
        previous: Option<String>,
    },
}

/// The lease object.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeaseRecord {
    key: PartitionKey,
    run: String,
    holder: String,
    since: DateTime<Utc>,
    expires: DateTime<Utc>,
    #[serde(flatten)]
    state: LeaseState,
}

/// How a committed run becomes what readers see.
#[derive(Debug, Clone)]
pub enum Visibility {
    /// Local folder: each table's staged partition folder is exchanged with the visible one in
    /// one `renameat2(RENAME_EXCHANGE)` (a reader that globs sees the old run or the new one,
    /// whole, at every instant). Where the system has no exchange (not Linux, or a file system
    /// without it), two renames: for an instant between them the partition is empty.
    SwapFolders,
    /// S3 read by listing the partition: the run's parts are copied in, then the previous
    /// run's deleted. A reader listing during those seconds sees both runs.
    CopyParts,
    /// S3 with a Glue catalog: parts are written to the run's own folder and each table's
    /// partition is pointed at it (`UpdatePartition`, atomic per table).
    Catalog {
        glue: Arc<GlueCatalog>,
        s3: S3Storage,
    },
}

/// State of a lease this process holds.
#[derive(Debug)]
struct Held {
    record: Mutex<(LeaseRecord, Version)>,
    /// Held across each conditional write of the lease by this process (heartbeat, commit,
    /// release): two of them from the same version would make the later one fail as if
    /// another run had taken the lease.
    writing: tokio::sync::Mutex<()>,
    lost: AtomicBool,
    heartbeat: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(h) = self
            .heartbeat
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            h.abort();
        }
    }
}

/// The day store: the protocol above over any [`ObjectStorage`].
#[derive(Debug)]
pub struct CommitStore {
    storage: Arc<dyn ObjectStorage>,
    visibility: Visibility,
    /// How long to wait for a lease another live run holds (0: fail at once).
    lease_wait: Duration,
    /// Leases held, alive while a copy of their [`Lease`] is (it holds the strong reference).
    held: Mutex<HashMap<(String, String), std::sync::Weak<Held>>>,
    repaired: tokio::sync::OnceCell<()>,
    /// Heartbeats never extend a lease past this instant (a Lambda invocation's deadline).
    renew_until: Arc<Mutex<Option<DateTime<Utc>>>>,
}

fn corrupt(location: String, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        location,
        message: e.to_string(),
    }
}

impl CommitStore {
    pub fn new(storage: Arc<dyn ObjectStorage>, visibility: Visibility) -> Self {
        Self {
            storage,
            visibility,
            lease_wait: Duration::ZERO,
            held: Mutex::new(HashMap::new()),
            repaired: tokio::sync::OnceCell::new(),
            renew_until: Arc::new(Mutex::new(None)),
        }
    }

    /// Wait up to `wait` for a lease held by a live run instead of failing at once.
    pub fn with_lease_wait(mut self, wait: Duration) -> Self {
        self.lease_wait = wait;
        self
    }

    pub fn storage(&self) -> &Arc<dyn ObjectStorage> {
        &self.storage
    }

    fn held(&self, lease: &Lease) -> Option<Arc<Held>> {
        let k = (
            PartitionKey::new(lease.dataset, lease.date).id(),
            lease.run.0.clone(),
        );
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&k)
            .and_then(std::sync::Weak::upgrade)
    }

    async fn read_lease(
        &self,
        key: &PartitionKey,
    ) -> Result<Option<(Option<LeaseRecord>, Version)>, StoreError> {
        Ok(self
            .storage
            .get(&key.lease_key())
            .await?
            .map(|(b, v)| (serde_json::from_slice::<LeaseRecord>(&b).ok(), v)))
    }

    async fn write_lease(
        &self,
        record: &LeaseRecord,
        mode: PutMode,
    ) -> Result<Version, StoreError> {
        let key = record.key.lease_key();
        let body = serde_json::to_vec_pretty(record).map_err(|e| corrupt(key.clone(), e))?;
        self.storage.put(&key, Bytes::from(body), mode).await
    }

    async fn get_manifest(&self, key: &str) -> Result<Option<Manifest>, StoreError> {
        match self.storage.get(key).await? {
            None => Ok(None),
            Some((b, _)) => serde_json::from_slice(&b).map(Some).map_err(|e| {
                corrupt(
                    self.storage.location(key),
                    format!("unreadable manifest: {e}"),
                )
            }),
        }
    }

    /// **Repair**, once per process: finishes every publish a dead run left past its commit
    /// point, whatever partition, with one listing of `_leases/`.
    async fn repair(&self) -> Result<(), StoreError> {
        for meta in self.storage.list(&format!("{LEASES}/")).await? {
            let Some((body, version)) = self.storage.get(&meta.key).await? else {
                continue;
            };
            let Ok(rec) = serde_json::from_slice::<LeaseRecord>(&body) else {
                continue;
            };
            if rec.expires > Utc::now() || !matches!(rec.state, LeaseState::Publishing { .. }) {
                continue; // a live run's, or a dead writer's (swept when its partition is run)
            }
            tracing::warn!(partition = %rec.key.id(), run = %rec.run, "finishing a publish interrupted past its commit point");
            // Take it over (nobody else may finish it at the same time), finish, release.
            let mut mine = rec.clone();
            mine.holder = super::this_holder();
            mine.since = Utc::now();
            mine.expires = Utc::now() + chrono::Duration::minutes(2);
            let v = match self.write_lease(&mine, PutMode::Update(version)).await {
                Ok(v) => v,
                Err(StoreError::Precondition { .. }) => continue,
                Err(e) => return Err(e),
            };
            if let Err(e) = self.roll_forward(&mine).await {
                self.expire_now(&mine, v).await;
                return Err(e);
            }
            match self.storage.delete(&rec.key.lease_key(), Some(&v)).await {
                Ok(()) | Err(StoreError::Precondition { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// A roll-forward that failed (Glue throttled, a table gone) leaves its publish to the
    /// next run at once rather than when the lease taken to finish it lapses (best effort: the
    /// lease lapses anyway).
    async fn expire_now(&self, rec: &LeaseRecord, v: Version) {
        let mut back = rec.clone();
        back.expires = Utc::now();
        if let Err(e) = self.write_lease(&back, PutMode::Update(v)).await {
            tracing::warn!(partition = %rec.key.id(), error = %e, "could not hand an interrupted publish back");
        }
    }

    /// **TakeLease** for `key`; see the module docs.
    async fn take_lease(
        &self,
        key: &PartitionKey,
        run: &RunId,
        ttl: chrono::Duration,
    ) -> Result<(LeaseRecord, Version), StoreError> {
        let waited_since = std::time::Instant::now();
        loop {
            let now = Utc::now();
            let mut rec = LeaseRecord {
                key: key.clone(),
                run: run.0.clone(),
                holder: super::this_holder(),
                since: now,
                expires: now + ttl,
                state: LeaseState::Writing,
            };
            match self.write_lease(&rec, PutMode::Create).await {
                Ok(v) => return Ok((rec, v)),
                Err(StoreError::Precondition { .. }) => {}
                Err(e) => return Err(e),
            }
            let Some((current, version)) = self.read_lease(key).await? else {
                continue; // released in between
            };
            let held = match &current {
                Some(c) if c.expires > now && !holder_is_dead(&c.holder) => Some(c),
                Some(_) => None,
                // Leases are written whole, so an unreadable one is damage, never a run caught
                // mid-write: it is not taken over; an operator removes it.
                None => {
                    return Err(corrupt(
                        self.storage.location(&key.lease_key()),
                        "unreadable lease; remove it once no run of this partition is alive",
                    ))
                }
            };
            if let Some(c) = held {
                let err = StoreError::LeaseHeld {
                    date: key.date().unwrap_or(NaiveDate::MIN),
                    holder: c.run.clone(),
                    since: c.since.to_rfc3339(),
                    expires: c.expires.to_rfc3339(),
                };
                let waited = waited_since.elapsed();
                if waited >= self.lease_wait {
                    return Err(err);
                }
                let until_expiry = (c.expires - now).to_std().unwrap_or_default();
                let nap = until_expiry
                    .min(Duration::from_secs(5))
                    .min(self.lease_wait - waited)
                    .max(Duration::from_millis(50));
                tokio::time::sleep(nap).await;
                continue;
            }
            // Expired: a publish past its commit point is finished first, under our name.
            if let Some(c) = current
                .as_ref()
                .filter(|c| matches!(c.state, LeaseState::Publishing { .. }))
            {
                let mut taking = c.clone();
                taking.holder = rec.holder.clone();
                taking.expires = now + ttl;
                let v = match self.write_lease(&taking, PutMode::Update(version)).await {
                    Ok(v) => v,
                    Err(StoreError::Precondition { .. }) => continue,
                    Err(e) => return Err(e),
                };
                if let Err(e) = self.roll_forward(&taking).await {
                    self.expire_now(&taking, v).await;
                    return Err(e);
                }
                rec.since = Utc::now();
                rec.expires = rec.since + ttl;
                match self.write_lease(&rec, PutMode::Update(v)).await {
                    Ok(v) => return Ok((rec, v)),
                    Err(StoreError::Precondition { .. }) => continue,
                    Err(e) => return Err(e),
                }
            }
            match self.write_lease(&rec, PutMode::Update(version)).await {
                Ok(v) => {
                    if let Some(c) = current {
                        tracing::warn!(partition = %key.id(), stale = %c.run, "took over an expired lease");
                    }
                    return Ok((rec, v));
                }
                Err(StoreError::Precondition { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Removes what runs other than `keep` left in the partition's staging (and, in catalog
    /// mode, their run folders that no partition points at), and their open uploads. Called
    /// under the lease, so those runs are dead.
    async fn clear_dead_runs(&self, key: &PartitionKey, keep: &[&str]) -> Result<(), StoreError> {
        let mut kept: BTreeSet<String> = keep.iter().map(|r| r.to_string()).collect();
        let pointer = match self.get_manifest(&key.pointer_key()).await? {
            Some(m) => Some(m),
            // Never written by this layout: maybe by the previous release's.
            None => self.upgrade_legacy(key).await?,
        };
        kept.extend(pointer.map(|m| m.run_id.0));
        let prefix = format!("{MANIFESTS}/{}/", key.id());
        let records = self.storage.list(&prefix).await?;
        let run_of = |k: &str, suffix: &str| -> Option<String> {
            k[prefix.len()..]
                .strip_prefix("run=")
                .and_then(|r| r.strip_suffix(suffix))
                .map(str::to_string)
        };
        // Superseded runs stay (queries planned before a switch read them) until the bucket's
        // lifecycle rule expires them; MakeVisible marks each one it supersedes. A run with a
        // manifest but no mark, neither visible nor ours, died between writing its manifest
        // and its commit: its folders and manifest go.
        kept.extend(records.iter().filter_map(|m| run_of(&m.key, SUPERSEDED)));
        let keep_run = |r: &str| kept.contains(r);
        for m in &records {
            if run_of(&m.key, ".json").is_some_and(|r| !keep_run(&r)) {
                self.storage.delete(&m.key, None).await?;
            }
        }
        let mut prefixes = vec![key.staging(), key.raw()];
        if matches!(self.visibility, Visibility::Catalog { .. }) {
            prefixes.extend(
                key.dataset()?
                    .tables
                    .iter()
                    .map(|t| format!("{}/{}/", t.name(), key.folder())),
            );
        }
        for prefix in prefixes {
            for meta in self.storage.list(&prefix).await? {
                if run_folder(&meta.key[prefix.len()..]).is_some_and(|r| !keep_run(r)) {
                    self.storage.delete(&meta.key, None).await?;
                }
            }
            for up in self.storage.open_uploads(&prefix).await? {
                if run_folder(&up[prefix.len()..]).is_some_and(|r| !keep_run(r)) {
                    self.storage.abort_uploads(&up).await?;
                }
            }
        }
        Ok(())
    }

    /// Where part `part` of `table` is written, and its key once visible.
    fn part_keys(&self, key: &PartitionKey, run: &str, table: &str, part: u32) -> (String, String) {
        let name = format!("part-{run}-{part:05}.parquet");
        match self.visibility {
            Visibility::Catalog { .. } => {
                let k = format!("{table}/{}/run={run}/{name}", key.folder());
                (k.clone(), k)
            }
            _ => {
                let visible = format!("{table}/{}/{name}", key.folder());
                (format!("{}{visible}", key.run_staging(run)), visible)
            }
        }
    }

    /// **MakeVisible** and **Sweep** of a committed run: idempotent, so a crash anywhere in
    /// it is finished by running it again.
    async fn roll_forward(&self, rec: &LeaseRecord) -> Result<(), StoreError> {
        let LeaseState::Publishing { previous } = &rec.state else {
            return Ok(());
        };
        let key = &rec.key;
        let run = rec.run.as_str();
        let manifest = self
            .get_manifest(&key.run_manifest_key(run))
            .await?
            .ok_or_else(|| {
                corrupt(
                    self.storage.location(&key.run_manifest_key(run)),
                    "the committed run's manifest is missing",
                )
            })?;
        let prev = match previous.as_deref().filter(|p| *p != run) {
            Some(p) => self.get_manifest(&key.run_manifest_key(p)).await?,
            None => None,
        };
        let new_keys: BTreeSet<&str> = manifest.files.iter().map(|f| f.key.as_str()).collect();
        match &self.visibility {
            Visibility::SwapFolders => {
                self.swap_folders(key, run, &manifest, prev.as_ref())
                    .await?
            }
            Visibility::CopyParts => {
                for f in manifest.files.iter().filter(|f| f.table != RAW) {
                    if self.storage.head(&f.key).await?.is_some() {
                        continue;
                    }
                    let staged = format!("{}{}", key.run_staging(run), f.key);
                    if self.storage.head(&staged).await?.is_none() {
                        return Err(corrupt(
                            self.storage.location(&staged),
                            "a committed part is neither staged nor published",
                        ));
                    }
                    self.storage.copy(&staged, &f.key).await?;
                }
                // The previous run's files, only those its manifest names.
                if let Some(p) = &prev {
                    for f in p
                        .files
                        .iter()
                        .filter(|f| !new_keys.contains(f.key.as_str()))
                    {
                        self.storage.delete(&f.key, None).await?;
                    }
                }
            }
            Visibility::Catalog { glue, s3 } => {
                let date = key
                    .date()
                    .ok_or_else(|| corrupt(key.id(), "catalog mode needs a date partition"))?;
                glue.register(key.dataset()?, date, |table| {
                    format!(
                        "s3://{}/{}/",
                        s3.bucket(),
                        s3.full_key(&format!("{table}/{}/run={run}", key.folder()))
                    )
                })
                .await?;
                // Queries planned before the switch may still read the previous run: it is
                // marked superseded (kept by later runs' sweeps) and its files tagged for the
                // bucket's lifecycle rule rather than deleted.
                if let Some(p) = &prev {
                    self.storage
                        .put(
                            &format!("{MANIFESTS}/{}/run={}{SUPERSEDED}", key.id(), p.run_id.0),
                            Bytes::new(),
                            PutMode::Overwrite,
                        )
                        .await?;
                    for f in p
                        .files
                        .iter()
                        .filter(|f| f.table != RAW && !new_keys.contains(f.key.as_str()))
                    {
                        s3.tag_superseded(&f.key).await?;
                    }
                }
            }
        }
        let body =
            serde_json::to_vec_pretty(&manifest).map_err(|e| corrupt(key.pointer_key(), e))?;
        self.storage
            .put(&key.pointer_key(), Bytes::from(body), PutMode::Overwrite)
            .await?;
        // Sweep: this run's staging (with what was set aside), the previous run's raw pages,
        // and last its manifest: while anything of the previous run is left, a re-run still
        // knows which files were ours.
        self.delete_prefix(&key.run_staging(run)).await?;
        if let Some(p) = &prev {
            for f in p
                .files
                .iter()
                .filter(|f| f.table == RAW && !new_keys.contains(f.key.as_str()))
            {
                self.storage.delete(&f.key, None).await?;
            }
            if !matches!(self.visibility, Visibility::Catalog { .. }) {
                self.storage
                    .delete(&key.run_manifest_key(&p.run_id.0), None)
                    .await?;
            }
        }
        Ok(())
    }

    async fn swap_folders(
        &self,
        key: &PartitionKey,
        run: &str,
        manifest: &Manifest,
        prev: Option<&Manifest>,
    ) -> Result<(), StoreError> {
        let mut tables: BTreeSet<&str> = manifest.files.iter().map(|f| f.table.as_str()).collect();
        if let Some(p) = prev {
            tables.extend(p.files.iter().map(|f| f.table.as_str()));
        }
        tables.remove(RAW);
        let prev_keys: BTreeSet<&str> = prev
            .iter()
            .flat_map(|p| p.files.iter().map(|f| f.key.as_str()))
            .collect();
        for table in tables {
            let visible = format!("{table}/{}", key.folder());
            let staged = format!("{}{visible}", key.run_staging(run));
            let aside = format!("{}_old/{table}", key.run_staging(run));
            let new_keys: Vec<&str> = manifest
                .files
                .iter()
                .filter(|f| f.table == table)
                .map(|f| f.key.as_str())
                .collect();
            let visible_files = self.storage.list(&format!("{visible}/")).await?;
            let shown: BTreeSet<&str> = visible_files.iter().map(|m| m.key.as_str()).collect();
            // Part names carry the run: ours are visible once every one of them is there.
            let ours_visible = !new_keys.is_empty() && new_keys.iter().all(|k| shown.contains(k));
            let staged_there = !self.storage.list(&format!("{staged}/")).await?.is_empty();
            if !new_keys.is_empty() && !ours_visible && staged_there {
                if visible_files.is_empty() {
                    self.storage.rename_folder(&staged, &visible).await?;
                } else {
                    // Another tool's files are copied in first: they stay visible throughout.
                    for m in visible_files
                        .iter()
                        .filter(|m| !prev_keys.contains(m.key.as_str()))
                    {
                        let rel = &m.key[visible.len() + 1..];
                        self.storage
                            .copy(&m.key, &format!("{staged}/{rel}"))
                            .await?;
                    }
                    // One atomic exchange: the previous content lands in the staging, which
                    // the sweep removes.
                    if !self.storage.exchange_folders(&staged, &visible).await? {
                        // Fallback (no exchange on this system): two renames, between which a
                        // reader finds the folder empty for an instant, never two runs.
                        self.delete_prefix(&format!("{aside}/")).await?;
                        self.storage.rename_folder(&visible, &aside).await?;
                        self.storage.rename_folder(&staged, &visible).await?;
                    }
                }
            } else if new_keys.is_empty() && shown.iter().any(|k| prev_keys.contains(k)) {
                // No rows in this run: the previous run's partition is set aside whole (empty
                // is this run's content); another tool's files come back below.
                self.restore_foreign(&aside, &visible, &prev_keys).await?;
                self.delete_prefix(&format!("{aside}/")).await?;
                self.storage.rename_folder(&visible, &aside).await?;
            }
            self.restore_foreign(&aside, &visible, &prev_keys).await?;
        }
        Ok(())
    }

    /// Files set aside with a partition folder that no run of ours wrote (another tool's) go
    /// back into it.
    async fn restore_foreign(
        &self,
        aside: &str,
        visible: &str,
        ours: &BTreeSet<&str>,
    ) -> Result<(), StoreError> {
        for m in self.storage.list(&format!("{aside}/")).await? {
            let original = format!("{visible}/{}", &m.key[aside.len() + 1..]);
            if !ours.contains(original.as_str()) {
                self.storage.copy(&m.key, &original).await?;
                self.storage.delete(&m.key, None).await?;
            }
        }
        Ok(())
    }

    /// Deletes every object under `prefix` (never the whole root).
    async fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError> {
        let top = prefix.split('/').next().unwrap_or("");
        if prefix.trim_matches('/').is_empty() || !our_folders().contains(&top) {
            return Err(corrupt(
                self.storage.location(prefix),
                "refusing to delete outside our folders",
            ));
        }
        for m in self.storage.list(prefix).await? {
            self.storage.delete(&m.key, None).await?;
        }
        self.storage.abort_uploads(prefix).await
    }

    /// A lost-lease error that names the run holding the partition now, when one does.
    async fn name_taker(&self, key: &PartitionKey, lease: &Lease, e: StoreError) -> StoreError {
        match self.read_lease(key).await {
            Ok(Some((Some(rec), _))) if rec.run != lease.run.0 => StoreError::LeaseLost {
                date: lease.date,
                run: lease.run.to_string(),
                reason: format!("run {} took it over", rec.run),
            },
            _ => e,
        }
    }

    fn check_held(&self, lease: &Lease) -> Result<Arc<Held>, StoreError> {
        let lost = |reason: &str| StoreError::LeaseLost {
            date: lease.date,
            run: lease.run.to_string(),
            reason: reason.to_string(),
        };
        let held = self
            .held(lease)
            .ok_or_else(|| lost("this process does not hold it"))?;
        if held.lost.load(Ordering::SeqCst) {
            return Err(lost("another run took it over"));
        }
        let expires = held
            .record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .expires;
        if expires <= Utc::now() {
            return Err(lost("it expired (the heartbeat could not renew it)"));
        }
        Ok(held)
    }

    fn start_heartbeat(&self, held: &Arc<Held>, ttl: chrono::Duration) {
        let every = (ttl / 3)
            .to_std()
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_millis(200));
        let weak_held = Arc::downgrade(held);
        let storage = self.storage.clone();
        let until = self.renew_until.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(held) = weak_held.upgrade() else {
                    return;
                };
                let _writing = held.writing.lock().await;
                let (mut rec, v) = held
                    .record
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                let mut expires = Utc::now() + ttl;
                if let Some(u) = *until.lock().unwrap_or_else(|p| p.into_inner()) {
                    expires = expires.min(u);
                }
                if expires <= rec.expires {
                    continue; // at the limit already: the lease lapses there
                }
                rec.expires = expires;
                let Ok(body) = serde_json::to_vec_pretty(&rec) else {
                    return;
                };
                match storage
                    .put(&rec.key.lease_key(), Bytes::from(body), PutMode::Update(v))
                    .await
                {
                    Ok(v) => *held.record.lock().unwrap_or_else(|p| p.into_inner()) = (rec, v),
                    Err(StoreError::Precondition { .. }) => {
                        tracing::error!(partition = %rec.key.id(), run = %rec.run, "lease lost: another run took the partition over");
                        held.lost.store(true, Ordering::SeqCst);
                        return;
                    }
                    // Transient: try again next beat; the lease's expiry is the bound.
                    Err(e) => tracing::warn!(error = %e, "could not renew the lease"),
                }
            }
        });
        *held.heartbeat.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
    }
}

/// The run of a key relative to a partition prefix: `run=R/…` or `…/run=R/…`.
fn run_folder(rel: &str) -> Option<&str> {
    rel.split('/').find_map(|s| s.strip_prefix("run="))
}

/// The store handed to the pipeline: the protocol behind the [`Store`] interface.
#[derive(Debug, Clone)]
pub struct DayStore(pub Arc<CommitStore>);

impl DayStore {
    /// Tables in a local folder; each table's partition folder is swapped in whole.
    pub fn local(root: impl Into<std::path::PathBuf>) -> Result<Self, StoreError> {
        let storage = super::storage::LocalStorage::new(root)?;
        Ok(Self::new(Arc::new(storage), Visibility::SwapFolders))
    }

    /// Tables under `s3://bucket/prefix/`, read by listing the partitions.
    pub fn s3(client: aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Self {
        let storage = S3Storage::new(client, bucket, prefix);
        Self::new(Arc::new(storage), Visibility::CopyParts)
    }

    /// Tables under `s3://bucket/prefix/`, made visible by pointing Glue partitions at a run.
    pub fn s3_catalog(
        client: aws_sdk_s3::Client,
        bucket: &str,
        prefix: &str,
        glue: GlueCatalog,
    ) -> Self {
        let s3 = S3Storage::new(client, bucket, prefix);
        let vis = Visibility::Catalog {
            glue: Arc::new(glue),
            s3: s3.clone(),
        };
        Self::new(Arc::new(s3), vis)
    }

    pub fn new(storage: Arc<dyn ObjectStorage>, visibility: Visibility) -> Self {
        DayStore(Arc::new(CommitStore::new(storage, visibility)))
    }

    /// Waits up to `wait` for a partition another live run holds.
    pub fn with_lease_wait(self, wait: Duration) -> Self {
        match Arc::try_unwrap(self.0) {
            Ok(cs) => DayStore(Arc::new(cs.with_lease_wait(wait))),
            Err(shared) => DayStore(shared),
        }
    }

    /// Stops renewing every lease this store holds, as a process that stalls would (tests).
    #[doc(hidden)]
    pub fn stall_heartbeats(&self) {
        for held in self
            .0
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter_map(std::sync::Weak::upgrade)
        {
            if let Some(h) = held
                .heartbeat
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
            {
                h.abort();
            }
        }
    }
}

#[async_trait]
impl Store for DayStore {
    fn location(&self) -> String {
        self.0.storage.location("")
    }

    async fn acquire_lease(
        &self,
        dataset: &'static Dataset,
        date: NaiveDate,
        run: &RunId,
        ttl: chrono::Duration,
    ) -> Result<Lease, StoreError> {
        let cs = &self.0;
        if let Visibility::Catalog { glue, .. } = &cs.visibility {
            // A missing table is a deploy problem: fail before anything is written.
            glue.check_tables(dataset).await?;
        }
        cs.repaired.get_or_try_init(|| cs.repair()).await?;
        let key = PartitionKey::new(dataset, date);
        let (rec, version) = cs.take_lease(&key, run, ttl).await?;
        let (since, expires, holder) = (rec.since, rec.expires, rec.holder.clone());
        let held = Arc::new(Held {
            record: Mutex::new((rec, version)),
            writing: tokio::sync::Mutex::new(()),
            lost: AtomicBool::new(false),
            heartbeat: Mutex::new(None),
        });
        cs.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((key.id(), run.0.clone()), Arc::downgrade(&held));
        let lease = Lease {
            dataset,
            date,
            run: run.clone(),
            since,
            expires,
            holder: Some(holder),
            guard: super::LeaseGuard(Some(held.clone())),
        };
        cs.start_heartbeat(&held, ttl);
        if let Err(e) = cs.clear_dead_runs(&key, &[&run.0]).await {
            // Not left to block the partition until it lapses (e.g. an old release's run
            // holds it).
            let _ = self.release_lease(&lease).await;
            return Err(e);
        }
        Ok(lease)
    }

    fn renew_until(&self, until: Option<DateTime<Utc>>) {
        *self.0.renew_until.lock().unwrap_or_else(|p| p.into_inner()) = until;
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        let key = PartitionKey::new(lease.dataset, lease.date);
        let held = self
            .0
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(key.id(), lease.run.0.clone()))
            .and_then(|w| w.upgrade());
        let Some(held) = held else { return Ok(()) };
        // A renewal in flight lands first; then the heartbeat is stopped between beats.
        let _writing = held.writing.lock().await;
        if let Some(h) = held
            .heartbeat
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            h.abort();
        }
        let (mut rec, v) = held
            .record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if matches!(rec.state, LeaseState::Publishing { .. }) {
            // A publish that failed past its commit point: the lease is its in-flight record.
            // Expire it now so that the next run, of any partition, finishes it at once.
            rec.expires = Utc::now();
            return match self.0.write_lease(&rec, PutMode::Update(v)).await {
                Ok(_) | Err(StoreError::Precondition { .. }) => Ok(()),
                Err(e) => Err(e),
            };
        }
        match self.0.storage.delete(&key.lease_key(), Some(&v)).await {
            // Taken over: the lease is the other run's now, left alone.
            Ok(()) | Err(StoreError::Precondition { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn create_part(
        &self,
        lease: &Lease,
        table: &str,
        part: u32,
    ) -> Result<(Box<dyn Upload>, String), StoreError> {
        let key = PartitionKey::new(lease.dataset, lease.date);
        let (write, visible) = self.0.part_keys(&key, &lease.run.0, table, part);
        Ok((self.0.storage.upload(&write).await?, visible))
    }

    async fn publish(&self, lease: &Lease, manifest: &Manifest) -> Result<(), StoreError> {
        let cs = &self.0;
        let key = PartitionKey::new(lease.dataset, lease.date);
        let held = match cs.check_held(lease) {
            Ok(h) => h,
            Err(e) => return Err(cs.name_taker(&key, lease, e).await),
        };
        // WriteManifest.
        let body =
            serde_json::to_vec_pretty(manifest).map_err(|e| corrupt(key.pointer_key(), e))?;
        cs.storage
            .put(
                &key.run_manifest_key(&lease.run.0),
                Bytes::from(body),
                PutMode::Overwrite,
            )
            .await?;
        // Commit: one conditional write of the lease we hold.
        let previous = cs
            .get_manifest(&key.pointer_key())
            .await?
            .map(|m| m.run_id.0);
        let writing = held.writing.lock().await;
        let (mut rec, v) = held
            .record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        rec.state = LeaseState::Publishing { previous };
        let committed = match cs.write_lease(&rec, PutMode::Update(v)).await {
            Ok(v) => v,
            Err(StoreError::Precondition { .. }) => {
                held.lost.store(true, Ordering::SeqCst);
                let e = StoreError::LeaseLost {
                    date: lease.date,
                    run: lease.run.to_string(),
                    reason: "another run took it over before the commit".into(),
                };
                return Err(cs.name_taker(&key, lease, e).await);
            }
            Err(e) => {
                // The write may have taken effect (a reply lost): read the lease to know. If
                // that fails too, treat the run as committed, so that discarding keeps its
                // staging; the next run reads the lease and finishes or sweeps the run.
                match cs.read_lease(&key).await {
                    Ok(Some((Some(cur), v)))
                        if cur.run == rec.run
                            && matches!(cur.state, LeaseState::Publishing { .. }) =>
                    {
                        *held.record.lock().unwrap_or_else(|p| p.into_inner()) = (cur, v);
                    }
                    Ok(_) => {}
                    Err(_) => {
                        held.record
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .0
                            .state = rec.state;
                    }
                }
                return Err(e);
            }
        };
        *held.record.lock().unwrap_or_else(|p| p.into_inner()) = (rec.clone(), committed);
        drop(writing);
        // MakeVisible, Sweep (the heartbeat renews the lease meanwhile).
        cs.roll_forward(&rec).await?;
        // Back to Writing: nothing left in flight (release deletes it next).
        let _writing = held.writing.lock().await;
        let (mut rec, v) = held
            .record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        rec.state = LeaseState::Writing;
        if let Ok(v) = cs.write_lease(&rec, PutMode::Update(v)).await {
            *held.record.lock().unwrap_or_else(|p| p.into_inner()) = (rec, v);
        }
        Ok(())
    }

    async fn discard(&self, lease: &Lease) -> Result<(), StoreError> {
        let cs = &self.0;
        let key = PartitionKey::new(lease.dataset, lease.date);
        if let Some(held) = cs.held(lease) {
            let state = held
                .record
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .0
                .state
                .clone();
            if matches!(state, LeaseState::Publishing { .. }) {
                // Past the commit point: the next run finishes it.
                return Ok(());
            }
        }
        // Only this run's: if the lease was lost, another run may be writing the partition.
        cs.delete_prefix(&key.run_staging(&lease.run.0)).await?;
        cs.delete_prefix(&key.run_raw(&lease.run.0)).await?;
        if matches!(cs.visibility, Visibility::Catalog { .. }) {
            for t in lease.dataset.tables {
                cs.delete_prefix(&format!(
                    "{}/{}/run={}/",
                    t.name(),
                    key.folder(),
                    lease.run.0
                ))
                .await?;
            }
        }
        cs.storage
            .delete(&key.run_manifest_key(&lease.run.0), None)
            .await
    }

    async fn manifest(
        &self,
        dataset: &'static Dataset,
        date: NaiveDate,
    ) -> Result<Option<Manifest>, StoreError> {
        self.0
            .get_manifest(&PartitionKey::new(dataset, date).pointer_key())
            .await
    }

    async fn open_partitions(
        &self,
        dataset: &'static Dataset,
        days: std::ops::Range<NaiveDate>,
    ) -> Result<Vec<NaiveDate>, StoreError> {
        use futures::StreamExt;
        // `_manifests/{dataset}/{col}=D.json` are the pointers; run manifests and marks are
        // one folder deeper.
        let prefix = format!("{MANIFESTS}/{}/", dataset.name);
        let folder = format!("{}=", dataset.partitioning.column());
        let dates: Vec<NaiveDate> = self
            .0
            .storage
            .list(&prefix)
            .await?
            .iter()
            .filter_map(|m| {
                let name = m.key.strip_prefix(&prefix)?.strip_suffix(".json")?;
                name.strip_prefix(&folder)?.parse::<NaiveDate>().ok()
            })
            .filter(|d| days.contains(d))
            .collect();
        let reads = futures::stream::iter(dates)
            .map(|date| async move {
                let m = self
                    .0
                    .get_manifest(&PartitionKey::new(dataset, date).pointer_key())
                    .await?;
                Ok::<_, StoreError>(m.filter(|m| m.open > 0).map(|_| date))
            })
            .buffered(8)
            .collect::<Vec<_>>()
            .await;
        let mut open = Vec::new();
        for r in reads {
            open.extend(r?);
        }
        Ok(open)
    }

    async fn put_raw(&self, lease: &Lease, name: &str, data: Bytes) -> Result<(), StoreError> {
        let key = PartitionKey::new(lease.dataset, lease.date);
        let k = format!("{}{name}", key.run_raw(&lease.run.0));
        self.0
            .storage
            .put(&k, data, PutMode::Overwrite)
            .await
            .map(|_| ())
    }

    fn raw_key(&self, lease: &Lease, name: &str) -> String {
        let key = PartitionKey::new(lease.dataset, lease.date);
        format!("{}{name}", key.run_raw(&lease.run.0))
    }
}

/// True when `holder` (`host/pid`) is a process of this host that no longer runs.
fn holder_is_dead(holder: &str) -> bool {
    let mine = super::this_holder();
    let (Some((host, pid)), Some((my_host, _))) = (holder.rsplit_once('/'), mine.rsplit_once('/'))
    else {
        return false;
    };
    host == my_host
        && pid.parse::<u32>().is_ok_and(|pid| {
            pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::storage::MemoryStorage;

    #[tokio::test]
    async fn deleting_refuses_an_empty_prefix_and_folders_not_ours() {
        let s = Arc::new(MemoryStorage::new());
        let cs = CommitStore::new(s.clone(), Visibility::CopyParts);
        // A table's part and a run's staged part of some dataset, and another tool's file.
        let ds = &crate::datasets::conversations::DATASET;
        let part = ds.partition_folder("2026-11-20".parse().expect("date"));
        let table = ds.tables[ds.tables.len() - 1].name();
        let keys = [
            "other-tool/x.parquet".to_string(),
            format!("{table}/{part}/part-r-00000.parquet"),
            format!("_staging/{}/{part}/run=r/x", ds.name),
        ];
        for k in &keys {
            s.put(k, Bytes::from_static(b"x"), PutMode::Overwrite)
                .await
                .expect("put");
        }
        let near = format!("{table}X/");
        for prefix in ["", "/", "other-tool/", "other-tool", near.as_str()] {
            let r = cs.delete_prefix(prefix).await;
            assert!(
                matches!(r, Err(StoreError::Corrupt { .. })),
                "{prefix:?}: {r:?}"
            );
        }
        assert_eq!(s.list("").await.expect("list").len(), keys.len());
        cs.delete_prefix("_staging/").await.expect("ours");
        let left: Vec<String> = s
            .list("")
            .await
            .expect("list")
            .into_iter()
            .map(|m| m.key)
            .collect();
        assert_eq!(left, keys[..2]);
    }
}
