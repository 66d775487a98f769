//! The local-folder store.
//!
//! Layout under the root:
//! ```text
//! {table}/conversation_date=D/part-00000.parquet      what readers see
//! _staging/conversation_date=D/run=R/…                a run in progress (same layout inside)
//! _manifests/conversation_date=D.json                 manifest of the visible run
//! _leases/conversation_date=D.json                    who is writing day D, until when
//! _raw/conversation_date=D/…                          optional raw page archive (a "table")
//! ```
//! Publishing renames each table's staged partition folder into place (one atomic `rename` per
//! table) after writing a journal (`_PUBLISH.json`) into the staging folder. A process killed in
//! the middle leaves the journal; the next run on that day finishes the renames before doing
//! anything else, so a reader never sees a mix of two runs for longer than that window and never
//! a half-written file.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{NaiveDate, Utc};
use tokio::io::AsyncWriteExt;

use super::{Lease, Manifest, RunId, Store, StoreError, Upload};

/// The raw archive lives beside the tables and is replaced with them.
const RAW: &str = super::RAW_TABLE;
const JOURNAL: &str = "_PUBLISH.json";

/// Writes tables into a folder on the local file system.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        std::fs::create_dir_all(&root)
            .map_err(|e| StoreError::io("create folder", root.display(), e))?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn partition(date: NaiveDate) -> String {
        format!("conversation_date={date}")
    }

    fn visible_dir(&self, table: &str, date: NaiveDate) -> PathBuf {
        self.root.join(table).join(Self::partition(date))
    }

    fn staging_day(&self, date: NaiveDate) -> PathBuf {
        self.root.join("_staging").join(Self::partition(date))
    }

    fn staging_dir(&self, lease: &Lease) -> PathBuf {
        self.staging_day(lease.date)
            .join(format!("run={}", lease.run))
    }

    fn lease_path(&self, date: NaiveDate) -> PathBuf {
        self.root
            .join("_leases")
            .join(format!("{}.json", Self::partition(date)))
    }

    fn manifest_path(&self, date: NaiveDate) -> PathBuf {
        self.root
            .join("_manifests")
            .join(format!("{}.json", Self::partition(date)))
    }

    async fn read_lease(
        &self,
        date: NaiveDate,
    ) -> Result<Option<(Bytes, Option<Lease>)>, StoreError> {
        let path = self.lease_path(date);
        match tokio::fs::read(&path).await {
            Ok(b) => {
                let lease = serde_json::from_slice::<Lease>(&b).ok();
                Ok(Some((Bytes::from(b), lease)))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("read lease", path.display(), e)),
        }
    }

    /// Replaces the lease file with `body` only if it still holds `seen` (a put-if-match):
    /// a run that took the day in between keeps it.
    async fn take_over_lease(
        &self,
        date: NaiveDate,
        seen: &Bytes,
        body: &[u8],
    ) -> Result<bool, StoreError> {
        let path = self.lease_path(date);
        let seen = seen.clone();
        let body = body.to_vec();
        under_key_lock(&path, move |path| {
            match std::fs::read(path) {
                Ok(current) if current == seen.as_ref() => {}
                Ok(_) => return Ok(false),
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e),
            }
            let tmp = temp_beside(path);
            write_synced(&tmp, &body)?;
            std::fs::rename(&tmp, path)?;
            Ok(true)
        })
        .await
        .map_err(|e| StoreError::io("take over lease", path.display(), e))
    }

    /// Finishes or removes what earlier runs of `date` left in staging. Called under the lease.
    async fn sweep(&self, date: NaiveDate, current: &RunId) -> Result<(), StoreError> {
        let day = self.staging_day(date);
        let mut entries = match tokio::fs::read_dir(&day).await {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io("list", day.display(), e)),
        };
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| StoreError::io("list", day.display(), e))?
        {
            let dir = entry.path();
            if dir.file_name().and_then(|n| n.to_str()) == Some(&format!("run={current}")) {
                continue;
            }
            let journal = dir.join(JOURNAL);
            match tokio::fs::read(&journal).await {
                Ok(b) => {
                    let manifest: Manifest =
                        serde_json::from_slice(&b).map_err(|e| StoreError::Corrupt {
                            location: journal.display().to_string(),
                            message: format!("unreadable publish journal: {e}"),
                        })?;
                    tracing::warn!(run = %manifest.run_id, %date, "finishing an interrupted publish");
                    self.roll_forward(&dir, &manifest).await?;
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    tracing::info!(dir = %dir.display(), "removing an unfinished run's staging");
                    remove_dir_all(&dir).await?;
                }
                Err(e) => return Err(StoreError::io("read", journal.display(), e)),
            }
        }
        Ok(())
    }

    /// Moves every staged table partition of the run into place. Idempotent, so an
    /// interrupted publish can be run again from the journal.
    async fn roll_forward(&self, staging: &Path, manifest: &Manifest) -> Result<(), StoreError> {
        let date = manifest.date;
        let old = staging.join("_old");
        // Every table the run wrote, and every table holding this day from an earlier run: a
        // table the new run has no rows for must not keep the old run's rows.
        let mut tables: Vec<String> = manifest
            .rows
            .keys()
            .cloned()
            .chain(manifest.files.iter().map(|f| f.table.clone()))
            .chain(std::iter::once(RAW.to_string()))
            .collect();
        if let Ok(mut rd) = tokio::fs::read_dir(&self.root).await {
            while let Ok(Some(e)) = rd.next_entry().await {
                let name = e.file_name().to_string_lossy().to_string();
                if !name.starts_with('_') && exists(&self.visible_dir(&name, date)).await? {
                    tables.push(name);
                }
            }
        }
        tables.sort();
        tables.dedup();
        for table in tables.iter().map(String::as_str) {
            let new = staging.join(table).join(Self::partition(date));
            let vis = self.visible_dir(table, date);
            let new_exists = exists(&new).await?;
            let has_data = manifest.files.iter().any(|f| f.table == table);
            // After a crash, `vis` may already be this run's data (moved earlier): only a
            // partition that is not ours is moved aside.
            if exists(&vis).await? && (new_exists || !has_data) {
                let aside = old.join(table);
                mkdir(&old).await?;
                if exists(&aside).await? {
                    remove_dir_all(&aside).await?;
                }
                rename(&vis, &aside).await?;
            }
            if new_exists {
                let parent = self.root.join(table);
                mkdir(&parent).await?;
                rename(&new, &vis).await?;
                sync_dir(&parent).await;
            }
        }
        let path = self.manifest_path(date);
        let json = serde_json::to_vec_pretty(manifest).map_err(|e| StoreError::Corrupt {
            location: path.display().to_string(),
            message: e.to_string(),
        })?;
        write_atomic(&path, &json).await?;
        remove_dir_all(staging).await
    }
}

