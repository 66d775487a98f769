//! Objects as files under a root folder. A key is a relative path.
//!
//! Every put writes a temporary file beside the target (`.NAME.tmp-UUID`, hidden from listings
//! and from readers that glob `*.parquet`), syncs it, then moves it into place: `rename` for an
//! overwrite, `link` for a create (it never replaces, so two creators cannot both win, and no
//! one sees the file empty). An update or a conditional delete compares the version and acts
//! while holding an exclusive lock on `.NAME.lock`, so conditional changes of one key from many
//! processes are serialised. A version is the file's size, modification time and inode: a
//! rename-over always yields a new inode.

use std::io::{ErrorKind, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use super::write_behind::WriteBehind;
use super::{precondition, ObjectMeta, ObjectStorage, PutMode, Version};
use crate::sink::{StoreError, Upload};

const TMP_MARK: &str = ".tmp-";

/// Objects as files in a folder.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
}

fn version_of(m: &std::fs::Metadata) -> Version {
    Version(format!(
        "{}-{}.{}-{}",
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ino()
    ))
}

fn hidden_beside(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}{suffix}"))
}

fn write_temp(path: &Path, data: &[u8]) -> std::io::Result<(PathBuf, Version)> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = hidden_beside(
        path,
        &format!("{TMP_MARK}{}", uuid::Uuid::new_v4().simple()),
    );
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    let v = version_of(&f.metadata()?);
    Ok((tmp, v))
}

fn version_at(path: &Path) -> std::io::Result<Option<Version>> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(version_of(&m))),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Runs `f` holding an exclusive lock on the key's lock file.
fn locked<T>(path: &Path, f: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<T> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(hidden_beside(path, ".lock"))?;
    lock.lock()?;
    let r = f();
    let _ = lock.unlock();
    r
}

enum Outcome<T> {
    Done(T),
    Precondition,
}

impl LocalStorage {
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        std::fs::create_dir_all(&root)
            .map_err(|e| StoreError::io("create folder", root.display(), e))?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        op: &'static str,
        key: &str,
        f: impl FnOnce(PathBuf) -> std::io::Result<Outcome<T>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let path = self.path(key);
        let r = tokio::task::spawn_blocking(move || f(path))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r);
        match r {
            Ok(Outcome::Done(t)) => Ok(t),
            Ok(Outcome::Precondition) => Err(precondition(op, self.location(key))),
            Err(e) => Err(StoreError::io(op, self.location(key), e)),
        }
    }
}

/// Removes now-empty folders from `dir` up to (not including) `root`.
fn prune_empty(root: &Path, mut dir: Option<&Path>) {
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || std::fs::remove_dir(d).is_err() {
            return;
        }
        dir = d.parent();
    }
}

fn walk(
    root: &Path,
    dir: &Path,
    prefix: &str,
    out: &mut Vec<(String, PathBuf)>,
) -> std::io::Result<()> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in rd {
        let entry = entry?;
        let path = entry.path();
        let Ok(rel) = path.strip_prefix(root) else {
            continue;
        };
        let key = rel.to_string_lossy().replace('\\', "/");
        let ft = entry.file_type()?;
        if ft.is_dir() {
            if key.starts_with(prefix) || prefix.starts_with(&format!("{key}/")) {
                walk(root, &path, prefix, out)?;
            }
        } else if key.starts_with(prefix) {
            out.push((key, path));
        }
    }
    Ok(())
}

/// `renameat2(RENAME_EXCHANGE)`: both paths stay occupied throughout (Linux 3.15+; ext4, xfs,
/// btrfs, tmpfs and most local file systems). False where the kernel or the file system has no
/// such call (`ENOSYS`, `EINVAL`): the caller falls back to two renames.
#[cfg(target_os = "linux")]
fn rename_exchange(a: &Path, b: &Path) -> std::io::Result<bool> {
    use std::os::unix::ffi::OsStrExt;
    let cstr = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|e| std::io::Error::new(ErrorKind::InvalidInput, e))
    };
    let (ca, cb) = (cstr(a)?, cstr(b)?);
    // SAFETY: two valid NUL-terminated paths that outlive the call; no memory is shared.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOSYS | libc::EINVAL) => Ok(false),
        _ => Err(e),
    }
}

