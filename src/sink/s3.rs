//! The S3 store.
//!
//! Layout under `s3://bucket/prefix/`:
//! ```text
//! {table}/conversation_date=D/part-R-00000.parquet      the visible run's parts
//! _staging/conversation_date=D/run=R/{table}/…           a run's parts while it runs (multipart uploads)
//! _raw/conversation_date=D/run=R/pages-00001.ndjson.gz   optional raw page archive
//! _manifests/conversation_date=D/run=R.json              the run's manifest, written when it is complete
//! _manifests/conversation_date=D.json                    the day's visible run (copy of its manifest)
//! _leases/conversation_date=D.json                       who is writing day D, until when
//! ```
//! A run's parts are uploaded under `_staging/` (readers never look there). Publishing writes
//! the run's manifest, then the day's pointer (the commit point), then copies the staged parts
//! into the partitions (server-side copies), then deletes the other runs' objects of the day and
//! the staging. What a reader that lists a partition (Athena without a catalog switch) sees:
//! before and after a run, exactly one run's complete files; never a half-written file (an
//! upload is invisible until complete); during the seconds of a publish, old and new files side
//! by side. A run that fails or is killed before its pointer is written changes nothing
//! visible (a failed run removes its staging and its manifest, even when publishing is what
//! failed; a killed run's are swept by the next run); one killed after it is finished by the next run of the day, which first rolls the
//! pointer's run forward, then sweeps every other run's objects and aborts their uploads (it
//! holds the lease, so they are dead). The bucket's lifecycle rule aborts forgotten uploads too.
//!
//! The lease is an object written with `If-None-Match: *` (only one writer can create it); a
//! lease past its expiry is taken over with `If-Match: <etag>` (only one taker wins).
//!
//! ## With a Glue catalog (`--glue-database`, `catalog` mode)
//! ```text
//! {table}/conversation_date=D/run=R/part-00000.parquet   a run's parts, written in place
//! ```
//! Athena reads only the location registered for the day in Glue, so a run writes its parts
//! straight into its own folder (no staging, no copies) and publishing points every table's
//! partition at that folder once the pointer is written (see [`super::catalog`]). Superseded
//! runs are not deleted, since queries planned before the switch still read them: their objects
//! are tagged `genesys-parquet=superseded`, which the bucket's lifecycle rule expires. Runs that
//! never reached their pointer are deleted by the next run, as without a catalog. A reader that
//! lists the folders instead of asking the catalog sees every run kept: it should read the files
//! named by the day's pointer manifest.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier, Tag, Tagging,
};
use bytes::{Bytes, BytesMut};
use chrono::{NaiveDate, Utc};

use super::catalog::GlueCatalog;
use super::{Lease, Manifest, RunId, Store, StoreError, Upload};

/// Multipart parts are this big (S3's minimum is 5 MiB, except the last).
const PART_BYTES: usize = 8 << 20;

/// The tag put on a superseded run's objects in `catalog` mode (the lifecycle rule's filter).
pub const SUPERSEDED_TAG: (&str, &str) = ("genesys-parquet", "superseded");

/// Writes tables to an S3 bucket (or an S3-compatible server).
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    catalog: Option<std::sync::Arc<GlueCatalog>>,
}

fn partition(date: NaiveDate) -> String {
    format!("conversation_date={date}")
}

/// Maps an SDK error to a [`StoreError`] naming the operation, bucket, key and cause.
pub(crate) fn s3_error<E>(
    op: &'static str,
    bucket: &str,
    key: &str,
    e: SdkError<E, HttpResponse>,
) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = e.raw_response().map(|r| r.status().as_u16());
    let code = e.code().map(str::to_string);
    let (message, transient) = match (&e, code.as_deref()) {
        (_, Some("NoSuchBucket")) => (format!("bucket {bucket} does not exist"), false),
        (_, Some("AccessDenied")) => (
            "AccessDenied: the credentials may not do this on this key (check the role's policy)"
                .to_string(),
            false,
        ),
        (_, Some(c @ ("SlowDown" | "InternalError" | "ServiceUnavailable" | "RequestTimeout"))) => {
            (
                format!("{c}: {}", e.message().unwrap_or("server busy")),
                true,
            )
        }
        (SdkError::TimeoutError(_) | SdkError::DispatchFailure(_), _) => (
            format!(
                "cannot reach S3: {}",
                aws_sdk_s3::error::DisplayErrorContext(&e)
            ),
            true,
        ),
        (_, Some(c)) => (
            format!("{c}: {}", e.message().unwrap_or("")),
            status.is_some_and(|s| s >= 500),
        ),
        _ => (
            format!("{}", aws_sdk_s3::error::DisplayErrorContext(&e)),
            status.is_some_and(|s| s >= 500),
        ),
    };
    StoreError::S3 {
        op,
        bucket: bucket.to_string(),
        key: key.to_string(),
        message,
        transient,
    }
}

