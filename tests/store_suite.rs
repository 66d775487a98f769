//! One suite, every backend (like object_store's): the day-replacement protocol checked on the
//! local folder store and on the S3 store against a real S3-compatible server (moto's server
//! mode, started here; `GP_MOTO_SERVER` names its binary, `.ci/run` sets it).

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{NaiveDate, Utc};
use common::fault_proxy::{Fault, FaultProxy, Rule, Times};
use genesys_parquet::datasets::conversations::DATASET as CONVERSATIONS;
use genesys_parquet::interval::Interval;
use genesys_parquet::simulator::{self, SimConfig, SimHandle};
use genesys_parquet::sink::catalog::GlueCatalog;
use genesys_parquet::sink::s3::SUPERSEDED_TAG;
use genesys_parquet::sink::{DayStore, Lease, Manifest, ManifestFile, RunId, Store, StoreError};

fn date() -> NaiveDate {
    "2026-11-20".parse().expect("date")
}

/// What a backend shows a reader that lists a table's partition (Athena without a catalog).
#[async_trait]
trait Backend: Send + Sync {
    fn store(&self) -> Arc<dyn Store>;
    /// (file name, content) of every object under `table/conversation_date=D/`, sorted.
    async fn visible(&self, table: &str) -> Vec<(String, String)>;
    /// Multipart uploads left open.
    async fn open_uploads(&self) -> usize;
    /// The day store itself.
    fn day_store(&self) -> &DayStore;
    /// Stops renewing the leases held so far, as a stalled or killed process would.
    fn stall(&self) {
        self.day_store().stall_heartbeats();
    }
}

struct Local {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    store: Arc<DayStore>,
}

impl Local {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("out");
        let store = Arc::new(DayStore::local(&root).expect("store"));
        Local {
            _dir: dir,
            root,
            store,
        }
    }
}

