//! The reference tables end to end, against the simulator (port 0) into a local store, read
//! back with DuckDB (`GP_PYTHON`): each table's id set is what the API lets one list; every id
//! the conversation tables carry that belongs to a listable entity resolves to a name by a
//! plain join; the `<table>_latest` views (their SQL as generated for Athena) keep the name of
//! an entity a later snapshot no longer lists.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use genesys_parquet::datasets::{self, reference, Dataset};
use genesys_parquet::genesys::{ClientConfig, Credentials, GenesysClient, Hosts};
use genesys_parquet::interval::{day_start, Interval};
use genesys_parquet::pipeline::{self, NoProgress, PipelineConfig, RunSummary};
use genesys_parquet::simulator::{self, reference as universe, ExtractBehaviour, SimConfig};
use genesys_parquet::sink::{DayStore, Store};
use genesys_parquet::tables::ddl;

fn date(s: &str) -> NaiveDate {
    s.parse().expect("date")
}

fn sim_config() -> SimConfig {
    SimConfig {
        seed: 7,
        per_day: 80,
        end_date: Some(date("2026-10-20")),
        ref_page_size_cap: 4,
        extract: ExtractBehaviour {
            availability_date: Some("2026-10-21T00:00:00Z".parse().expect("time")),
            ..Default::default()
        },
        ..SimConfig::default()
    }
}

fn client(api: &str) -> GenesysClient {
    let mut cfg = ClientConfig::new(
        Hosts::custom(api, api).expect("hosts"),
        Credentials::new("demo".to_string(), "demo".to_string()),
    );
    cfg.requests_per_minute = 100_000;
    cfg.job_poll_initial = Duration::from_millis(20);
    cfg.job_poll_max = Duration::from_millis(60);
    cfg.retry.initial_backoff = Duration::from_millis(5);
    cfg.retry.max_backoff = Duration::from_millis(20);
    GenesysClient::new(cfg).expect("client")
}

async fn extract(sim: SimConfig, out: &Path, datasets: Vec<&'static Dataset>) -> RunSummary {
    let sim = simulator::start(SimConfig {
        job_ready_after_ms: 60,
        ..sim
    })
    .await
    .expect("sim");
    let range =
        Interval::new(day_start(date("2026-10-19")), day_start(date("2026-10-21"))).expect("range");
    let store: Arc<dyn Store> = Arc::new(DayStore::local(out).expect("store"));
    let cfg = PipelineConfig {
        datasets,
        ..PipelineConfig::default()
    };
    let s = pipeline::extract(
        &client(&sim.base_url()),
        store,
        range,
        &cfg,
        Arc::new(NoProgress),
    )
    .await;
    sim.shutdown().await;
    s
}

fn everything() -> Vec<&'static Dataset> {
    let mut v = vec![&datasets::conversations::DATASET];
    v.extend(reference::ALL.iter().copied());
    v
}

fn python() -> String {
    std::env::var("GP_PYTHON").unwrap_or_else(|_| {
        panic!("GP_PYTHON is not set: point it at a Python with duckdb (bash .ci/run does)")
    })
}

