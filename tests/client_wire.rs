//! Pins what the client sends against API.md (paths, query strings, bodies, auth headers) with a
//! tiny recording server on 127.0.0.1:0, and its reactions to 401, 403 and 429.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use futures::StreamExt;
use genesys_parquet::genesys::{
    ClientConfig, Credentials, ExtractPlan, GenesysClient, GenesysError, Hosts, Mode,
};
use genesys_parquet::interval::Interval;

#[derive(Default)]
struct Rec {
    calls: Vec<(String, String, String, String)>, // method path?query, auth, body
    unauthorized_left: u32,
    /// Retry-After values of 429s the availability endpoint answers first.
    throttle: Vec<&'static str>,
    /// The availability endpoint answers 403.
    forbid: bool,
    /// Job results answer 200 with a page cut short (not valid JSON).
    broken_results: bool,
    /// The job submission answers 502 (the gateway may have passed it on).
    submit_502: bool,
}

type Shared = Arc<Mutex<Rec>>;

async fn handler(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body_s = String::from_utf8_lossy(&body).to_string();
    let mut rec = s.lock().unwrap();
    rec.calls
        .push((method.to_string(), uri.to_string(), auth, body_s.clone()));
    match uri.path() {
        "/oauth/token" => {
            (StatusCode::OK, r#"{"access_token":"tok","token_type":"bearer","expires_in":86400}"#).into_response()
        }
        "/api/v2/analytics/conversations/details/query" => {
            if rec.unauthorized_left > 0 {
                rec.unauthorized_left -= 1;
                return (StatusCode::UNAUTHORIZED, r#"{"message":"expired","code":"credentials.expired","status":401,"contextId":"c-401"}"#).into_response();
            }
            let q: serde_json::Value = serde_json::from_str(&body_s).unwrap();
            match q["paging"]["pageNumber"].as_u64() {
                Some(1) => (StatusCode::OK, r#"{"totalHits":3,"conversations":[
                    {"conversationId":"00000000-0000-4000-8000-000000000001","conversationStart":"2026-11-20T23:50:00.000Z"},
                    {"conversationId":"00000000-0000-4000-8000-000000000002","conversationStart":"2026-11-21T01:00:00.000Z"}]}"#).into_response(),
                // Rows shifted between the requests: 2 comes again, 3 is new on page 2.
                _ => (StatusCode::OK, r#"{"totalHits":3,"conversations":[
                    {"conversationId":"00000000-0000-4000-8000-000000000002","conversationStart":"2026-11-21T01:00:00.000Z"},
                    {"conversationId":"00000000-0000-4000-8000-000000000004","conversationStart":"2026-11-21T03:00:00.000Z"}]}"#).into_response(),
            }
        }
        "/api/v2/analytics/conversations/details/jobs/availability" if !rec.forbid => {
            if let Some(ra) = rec.throttle.pop() {
                return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", ra)],
                    r#"{"message":"Rate limit exceeded the maximum. Retry the request in [N] seconds","code":"too.many.requests.retry.after","status":429,"contextId":"ctx-429"}"#).into_response();
            }
            (StatusCode::OK, r#"{"dataAvailabilityDate":"2026-11-21T10:00:00.000Z"}"#).into_response()
        }
        "/api/v2/analytics/conversations/details/jobs" if rec.submit_502 => {
            (StatusCode::BAD_GATEWAY, r#"{"message":"Bad gateway","code":"bad.gateway","status":502,"contextId":"ctx-502"}"#).into_response()
        }
        "/api/v2/analytics/conversations/details/jobs" => {
            (StatusCode::ACCEPTED, r#"{"jobId":"j1"}"#).into_response()
        }
        "/api/v2/analytics/conversations/details/jobs/j1/results" if rec.broken_results => {
            (StatusCode::OK, r#"{"conversations":[{"conversationId":"00000000-0000-4000-8000-0000"#).into_response()
        }
        "/api/v2/analytics/conversations/details/jobs/j1" if method == Method::GET => {
            (StatusCode::OK, r#"{"state":"FULFILLED"}"#).into_response()
        }
        "/api/v2/analytics/conversations/details/jobs/j1" => StatusCode::NO_CONTENT.into_response(),
        "/api/v2/analytics/conversations/details/jobs/j1/results" => {
            if uri.query().unwrap_or("").contains("cursor=") {
                (StatusCode::OK, r#"{"conversations":[
                    {"conversationId":"00000000-0000-4000-8000-000000000003","conversationStart":"2026-11-21T02:00:00.000Z"}]}"#).into_response()
            } else {
                (StatusCode::OK, r#"{"cursor":"c 1","conversations":[
                    {"conversationId":"00000000-0000-4000-8000-000000000002","conversationStart":"2026-11-21T01:00:00.000Z"}]}"#).into_response()
            }
        }
        _ => (StatusCode::FORBIDDEN, r#"{"message":"Missing permission","code":"missing.permissions","status":403,"contextId":"ctx-403"}"#).into_response(),
    }
}

async fn server(unauthorized: u32) -> (String, Shared) {
    let shared: Shared = Arc::new(Mutex::new(Rec {
        unauthorized_left: unauthorized,
        ..Default::default()
    }));
    let app = axum::Router::new()
        .fallback(handler)
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, shared)
}

fn client(url: &str) -> GenesysClient {
    let mut cfg = ClientConfig::new(
        Hosts::custom(url, url).unwrap(),
        Credentials::new("id".into(), "secret".into()),
    );
    cfg.query_page_size = 2;
    cfg.requests_per_minute = 60_000;
    GenesysClient::new(cfg).unwrap()
}

#[tokio::test]
async fn query_mode_bodies_relogin_filter_dedupe() {
    let (url, rec) = server(1).await;
    let c = client(&url);
    let day: Interval = "2026-11-21T00:00:00.000Z/2026-11-22T00:00:00.000Z"
        .parse()
        .unwrap();
    let plan = c.plan(day, Mode::Query).await.unwrap();
    let ex = c.extract(plan);
    let pages: Vec<_> = ex.pages.map(|p| p.unwrap()).collect().await;
    let ids: Vec<String> = pages
        .iter()
        .flat_map(|p| p.records().map(|r| r.to_string()))
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids[0].contains("000000000002"));
    assert!(ids[1].contains("000000000004"));
    let calls = rec.lock().unwrap().calls.clone();
    // login, 401, re-login, page 1, page 2
    assert_eq!(calls.len(), 5, "{calls:?}");
    assert_eq!(calls[0].0, "POST");
    assert_eq!(calls[0].1, "/oauth/token");
    assert_eq!(calls[0].2, "Basic aWQ6c2VjcmV0");
    assert_eq!(calls[0].3, "grant_type=client_credentials");
    assert_eq!(calls[2].1, "/oauth/token");
    assert_eq!(calls[3].2, "Bearer tok");
    let body: serde_json::Value = serde_json::from_str(&calls[3].3).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"interval":"2026-11-21T00:00:00.000Z/2026-11-22T00:00:00.000Z",
            "order":"asc","orderBy":"conversationStart","paging":{"pageSize":2,"pageNumber":1}})
    );
    let body: serde_json::Value = serde_json::from_str(&calls[4].3).unwrap();
    assert_eq!(body["paging"]["pageNumber"], 2);
    let s = ex.stats.snapshot();
    assert_eq!((s.requests, s.pages), (3, 2));
}

