//! The extract pipeline against the simulator (port 0) and a local store: failures that cannot
//! depend on the day stop the run at once (issue 13 §6), and the invocation deadline holds
//! inside a page, not only between pages (issue 12 §2).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use chrono::NaiveDate;
use genesys_parquet::datasets::conversations::DATASET as CONVERSATIONS;
use genesys_parquet::genesys::{ClientConfig, Credentials, GenesysClient, Hosts, Mode};
use genesys_parquet::interval::Interval;
use genesys_parquet::pipeline::{self, NoProgress, PipelineConfig, RunSummary};
use genesys_parquet::simulator::{self, ExtractBehaviour, SimConfig, SimHandle};
use genesys_parquet::sink::{DayStore, RunId, Store};
use serde_json::json;

const END_DATE: &str = "2026-10-20";

fn date(s: &str) -> NaiveDate {
    s.parse().expect("date")
}

fn sim_config(seed: u64, per_day: u32) -> SimConfig {
    SimConfig {
        seed,
        per_day,
        end_date: Some(date(END_DATE)),
        job_ready_after_ms: 60,
        extract: ExtractBehaviour {
            availability_date: Some("2026-10-21T00:00:00Z".parse().expect("time")),
            ..Default::default()
        },
        ..SimConfig::default()
    }
}

fn client_for(api: &str, secret: &str) -> GenesysClient {
    let mut cfg = ClientConfig::new(
        Hosts::custom(api, api).expect("hosts"),
        Credentials::new("demo".to_string(), secret.to_string()),
    );
    cfg.requests_per_minute = 100_000;
    cfg.job_poll_initial = Duration::from_millis(20);
    cfg.job_poll_max = Duration::from_millis(60);
    cfg.retry.initial_backoff = Duration::from_millis(5);
    cfg.retry.max_backoff = Duration::from_millis(20);
    cfg.retry.max_attempts = 3;
    GenesysClient::new(cfg).expect("client")
}

/// These tests are about the conversations (the day-partitioned dataset); the reference tables
/// have their own (tests/reference_tables.rs).
fn conversations_only() -> PipelineConfig {
    PipelineConfig {
        datasets: vec![&genesys_parquet::datasets::conversations::DATASET],
        ..PipelineConfig::default()
    }
}

async fn run(client: &GenesysClient, out: &Path, days: &str, cfg: &PipelineConfig) -> RunSummary {
    let (start, end) = days.split_once('/').expect("range");
    let range = Interval::new(
        genesys_parquet::interval::day_start(date(start)),
        genesys_parquet::interval::day_start(date(end)),
    )
    .expect("range");
    let store: Arc<dyn Store> = Arc::new(DayStore::local(out).expect("store"));
    pipeline::extract(client, store, range, cfg, Arc::new(NoProgress)).await
}

/// The run's one message about a failure no day can avoid, as the summary prints it.
fn fatal(s: &RunSummary) -> Option<String> {
    serde_json::to_value(s).expect("summary")["fatal"]
        .as_str()
        .map(str::to_string)
}

fn statuses(s: &RunSummary) -> Vec<(&str, Option<&str>)> {
    s.days
        .iter()
        .map(|d| (d.status, d.error_type.as_deref()))
        .collect()
}

/// The first day fails as Run.Fatal, the rest are not attempted, and the run says why once.
fn assert_stopped_at_once(s: &RunSummary, cause: &str) {
    assert!(!s.ok);
    assert_eq!(s.days.len(), 4);
    assert_eq!(s.days[0].status, "failed", "{:?}", statuses(s));
    for d in &s.days {
        assert_eq!(
            d.error_type.as_deref(),
            Some("Run.Fatal"),
            "{:?}",
            statuses(s)
        );
        assert_eq!(d.transient, Some(false));
    }
    for d in &s.days[1..] {
        assert_eq!(d.status, "not attempted", "{:?}", statuses(s));
    }
    let fatal = fatal(s).expect("the run's one message");
    assert!(fatal.contains(cause), "{fatal}");
}

#[tokio::test]
async fn a_refused_login_stops_the_run_at_once() {
    let sim = simulator::start(sim_config(31, 50)).await.expect("sim");
    let out = tempfile::tempdir().expect("tempdir");
    let c = client_for(&sim.base_url(), "not-the-secret");
    let s = run(
        &c,
        out.path(),
        "2026-10-15/2026-10-19",
        &conversations_only(),
    )
    .await;
    assert_stopped_at_once(&s, "client id and secret");
    assert!(!fatal(&s).unwrap_or_default().contains("not-the-secret"));
    assert_eq!(sim.stats().logins_refused, 1, "{:?}", sim.stats());
    sim.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_host_stops_the_run_at_once() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let out = tempfile::tempdir().expect("tempdir");
    let c = client_for(&format!("http://127.0.0.1:{port}"), "demo");
    let s = run(
        &c,
        out.path(),
        "2026-10-15/2026-10-19",
        &conversations_only(),
    )
    .await;
    assert_stopped_at_once(&s, "cannot be reached");
}

