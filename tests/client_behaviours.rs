//! The client against the simulator (port 0) playing, one setting at a time, what the API
//! documents or allows and our extractor once got wrong (issue 13): partial job data past the
//! lake's watermark, responses without `totalHits`, an unstable order of tied start times,
//! unknown job states, refused cursors, a proxy's HTML answer, an unanswered job submission.
//! Each extraction is exact (every conversation that started in the day, once) or refused as
//! transient; never partial.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use futures::TryStreamExt;
use genesys_parquet::datasets::conversations::DATASET as CONVERSATIONS;
use genesys_parquet::genesys::{
    ClientConfig, Credentials, GenesysClient, GenesysError, Hosts, Mode, RequestStatsSnapshot,
};
use genesys_parquet::interval::Interval;
use genesys_parquet::page::record_key;
use genesys_parquet::simulator::{self, ExtractBehaviour, SimConfig, SimHandle};

const END_DATE: &str = "2026-10-20";

fn day() -> NaiveDate {
    "2026-10-19".parse().expect("date")
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("time")
}

async fn sim(
    per_day: u32,
    seed: u64,
    extract: ExtractBehaviour,
    tweak: impl FnOnce(&mut SimConfig),
) -> SimHandle {
    let mut cfg = SimConfig {
        seed,
        per_day,
        end_date: Some(END_DATE.parse().expect("date")),
        job_ready_after_ms: 60,
        extract: ExtractBehaviour {
            // The lake holds every simulated day unless a test says otherwise.
            availability_date: extract
                .availability_date
                .or(Some(at("2026-10-21T00:00:00Z"))),
            ..extract
        },
        ..SimConfig::default()
    };
    tweak(&mut cfg);
    simulator::start(cfg).await.expect("simulator")
}

fn client(sim: &SimHandle, tweak: impl FnOnce(&mut ClientConfig)) -> GenesysClient {
    let url = sim.base_url();
    let mut cfg = ClientConfig::new(
        Hosts::custom(&url, &url).expect("hosts"),
        Credentials::new("demo".to_string(), "demo".to_string()),
    );
    cfg.requests_per_minute = 100_000;
    cfg.job_poll_initial = Duration::from_millis(20);
    cfg.job_poll_max = Duration::from_millis(60);
    cfg.retry.initial_backoff = Duration::from_millis(5);
    cfg.retry.max_backoff = Duration::from_millis(50);
    tweak(&mut cfg);
    GenesysClient::new(cfg).expect("client")
}

/// Extracts the day: its conversation ids (sorted; none twice) and the request counters.
async fn extract(
    c: &GenesysClient,
    mode: Mode,
) -> Result<(Vec<String>, RequestStatsSnapshot), GenesysError> {
    let interval = Interval::day(day());
    let plan = c.plan(interval, mode).await?;
    let ex = c.extract(plan);
    let pages: Vec<_> = ex.pages.try_collect().await?;
    let mut ids = Vec::new();
    let mut seen = HashSet::new();
    for page in &pages {
        for rec in page.records() {
            let key = record_key(rec, &CONVERSATIONS.record).expect("record key");
            assert!(interval.contains(key.start()));
            assert!(seen.insert(key.id.to_string()), "{} twice", key.id);
            ids.push(key.id.to_string());
        }
    }
    ids.sort();
    Ok((ids, ex.stats.snapshot()))
}

fn truth(sim: &SimHandle) -> Vec<String> {
    let mut ids = sim
        .dataset()
        .conversation_ids_started_in(&Interval::day(day()));
    ids.sort();
    ids
}

