//! The client against the simulator on port 0: every mode returns exactly the simulator's
//! conversations of the day, once each, also through throttling, server errors, a token revoked
//! mid-run and a failed job.

use std::collections::HashSet;
use std::time::Duration;

use chrono::NaiveDate;
use futures::TryStreamExt;
use genesys_parquet::datasets::conversations::DATASET as CONVERSATIONS;
use genesys_parquet::genesys::{
    ClientConfig, Credentials, ExtractPlan, GenesysClient, Hosts, Mode,
};
use genesys_parquet::interval::Interval;
use genesys_parquet::page::record_key;
use genesys_parquet::simulator::{self, ExtractBehaviour, SimConfig, SimHandle};

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
            let key = record_key(rec, &CONVERSATIONS.record).expect("record key");
            assert!(
                interval.contains(key.start()),
                "{} started at {} outside {interval}",
                key.id,
                key.start()
            );
            assert!(seen.insert(key.id.to_string()), "{} emitted twice", key.id);
            ids.push(key.id.to_string());
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
    // A fixed watermark at 13:00 of the day (no clock involved): auto mode takes the morning
    // from jobs and the rest from the query, and returns each conversation once although both
    // parts return the conversations active across 13:00.
    let watermark: chrono::DateTime<chrono::Utc> = "2026-10-19T13:00:00Z".parse().expect("time");
    let sim = sim(SimConfig {
        seed: 9,
        per_day: 300,
        extract: ExtractBehaviour {
            availability_date: Some(watermark),
            ..Default::default()
        },
        ..SimConfig::default()
    })
    .await;
    let c = client(&sim, |_| {});
    let interval = Interval::day(day());
    let plan = c.plan(interval, Mode::Auto).await.expect("plan");
    assert_eq!(plan.data_availability_date, Some(watermark));
    let jobs_part = Interval::new(interval.start, watermark).expect("interval");
    let query_part = Interval::new(watermark, interval.end).expect("interval");
    assert_eq!(plan.jobs_part, Some(jobs_part));
    assert_eq!(plan.query_part, Some(query_part));
    assert_eq!(plan.paths(), "jobs+query");

    // Each part alone (filtered to the day, not to the part): jobs give exactly the morning;
    // the query gives the afternoon plus morning conversations still active at 13:00, which
    // the jobs gave too. The whole extraction keeps each of those once (`extract_ids` checks).
    let part_ids = |jobs: Option<Interval>, query: Option<Interval>| {
        let p = ExtractPlan {
            jobs_part: jobs,
            query_part: query,
            ..plan.clone()
        };
        let c = c.clone();
        async move {
            let pages: Vec<_> = c.extract(p).pages.try_collect().await.expect("part");
            let mut ids = HashSet::new();
            for pg in &pages {
                for r in pg.records() {
                    ids.insert(
                        record_key(r, &CONVERSATIONS.record)
                            .expect("key")
                            .id
                            .to_string(),
                    );
                }
            }
            ids
        }
    };
    let from_jobs = part_ids(Some(jobs_part), None).await;
    let from_query = part_ids(None, Some(query_part)).await;
    let morning: HashSet<String> = truth(&sim, &jobs_part).into_iter().collect();
    let afternoon: HashSet<String> = truth(&sim, &query_part).into_iter().collect();
    assert!(!morning.is_empty() && !afternoon.is_empty());
    assert_eq!(from_jobs, morning);
    assert!(from_query.is_superset(&afternoon));
    let both: HashSet<_> = from_query.intersection(&from_jobs).collect();
    assert!(
        !both.is_empty(),
        "no conversation active across the watermark"
    );
    assert_eq!(from_query.len(), afternoon.len() + both.len());
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
        fault_expire_cursor: Some(1),
        ..SimConfig::default()
    })
    .await;
    let c = client(&sim, |cfg| {
        cfg.retry.initial_backoff = Duration::from_millis(5);
        cfg.retry.max_backoff = Duration::from_millis(50);
        cfg.job_page_size = 100;
        cfg.job_resubmits = 3;
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
    // The token revoked after 7 requests: one 401, then a second login.
    assert!(stats.http_401 >= 1, "{stats:?}");
    assert_eq!(stats.logins, 2, "{stats:?}");
    // The first job FAILED, the second expired after one page: a third one finished.
    assert_eq!(stats.jobs_submitted, 3, "{stats:?}");
    assert_eq!(stats.jobs_deleted, 3, "{stats:?}");
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
