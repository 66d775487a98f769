//! Objects in an S3 bucket under a prefix, through `aws-sdk-s3` (conditions in the table of
//! [`super`]).

use async_trait::async_trait;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use super::{precondition, ObjectMeta, ObjectStorage, PutMode, Version};
use crate::sink::s3::{is_not_found, is_precondition_failed, s3_error, S3Upload};
use crate::sink::{StoreError, Upload};

/// Objects under `s3://bucket/prefix/`.
#[derive(Debug, Clone)]
pub struct S3Storage {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

impl S3Storage {
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

    /// The full object key of a key relative to the prefix.
    pub fn full_key(&self, key: &str) -> String {
        super::join(&[&self.prefix, key])
    }

    fn relative(&self, full: &str) -> String {
        if self.prefix.is_empty() {
            full.to_string()
        } else {
            full.strip_prefix(&format!("{}/", self.prefix))
                .unwrap_or(full)
                .to_string()
        }
    }

    /// Full key of a listing prefix: keeps a trailing `/` (a folder) and an empty prefix.
    fn full_prefix(&self, prefix: &str) -> String {
        match (self.prefix.is_empty(), prefix.is_empty()) {
            (true, _) => prefix.to_string(),
            (false, true) => format!("{}/", self.prefix),
            (false, false) => format!("{}/{prefix}", self.prefix),
        }
    }

    /// Tags an object for the bucket's lifecycle rule ([`crate::sink::s3::SUPERSEDED_TAG`]).
    pub async fn tag_superseded(&self, key: &str) -> Result<(), StoreError> {
        use aws_sdk_s3::types::{Tag, Tagging};
        let (k, v) = crate::sink::s3::SUPERSEDED_TAG;
        let full = self.full_key(key);
        let tagging = Tag::builder()
            .key(k)
            .value(v)
            .build()
            .and_then(|tag| Tagging::builder().tag_set(tag).build())
            .map_err(|e| StoreError::Corrupt {
                location: self.location(key),
                message: e.to_string(),
            })?;
        match self
            .client
            .put_object_tagging()
            .bucket(&self.bucket)
            .key(&full)
            .tagging(tagging)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(s3_error("tag superseded", &self.bucket, &full, e)),
        }
    }

    async fn uploads(&self, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        let full = self.full_prefix(prefix);
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker) = (None, None);
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(&full)
                .set_key_marker(key_marker)
                .set_upload_id_marker(id_marker)
                .send()
                .await
                .map_err(|e| s3_error("list uploads", &self.bucket, &full, e))?;
            for u in page.uploads() {
                if let (Some(k), Some(id)) = (u.key(), u.upload_id()) {
                    out.push((k.to_string(), id.to_string()));
                }
            }
            if !page.is_truncated().unwrap_or(false) {
                return Ok(out);
            }
            key_marker = page.next_key_marker().map(str::to_string);
            id_marker = page.next_upload_id_marker().map(str::to_string);
            if key_marker.is_none() {
                return Ok(out);
            }
        }
    }
}

#[async_trait]
impl ObjectStorage for S3Storage {
    fn location(&self, key: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.full_key(key))
    }

    async fn put(&self, key: &str, data: Bytes, mode: PutMode) -> Result<Version, StoreError> {
        let full = self.full_key(key);
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&full)
            .body(ByteStream::from(data));
        let op = match &mode {
            PutMode::Overwrite => "write",
            PutMode::Create => {
                req = req.if_none_match("*");
                "create"
            }
            PutMode::Update(v) => {
                req = req.if_match(&v.0);
                "update"
            }
        };
        match req.send().await {
            Ok(out) => Ok(Version(out.e_tag().unwrap_or_default().to_string())),
            Err(e) if is_precondition_failed(&e) => Err(precondition(op, self.location(key))),
            // `If-Match` on a missing key: the version we hold is gone.
            Err(e) if matches!(mode, PutMode::Update(_)) && is_not_found(&e) => {
                Err(precondition(op, self.location(key)))
            }
            Err(e) => Err(s3_error(op, &self.bucket, &full, e)),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<(Bytes, Version)>, StoreError> {
        let full = self.full_key(key);
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(o) => {
                let v = Version(o.e_tag().unwrap_or_default().to_string());
                let body = o.body.collect().await.map_err(|e| StoreError::S3 {
                    op: "read",
                    bucket: self.bucket.clone(),
                    key: full.clone(),
                    message: e.to_string(),
                    transient: true,
                })?;
                Ok(Some((body.into_bytes(), v)))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(s3_error("read", &self.bucket, &full, e)),
        }
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        let full = self.full_key(key);
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(o) => Ok(Some(ObjectMeta {
                key: key.to_string(),
                size: o.content_length().unwrap_or(0).max(0) as u64,
                version: Version(o.e_tag().unwrap_or_default().to_string()),
            })),
            Err(e)
                if is_not_found(&e)
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) =>
            {
                Ok(None)
            }
            Err(e) => Err(s3_error("stat", &self.bucket, &full, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let full = self.full_prefix(prefix);
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&full)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| s3_error("list", &self.bucket, &full, e))?;
            for o in page.contents() {
                if let Some(k) = o.key() {
                    out.push(ObjectMeta {
                        key: self.relative(k),
                        size: o.size().unwrap_or(0).max(0) as u64,
                        version: Version(o.e_tag().unwrap_or_default().to_string()),
                    });
                }
            }
            token = page.next_continuation_token().map(str::to_string);
            if token.is_none() {
                out.sort_by(|a, b| a.key.cmp(&b.key));
                return Ok(out);
            }
        }
    }

    async fn delete(&self, key: &str, if_match: Option<&Version>) -> Result<(), StoreError> {
        let full = self.full_key(key);
        let req = self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&full)
            .set_if_match(if_match.map(|v| v.0.clone()));
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) if is_precondition_failed(&e) => Err(precondition("delete", self.location(key))),
            Err(e) if if_match.is_some() && is_not_found(&e) => {
                Err(precondition("delete", self.location(key)))
            }
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(s3_error("delete", &self.bucket, &full, e)),
        }
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let (src, dst) = (self.full_key(from), self.full_key(to));
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .copy_source(crate::sink::s3::copy_source(&self.bucket, &src))
            .key(&dst)
            .send()
            .await
            .map_err(|e| s3_error("copy", &self.bucket, &dst, e))?;
        Ok(())
    }

    async fn upload(&self, key: &str) -> Result<Box<dyn Upload>, StoreError> {
        Ok(Box::new(S3Upload::new(
            self.client.clone(),
            &self.bucket,
            self.full_key(key),
        )))
    }

    async fn open_uploads(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .uploads(prefix)
            .await?
            .into_iter()
            .map(|(k, _)| self.relative(&k))
            .collect())
    }

    async fn abort_uploads(&self, prefix: &str) -> Result<(), StoreError> {
        for (key, id) in self.uploads(prefix).await? {
            match self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&key)
                .upload_id(&id)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if e.code() == Some("NoSuchUpload") => {}
                Err(e) => return Err(s3_error("abort upload", &self.bucket, &key, e)),
            }
        }
        Ok(())
    }
}