#[tokio::test]
async fn forbidden_fails_fast_with_context_id() {
    let (url, rec) = server(0).await;
    rec.lock().unwrap().forbid = true;
    let c = client(&url);
    let e = c.data_availability().await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("HTTP 403") && msg.contains("ctx-403") && msg.contains("Missing permission"),
        "{msg}"
    );
    assert!(!e.is_transient());
    assert_eq!(rec.lock().unwrap().calls.len(), 2); // login + one attempt
}

#[tokio::test]
async fn jobs_mode_submit_poll_cursor_delete() {
    let (url, rec) = server(0).await;
    let mut cfg = ClientConfig::new(
        Hosts::custom(&url, &url).unwrap(),
        Credentials::new("id".into(), "secret".into()),
    );
    cfg.requests_per_minute = 60_000;
    cfg.job_poll_initial = std::time::Duration::from_millis(1);
    let c = GenesysClient::new(cfg).unwrap();
    let day: Interval = "2026-11-21T00:00:00.000Z/2026-11-22T00:00:00.000Z"
        .parse()
        .unwrap();
    // The jobs path alone (planning `jobs` reads the availability date and queries past it,
    // pinned in client_behaviours.rs).
    let ex = c.extract(jobs_only(day));
    let pages: Vec<_> = ex.pages.map(|p| p.unwrap()).collect().await;
    assert_eq!(pages.len(), 2);
    assert!(pages[1].origin.to_string().contains("job j1"));
    let calls: Vec<(String, String)> = rec
        .lock()
        .unwrap()
        .calls
        .iter()
        .map(|c| (c.0.clone(), c.1.clone()))
        .collect();
    let jobs = "/api/v2/analytics/conversations/details/jobs";
    let want: Vec<(String, String)> = vec![
        ("POST".into(), "/oauth/token".into()),
        ("POST".into(), jobs.into()),
        ("GET".into(), format!("{jobs}/j1")),
        ("GET".into(), format!("{jobs}/j1/results?pageSize=1000")),
        (
            "GET".into(),
            format!("{jobs}/j1/results?pageSize=1000&cursor=c+1"),
        ),
        ("DELETE".into(), format!("{jobs}/j1")),
    ];
    assert_eq!(calls, want);
    let submit: serde_json::Value = serde_json::from_str(&rec.lock().unwrap().calls[1].3).unwrap();
    assert_eq!(
        submit,
        serde_json::json!({"interval":"2026-11-21T00:00:00.000Z/2026-11-22T00:00:00.000Z",
            "order":"asc","orderBy":"conversationStart"})
    );
    assert_eq!(ex.stats.snapshot().jobs, 1);
}

