//! How many requests, and how long, one day of conversations takes in each mode, against the
//! simulator with added latency and the client's default rate limit.
//!
//! `cargo bench --bench extract` (env: `GP_BENCH_PER_DAY`, default 50000; `GP_BENCH_LATENCY_MS`,
//! default 50; `GP_BENCH_TIES_PERCENT`, default 0: that share of conversations start in the same
//! millisecond as another and come back in a new order on every query request, and the
//! `repairs` column counts the requests spent making the query's result whole). The reference is the floor the client's own rate limit sets for that many
//! requests (requests ÷ requests-per-minute), measured in the same run.

use std::time::{Duration, Instant};

use futures::StreamExt;
use genesys_parquet::genesys::{ClientConfig, Credentials, GenesysClient, Hosts, Mode};
use genesys_parquet::interval::Interval;
use genesys_parquet::simulator::{self, SimConfig};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let per_day = env_u64("GP_BENCH_PER_DAY", 50_000) as u32;
    let latency = env_u64("GP_BENCH_LATENCY_MS", 50);
    let ties = env_u64("GP_BENCH_TIES_PERCENT", 0) as f64 / 100.0;
    let day: chrono::NaiveDate = "2026-10-19".parse().expect("date");
    let sim = simulator::start(SimConfig {
        seed: 1,
        per_day,
        end_date: Some("2026-10-20".parse().expect("date")),
        latency_ms: latency,
        extract: simulator::ExtractBehaviour {
            ties,
            unstable_tie_order: ties > 0.0,
            ..Default::default()
        },
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let interval = Interval::day(day);
    let truth = sim.dataset().conversation_ids_started_in(&interval).len();
    println!("day {day}: {truth} conversations, {latency} ms added latency per request");
    println!("mode   requests  retries  429s  pages  repairs   seconds  floor(s)  seconds/floor");
    for mode in [Mode::Jobs, Mode::Query] {
        let url = sim.base_url();
        let cfg = ClientConfig::new(
            Hosts::custom(&url, &url).expect("hosts"),
            Credentials::new("demo".into(), "demo".into()),
        );
        let rpm = cfg.requests_per_minute;
        let client = GenesysClient::new(cfg).expect("client");
        let t0 = Instant::now();
        let plan = client.plan(interval, mode).await.expect("plan");
        let extraction = client.extract(plan);
        let stats = extraction.stats.clone();
        let mut pages = extraction.pages;
        let mut n = 0usize;
        while let Some(page) = pages.next().await {
            n += page.expect("page").len();
        }
        let secs = t0.elapsed().as_secs_f64();
        assert_eq!(n, truth, "mode {mode} returned {n} conversations");
        let s = stats.snapshot();
        let floor = Duration::from_secs_f64((s.requests as f64) * 60.0 / f64::from(rpm));
        println!(
            "{:<6} {:>8} {:>8} {:>5} {:>6} {:>8} {:>9.1} {:>9.1} {:>14.2}",
            mode.to_string(),
            s.requests,
            s.retries,
            s.http_429,
            s.pages,
            s.repairs,
            secs,
            floor.as_secs_f64(),
            secs / floor.as_secs_f64().max(1e-9)
        );
    }
    sim.shutdown().await;
}
