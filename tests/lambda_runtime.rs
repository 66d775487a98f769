//! The real `bootstrap` binary against a Lambda Runtime API of our own (the HTTP protocol the
//! Lambda service speaks to custom runtimes), invoked with the real event shapes, extracting from
//! the simulator into a local folder.

use std::collections::VecDeque;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use genesys_parquet::simulator::{self, SimConfig, SimHandle};
use serde_json::{json, Value};
use tokio::sync::mpsc;

#[path = "common/moto.rs"]
mod moto;

/// What the function answered to one invocation.
#[derive(Debug)]
enum Outcome {
    Response(Value),
    Error(Value),
}

#[derive(Clone)]
struct RuntimeApi {
    events: Arc<Mutex<VecDeque<(String, Value, Duration)>>>,
    outcomes: mpsc::UnboundedSender<(String, Outcome)>,
    first_poll: Arc<Mutex<Option<Instant>>>,
}

async fn next(State(api): State<RuntimeApi>) -> impl IntoResponse {
    api.first_poll
        .lock()
        .expect("lock")
        .get_or_insert_with(Instant::now);
    loop {
        let ev = api.events.lock().expect("lock").pop_front();
        if let Some((id, body, timeout)) = ev {
            let deadline = SystemTime::now() + timeout;
            let ms = deadline
                .duration_since(UNIX_EPOCH)
                .expect("clock")
                .as_millis();
            let mut h = HeaderMap::new();
            h.insert(
                "lambda-runtime-aws-request-id",
                HeaderValue::from_str(&id).expect("id"),
            );
            h.insert(
                "lambda-runtime-deadline-ms",
                HeaderValue::from_str(&ms.to_string()).expect("ms"),
            );
            h.insert(
                "lambda-runtime-invoked-function-arn",
                HeaderValue::from_static("arn:aws:lambda:eu-west-1:123456789012:function:gp"),
            );
            h.insert(
                "lambda-runtime-trace-id",
                HeaderValue::from_static("Root=1-5759e988-bd862e3fe1be46a994272793"),
            );
            return (StatusCode::OK, h, body.to_string());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn response(
    State(api): State<RuntimeApi>,
    Path(id): Path<String>,
    body: String,
) -> StatusCode {
    let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let _ = api.outcomes.send((id, Outcome::Response(v)));
    StatusCode::ACCEPTED
}

async fn error(State(api): State<RuntimeApi>, Path(id): Path<String>, body: String) -> StatusCode {
    let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let _ = api.outcomes.send((id, Outcome::Error(v)));
    StatusCode::ACCEPTED
}

impl RuntimeApi {
    fn new() -> (RuntimeApi, mpsc::UnboundedReceiver<(String, Outcome)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let api = RuntimeApi {
            events: Arc::default(),
            outcomes: tx,
            first_poll: Arc::new(Mutex::new(None)),
        };
        (api, rx)
    }

    /// Serves the Runtime API on 127.0.0.1, port 0.
    async fn serve(&self) -> std::net::SocketAddr {
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    fn invoke(&self, id: &str, event: Value) {
        self.events.lock().expect("lock").push_back((
            id.to_string(),
            event,
            Duration::from_secs(300),
        ));
    }
}

/// The next answer of the function, which must be to `id`.
async fn answer(rx: &mut mpsc::UnboundedReceiver<(String, Outcome)>, id: &str) -> Outcome {
    let (got, outcome) = tokio::time::timeout(Duration::from_secs(120), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("{id} answered in time"))
        .expect("outcome");
    assert_eq!(got, id);
    outcome
}

struct Bootstrap(Child);
impl Drop for Bootstrap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_serves_manual_invocations_through_the_runtime_api() {
    let sim = simulator::start(SimConfig {
        seed: 5,
        per_day: 120,
        end_date: Some("2026-10-20".parse().expect("date")),
        job_ready_after_ms: 100,
        ..SimConfig::default()
    })
    .await
    .expect("simulator");

    let (tx, mut rx) = mpsc::unbounded_channel();
    let api = RuntimeApi {
        events: Arc::new(Mutex::new(VecDeque::from([
            (
                "req-1".to_string(),
                json!({"start": "2026-10-18", "end": "2026-10-20", "mode": "auto"}),
                Duration::from_secs(300),
            ),
            (
                "req-2".to_string(),
                json!({"start": "2026-01-01", "end": "2026-03-01"}),
                Duration::from_secs(300),
            ),
        ]))),
        outcomes: tx,
        first_poll: Arc::new(Mutex::new(None)),
    };
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let out = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let _child = Bootstrap(
        Command::new(env!("CARGO_BIN_EXE_bootstrap"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "genesys-parquet")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("GP_OUT", out.path())
            .env("GENESYS_API_URL", sim.base_url())
            .env("GENESYS_LOGIN_URL", sim.base_url())
            .env("GENESYS_CLIENT_ID", "demo")
            .env("GENESYS_CLIENT_SECRET", "demo")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn bootstrap"),
    );

    let (id, outcome) = tokio::time::timeout(Duration::from_secs(120), rx.recv())
        .await
        .expect("first invocation answered in time")
        .expect("outcome");
    let init = api
        .first_poll
        .lock()
        .expect("lock")
        .map(|t| t.duration_since(started));
    eprintln!("cold start (spawn → first poll of /next): {init:?}");
    assert_eq!(id, "req-1");
    let Outcome::Response(summary) = outcome else {
        panic!("first invocation failed: {outcome:?}")
    };
    assert_eq!(summary["ok"], true, "{summary}");
    assert_eq!(summary["trigger"], "manual");
    let all = summary["days"].as_array().expect("days");
    // Every dataset by default (GP_DATASETS): the two days of conversations and of user
    // details, and today's snapshot of each reference table.
    use genesys_parquet::datasets::{conversations, reference, user_details};
    let of = |name: &str| -> Vec<&serde_json::Value> {
        all.iter().filter(|d| d["dataset"] == name).collect()
    };
    let days = of(conversations::DATASET.name);
    assert_eq!(days.len(), 2, "{summary}");
    assert_eq!(of(user_details::DATASET.name).len(), 2, "{summary}");
    for d in reference::ALL {
        assert_eq!(of(d.name).len(), 1, "{}: {summary}", d.name);
    }
    assert_eq!(all.len(), 4 + reference::ALL.len(), "{summary}");
    for d in days {
        let date: chrono::NaiveDate = d["date"].as_str().expect("date").parse().expect("date");
        let truth = sim
            .dataset()
            .conversation_ids_started_in(&genesys_parquet::interval::Interval::day(date));
        assert_eq!(d["conversations"].as_u64(), Some(truth.len() as u64), "{d}");
    }
    let conv = &conversations::DATASET;
    assert!(out
        .path()
        .join(conv.root().name())
        .join(conv.partition_folder("2026-10-18".parse().expect("date")))
        .is_dir());

    // The same warm process refuses an over-long range with an error type Step Functions sees.
    let (id, outcome) = tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .expect("second invocation answered in time")
        .expect("outcome");
    assert_eq!(id, "req-2");
    let Outcome::Error(err) = outcome else {
        panic!("an over-long range was accepted: {outcome:?}")
    };
    assert_eq!(err["errorType"], "Input.Invalid", "{err}");
    assert!(
        err["errorMessage"]
            .as_str()
            .unwrap_or("")
            .contains("backfill state machine"),
        "{err}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_stops_the_run_and_reports_a_retryable_error() {
    use clap::Parser;
    use genesys_parquet::lambda::{Handler, LambdaSettings};

    let sim = simulator::start(SimConfig {
        seed: 5,
        per_day: 400,
        end_date: Some("2026-10-20".parse().expect("date")),
        latency_ms: 300,
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let out = tempfile::tempdir().expect("tempdir");
    let out_arg = out.path().display().to_string();
    let url = sim.base_url();
    let settings = LambdaSettings::try_parse_from([
        "--out",
        &out_arg,
        "--api-url",
        &url,
        "--login-url",
        &url,
        "--client-id",
        "demo",
        "--client-secret",
        "demo",
        "--deadline-margin-secs",
        "0",
    ])
    .expect("settings");
    let handler = Handler::new(settings).await.expect("handler");
    let err = handler
        .handle(
            json!({"source": "backfill", "start": "2026-10-19", "end": "2026-10-20", "mode": "query"}),
            SystemTime::now() + Duration::from_millis(1500),
        )
        .await
        .expect_err("the run cannot finish in 1.5 s");
    assert_eq!(err.error_type, "Deadline.Incomplete", "{err}");
    assert!(err.message.contains("2026-10-19"), "{err}");
    // Nothing of the unfinished day is visible.
    assert!(!out
        .path()
        .join("conversations/conversation_date=2026-10-19")
        .exists());
    sim.shutdown().await;
}

/// The bootstrap binary reading its Genesys credentials from a Secrets Manager secret (moto).
fn bootstrap_with_secret(
    api: std::net::SocketAddr,
    sm: &str,
    sim: &SimHandle,
    out: &std::path::Path,
) -> Bootstrap {
    Bootstrap(
        Command::new(env!("CARGO_BIN_EXE_bootstrap"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", api.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "genesys-parquet")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ENDPOINT_URL", sm)
            .env("GENESYS_SECRET_ID", SECRET_ID)
            .env("GP_OUT", out)
            .env("GENESYS_API_URL", sim.base_url())
            .env("GENESYS_LOGIN_URL", sim.base_url())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn bootstrap"),
    )
}

const SECRET_ID: &str = "genesys-parquet/genesys";

/// The secret's value as the documented `put-secret-value` writes it: JSON, escapes and all.
fn secret_json(client_secret: &str) -> String {
    json!({"client_id": "demo", "client_secret": client_secret}).to_string()
}

fn day_event() -> Value {
    json!({"start": "2026-10-19", "end": "2026-10-20"})
}

async fn sim_with_secret(client_secret: &str) -> SimHandle {
    simulator::start(SimConfig {
        seed: 9,
        per_day: 80,
        end_date: Some("2026-10-20".parse().expect("date")),
        client_secret: client_secret.to_string(),
        job_ready_after_ms: 100,
        ..SimConfig::default()
    })
    .await
    .expect("simulator")
}

fn assert_day_extracted(outcome: Outcome, sim: &SimHandle) {
    let Outcome::Response(summary) = outcome else {
        panic!("the invocation failed: {outcome:?}")
    };
    assert_eq!(summary["ok"], true, "{summary}");
    let date: chrono::NaiveDate = "2026-10-19".parse().expect("date");
    let truth = sim
        .dataset()
        .conversation_ids_started_in(&genesys_parquet::interval::Interval::day(date));
    assert_eq!(
        summary["days"][0]["conversations"].as_u64(),
        Some(truth.len() as u64),
        "{summary}"
    );
}

/// A warm container keeps the credentials it read at its cold start. After the secret is
/// rotated, its next login is refused: it reads the secret once more and goes on. The new client
/// secret holds `"` and `\`, which must survive the secret's JSON to the login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_is_read_again_after_a_refused_login() {
    let new_secret = r#"n3w"s3cr\3t\"#;
    let sim = sim_with_secret(new_secret).await;
    let moto = moto::Moto::start();
    let sm = moto.secrets();
    sm.create_secret()
        .name(SECRET_ID)
        .secret_string(secret_json("old-secret-before-rotation"))
        .send()
        .await
        .expect("create secret");
    let (api, mut rx) = RuntimeApi::new();
    let addr = api.serve().await;
    let out = tempfile::tempdir().expect("tempdir");
    let _child = bootstrap_with_secret(addr, &moto.url, &sim, out.path());

    // Before the rotation: the login is refused, the secret re-read is the same, the error says
    // so without the secret.
    api.invoke("before", day_event());
    let Outcome::Error(err) = answer(&mut rx, "before").await else {
        panic!("a refused login was not an error")
    };
    let text = err.to_string();
    assert!(text.contains("HTTP 401"), "{err}");
    assert!(!text.contains("old-secret-before-rotation"), "{err}");

    sm.put_secret_value()
        .secret_id(SECRET_ID)
        .secret_string(secret_json(new_secret))
        .send()
        .await
        .expect("rotate");
    api.invoke("after", day_event());
    assert_day_extracted(answer(&mut rx, "after").await, &sim);
    sim.shutdown().await;
}

/// Secrets Manager unreachable at the cold start is a retryable failure of the invocation, not a
/// configuration error; a missing secret is a configuration error naming it; once the secret is
/// there, the same container works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secrets_manager_outage_at_cold_start_is_retried() {
    let sim = sim_with_secret("demo").await;
    let port = moto::free_port();
    let sm_url = format!("http://127.0.0.1:{port}");
    let (api, mut rx) = RuntimeApi::new();
    let addr = api.serve().await;
    let out = tempfile::tempdir().expect("tempdir");
    let _child = bootstrap_with_secret(addr, &sm_url, &sim, out.path());

    api.invoke("unreachable", day_event());
    let Outcome::Error(err) = answer(&mut rx, "unreachable").await else {
        panic!("no error without Secrets Manager")
    };
    assert_eq!(err["errorType"], "Genesys.Transient", "{err}");
    let msg = err["errorMessage"].as_str().unwrap_or("");
    assert!(
        msg.contains(&format!("reading secret {SECRET_ID} from Secrets Manager")),
        "{err}"
    );

    let moto = moto::Moto::start_on(port);
    api.invoke("missing", day_event());
    let Outcome::Error(err) = answer(&mut rx, "missing").await else {
        panic!("a missing secret was accepted")
    };
    assert_eq!(err["errorType"], "Config.Invalid", "{err}");
    assert!(
        err["errorMessage"]
            .as_str()
            .unwrap_or("")
            .contains(SECRET_ID),
        "{err}"
    );

    moto.secrets()
        .create_secret()
        .name(SECRET_ID)
        .secret_string(secret_json("demo"))
        .send()
        .await
        .expect("create secret");
    api.invoke("ready", day_event());
    assert_day_extracted(answer(&mut rx, "ready").await, &sim);
    sim.shutdown().await;
}

/// Which datasets each trigger writes, through the handler: the nightly run (a scheduler
/// event) writes its days and today's snapshot of every reference table; a backfill day only
/// the day-partitioned datasets (a backfill of 1,100 days does not rewrite today's snapshot
/// 1,100 times); a manual event writes the datasets it names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nightly_run_writes_snapshots_a_backfill_day_does_not() {
    use clap::Parser;
    use genesys_parquet::datasets::{conversations, reference, user_details, Partitioning};
    use genesys_parquet::lambda::{Handler, LambdaSettings};

    let sim = simulator::start(SimConfig {
        seed: 3,
        per_day: 20,
        end_date: Some("2026-10-20".parse().expect("date")),
        job_ready_after_ms: 20,
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let out = tempfile::tempdir().expect("tempdir");
    let out_arg = out.path().display().to_string();
    let url = sim.base_url();
    let settings = LambdaSettings::try_parse_from([
        "--out",
        &out_arg,
        "--api-url",
        &url,
        "--login-url",
        &url,
        "--client-id",
        "demo",
        "--client-secret",
        "demo",
        "--lookback-days",
        "0",
        "--mode",
        "query",
        "--requests-per-minute",
        "100000",
    ])
    .expect("settings");
    let handler = Handler::new(settings).await.expect("handler");
    let deadline = || SystemTime::now() + Duration::from_secs(120);
    // (dataset, date) of each partition an invocation wrote, all ok.
    let written = |summary: &Value| -> Vec<(String, String)> {
        assert_eq!(summary["ok"], true, "{summary}");
        let mut v: Vec<(String, String)> = summary["days"]
            .as_array()
            .expect("days")
            .iter()
            .map(|d| {
                assert_eq!(d["status"], "ok", "{d}");
                (
                    d["dataset"].as_str().expect("dataset").to_string(),
                    d["date"].as_str().expect("date").to_string(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let snapshot_folders = |table: &str| -> usize {
        std::fs::read_dir(out.path().join(table))
            .map(|r| r.count())
            .unwrap_or(0)
    };
    let day_datasets = [conversations::DATASET.name, user_details::DATASET.name];

    let backfill = handler
        .handle(
            json!({"source": "backfill", "start": "2026-10-19", "end": "2026-10-20"}),
            deadline(),
        )
        .await
        .expect("backfill day");
    let want: Vec<(String, String)> = day_datasets
        .iter()
        .map(|d| (d.to_string(), "2026-10-19".to_string()))
        .collect();
    assert_eq!(written(&backfill), want, "{backfill}");
    for d in reference::ALL {
        assert_eq!(
            snapshot_folders(d.tables[0].name()),
            0,
            "{}: no snapshot",
            d.name
        );
    }

    let before = chrono::Utc::now().date_naive();
    let nightly = handler
        .handle(
            json!({"source": "schedule", "scheduled_time": "2026-10-21T02:30:00Z"}),
            deadline(),
        )
        .await
        .expect("nightly run");
    let after = chrono::Utc::now().date_naive();
    let got = written(&nightly);
    for d in day_datasets {
        assert!(
            got.contains(&(d.to_string(), "2026-10-20".to_string())),
            "{d}: {got:?}"
        );
    }
    let snapshots: Vec<&(String, String)> = got
        .iter()
        .filter(|(d, _)| !day_datasets.contains(&d.as_str()))
        .collect();
    assert_eq!(snapshots.len(), reference::ALL.len(), "{got:?}");
    for (name, date) in snapshots {
        let d = reference::ALL
            .iter()
            .find(|d| d.name == name)
            .expect("a reference dataset");
        assert!(matches!(d.partitioning, Partitioning::RunDate { .. }));
        // Today's snapshot (the run's UTC date).
        let date: chrono::NaiveDate = date.parse().expect("date");
        assert!(date == before || date == after, "{name}: {date}");
        assert!(
            out.path()
                .join(d.tables[0].name())
                .join(d.partition_folder(date))
                .is_dir(),
            "{name}"
        );
    }

    // A manual event naming datasets writes only those.
    let manual = handler
        .handle(
            json!({"start": "2026-10-18", "end": "2026-10-19", "datasets": "queues"}),
            deadline(),
        )
        .await
        .expect("manual");
    let got = written(&manual);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, reference::QUEUES_DATASET.name);
    assert!(!out
        .path()
        .join(conversations::DATASET.root().name())
        .join(conversations::DATASET.partition_folder("2026-10-18".parse().expect("date")))
        .exists());
    sim.shutdown().await;
}