pub(crate) fn is_precondition_failed<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    matches!(
        e.code(),
        Some("PreconditionFailed" | "ConditionalRequestConflict")
    )
}

pub(crate) fn is_not_found<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    matches!(e.code(), Some("NoSuchKey" | "NotFound"))
}

/// The run an object belongs to: a `run=R` folder, or `part-R-NNNNN.parquet`.
fn run_of_key(key: &str) -> Option<String> {
    if let Some(run) = key.split('/').find_map(|seg| seg.strip_prefix("run=")) {
        return Some(run.to_string());
    }
    let name = key.rsplit('/').next()?;
    let rest = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let (run, _) = rest.rsplit_once('-')?;
    Some(run.to_string())
}

/// `bucket/key` for CopySource, percent-encoded.
fn copy_source(bucket: &str, key: &str) -> String {
    let mut out = format!("{bucket}/");
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl S3Store {
    /// Credentials and region from the standard AWS chain (the Lambda's role unchanged); with an
    /// endpoint (an S3-compatible server), path-style addressing.
    pub async fn from_env(
        bucket: &str,
        prefix: &str,
        endpoint: Option<&str>,
    ) -> Result<Self, StoreError> {
        if bucket.is_empty() {
            return Err(StoreError::Corrupt {
                location: "s3://".into(),
                message: "no bucket name".into(),
            });
        }
        let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let mut b = aws_sdk_s3::config::Builder::from(&shared)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(5)
                    .with_initial_backoff(Duration::from_millis(200)),
            )
            // No default checksums: a multipart upload must use one consistently or not at all
            // (see TOOLING.md); the manifest carries each file's SHA-256 instead.
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            );
        if shared.region().is_none() {
            b = b.region(aws_sdk_s3::config::Region::new("us-east-1"));
        }
        if let Some(ep) = endpoint {
            b = b.endpoint_url(ep).force_path_style(true);
        }
        Ok(Self::new(
            aws_sdk_s3::Client::from_conf(b.build()),
            bucket,
            prefix,
        ))
    }

    pub fn new(client: aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Self {
        Self {
            client,
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            catalog: None,
        }
    }

    /// Publishes by registering partitions in `catalog` (see the module docs).
    pub fn with_catalog(mut self, catalog: GlueCatalog) -> Self {
        self.catalog = Some(std::sync::Arc::new(catalog));
        self
    }

    /// The folder of a run's parts of `table` in `catalog` mode, relative to the root.
    fn run_folder_rel(table: &str, date: NaiveDate, run: &str) -> String {
        format!("{table}/{}/run={run}/", partition(date))
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The full object key of a key relative to the root.
    pub fn key(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    /// Where a run's part waits until the run is published.
    fn staging_rel(&self, date: NaiveDate, run: &str, rel: &str) -> String {
        format!("_staging/{}/run={run}/{rel}", partition(date))
    }

    fn lease_key(&self, date: NaiveDate) -> String {
        self.key(&format!("_leases/{}.json", partition(date)))
    }

    /// The run's own manifest, written first when it publishes.
    fn run_manifest_key(&self, lease: &Lease) -> String {
        self.key(&format!(
            "_manifests/{}/run={}.json",
            partition(lease.date),
            lease.run
        ))
    }

    fn pointer_key(&self, date: NaiveDate) -> String {
        self.key(&format!("_manifests/{}.json", partition(date)))
    }

    async fn get(&self, key: &str) -> Result<Option<(Bytes, Option<String>)>, StoreError> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) => {
                let etag = o.e_tag().map(str::to_string);
                let body = o.body.collect().await.map_err(|e| StoreError::S3 {
                    op: "read",
                    bucket: self.bucket.clone(),
                    key: key.to_string(),
                    message: e.to_string(),
                    transient: true,
                })?;
                Ok(Some((body.into_bytes(), etag)))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(s3_error("read", &self.bucket, key, e)),
        }
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| s3_error("write", &self.bucket, key, e))?;
        Ok(())
    }

    /// Every key under `prefix` (paged).
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| s3_error("list", &self.bucket, prefix, e))?;
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
            token = out.next_continuation_token().map(str::to_string);
            if token.is_none() {
                return Ok(keys);
            }
        }
    }

    async fn delete_keys(&self, keys: Vec<String>) -> Result<(), StoreError> {
        for chunk in keys.chunks(1000) {
            let ids: Vec<ObjectIdentifier> = chunk
                .iter()
                .filter_map(|k| ObjectIdentifier::builder().key(k).build().ok())
                .collect();
            let delete = Delete::builder()
                .set_objects(Some(ids))
                .quiet(true)
                .build()
                .map_err(|e| StoreError::S3 {
                    op: "delete",
                    bucket: self.bucket.clone(),
                    key: chunk[0].clone(),
                    message: e.to_string(),
                    transient: false,
                })?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| s3_error("delete", &self.bucket, &chunk[0], e))?;
            if let Some(err) = out.errors().first() {
                return Err(StoreError::S3 {
                    op: "delete",
                    bucket: self.bucket.clone(),
                    key: err.key().unwrap_or("").to_string(),
                    message: err.message().unwrap_or("delete failed").to_string(),
                    transient: true,
                });
            }
        }
        Ok(())
    }

    /// Every object of the day (all tables and the raw archive), with the run it belongs to.
    async fn day_objects(&self, date: NaiveDate) -> Result<Vec<(String, String)>, StoreError> {
        let part = partition(date);
        // Tables are the top-level folders; list them once, then each table's day.
        let root = self.key("");
        let mut out = Vec::new();
        let mut token = None;
        let mut tables = Vec::new();
        loop {
            let o = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&root)
                .delimiter("/")
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| s3_error("list", &self.bucket, &root, e))?;
            tables.extend(
                o.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(str::to_string)),
            );
            token = o.next_continuation_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        for t in tables {
            if t.ends_with("_manifests/") || t.ends_with("_leases/") {
                continue;
            }
            for key in self.list(&format!("{t}{part}/")).await? {
                if let Some(run) = run_of_key(&key) {
                    out.push((key, run));
                }
            }
        }
        Ok(out)
    }

    /// Deletes the day's objects of every run except `keep`, and aborts their uploads.
    async fn remove_runs_except(&self, date: NaiveDate, keep: &[&str]) -> Result<(), StoreError> {
        self.remove_runs(date, |run| !keep.contains(&run)).await
    }

    /// Deletes the day's objects of the runs `doomed` picks, and aborts their uploads.
    async fn remove_runs(
        &self,
        date: NaiveDate,
        doomed: impl Fn(&str) -> bool,
    ) -> Result<(), StoreError> {
        let keys: Vec<String> = self
            .day_objects(date)
            .await?
            .into_iter()
            .filter(|(_, run)| doomed(run))
            .map(|(k, _)| k)
            .collect();
        self.delete_keys(keys).await?;
        self.abort_uploads(date, doomed).await
    }

    /// Aborts unfinished multipart uploads of the day's runs that `doomed` picks.
    async fn abort_uploads(
        &self,
        date: NaiveDate,
        doomed: impl Fn(&str) -> bool,
    ) -> Result<(), StoreError> {
        let part = format!("/{}/run=", partition(date));
        let prefix = self.key("");
        let out = self
            .client
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .prefix(&prefix)
            .send()
            .await
            .map_err(|e| s3_error("list uploads", &self.bucket, &prefix, e))?;
        for u in out.uploads() {
            let (Some(key), Some(id)) = (u.key(), u.upload_id()) else {
                continue;
            };
            let Some(rest) = key.split(&part).nth(1) else {
                continue;
            };
            let run = rest.split('/').next().unwrap_or("");
            if !doomed(run) {
                continue;
            }
            self.client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(id)
                .send()
                .await
                .map_err(|e| s3_error("abort upload", &self.bucket, key, e))?;
        }
        Ok(())
    }

    /// Copies the published run's staged parts into the partitions, then deletes every other
    /// run's objects of the day and the run's staging. Idempotent: it also finishes a publish
    /// that a crash interrupted.
    async fn roll_forward(&self, manifest: &Manifest) -> Result<(), StoreError> {
        let date = manifest.date;
        let run = manifest.run_id.0.as_str();
        let staged: std::collections::HashSet<String> = self
            .list(&self.key(&format!("_staging/{}/run={run}/", partition(date))))
            .await?
            .into_iter()
            .collect();
        for f in manifest
            .files
            .iter()
            .filter(|f| f.table != super::RAW_TABLE)
        {
            let from = self.key(&self.staging_rel(date, run, &f.key));
            if !staged.contains(&from) {
                // Copied before a crash; the staged copy is already gone.
                continue;
            }
            let to = self.key(&f.key);
            self.client
                .copy_object()
                .bucket(&self.bucket)
                .copy_source(copy_source(&self.bucket, &from))
                .key(&to)
                .send()
                .await
                .map_err(|e| s3_error("publish (copy)", &self.bucket, &to, e))?;
        }
        match &self.catalog {
            None => self.remove_runs_except(date, &[run]).await?,
            Some(catalog) => {
                catalog
                    .register(date, |table| {
                        let rel = Self::run_folder_rel(table, date, run);
                        format!("s3://{}/{}", self.bucket, self.key(&rel))
                    })
                    .await?;
                self.supersede_runs_except(date, run).await?;
            }
        }
        self.delete_keys(staged.into_iter().collect()).await
    }

    /// Fails unless `lease` still holds the day: a run that outlived its lease must not publish
    /// over the run that took the day over.
    async fn check_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        let key = self.lease_key(lease.date);
        let held: Option<Lease> = match self.get(&key).await? {
            Some((body, _)) => serde_json::from_slice(&body).ok(),
            None => None,
        };
        match held {
            Some(h) if h.run == lease.run => Ok(()),
            other => Err(StoreError::LeaseLost {
                date: lease.date,
                run: lease.run.to_string(),
                reason: match other {
                    Some(h) => format!("run {} took it over", h.run),
                    None => format!("s3://{}/{key} is gone or unreadable", self.bucket),
                },
            }),
        }
    }

    /// Runs of the day that reached their pointer once (their run manifest exists): in
    /// `catalog` mode a query may still be reading them.
    async fn published_runs(&self, date: NaiveDate) -> Result<Vec<String>, StoreError> {
        let prefix = self.key(&format!("_manifests/{}/", partition(date)));
        Ok(self
            .list(&prefix)
            .await?
            .iter()
            .filter_map(|k| {
                let name = k.rsplit('/').next()?;
                Some(
                    name.strip_prefix("run=")?
                        .strip_suffix(".json")?
                        .to_string(),
                )
            })
            .collect())
    }

    /// The runs a new run of the day must not delete: the visible one, its own and, in
    /// `catalog` mode, every published one (superseded runs go by the lifecycle rule).
    async fn runs_to_keep(
        &self,
        date: NaiveDate,
        mine: &str,
        visible: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let mut keep: Vec<String> = std::iter::once(mine)
            .chain(visible)
            .map(String::from)
            .collect();
        if self.catalog.is_some() {
            keep.extend(self.published_runs(date).await?);
        }
        Ok(keep)
    }

    /// `catalog` mode, after `run`'s partitions are registered: deletes the day's runs that
    /// never published and tags the superseded ones for the lifecycle rule.
    async fn supersede_runs_except(&self, date: NaiveDate, run: &str) -> Result<(), StoreError> {
        let keep = self.runs_to_keep(date, run, None).await?;
        let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
        let mut dead = Vec::new();
        for (key, owner) in self.day_objects(date).await? {
            if owner == run {
                continue;
            }
            if !keep.contains(&owner.as_str()) {
                dead.push(key);
                continue;
            }
            let tagging = Tag::builder()
                .key(SUPERSEDED_TAG.0)
                .value(SUPERSEDED_TAG.1)
                .build()
                .and_then(|tag| Tagging::builder().tag_set(tag).build())
                .map_err(|e| StoreError::Corrupt {
                    location: format!("s3://{}/{key}", self.bucket),
                    message: e.to_string(),
                })?;
            self.client
                .put_object_tagging()
                .bucket(&self.bucket)
                .key(&key)
                .tagging(tagging)
                .send()
                .await
                .map_err(|e| s3_error("tag superseded", &self.bucket, &key, e))?;
        }
        self.delete_keys(dead).await?;
        self.abort_uploads(date, |r| !keep.contains(&r)).await
    }

    async fn visible_run(&self, date: NaiveDate) -> Result<Option<String>, StoreError> {
        Ok(self.manifest(date).await?.map(|m| m.run_id.0))
    }
}

