//! User details (presence and routing status) against the simulator (port 0): the simulated
//! history is consistent with the conversations, and the client extracts each day exactly (the
//! records that start in it, each once, the freshest copy) in every mode, through the API's
//! user-details habits (short pages that are not the last, an approximate `totalHits`, one user
//! on several pages, records returned for every interval they overlap) and faults.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use genesys_parquet::genesys::user_details::UserDetails;
use genesys_parquet::genesys::{ClientConfig, Credentials, GenesysClient, Hosts, Mode};
use genesys_parquet::interval::{day_start, parse_time, Interval};
use genesys_parquet::simulator::{self, Dataset, SimConfig, SimHandle, UserDetailsBehaviour};

const END_DATE: &str = "2026-10-20";

fn day() -> NaiveDate {
    "2026-10-19".parse().expect("date")
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("time")
}

fn sim_cfg(tweak: impl FnOnce(&mut SimConfig)) -> SimConfig {
    let mut cfg = SimConfig {
        seed: 5,
        per_day: 150,
        agents: 24,
        end_date: Some(END_DATE.parse().expect("date")),
        job_ready_after_ms: 60,
        user_details: UserDetailsBehaviour {
            ud_availability_date: Some(at("2026-10-25T00:00:00Z")),
            ud_redundant_copies: 0.15,
            ..UserDetailsBehaviour::default()
        },
        ..SimConfig::default()
    };
    tweak(&mut cfg);
    cfg
}

async fn sim(tweak: impl FnOnce(&mut SimConfig)) -> SimHandle {
    simulator::start(sim_cfg(tweak)).await.expect("simulator")
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
    // Small pages: many pages per day, users across pages.
    cfg.user_details_query_page_size = 40;
    cfg.user_details_job_page_size = 90;
    tweak(&mut cfg);
    GenesysClient::new(cfg).expect("client")
}

/// (user, kind, start, end, status, organization presence)
type Row = (
    String,
    &'static str,
    i64,
    Option<i64>,
    String,
    Option<String>,
);

fn rows_of(u: &UserDetails) -> Vec<Row> {
    let mut v: Vec<Row> = u
        .presence
        .iter()
        .map(|p| {
            (
                p.user_id.clone(),
                "presence",
                p.start_time,
                p.end_time,
                p.system_presence.clone().unwrap_or_default(),
                p.organization_presence_id.clone(),
            )
        })
        .chain(u.routing.iter().map(|r| {
            (
                r.user_id.clone(),
                "routing",
                r.start_time,
                r.end_time,
                r.routing_status.clone().unwrap_or_default(),
                None,
            )
        }))
        .collect();
    v.sort();
    v
}

/// (routing, start, end, status)
type Span = (bool, i64, Option<i64>, &'static str);

fn truth(data: &Dataset, interval: &Interval) -> Vec<Row> {
    truth_in(data, interval, Utc::now())
}

/// The records starting in `interval`, as the service knows them at `now`, as table rows.
fn truth_in(data: &Dataset, interval: &Interval, now: DateTime<Utc>) -> Vec<Row> {
    let mut v: Vec<Row> = data
        .user_records_started_in(interval, now)
        .into_iter()
        .map(|r| {
            (
                data.agent_id(r.agent),
                if r.routing { "routing" } else { "presence" },
                r.start_ms,
                r.end_ms,
                r.system_presence()
                    .or(r.routing_status())
                    .unwrap_or_default()
                    .to_string(),
                r.organization_presence_id().map(str::to_string),
            )
        })
        .collect();
    v.sort();
    v
}

async fn extract_day(c: &GenesysClient, d: NaiveDate, mode: Mode) -> (UserDetails, u64) {
    let plan = c
        .plan_user_details(Interval::day(d), mode)
        .await
        .expect("plan");
    let cleanup = c.job_cleanup();
    let out = c
        .extract_user_details(&plan, &cleanup)
        .await
        .expect("extract");
    assert!(cleanup.jobs.ids().is_empty(), "every job deleted");
    (out, cleanup.stats().snapshot().requests)
}

fn assert_exact(got: &[Row], want: &[Row], what: &str) {
    let (g, w): (BTreeSet<&Row>, BTreeSet<&Row>) = (got.iter().collect(), want.iter().collect());
    assert_eq!(g.len(), got.len(), "{what}: a record twice");
    let missing: Vec<_> = w.difference(&g).take(5).collect();
    let extra: Vec<_> = g.difference(&w).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} got, {} expected; missing {missing:?}; unexpected {extra:?}",
        got.len(),
        want.len()
    );
}