#[async_trait]
impl Backend for Local {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
    async fn visible(&self, table: &str) -> Vec<(String, String)> {
        let dir = self
            .root
            .join(table)
            .join(format!("conversation_date={}", date()));
        let mut v: Vec<(String, String)> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| {
                        (
                            e.file_name().to_string_lossy().to_string(),
                            std::fs::read_to_string(e.path()).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
    async fn open_uploads(&self) -> usize {
        // Unfinished writes are hidden temporary files.
        let mut n = 0;
        for e in walkdir(&self.root) {
            let name = e
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            if name.starts_with('.') && name.contains(".tmp-") {
                n += 1;
            }
        }
        n
    }
    fn day_store(&self) -> &DayStore {
        &self.store
    }
}

fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walkdir(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A moto S3 server on a free port, killed on drop.
struct Moto {
    child: Child,
    url: String,
}

impl Moto {
    fn start() -> Moto {
        let bin = std::env::var("GP_MOTO_SERVER").unwrap_or_else(|_| {
            panic!(
                "GP_MOTO_SERVER is not set: point it at moto's `moto_server` (bash .ci/run does)"
            )
        });
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let url = format!("http://127.0.0.1:{port}");
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(30), "moto did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Moto { child, url }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s3_client(url: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .endpoint_url(url)
        .force_path_style(true)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

struct S3 {
    _moto: Moto,
    client: aws_sdk_s3::Client,
    store: Arc<DayStore>,
}

const BUCKET: &str = "lake";
const PREFIX: &str = "genesys";

impl S3 {
    /// Keys under `prefix` (one page: the suite writes a handful of objects).
    async fn keys_under(&self, prefix: &str) -> Vec<String> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix(prefix)
            .send()
            .await
            .expect("list");
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(String::from))
            .collect()
    }

    /// (file name, content) of each key, sorted.
    async fn named_contents(&self, keys: Vec<String>) -> Vec<(String, String)> {
        let mut v = Vec::new();
        for key in keys {
            let body = self
                .client
                .get_object()
                .bucket(BUCKET)
                .key(&key)
                .send()
                .await
                .expect("get")
                .body
                .collect()
                .await
                .expect("body")
                .into_bytes();
            let name = key.rsplit('/').next().unwrap_or("").to_string();
            v.push((name, String::from_utf8_lossy(&body).to_string()));
        }
        v.sort();
        v
    }

    async fn new() -> Self {
        let moto = Moto::start();
        let client = s3_client(&moto.url);
        client
            .create_bucket()
            .bucket(BUCKET)
            .send()
            .await
            .expect("create bucket");
        let store = Arc::new(DayStore::s3(client.clone(), BUCKET, PREFIX));
        S3 {
            _moto: moto,
            client,
            store,
        }
    }
}

#[async_trait]
impl Backend for S3 {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
    async fn visible(&self, table: &str) -> Vec<(String, String)> {
        let prefix = format!("{PREFIX}/{table}/conversation_date={}/", date());
        let keys = self.keys_under(&prefix).await;
        self.named_contents(keys).await
    }
    async fn open_uploads(&self) -> usize {
        self.client
            .list_multipart_uploads()
            .bucket(BUCKET)
            .send()
            .await
            .expect("list uploads")
            .uploads()
            .len()
    }
    fn day_store(&self) -> &DayStore {
        &self.store
    }
}

/// The S3 store in `catalog` mode: what a reader sees is what the Glue partition points at.
struct S3Catalog {
    s3: S3,
    catalog: GlueCatalog,
    store: Arc<DayStore>,
}

const DATABASE: &str = "gp";

fn glue_client(url: &str) -> aws_sdk_glue::Client {
    let conf = aws_sdk_glue::config::Builder::new()
        .behavior_version(aws_sdk_glue::config::BehaviorVersion::latest())
        .region(aws_sdk_glue::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_glue::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .endpoint_url(url)
        .build();
    aws_sdk_glue::Client::from_conf(conf)
}

/// The Glue database and one table per output table, as the template creates them.
async fn create_glue_tables(glue: &aws_sdk_glue::Client) {
    use aws_sdk_glue::types::{Column, DatabaseInput, StorageDescriptor, TableInput};
    glue.create_database()
        .database_input(DatabaseInput::builder().name(DATABASE).build().expect("db"))
        .send()
        .await
        .expect("create database");
    for t in genesys_parquet::tables::schema::Table::all() {
        let sd = StorageDescriptor::builder()
            .location(format!("s3://{BUCKET}/{PREFIX}/{}/", t.name()))
            .columns(
                Column::builder()
                    .name("conversation_id")
                    .r#type("string")
                    .build()
                    .expect("col"),
            )
            .input_format("org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat")
            .build();
        glue.create_table()
            .database_name(DATABASE)
            .table_input(
                TableInput::builder()
                    .name(t.name())
                    .storage_descriptor(sd)
                    .partition_keys(
                        Column::builder()
                            .name("conversation_date")
                            .r#type("string")
                            .build()
                            .expect("col"),
                    )
                    .build()
                    .expect("table"),
            )
            .send()
            .await
            .expect("create table");
    }
}

impl S3Catalog {
    async fn new() -> Self {
        let s3 = S3::new().await;
        let glue = glue_client(&s3._moto.url);
        create_glue_tables(&glue).await;
        let store = Arc::new(DayStore::s3_catalog(
            s3.client.clone(),
            BUCKET,
            PREFIX,
            GlueCatalog::new(glue.clone(), DATABASE),
        ));
        S3Catalog {
            s3,
            catalog: GlueCatalog::new(glue, DATABASE),
            store,
        }
    }

    /// Keys (relative to the bucket) under the day's registered location of `table`.
    async fn registered_keys(&self, table: &str) -> Vec<String> {
        let Some(location) = self
            .catalog
            .location(table, date())
            .await
            .expect("partition")
        else {
            return Vec::new();
        };
        let prefix = location
            .strip_prefix(&format!("s3://{BUCKET}/"))
            .expect("location in the bucket")
            .to_string();
        assert!(
            prefix.ends_with('/') && prefix.contains("/run="),
            "a run's own folder: {location}"
        );
        self.s3.keys_under(&prefix).await
    }
}

#[async_trait]
impl Backend for S3Catalog {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
    async fn visible(&self, table: &str) -> Vec<(String, String)> {
        let keys = self.registered_keys(table).await;
        self.s3.named_contents(keys).await
    }
    async fn open_uploads(&self) -> usize {
        self.s3.open_uploads().await
    }
    fn day_store(&self) -> &DayStore {
        &self.store
    }
}

/// Writes `parts` parts of each table for a run; completes them unless `leave_open`.
async fn write_run(
    store: &Arc<dyn Store>,
    run: &str,
    tables: &[&str],
    parts: u32,
    ttl: chrono::Duration,
) -> (Lease, Vec<ManifestFile>) {
    let lease = store
        .acquire_lease(&CONVERSATIONS, date(), &RunId(run.to_string()), ttl)
        .await
        .expect("lease");
    let files = write_parts(store, &lease, tables, parts).await;
    (lease, files)
}

/// Writes `parts` completed parts of each table under `lease`.
async fn write_parts(
    store: &Arc<dyn Store>,
    lease: &Lease,
    tables: &[&str],
    parts: u32,
) -> Vec<ManifestFile> {
    let run = &lease.run.0;
    let mut files = Vec::new();
    for t in tables {
        for p in 0..parts {
            let (mut up, key) = store.create_part(lease, t, p).await.expect("part");
            let body = format!("{run}:{t}:{p}");
            // A part bigger than one multipart chunk for the first table, to exercise both paths.
            let data = if p == 0 && *t == tables[0] {
                let mut big = body.clone().into_bytes();
                big.resize(9 << 20, b'.');
                Bytes::from(big)
            } else {
                Bytes::from(body.clone())
            };
            let n = data.len() as u64;
            up.write(data).await.expect("write");
            up.complete().await.expect("complete");
            files.push(ManifestFile {
                table: t.to_string(),
                key,
                rows: 1,
                bytes: n,
                crc64nvme: String::new(),
            });
        }
    }
    files
}

fn manifest(lease: &Lease, files: Vec<ManifestFile>) -> Manifest {
    Manifest {
        date: lease.date,
        run_id: lease.run.clone(),
        interval: "x".into(),
        partial_day: false,
        schema_version: "1".into(),
        tool_version: "test".into(),
        started: Utc::now(),
        finished: Utc::now(),
        type_mismatches: 0,
        open: 0,
        conversations: files.len() as u64,
        rows: Default::default(),
        files,
    }
}

fn runs_of(v: &[(String, String)]) -> Vec<String> {
    let mut r: Vec<String> = v
        .iter()
        .map(|(_, c)| c.split(':').next().unwrap_or("").to_string())
        .collect();
    r.dedup();
    r
}

async fn publish_replaces_the_day(b: &dyn Backend) {
    let store = b.store();
    let hour = chrono::Duration::hours(1);
    let (l1, f1) = write_run(&store, "run-1", &["segments", "sessions"], 2, hour).await;
    // Nothing of a run is visible before it is published.
    assert!(b
        .visible("sessions")
        .await
        .iter()
        .all(|(_, c)| !c.starts_with("run-1")));
    store
        .publish(&l1, &manifest(&l1, f1))
        .await
        .expect("publish");
    store.release_lease(&l1).await.expect("release");
    assert_eq!(runs_of(&b.visible("segments").await), ["run-1"]);
    assert_eq!(b.visible("sessions").await.len(), 2);
    assert_eq!(
        store
            .manifest(&CONVERSATIONS, date())
            .await
            .expect("manifest")
            .map(|m| m.run_id.0),
        Some("run-1".to_string())
    );

    // A re-run replaces every table; a table it has no rows for is emptied.
    let (l2, f2) = write_run(&store, "run-2", &["segments"], 1, hour).await;
    store
        .publish(&l2, &manifest(&l2, f2))
        .await
        .expect("publish");
    store.release_lease(&l2).await.expect("release");
    assert_eq!(runs_of(&b.visible("segments").await), ["run-2"]);
    assert_eq!(b.visible("segments").await.len(), 1);
    assert!(b.visible("sessions").await.is_empty());
    assert_eq!(b.open_uploads().await, 0);
}

async fn a_crashed_run_leaves_the_day_intact_and_is_swept(b: &dyn Backend) {
    let store = b.store();
    let hour = chrono::Duration::hours(1);
    let (l1, f1) = write_run(&store, "run-1", &["segments"], 2, hour).await;
    store
        .publish(&l1, &manifest(&l1, f1))
        .await
        .expect("publish");
    store.release_lease(&l1).await.expect("release");
    let before = b.visible("segments").await;

    // run-2 takes the day with a short lease. While it is live, another run is refused with
    // who holds the day and since when. (Checked right away: a loaded CI machine can take
    // seconds to write the parts below.)
    let ttl = chrono::Duration::seconds(5);
    let l2 = store
        .acquire_lease(&CONVERSATIONS, date(), &RunId("run-2".into()), ttl)
        .await
        .expect("lease");
    let err = store
        .acquire_lease(&CONVERSATIONS, date(), &RunId("run-3".into()), hour)
        .await
        .expect_err("day is leased");
    assert!(matches!(err, StoreError::LeaseHeld { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("run-2") && msg.contains("since"), "{msg}");
    assert!(err.is_transient());

    // run-2 writes complete parts and leaves one upload open, then "dies" (no abort, no
    // release).
    write_parts(&store, &l2, &["segments"], 2).await;
    let (mut open, _) = store.create_part(&l2, "segments", 9).await.expect("part");
    let mut big = vec![b'x'; 9 << 20];
    big.truncate(9 << 20);
    open.write(Bytes::from(big)).await.expect("write");
    drop(open);
    b.stall();
    assert_eq!(
        b.visible("segments").await,
        before,
        "a dead run is never visible"
    );

    // Once run-2's lease has expired (a ttl after its last renewal), the next run takes the
    // day over.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let (l3, f3) = write_run(&store, "run-3", &["segments"], 1, hour).await;
    // Taking the lease swept the dead run (objects and open uploads), not the visible one.
    assert_eq!(b.visible("segments").await, before);
    assert_eq!(b.open_uploads().await, 0);
    store
        .publish(&l3, &manifest(&l3, f3))
        .await
        .expect("publish");
    assert_eq!(runs_of(&b.visible("segments").await), ["run-3"]);
}

async fn a_failed_run_is_discarded(b: &dyn Backend) {
    let store = b.store();
    let hour = chrono::Duration::hours(1);
    let (l1, f1) = write_run(&store, "run-1", &["segments"], 1, hour).await;
    store
        .publish(&l1, &manifest(&l1, f1))
        .await
        .expect("publish");
    store.release_lease(&l1).await.expect("release");
    let (l2, _) = write_run(&store, "run-2", &["segments"], 2, hour).await;
    store.discard(&l2).await.expect("discard");
    store.release_lease(&l2).await.expect("release");
    assert_eq!(runs_of(&b.visible("segments").await), ["run-1"]);
    // The day is free again.
    let (l3, _) = write_run(&store, "run-3", &["segments"], 1, hour).await;
    store.release_lease(&l3).await.expect("release");
}

/// Runs started at the same moment on one day: exactly one takes the day, the others are told
/// who holds it; the day ends up with the winner's data only.
async fn concurrent_runs_on_one_day(b: &dyn Backend) {
    let store = b.store();
    let hour = chrono::Duration::hours(1);
    let tries: Vec<_> = (0..4)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .acquire_lease(&CONVERSATIONS, date(), &RunId(format!("run-{i}")), hour)
                    .await
            })
        })
        .collect();
    let mut won = Vec::new();
    let mut refused = Vec::new();
    for t in tries {
        match t.await.expect("task") {
            Ok(lease) => won.push(lease),
            Err(e) => refused.push(e),
        }
    }
    assert_eq!(won.len(), 1, "exactly one run takes the day: {refused:?}");
    assert_eq!(refused.len(), 3);
    let winner = won.remove(0);
    for e in &refused {
        assert!(matches!(e, StoreError::LeaseHeld { .. }), "{e}");
        assert!(e.to_string().contains(&winner.run.0), "{e}");
    }
    let files = write_parts(&store, &winner, &["segments"], 2).await;
    store
        .publish(&winner, &manifest(&winner, files))
        .await
        .expect("publish");
    store.release_lease(&winner).await.expect("release");
    assert_eq!(
        runs_of(&b.visible("segments").await),
        vec![winner.run.0.clone()]
    );
    assert_eq!(b.visible("segments").await.len(), 2);
    assert_eq!(b.open_uploads().await, 0);
}

/// A run that outlived its lease (another run took the day over) can neither publish nor, by
/// discarding, harm the run that holds the day now.
async fn a_run_that_lost_its_lease_cannot_publish(b: &dyn Backend) {
    let store = b.store();
    let hour = chrono::Duration::hours(1);
    let (old, old_files) = write_run(
        &store,
        "run-old",
        &["segments"],
        1,
        chrono::Duration::seconds(1),
    )
    .await;
    // The old run stalls (its heartbeat stops) until its lease has expired.
    b.stall();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = old.expires;
    let (new, new_files) = write_run(&store, "run-new", &["segments"], 2, hour).await;
    let err = store
        .publish(&old, &manifest(&old, old_files))
        .await
        .expect_err("lease lost");
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err}");
    assert!(err.to_string().contains("run-new took it over"), "{err}");
    store.discard(&old).await.expect("discard");
    store
        .publish(&new, &manifest(&new, new_files))
        .await
        .expect("the holder publishes");
    assert_eq!(
        runs_of(&b.visible("segments").await),
        vec!["run-new".to_string()]
    );
    assert_eq!(b.visible("segments").await.len(), 2);
    assert_eq!(b.open_uploads().await, 0);
}

#[tokio::test]
async fn local_lost_lease() {
    a_run_that_lost_its_lease_cannot_publish(&Local::new()).await;
}

#[tokio::test]
async fn s3_lost_lease() {
    a_run_that_lost_its_lease_cannot_publish(&S3::new().await).await;
}

#[tokio::test]
async fn catalog_lost_lease() {
    a_run_that_lost_its_lease_cannot_publish(&S3Catalog::new().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_concurrent_runs() {
    concurrent_runs_on_one_day(&Local::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_concurrent_runs() {
    concurrent_runs_on_one_day(&S3::new().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catalog_concurrent_runs() {
    concurrent_runs_on_one_day(&S3Catalog::new().await).await;
}

#[tokio::test]
async fn local_publish_replaces_the_day() {
    publish_replaces_the_day(&Local::new()).await;
}

#[tokio::test]
async fn local_crashed_run() {
    a_crashed_run_leaves_the_day_intact_and_is_swept(&Local::new()).await;
}

#[tokio::test]
async fn local_failed_run() {
    a_failed_run_is_discarded(&Local::new()).await;
}

#[tokio::test]
async fn s3_publish_replaces_the_day() {
    publish_replaces_the_day(&S3::new().await).await;
}

#[tokio::test]
async fn s3_crashed_run() {
    a_crashed_run_leaves_the_day_intact_and_is_swept(&S3::new().await).await;
}

#[tokio::test]
async fn s3_failed_run() {
    a_failed_run_is_discarded(&S3::new().await).await;
}

#[tokio::test]
async fn catalog_publish_replaces_the_day() {
    publish_replaces_the_day(&S3Catalog::new().await).await;
}

#[tokio::test]
async fn catalog_crashed_run() {
    a_crashed_run_leaves_the_day_intact_and_is_swept(&S3Catalog::new().await).await;
}

#[tokio::test]
async fn catalog_failed_run() {
    a_failed_run_is_discarded(&S3Catalog::new().await).await;
}

/// In `catalog` mode a superseded run stays where queries planned before the switch read it,
/// tagged for the lifecycle rule; the flat partition folder is never written.
#[tokio::test]
async fn catalog_keeps_superseded_runs_tagged_for_expiry() {
    let b = S3Catalog::new().await;
    let store = b.store();
    let hour = chrono::Duration::hours(1);
    let (l1, f1) = write_run(&store, "run-1", &["segments"], 2, hour).await;
    store
        .publish(&l1, &manifest(&l1, f1))
        .await
        .expect("publish");
    store.release_lease(&l1).await.expect("release");
    let run1 = b.registered_keys("segments").await;
    assert_eq!(run1.len(), 2);
    assert!(
        run1.iter().all(|k| k.starts_with(&format!(
            "{PREFIX}/segments/conversation_date={}/run=run-1/part-",
            date()
        ))),
        "{run1:?}"
    );
    // Every table's partition points at the run, also tables it wrote nothing to.
    let sessions = b
        .catalog
        .location("sessions", date())
        .await
        .expect("partition");
    assert_eq!(
        sessions.as_deref(),
        Some(
            format!(
                "s3://{BUCKET}/{PREFIX}/sessions/conversation_date={}/run=run-1/",
                date()
            )
            .as_str()
        )
    );

    let (l2, f2) = write_run(&store, "run-2", &["segments"], 1, hour).await;
    store
        .publish(&l2, &manifest(&l2, f2))
        .await
        .expect("publish");
    store.release_lease(&l2).await.expect("release");
    assert_eq!(runs_of(&b.visible("segments").await), ["run-2"]);
    for key in &run1 {
        let tags =
            b.s3.client
                .get_object_tagging()
                .bucket(BUCKET)
                .key(key)
                .send()
                .await
                .expect("run-1's object is kept");
        let tags: Vec<(String, String)> = tags
            .tag_set()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect();
        assert_eq!(
            tags,
            [(SUPERSEDED_TAG.0.to_string(), SUPERSEDED_TAG.1.to_string())],
            "{key}"
        );
    }
    // A third run sweeps nothing published, and still tags both older runs.
    let (l3, f3) = write_run(&store, "run-3", &["segments"], 1, hour).await;
    store
        .publish(&l3, &manifest(&l3, f3))
        .await
        .expect("publish");
    let mut runs: Vec<String> =
        b.s3.keys_under(&format!("{PREFIX}/segments/"))
            .await
            .iter()
            .filter_map(|k| k.split("/run=").nth(1)?.split('/').next().map(String::from))
            .collect();
    runs.dedup();
    assert_eq!(runs, ["run-1", "run-2", "run-3"]);
    assert_eq!(runs_of(&b.visible("segments").await), ["run-3"]);
    assert_eq!(b.open_uploads().await, 0);
}

#[tokio::test]
async fn catalog_errors_name_the_table() {
    let s3 = S3::new().await;
    let glue = glue_client(&s3._moto.url);
    // No database: the first publish fails naming database, table and partition.
    let store = DayStore::s3_catalog(
        s3.client.clone(),
        BUCKET,
        PREFIX,
        GlueCatalog::new(glue, "missing_db"),
    );
    // Checked when the run takes the day, before it writes anything.
    let err = store
        .acquire_lease(
            &CONVERSATIONS,
            date(),
            &RunId("run-1".into()),
            chrono::Duration::hours(1),
        )
        .await
        .expect_err("no Glue database");
    let msg = err.to_string();
    assert!(msg.contains("Glue table missing_db.conversations"), "{msg}");
    assert!(!err.is_transient(), "{msg}");
    assert!(s3.keys_under(PREFIX).await.is_empty(), "nothing written");
}

#[tokio::test]
async fn s3_errors_name_bucket_key_and_cause() {
    let s3 = S3::new().await;
    let store = DayStore::s3(s3.client.clone(), "no-such-bucket", "p");
    let err = store
        .acquire_lease(
            &CONVERSATIONS,
            date(),
            &RunId("r".into()),
            chrono::Duration::hours(1),
        )
        .await
        .expect_err("bucket missing");
    let msg = err.to_string();
    assert!(
        msg.contains("bucket no-such-bucket does not exist"),
        "{msg}"
    );
    assert!(msg.contains("s3://no-such-bucket/p/_leases/"), "{msg}");
    assert!(!err.is_transient());
}

// ---------------------------------------------------------------------------------------------
// The CLI against S3, black box: the real binary, the in-process simulator, moto, and (for the
// failure tests) a fault-injecting proxy between the two (`common/fault_proxy.rs`).

/// The day the CLI tests extract.
const DAY: &str = "2026-10-19";

/// The simulator with `per_day` conversations a day, ending the day after [`DAY`].
async fn simulator(per_day: u32) -> SimHandle {
    simulator::start(SimConfig {
        seed: 21,
        per_day,
        end_date: Some("2026-10-20".parse().expect("date")),
        job_ready_after_ms: 50,
        ..SimConfig::default()
    })
    .await
    .expect("simulator")
}

/// The simulator's conversations of [`DAY`], sorted.
fn truth(sim: &SimHandle) -> Vec<String> {
    let mut ids = sim
        .dataset()
        .conversation_ids_started_in(&Interval::day(DAY.parse().expect("date")));
    ids.sort();
    ids
}

/// What one `extract` run printed and returned.
struct Extracted {
    code: Option<i32>,
    /// The run summary (stdout).
    summary: serde_json::Value,
    stderr: String,
}

impl Extracted {
    fn day(&self) -> &serde_json::Value {
        &self.summary["days"][0]
    }

    fn run_id(&self) -> String {
        self.day()["run_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no run_id in {}", self.summary))
            .to_string()
    }

    /// Asserts the run succeeded.
    fn ok(self) -> Self {
        assert_eq!(self.code, Some(0), "extract failed:\n{}", self.stderr);
        assert_eq!(self.day()["status"], "ok", "{}", self.summary);
        self
    }
}

/// `genesys-parquet extract` of [`DAY`] into `s3://lake/genesys` through `endpoint`.
async fn extract(endpoint: &str, sim: &SimHandle, extra: &[&str]) -> Extracted {
    let url = sim.base_url();
    let end = "2026-10-20";
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_genesys-parquet"))
        .args(["extract", "--start", DAY, "--end", end, "--mode", "jobs"])
        // The store's protocol, on one dataset's day (every dataset commits through it).
        .args(["--datasets", "conversations"])
        .args(["--out", &format!("s3://{BUCKET}/{PREFIX}")])
        .args(["--s3-endpoint", endpoint])
        .args(["--api-url", &url, "--login-url", &url])
        .args(extra)
        // Glue (with `--glue-database`) at the same server: moto serves every service on one
        // port, and the proxy forwards what no rule picks.
        .env("AWS_ENDPOINT_URL_GLUE", endpoint)
        .env("GENESYS_CLIENT_ID", "demo")
        .env("GENESYS_CLIENT_SECRET", "demo")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("GP_DATASETS")
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("run extract");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let summary = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "summary is not JSON ({e}): {}\nstderr:\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    Extracted {
        code: out.status.code(),
        summary,
        stderr,
    }
}

/// What pyarrow's own S3 client reads from the bucket (straight from moto, not the proxy).
#[derive(Debug)]
struct ReadBack {
    /// `conversation_id` of every row of the conversations table, sorted.
    ids: Vec<String>,
    /// Distinct `conversation_date` partition values of the conversations table.
    dates: Vec<String>,
    /// Rows of each table a reader finds.
    rows: BTreeMap<String, u64>,
}

fn read_back(moto_url: &str) -> ReadBack {
    let python = std::env::var("GP_PYTHON")
        .unwrap_or_else(|_| panic!("GP_PYTHON is not set (bash .ci/run sets it)"));
    let script = r#"
import json, sys
import pyarrow.fs as fs, pyarrow.parquet as pq
endpoint, bucket, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
s3 = fs.S3FileSystem(endpoint_override=endpoint.replace('http://', ''), scheme='http',
                     access_key='test', secret_key='test', region='us-east-1')
root = f"{bucket}/{prefix}"
tables = sorted(i.base_name for i in s3.get_file_info(fs.FileSelector(root))
                if i.type == fs.FileType.Directory and not i.base_name.startswith('_'))
read = lambda t: pq.read_table(f"{root}/{t}", filesystem=s3, partitioning='hive')
conv = read('conversations')
print(json.dumps({"ids": sorted(conv.column('conversation_id').to_pylist()),
                  "dates": sorted(set(str(d) for d in conv.column('conversation_date').to_pylist())),
                  "rows": {t: read(t).num_rows for t in tables}}))
"#;
    let o = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .args([moto_url, BUCKET, PREFIX])
        .output()
        .expect("python");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let strings = |k: &str| -> Vec<String> {
        v[k].as_array()
            .unwrap_or_else(|| panic!("{k} in {v}"))
            .iter()
            .map(|x| x.as_str().unwrap_or_default().to_string())
            .collect()
    };
    ReadBack {
        ids: strings("ids"),
        dates: strings("dates"),
        rows: serde_json::from_value(v["rows"].clone()).expect("rows"),
    }
}

/// The bucket as it is, read from moto directly.
struct Bucket {
    /// Every key, sorted.
    keys: Vec<String>,
    /// The day's pointer manifest (the visible run).
    pointer: Option<Manifest>,
    open_uploads: usize,
}

impl Bucket {
    async fn read(s3: &S3) -> Bucket {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let out = s3
                .client
                .list_objects_v2()
                .bucket(BUCKET)
                .set_continuation_token(token)
                .send()
                .await
                .expect("list");
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(String::from)),
            );
            token = out.next_continuation_token().map(String::from);
            if token.is_none() {
                break;
            }
        }
        keys.sort();
        let pointer = match s3
            .client
            .get_object()
            .bucket(BUCKET)
            .key(format!(
                "{PREFIX}/_manifests/conversations/conversation_date={DAY}.json"
            ))
            .send()
            .await
        {
            Ok(o) => {
                let body = o.body.collect().await.expect("body").into_bytes();
                Some(serde_json::from_slice(&body).expect("pointer manifest"))
            }
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => None,
            Err(e) => panic!("get pointer: {e:?}"),
        };
        Bucket {
            keys,
            pointer,
            open_uploads: s3.open_uploads().await,
        }
    }

    /// Keys a reader of the tables sees (everything outside the `_` folders).
    fn data(&self) -> Vec<&str> {
        self.keys
            .iter()
            .map(String::as_str)
            .filter(|k| !k.starts_with(&format!("{PREFIX}/_")))
            .collect()
    }

    fn under(&self, folder: &str) -> Vec<&str> {
        let p = format!("{PREFIX}/{folder}");
        self.keys
            .iter()
            .map(String::as_str)
            .filter(|k| k.starts_with(&p))
            .collect()
    }

    fn pointer(&self) -> &Manifest {
        self.pointer.as_ref().expect("the day has a visible run")
    }

    /// Exactly `m`'s files are visible, `m` is the day's pointer, nothing is staged or open.
    fn assert_shows_only(&self, m: &Manifest) {
        let mut want: Vec<String> = m
            .files
            .iter()
            .map(|f| format!("{PREFIX}/{}", f.key))
            .collect();
        want.sort();
        assert!(!want.is_empty());
        assert_eq!(
            self.data(),
            want,
            "visible files are exactly run {}'s",
            m.run_id
        );
        assert_eq!(self.pointer(), m, "the pointer names run {}", m.run_id);
        assert_eq!(
            self.under("_staging/"),
            Vec::<&str>::new(),
            "staging is empty"
        );
        assert_eq!(
            self.under("_leases/"),
            Vec::<&str>::new(),
            "the lease is released"
        );
        assert_eq!(self.open_uploads, 0, "no multipart upload is left open");
    }
}

/// pyarrow reads `m`'s rows, every conversation of the day once.
fn assert_reads_back(moto_url: &str, m: &Manifest, truth: &[String]) {
    let r = read_back(moto_url);
    assert_eq!(r.ids, truth, "every conversation of the day, once");
    assert_eq!(r.dates, [DAY]);
    let want: BTreeMap<String, u64> = m
        .rows
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(t, n)| (t.clone(), *n))
        .collect();
    assert_eq!(r.rows, want, "rows per table equal the manifest's");
    assert_eq!(m.conversations, truth.len() as u64);
}

/// Every request `rule` answered with a fault was sent again and reached the server, which
/// answered it (not necessarily 2xx: reading the pointer of a new day is a 404).
fn assert_retried(proxy: &FaultProxy, rule: usize) -> usize {
    let log = proxy.log();
    let faults: Vec<usize> = (0..log.len())
        .filter(|i| log[*i].rule == Some(rule))
        .collect();
    assert!(
        !faults.is_empty(),
        "rule {rule} never matched: the test injects nothing"
    );
    for &i in &faults {
        let f = &log[i];
        assert!(
            log[i + 1..].iter().any(|s| s.method == f.method
                && s.path == f.path
                && s.query == f.query
                && s.rule.is_none()
                && s.status < 500),
            "{} {}?{} answered {} was not sent again to the server",
            f.method,
            f.path,
            f.query,
            f.status
        );
    }
    faults.len()
}

/// The CLI writing to S3 as a user would (`--out s3://…`), read back with pyarrow's own S3
/// client: every conversation of the day, once, and nothing left in staging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extract_to_s3_is_read_back_by_pyarrow() {
    let s3 = S3::new().await;
    let sim = simulator(300).await;
    let run = extract(&s3._moto.url, &sim, &[]).await.ok();
    let bucket = Bucket::read(&s3).await;
    let m = bucket.pointer().clone();
    assert_eq!(m.run_id.0, run.run_id());
    bucket.assert_shows_only(&m);
    assert_reads_back(&s3._moto.url, &m, &truth(&sim));
    assert!(m.rows["segments"] > m.conversations);
    sim.shutdown().await;
}

/// Flags that make the conversations table's file bigger than one 8 MiB part at 2,000
/// conversations a day (about 11 MB uncompressed, with the opt-in `raw` column), so it goes up
/// as a multipart upload.
const MULTIPART: &[&str] = &["--compression", "none", "--raw"];

/// S3 throttling (503 SlowDown) and server errors (500 InternalError) on every kind of request
/// the store makes: the SDK retries them, and the day comes out whole, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_throttling_and_server_errors_are_retried() {
    let s3 = S3::new().await;
    let proxy = FaultProxy::start(&s3._moto.url).await;
    let sim = simulator(2000).await;
    let staging = format!("/{BUCKET}/{PREFIX}/_staging/");
    let all = format!("/{BUCKET}/{PREFIX}/");
    let bucket = format!("/{BUCKET}");
    use Fault::{InternalError, SlowDown};
    proxy.set_rules(vec![
        // 0: every 2nd UploadPart
        Rule::new(SlowDown, "PUT", &staging)
            .query("partNumber")
            .times(Times::Every(2)),
        // 1: every 3rd PutObject (lease, small parts, manifests)
        Rule::new(InternalError, "PUT", &all)
            .query("x-id=PutObject")
            .times(Times::Every(3)),
        // 2: the first CreateMultipartUpload
        Rule::new(SlowDown, "POST", &staging)
            .query("uploads")
            .times(Times::First(1)),
        // 3: the first CompleteMultipartUpload
        Rule::new(InternalError, "POST", &staging)
            .query("uploadId")
            .times(Times::First(1)),
        // 4: every 4th CopyObject (publishing)
        Rule::new(SlowDown, "PUT", &all)
            .query("x-id=CopyObject")
            .times(Times::Every(4)),
        // 5: the first DeleteObject (sweeping the staging)
        Rule::new(InternalError, "DELETE", &staging)
            .query("x-id=DeleteObject")
            .times(Times::First(1)),
        // 6: every 2nd ListObjectsV2
        Rule::new(SlowDown, "GET", &bucket)
            .query("list-type=2")
            .times(Times::Every(2)),
        // 7: the first read of the pointer manifest
        Rule::new(InternalError, "GET", &format!("{all}_manifests/")).times(Times::First(1)),
    ]);
    let run = extract(&proxy.url, &sim, MULTIPART).await.ok();