/// Runs a DuckDB script with `OUT` set and every table of the output as a view of its files
/// (`snapshot_date` / `conversation_date` from the paths); returns its stdout as JSON.
fn duckdb(out: &Path, script: &str, env: &[(&str, String)]) -> serde_json::Value {
    let prelude = r#"
import duckdb, json, os
OUT = os.environ['OUT']
con = duckdb.connect()
for t in sorted(os.listdir(OUT)):
    if not t.startswith('_'):
        con.execute(f"CREATE VIEW \"{t}\" AS SELECT * FROM read_parquet('{OUT}/{t}/*/*.parquet', hive_partitioning=true, hive_types_autocast=false)")
"#;
    let o = Command::new(python())
        .arg("-c")
        .arg(format!("{prelude}{script}"))
        .env("OUT", out)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run python");
    assert!(
        o.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("python printed JSON")
}

fn strings(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_array()
        .expect("list")
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

/// Ids the conversation tables carry that no reference row names, per reference table.
const UNRESOLVED: &str = r#"
q = {
  "queues": "SELECT DISTINCT s.queue_id FROM segments s LEFT JOIN queues r ON r.queue_id = s.queue_id WHERE s.queue_id IS NOT NULL AND r.name IS NULL",
  "wrapup_codes": "SELECT DISTINCT s.wrap_up_code FROM segments s LEFT JOIN wrapup_codes r ON r.wrapup_code_id = s.wrap_up_code WHERE s.wrap_up_code IS NOT NULL AND r.name IS NULL",
  "users": "SELECT DISTINCT p.user_id FROM participants p LEFT JOIN users r ON r.user_id = p.user_id WHERE p.user_id IS NOT NULL AND r.name IS NULL",
  "divisions": "SELECT DISTINCT d FROM (SELECT unnest(division_ids) AS d FROM conversations) c LEFT JOIN divisions r ON r.division_id = c.d WHERE r.name IS NULL",
}
res = {"unresolved": {k: sorted(r[0] for r in con.execute(v).fetchall()) for k, v in q.items()}}
res["resolved"] = {
  "queues": con.execute("SELECT count(DISTINCT s.queue_id) FROM segments s JOIN queues r ON r.queue_id = s.queue_id").fetchone()[0],
  "wrapup_codes": con.execute("SELECT count(DISTINCT s.wrap_up_code) FROM segments s JOIN wrapup_codes r ON r.wrapup_code_id = s.wrap_up_code").fetchone()[0],
  "users": con.execute("SELECT count(DISTINCT p.user_id) FROM participants p JOIN users r ON r.user_id = p.user_id").fetchone()[0],
}
res["ids"] = {}
for t, col in json.loads(os.environ['ID_COLUMNS']).items():
    res["ids"][t] = sorted(r[0] for r in con.execute(f'SELECT "{col}" FROM "{t}"').fetchall())
res["deleted_code"] = con.execute("SELECT name, state FROM wrapup_codes WHERE state = 'deleted'").fetchall()
res["presence"] = con.execute("SELECT name, labels FROM presence_definitions WHERE system_presence = 'Available'").fetchall()
res["user_states"] = sorted(set(r[0] for r in con.execute("SELECT state FROM users").fetchall()))
print(json.dumps(res, default=str))
"#;

fn id_columns() -> String {
    let m: serde_json::Map<String, serde_json::Value> = reference::ALL
        .iter()
        .map(|d| {
            let t = d.tables[0];
            (
                t.name().to_string(),
                serde_json::Value::from(reference::id_column(t).expect("id column")),
            )
        })
        .collect();
    serde_json::Value::Object(m).to_string()
}

fn duckdb_with_ids(out: &Path, script: &str) -> serde_json::Value {
    duckdb(out, script, &[("ID_COLUMNS", id_columns())])
}

/// The run summary's count of unnamed ids per reference table in `tables` is what a join
/// finds (`r["unresolved"][table]`, the ids no row of it names).
fn counts_what_the_join_cannot_name(s: &RunSummary, r: &serde_json::Value, tables: &[&str]) {
    let counted = serde_json::to_value(&s.unresolved_ids).expect("json");
    for t in tables {
        assert_eq!(
            counted[t].as_u64(),
            Some(r["unresolved"][t].as_array().expect("list").len() as u64),
            "{t}: {counted}"
        );
    }
}

#[tokio::test]
async fn every_listable_id_resolves_to_a_name_by_a_plain_join() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = extract(sim_config(), dir.path(), everything()).await;
    assert!(s.ok, "{}", serde_json::to_string_pretty(&s).expect("json"));
    assert_eq!(s.warnings, 0);
    let r = duckdb_with_ids(dir.path(), UNRESOLVED);
    for d in reference::ALL {
        let t = d.tables[0].name();
        let want: BTreeSet<String> = universe::listable_ids(t).into_iter().collect();
        assert_eq!(
            strings(&r["ids"][t]),
            want,
            "{t}: the ids the API lets one list"
        );
        assert_eq!(
            r["ids"][t].as_array().expect("ids").len(),
            want.len(),
            "{t}: once each"
        );
    }
    assert_eq!(
        r["user_states"],
        serde_json::json!(["active", "deleted", "inactive"])
    );
    // The summary counts what the join cannot name, per reference table.
    counts_what_the_join_cannot_name(&s, &r, &["queues", "wrapup_codes", "users", "divisions"]);
    // Only the deleted queue (never listable) stays without a name.
    assert_eq!(
        r["unresolved"],
        serde_json::json!({"queues": [universe::DELETED_QUEUE], "wrapup_codes": [], "users": [], "divisions": []})
    );
    assert!(r["resolved"]["queues"].as_u64().expect("n") >= 3);
    assert!(r["resolved"]["users"].as_u64().expect("n") >= 10);
    assert_eq!(
        r["deleted_code"],
        serde_json::json!([["Sold – old campaign", "deleted"]])
    );
    // The demo's query: names for every queue and code but the deleted queue's id.
    let q = duckdb(
        dir.path(),
        "print(json.dumps(con.execute(os.environ['Q']).fetchall()))",
        &[("Q", ddl::names_query(&dir.path().display().to_string()))],
    );
    let rows = q.as_array().expect("rows");
    assert!(!rows.is_empty());
    let queues: BTreeSet<String> = rows
        .iter()
        .map(|r| r[0].as_str().expect("queue").to_string())
        .collect();
    let codes: BTreeSet<String> = rows
        .iter()
        .map(|r| r[1].as_str().expect("code").to_string())
        .collect();
    let named: BTreeSet<String> = universe::QUEUES
        .iter()
        .map(|(id, name)| {
            if *id == universe::DELETED_QUEUE {
                id.to_string()
            } else {
                name.to_string()
            }
        })
        .collect();
    assert_eq!(queues, named, "queue names; the deleted queue by its id");
    let code_names: BTreeSet<String> = universe::WRAPUPS
        .iter()
        .map(|(_, n)| n.to_string())
        .collect();
    assert_eq!(codes, code_names);
    let presence = &r["presence"][0];
    assert_eq!(presence[0], "Available");
    let labels: serde_json::Value =
        serde_json::from_str(presence[1].as_str().expect("labels")).expect("labels JSON");
    assert_eq!(labels["de"], "Verfügbar");
}

/// Agents' status records name users and presence definitions: the summary counts the ids
/// the run's snapshots cannot name, as a join does.
#[tokio::test]
async fn status_records_ids_resolve_and_the_summary_counts_the_unnamed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let datasets = vec![
        &datasets::user_details::DATASET,
        &reference::USERS_DATASET,
        &reference::PRESENCE_DEFINITIONS_DATASET,
    ];
    let s = extract(sim_config(), dir.path(), datasets).await;
    assert!(s.ok, "{}", serde_json::to_string_pretty(&s).expect("json"));
    let r = duckdb(
        dir.path(),
        r#"
users = "SELECT user_id FROM user_presence UNION SELECT user_id FROM user_routing_status"
q = {
  "users": f"SELECT DISTINCT u.user_id FROM ({users}) u LEFT JOIN users r ON r.user_id = u.user_id WHERE r.name IS NULL",
  "presence_definitions": "SELECT DISTINCT p.organization_presence_id FROM user_presence p LEFT JOIN presence_definitions r ON r.presence_definition_id = p.organization_presence_id WHERE p.organization_presence_id IS NOT NULL AND r.name IS NULL",
}
res = {"unresolved": {k: sorted(r[0] for r in con.execute(v).fetchall()) for k, v in q.items()}}
res["resolved"] = {
  "users": con.execute(f"SELECT count(DISTINCT u.user_id) FROM ({users}) u JOIN users r ON r.user_id = u.user_id").fetchone()[0],
  "presence_definitions": con.execute("SELECT count(DISTINCT p.organization_presence_id) FROM user_presence p JOIN presence_definitions r ON r.presence_definition_id = p.organization_presence_id").fetchone()[0],
}
print(json.dumps(res))
"#,
        &[],
    );
    counts_what_the_join_cannot_name(&s, &r, &["users", "presence_definitions"]);
    assert_eq!(
        r["unresolved"],
        serde_json::json!({"users": [], "presence_definitions": []})
    );
    assert!(r["resolved"]["users"].as_u64().expect("n") >= 5, "{r}");
    assert!(
        r["resolved"]["presence_definitions"].as_u64().expect("n") >= 3,
        "{r}"
    );
}