#[cfg(not(target_os = "linux"))]
fn rename_exchange(_: &Path, _: &Path) -> std::io::Result<bool> {
    Ok(false)
}

fn is_hidden(key: &str) -> bool {
    key.rsplit('/').next().is_some_and(|n| n.starts_with('.'))
}

#[async_trait]
impl ObjectStorage for LocalStorage {
    fn location(&self, key: &str) -> String {
        self.path(key).display().to_string()
    }

    async fn put(&self, key: &str, data: Bytes, mode: PutMode) -> Result<Version, StoreError> {
        let op = match mode {
            PutMode::Overwrite => "write",
            PutMode::Create => "create",
            PutMode::Update(_) => "update",
        };
        self.blocking(op, key, move |path| {
            let (tmp, v) = write_temp(&path, &data)?;
            let r = match mode {
                PutMode::Overwrite => std::fs::rename(&tmp, &path).map(|()| Outcome::Done(v)),
                PutMode::Create => {
                    let r = match std::fs::hard_link(&tmp, &path) {
                        Ok(()) => Ok(Outcome::Done(v)),
                        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(Outcome::Precondition),
                        Err(e) => Err(e),
                    };
                    let _ = std::fs::remove_file(&tmp);
                    r
                }
                PutMode::Update(want) => locked(&path, || {
                    if version_at(&path)?.as_ref() != Some(&want) {
                        return Ok(Outcome::Precondition);
                    }
                    std::fs::rename(&tmp, &path)?;
                    Ok(Outcome::Done(v))
                }),
            };
            if !matches!(r, Ok(Outcome::Done(_))) {
                let _ = std::fs::remove_file(&tmp);
            }
            r
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Option<(Bytes, Version)>, StoreError> {
        self.blocking("read", key, |path| {
            let mut f = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Outcome::Done(None)),
                Err(e) => return Err(e),
            };
            // Version and content of the same file (the handle keeps it after a rename-over).
            let v = version_of(&f.metadata()?);
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut buf)?;
            Ok(Outcome::Done(Some((Bytes::from(buf), v))))
        })
        .await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        let k = key.to_string();
        self.blocking("stat", key, move |path| match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Outcome::Done(Some(ObjectMeta {
                key: k,
                size: m.len(),
                version: version_of(&m),
            }))),
            Ok(_) => Ok(Outcome::Done(None)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Outcome::Done(None)),
            Err(e) => Err(e),
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let root = self.root.clone();
        let p = prefix.to_string();
        self.blocking("list", prefix, move |_| {
            let mut found = Vec::new();
            walk(&root, &root, &p, &mut found)?;
            let mut out = Vec::new();
            for (key, path) in found {
                if is_hidden(&key) {
                    continue;
                }
                match std::fs::metadata(&path) {
                    Ok(m) => out.push(ObjectMeta {
                        key,
                        size: m.len(),
                        version: version_of(&m),
                    }),
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(Outcome::Done(out))
        })
        .await
    }

    async fn delete(&self, key: &str, if_match: Option<&Version>) -> Result<(), StoreError> {
        let root = self.root.clone();
        let want = if_match.cloned();
        self.blocking("delete", key, move |path| {
            let remove = || match std::fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            };
            let out = match want {
                None => remove().map(|()| Outcome::Done(())),
                Some(want) => locked(&path, || {
                    if version_at(&path)?.as_ref() != Some(&want) {
                        return Ok(Outcome::Precondition);
                    }
                    remove()?;
                    Ok(Outcome::Done(()))
                }),
            }?;
            if matches!(out, Outcome::Done(())) {
                prune_empty(&root, path.parent());
            }
            Ok(out)
        })
        .await
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let src = self.path(from);
        self.blocking("copy", to, move |path| {
            let data = std::fs::read(&src)?;
            let (tmp, _) = write_temp(&path, &data)?;
            std::fs::rename(&tmp, &path).map(Outcome::Done)
        })
        .await
    }

    async fn rename_folder(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let src = self.path(from);
        self.blocking("rename folder", to, move |path| {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            // Linux refuses to rename onto a non-empty folder: `to` is never replaced.
            match std::fs::rename(&src, &path) {
                Ok(()) => Ok(Outcome::Done(())),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::DirectoryNotEmpty | ErrorKind::AlreadyExists
                    ) =>
                {
                    Ok(Outcome::Precondition)
                }
                Err(e) => Err(e),
            }
        })
        .await
    }