#[test]
fn simulated_history_is_consistent_with_the_conversations() {
    let data = Dataset::for_config(&sim_cfg(|_| {}));
    let end: NaiveDate = END_DATE.parse().expect("date");
    let from = day_start(end - chrono::Duration::days(3)).timestamp_millis();
    let to = day_start(end + chrono::Duration::days(2)).timestamp_millis();
    let now = Utc::now().timestamp_millis();
    let mut by_agent: HashMap<String, Vec<Span>> = HashMap::new();
    let (mut midnight, mut multi_day, mut open) = (0, 0, 0);
    for a in 0..24 {
        let recs = data.agent_records(a, from, to, now);
        for kind in [false, true] {
            let mut v: Vec<_> = recs.iter().filter(|r| r.routing == kind).collect();
            v.sort_by_key(|r| r.start_ms);
            for w in v.windows(2) {
                // Consecutive records share the boundary; none overlaps the next.
                assert_eq!(w[0].end_ms, Some(w[1].start_ms), "agent {a}: {w:?}");
                assert_ne!(w[0].what, w[1].what, "agent {a}: same status twice: {w:?}");
            }
            let last = v.last().expect("records");
            assert_eq!(last.end_ms, None, "agent {a}: the last record is open");
            open += 1;
            for r in &v {
                if let Some(e) = r.end_ms {
                    let days = (e - 1).div_euclid(86_400_000) - r.start_ms.div_euclid(86_400_000);
                    midnight += usize::from(days >= 1);
                    multi_day += usize::from(days >= 2);
                }
            }
        }
        // ON_QUEUE presence whenever the agent is routing (IDLE, INTERACTING, NOT_RESPONDING).
        let pres: Vec<_> = recs.iter().filter(|r| !r.routing).collect();
        for r in recs
            .iter()
            .filter(|r| r.routing && r.routing_status() != Some("OFF_QUEUE"))
        {
            let e = r.end_ms.unwrap_or(i64::MAX);
            assert!(
                pres.iter().any(|p| p.system_presence() == Some("ON_QUEUE")
                    && p.start_ms <= r.start_ms
                    && p.end_ms.unwrap_or(i64::MAX) >= e),
                "agent {a}: routing {r:?} outside ON_QUEUE presence"
            );
        }
        by_agent.insert(
            data.agent_id(a),
            recs.iter()
                .map(|r| {
                    (
                        r.routing,
                        r.start_ms,
                        r.end_ms,
                        r.routing_status().or(r.system_presence()).unwrap_or(""),
                    )
                })
                .collect(),
        );
    }
    assert!(midnight > 20, "{midnight} records span midnight");
    assert!(multi_day > 0, "no record spans several days");
    assert_eq!(open, 48);
    // Every completed interact segment of an agent lies in an INTERACTING record of that agent.
    let (mut inside, mut total) = (0, 0);
    let d = end - chrono::Duration::days(1);
    for c in data.day(d).iter() {
        let v: serde_json::Value =
            serde_json::from_str(&data.record(c, false, Utc::now())).expect("record");
        for p in v["participants"].as_array().expect("participants") {
            if p["purpose"] != "agent" {
                continue;
            }
            let user = p["userId"].as_str().expect("userId");
            let recs = by_agent
                .get(user)
                .expect("the agent participant is a pool agent");
            for s in p["sessions"].as_array().expect("sessions") {
                for g in s["segments"].as_array().expect("segments") {
                    let (Some(a), Some(b)) = (g["segmentStart"].as_str(), g["segmentEnd"].as_str())
                    else {
                        continue;
                    };
                    if g["segmentType"] != "interact" {
                        continue;
                    }
                    let (a, b) = (
                        parse_time(a).expect("t").timestamp_millis(),
                        parse_time(b).expect("t").timestamp_millis(),
                    );
                    total += 1;
                    inside += usize::from(recs.iter().any(|&(routing, s, e, st)| {
                        routing && st == "INTERACTING" && s <= a && e.unwrap_or(i64::MAX) >= b
                    }));
                }
            }
        }
    }
    assert!(total > 100, "{total} interact segments");
    assert_eq!(inside, total, "interact segments inside INTERACTING");
}