#[tokio::test]
async fn optional_listings_refused_leave_their_entities_unnamed_and_warn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = SimConfig {
        missing_permissions: vec![
            "routing:wrapupCode:search".into(),
            "authorization:divisionDeleted:view".into(),
        ],
        ..sim_config()
    };
    let s = extract(sim, dir.path(), everything()).await;
    assert!(s.ok, "{}", serde_json::to_string_pretty(&s).expect("json"));
    assert_eq!(
        s.warnings,
        2,
        "{}",
        serde_json::to_string_pretty(&s).expect("json")
    );
    let r = duckdb_with_ids(dir.path(), UNRESOLVED);
    assert_eq!(
        r["unresolved"]["wrapup_codes"],
        serde_json::json!([universe::DELETED_WRAPUP])
    );
    assert_eq!(
        r["unresolved"]["divisions"],
        serde_json::json!([universe::DIVISION_LEGACY])
    );
}

#[tokio::test]
async fn a_required_listing_refused_fails_its_table_only_naming_the_permission() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = SimConfig {
        missing_permissions: vec!["routing:queue:view".into()],
        ..sim_config()
    };
    let s = extract(sim, dir.path(), everything()).await;
    assert!(!s.ok);
    assert!(
        s.fatal.is_none(),
        "a missing permission fails one dataset, not the run"
    );
    let failed: Vec<_> = s.days.iter().filter(|d| d.status != "ok").collect();
    assert_eq!(
        failed.len(),
        1,
        "{}",
        serde_json::to_string_pretty(&s).expect("json")
    );
    assert_eq!(failed[0].dataset, "queues");
    let e = failed[0].error.as_deref().expect("error");
    assert!(e.contains("routing:queue:view"), "{e}");
    assert!(!dir.path().join("queues").exists());
    assert!(dir.path().join("users").exists());
}