#[tokio::test]
async fn a_missing_permission_stops_the_dataset_and_names_it() {
    let mut cfg = sim_config(32, 50);
    cfg.extract.fault_missing_permission = true;
    let sim = simulator::start(cfg).await.expect("sim");
    let out = tempfile::tempdir().expect("tempdir");
    let c = client_for(&sim.base_url(), "demo");
    let s = run(
        &c,
        out.path(),
        "2026-10-15/2026-10-19",
        &conversations_only(),
    )
    .await;
    assert_stopped_at_once(&s, "analytics:conversationDetail:view");
    assert!(fatal(&s).unwrap_or_default().contains("conversations"));
    // One refused call, not one per day.
    assert_eq!(sim.stats().requests, 1, "{:?}", sim.stats());
    sim.shutdown().await;
}

#[tokio::test]
async fn a_day_specific_failure_lets_the_other_days_go_on() {
    // The first three jobs fail: the first day gives up after its resubmissions (transient),
    // the next days run.
    let mut cfg = sim_config(33, 50);
    cfg.fault_job_failed = 3;
    let sim = simulator::start(cfg).await.expect("sim");
    let out = tempfile::tempdir().expect("tempdir");
    let c = client_for(&sim.base_url(), "demo");
    let p = PipelineConfig {
        mode: Mode::Jobs,
        ..conversations_only()
    };
    let s = run(&c, out.path(), "2026-10-17/2026-10-19", &p).await;
    assert_eq!(
        statuses(&s),
        vec![("failed", Some("Genesys.Transient")), ("ok", None)]
    );
    assert!(fatal(&s).is_none());
    sim.shutdown().await;
}

/// Every file under `dir` (recursively), relative.
fn files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, acc: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, acc);
            } else {
                acc.push(p.strip_prefix(base).unwrap_or(&p).display().to_string());
            }
        }
    }
    let mut acc = Vec::new();
    walk(dir, dir, &mut acc);
    acc.sort();
    acc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_queued_past_the_deadline_stops_before_it_with_nothing_changed() {
    // Jobs stay QUEUED for 200 s; the deadline is 4 s away.
    let mut cfg = sim_config(34, 200);
    cfg.job_ready_after_ms = 600_000;
    let sim = simulator::start(cfg).await.expect("sim");
    let out = tempfile::tempdir().expect("tempdir");
    let before = files(out.path());
    let c = client_for(&sim.base_url(), "demo");
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(4);
    let p = PipelineConfig {
        mode: Mode::Jobs,
        deadline: Some(deadline),
        ..conversations_only()
    };
    let s = tokio::time::timeout(
        Duration::from_secs(30),
        run(&c, out.path(), "2026-10-19/2026-10-20", &p),
    )
    .await
    .expect("the run must stop at its deadline, not wait out the job");
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(4), "returned after {took:?}");
    assert_eq!(
        statuses(&s),
        vec![("incomplete", Some("Deadline.Incomplete"))]
    );
    assert_eq!(s.days[0].transient, Some(true));
    // Nothing visible changed, nothing staged is left, the job is deleted.
    assert_eq!(
        files(out.path())
            .into_iter()
            .filter(|f| !f.starts_with("_leases") && !f.contains("lease"))
            .collect::<Vec<_>>(),
        before
    );
    let st = sim.stats();
    assert_eq!(st.jobs_submitted, 1, "{st:?}");
    assert_eq!(st.jobs_alive, 0, "the queued job was left behind: {st:?}");
    // The lease is released: another run takes the day at once.
    let store = DayStore::local(out.path()).expect("store");
    store
        .acquire_lease(
            &CONVERSATIONS,
            date("2026-10-19"),
            &RunId::new(chrono::Utc::now()),
            chrono::Duration::minutes(5),
        )
        .await
        .expect("the day is free");
    sim.shutdown().await;
}

fn handler_settings(out: &Path, url: &str) -> genesys_parquet::lambda::LambdaSettings {
    use clap::Parser;
    let out_arg = out.display().to_string();
    genesys_parquet::lambda::LambdaSettings::try_parse_from([
        "--out",
        &out_arg,
        "--api-url",
        url,
        "--login-url",
        url,
        "--client-id",
        "demo",
        "--client-secret",
        "demo",
        "--deadline-margin-secs",
        "0",
    ])
    .expect("settings")
}

