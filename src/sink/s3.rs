//! S3 plumbing shared by [`super::storage::S3Storage`]: the client from the AWS chain, error
//! mapping, and the streaming multipart upload.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};

use super::{StoreError, Upload};

/// Multipart parts are this big (S3's minimum is 5 MiB, except the last).
const PART_BYTES: usize = 8 << 20;

/// The tag put on a superseded run's objects in `catalog` mode (the lifecycle rule's filter).
pub const SUPERSEDED_TAG: (&str, &str) = ("genesys-parquet", "superseded");

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

/// `bucket/key` for CopySource, percent-encoded.
pub(crate) fn copy_source(bucket: &str, key: &str) -> String {
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

/// An S3 client from the standard AWS chain (the Lambda's role unchanged); with an endpoint (an
/// S3-compatible server), path-style addressing.
pub async fn client_from_env(endpoint: Option<&str>) -> aws_sdk_s3::Client {
    let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let mut b = aws_sdk_s3::config::Builder::from(&shared)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(5)
                .with_initial_backoff(Duration::from_millis(200)),
        )
        // No default checksums: a multipart upload must use one consistently or not at all
        // (see TOOLING.md); the manifest carries each file's CRC-64/NVME instead.
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired);
    if shared.region().is_none() {
        b = b.region(aws_sdk_s3::config::Region::new("us-east-1"));
    }
    if let Some(ep) = endpoint {
        b = b.endpoint_url(ep).force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(b.build())
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

    fn part_size(&self) -> Option<usize> {
        Some(PART_BYTES)
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