    let mut faults = 0;
    for rule in 0..8 {
        faults += assert_retried(&proxy, rule);
    }
    assert_eq!(proxy.injected(), faults);
    let log = proxy.log();
    let ok = |query: &str| {
        log.iter()
            .filter(|s| s.query.contains(query) && (200..300).contains(&s.status))
            .count()
    };
    assert!(ok("partNumber=") >= 2, "the multipart path was taken");
    // Every(2) over sequential uploads: each part but the first failed once, then went through.
    assert_eq!(proxy.injected_by(0).len(), ok("partNumber=") - 1);
    assert_eq!(proxy.injected_by(2).len(), 1);
    assert_eq!(proxy.injected_by(3).len(), 1);

    let bucket = Bucket::read(&s3).await;
    let m = bucket.pointer().clone();
    assert_eq!(m.run_id.0, run.run_id());
    bucket.assert_shows_only(&m);
    assert!(
        m.files.iter().any(|f| f.bytes > 8 << 20),
        "a file is bigger than one part"
    );
    assert_eq!(
        bucket.under("_manifests/"),
        [
            format!("{PREFIX}/_manifests/conversations/conversation_date={DAY}.json"),
            format!(
                "{PREFIX}/_manifests/conversations/conversation_date={DAY}/run={}.json",
                m.run_id
            )
        ]
    );
    assert_reads_back(&s3._moto.url, &m, &truth(&sim));
    sim.shutdown().await;
}

/// A run that fails for good leaves the day as the previous run published it: the same files,
/// the same pointer, its own staging removed, no upload open.
/// The run failed with `msg` in its error output, as worth retrying (`Store.Transient`).
fn assert_failed_transiently(failed: &Extracted, msg: &str) {
    assert!(
        failed.stderr.contains(msg),
        "{msg}\nnot in stderr:\n{}",
        failed.stderr
    );
    assert_eq!(failed.day()["transient"], true, "{}", failed.summary);
    assert_eq!(failed.day()["error_type"], "Store.Transient");
}

async fn assert_failed_run_left_run_1(
    s3: &S3,
    run1: &Manifest,
    failed: &Extracted,
    sim: &SimHandle,
) {
    assert_eq!(failed.code, Some(1), "stderr:\n{}", failed.stderr);
    // The error is read by people and log tools: plain text, no terminal colours.
    assert!(!failed.stderr.contains('\x1b'), "{:?}", failed.stderr);
    assert_eq!(failed.day()["status"], "failed", "{}", failed.summary);
    let bucket = Bucket::read(s3).await;
    bucket.assert_shows_only(run1);
    let run2 = failed.run_id();
    assert!(
        bucket.keys.iter().all(|k| !k.contains(&run2)),
        "nothing of the failed run {run2} is left: {:?}",
        bucket.keys
    );
    assert_reads_back(&s3._moto.url, run1, &truth(sim));
}