#[tokio::test]
async fn retry_after_zero_is_retried_and_600_fails_clearly() {
    let (url, rec) = server(0).await;
    rec.lock().unwrap().throttle = vec!["0"];
    let c = client(&url);
    let d = c.data_availability().await.unwrap();
    assert_eq!(
        d.map(genesys_parquet::interval::format_millis).as_deref(),
        Some("2026-11-21T10:00:00.000Z")
    );
    assert_eq!(rec.lock().unwrap().calls.len(), 3); // login, 429, 200

    rec.lock().unwrap().throttle = vec!["600"];
    let e = c.data_availability().await.unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("600 s") && msg.contains("180 s"), "{msg}");
    assert_eq!(rec.lock().unwrap().calls.len(), 4); // no retry after the long 429
}

#[tokio::test]
async fn query_splits_when_total_hits_exceed_window_then_fails_clearly() {
    let (url, rec) = server(0).await;
    let mut cfg = ClientConfig::new(
        Hosts::custom(&url, &url).unwrap(),
        Credentials::new("id".into(), "secret".into()),
    );
    cfg.requests_per_minute = 60_000;
    cfg.query_window = 2; // the server answers totalHits 3
    cfg.min_split = chrono::Duration::hours(6);
    let c = GenesysClient::new(cfg).unwrap();
    let day: Interval = "2026-11-21T00:00:00.000Z/2026-11-22T00:00:00.000Z"
        .parse()
        .unwrap();
    let ex = c.extract(c.plan(day, Mode::Query).await.unwrap());
    let out: Vec<_> = ex.pages.collect().await;
    let msg = out.last().unwrap().as_ref().unwrap_err().to_string();
    assert!(
        msg.contains("2026-11-21T00:00:00.000Z/2026-11-21T06:00:00.000Z")
            && msg.contains("more than 2 conversations"),
        "{msg}"
    );
    let calls = rec.lock().unwrap().calls.clone();
    let intervals: Vec<String> = calls[1..]
        .iter()
        .map(|c| serde_json::from_str::<serde_json::Value>(&c.3).unwrap()["interval"].to_string())
        .collect();
    assert_eq!(
        intervals,
        vec![
            "\"2026-11-21T00:00:00.000Z/2026-11-22T00:00:00.000Z\"",
            "\"2026-11-21T00:00:00.000Z/2026-11-21T12:00:00.000Z\"",
            "\"2026-11-21T00:00:00.000Z/2026-11-21T06:00:00.000Z\""
        ]
    );
}

fn jobs_only(day: Interval) -> ExtractPlan {
    ExtractPlan {
        interval: day,
        mode: Mode::Jobs,
        data_availability_date: None,
        query_part: None,
        jobs_part: Some(day),
    }
}

#[tokio::test]
async fn a_results_page_that_does_not_parse_still_deletes_its_job() {
    let (url, rec) = server(0).await;
    rec.lock().unwrap().broken_results = true;
    let mut cfg = ClientConfig::new(
        Hosts::custom(&url, &url).unwrap(),
        Credentials::new("id".into(), "secret".into()),
    );
    cfg.requests_per_minute = 60_000;
    cfg.job_poll_initial = std::time::Duration::from_millis(1);
    let c = GenesysClient::new(cfg).unwrap();
    let day: Interval = "2026-11-21T00:00:00.000Z/2026-11-22T00:00:00.000Z"
        .parse()
        .unwrap();
    let ex = c.extract(jobs_only(day));
    let out: Vec<_> = ex.pages.collect().await;
    let err = out.last().unwrap().as_ref().unwrap_err();
    assert!(matches!(err, GenesysError::Page(_)), "{err:?}");
    let calls = rec.lock().unwrap().calls.clone();
    let last = calls.last().unwrap();
    assert_eq!(
        (last.0.as_str(), last.1.as_str()),
        ("DELETE", "/api/v2/analytics/conversations/details/jobs/j1")
    );
    assert!(ex.cleanup.jobs.ids().is_empty());
}

#[tokio::test]
async fn a_job_submission_is_not_resent_by_the_transport_after_a_502() {
    let (url, rec) = server(0).await;
    rec.lock().unwrap().submit_502 = true;
    let mut cfg = ClientConfig::new(
        Hosts::custom(&url, &url).unwrap(),
        Credentials::new("id".into(), "secret".into()),
    );
    cfg.requests_per_minute = 60_000;
    cfg.job_resubmits = 0;
    cfg.retry.initial_backoff = std::time::Duration::from_millis(1);
    let c = GenesysClient::new(cfg).unwrap();
    let day: Interval = "2026-11-21T00:00:00.000Z/2026-11-22T00:00:00.000Z"
        .parse()
        .unwrap();
    let out: Vec<_> = c.extract(jobs_only(day)).pages.collect().await;
    let err = out.last().unwrap().as_ref().unwrap_err();
    assert!(matches!(err, GenesysError::Unconfirmed { .. }), "{err:?}");
    assert!(err.is_transient());
    let posts = rec
        .lock()
        .unwrap()
        .calls
        .iter()
        .filter(|c| c.0 == "POST" && c.1 == "/api/v2/analytics/conversations/details/jobs")
        .count();
    assert_eq!(posts, 1);
}
