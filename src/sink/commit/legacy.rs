//! **Upgrade** from the layout of the release before the commit protocol (`LocalStore` and
//! `S3Store`, removed in c61b855), so that the first run of a day written by that release
//! replaces the old run exactly instead of publishing beside it.
//!
//! The old release wrote, per day `D` (conversations only, keys relative to the root):
//! ```text
//! _manifests/conversation_date=D.json            the day's visible run (its manifest)
//! _manifests/conversation_date=D/run=R.json      S3: every published run's manifest
//! _leases/conversation_date=D.json               {date, run, since, expires, holder}
//! _leases/conversation_date=D.lock               local: the lease's lock file
//! _staging/conversation_date=D/run=R/…           a run's parts until published; local: with
//!                                                _PUBLISH.json (a publish in flight) and _old/
//! {table}/conversation_date=D/part-NNNNN.parquet       local: the visible run's parts
//! {table}/conversation_date=D/part-R-NNNNN.parquet     S3: the visible run's parts
//! {table}/conversation_date=D/run=R/part-NNNNN.parquet S3 catalog mode: a run's own folder
//! _raw/conversation_date=D/[run=R/]pages-NNNNN.ndjson.gz  raw archive (S3: under run=R/, though
//!                                                the manifest names the key without it)
//! ```
//! The new layout keys these by dataset (`_manifests/conversations/…`), so a partition the new
//! code has never written has no new pointer. Only then (the first new run of a day, under its
//! new lease) are the old records read, costing two listings and one read:
//! 1. An old lease still live (an old-release process writing the day) refuses the run, like
//!    any held lease.
//! 2. An old publish in flight is finished the old way: local, a `_PUBLISH.json` journal
//!    (its run's staged table folders are renamed into place, the previous ones set aside);
//!    S3, the pointer's run still has staged parts (they are copied in, then every other old
//!    run's files, as their manifests list them, are deleted); catalog mode, the pointer's run
//!    is registered again for every table (idempotent; an old publish may have stopped between
//!    tables).
//! 3. The old visible run's manifest becomes the new pointer (its raw keys corrected to where
//!    the old S3 code wrote them), so the new publish treats it as the previous run and sweeps
//!    exactly the files it lists: a file no old record names (another tool's) survives.
//! 4. The old records are removed: staging and open uploads, run manifests, pointer, lease.
//!
//! Each step is idempotent and the new pointer is written after the old staging is gone and
//! before the old pointer is removed, so a crash anywhere is finished by the next run; a crash
//! between steps 3 and 4 leaves only the small old pointer and lease objects behind.

use std::collections::BTreeSet;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{corrupt, CommitStore, PartitionKey, Visibility, LEASES, MANIFESTS, RAW, STAGING};
// The old release wrote only this dataset.
use crate::datasets::conversations::DATASET as OLD_DATASET;
use crate::sink::storage::PutMode;
use crate::sink::{Manifest, StoreError};

/// The old release's lease object (its `Lease`).
#[derive(Deserialize)]
struct OldLease {
    run: String,
    since: DateTime<Utc>,
    expires: DateTime<Utc>,
    #[serde(default)]
    holder: Option<String>,
}

const JOURNAL: &str = "_PUBLISH.json";