#[async_trait]
impl Store for LocalStore {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    async fn acquire_lease(
        &self,
        date: NaiveDate,
        run: &RunId,
        ttl: chrono::Duration,
    ) -> Result<Lease, StoreError> {
        let path = self.lease_path(date);
        mkdir(path.parent().unwrap_or(&self.root)).await?;
        for _ in 0..5 {
            let now = Utc::now();
            let lease = Lease {
                date,
                run: run.clone(),
                since: now,
                expires: now + ttl,
                holder: Some(super::this_holder()),
            };
            let body = serde_json::to_vec(&lease).map_err(|e| StoreError::Corrupt {
                location: path.display().to_string(),
                message: e.to_string(),
            })?;
            if create_new_atomic(&path, &body).await? {
                self.sweep(date, run).await?;
                return Ok(lease);
            }
            let Some((seen, held)) = self.read_lease(date).await? else {
                continue; // released in between: try to create it again
            };
            match held {
                Some(held) if held.expires > now && !holder_is_dead(&held) => {
                    return Err(StoreError::LeaseHeld {
                        date,
                        holder: held.run.to_string(),
                        since: held.since.to_rfc3339(),
                        expires: held.expires.to_rfc3339(),
                    });
                }
                Some(_) => {}
                // Leases are created whole, so an unreadable one is damage, not a run caught
                // mid-write; still, it is only taken over once it is as old as a lease lasts.
                None => {
                    let age = tokio::fs::metadata(&path)
                        .await
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .and_then(|d| chrono::Duration::from_std(d).ok());
                    if age.is_none_or(|age| age < ttl) {
                        return Err(StoreError::LeaseHeld {
                            date,
                            holder: "unknown (unreadable lease file)".into(),
                            since: "unknown".into(),
                            expires: "unknown".into(),
                        });
                    }
                }
            }
            // Expired, its holder dead, or unreadable and old: take it over unless it changed.
            if self.take_over_lease(date, &seen, &body).await? {
                self.sweep(date, run).await?;
                return Ok(lease);
            }
        }
        Err(StoreError::LeaseLost {
            date,
            run: run.to_string(),
            reason: "the lease kept changing hands while taking it over".into(),
        })
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        let path = self.lease_path(lease.date);
        let run = lease.run.clone();
        // Read and remove under the key's lock: never the lease of a run that took over.
        under_key_lock(&path, move |path| {
            let held = match std::fs::read(path) {
                Ok(b) => serde_json::from_slice::<Lease>(&b).ok(),
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            };
            if held.is_some_and(|h| h.run == run) {
                match std::fs::remove_file(path) {
                    Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| StoreError::io("remove lease", path.display(), e))
    }

    async fn create_part(
        &self,
        lease: &Lease,
        table: &str,
        part: u32,
    ) -> Result<(Box<dyn Upload>, String), StoreError> {
        let rel = format!(
            "{table}/{}/part-{part:05}.parquet",
            Self::partition(lease.date)
        );
        let path = self.staging_dir(lease).join(&rel);
        if let Some(parent) = path.parent() {
            mkdir(parent).await?;
        }
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| StoreError::io("create", path.display(), e))?
            .into_std()
            .await;
        Ok((
            Box::new(LocalUpload {
                file: Some(file),
                path,
                bytes: 0,
            }),
            rel,
        ))
    }

    async fn publish(&self, lease: &Lease, manifest: &Manifest) -> Result<(), StoreError> {
        match self.read_lease(lease.date).await? {
            Some((_, Some(held))) if held.run == lease.run => {}
            other => {
                return Err(StoreError::LeaseLost {
                    date: lease.date,
                    run: lease.run.to_string(),
                    reason: match other {
                        Some((_, Some(h))) => format!("run {} took it over", h.run),
                        _ => "the lease file is gone".into(),
                    },
                })
            }
        }
        let staging = self.staging_dir(lease);
        mkdir(&staging).await?;
        let journal = serde_json::to_vec_pretty(manifest).map_err(|e| StoreError::Corrupt {
            location: staging.display().to_string(),
            message: e.to_string(),
        })?;
        write_atomic(&staging.join(JOURNAL), &journal).await?;
        self.roll_forward(&staging, manifest).await
    }

    async fn discard(&self, lease: &Lease) -> Result<(), StoreError> {
        let staging = self.staging_dir(lease);
        // A publish that wrote its journal has committed (tables may be half moved, the old
        // ones set aside in the staging): the next run of the day finishes it.
        if exists(&staging.join(JOURNAL)).await? {
            return Ok(());
        }
        remove_dir_all(&staging).await
    }

    async fn manifest(&self, date: NaiveDate) -> Result<Option<Manifest>, StoreError> {
        let path = self.manifest_path(date);
        match tokio::fs::read(&path).await {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| StoreError::Corrupt {
                    location: path.display().to_string(),
                    message: e.to_string(),
                }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("read", path.display(), e)),
        }
    }

    async fn put_raw(&self, lease: &Lease, name: &str, data: Bytes) -> Result<(), StoreError> {
        let dir = self
            .staging_dir(lease)
            .join(RAW)
            .join(Self::partition(lease.date));
        mkdir(&dir).await?;
        write_atomic(&dir.join(name), &data).await
    }
}

/// A part file being written. Writes are whole row groups (the Parquet writer buffers them),
/// so they go straight to a std file on the blocking pool: no copy, and no buffer kept per open
/// file (tokio's `File` keeps one of up to 2 MiB, for each of a day's 15 tables).
struct LocalUpload {
    /// `None` only while a write runs, or after one panicked.
    file: Option<std::fs::File>,
    path: PathBuf,
    bytes: u64,
}

impl LocalUpload {
    async fn with_file<T: Send + 'static>(
        &mut self,
        op: &'static str,
        f: impl FnOnce(&mut std::fs::File) -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let lost = || StoreError::io(op, self.path.display(), std::io::Error::other("file lost"));
        let mut file = self.file.take().ok_or_else(lost)?;
        let (file, r) = tokio::task::spawn_blocking(move || {
            let r = f(&mut file);
            (file, r)
        })
        .await
        .map_err(|_| lost())?;
        self.file = Some(file);
        r.map_err(|e| StoreError::io(op, self.path.display(), e))
    }
}