async fn start_sim(cfg: SimConfig) -> SimHandle {
    simulator::start(cfg).await.expect("sim")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_runtime_timeout_finds_the_day_unlocked() {
    use genesys_parquet::lambda::Handler;
    let out = tempfile::tempdir().expect("tempdir");
    let event =
        json!({"source": "backfill", "start": "2026-10-19", "end": "2026-10-20", "mode": "jobs"});

    // The first invocation holds the day's lease when the runtime kills it (its future is
    // dropped: no discard, no release).
    let mut slow = sim_config(35, 200);
    slow.job_ready_after_ms = 600_000;
    let slow = start_sim(slow).await;
    let first = Handler::new(handler_settings(out.path(), &slow.base_url()))
        .await
        .expect("handler");
    let deadline = SystemTime::now() + Duration::from_secs(4);
    let killed = tokio::time::timeout(
        Duration::from_millis(1500),
        first.handle(event.clone(), deadline),
    )
    .await;
    assert!(
        killed.is_err(),
        "the first invocation was to be killed mid-way"
    );
    slow.shutdown().await;

    // Step Functions retries after the invocation's deadline: the lease has expired.
    while SystemTime::now() < deadline + Duration::from_millis(200) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fast = start_sim(sim_config(35, 200)).await;
    let second = Handler::new(handler_settings(out.path(), &fast.base_url()))
        .await
        .expect("handler");
    let done = second
        .handle(event, SystemTime::now() + Duration::from_secs(120))
        .await
        .expect("the retry completes the day");
    let expected = fast
        .dataset()
        .conversation_ids_started_in(&Interval::day(date("2026-10-19")))
        .len() as u64;
    assert_eq!(done["conversations"], json!(expected), "{done}");
    assert_eq!(done["days"][0]["status"], json!("ok"), "{done}");
    fast.shutdown().await;
}

/// A moto S3 server on a free port, killed on drop (`GP_MOTO_SERVER` names its binary).
struct Moto {
    child: std::process::Child,
    url: String,
}

impl Moto {
    fn start() -> Moto {
        let bin = std::env::var("GP_MOTO_SERVER").expect(
            "GP_MOTO_SERVER is not set: point it at moto's `moto_server` (bash .ci/run does)",
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = std::process::Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start moto_server");
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(30), "moto did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3_the_deadline_aborts_the_open_uploads_of_a_day_stuck_on_a_queued_job() {
    // The lake holds the day up to 06:00: the query part (06:00–24:00) comes first and is
    // written (multipart uploads open), then the job for 00:00–06:00 stays QUEUED.
    let moto = Moto::start();
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .endpoint_url(&moto.url)
        .force_path_style(true)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(conf);
    s3.create_bucket()
        .bucket("lake")
        .send()
        .await
        .expect("bucket");
    let store: Arc<dyn Store> = Arc::new(DayStore::s3(s3.clone(), "lake", "genesys"));

    let mut cfg = sim_config(36, 3000);
    cfg.job_ready_after_ms = 600_000;
    cfg.extract.availability_date = Some("2026-10-19T06:00:00Z".parse().expect("time"));
    let sim = simulator::start(cfg).await.expect("sim");
    let c = client_for(&sim.base_url(), "demo");
    let t0 = Instant::now();
    let mut p = PipelineConfig {
        mode: Mode::Jobs,
        deadline: Some(t0 + Duration::from_secs(8)),
        ..conversations_only()
    };
    // Small row groups and buffers: the writer uploads parts long before the day ends.
    p.parquet.max_buffered_bytes = 1 << 20;
    p.parquet.max_row_group_bytes = 256 << 10;
    let range = Interval::day(date("2026-10-19"));
    let s = tokio::time::timeout(
        Duration::from_secs(60),
        pipeline::extract(&c, store.clone(), range, &p, Arc::new(NoProgress)),
    )
    .await
    .expect("the run must stop at its deadline");
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    assert_eq!(
        statuses(&s),
        vec![("incomplete", Some("Deadline.Incomplete"))]
    );
    let requests = s.days[0].requests.expect("requests");
    assert!(
        requests.pages > 0,
        "the query part was fetched: {requests:?}"
    );
    let uploads = s3
        .list_multipart_uploads()
        .bucket("lake")
        .send()
        .await
        .expect("uploads");
    assert!(uploads.uploads().is_empty(), "{:?}", uploads.uploads());
    let objects = s3
        .list_objects_v2()
        .bucket("lake")
        .send()
        .await
        .expect("list");
    let keys: Vec<_> = objects
        .contents()
        .iter()
        .filter_map(|o| o.key())
        .filter(|k| !k.contains("lease"))
        .collect();
    assert!(keys.is_empty(), "{keys:?}");
    assert_eq!(sim.stats().jobs_alive, 0, "{:?}", sim.stats());
    sim.shutdown().await;
}