/// A multipart run of [`DAY`] through a fault proxy, then a second whose `method` requests
/// with `query` to the staging area answer 500 InternalError, always: (the bucket, the proxy,
/// the simulator, run 1's manifest, the failed run).
async fn multipart_run_then_staging_fault(
    method: &str,
    query: &str,
) -> (S3, FaultProxy, SimHandle, Manifest, Extracted) {
    let s3 = S3::new().await;
    let proxy = FaultProxy::start(&s3._moto.url).await;
    let sim = simulator(2000).await;
    extract(&proxy.url, &sim, MULTIPART).await.ok();
    let run1 = Bucket::read(&s3).await.pointer().clone();
    let staging = format!("/{BUCKET}/{PREFIX}/_staging/");
    proxy.set_rules(vec![
        Rule::new(Fault::InternalError, method, &staging).query(query)
    ]);
    let failed = extract(&proxy.url, &sim, MULTIPART).await;
    (s3, proxy, sim, run1, failed)
}

/// CompleteMultipartUpload answers 500 InternalError, always: the run fails after the SDK's 5
/// attempts, names the object and the cause, aborts the upload and removes its staging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_failing_complete_upload_keeps_the_previous_run() {
    let (s3, proxy, sim, run1, failed) = multipart_run_then_staging_fault("POST", "uploadId").await;
    let run2 = failed.run_id();
    let key = format!(
        "{PREFIX}/_staging/conversations/conversation_date={DAY}/run={run2}/conversations/\
         conversation_date={DAY}/part-{run2}-00000.parquet"
    );
    let msg = format!(
        "complete upload s3://{BUCKET}/{key}: InternalError: We encountered an internal error"
    );
    assert!(
        failed.day()["error"].as_str().unwrap_or("").contains(&msg),
        "{}",
        failed.summary
    );
    // A server error is worth retrying later (Step Functions retries Store.Transient).
    assert_failed_transiently(&failed, &msg);
    // The SDK made its 5 attempts, then the store aborted the upload.
    assert_eq!(proxy.injected_by(0).len(), 5);
    let log = proxy.log();
    let aborts: Vec<u16> = log
        .iter()
        .filter(|s| {
            s.method == "DELETE"
                && s.path == format!("/{BUCKET}/{key}")
                && s.query.contains("uploadId=")
        })
        .map(|s| s.status)
        .collect();
    assert_eq!(aborts, [204], "the upload was aborted once");
    assert_failed_run_left_run_1(&s3, &run1, &failed, &sim).await;
    sim.shutdown().await;
}

/// UploadPart answers 500 InternalError, always: a part fails inside a table's encoder task
/// while the run is still converting. The run fails naming the object and the cause, every
/// open upload is aborted, and the previous run stays the day's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_failing_part_upload_mid_run_keeps_the_previous_run() {
    let (s3, proxy, sim, run1, failed) =
        multipart_run_then_staging_fault("PUT", "partNumber").await;
    // The SDK made its 5 attempts on one part, of one object.
    let injected = proxy.injected_by(0);
    assert_eq!(
        injected.len(),
        5,
        "{:?}",
        injected.iter().map(|s| &s.path).collect::<Vec<_>>()
    );
    let path = injected[0].path.clone();
    assert!(injected.iter().all(|s| s.path == path));
    let key = path.trim_start_matches(&format!("/{BUCKET}/"));
    assert!(key.contains(&format!("run={}", failed.run_id())), "{key}");
    let msg = format!("upload part s3://{BUCKET}/{key}: InternalError: ");
    assert_failed_transiently(&failed, &msg);
    // The failing upload was aborted (with the others open then).
    let aborted = proxy.log().into_iter().any(|s| {
        s.method == "DELETE" && s.path == path && s.query.contains("uploadId=") && s.status == 204
    });
    assert!(aborted, "the failing upload was aborted");
    assert_failed_run_left_run_1(&s3, &run1, &failed, &sim).await;
    sim.shutdown().await;
}

/// The commit point, the conditional PUT that moves the day's lease to `publishing`, answers
/// 503 SlowDown, always: the run fails, the pointer still names run 1, the failed run's
/// staging and manifest are removed and its lease released; the next run publishes normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_failing_commit_point_keeps_the_previous_run() {
    let s3 = S3::new().await;
    let proxy = FaultProxy::start(&s3._moto.url).await;
    let sim = simulator(300).await;
    extract(&proxy.url, &sim, &[]).await.ok();
    let run1 = Bucket::read(&s3).await.pointer().clone();

    let lease = format!("{PREFIX}/_leases/conversations/conversation_date={DAY}.json");
    // The first PUT of the lease creates it; the next one is the commit.
    proxy.set_rules(vec![Rule::new(
        Fault::SlowDown,
        "PUT",
        &format!("/{BUCKET}/{lease}"),
    )
    .times(Times::After(1))]);
    let failed = extract(&proxy.url, &sim, &[]).await;
    let msg = format!("update s3://{BUCKET}/{lease}: SlowDown: Please reduce your request rate.");
    assert_failed_transiently(&failed, &msg);
    assert_eq!(proxy.injected_by(0).len(), 5, "the SDK's 5 attempts");
    assert_failed_run_left_run_1(&s3, &run1, &failed, &sim).await;

    // The day is free again, and the next run replaces run 1.
    proxy.set_rules(vec![]);
    let run3 = extract(&proxy.url, &sim, &[]).await.ok();
    let bucket = Bucket::read(&s3).await;
    let m = bucket.pointer().clone();
    assert_eq!(m.run_id.0, run3.run_id());
    bucket.assert_shows_only(&m);
    assert_reads_back(&s3._moto.url, &m, &truth(&sim));
    sim.shutdown().await;
}

/// A role that may not write under `_manifests/`: 403 AccessDenied is not retried, the error
/// names the key, and the day stays as run 1 published it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_access_denied_fails_at_once_and_keeps_the_previous_run() {
    let s3 = S3::new().await;
    let proxy = FaultProxy::start(&s3._moto.url).await;
    let sim = simulator(300).await;
    extract(&proxy.url, &sim, &[]).await.ok();
    let run1 = Bucket::read(&s3).await.pointer().clone();

    let manifests = format!("/{BUCKET}/{PREFIX}/_manifests/");
    proxy.set_rules(vec![Rule::new(Fault::AccessDenied, "PUT", &manifests)]);
    let failed = extract(&proxy.url, &sim, &[]).await;
    let run2 = failed.run_id();
    let key = format!("{PREFIX}/_manifests/conversations/conversation_date={DAY}/run={run2}.json");
    let msg = format!("write s3://{BUCKET}/{key}: AccessDenied: ");
    assert!(
        failed.stderr.contains(&msg),
        "{msg}\nnot in stderr:\n{}",
        failed.stderr
    );
    assert_eq!(failed.day()["transient"], false, "{}", failed.summary);
    assert_eq!(failed.day()["error_type"], "Store.Permanent");
    // One request, not retried; the pointer was never attempted.
    let puts: Vec<(String, u16)> = proxy
        .log()
        .into_iter()
        .filter(|s| s.method == "PUT" && s.path.starts_with(&manifests))
        .map(|s| (s.path, s.status))
        .collect();
    assert_eq!(puts, [(format!("/{BUCKET}/{key}"), 403)]);
    assert_eq!(proxy.injected(), 1);
    assert_failed_run_left_run_1(&s3, &run1, &failed, &sim).await;
    sim.shutdown().await;
}

/// `extract --glue-database` as the Lambda runs it: each run of the day gets its own folder and
/// Glue points every table at the latest; pyarrow reading the registered folder gets every
/// conversation of the day once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extract_with_a_glue_catalog_switches_the_partition() {
    let b = S3Catalog::new().await;
    let moto = b.s3._moto.url.clone();
    let sim = simulator(200).await;
    let day: NaiveDate = DAY.parse().expect("date");
    let extract = || async {
        extract(&moto, &sim, &["--glue-database", DATABASE])
            .await
            .ok();
        b.catalog
            .location("conversations", day)
            .await
            .expect("partition")
            .expect("registered")
    };
    let first = extract().await;
    let second = extract().await;
    assert_ne!(first, second, "a re-run gets its own folder");
    for t in genesys_parquet::datasets::conversations::DATASET.tables {
        let loc = b.catalog.location(t.name(), day).await.expect("partition");
        assert_eq!(
            loc.as_deref(),
            Some(
                second
                    .replace("/conversations/", &format!("/{}/", t.name()))
                    .as_str()
            ),
            "every table points at the same run"
        );
    }
    let python = std::env::var("GP_PYTHON")
        .unwrap_or_else(|_| panic!("GP_PYTHON is not set (bash .ci/run sets it)"));
    let script = r#"
import json, sys
import pyarrow.fs as fs, pyarrow.parquet as pq
endpoint, location = sys.argv[1], sys.argv[2]
s3 = fs.S3FileSystem(endpoint_override=endpoint.replace('http://', ''), scheme='http',
                     access_key='test', secret_key='test', region='us-east-1')
t = pq.read_table(location.replace('s3://', ''), filesystem=s3)
print(json.dumps(sorted(t.column('conversation_id').to_pylist())))
"#;
    let o = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .args([&moto, &second])
        .output()
        .expect("python");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ids: Vec<String> = serde_json::from_slice(&o.stdout).expect("json");
    let want = truth(&sim);
    assert!(!want.is_empty());
    assert_eq!(ids, want);
    assert_eq!(b.open_uploads().await, 0);
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// The storage trait: every backend keeps the conditions the commit protocol relies on.

use genesys_parquet::sink::storage::{
    LocalStorage, MemoryStorage, ObjectStorage, PutMode, S3Storage,
};

fn is_precondition(r: &Result<impl std::fmt::Debug, StoreError>) -> bool {
    matches!(r, Err(StoreError::Precondition { .. }))
}

