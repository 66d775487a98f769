//! The client against the simulator on port 0: every mode returns exactly the simulator's
//! conversations of the day, once each, also through throttling, server errors, a token revoked
//! mid-run and a failed job.

use std::collections::HashSet;
use std::time::Duration;

use chrono::NaiveDate;
use futures::TryStreamExt;
use genesys_parquet::genesys::{ClientConfig, Credentials, GenesysClient, Hosts, Mode};
use genesys_parquet::interval::Interval;
use genesys_parquet::page::record_key;
use genesys_parquet::simulator::{self, SimConfig, SimHandle};

const END_DATE: &str = "2026-10-20";

fn day() -> NaiveDate {
    "2026-10-19".parse().expect("date")
}

async fn sim(cfg: SimConfig) -> SimHandle {
    simulator::start(SimConfig {
        end_date: Some(END_DATE.parse().expect("date")),
        job_ready_after_ms: 50,
        ..cfg
    })
    .await
    .expect("simulator")
}

fn client(sim: &SimHandle, tweak: impl FnOnce(&mut ClientConfig)) -> GenesysClient {
    let url = sim.base_url();
    let mut cfg = ClientConfig::new(
        Hosts::custom(&url, &url).expect("hosts"),
        Credentials::new("demo".to_string(), "demo".to_string()),
    );
    cfg.requests_per_minute = 100_000;
    cfg.job_poll_initial = Duration::from_millis(20);
    cfg.job_poll_max = Duration::from_millis(100);
    tweak(&mut cfg);
    GenesysClient::new(cfg).expect("client")
}

/// Extracts `interval` and returns the conversation ids, asserting none came twice.
async fn extract_ids(client: &GenesysClient, interval: Interval, mode: Mode) -> Vec<String> {
    let plan = client.plan(interval, mode).await.expect("plan");
    let pages: Vec<_> = client
        .extract(plan)
        .pages
        .try_collect()
        .await
        .expect("extraction");
    let mut ids = Vec::new();
    let mut seen = HashSet::new();
    for page in &pages {
        for rec in page.records() {
            let key = record_key(rec).expect("record key");
            assert!(
                interval.contains(key.conversation_start),
                "{} started at {} outside {interval}",
                key.conversation_id,
                key.conversation_start
            );
            assert!(
                seen.insert(key.conversation_id.to_string()),
                "{} emitted twice",
                key.conversation_id
            );
            ids.push(key.conversation_id.to_string());
        }
    }
    ids.sort();
    ids
}

fn truth(sim: &SimHandle, interval: &Interval) -> Vec<String> {
    let mut ids = sim.dataset().conversation_ids_started_in(interval);
    ids.sort();
    ids
}

#[tokio::test]
async fn each_mode_returns_exactly_the_days_conversations() {
    let sim = sim(SimConfig {
        seed: 3,
        per_day: 400,
        ..SimConfig::default()
    })
    .await;
    let c = client(&sim, |_| {});
    let interval = Interval::day(day());
    let expected = truth(&sim, &interval);
    assert!(expected.len() > 300, "{}", expected.len());
    for mode in [Mode::Jobs, Mode::Query, Mode::Auto] {
        assert_eq!(
            extract_ids(&c, interval, mode).await,
            expected,
            "mode {mode}"
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn auto_mode_splits_at_the_availability_date() {
    // The simulated days end now, so the lake lags behind today's data: auto mode must use the
    // query for the recent part and jobs for the rest, and still return each conversation once.
    let today = chrono::Utc::now().date_naive();
    let sim = simulator::start(SimConfig {
        seed: 9,
        per_day: 300,
        end_date: Some(today),
        job_ready_after_ms: 50,
        availability_lag_secs: 6 * 3600,
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let c = client(&sim, |_| {});
    let yesterday = today - chrono::Duration::days(1);
    let interval = Interval::day(yesterday);
    let plan = c.plan(interval, Mode::Auto).await.expect("plan");
    assert!(plan.data_availability_date.is_some());
    let expected = truth(&sim, &interval);
    assert_eq!(extract_ids(&c, interval, Mode::Auto).await, expected);
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_do_not_change_the_result() {
    let sim = sim(SimConfig {
        seed: 4,
        per_day: 400,
        fault_429: 0.10,
        fault_5xx: 0.05,
        fault_token_expiry_after: Some(7),
        fault_job_failed: 1,
        ..SimConfig::default()
    })
    .await;
    let c = client(&sim, |cfg| {
        cfg.retry.initial_backoff = Duration::from_millis(5);
        cfg.retry.max_backoff = Duration::from_millis(50);
    });
    let interval = Interval::day(day());
    let expected = truth(&sim, &interval);
    for mode in [Mode::Jobs, Mode::Query] {
        assert_eq!(
            extract_ids(&c, interval, mode).await,
            expected,
            "mode {mode}"
        );
    }
    let stats = sim.stats();
    assert!(stats.http_429 > 0, "no 429 was served: {stats:?}");
    assert!(stats.http_5xx > 0, "no 5xx was served: {stats:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn wrong_secret_fails_without_the_secret_in_the_error() {
    let sim = sim(SimConfig::default()).await;
    let url = sim.base_url();
    let c = GenesysClient::new(ClientConfig::new(
        Hosts::custom(&url, &url).expect("hosts"),
        Credentials::new("demo".to_string(), "hunter2-wrong".to_string()),
    ))
    .expect("client");
    let err = c
        .plan(Interval::day(day()), Mode::Auto)
        .await
        .expect_err("login must fail");
    let msg = format!("{err} {err:?}");
    assert!(msg.contains("authentication failed"), "{msg}");
    assert!(!msg.contains("hunter2-wrong"), "{msg}");
    assert!(!err.is_transient());
    sim.shutdown().await;
}

#[test]
fn unknown_region_lists_the_valid_ones() {
    let err = Hosts::for_region("mars-north-1").expect_err("unknown region");
    let msg = err.to_string();
    assert!(msg.contains("mars-north-1"), "{msg}");
    assert!(
        msg.contains("eu-west-1") && msg.contains("us-east-1"),
        "{msg}"
    );
    let h = Hosts::for_region("eu-west-1").expect("region");
    assert_eq!(h.api.as_str(), "https://api.mypurecloud.ie/");
    assert_eq!(h.login.as_str(), "https://login.mypurecloud.ie/");
}