#[async_trait]
impl Store for S3Store {
    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    async fn acquire_lease(
        &self,
        date: NaiveDate,
        run: &RunId,
        ttl: chrono::Duration,
    ) -> Result<Lease, StoreError> {
        let key = self.lease_key(date);
        let now = Utc::now();
        let lease = Lease {
            date,
            run: run.clone(),
            since: now,
            expires: now + ttl,
            holder: Some(super::this_holder()),
        };
        let body =
            Bytes::from(
                serde_json::to_vec_pretty(&lease).map_err(|e| StoreError::Corrupt {
                    location: key.clone(),
                    message: e.to_string(),
                })?,
            );
        let created = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .if_none_match("*")
            .body(ByteStream::from(body.clone()))
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e) if is_precondition_failed(&e) => {
                let Some((current, etag)) = self.get(&key).await? else {
                    // Released between our two requests: try once more.
                    return self.acquire_lease(date, run, ttl).await;
                };
                let held: Lease =
                    serde_json::from_slice(&current).map_err(|e| StoreError::Corrupt {
                        location: format!("s3://{}/{key}", self.bucket),
                        message: format!("unreadable lease: {e}"),
                    })?;
                let busy = || StoreError::LeaseHeld {
                    date,
                    holder: held.run.to_string(),
                    since: held.since.to_rfc3339(),
                    expires: held.expires.to_rfc3339(),
                };
                if held.expires > now {
                    return Err(busy());
                }
                let Some(etag) = etag else { return Err(busy()) };
                match self
                    .client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(&key)
                    .if_match(etag)
                    .body(ByteStream::from(body))
                    .send()
                    .await
                {
                    Ok(_) => tracing::warn!(%date, stale = %held.run, "took over an expired lease"),
                    Err(e) if is_precondition_failed(&e) => return Err(busy()),
                    Err(e) => return Err(s3_error("take over lease", &self.bucket, &key, e)),
                }
            }
            Err(e) => return Err(s3_error("create lease", &self.bucket, &key, e)),
        }
        // We hold the day: finish an interrupted publish, then anything of a run that is
        // neither visible nor ours is dead.
        let visible_manifest = self.manifest(date).await?;
        if let Some(m) = &visible_manifest {
            self.roll_forward(m).await?;
        }
        let visible = visible_manifest.map(|m| m.run_id.0);
        let keep = self.runs_to_keep(date, &run.0, visible.as_deref()).await?;
        let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
        self.remove_runs_except(date, &keep).await?;
        Ok(lease)
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        let key = self.lease_key(lease.date);
        if let Some((body, _)) = self.get(&key).await? {
            let held: Option<Lease> = serde_json::from_slice(&body).ok();
            if held.is_some_and(|h| h.run == lease.run) {
                self.client
                    .delete_object()
                    .bucket(&self.bucket)
                    .key(&key)
                    .send()
                    .await
                    .map_err(|e| s3_error("release lease", &self.bucket, &key, e))?;
            }
        }
        Ok(())
    }

    async fn create_part(
        &self,
        lease: &Lease,
        table: &str,
        part: u32,
    ) -> Result<(Box<dyn Upload>, String), StoreError> {
        let date = lease.date;
        let run = lease.run.0.as_str();
        let (rel, key) = if self.catalog.is_some() {
            // Athena reads only registered folders: write in place.
            let rel = format!(
                "{}part-{part:05}.parquet",
                Self::run_folder_rel(table, date, run)
            );
            let key = self.key(&rel);
            (rel, key)
        } else {
            // Final key: flat in the partition (readers list it), the run in the file name.
            let rel = format!("{table}/{}/part-{run}-{part:05}.parquet", partition(date));
            let key = self.key(&self.staging_rel(date, run, &rel));
            (rel, key)
        };
        let upload = S3Upload {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key,
            buf: BytesMut::new(),
            upload_id: None,
            parts: Vec::new(),
            bytes: 0,
        };
        Ok((Box::new(upload), rel))
    }

    async fn publish(&self, lease: &Lease, manifest: &Manifest) -> Result<(), StoreError> {
        let json =
            Bytes::from(
                serde_json::to_vec_pretty(manifest).map_err(|e| StoreError::Corrupt {
                    location: self.pointer_key(lease.date),
                    message: e.to_string(),
                })?,
            );
        self.check_lease(lease).await?;
        self.put(&self.run_manifest_key(lease), json.clone())
            .await?;
        // The pointer is the commit point: from here on, a crash is finished by the next run.
        self.put(&self.pointer_key(lease.date), json).await?;
        self.roll_forward(manifest).await
    }

    async fn discard(&self, lease: &Lease) -> Result<(), StoreError> {
        let visible = self.visible_run(lease.date).await?;
        if visible.as_deref() == Some(lease.run.0.as_str()) {
            // The pointer was written (a failure after the commit point, or a write reported
            // failed that took effect): the next run rolls the publish forward.
            return Ok(());
        }
        // Only this run's objects: if the lease was lost, another run may be writing the day
        // (other dead runs are swept by whoever takes the lease next).
        self.remove_runs(lease.date, |r| r == lease.run.0).await?;
        // The run's manifest, if its publish got that far: the run was never visible.
        self.delete_keys(vec![self.run_manifest_key(lease)]).await
    }

    async fn manifest(&self, date: NaiveDate) -> Result<Option<Manifest>, StoreError> {
        let key = self.pointer_key(date);
        match self.get(&key).await? {
            None => Ok(None),
            Some((body, _)) => {
                serde_json::from_slice(&body)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt {
                        location: format!("s3://{}/{key}", self.bucket),
                        message: format!("unreadable manifest: {e}"),
                    })
            }
        }
    }

    async fn put_raw(&self, lease: &Lease, name: &str, data: Bytes) -> Result<(), StoreError> {
        let key = self.key(&format!(
            "{}/{}/run={}/{name}",
            super::RAW_TABLE,
            partition(lease.date),
            lease.run
        ));
        self.put(&key, data).await
    }
}