impl CommitStore {
    /// Finds a partition written by the old layout and makes its visible run this layout's
    /// previous run; returns that run's manifest (now the pointer). See the module docs.
    pub(super) async fn upgrade_legacy(
        &self,
        key: &PartitionKey,
    ) -> Result<Option<Manifest>, StoreError> {
        if key.dataset != OLD_DATASET.name || key.column != OLD_DATASET.partitioning.column() {
            return Ok(None);
        }
        let part = key.folder();
        let old_pointer = format!("{MANIFESTS}/{part}.json");
        let old_runs = format!("{MANIFESTS}/{part}/run=");
        let old_staging = format!("{STAGING}/{part}/");
        let old_lease = format!("{LEASES}/{part}.json");

        let manifests: Vec<String> = self
            .storage
            .list(&format!("{MANIFESTS}/{part}"))
            .await?
            .into_iter()
            .map(|m| m.key)
            .filter(|k| *k == old_pointer || k.starts_with(&old_runs))
            .collect();
        let staged: Vec<String> = self
            .storage
            .list(&old_staging)
            .await?
            .into_iter()
            .map(|m| m.key)
            .collect();
        let lease = self.storage.get(&old_lease).await?;
        if manifests.is_empty() && staged.is_empty() && lease.is_none() {
            return Ok(None);
        }

        // 1. An old-release run that is alive holds the day.
        if let Some(old) = lease.and_then(|(b, _)| serde_json::from_slice::<OldLease>(&b).ok()) {
            let dead = old.holder.as_deref().is_some_and(super::holder_is_dead);
            if old.expires > Utc::now() && !dead {
                return Err(StoreError::LeaseHeld {
                    date: key.date().unwrap_or(chrono::NaiveDate::MIN),
                    holder: format!("{} (an older release of this tool)", old.run),
                    since: old.since.to_rfc3339(),
                    expires: old.expires.to_rfc3339(),
                });
            }
        }
        tracing::warn!(partition = %key.id(), "upgrading a partition written by the previous release's layout");

        // The old visible run: a local journal's (a publish in flight), else the pointer's.
        let journal = staged
            .iter()
            .filter(|k| k.ends_with(&format!("/{JOURNAL}")))
            .max()
            .cloned();
        let pointer = if manifests.contains(&old_pointer) {
            self.get_manifest(&old_pointer).await?
        } else {
            None
        };
        let mut visible = match &journal {
            Some(j) => self.get_manifest(j).await?,
            None => pointer.clone(),
        };

        // 2. Finish an old publish in flight.
        if let Some(m) = &visible {
            let run_staging = format!("{old_staging}run={}/", m.run_id.0);
            match &self.visibility {
                Visibility::SwapFolders if journal.is_some() => {
                    let mut ours: BTreeSet<String> =
                        m.files.iter().map(|f| f.key.clone()).collect();
                    ours.extend(
                        pointer
                            .iter()
                            .flat_map(|p| p.files.iter().map(|f| f.key.clone())),
                    );
                    self.finish_old_swap(key, m, &run_staging, &ours).await?;
                    // From here the old records say the journal's run is visible.
                    self.put_json(&old_pointer, m).await?;
                }
                Visibility::CopyParts if staged.iter().any(|k| k.starts_with(&run_staging)) => {
                    for f in m.files.iter().filter(|f| f.table != RAW) {
                        let from = format!("{run_staging}{}", f.key);
                        if staged.contains(&from) {
                            self.storage.copy(&from, &f.key).await?;
                        } else if self.storage.head(&f.key).await?.is_none() {
                            return Err(corrupt(
                                self.storage.location(&f.key),
                                "a part of the previous release's visible run is neither staged nor published",
                            ));
                        }
                    }
                    let keep: BTreeSet<&str> = m.files.iter().map(|f| f.key.as_str()).collect();
                    let this_run = format!("{old_runs}{}.json", m.run_id.0);
                    for k in manifests
                        .iter()
                        .filter(|k| k.starts_with(&old_runs) && **k != this_run)
                    {
                        let Some(other) = self.get_manifest(k).await? else {
                            continue;
                        };
                        for f in other
                            .files
                            .iter()
                            .filter(|f| !keep.contains(f.key.as_str()))
                        {
                            if f.table != RAW {
                                self.storage.delete(&f.key, None).await?;
                            }
                        }
                    }
                }
                Visibility::Catalog { glue, s3 } => {
                    let date = key
                        .date()
                        .ok_or_else(|| corrupt(key.id(), "catalog mode needs a date partition"))?;
                    let run = &m.run_id.0;
                    glue.register(&OLD_DATASET, date, |table| {
                        format!(
                            "s3://{}/{}/",
                            s3.bucket(),
                            s3.full_key(&format!("{table}/{part}/run={run}"))
                        )
                    })
                    .await?;
                }
                _ => {}
            }
        }

        // 3. The old visible run, as this layout's manifest; raw keys where the files are.
        if let Some(m) = &mut visible {
            if !matches!(self.visibility, Visibility::SwapFolders) {
                let run_dir = format!("run={}/", m.run_id.0);
                for f in m.files.iter_mut().filter(|f| f.table == RAW) {
                    if !f.key.contains("/run=") {
                        if let Some((dir, name)) = f.key.rsplit_once('/') {
                            f.key = format!("{dir}/{run_dir}{name}");
                        }
                    }
                }
            }
            self.put_json(&key.run_manifest_key(&m.run_id.0), m).await?;
        }
        // 4. The old staging (dead runs' parts and uploads, what was set aside) and the other
        // old run manifests; then the pointer switches layout; then the old records go.
        if !staged.is_empty() {
            self.delete_prefix(&old_staging).await?;
        } else {
            self.storage.abort_uploads(&old_staging).await?;
        }
        let this_run = visible
            .as_ref()
            .map(|m| format!("{old_runs}{}.json", m.run_id.0));
        for k in manifests
            .iter()
            .filter(|k| k.starts_with(&old_runs) && Some(*k) != this_run.as_ref())
        {
            self.storage.delete(k, None).await?;
        }
        if let Some(m) = &visible {
            self.put_json(&key.pointer_key(), m).await?;
        }
        for k in manifests.iter().filter(|k| !k.starts_with(&old_runs)) {
            self.storage.delete(k, None).await?;
        }
        if let Some(k) = this_run.filter(|k| manifests.contains(k)) {
            self.storage.delete(&k, None).await?;
        }
        self.storage.delete(&old_lease, None).await?;
        if matches!(self.visibility, Visibility::SwapFolders) {
            self.storage
                .delete(&format!("{LEASES}/{part}.lock"), None)
                .await?;
        }
        Ok(visible)
    }