async fn storage_keeps_its_conditions(s: Arc<dyn ObjectStorage>) {
    let b = |s: &str| Bytes::from(s.to_string());
    // Create: only the first wins, and the loser changes nothing.
    let v1 = s
        .put("_leases/a.json", b("one"), PutMode::Create)
        .await
        .expect("create");
    let again = s.put("_leases/a.json", b("two"), PutMode::Create).await;
    assert!(is_precondition(&again), "{again:?}");
    let (body, v) = s.get("_leases/a.json").await.expect("get").expect("exists");
    assert_eq!((body.as_ref(), &v), (&b"one"[..], &v1));
    // Update: only from the version read; a stale one fails.
    let v2 = s
        .put("_leases/a.json", b("two"), PutMode::Update(v1.clone()))
        .await
        .expect("update");
    assert_ne!(v1, v2);
    let stale = s
        .put("_leases/a.json", b("three"), PutMode::Update(v1.clone()))
        .await;
    assert!(is_precondition(&stale), "{stale:?}");
    let missing = s
        .put("_leases/none.json", b("x"), PutMode::Update(v1.clone()))
        .await;
    assert!(is_precondition(&missing), "{missing:?}");
    assert!(s.head("_leases/none.json").await.expect("head").is_none());
    // Delete if unchanged: a stale version keeps the object.
    let stale = s.delete("_leases/a.json", Some(&v1)).await;
    assert!(is_precondition(&stale), "{stale:?}");
    assert_eq!(
        s.head("_leases/a.json")
            .await
            .expect("head")
            .map(|m| (m.size, m.version)),
        Some((3, v2.clone()))
    );
    s.delete("_leases/a.json", Some(&v2)).await.expect("delete");
    assert!(s.get("_leases/a.json").await.expect("get").is_none());
    s.delete("_leases/a.json", None)
        .await
        .expect("missing is fine");

    // List: by key prefix, sorted, nothing of a neighbour.
    for k in [
        "t/d=1/x.parquet",
        "t/d=1/y.parquet",
        "t/d=10/z.parquet",
        "u/d=1/x.parquet",
    ] {
        s.put(k, b(k), PutMode::Overwrite).await.expect("put");
    }
    let keys: Vec<String> = s
        .list("t/d=1/")
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(keys, ["t/d=1/x.parquet", "t/d=1/y.parquet"]);
    assert_eq!(s.list("t/").await.expect("list").len(), 3);

    // Uploads: invisible until complete; an aborted or forgotten one is listed as open.
    let mut up = s.upload("t/d=2/part.parquet").await.expect("upload");
    up.write(b("ab")).await.expect("write");
    up.write(b("cd")).await.expect("write");
    assert!(s.list("t/d=2/").await.expect("list").is_empty());
    assert_eq!(up.complete().await.expect("complete"), 4);
    let (body, _) = s
        .get("t/d=2/part.parquet")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(body.as_ref(), b"abcd");
    let mut gone = s.upload("t/d=3/a.parquet").await.expect("upload");
    gone.write(Bytes::from(vec![7u8; 6 << 20]))
        .await
        .expect("write");
    gone.abort().await.expect("abort");
    let mut left = s.upload("t/d=3/b.parquet").await.expect("upload");
    left.write(Bytes::from(vec![7u8; 9 << 20]))
        .await
        .expect("write");
    std::mem::forget(left); // a crashed process: nobody aborts it
    assert_eq!(
        s.open_uploads("t/d=3/").await.expect("uploads"),
        ["t/d=3/b.parquet"]
    );
    assert!(s.list("t/d=3/").await.expect("list").is_empty());
    s.abort_uploads("t/d=3/").await.expect("abort");
    assert!(s.open_uploads("t/").await.expect("uploads").is_empty());

    // Sixteen concurrent creators: exactly one wins.
    let tries: Vec<_> = (0..16)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.put(
                    "_leases/race.json",
                    Bytes::from(format!("{i}")),
                    PutMode::Create,
                )
                .await
            })
        })
        .collect();
    let mut won = 0;
    for t in tries {
        match t.await.expect("task") {
            Ok(_) => won += 1,
            Err(StoreError::Precondition { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(won, 1);

    // Exchanging two folders: where the backend can, each holds the other's objects after one
    // step; where it cannot (S3), it says so and changes nothing.
    s.put("x/a/1", b("a1"), PutMode::Overwrite)
        .await
        .expect("put");
    s.put("x/a/2", b("a2"), PutMode::Overwrite)
        .await
        .expect("put");
    s.put("x/b/1", b("b1"), PutMode::Overwrite)
        .await
        .expect("put");
    let swapped = s.exchange_folders("x/a", "x/b").await.expect("exchange");
    let under = |p: &'static str| {
        let s = s.clone();
        async move {
            let mut v = Vec::new();
            for m in s.list(p).await.expect("list") {
                let (body, _) = s.get(&m.key).await.expect("get").expect("listed");
                v.push((m.key.clone(), String::from_utf8_lossy(&body).to_string()));
            }
            v
        }
    };
    let (a, bb) = (under("x/a/").await, under("x/b/").await);
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    if swapped {
        assert_eq!(a, [pair("x/a/1", "b1")]);
        assert_eq!(bb, [pair("x/b/1", "a1"), pair("x/b/2", "a2")]);
    } else {
        assert_eq!(a, [pair("x/a/1", "a1"), pair("x/a/2", "a2")]);
        assert_eq!(bb, [pair("x/b/1", "b1")]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_memory() {
    storage_keeps_its_conditions(Arc::new(MemoryStorage::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_local() {
    let dir = tempfile::tempdir().expect("tempdir");
    storage_keeps_its_conditions(Arc::new(LocalStorage::new(dir.path()).expect("storage"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_s3() {
    let s3 = S3::new().await;
    storage_keeps_its_conditions(Arc::new(S3Storage::new(s3.client.clone(), BUCKET, PREFIX))).await;
}

// ---------------------------------------------------------------------------------------------
// Crash at every step: for each storage call of a run in turn, fail right after it (the run
// goes on to discard and release, as DayWriter does), or kill the process right after it
// (nothing more happens). Then a reader sees one run per table, a run of another day repairs
// an interrupted publish, the next run of the day publishes it exactly, and a foreign file
// under the partition survives throughout.

use genesys_parquet::sink::commit::Visibility;
use genesys_parquet::sink::storage::{ObjectMeta, Version};
use genesys_parquet::sink::Upload;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Crash {
    /// The call takes effect, then reports an error; later calls work.
    Fail,
    /// The call takes effect, then the process is gone: every later call fails.
    Abort,
}

#[derive(Debug)]
struct Faulty {
    inner: Arc<dyn ObjectStorage>,
    calls: AtomicUsize,
    at: usize,
    mode: Crash,
    dead: AtomicBool,
}

impl Faulty {
    fn new(inner: Arc<dyn ObjectStorage>, at: usize, mode: Crash) -> Arc<Self> {
        Arc::new(Faulty {
            inner,
            calls: AtomicUsize::new(0),
            at,
            mode,
            dead: AtomicBool::new(false),
        })
    }

    fn injected(&self) -> StoreError {
        StoreError::Corrupt {
            location: "faulty".into(),
            message: "injected failure".into(),
        }
    }

    /// Before a call: refuses it once the process is dead.
    fn before(&self) -> Result<usize, StoreError> {
        if self.dead.load(Ordering::SeqCst) {
            return Err(self.injected());
        }
        Ok(self.calls.fetch_add(1, Ordering::SeqCst) + 1)
    }

    /// After a call that took effect: the injected failure if it is the chosen one.
    fn after<T>(&self, n: usize, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if n == self.at && r.is_ok() {
            if self.mode == Crash::Abort {
                self.dead.store(true, Ordering::SeqCst);
            }
            return Err(self.injected());
        }
        r
    }
}

struct FaultyUpload {
    f: Arc<Faulty>,
    inner: Box<dyn Upload>,
}

#[async_trait]
impl Upload for FaultyUpload {
    async fn write(&mut self, data: Bytes) -> Result<(), StoreError> {
        if self.f.dead.load(Ordering::SeqCst) {
            return Err(self.f.injected());
        }
        self.inner.write(data).await
    }
    async fn complete(self: Box<Self>) -> Result<u64, StoreError> {
        let n = self.f.before()?;
        let r = self.inner.complete().await;
        self.f.after(n, r)
    }
    async fn abort(self: Box<Self>) -> Result<(), StoreError> {
        let n = self.f.before()?;
        let r = self.inner.abort().await;
        self.f.after(n, r)
    }
}

/// Faulty is shared by the store; this newtype lets it implement the trait through an Arc.
#[derive(Debug)]
struct FaultyStorage(Arc<Faulty>);

#[async_trait]
impl ObjectStorage for FaultyStorage {
    fn location(&self, key: &str) -> String {
        self.0.inner.location(key)
    }
    async fn put(&self, key: &str, data: Bytes, mode: PutMode) -> Result<Version, StoreError> {
        let n = self.0.before()?;
        let r = self.0.inner.put(key, data, mode).await;
        self.0.after(n, r)
    }
    async fn get(&self, key: &str) -> Result<Option<(Bytes, Version)>, StoreError> {
        let n = self.0.before()?;
        let r = self.0.inner.get(key).await;
        self.0.after(n, r)
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        let n = self.0.before()?;
        let r = self.0.inner.head(key).await;
        self.0.after(n, r)
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let n = self.0.before()?;
        let r = self.0.inner.list(prefix).await;
        self.0.after(n, r)
    }
    async fn delete(&self, key: &str, if_match: Option<&Version>) -> Result<(), StoreError> {
        let n = self.0.before()?;
        let r = self.0.inner.delete(key, if_match).await;
        self.0.after(n, r)
    }
    async fn copy(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let n = self.0.before()?;
        let r = self.0.inner.copy(from, to).await;
        self.0.after(n, r)
    }
    async fn rename_folder(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let n = self.0.before()?;
        let r = self.0.inner.rename_folder(from, to).await;
        self.0.after(n, r)
    }
    async fn exchange_folders(&self, a: &str, b: &str) -> Result<bool, StoreError> {
        let n = self.0.before()?;
        let r = self.0.inner.exchange_folders(a, b).await;
        self.0.after(n, r)
    }
    async fn upload(&self, key: &str) -> Result<Box<dyn Upload>, StoreError> {
        let n = self.0.before()?;
        let r = self.0.inner.upload(key).await;
        let up = self.0.after(n, r)?;
        Ok(Box::new(FaultyUpload {
            f: self.0.clone(),
            inner: up,
        }))
    }
    async fn open_uploads(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let n = self.0.before()?;
        let r = self.0.inner.open_uploads(prefix).await;
        self.0.after(n, r)
    }
    async fn abort_uploads(&self, prefix: &str) -> Result<(), StoreError> {
        let n = self.0.before()?;
        let r = self.0.inner.abort_uploads(prefix).await;
        self.0.after(n, r)
    }
}

const SPARK: &str = "part-00000-0f1e2d3c-4b5a-6978-8897-a6b5c4d3e2f1-c000.snappy.parquet";
const CRASH_TABLES: &[&str] = &["segments", "sessions"];

fn other_day() -> NaiveDate {
    "2026-11-21".parse().expect("date")
}

/// Runs of `table`'s partition on `day` that a reader sees (the foreign file aside): in catalog
/// mode the folder Glue points at, else the partition folder.
async fn runs_visible(
    s: &Arc<dyn ObjectStorage>,
    vis: &Visibility,
    table: &str,
    day: NaiveDate,
) -> Vec<String> {
    let folder = match vis {
        Visibility::Catalog { glue, .. } => {
            let Some(loc) = glue.location(table, day).await.expect("partition") else {
                return Vec::new();
            };
            let root = format!("{}/", s.location(""));
            loc.strip_prefix(&root)
                .expect("location under the root")
                .to_string()
        }
        _ => format!("{table}/conversation_date={day}/"),
    };
    let mut runs: Vec<String> = s
        .list(&folder)
        .await
        .expect("list")
        .into_iter()
        .filter_map(|m| {
            let name = m.key.rsplit('/').next()?.to_string();
            let run = name.strip_prefix("part-")?.rsplit_once('-')?.0.to_string();
            (name != SPARK).then_some(run)
        })
        .collect();
    runs.dedup();
    runs
}

/// One full run of `day` through `store`: lease, parts of every crash table, publish, release.
/// Stops at the first error, discarding (as DayWriter does) unless `abort`.
async fn one_run(
    store: &DayStore,
    day: NaiveDate,
    run: &str,
    ttl: chrono::Duration,
    abort: bool,
) -> Result<(), StoreError> {
    let lease = store
        .acquire_lease(&CONVERSATIONS, day, &RunId(run.into()), ttl)
        .await?;
    // The heartbeat would interleave calls at random points: this run goes without one.
    store.stall_heartbeats();
    let r = async {
        let mut files = Vec::new();
        for t in CRASH_TABLES {
            let (mut up, key) = store.create_part(&lease, t, 0).await?;
            let body = Bytes::from(format!("{run}:{t}:0"));
            up.write(body.clone()).await?;
            up.complete().await?;
            files.push(ManifestFile {
                table: t.to_string(),
                key,
                rows: 1,
                bytes: body.len() as u64,
                crc64nvme: String::new(),
            });
        }
        store.publish(&lease, &manifest(&lease, files)).await
    }
    .await;
    if r.is_err() {
        if abort {
            return r;
        }
        let _ = store.discard(&lease).await;
    }
    let _ = store.release_lease(&lease).await;
    r
}

async fn crash_at_every_step(make: &dyn Fn(usize) -> (Arc<dyn ObjectStorage>, Visibility)) {
    let ttl = chrono::Duration::milliseconds(300);
    let hour = chrono::Duration::hours(1);
    let day = date();
    // How many storage calls a whole run makes (run 1 published first, as in every case).
    let calls = {
        let (s, vis) = make(0);
        let store = DayStore::new(s.clone(), vis.clone());
        one_run(&store, day, "run-1", hour, false)
            .await
            .expect("run 1");
        let f = Faulty::new(s, usize::MAX, Crash::Fail);
        let store = DayStore::new(Arc::new(FaultyStorage(f.clone())), vis.clone());
        one_run(&store, day, "run-2", hour, false)
            .await
            .expect("run 2");
        f.calls.load(Ordering::SeqCst)
    };
    assert!(calls > 10, "a run makes {calls} calls");
    let mut committed = [0, 0];
    for at in 1..=calls {
        for (m, mode) in [Crash::Fail, Crash::Abort].into_iter().enumerate() {
            let (s, vis) = make(1 + at * 2 + m);
            let store = DayStore::new(s.clone(), vis.clone());
            one_run(&store, day, "run-1", hour, false)
                .await
                .expect("run 1");
            let spark = format!("segments/conversation_date={day}/{SPARK}");
            s.put(&spark, Bytes::from_static(b"spark"), PutMode::Overwrite)
                .await
                .expect("foreign file");

            let f = Faulty::new(s.clone(), at, mode);
            let crashing = DayStore::new(Arc::new(FaultyStorage(f)), vis.clone());
            // A failure after the publish (renewing or releasing the lease) does not fail it.
            let _ = one_run(&crashing, day, "run-2", ttl, mode == Crash::Abort).await;
            drop(crashing);
            let ctx = format!("after call {at} of {calls} ({mode:?})");
            // Readers of a swapped folder see exactly one run (the folders are exchanged in one
            // step), and so do readers of a Glue partition (it points at one run's folder);
            // readers that list an S3 partition can see both until the publish is finished.
            if !matches!(vis, Visibility::CopyParts) {
                for t in CRASH_TABLES {
                    let runs = runs_visible(&s, &vis, t, day).await;
                    assert_eq!(runs.len(), 1, "{ctx}: {t} shows runs {runs:?}");
                }
            }
            // The crashed run's lease lapses within its ttl.
            tokio::time::sleep(Duration::from_millis(350)).await;

            // A run of another day finishes an interrupted publish of this one.
            let other = DayStore::new(s.clone(), vis.clone());
            one_run(&other, other_day(), "run-x", hour, false)
                .await
                .unwrap_or_else(|e| panic!("{ctx}: another day's run: {e}"));
            let pointer = other
                .manifest(&CONVERSATIONS, day)
                .await
                .expect("manifest")
                .expect("pointer");
            let shown = pointer.run_id.0.clone();
            assert!(shown == "run-1" || shown == "run-2", "{ctx}: {shown}");
            if shown == "run-2" {
                committed[m] += 1;
            }
            for t in CRASH_TABLES {
                assert_eq!(
                    runs_visible(&s, &vis, t, day).await,
                    [shown.as_str()],
                    "{ctx}: {t}"
                );
            }
            let (body, _) = s
                .get(&spark)
                .await
                .expect("get")
                .expect("the foreign file survives");
            assert_eq!(body.as_ref(), b"spark", "{ctx}");

            // The next run of the day publishes it exactly.
            let next = DayStore::new(s.clone(), vis.clone());
            one_run(&next, day, "run-3", hour, false)
                .await
                .unwrap_or_else(|e| panic!("{ctx}: the next run: {e}"));
            for t in CRASH_TABLES {
                assert_eq!(
                    runs_visible(&s, &vis, t, day).await,
                    ["run-3"],
                    "{ctx}: {t}"
                );
            }
            assert!(
                s.get(&spark).await.expect("get").is_some(),
                "{ctx}: spark file"
            );
            // In catalog mode a published run stays (tagged) for queries planned before; one
            // that never reached its commit point goes, folders and manifest.
            let kept = matches!(vis, Visibility::Catalog { .. }) && shown == "run-2";
            let left: Vec<String> = s
                .list("")
                .await
                .expect("list")
                .into_iter()
                .map(|m| m.key)
                .filter(|k| {
                    (k.contains("run-2") && !kept)
                        || k.starts_with("_staging/")
                        || k.starts_with("_leases/")
                })
                .collect();
            assert!(left.is_empty(), "{ctx}: left behind: {left:?}");
            assert!(
                s.open_uploads("").await.expect("uploads").is_empty(),
                "{ctx}: open uploads"
            );
        }
    }
    // The sweep covered both sides of the commit point.
    assert!(
        committed.iter().all(|c| *c > 0 && *c < calls),
        "{committed:?} of {calls}"
    );
}

#[tokio::test]
async fn memory_crash_at_every_step() {
    crash_at_every_step(&|_| (Arc::new(MemoryStorage::new()), Visibility::SwapFolders)).await;
    crash_at_every_step(&|_| (Arc::new(MemoryStorage::new()), Visibility::CopyParts)).await;
}

#[tokio::test]
async fn local_crash_at_every_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_path_buf();
    crash_at_every_step(&move |i| {
        let s = LocalStorage::new(root.join(format!("case-{i}"))).expect("storage");
        (Arc::new(s), Visibility::SwapFolders)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_crash_at_every_step() {
    let s3 = S3::new().await;
    let client = s3.client.clone();
    crash_at_every_step(&move |i| {
        let s = S3Storage::new(client.clone(), BUCKET, &format!("case-{i}"));
        (Arc::new(s), Visibility::CopyParts)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_crash_at_every_step() {
    let b = S3Catalog::new().await;
    let client = b.s3.client.clone();
    let glue = Arc::new(GlueCatalog::new(glue_client(&b.s3._moto.url), DATABASE));
    crash_at_every_step(&move |i| {
        let s = S3Storage::new(client.clone(), BUCKET, &format!("case-{i}"));
        let vis = Visibility::Catalog {
            glue: glue.clone(),
            s3: s.clone(),
        };
        (Arc::new(s), vis)
    })
    .await;
}

/// Holds the commit write (the lease put to `publishing`) for longer than a heartbeat period,
/// so that a beat falls inside it.
#[derive(Debug)]
struct SlowCommit {
    inner: Arc<dyn ObjectStorage>,
    hold: Duration,
}

#[async_trait]
impl ObjectStorage for SlowCommit {
    fn location(&self, key: &str) -> String {
        self.inner.location(key)
    }
    async fn put(&self, key: &str, data: Bytes, mode: PutMode) -> Result<Version, StoreError> {
        let committing = key.starts_with("_leases/")
            && String::from_utf8_lossy(&data).contains("\"publishing\"");
        if committing {
            tokio::time::sleep(self.hold).await;
        }
        self.inner.put(key, data, mode).await
    }
    async fn get(&self, key: &str) -> Result<Option<(Bytes, Version)>, StoreError> {
        self.inner.get(key).await
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str, if_match: Option<&Version>) -> Result<(), StoreError> {
        self.inner.delete(key, if_match).await
    }
    async fn copy(&self, from: &str, to: &str) -> Result<(), StoreError> {
        self.inner.copy(from, to).await
    }
    async fn upload(&self, key: &str) -> Result<Box<dyn Upload>, StoreError> {
        self.inner.upload(key).await
    }
    async fn open_uploads(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.open_uploads(prefix).await
    }
    async fn abort_uploads(&self, prefix: &str) -> Result<(), StoreError> {
        self.inner.abort_uploads(prefix).await
    }
}

/// A heartbeat that renews the lease while the run commits is not mistaken for another run
/// taking it over: the commit and the renewal are written one after the other, each from the
/// version the other left, and the lease is released (not left to lapse) afterwards.
#[tokio::test]
async fn a_heartbeat_during_the_commit_does_not_lose_the_lease() {
    let s: Arc<dyn ObjectStorage> = Arc::new(MemoryStorage::new());
    // Beats every 200 ms; the commit write takes 500 ms, so at least two beats fall inside it.
    let ttl = chrono::Duration::milliseconds(600);
    let slow = Arc::new(SlowCommit {
        inner: s.clone(),
        hold: Duration::from_millis(500),
    });
    let store: Arc<dyn Store> = Arc::new(DayStore::new(slow, Visibility::CopyParts));
    let (lease, files) = write_run(&store, "run-1", &["segments"], 1, ttl).await;
    store
        .publish(&lease, &manifest(&lease, files))
        .await
        .expect("the run holding the lease publishes");
    // The heartbeat still holds the lease: it has not taken the commit for a take-over.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (body, _) = s
        .get(&format!(
            "_leases/conversations/conversation_date={}.json",
            date()
        ))
        .await
        .expect("get")
        .expect("the lease is still held");
    let rec: serde_json::Value = serde_json::from_slice(&body).expect("lease json");
    assert_eq!(rec["run"], "run-1");
    let expires: chrono::DateTime<Utc> = rec["expires"]
        .as_str()
        .expect("expires")
        .parse()
        .expect("time");
    assert!(expires > Utc::now(), "renewed: {rec}");
    store.release_lease(&lease).await.expect("release");
    assert!(s.list("_leases/").await.expect("list").is_empty());
    let pointer = store
        .manifest(&CONVERSATIONS, date())
        .await
        .expect("manifest")
        .expect("pointer");
    assert_eq!(pointer.run_id.0, "run-1");
}

/// `--lease-wait`: a run waits for a day another run holds, and takes it once that run's lease
/// lapses (it stalled); without waiting it is refused at once.
#[tokio::test]
async fn a_run_waits_for_a_held_lease_when_asked() {
    let s: Arc<dyn ObjectStorage> = Arc::new(MemoryStorage::new());
    let first = DayStore::new(s.clone(), Visibility::SwapFolders);
    first
        .acquire_lease(
            &CONVERSATIONS,
            date(),
            &RunId("first".into()),
            chrono::Duration::milliseconds(800),
        )
        .await
        .expect("lease");
    first.stall_heartbeats();
    let impatient = DayStore::new(s.clone(), Visibility::SwapFolders);
    let err = impatient
        .acquire_lease(
            &CONVERSATIONS,
            date(),
            &RunId("impatient".into()),
            chrono::Duration::minutes(2),
        )
        .await
        .expect_err("held");
    assert!(matches!(err, StoreError::LeaseHeld { .. }), "{err}");
    let patient =
        DayStore::new(s.clone(), Visibility::SwapFolders).with_lease_wait(Duration::from_secs(10));
    let t0 = Instant::now();
    let lease = patient
        .acquire_lease(
            &CONVERSATIONS,
            date(),
            &RunId("patient".into()),
            chrono::Duration::minutes(2),
        )
        .await
        .expect("taken once the first lease lapsed");
    assert_eq!(lease.run.0, "patient");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    // A live holder (its heartbeat running) keeps the day for longer than the wait.
    let late = DayStore::new(s.clone(), Visibility::SwapFolders)
        .with_lease_wait(Duration::from_millis(1500));
    let err = late
        .acquire_lease(
            &CONVERSATIONS,
            date(),
            &RunId("late".into()),
            chrono::Duration::minutes(2),
        )
        .await
        .expect_err("still held");
    assert!(err.to_string().contains("patient"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Upgrade from the previous release's layout (the `LocalStore` / `S3Store` removed in c61b855):
// its keys written here directly, in its formats; the first new run of the day replaces its
// visible run exactly (also when the old publish was left in flight), and a file no old record
// names survives.

/// Which of the old stores wrote the day.
#[derive(Debug, Clone, Copy, PartialEq)]
enum OldStore {
    /// `LocalStore`: `part-NNNNN.parquet`, a `_PUBLISH.json` journal while publishing.
    Local,
    /// `S3Store`: `part-R-NNNNN.parquet`, run manifests, raw under `run=R/`.
    S3,
    /// `S3Store` with a Glue catalog: a run's own folder `run=R/part-NNNNN.parquet`.
    Catalog,
}

fn old_manifest(run: &str, files: &[(&str, String)]) -> Manifest {
    Manifest {
        date: date(),
        run_id: RunId(run.into()),
        interval: "2026-11-20T00:00:00Z/2026-11-21T00:00:00Z".into(),
        partial_day: false,
        schema_version: "1".into(),
        tool_version: "0.1.0".into(),
        started: Utc::now(),
        finished: Utc::now(),
        type_mismatches: 0,
        open: 0,
        conversations: 3,
        rows: files.iter().map(|(t, _)| (t.to_string(), 1)).collect(),
        files: files
            .iter()
            .map(|(t, k)| ManifestFile {
                table: t.to_string(),
                key: k.clone(),
                rows: 1,
                bytes: 1,
                crc64nvme: String::new(),
            })
            .collect(),
    }
}

/// The old stores' key of part `p` of `table` for `run`, once visible.
fn old_part(old: OldStore, run: &str, table: &str, p: u32) -> String {
    let d = date();
    match old {
        OldStore::Local => format!("{table}/conversation_date={d}/part-{p:05}.parquet"),
        OldStore::S3 => format!("{table}/conversation_date={d}/part-{run}-{p:05}.parquet"),
        OldStore::Catalog => format!("{table}/conversation_date={d}/run={run}/part-{p:05}.parquet"),
    }
}

/// A run of the old release: two parts of segments, one of sessions, one raw page. Returns
/// its manifest (raw key as the old `DayWriter::write_raw` recorded it: without `run=R/`).
fn old_run(old: OldStore, run: &str) -> Manifest {
    old_manifest(
        run,
        &[
            ("segments", old_part(old, run, "segments", 0)),
            ("segments", old_part(old, run, "segments", 1)),
            ("sessions", old_part(old, run, "sessions", 0)),
            (
                "_raw",
                format!("_raw/conversation_date={}/pages-00001.ndjson.gz", date()),
            ),
        ],
    )
}

/// Where the old store wrote a file of `m` (raw pages: under `run=R/` on S3).
fn old_location(old: OldStore, m: &Manifest, f: &ManifestFile) -> String {
    if f.table == "_raw" && old != OldStore::Local {
        let (dir, name) = f.key.rsplit_once('/').expect("raw key");
        return format!("{dir}/run={}/{name}", m.run_id.0);
    }
    f.key.clone()
}

async fn put(s: &Arc<dyn ObjectStorage>, key: &str, body: impl Into<Bytes>) {
    s.put(key, body.into(), PutMode::Overwrite)
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
}

async fn put_json(s: &Arc<dyn ObjectStorage>, key: &str, v: &impl serde::Serialize) {
    put(s, key, serde_json::to_vec_pretty(v).expect("json")).await;
}

/// Each file's content names its run and table, as the suite's other runs do.
fn body_of(m: &Manifest, f: &ManifestFile) -> String {
    format!("{}:{}:{}", m.run_id.0, f.table, f.key)
}

/// The old lease object (`sink::Lease` of the old release).
fn old_lease(run: &str, expires: chrono::DateTime<Utc>, holder: &str) -> serde_json::Value {
    serde_json::json!({
        "date": date(), "run": run, "since": Utc::now() - chrono::Duration::hours(3),
        "expires": expires, "holder": holder,
    })
}

/// Writes day [`date`] as the old release left it: `old-1` published; with `in_flight`, run
/// `old-2` committed but its publish interrupted (local: after moving segments, before
/// sessions; S3: after copying segments, before sessions and the sweep; catalog: segments
/// registered, the rest not), and a dead run `old-3`'s staging. A Spark file of another tool
/// lies in segments' partition (local in flight: set aside with the old partition, as the old
/// code moved whole folders).
async fn write_old_layout(
    s: &Arc<dyn ObjectStorage>,
    vis: &Visibility,
    old: OldStore,
    in_flight: bool,
) -> Manifest {
    let d = date();
    let part = format!("conversation_date={d}");
    let m1 = old_run(old, "old-1");
    for f in &m1.files {
        put(s, &old_location(old, &m1, f), body_of(&m1, f)).await;
    }
    put_json(s, &format!("_manifests/{part}.json"), &m1).await;
    if old != OldStore::Local {
        put_json(s, &format!("_manifests/{part}/run=old-1.json"), &m1).await;
    } else {
        put(s, &format!("_leases/{part}.lock"), Bytes::new()).await;
    }
    let expired = Utc::now() - chrono::Duration::hours(1);
    put_json(
        s,
        &format!("_leases/{part}.json"),
        &old_lease("old-1", expired, "gone/1"),
    )
    .await;
    let spark_at = format!("segments/{part}/{SPARK}");
    if let Visibility::Catalog { glue, s3 } = vis {
        glue.register(&CONVERSATIONS, d, |t| {
            format!(
                "s3://{}/{}/",
                s3.bucket(),
                s3.full_key(&format!("{t}/{part}/run=old-1"))
            )
        })
        .await
        .expect("register old-1");
    }
    if !in_flight {
        put(s, &spark_at, Bytes::from_static(b"spark")).await;
        return m1;
    }
    let m2 = old_run(old, "old-2");
    let staging = format!("_staging/{part}/run=old-2/");
    put_json(
        s,
        &format!("_leases/{part}.json"),
        &old_lease("old-2", expired, "gone/2"),
    )
    .await;
    // A dead run that never published: its staging only.
    put(
        s,
        &format!("_staging/{part}/run=old-3/segments/{part}/part-old-3-00000.parquet"),
        "old-3:segments",
    )
    .await;
    match old {
        OldStore::Local => {
            put_json(s, &format!("{staging}_PUBLISH.json"), &m2).await;
            for f in &m2.files {
                let body = body_of(&m2, f);
                if f.table == "segments" {
                    // Moved already; old-1's segments (and the Spark file) set aside.
                    let aside = format!("{staging}_old/segments/");
                    for g in m1.files.iter().filter(|g| g.table == "segments") {
                        s.delete(&g.key, None).await.expect("delete");
                        let name = g.key.rsplit('/').next().expect("name");
                        put(s, &format!("{aside}{name}"), body_of(&m1, g)).await;
                    }
                    put(s, &format!("{aside}{SPARK}"), Bytes::from_static(b"spark")).await;
                    put(s, &f.key, body).await;
                } else {
                    put(s, &format!("{staging}{}", f.key), body).await;
                }
            }
        }
        OldStore::S3 => {
            put_json(s, &format!("_manifests/{part}/run=old-2.json"), &m2).await;
            put_json(s, &format!("_manifests/{part}.json"), &m2).await;
            put(s, &spark_at, Bytes::from_static(b"spark")).await;
            for f in &m2.files {
                let body = body_of(&m2, f);
                if f.table == "_raw" {
                    put(s, &old_location(old, &m2, f), body).await;
                    continue;
                }
                put(s, &format!("{staging}{}", f.key), body.clone()).await;
                if f.table == "segments" {
                    put(s, &f.key, body).await;
                }
            }
        }
        OldStore::Catalog => {
            put_json(s, &format!("_manifests/{part}/run=old-2.json"), &m2).await;
            put_json(s, &format!("_manifests/{part}.json"), &m2).await;
            put(s, &spark_at, Bytes::from_static(b"spark")).await;
            for f in &m2.files {
                put(s, &old_location(old, &m2, f), body_of(&m2, f)).await;
            }
            let Visibility::Catalog { glue, s3 } = vis else {
                unreachable!()
            };
            // Registered for segments only: the old publish stopped between tables.
            let _ = glue
                .register(&CONVERSATIONS, d, |t| {
                    let run = if t == "conversations" || t == "segments" {
                        "old-2"
                    } else {
                        "old-1"
                    };
                    format!(
                        "s3://{}/{}/",
                        s3.bucket(),
                        s3.full_key(&format!("{t}/{part}/run={run}"))
                    )
                })
                .await;
        }
    }
    m2
}

/// The runs a reader sees in `table`'s partition of [`date`], by the content of each file
/// (old local file names do not carry the run), the foreign file aside.
async fn runs_read(s: &Arc<dyn ObjectStorage>, vis: &Visibility, table: &str) -> Vec<String> {
    let d = date();
    let folder = match vis {
        Visibility::Catalog { glue, .. } => {
            let Some(loc) = glue.location(table, d).await.expect("partition") else {
                return Vec::new();
            };
            let root = format!("{}/", s.location(""));
            loc.strip_prefix(&root).expect("under the root").to_string()
        }
        _ => format!("{table}/conversation_date={d}/"),
    };
    let mut runs = Vec::new();
    for m in s.list(&folder).await.expect("list") {
        if m.key.ends_with(SPARK) {
            continue;
        }
        // Listing readers see the partition's files, not a catalog's run folders below it.
        if !matches!(vis, Visibility::Catalog { .. }) && m.key[folder.len()..].contains('/') {
            continue;
        }
        let (body, _) = s.get(&m.key).await.expect("get").expect("listed");
        let body = String::from_utf8_lossy(&body).to_string();
        runs.push(body.split(':').next().unwrap_or("").to_string());
    }
    runs.sort();
    runs.dedup();
    runs
}

async fn upgrade_from_the_old_layout(
    s: Arc<dyn ObjectStorage>,
    vis: Visibility,
    old: OldStore,
    in_flight: bool,
) {
    let ctx = format!("{old:?}, in flight: {in_flight}");
    let hour = chrono::Duration::hours(1);
    let part = format!("conversation_date={}", date());
    let shown = write_old_layout(&s, &vis, old, in_flight).await;
    let shown = shown.run_id.0.as_str();
    let store = DayStore::new(s.clone(), vis.clone());

    // An old-release run still alive holds the day; the new run is refused, and its own new
    // lease is not left behind.
    if !in_flight {
        let live = Utc::now() + chrono::Duration::minutes(30);
        put_json(
            &s,
            &format!("_leases/{part}.json"),
            &old_lease("old-live", live, "elsewhere/7"),
        )
        .await;
        let err = store
            .acquire_lease(&CONVERSATIONS, date(), &RunId("run-new".into()), hour)
            .await
            .expect_err(&ctx);
        assert!(matches!(err, StoreError::LeaseHeld { .. }), "{ctx}: {err}");
        assert!(err.to_string().contains("old-live"), "{ctx}: {err}");
        put_json(
            &s,
            &format!("_leases/{part}.json"),
            &old_lease("old-live", Utc::now(), "elsewhere/7"),
        )
        .await;
    }

    // Taking the day upgrades it: the old visible run (finished, if it was in flight) is the
    // one run readers see and the day's manifest.
    let lease = store
        .acquire_lease(&CONVERSATIONS, date(), &RunId("run-new".into()), hour)
        .await
        .unwrap_or_else(|e| panic!("{ctx}: {e}"));
    store.stall_heartbeats();
    for t in ["segments", "sessions"] {
        assert_eq!(
            runs_read(&s, &vis, t).await,
            [shown],
            "{ctx}: {t} before the publish"
        );
    }
    assert_eq!(
        store
            .manifest(&CONVERSATIONS, date())
            .await
            .expect("manifest")
            .map(|m| m.run_id.0)
            .as_deref(),
        Some(shown),
        "{ctx}"
    );

    // The new run replaces it exactly: one run in each table, a table without new rows
    // emptied; the foreign file kept; nothing of the old runs or records left (catalog mode
    // keeps superseded runs for the lifecycle rule).
    let (mut up, key) = store
        .create_part(&lease, "segments", 0)
        .await
        .expect("part");
    up.write(Bytes::from_static(b"run-new:segments:0"))
        .await
        .expect("write");
    up.complete().await.expect("complete");
    let files = vec![ManifestFile {
        table: "segments".into(),
        key,
        rows: 1,
        bytes: 18,
        crc64nvme: String::new(),
    }];
    store
        .publish(&lease, &manifest(&lease, files))
        .await
        .unwrap_or_else(|e| panic!("{ctx}: {e}"));
    store.release_lease(&lease).await.expect("release");
    assert_eq!(runs_read(&s, &vis, "segments").await, ["run-new"], "{ctx}");
    assert!(runs_read(&s, &vis, "sessions").await.is_empty(), "{ctx}");
    let (spark, _) = s
        .get(&format!("segments/{part}/{SPARK}"))
        .await
        .expect("get")
        .unwrap_or_else(|| panic!("{ctx}: the foreign file survives"));
    assert_eq!(spark.as_ref(), b"spark");
    let catalog = matches!(vis, Visibility::Catalog { .. });
    for m in s.list("").await.expect("list") {
        let k = &m.key;
        assert!(
            !k.starts_with(&format!("_manifests/{part}"))
                && !k.starts_with(&format!("_staging/{part}"))
                && !k.starts_with(&format!("_leases/{part}")),
            "{ctx}: old record left: {k}"
        );
        if k.starts_with("_manifests/")
            || k.starts_with("_leases/")
            || k.ends_with(SPARK)
            || (catalog && !k.starts_with("_raw/"))
        {
            continue;
        }
        let (body, _) = s.get(k).await.expect("get").expect("listed");
        assert!(
            !body.starts_with(b"old-"),
            "{ctx}: an old run's file left: {k}"
        );
    }
    assert!(
        s.open_uploads("").await.expect("uploads").is_empty(),
        "{ctx}"
    );
}

#[tokio::test]
async fn memory_upgrade_from_the_old_layout() {
    for in_flight in [false, true] {
        upgrade_from_the_old_layout(
            Arc::new(MemoryStorage::new()),
            Visibility::SwapFolders,
            OldStore::Local,
            in_flight,
        )
        .await;
        upgrade_from_the_old_layout(
            Arc::new(MemoryStorage::new()),
            Visibility::CopyParts,
            OldStore::S3,
            in_flight,
        )
        .await;
    }
}

#[tokio::test]
async fn local_upgrade_from_the_old_layout() {
    for in_flight in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = LocalStorage::new(dir.path().join("out")).expect("storage");
        upgrade_from_the_old_layout(
            Arc::new(s),
            Visibility::SwapFolders,
            OldStore::Local,
            in_flight,
        )
        .await;
    }
}

#[tokio::test]
async fn s3_upgrade_from_the_old_layout() {
    let s3 = S3::new().await;
    for in_flight in [false, true] {
        let s = S3Storage::new(s3.client.clone(), BUCKET, &format!("upgrade-{in_flight}"));
        upgrade_from_the_old_layout(Arc::new(s), Visibility::CopyParts, OldStore::S3, in_flight)
            .await;
    }
}

#[tokio::test]
async fn catalog_upgrade_from_the_old_layout() {
    for in_flight in [false, true] {
        let b = S3Catalog::new().await;
        let s = S3Storage::new(b.s3.client.clone(), BUCKET, PREFIX);
        let glue = Arc::new(GlueCatalog::new(glue_client(&b.s3._moto.url), DATABASE));
        let vis = Visibility::Catalog {
            glue,
            s3: s.clone(),
        };
        upgrade_from_the_old_layout(Arc::new(s), vis, OldStore::Catalog, in_flight).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Glue failures while a committed run is registered (catalog mode): a call throttled after the
// SDK's retries, or a table gone (deleted after the run checked it, as a redeploy might), at
// each registration step. The day is never stuck: a run of another day rolls the registration
// forward to completion (once the table is back), and at every moment no table points at a
// folder that was swept.

use aws_sdk_glue::config::interceptors::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextMut,
};
use aws_sdk_glue::config::{ConfigBag, Intercept, RuntimeComponents};

/// Fails the n-th registration call (UpdatePartition or CreatePartition) a client makes once
/// armed, with a `ThrottlingException` (as Glue answers, status 400). The request reaches moto
/// for a database that does not exist, so it has no effect.
#[derive(Debug, Default)]
struct GlueThrottle(std::sync::Mutex<ThrottleState>);

#[derive(Debug, Default)]
struct ThrottleState {
    fail_at: Option<usize>,
    seen: usize,
    fired: usize,
    now: bool,
}

impl GlueThrottle {
    fn arm(&self, at: usize) {
        *self.0.lock().expect("lock") = ThrottleState {
            fail_at: Some(at),
            ..Default::default()
        };
    }

    fn fired(&self) -> usize {
        self.0.lock().expect("lock").fired
    }
}

#[derive(Debug, Clone)]
struct GlueThrottleHook(Arc<GlueThrottle>);

impl Intercept for GlueThrottleHook {
    fn name(&self) -> &'static str {
        "glue-throttle"
    }

    fn modify_before_transmit(
        &self,
        ctx: &mut BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), aws_sdk_glue::error::BoxError> {
        let target = ctx
            .request()
            .headers()
            .get("x-amz-target")
            .unwrap_or("")
            .to_string();
        let mut st = self.0 .0.lock().expect("lock");
        st.now = false;
        if target.ends_with(".UpdatePartition") || target.ends_with(".CreatePartition") {
            st.seen += 1;
            if st.fail_at == Some(st.seen) {
                st.now = true;
                st.fired += 1;
                let body = ctx.request().body().bytes().unwrap_or_default();
                let body = String::from_utf8_lossy(body).replace(
                    &format!("\"DatabaseName\":\"{DATABASE}\""),
                    "\"DatabaseName\":\"xx\"",
                );
                *ctx.request_mut().body_mut() = body.into();
            }
        }
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        ctx: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), aws_sdk_glue::error::BoxError> {
        if self.0 .0.lock().expect("lock").now {
            let r = ctx.response_mut();
            *r.status_mut() = 400u16.try_into()?;
            r.headers_mut().remove("x-amzn-errortype");
            r.headers_mut().remove("content-length");
            *r.body_mut() = r#"{"__type":"ThrottlingException","message":"Rate exceeded."}"#.into();
        }
        Ok(())
    }
}

/// Creates one output table as the template does (`create_glue_tables` does them all).
async fn create_glue_table(glue: &aws_sdk_glue::Client, name: &str) {
    use aws_sdk_glue::types::{Column, StorageDescriptor, TableInput};
    let sd = StorageDescriptor::builder()
        .location(format!("s3://{BUCKET}/{PREFIX}/{name}/"))
        .columns(
            Column::builder()
                .name("conversation_id")
                .r#type("string")
                .build()
                .expect("col"),
        )
        .input_format("org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat")
        .build();
    glue.create_table()
        .database_name(DATABASE)
        .table_input(
            TableInput::builder()
                .name(name)
                .storage_descriptor(sd)
                .partition_keys(
                    Column::builder()
                        .name("conversation_date")
                        .r#type("string")
                        .build()
                        .expect("col"),
                )
                .build()
                .expect("table"),
        )
        .send()
        .await
        .expect("create table");
}

/// What Athena reads of `day`: the run each table's partition points at (`None`: no
/// partition). Every file that run's manifest lists for the table is there: no table points at
/// a swept folder.
async fn athena_view(
    s: &Arc<dyn ObjectStorage>,
    glue: &GlueCatalog,
    day: NaiveDate,
    ctx: &str,
) -> Vec<Option<String>> {
    let mut out = Vec::new();
    // The tables a conversations run registers (the day is the conversations dataset's).
    for t in CONVERSATIONS.tables {
        let Some(loc) = glue.location(t.name(), day).await.expect("partition") else {
            out.push(None);
            continue;
        };
        let run = loc
            .trim_end_matches('/')
            .rsplit_once("/run=")
            .map(|(_, r)| r.to_string())
            .unwrap_or_else(|| panic!("{ctx}: {loc} is not a run folder"));
        let key = format!("_manifests/conversations/conversation_date={day}/run={run}.json");
        let (body, _) = s.get(&key).await.expect("get").unwrap_or_else(|| {
            panic!(
                "{ctx}: {} points at run {run}, which has no manifest",
                t.name()
            )
        });
        let m: Manifest = serde_json::from_slice(&body).expect("manifest");
        for f in m.files.iter().filter(|f| f.table == t.name()) {
            assert!(
                s.head(&f.key).await.expect("head").is_some(),
                "{ctx}: {} points at run {run}, whose {} was swept",
                t.name(),
                f.key
            );
        }
        out.push(Some(run));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_glue_failures_leave_no_day_stuck() {
    let b = S3Catalog::new().await;
    let url = b.s3._moto.url.clone();
    let admin = glue_client(&url);
    let plain = Arc::new(GlueCatalog::new(glue_client(&url), DATABASE));
    let throttle = Arc::new(GlueThrottle::default());
    let throttled = aws_sdk_glue::Client::from_conf(
        glue_client(&url)
            .config()
            .to_builder()
            // The SDK retries a throttled call; this one is what is left after the retries.
            .retry_config(aws_sdk_glue::config::retry::RetryConfig::disabled())
            .interceptor(GlueThrottleHook(throttle.clone()))
            .build(),
    );
    let tables: Vec<&str> = CONVERSATIONS.tables.iter().map(|t| t.name()).collect();
    let n = tables.len();
    let hour = chrono::Duration::hours(1);
    let base: NaiveDate = "2026-01-01".parse().expect("date");
    let run = |s: &S3Storage, glue: &Arc<GlueCatalog>| {
        let vis = Visibility::Catalog {
            glue: glue.clone(),
            s3: s.clone(),
        };
        DayStore::new(Arc::new(s.clone()), vis)
    };
    for (case, missing) in (0..2 * n).map(|i| (i, i >= n)) {
        let step = case % n; // the registration call (the table) that fails
        let day = base + chrono::Duration::days(case as i64);
        let other = base + chrono::Duration::days(100 + case as i64);
        let s3 = S3Storage::new(b.s3.client.clone(), BUCKET, &format!("glue-{case}"));
        let s: Arc<dyn ObjectStorage> = Arc::new(s3.clone());
        let what = if missing {
            "table missing"
        } else {
            "throttled"
        };
        let ctx = format!(
            "{what} at registration step {} ({})",
            step + 1,
            tables[step]
        );

        one_run(&run(&s3, &plain), day, "run-1", hour, false)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: run 1: {e}"));
        assert!(athena_view(&s, &plain, day, &ctx)
            .await
            .iter()
            .all(|r| r.as_deref() == Some("run-1")));

        // Run 2 commits, then a registration call fails; it discards and releases as
        // DayWriter does.
        let err = if missing {
            let store = run(
                &s3,
                &Arc::new(GlueCatalog::new(glue_client(&url), DATABASE)),
            );
            let lease = store
                .acquire_lease(&CONVERSATIONS, day, &RunId("run-2".into()), hour)
                .await
                .expect("lease");
            store.stall_heartbeats();
            let mut files = Vec::new();
            for t in CRASH_TABLES {
                let (mut up, key) = store.create_part(&lease, t, 0).await.expect("part");
                up.write(Bytes::from(format!("run-2:{t}:0")))
                    .await
                    .expect("write");
                up.complete().await.expect("complete");
                files.push(ManifestFile {
                    table: t.to_string(),
                    key,
                    rows: 1,
                    bytes: 1,
                    crc64nvme: String::new(),
                });
            }
            admin
                .delete_table()
                .database_name(DATABASE)
                .name(tables[step])
                .send()
                .await
                .expect("delete table");
            let err = store
                .publish(&lease, &manifest(&lease, files))
                .await
                .expect_err(&ctx);
            store.discard(&lease).await.expect("discard");
            store.release_lease(&lease).await.expect("release");
            err
        } else {
            throttle.arm(step + 1);
            let store = run(
                &s3,
                &Arc::new(GlueCatalog::new(throttled.clone(), DATABASE)),
            );
            let err = one_run(&store, day, "run-2", hour, false)
                .await
                .expect_err(&ctx);
            assert_eq!(throttle.fired(), 1, "{ctx}");
            err
        };
        let msg = err.to_string();
        assert!(
            matches!(err, StoreError::Catalog { .. }) && msg.contains(tables[step]),
            "{ctx}: {msg}"
        );
        assert_eq!(err.is_transient(), !missing, "{ctx}: {msg}");
        // Tables before the failing one switched, the rest did not; none is at a swept folder.
        let view = athena_view(&s, &plain, day, &ctx).await;
        for (i, r) in view.iter().enumerate() {
            let want = match i.cmp(&step) {
                std::cmp::Ordering::Less => Some("run-2"),
                std::cmp::Ordering::Equal if missing => None,
                _ => Some("run-1"),
            };
            assert_eq!(r.as_deref(), want, "{ctx}: {}", tables[i]);
        }

        if missing {
            // While the table is missing, a run stops before writing anything, naming it.
            let err = one_run(&run(&s3, &plain), other, "run-x", hour, false)
                .await
                .expect_err(&ctx);
            assert!(err.to_string().contains(tables[step]), "{ctx}: {err}");
            assert_eq!(athena_view(&s, &plain, day, &ctx).await, view, "{ctx}");
            // Deployed again.
            create_glue_table(&admin, tables[step]).await;
        }
        // A run of another day (a new process) finishes the registration.
        one_run(
            &run(
                &s3,
                &Arc::new(GlueCatalog::new(glue_client(&url), DATABASE)),
            ),
            other,
            "run-x",
            hour,
            false,
        )
        .await
        .unwrap_or_else(|e| panic!("{ctx}: another day's run: {e}"));
        let view = athena_view(&s, &plain, day, &ctx).await;
        assert!(
            view.iter().all(|r| r.as_deref() == Some("run-2")),
            "{ctx}: {view:?}"
        );
        assert_eq!(
            runs_visible(
                &s,
                &Visibility::Catalog {
                    glue: plain.clone(),
                    s3: s3.clone()
                },
                "segments",
                day
            )
            .await,
            ["run-2"],
            "{ctx}"
        );
        // The next run of the day publishes as usual.
        one_run(&run(&s3, &plain), day, "run-3", hour, false)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: run 3: {e}"));
        let view = athena_view(&s, &plain, day, &ctx).await;
        assert!(
            view.iter().all(|r| r.as_deref() == Some("run-3")),
            "{ctx}: {view:?}"
        );
        assert!(s.list("_leases/").await.expect("list").is_empty(), "{ctx}");
    }
}

/// A reader that globs a local partition (as DuckDB does) while runs publish one after another
/// sees one whole run of the table at every instant: never an empty folder, never two runs, and
/// another tool's file throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_globbing_reader_sees_one_whole_run_at_every_instant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("out");
    let store: Arc<dyn Store> = Arc::new(DayStore::local(&root).expect("store"));
    const PARTS: usize = 3;
    let publish = |run: String| {
        let store = store.clone();
        async move {
            let lease = store
                .acquire_lease(
                    &CONVERSATIONS,
                    date(),
                    &RunId(run.clone()),
                    chrono::Duration::hours(1),
                )
                .await
                .expect("lease");
            let mut files = Vec::new();
            for p in 0..PARTS {
                let (mut up, key) = store
                    .create_part(&lease, "segments", p as u32)
                    .await
                    .expect("part");
                up.write(Bytes::from(format!("{run}:{p}")))
                    .await
                    .expect("write");
                up.complete().await.expect("complete");
                files.push(ManifestFile {
                    table: "segments".into(),
                    key,
                    rows: 1,
                    bytes: 1,
                    crc64nvme: String::new(),
                });
            }
            store
                .publish(&lease, &manifest(&lease, files))
                .await
                .expect("publish");
            store.release_lease(&lease).await.expect("release");
        }
    };
    publish("run-000".into()).await;
    let folder = root.join(format!("segments/conversation_date={}", date()));
    std::fs::write(folder.join(SPARK), b"spark").expect("foreign file");
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, folder) = (stop.clone(), folder.clone());
        std::thread::spawn(move || {
            let (mut seen, mut spanned, mut bad) = (0u64, 0u64, Vec::new());
            let ino = |p: &std::path::Path| {
                use std::os::unix::fs::MetadataExt;
                std::fs::metadata(p).map(|m| m.ino())
            };
            while !stop.load(Ordering::SeqCst) {
                // A listing is not one instant: one that spans a swap of the folder (its inode
                // changed meanwhile) read the folder being replaced, as a reader that opened it
                // just before would; a glob is retried then. Every listing of the folder that
                // was in place throughout must show one whole run.
                let Ok(before) = ino(&folder) else {
                    bad.push("no folder".to_string());
                    continue;
                };
                let names: Vec<String> = match std::fs::read_dir(&folder) {
                    Ok(rd) => rd
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().to_string())
                        .filter(|n| n.ends_with(".parquet"))
                        .collect(),
                    Err(e) => {
                        bad.push(format!("no folder: {e}"));
                        continue;
                    }
                };
                if ino(&folder).ok() != Some(before) {
                    spanned += 1;
                    continue;
                }
                let mut runs: Vec<&str> = names
                    .iter()
                    .filter(|n| n.as_str() != SPARK)
                    .filter_map(|n| Some(n.strip_prefix("part-")?.rsplit_once('-')?.0))
                    .collect();
                runs.sort();
                runs.dedup();
                let parts = names.len() - usize::from(names.iter().any(|n| n == SPARK));
                if runs.len() != 1 || parts != PARTS || !names.iter().any(|n| n == SPARK) {
                    bad.push(format!("{names:?}"));
                }
                seen += 1;
            }
            (seen, spanned, bad)
        })
    };
    for i in 1..=60 {
        publish(format!("run-{i:03}")).await;
    }
    stop.store(true, Ordering::SeqCst);
    let (seen, spanned, bad) = reader.join().expect("reader");
    assert!(
        bad.is_empty(),
        "{} of {seen} listings were not one whole run: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    assert!(
        seen > 100 && spanned < seen / 10,
        "the reader listed the folder {seen} times ({spanned} more spanned a swap)"
    );
}