/// One object, streamed: a single PutObject when small, a multipart upload otherwise.
pub(crate) struct S3Upload {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    buf: BytesMut,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    bytes: u64,
}

impl S3Upload {
    pub(crate) fn new(client: aws_sdk_s3::Client, bucket: &str, key: String) -> Self {
        Self {
            client,
            bucket: bucket.to_string(),
            key,
            buf: BytesMut::new(),
            upload_id: None,
            parts: Vec::new(),
            bytes: 0,
        }
    }

    async fn flush_part(&mut self) -> Result<(), StoreError> {
        if self.upload_id.is_none() {
            let out = self
                .client
                .create_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .send()
                .await
                .map_err(|e| s3_error("start upload", &self.bucket, &self.key, e))?;
            self.upload_id = out.upload_id().map(str::to_string);
        }
        let id = self.upload_id.clone().unwrap_or_default();
        let number = self.parts.len() as i32 + 1;
        let take = self.buf.len().min(PART_BYTES);
        let data = self.buf.split_to(take).freeze();
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&id)
            .part_number(number)
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| s3_error("upload part", &self.bucket, &self.key, e))?;
        self.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .build(),
        );
        Ok(())
    }
}

#[async_trait]
impl Upload for S3Upload {
    async fn write(&mut self, data: Bytes) -> Result<(), StoreError> {
        self.bytes += data.len() as u64;
        self.buf.extend_from_slice(&data);
        // A row group can be bigger than a part: send it as several, each PART_BYTES.
        while self.buf.len() >= PART_BYTES {
            self.flush_part().await?;
        }
        Ok(())
    }

