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
use genesys_parquet::simulator::{self, SimConfig};
use serde_json::{json, Value};
use tokio::sync::mpsc;

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
    let days = summary["days"].as_array().expect("days");
    assert_eq!(days.len(), 2);
    for d in days {
        let date: chrono::NaiveDate = d["date"].as_str().expect("date").parse().expect("date");
        let truth = sim
            .dataset()
            .conversation_ids_started_in(&genesys_parquet::interval::Interval::day(date));
        assert_eq!(d["conversations"].as_u64(), Some(truth.len() as u64), "{d}");
    }
    assert!(out
        .path()
        .join("conversations/conversation_date=2026-10-18")
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
