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

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use bytes::{Bytes, BytesMut};
use chrono::{NaiveDate, Utc};

use super::{Lease, Manifest, RunId, Store, StoreError, Upload};

/// Multipart parts are this big (S3's minimum is 5 MiB, except the last).
const PART_BYTES: usize = 8 << 20;

/// Writes tables to an S3 bucket (or an S3-compatible server).
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

fn partition(date: NaiveDate) -> String {
    format!("conversation_date={date}")
}

/// Maps an SDK error to a [`StoreError`] naming the operation, bucket, key and cause.
fn s3_error<E>(
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
        (_, Some("AccessDenied")) => (format!("access denied to s3://{bucket}/{key}"), false),
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

fn is_precondition_failed<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    matches!(
        e.code(),
        Some("PreconditionFailed" | "ConditionalRequestConflict")
    )
}

fn is_not_found<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
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
        }
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
        let doomed: Vec<String> = self
            .day_objects(date)
            .await?
            .into_iter()
            .filter(|(_, run)| !keep.contains(&run.as_str()))
            .map(|(k, _)| k)
            .collect();
        self.delete_keys(doomed).await?;
        self.abort_uploads(date, keep).await
    }

    /// Aborts unfinished multipart uploads of the day's runs other than `keep`.
    async fn abort_uploads(&self, date: NaiveDate, keep: &[&str]) -> Result<(), StoreError> {
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
            if keep.contains(&run) {
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
        self.remove_runs_except(date, &[run]).await?;
        self.delete_keys(staged.into_iter().collect()).await
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
        let mut keep = vec![run.0.as_str()];
        if let Some(v) = visible.as_deref() {
            keep.push(v);
        }
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
        // Final key: flat in the partition (readers list it), the run in the file name.
        let rel = format!(
            "{table}/{}/part-{}-{part:05}.parquet",
            partition(lease.date),
            lease.run
        );
        let upload = S3Upload {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: self.key(&self.staging_rel(lease.date, &lease.run.0, &rel)),
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
        let keep: Vec<&str> = visible.iter().map(String::as_str).collect();
        self.remove_runs_except(lease.date, &keep).await?;
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
struct S3Upload {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    buf: BytesMut,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    bytes: u64,
}

impl S3Upload {
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
