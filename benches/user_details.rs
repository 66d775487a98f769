//! How many requests, and how long, one day of user details (presence and routing status) takes
//! in each mode, against the simulator with added latency and the client's default rate limit
//! and page sizes (100 for the query, 1000 for job results).
//!
//! `cargo bench --bench user_details` (env: `GP_BENCH_AGENTS`, default 1000; `GP_BENCH_PER_DAY`
//! conversations a day, default 20000; `GP_BENCH_LATENCY_MS`, default 50). In `auto` mode the
//! user-details lake's availability date is mid-day (14:00), so the day is a job plus the query.
//! The floor is what the client's own rate limit sets for that many requests.

use std::time::{Duration, Instant};

use chrono::{NaiveDate, TimeZone, Utc};
use genesys_parquet::genesys::{ClientConfig, Credentials, GenesysClient, Hosts, Mode};
use genesys_parquet::interval::Interval;
use genesys_parquet::simulator::{self, SimConfig, UserDetailsBehaviour};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let agents = env_u64("GP_BENCH_AGENTS", 1000) as u32;
    let per_day = env_u64("GP_BENCH_PER_DAY", 20_000) as u32;
    let latency = env_u64("GP_BENCH_LATENCY_MS", 50);
    let day: NaiveDate = "2026-10-19".parse().expect("date");
    let interval = Interval::day(day);
    println!(
        "day {day}: {agents} agents, {per_day} conversations, {latency} ms added latency per request"
    );
    println!("mode   records  requests  retries  429s  pages   seconds  floor(s)  seconds/floor");
    for mode in [Mode::Jobs, Mode::Query, Mode::Auto] {
        let availability = match mode {
            Mode::Auto => Utc.with_ymd_and_hms(2026, 10, 19, 14, 0, 0).single(),
            _ => Utc.with_ymd_and_hms(2026, 10, 25, 0, 0, 0).single(),
        };
        // A fresh simulator per mode: no mode profits from another's cached result sets.
        let sim = simulator::start(SimConfig {
            seed: 1,
            per_day,
            agents,
            end_date: Some("2026-10-20".parse().expect("date")),
            latency_ms: latency,
            user_details: UserDetailsBehaviour {
                ud_availability_date: availability,
                ..Default::default()
            },
            ..SimConfig::default()
        })
        .await
        .expect("simulator");
        let truth = sim
            .dataset()
            .user_records_started_in(&interval, Utc::now())
            .len();
        let url = sim.base_url();
        let cfg = ClientConfig::new(
            Hosts::custom(&url, &url).expect("hosts"),
            Credentials::new("demo".into(), "demo".into()),
        );
        let rpm = cfg.requests_per_minute;
        let client = GenesysClient::new(cfg).expect("client");
        let t0 = Instant::now();
        let plan = client
            .plan_user_details(interval, mode)
            .await
            .expect("plan");
        let cleanup = client.job_cleanup();
        let got = client
            .extract_user_details(&plan, &cleanup)
            .await
            .expect("extract");
        let secs = t0.elapsed().as_secs_f64();
        let n = got.presence.len() + got.routing.len();
        assert_eq!(n, truth, "mode {mode} returned {n} records");
        // The plan's availability request is not in the extraction's counters.
        let s = cleanup.stats().snapshot();
        let requests = s.requests + u64::from(mode != Mode::Query);
        let floor = Duration::from_secs_f64((requests as f64) * 60.0 / f64::from(rpm));
        println!(
            "{:<6} {:>8} {:>9} {:>8} {:>5} {:>6} {:>9.1} {:>9.1} {:>14.2}",
            mode.to_string(),
            n,
            requests,
            s.retries,
            s.http_429,
            s.pages,
            secs,
            floor.as_secs_f64(),
            secs / floor.as_secs_f64().max(1e-9)
        );
        sim.shutdown().await;
    }
}