    async fn complete(mut self: Box<Self>) -> Result<u64, StoreError> {
        if self.upload_id.is_none() {
            let data = self.buf.split().freeze();
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .body(ByteStream::from(data))
                .send()
                .await
                .map_err(|e| s3_error("write", &self.bucket, &self.key, e))?;
            return Ok(self.bytes);
        }
        // What is left is under PART_BYTES: the last part, which may be small.
        if !self.buf.is_empty() {
            if let Err(e) = self.flush_part().await {
                let _ = self.abort().await;
                return Err(e);
            }
        }
        let id = self.upload_id.clone().unwrap_or_default();
        let done = CompletedMultipartUpload::builder()
            .set_parts(Some(std::mem::take(&mut self.parts)))
            .build();
        let res = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&id)
            .multipart_upload(done)
            .send()
            .await;
        match res {
            Ok(_) => Ok(self.bytes),
            Err(e) => {
                let err = s3_error("complete upload", &self.bucket, &self.key, e);
                let _ = self.abort().await;
                Err(err)
            }
        }
    }

    async fn abort(self: Box<Self>) -> Result<(), StoreError> {
        if let Some(id) = &self.upload_id {
            self.client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(id)
                .send()
                .await
                .map_err(|e| s3_error("abort upload", &self.bucket, &self.key, e))?;
        }
        Ok(())
    }
}
