//! A base URL with a path (Genesys Cloud behind a proxy, `GENESYS_API_URL=https://proxy/genesys`)
//! keeps its path: the login and every API request go below it. Played end to end: the client
//! extracts a day from the simulator through a proxy on port 0 that serves it only under
//! `/genesys/`.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use futures::TryStreamExt;
use genesys_parquet::datasets::conversations::DATASET as CONVERSATIONS;
use genesys_parquet::genesys::{ClientConfig, Credentials, GenesysClient, Hosts, Mode};
use genesys_parquet::interval::Interval;
use genesys_parquet::page::record_key;
use genesys_parquet::simulator::{self, SimConfig};

const PREFIX: &str = "/genesys";

#[derive(Clone)]
struct Proxy {
    upstream: String,
    http: reqwest::Client,
    /// Every path asked for, as received.
    seen: Arc<Mutex<Vec<String>>>,
}

async fn forward(
    State(p): State<Proxy>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    p.seen.lock().expect("lock").push(uri.path().to_string());
    let Some(rest) = uri.path().strip_prefix(PREFIX) else {
        return (StatusCode::NOT_FOUND, "outside the proxy's prefix").into_response();
    };
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let mut req = p
        .http
        .request(method, format!("{}{rest}{query}", p.upstream))
        .body(body);
    for name in ["authorization", "content-type"] {
        if let Some(v) = headers.get(name) {
            req = req.header(name, v);
        }
    }
    let resp = req.send().await.expect("upstream");
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let body = resp.bytes().await.expect("upstream body");
    (status, [("content-type", content_type)], body).into_response()
}

#[tokio::test]
async fn an_api_url_with_a_path_keeps_its_path() {
    let sim = simulator::start(SimConfig {
        seed: 11,
        per_day: 150,
        end_date: Some("2026-10-20".parse().expect("date")),
        job_ready_after_ms: 50,
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let proxy = Proxy {
        upstream: sim.base_url().trim_end_matches('/').to_string(),
        http: reqwest::Client::new(),
        seen: Arc::default(),
    };
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(proxy.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}{PREFIX}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut cfg = ClientConfig::new(
        Hosts::custom(&base, &base).expect("hosts"),
        Credentials::new("demo".into(), "demo".into()),
    );
    cfg.requests_per_minute = 100_000;
    cfg.job_poll_initial = Duration::from_millis(20);
    let client = GenesysClient::new(cfg).expect("client");
    let day = Interval::day("2026-10-19".parse().expect("date"));
    for mode in [Mode::Query, Mode::Jobs] {
        let plan = client.plan(day, mode).await.expect("plan");
        let pages: Vec<_> = client
            .extract(plan)
            .pages
            .try_collect()
            .await
            .expect("extraction through the proxy");
        let got: BTreeSet<String> = pages
            .iter()
            .flat_map(|p| p.records())
            .map(|r| {
                record_key(r, &CONVERSATIONS.record)
                    .expect("key")
                    .id
                    .to_string()
            })
            .collect();
        let want: BTreeSet<String> = sim
            .dataset()
            .conversation_ids_started_in(&day)
            .into_iter()
            .collect();
        assert!(want.len() > 100, "{}", want.len());
        assert_eq!(got, want, "mode {mode}");
    }

    let seen = proxy.seen.lock().expect("lock").clone();
    let outside: Vec<&String> = seen
        .iter()
        .filter(|p| !p.starts_with(&format!("{PREFIX}/")))
        .collect();
    assert!(
        outside.is_empty(),
        "requests outside {PREFIX}/: {outside:?}"
    );
    assert!(seen.contains(&format!("{PREFIX}/oauth/token")), "{seen:?}");
    assert!(
        seen.iter().any(|p| p.starts_with(&format!(
            "{PREFIX}/api/v2/analytics/conversations/details/jobs"
        ))),
        "{seen:?}"
    );
    sim.shutdown().await;
}