#[tokio::test]
async fn each_mode_extracts_exactly_the_records_that_start_in_the_day() {
    let sim = sim(|_| {}).await;
    let interval = Interval::day(day());
    let want = truth(sim.dataset(), &interval);
    assert!(want.len() > 500, "{} records", want.len());
    // A record spanning midnight appears once, in its start day.
    let next = Interval::day(day() + chrono::Duration::days(1));
    let c = client(&sim, |_| {});
    for mode in [Mode::Query, Mode::Jobs, Mode::Auto] {
        let (got, requests) = extract_day(&c, day(), mode).await;
        assert_exact(&rows_of(&got), &want, &format!("{mode}"));
        assert!(requests > 5, "{mode}: {requests} requests");
        let (later, _) = extract_day(&c, next.start.date_naive(), mode).await;
        let later = rows_of(&later);
        let spanning = want
            .iter()
            .filter(|r| r.3.is_none_or(|e| e > next.start.timestamp_millis()))
            .count();
        assert!(spanning > 10, "{spanning} records run past midnight");
        assert!(
            later.iter().all(|r| r.2 >= next.start.timestamp_millis()),
            "{mode}: the next day holds only its own starts"
        );
        assert_exact(
            &later,
            &truth(sim.dataset(), &next),
            &format!("{mode} next day"),
        );
    }
    // The last day's final records are open: null end_time.
    let last: NaiveDate = END_DATE.parse().expect("date");
    let (got, _) = extract_day(&c, last, Mode::Query).await;
    let open = got.open_records();
    assert!(open >= 10, "{open} open records");
    assert_exact(
        &rows_of(&got),
        &truth(sim.dataset(), &Interval::day(last)),
        "last day",
    );
    let stats = sim.stats();
    assert!(stats.by_endpoint.get("ud_query").copied().unwrap_or(0) > 20);
    assert!(
        stats
            .by_endpoint
            .get("ud_jobs_results")
            .copied()
            .unwrap_or(0)
            > 4
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn auto_mode_splits_at_the_user_details_availability_date() {
    // The user-details lake ends mid-day (the conversations' lake is elsewhere): the part before
    // comes from a job (a snapshot at that date: records still open then), the rest from the
    // query, whose fresher copies close them.
    let avail = at("2026-10-19T13:30:00Z");
    let sim = sim(|c| {
        c.user_details.ud_availability_date = Some(avail);
        c.extract.availability_date = Some(at("2026-10-01T00:00:00Z"));
    })
    .await;
    let c = client(&sim, |_| {});
    let plan = c
        .plan_user_details(Interval::day(day()), Mode::Auto)
        .await
        .expect("plan");
    assert_eq!(plan.paths(), "jobs+query");
    assert_eq!(plan.data_availability_date, Some(avail));
    let (got, _) = extract_day(&c, day(), Mode::Auto).await;
    assert_exact(
        &rows_of(&got),
        &truth(sim.dataset(), &Interval::day(day())),
        "auto",
    );
    let a = avail.timestamp_millis();
    let closed_later = rows_of(&got)
        .iter()
        .filter(|r| r.2 < a && r.3.is_some_and(|e| e > a))
        .count();
    assert!(
        closed_later > 10,
        "{closed_later} records open at the lake's date, closed by the query's copies"
    );
    let s = sim.stats();
    assert_eq!(s.jobs_submitted, 1);
    assert_eq!(s.jobs_deleted, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_do_not_change_the_result() {
    let sim = sim(|c| {
        c.fault_429 = 0.03;
        c.fault_5xx = 0.08;
        c.fault_token_expiry_after = Some(15);
        c.fault_job_failed = 1;
        c.user_details.ud_skip_middle_days = true;
        c.user_details.ud_exact_total_hits = false;
    })
    .await;
    let c = client(&sim, |_| {});
    let want = truth(sim.dataset(), &Interval::day(day()));
    for mode in [Mode::Jobs, Mode::Query, Mode::Auto] {
        let (got, _) = extract_day(&c, day(), mode).await;
        assert_exact(&rows_of(&got), &want, &format!("{mode} with faults"));
    }
    let s = sim.stats();
    assert!(s.http_429 > 0 && s.http_5xx > 0, "{s:?}");
    assert!(s.logins >= 2, "token expiry: {s:?}");
    // The failed job was submitted again; every job deleted.
    assert!(s.jobs_submitted >= 3, "{s:?}");
    assert_eq!(s.jobs_alive, 0, "{s:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn short_pages_are_not_the_last_and_totalhits_is_not_a_count() {
    // Many redundant copies: most pages come back short; totalHits is rounded down to its order
    // of magnitude. A client that stopped on a short page, or at totalHits, would lose records.
    let sim = sim(|c| c.user_details.ud_redundant_copies = 0.5).await;
    let c = client(&sim, |_| {});
    let (got, _) = extract_day(&c, day(), Mode::Query).await;
    assert_exact(
        &rows_of(&got),
        &truth(sim.dataset(), &Interval::day(day())),
        "redundant copies",
    );
    // The raw API: page 1 is short, and totalHits is not the number of records.
    let http = reqwest::Client::new();
    let token: serde_json::Value = http
        .post(format!("{}/oauth/token", sim.base_url()))
        .basic_auth("demo", Some("demo"))
        .body("grant_type=client_credentials")
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("token");
    let page: serde_json::Value = http
        .post(format!(
            "{}/api/v2/analytics/users/details/query",
            sim.base_url()
        ))
        .bearer_auth(token["access_token"].as_str().expect("token"))
        .json(&serde_json::json!({
            "interval": Interval::day(day()).to_genesys(),
            "paging": {"pageSize": 100, "pageNumber": 1}
        }))
        .send()
        .await
        .expect("query")
        .json()
        .await
        .expect("page");
    let n: usize = page["userDetails"]
        .as_array()
        .expect("userDetails")
        .iter()
        .map(|u| {
            u["primaryPresence"].as_array().map_or(0, Vec::len)
                + u["routingStatus"].as_array().map_or(0, Vec::len)
        })
        .sum();
    assert!(n < 100, "page 1 is short: {n}");
    let total = page["totalHits"].as_u64().expect("totalHits");
    assert_eq!(total % 100, 0, "order of magnitude: {total}");
    sim.shutdown().await;
}

fn python() -> String {
    std::env::var("GP_PYTHON").unwrap_or_else(|_| {
        panic!("GP_PYTHON is not set: point it at a Python with duckdb (bash .ci/run does)")
    })
}

/// Reads the written tables with DuckDB: every status row (with its partition), and how many
/// completed agent interact segments of `day` lie inside an INTERACTING record of their agent.
const DUCKDB_CHECK: &str = r#"
import duckdb, json, sys
out, day = sys.argv[1], sys.argv[2]
con = duckdb.connect()
def t(name):
    return f"read_parquet('{out}/{name}/*/*.parquet', hive_partitioning=true, hive_types_autocast=false)"
rows = []
for table, status in [("user_presence", "system_presence || '/' || organization_presence_id"), ("user_routing_status", "routing_status")]:
    for r in con.sql(f"SELECT status_date, user_id, epoch_ms(start_time), epoch_ms(end_time), {status} FROM {t(table)}").fetchall():
        rows.append([table] + list(r))
inside, total = con.sql(f"""
WITH seg AS (
  SELECT p.user_id, s.segment_start, s.segment_end
  FROM {t('segments')} s
  JOIN {t('participants')} p ON p.conversation_id = s.conversation_id AND p.participant_id = s.participant_id
  WHERE s.segment_type = 'interact' AND s.segment_end IS NOT NULL AND p.purpose = 'agent'
    AND s.conversation_date = '{day}'
)
SELECT count(*) FILTER (WHERE EXISTS (
         SELECT 1 FROM {t('user_routing_status')} r
         WHERE r.user_id = seg.user_id AND r.routing_status = 'INTERACTING'
           AND r.start_time <= seg.segment_start
           AND (r.end_time IS NULL OR r.end_time >= seg.segment_end))),
       count(*)
FROM seg
""").fetchall()[0]
print(json.dumps({"rows": rows, "inside": inside, "total": total}))
"#;

#[tokio::test]
async fn the_pipeline_writes_each_day_exactly_and_interact_segments_lie_in_interacting() {
    use genesys_parquet::datasets::{conversations, user_details};
    use genesys_parquet::pipeline::{self, NoProgress, PipelineConfig};
    use genesys_parquet::sink::{DayStore, Store};
    use std::sync::Arc;

    let sim = sim(|c| {
        c.extract.availability_date = Some(at("2026-10-21T00:00:00Z"));
        c.user_details.ud_availability_date = Some(at("2026-10-19T12:00:00Z"));
    })
    .await;
    let c = client(&sim, |_| {});
    let out = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(DayStore::local(out.path()).expect("store"));
    let cfg = PipelineConfig {
        datasets: vec![&conversations::DATASET, &user_details::DATASET],
        ..PipelineConfig::default()
    };
    let range = Interval::new(
        day_start("2026-10-18".parse().expect("date")),
        day_start("2026-10-20".parse().expect("date")),
    )
    .expect("range");
    let summary = pipeline::extract(&c, store, range, &cfg, Arc::new(NoProgress)).await;
    assert!(
        summary.ok,
        "{}",
        serde_json::to_string_pretty(&summary).unwrap_or_default()
    );
    let o = std::process::Command::new(python())
        .arg("-c")
        .arg(DUCKDB_CHECK)
        .arg(out.path())
        .arg("2026-10-19")
        .output()
        .expect("python");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    // Each day's partitions hold exactly the simulator's records that start in it, each once.
    for d in ["2026-10-18", "2026-10-19"] {
        let day: NaiveDate = d.parse().expect("date");
        let mut got: Vec<Row> = v["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .filter(|r| r[1] == d)
            .map(|r| {
                let status = r[5].as_str().unwrap_or_default().to_string();
                let (kind, st, org) = match r[0].as_str() {
                    Some("user_presence") => {
                        let (s, o) = status.split_once('/').expect("presence/org");
                        ("presence", s.to_string(), Some(o.to_string()))
                    }
                    _ => ("routing", status, None),
                };
                (
                    r[2].as_str().expect("user").to_string(),
                    kind,
                    r[3].as_i64().expect("start"),
                    r[4].as_i64(),
                    st,
                    org,
                )
            })
            .collect();
        got.sort();
        // A day wholly before the user-details lake's date comes from a job: the lake's copy of
        // a record still open at that date has no end yet (a later re-extraction closes it).
        let avail = at("2026-10-19T12:00:00Z").timestamp_millis();
        let whole_day_from_jobs = Interval::day(day).end.timestamp_millis() <= avail;
        let mut want = truth(sim.dataset(), &Interval::day(day));
        for r in want.iter_mut() {
            if whole_day_from_jobs && r.3.is_some_and(|e| e > avail) {
                r.3 = None;
            }
        }
        want.sort();
        assert_exact(&got, &want, d);
    }
    // In the written data, agents' completed interact segments lie in INTERACTING records.
    let (inside, total) = (
        v["inside"].as_u64().expect("inside"),
        v["total"].as_u64().expect("total"),
    );
    assert!(total > 100, "{total} interact segments");
    assert!(
        inside * 10 >= total * 9,
        "{inside} of {total} interact segments inside INTERACTING"
    );
    sim.shutdown().await;
}

/// The rows of one partition of `table` (`user_presence` or `user_routing_status`), read back
/// from the Parquet files its manifest lists, as [`Row`]s.
fn partition_rows(root: &std::path::Path, m: &genesys_parquet::sink::Manifest) -> Vec<Row> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Int64Type};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut out = Vec::new();
    for f in m.files.iter().filter(|f| f.table.starts_with("user_")) {
        let file = std::fs::File::open(root.join(&f.key)).expect("part file");
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("parquet")
            .build()
            .expect("reader");
        for batch in reader {
            let b = batch.expect("batch");
            let col = |name: &str, ty: &DataType| {
                arrow::compute::cast(b.column_by_name(name).expect(name), ty).expect("cast")
            };
            let users = col("user_id", &DataType::Utf8);
            let starts = col("start_time", &DataType::Int64);
            let ends = col("end_time", &DataType::Int64);
            let routing = f.table == "user_routing_status";
            let status = col(
                if routing {
                    "routing_status"
                } else {
                    "system_presence"
                },
                &DataType::Utf8,
            );
            let org = (!routing).then(|| col("organization_presence_id", &DataType::Utf8));
            let (users, starts, ends, status) = (
                users.as_string::<i32>(),
                starts.as_primitive::<Int64Type>(),
                ends.as_primitive::<Int64Type>(),
                status.as_string::<i32>(),
            );
            for i in 0..b.num_rows() {
                out.push((
                    users.value(i).to_string(),
                    if routing { "routing" } else { "presence" },
                    starts.value(i),
                    ends.is_valid(i).then(|| ends.value(i)),
                    status.value(i).to_string(),
                    org.as_ref()
                        .map(|o| o.as_string::<i32>().value(i).to_string()),
                ));
            }
        }
    }
    out.sort();
    out
}

/// The truth of `day` as the service knows it at `now` (rows of [`truth`]).
fn truth_at(data: &Dataset, day: NaiveDate, now: DateTime<Utc>) -> Vec<Row> {
    truth_in(data, &Interval::day(day), now)
}

/// Records open for days: a nightly run extracts again, whole, each earlier day whose manifest
/// still counts open records, within the horizon. A record open on day D when D was extracted
/// (the manifest counts it) closes later; a nightly run days after, with D outside its
/// lookback, extracts D again and the record gets its end; a run whose horizon ends after D
/// leaves D as it was. The simulated service's clock moves between the runs.
#[tokio::test]
async fn nightly_runs_extract_again_the_days_with_open_records_within_the_horizon() {
    use genesys_parquet::datasets::user_details;
    use genesys_parquet::pipeline::{self, NoProgress, PipelineConfig};
    use genesys_parquet::sink::{DayStore, Store};
    use std::sync::Arc;

    let d = day();
    // The query path throughout (it answers as of the service's clock).
    let sim = sim(|c| {
        c.end_date = Some("2026-10-30".parse().expect("date"));
        c.user_details.ud_availability_date = Some(at("2026-09-01T00:00:00Z"));
        c.user_details.ud_redundant_copies = 0.0;
    })
    .await;
    let c = client(&sim, |_| {});
    let out = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(DayStore::local(out.path()).expect("store"));
    let nightly = |horizon: u32| PipelineConfig {
        datasets: vec![&user_details::DATASET],
        reopen_open_days: true,
        open_horizon_days: horizon,
        ..PipelineConfig::default()
    };
    // A nightly run's days: yesterday of `at` and one lookback day.
    let days_before = |at: DateTime<Utc>| {
        let y = at.date_naive() - chrono::Duration::days(1);
        Interval::new(
            day_start(y - chrono::Duration::days(1)),
            day_start(y + chrono::Duration::days(1)),
        )
        .expect("range")
    };
    let manifest = |date: NaiveDate| {
        let store = store.clone();
        async move {
            store
                .manifest(&user_details::DATASET, date)
                .await
                .expect("manifest")
                .expect("published")
        }
    };
    let open_of = |rows: &[Row]| rows.iter().filter(|r| r.3.is_none()).count() as u64;

    // The night after D: D is yesterday, its last records still open.
    let t1 = at("2026-10-20T03:00:00Z");
    sim.set_now(Some(t1));
    let s = pipeline::extract(
        &c,
        store.clone(),
        days_before(t1),
        &nightly(60),
        Arc::new(NoProgress),
    )
    .await;
    assert!(
        s.ok,
        "{}",
        serde_json::to_string_pretty(&s).unwrap_or_default()
    );
    assert!(s.reopened.is_empty(), "{:?}", s.reopened);
    let first = manifest(d).await;
    let want1 = truth_at(sim.dataset(), d, t1);
    assert_exact(&partition_rows(out.path(), &first), &want1, "D at t1");
    assert_eq!(first.open, open_of(&want1));
    assert!(first.open > 0, "records of D still open at t1");

    // Six days later (D outside the lookback), records of D open at t1 have closed since.
    let t2 = at("2026-10-26T03:00:00Z");
    sim.set_now(Some(t2));
    let want2 = truth_at(sim.dataset(), d, t2);
    let closed = want1
        .iter()
        .filter(|r| r.3.is_none())
        .filter(|r| {
            want2
                .iter()
                .any(|w| (&w.0, w.1, w.2, w.3.is_some()) == (&r.0, r.1, r.2, true))
        })
        .count();
    assert!(closed > 0, "some records of D open at t1 end before t2");

    // A horizon of 5 days ends after D: D stays as written at t1.
    let s = pipeline::extract(
        &c,
        store.clone(),
        days_before(t2),
        &nightly(5),
        Arc::new(NoProgress),
    )
    .await;
    assert!(
        s.ok,
        "{}",
        serde_json::to_string_pretty(&s).unwrap_or_default()
    );
    assert!(
        s.days
            .iter()
            .all(|x| x.date >= "2026-10-21".parse().expect("date")),
        "{:?}",
        s.reopened
    );
    assert_eq!(
        manifest(d).await.run_id,
        first.run_id,
        "D not extracted again"
    );

    // The default horizon reaches D: it is extracted again, whole, and its records closed.
    let s = pipeline::extract(
        &c,
        store.clone(),
        days_before(t2),
        &nightly(60),
        Arc::new(NoProgress),
    )
    .await;
    assert!(
        s.ok,
        "{}",
        serde_json::to_string_pretty(&s).unwrap_or_default()
    );
    assert!(
        s.reopened.contains(&format!("user_details/{d}")),
        "{:?}",
        s.reopened
    );
    assert!(s.days.iter().any(|x| x.date == d && x.status == "ok"));
    // Only days with open records are extracted again: the days between are not.
    for x in &s.reopened {
        let date: NaiveDate = x.rsplit('/').next().expect("date").parse().expect("date");
        assert!(
            open_of(&truth_at(sim.dataset(), date, t1)) > 0
                || date >= "2026-10-21".parse().expect("date"),
            "{x} had no open record"
        );
    }
    let again = manifest(d).await;
    assert_ne!(again.run_id, first.run_id);
    assert_exact(&partition_rows(out.path(), &again), &want2, "D at t2");
    assert_eq!(again.open, open_of(&want2));
    assert!(
        again.open < first.open,
        "{} of {} still open",
        again.open,
        first.open
    );
    sim.shutdown().await;
}