    /// The old local publish, over the storage trait: each table's staged partition folder is
    /// renamed into place after the visible one is set aside (`_old/{table}` in the run's
    /// staging); a table the run has no rows for is set aside too. Files set aside that no old
    /// record names (another tool's) go back.
    async fn finish_old_swap(
        &self,
        key: &PartitionKey,
        m: &Manifest,
        run_staging: &str,
        ours: &BTreeSet<String>,
    ) -> Result<(), StoreError> {
        let part = key.folder();
        let ours: BTreeSet<&str> = ours.iter().map(String::as_str).collect();
        let mut tables: BTreeSet<&str> = OLD_DATASET.tables.iter().map(|t| t.name()).collect();
        tables.extend(m.files.iter().map(|f| f.table.as_str()));
        tables.extend(m.rows.keys().map(String::as_str));
        tables.insert(RAW);
        for table in tables {
            let visible = format!("{table}/{part}");
            let staged = format!("{run_staging}{visible}");
            let aside = format!("{run_staging}_old/{table}");
            let new_exists = !self.storage.list(&format!("{staged}/")).await?.is_empty();
            let has_data = m.files.iter().any(|f| f.table == table);
            let visible_exists = !self.storage.list(&format!("{visible}/")).await?.is_empty();
            if visible_exists && (new_exists || !has_data) {
                self.restore_foreign(&aside, &visible, &ours).await?;
                self.delete_prefix(&format!("{aside}/")).await?;
                self.storage.rename_folder(&visible, &aside).await?;
            }
            if new_exists {
                self.storage.rename_folder(&staged, &visible).await?;
            }
            self.restore_foreign(&aside, &visible, &ours).await?;
        }
        Ok(())
    }

    async fn put_json(&self, k: &str, m: &Manifest) -> Result<(), StoreError> {
        let body = serde_json::to_vec_pretty(m).map_err(|e| corrupt(k.to_string(), e))?;
        self.storage
            .put(k, Bytes::from(body), PutMode::Overwrite)
            .await
            .map(|_| ())
    }
}