#[tokio::test]
async fn jobs_mode_takes_the_part_past_the_watermark_from_the_query() {
    let noon = at("2026-10-19T12:00:00Z");
    let sim = sim(
        600,
        21,
        ExtractBehaviour {
            availability_date: Some(noon),
            ..Default::default()
        },
        |_| {},
    )
    .await;
    let c = client(&sim, |_| {});
    let plan = c
        .plan(Interval::day(day()), Mode::Jobs)
        .await
        .expect("plan");
    assert_eq!(plan.data_availability_date, Some(noon));
    assert_eq!(
        plan.jobs_part,
        Some(Interval::new(at("2026-10-19T00:00:00Z"), noon).expect("interval"))
    );
    assert_eq!(
        plan.query_part,
        Some(Interval::new(noon, at("2026-10-20T00:00:00Z")).expect("interval"))
    );
    let (ids, _) = extract(&c, Mode::Jobs).await.expect("extraction");
    assert_eq!(ids, truth(&sim));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_job_page_with_an_earlier_availability_date_is_completed_by_the_query() {
    // The availability endpoint says the lake holds the day, but the job's pages say their
    // data ends at 15:00: what started after it comes from the query.
    let sim = sim(
        600,
        22,
        ExtractBehaviour {
            job_page_availability_date: Some(at("2026-10-19T15:00:00Z")),
            ..Default::default()
        },
        |_| {},
    )
    .await;
    let c = client(&sim, |_| {});
    let plan = c
        .plan(Interval::day(day()), Mode::Jobs)
        .await
        .expect("plan");
    assert_eq!(plan.paths(), "jobs");
    let (ids, _) = extract(&c, Mode::Jobs).await.expect("extraction");
    assert_eq!(ids, truth(&sim));
    assert!(
        sim.stats()
            .by_endpoint
            .get("details_query")
            .copied()
            .unwrap_or(0)
            > 0
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn query_pages_until_a_short_page_without_total_hits() {
    let sim = sim(
        2000,
        23,
        ExtractBehaviour {
            omit_total_hits: true,
            ..Default::default()
        },
        |_| {},
    )
    .await;
    let c = client(&sim, |_| {});
    let (ids, _) = extract(&c, Mode::Query).await.expect("extraction");
    assert_eq!(ids, truth(&sim));
    sim.shutdown().await;
}

#[tokio::test]
async fn conversations_tied_on_their_start_are_not_lost_between_pages() {
    let sim = sim(
        3000,
        24,
        ExtractBehaviour {
            ties: 0.3,
            unstable_tie_order: true,
            ..Default::default()
        },
        |_| {},
    )
    .await;
    let c = client(&sim, |_| {});
    let (ids, stats) = extract(&c, Mode::Query).await.expect("extraction");
    let expected = truth(&sim);
    assert_eq!(ids.len(), expected.len());
    assert_eq!(ids, expected);
    // The tie order did move conversations between pages, and the client repaired it.
    assert!(stats.repairs > 0, "{stats:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn ties_without_total_hits_are_paged_again_until_nothing_new_comes() {
    let sim = sim(
        3000,
        25,
        ExtractBehaviour {
            ties: 0.3,
            unstable_tie_order: true,
            omit_total_hits: true,
            ..Default::default()
        },
        |_| {},
    )
    .await;
    let c = client(&sim, |_| {});
    let (ids, _) = extract(&c, Mode::Query).await.expect("extraction");
    assert_eq!(ids, truth(&sim));
    sim.shutdown().await;
}

#[tokio::test]
async fn an_unknown_job_state_is_waited_out_not_resubmitted() {
    let sim = sim(
        500,
        26,
        ExtractBehaviour {
            unknown_job_state: Some("RUNNING_SOMEWHERE_NEW".into()),
            ..Default::default()
        },
        |c| c.job_ready_after_ms = 600,
    )
    .await;
    let c = client(&sim, |_| {});
    let (ids, stats) = extract(&c, Mode::Jobs).await.expect("extraction");
    assert_eq!(ids, truth(&sim));
    let s = sim.stats();
    assert_eq!(s.jobs_submitted, 1, "{s:?}");
    assert_eq!(stats.jobs, 1);
    assert_eq!(s.jobs_alive, 0, "every job deleted: {s:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn an_invalid_cursor_resubmits_the_job() {
    let sim = sim(
        800,
        27,
        ExtractBehaviour {
            fault_invalid_cursor: Some(2),
            ..Default::default()
        },
        |_| {},
    )
    .await;
    let c = client(&sim, |cfg| cfg.job_page_size = 100);
    let (ids, stats) = extract(&c, Mode::Jobs).await.expect("extraction");
    assert_eq!(ids, truth(&sim));
    let s = sim.stats();
    assert_eq!(s.invalid_cursors, 1, "{s:?}");
    assert_eq!(s.jobs_submitted, 2, "{s:?}");
    assert_eq!(stats.jobs, 2);
    assert_eq!(s.jobs_alive, 0, "{s:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_proxy_page_answered_200_is_retried() {
    let sim = sim(
        600,
        28,
        ExtractBehaviour {
            fault_html_200: 0.2,
            ..Default::default()
        },
        |_| {},
    )
    .await;
    let c = client(&sim, |_| {});
    let mut retries = 0;
    for mode in [Mode::Query, Mode::Jobs] {
        let (ids, stats) = extract(&c, mode).await.expect("extraction");
        assert_eq!(ids, truth(&sim), "{mode}");
        retries += stats.retries;
    }
    let served = sim.stats().html_200;
    assert!(served > 0, "{:?}", sim.stats());
    assert_eq!(retries, served);
    sim.shutdown().await;
}

#[tokio::test]
async fn an_unanswered_job_submission_is_not_sent_again_blindly() {
    // Every submission creates its job but answers after the client's timeout.
    let sim = sim(
        300,
        29,
        ExtractBehaviour {
            fault_slow_submit: 100,
            slow_submit_ms: 1500,
            ..Default::default()
        },
        |_| {},
    )
    .await;
    let c = client(&sim, |cfg| {
        cfg.request_timeout = Duration::from_millis(300);
        cfg.job_resubmits = 2;
    });
    let err = extract(&c, Mode::Jobs)
        .await
        .expect_err("no job id ever came back");
    assert!(err.is_transient(), "{err}");
    assert!(matches!(err, GenesysError::Unconfirmed { .. }), "{err:?}");
    // One submission and two resubmissions, not a retry loop of the transport on top.
    assert_eq!(sim.stats().jobs_submitted, 3, "{:?}", sim.stats());
    sim.shutdown().await;
}
