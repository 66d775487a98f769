//! Objects in memory: the reference backend of the storage suite, and fast protocol tests.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use super::{precondition, ObjectMeta, ObjectStorage, PutMode, Version};
use crate::sink::{StoreError, Upload};

#[derive(Debug, Default)]
struct State {
    objects: BTreeMap<String, (Bytes, u64)>,
    uploads: BTreeSet<(String, u64)>,
    next: u64,
}

/// An in-memory object store; clones share their objects.
#[derive(Debug, Default, Clone)]
pub struct MemoryStorage {
    state: Arc<Mutex<State>>,
}

impl MemoryStorage {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a test panicked elsewhere; the map itself is consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn put_now(&self, key: &str, data: Bytes, mode: &PutMode) -> Result<Version, StoreError> {
        let mut st = self.lock();
        let current = st.objects.get(key).map(|(_, v)| *v);
        match (mode, current) {
            (PutMode::Create, Some(_)) => return Err(precondition("create", self.location(key))),
            (PutMode::Update(want), cur) if cur.map(|v| v.to_string()) != Some(want.0.clone()) => {
                return Err(precondition("update", self.location(key)))
            }
            _ => {}
        }
        st.next += 1;
        let v = st.next;
        st.objects.insert(key.to_string(), (data, v));
        Ok(Version(v.to_string()))
    }
}

#[async_trait]
impl ObjectStorage for MemoryStorage {
    fn location(&self, key: &str) -> String {
        format!("memory:///{key}")
    }

    async fn put(&self, key: &str, data: Bytes, mode: PutMode) -> Result<Version, StoreError> {
        self.put_now(key, data, &mode)
    }

    async fn get(&self, key: &str) -> Result<Option<(Bytes, Version)>, StoreError> {
        Ok(self
            .lock()
            .objects
            .get(key)
            .map(|(b, v)| (b.clone(), Version(v.to_string()))))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        Ok(self.lock().objects.get(key).map(|(b, v)| ObjectMeta {
            key: key.to_string(),
            size: b.len() as u64,
            version: Version(v.to_string()),
        }))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        Ok(self
            .lock()
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, (b, v))| ObjectMeta {
                key: k.clone(),
                size: b.len() as u64,
                version: Version(v.to_string()),
            })
            .collect())
    }

    async fn delete(&self, key: &str, if_match: Option<&Version>) -> Result<(), StoreError> {
        let mut st = self.lock();
        if let Some(want) = if_match {
            let cur = st.objects.get(key).map(|(_, v)| v.to_string());
            if cur.as_deref() != Some(want.0.as_str()) {
                return Err(precondition("delete", format!("memory:///{key}")));
            }
        }
        st.objects.remove(key);
        Ok(())
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let data = self.lock().objects.get(from).map(|(b, _)| b.clone());
        let data = data.ok_or_else(|| StoreError::Corrupt {
            location: self.location(from),
            message: "no such object to copy".into(),
        })?;
        self.put_now(to, data, &PutMode::Overwrite).map(|_| ())
    }

    async fn exchange_folders(&self, a: &str, b: &str) -> Result<bool, StoreError> {
        let (a, b) = (
            format!("{}/", a.trim_end_matches('/')),
            format!("{}/", b.trim_end_matches('/')),
        );
        let mut st = self.lock();
        let take = |st: &mut State, p: &str| {
            let keys: Vec<String> = st
                .objects
                .keys()
                .filter(|k| k.starts_with(p))
                .cloned()
                .collect();
            keys.into_iter()
                .filter_map(|k| st.objects.remove(&k).map(|o| (k[p.len()..].to_string(), o)))
                .collect::<Vec<_>>()
        };
        let (in_a, in_b) = (take(&mut st, &a), take(&mut st, &b));
        for (rel, o) in in_a {
            st.objects.insert(format!("{b}{rel}"), o);
        }
        for (rel, o) in in_b {
            st.objects.insert(format!("{a}{rel}"), o);
        }
        Ok(true)
    }

    async fn rename_folder(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let (from, to) = (
            format!("{}/", from.trim_end_matches('/')),
            format!("{}/", to.trim_end_matches('/')),
        );
        let mut st = self.lock();
        if st.objects.keys().any(|k| k.starts_with(&to)) {
            return Err(precondition("rename folder", format!("memory:///{to}")));
        }
        let moved: Vec<String> = st
            .objects
            .keys()
            .filter(|k| k.starts_with(&from))
            .cloned()
            .collect();
        for k in moved {
            if let Some(o) = st.objects.remove(&k) {
                st.objects.insert(format!("{to}{}", &k[from.len()..]), o);
            }
        }
        Ok(())
    }

    async fn upload(&self, key: &str) -> Result<Box<dyn Upload>, StoreError> {
        let id = {
            let mut st = self.lock();
            st.next += 1;
            let id = st.next;
            st.uploads.insert((key.to_string(), id));
            id
        };
        Ok(Box::new(MemoryUpload {
            storage: self.clone(),
            key: key.to_string(),
            id,
            buf: BytesMut::new(),
        }))
    }

    async fn open_uploads(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .lock()
            .uploads
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect())
    }

    async fn abort_uploads(&self, prefix: &str) -> Result<(), StoreError> {
        self.lock().uploads.retain(|(k, _)| !k.starts_with(prefix));
        Ok(())
    }
}

struct MemoryUpload {
    storage: MemoryStorage,
    key: String,
    id: u64,
    buf: BytesMut,
}

#[async_trait]
impl Upload for MemoryUpload {
    async fn write(&mut self, data: Bytes) -> Result<(), StoreError> {
        self.buf.extend_from_slice(&data);
        Ok(())
    }

    async fn complete(mut self: Box<Self>) -> Result<u64, StoreError> {
        let open = self
            .storage
            .lock()
            .uploads
            .remove(&(self.key.clone(), self.id));
        if !open {
            return Err(precondition(
                "complete upload (aborted)",
                self.storage.location(&self.key),
            ));
        }
        let data = self.buf.split().freeze();
        let n = data.len() as u64;
        self.storage.put_now(&self.key, data, &PutMode::Overwrite)?;
        Ok(n)
    }

    async fn abort(self: Box<Self>) -> Result<(), StoreError> {
        self.storage
            .lock()
            .uploads
            .remove(&(self.key.clone(), self.id));
        Ok(())
    }
}