    async fn exchange_folders(&self, a: &str, b: &str) -> Result<bool, StoreError> {
        let src = self.path(a);
        self.blocking("exchange folders", b, move |path| {
            rename_exchange(&src, &path).map(Outcome::Done)
        })
        .await
    }

    async fn upload(&self, key: &str) -> Result<Box<dyn Upload>, StoreError> {
        let target = self.path(key);
        let tmp = hidden_beside(
            &target,
            &format!("{TMP_MARK}{}", uuid::Uuid::new_v4().simple()),
        );
        let t = tmp.clone();
        let file = self
            .blocking("create", key, move |_| {
                if let Some(parent) = t.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&t)
                    .map(Outcome::Done)
            })
            .await?;
        Ok(Box::new(LocalUpload {
            file: Some(WriteBehind::new(file)),
            tmp,
            target,
            bytes: 0,
        }))
    }

    async fn open_uploads(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .temp_files(prefix)
            .await?
            .into_iter()
            .map(|(target, _)| target)
            .collect())
    }

    async fn abort_uploads(&self, prefix: &str) -> Result<(), StoreError> {
        for (_, path) in self.temp_files(prefix).await? {
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("abort upload", path.display(), e)),
            }
        }
        Ok(())
    }
}

impl LocalStorage {
    /// Temporary files of unfinished writes whose target key is under `prefix`: (target, path).
    async fn temp_files(&self, prefix: &str) -> Result<Vec<(String, PathBuf)>, StoreError> {
        let root = self.root.clone();
        // The temporary name differs from the target's in its last segment only.
        let dir_prefix = match prefix.rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/"),
            None => String::new(),
        };
        let p = prefix.to_string();
        self.blocking("list uploads", prefix, move |_| {
            let mut found = Vec::new();
            walk(&root, &root, &dir_prefix, &mut found)?;
            Ok(Outcome::Done(
                found
                    .into_iter()
                    .filter_map(|(k, path)| {
                        let (dir, name) = k.rsplit_once('/').unwrap_or(("", &k));
                        let target = name.strip_prefix('.')?.rsplit_once(TMP_MARK)?.0;
                        let key = if dir.is_empty() {
                            target.to_string()
                        } else {
                            format!("{dir}/{target}")
                        };
                        key.starts_with(&p).then_some((key, path))
                    })
                    .collect(),
            ))
        })
        .await
    }
}

/// A file being written under a hidden temporary name; moved into place on completion. Writes
/// are whole row groups, so they go straight to the file on the blocking pool, with no buffer
/// kept per open file but the last partial disk block: its bytes go to disk as it grows, with
/// direct I/O where the file system takes it ([`WriteBehind`]).
struct LocalUpload {
    /// `None` only while a write runs, or after one panicked.
    file: Option<WriteBehind>,
    tmp: PathBuf,
    target: PathBuf,
    bytes: u64,
}

impl LocalUpload {
    async fn with_file<T: Send + 'static>(
        &mut self,
        op: &'static str,
        f: impl FnOnce(&mut WriteBehind) -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let lost = || StoreError::io(op, self.tmp.display(), std::io::Error::other("file lost"));
        let mut file = self.file.take().ok_or_else(lost)?;
        let (file, r) = tokio::task::spawn_blocking(move || {
            let r = f(&mut file);
            (file, r)
        })
        .await
        .map_err(|_| lost())?;
        self.file = Some(file);
        r.map_err(|e| StoreError::io(op, self.tmp.display(), e))
    }
}

#[async_trait]
impl Upload for LocalUpload {
    async fn write(&mut self, data: Bytes) -> Result<(), StoreError> {
        self.bytes += data.len() as u64;
        self.with_file("write", move |f| f.write_all(&data)).await
    }

    async fn complete(mut self: Box<Self>) -> Result<u64, StoreError> {
        self.with_file("sync", |f| f.sync_all()).await?;
        tokio::fs::rename(&self.tmp, &self.target)
            .await
            .map_err(|e| StoreError::io("complete", self.target.display(), e))?;
        Ok(self.bytes)
    }

    async fn abort(self: Box<Self>) -> Result<(), StoreError> {
        drop(self.file);
        match tokio::fs::remove_file(&self.tmp).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("abort upload", self.tmp.display(), e)),
        }
    }
}