/// The `_latest` view's SQL (as generated for Athena) over two snapshots: an entity the second
/// snapshot no longer lists keeps the name the first gave it.
#[tokio::test]
async fn a_latest_view_keeps_the_name_of_an_entity_a_later_snapshot_no_longer_lists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let divisions = vec![&reference::DIVISIONS_DATASET];
    let s = extract(sim_config(), dir.path(), divisions.clone()).await;
    assert!(s.ok);
    // That snapshot becomes an older day's (the run date is today's).
    let folder = dir.path().join("divisions");
    let today = std::fs::read_dir(&folder)
        .expect("divisions")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .find(|n| n.starts_with("snapshot_date="))
        .expect("a snapshot");
    std::fs::rename(folder.join(&today), folder.join("snapshot_date=2020-01-01")).expect("rename");
    // The division is gone from the next snapshot (its listing is refused now).
    let sim = SimConfig {
        missing_permissions: vec!["authorization:divisionDeleted:view".into()],
        ..sim_config()
    };
    let s = extract(sim, dir.path(), divisions).await;
    assert!(s.ok);
    let (view, sql) = ddl::latest_view(reference::DIVISIONS).expect("a latest view");
    assert_eq!(view, "divisions_latest");
    let r = duckdb(
        dir.path(),
        r#"
con.execute("CREATE VIEW divisions_latest AS " + os.environ['VIEW_SQL'])
rows = con.execute("SELECT division_id, name, state, snapshot_date FROM divisions_latest ORDER BY division_id").fetchall()
snapshots = con.execute("SELECT DISTINCT snapshot_date FROM divisions ORDER BY 1").fetchall()
print(json.dumps({"rows": rows, "snapshots": [s[0] for s in snapshots]}, default=str))
"#,
        &[("VIEW_SQL", sql)],
    );
    assert_eq!(r["snapshots"].as_array().expect("snapshots").len(), 2);
    let rows = r["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 3, "{rows:?}");
    let legacy = rows
        .iter()
        .find(|r| r[0] == universe::DIVISION_LEGACY)
        .expect("the deleted division is still named");
    assert_eq!(legacy[1], "Legacy");
    assert_eq!(legacy[2], "deleted");
    assert_eq!(legacy[3], "2020-01-01");
    assert!(
        rows.iter()
            .filter(|r| r[0] != universe::DIVISION_LEGACY)
            .all(|r| r[3] != "2020-01-01"),
        "the others come from the newest snapshot"
    );
}
