//! The minimal storage a day-commit needs, in the style of `object_store`: objects under
//! `/`-separated keys, conditional puts ([`PutMode::Create`], [`PutMode::Update`]), get, head,
//! list by prefix, delete (optionally only if unchanged) and a streaming upload. Three
//! backends: a local folder ([`LocalStorage`]), S3 ([`S3Storage`]) and memory
//! ([`MemoryStorage`], for tests). The commit protocol is written once over this trait.
//!
//! ## Why not the `object_store` crate
//! Its trait is the model (`PutMode::Create`/`Update`, one integration suite for every backend),
//! but the crate itself does not serve the parts we need: its local file system backend does not
//! implement `PutMode::Update` (a lease take-over and renewal are updates), none of its backends
//! deletes conditionally (`If-Match` on DELETE, which makes a lease release safe), and its S3
//! client is a second HTTP and credential stack beside `aws-sdk-s3`, which we keep anyway for
//! Glue and Secrets Manager and the Lambda role (a second client costs build time on a 2-core
//! CI and a second place to configure endpoints and retries). Implementing these nine calls
//! against `aws-sdk-s3` is smaller than adapting around those gaps.
//!
//! ## What each call needs
//! | call | S3 request | IAM action | condition relied on |
//! |---|---|---|---|
//! | `put(Overwrite)` | PutObject | `s3:PutObject` | — |
//! | `put(Create)` | PutObject `If-None-Match: *` | `s3:PutObject` | 412 if the key exists |
//! | `put(Update(v))` | PutObject `If-Match: v` | `s3:PutObject` | 412 if the ETag changed, 404 if gone |
//! | `get` | GetObject | `s3:GetObject` | — |
//! | `head` | HeadObject | `s3:GetObject` | — |
//! | `list` | ListObjectsV2 | `s3:ListBucket` | — |
//! | `delete(None)` | DeleteObject | `s3:DeleteObject` | — |
//! | `delete(Some(v))` | DeleteObject `If-Match: v` | `s3:DeleteObject` | 412 if the ETag changed |
//! | `copy` | CopyObject | `s3:GetObject` (source), `s3:PutObject` (target) | — |
//! | `upload` | CreateMultipartUpload, UploadPart, CompleteMultipartUpload, AbortMultipartUpload (or one PutObject when small) | `s3:PutObject`, `s3:AbortMultipartUpload` | — |
//! | `open_uploads`, `abort_uploads` | ListMultipartUploads, AbortMultipartUpload | `s3:ListBucketMultipartUploads`, `s3:AbortMultipartUpload` | — |
//! | (catalog mode) `tag_superseded` | PutObjectTagging | `s3:PutObjectTagging` | — |
//!
//! The test suite (`tests/store_suite.rs`, `storage_*`) checks every condition in the table
//! against each backend, S3 through a moto server: moto 5.2 answers 412 to `If-None-Match: *`
//! on an existing key (atomically under concurrent puts), to a stale `If-Match` on PUT and on
//! DELETE, and 404 to `If-Match` on a missing key.

mod local;
mod memory;
mod s3;
mod write_behind;

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;

pub use local::LocalStorage;
pub use memory::MemoryStorage;
pub use s3::S3Storage;

use super::{StoreError, Upload};

/// An object's version as the backend reports it (an ETag on S3): what [`PutMode::Update`]
/// and a conditional delete compare against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version(pub String);

/// How a put treats an object already at the key (`object_store`'s `PutMode`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutMode {
    /// Replace whatever is there.
    Overwrite,
    /// Only if nothing is at the key; else [`StoreError::Precondition`].
    Create,
    /// Only if the object is still at this version; else [`StoreError::Precondition`].
    Update(Version),
}

/// One stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    pub version: Version,
}

/// Objects under `/`-separated keys, relative to the backend's root.
#[async_trait]
pub trait ObjectStorage: fmt::Debug + Send + Sync + 'static {
    /// Where `key` is, for messages (`/data/out/k`, `s3://bucket/prefix/k`).
    fn location(&self, key: &str) -> String;

    /// Writes a whole object, atomically: a reader sees the old object or the new one.
    async fn put(&self, key: &str, data: Bytes, mode: PutMode) -> Result<Version, StoreError>;

    async fn get(&self, key: &str) -> Result<Option<(Bytes, Version)>, StoreError>;

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError>;

    /// Every object whose key starts with `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError>;

    /// Removes the object; with `if_match`, only while it is at that version (else
    /// [`StoreError::Precondition`]). Removing a missing object unconditionally succeeds.
    async fn delete(&self, key: &str, if_match: Option<&Version>) -> Result<(), StoreError>;

    /// Copies an object (overwriting `to`).
    async fn copy(&self, from: &str, to: &str) -> Result<(), StoreError>;

    /// Moves every object under folder `from` to folder `to` in one atomic step, where the
    /// backend can (a local folder rename); `to` must not exist. Others refuse.
    async fn rename_folder(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let _ = to;
        Err(StoreError::Corrupt {
            location: self.location(from),
            message: "this storage cannot rename a folder atomically".into(),
        })
    }

    /// Swaps the contents of folders `a` and `b` (both exist) in one atomic step, where the
    /// backend can: a reader of either sees the one set of objects or the other, never a mix or
    /// nothing. Returns false, changing nothing, where it cannot.
    async fn exchange_folders(&self, a: &str, b: &str) -> Result<bool, StoreError> {
        let _ = (a, b);
        Ok(false)
    }

    /// A streaming upload to `key`, invisible until completed (it overwrites).
    async fn upload(&self, key: &str) -> Result<Box<dyn Upload>, StoreError>;

    /// Keys of uploads started under `prefix` and neither completed nor aborted.
    async fn open_uploads(&self, prefix: &str) -> Result<Vec<String>, StoreError>;

    /// Aborts every open upload under `prefix` (what a crashed run left).
    async fn abort_uploads(&self, prefix: &str) -> Result<(), StoreError>;
}

/// Joins key segments with `/`.
pub fn join(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

pub(crate) fn precondition(op: &'static str, location: impl fmt::Display) -> StoreError {
    StoreError::Precondition {
        op,
        location: location.to_string(),
    }
}