#[async_trait]
impl Upload for LocalUpload {
    async fn write(&mut self, data: Bytes) -> Result<(), StoreError> {
        use std::io::Write;
        self.bytes += data.len() as u64;
        self.with_file("write", move |f| f.write_all(&data)).await
    }

    async fn complete(mut self: Box<Self>) -> Result<u64, StoreError> {
        // Durable before the publish renames make it visible.
        self.with_file("sync", |f| f.sync_all()).await?;
        Ok(self.bytes)
    }

    async fn abort(self: Box<Self>) -> Result<(), StoreError> {
        drop(self.file);
        match tokio::fs::remove_file(&self.path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("remove", self.path.display(), e)),
        }
    }
}

/// True when the lease was taken by a process of this host that no longer runs (killed).
fn holder_is_dead(lease: &Lease) -> bool {
    let Some(holder) = &lease.holder else {
        return false;
    };
    let mine = super::this_holder();
    let (Some((host, pid)), Some((my_host, _))) = (holder.rsplit_once('/'), mine.rsplit_once('/'))
    else {
        return false;
    };
    host == my_host
        && pid.parse::<u32>().is_ok_and(|pid| {
            pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
        })
}

async fn exists(p: &Path) -> Result<bool, StoreError> {
    tokio::fs::try_exists(p)
        .await
        .map_err(|e| StoreError::io("stat", p.display(), e))
}

async fn mkdir(p: &Path) -> Result<(), StoreError> {
    tokio::fs::create_dir_all(p)
        .await
        .map_err(|e| StoreError::io("create folder", p.display(), e))
}

async fn rename(from: &Path, to: &Path) -> Result<(), StoreError> {
    tokio::fs::rename(from, to).await.map_err(|e| {
        StoreError::io(
            "rename",
            format!("{} -> {}", from.display(), to.display()),
            e,
        )
    })
}

async fn remove_dir_all(p: &Path) -> Result<(), StoreError> {
    match tokio::fs::remove_dir_all(p).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io("remove folder", p.display(), e)),
    }
}

/// Best effort: makes renames in `dir` durable (not all file systems allow it).
async fn sync_dir(dir: &Path) {
    if let Ok(f) = tokio::fs::File::open(dir).await {
        let _ = f.sync_all().await;
    }
}

/// A temporary name beside `path` (same folder, so a rename or link stays on one file system).
fn temp_beside(path: &Path) -> PathBuf {
    path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()))
}

fn write_synced(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Put-if-absent: creates `path` holding `data`, or returns false if it exists. The content is
/// written to a temporary file first and hard-linked into place (`link` never replaces), so no
/// one ever sees the file empty or half written.
async fn create_new_atomic(path: &Path, data: &[u8]) -> Result<bool, StoreError> {
    let target = path.to_path_buf();
    let data = data.to_vec();
    tokio::task::spawn_blocking(move || {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = temp_beside(&target);
        let linked = write_synced(&tmp, &data).and_then(|()| std::fs::hard_link(&tmp, &target));
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))
    .and_then(|r| r)
    .map_err(|e| StoreError::io("create", path.display(), e))
}

/// Runs a read-compare-write of `path` while holding an exclusive lock on `path.lock`, so two
/// processes' conditional updates of one key are serialised (put-if-absent needs no lock: it
/// is one `link`).
async fn under_key_lock<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce(&Path) -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.with_extension("lock"))?;
        lock.lock()?;
        let r = f(&path);
        let _ = lock.unlock();
        r
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))?
}

/// Writes `data` to `path` via a temporary file and a rename: readers see all or nothing.
async fn write_atomic(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    if let Some(parent) = path.parent() {
        mkdir(parent).await?;
    }
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    let mut f = tokio::fs::File::create(&tmp)
        .await
        .map_err(|e| StoreError::io("create", tmp.display(), e))?;
    f.write_all(data)
        .await
        .map_err(|e| StoreError::io("write", tmp.display(), e))?;
    f.sync_all()
        .await
        .map_err(|e| StoreError::io("sync", tmp.display(), e))?;
    drop(f);
    rename(&tmp, path).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::ManifestFile;
    use std::collections::BTreeMap;

    fn date() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 21).unwrap()
    }

    fn manifest(lease: &Lease, files: &[(&str, &str)]) -> Manifest {
        Manifest {
            date: lease.date,
            run_id: lease.run.clone(),
            interval: "x".into(),
            partial_day: false,
            schema_version: "1".into(),
            tool_version: "0".into(),
            started: Utc::now(),
            finished: Utc::now(),
            type_mismatches: 0,
            conversations: 1,
            rows: [("a".to_string(), 1u64), ("b".to_string(), 1u64)]
                .into_iter()
                .collect::<BTreeMap<_, _>>(),
            files: files
                .iter()
                .map(|(t, k)| ManifestFile {
                    table: t.to_string(),
                    key: k.to_string(),
                    rows: 1,
                    bytes: 1,
                    sha256: String::new(),
                })
                .collect(),
        }
    }

    async fn write_run(store: &LocalStore, tables: &[&str], body: &str) -> (Lease, Manifest) {
        let run = RunId::new(Utc::now());
        let lease = store
            .acquire_lease(date(), &run, chrono::Duration::minutes(5))
            .await
            .unwrap();
        let mut files = Vec::new();
        for t in tables {
            let (mut up, key) = store.create_part(&lease, t, 0).await.unwrap();
            up.write(Bytes::from(body.to_string())).await.unwrap();
            up.complete().await.unwrap();
            files.push((t.to_string(), key));
        }
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let m = manifest(&lease, &refs);
        (lease, m)
    }

    fn read(store: &LocalStore, table: &str) -> Option<String> {
        let p = store.visible_dir(table, date()).join("part-00000.parquet");
        std::fs::read_to_string(p).ok()
    }

    #[tokio::test]
    async fn publish_replaces_every_table_and_drops_tables_without_new_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        let (lease, m) = write_run(&store, &["a", "b"], "one").await;
        store.publish(&lease, &m).await.unwrap();
        store.release_lease(&lease).await.unwrap();
        assert_eq!(read(&store, "a").as_deref(), Some("one"));
        assert_eq!(read(&store, "b").as_deref(), Some("one"));

        // The second run has rows for `a` only: `b`'s old partition must not survive.
        let (lease, m) = write_run(&store, &["a"], "two").await;
        store.publish(&lease, &m).await.unwrap();
        assert_eq!(read(&store, "a").as_deref(), Some("two"));
        assert_eq!(read(&store, "b"), None);
        assert_eq!(
            store.manifest(date()).await.unwrap().unwrap().run_id,
            lease.run
        );
        assert!(!store
            .root()
            .join("_staging/conversation_date=2026-11-21")
            .join(format!("run={}", lease.run))
            .exists());
    }

    #[tokio::test]
    async fn unfinished_run_leaves_previous_data_and_is_swept() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        let (lease, m) = write_run(&store, &["a"], "good").await;
        store.publish(&lease, &m).await.unwrap();
        store.release_lease(&lease).await.unwrap();

        // A run that dies after writing parts: its lease expires, nothing is published.
        let dead = RunId::new(Utc::now());
        let l2 = store
            .acquire_lease(date(), &dead, chrono::Duration::milliseconds(1))
            .await
            .unwrap();
        let (mut up, _) = store.create_part(&l2, "a", 0).await.unwrap();
        up.write(Bytes::from_static(b"partial")).await.unwrap();
        up.complete().await.unwrap();
        assert_eq!(read(&store, "a").as_deref(), Some("good"));
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;

        // The next run takes the expired lease over and sweeps the dead run's staging.
        let (lease3, _) = write_run(&store, &[], "").await;
        assert!(!store.staging_dir(&l2).exists());
        assert_eq!(read(&store, "a").as_deref(), Some("good"));
        store.release_lease(&lease3).await.unwrap();
    }

    #[tokio::test]
    async fn interrupted_publish_is_rolled_forward_by_the_next_run() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        let (lease, m) = write_run(&store, &["a", "b"], "old").await;
        store.publish(&lease, &m).await.unwrap();
        store.release_lease(&lease).await.unwrap();

        let (lease, m) = write_run(&store, &["a", "b"], "new").await;
        // Simulate a crash right after the journal and the first table's rename.
        let staging = store.staging_dir(&lease);
        write_atomic(&staging.join(JOURNAL), &serde_json::to_vec(&m).unwrap())
            .await
            .unwrap();
        let vis = store.visible_dir("a", date());
        std::fs::create_dir_all(staging.join("_old")).unwrap();
        std::fs::rename(&vis, staging.join("_old/a")).unwrap();
        std::fs::rename(staging.join("a/conversation_date=2026-11-21"), &vis).unwrap();
        assert_eq!(read(&store, "a").as_deref(), Some("new"));
        assert_eq!(read(&store, "b").as_deref(), Some("old"));
        // A publish that failed here is discarded by its run: past the journal, that must keep
        // the staging (the old partition set aside, the tables not moved yet).
        store.discard(&lease).await.unwrap();
        assert!(staging.join(JOURNAL).exists());
        assert!(staging.join("_old/a").exists());
        // The crashed run never released its lease; it expires.
        let expired = Lease {
            expires: Utc::now() - chrono::Duration::seconds(1),
            ..lease.clone()
        };
        std::fs::write(
            store.lease_path(date()),
            serde_json::to_vec(&expired).unwrap(),
        )
        .unwrap();

        let next = RunId::new(Utc::now());
        let l = store
            .acquire_lease(date(), &next, chrono::Duration::minutes(1))
            .await
            .unwrap();
        assert_eq!(read(&store, "a").as_deref(), Some("new"));
        assert_eq!(read(&store, "b").as_deref(), Some("new"));
        assert_eq!(
            store.manifest(date()).await.unwrap().unwrap().run_id,
            lease.run
        );
        assert!(!staging.exists());
        store.release_lease(&l).await.unwrap();
    }

    #[tokio::test]
    async fn a_live_lease_is_refused_with_holder_and_since() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        let first = RunId::new(Utc::now());
        let l = store
            .acquire_lease(date(), &first, chrono::Duration::minutes(5))
            .await
            .unwrap();
        let err = store
            .acquire_lease(
                date(),
                &RunId::new(Utc::now()),
                chrono::Duration::minutes(5),
            )
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("day 2026-11-21 is being written by run"),
            "{msg}"
        );
        assert!(msg.contains(&first.to_string()), "{msg}");
        assert!(err.is_transient());
        store.release_lease(&l).await.unwrap();
        // Released: the next run gets it.
        store
            .acquire_lease(
                date(),
                &RunId::new(Utc::now()),
                chrono::Duration::minutes(5),
            )
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn an_unreadable_lease_is_taken_over_only_once_old() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        let path = store.lease_path(date());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"").unwrap();
        let err = store
            .acquire_lease(
                date(),
                &RunId::new(Utc::now()),
                chrono::Duration::minutes(5),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::LeaseHeld { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"");
        // Older than the lease lasts: damage, taken over.
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(600);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let run = RunId::new(Utc::now());
        let lease = store
            .acquire_lease(date(), &run, chrono::Duration::minutes(5))
            .await
            .unwrap();
        let held: Lease = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(held.run, run);
        store.release_lease(&lease).await.unwrap();
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn releasing_never_removes_the_lease_of_the_run_that_took_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        let old = store
            .acquire_lease(
                date(),
                &RunId("old".into()),
                chrono::Duration::milliseconds(1),
            )
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let new = store
            .acquire_lease(date(), &RunId("new".into()), chrono::Duration::minutes(5))
            .await
            .unwrap();
        store.release_lease(&old).await.unwrap();
        let held: Lease =
            serde_json::from_slice(&std::fs::read(store.lease_path(date())).unwrap()).unwrap();
        assert_eq!(held.run, new.run);
    }

    #[tokio::test]
    async fn a_lease_of_a_dead_local_process_is_taken_over_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        let host = crate::sink::this_holder();
        let host = host.rsplit_once('/').unwrap().0;
        // PIDs are below 2^22 on Linux: this one cannot be running.
        let dead = Lease {
            date: date(),
            run: RunId("dead".into()),
            since: Utc::now(),
            expires: Utc::now() + chrono::Duration::hours(1),
            holder: Some(format!("{host}/4999999")),
        };
        std::fs::create_dir_all(store.lease_path(date()).parent().unwrap()).unwrap();
        std::fs::write(store.lease_path(date()), serde_json::to_vec(&dead).unwrap()).unwrap();
        store
            .acquire_lease(
                date(),
                &RunId::new(Utc::now()),
                chrono::Duration::minutes(5),
            )
            .await
            .unwrap();
    }
}
