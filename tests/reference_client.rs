//! The reference-data client against the simulator (port 0): every table lists exactly what
//! the API lets one list (users of every state, deleted wrap-up codes and divisions through
//! their own endpoints), paging by pageCount through a silently capped pageSize, within the
//! limiter and retries; a 403 on a required listing fails the table naming the permission, on
//! an optional one the table is written without those entities and a warning says so.

use std::collections::BTreeSet;
use std::time::Duration;

use genesys_parquet::genesys::reference::ReferenceError;
use genesys_parquet::genesys::{ClientConfig, Credentials, GenesysClient, Hosts};
use genesys_parquet::simulator::{self, reference, SimConfig, SimHandle};

const TABLES: [&str; 8] = [
    "users",
    "queues",
    "wrapup_codes",
    "divisions",
    "presence_definitions",
    "skills",
    "languages",
    "groups",
];

fn client(sim: &SimHandle, page_size: u32) -> GenesysClient {
    let api = sim.base_url();
    let mut cfg = ClientConfig::new(
        Hosts::custom(&api, &api).expect("hosts"),
        Credentials::new("demo".to_string(), "demo".to_string()),
    );
    cfg.requests_per_minute = 100_000;
    cfg.retry.initial_backoff = Duration::from_millis(5);
    cfg.retry.max_backoff = Duration::from_millis(20);
    cfg.retry.max_attempts = 8;
    cfg.reference_page_size = page_size;
    GenesysClient::new(cfg).expect("client")
}

fn ids(listed: &genesys_parquet::genesys::reference::Listed) -> BTreeSet<String> {
    listed
        .entities
        .iter()
        .map(|e| e.json["id"].as_str().expect("id").to_string())
        .collect()
}

#[tokio::test]
async fn every_table_lists_exactly_what_the_api_lets_one_list_through_capped_pages() {
    // The server caps pageSize at 3 whatever is asked: a client that stops on a short page
    // (or trusts its pageSize) gets the first page only.
    let sim = simulator::start(SimConfig {
        ref_page_size_cap: 3,
        fault_429: 0.1,
        fault_5xx: 0.1,
        ..SimConfig::default()
    })
    .await
    .expect("sim");
    let c = client(&sim, 100);
    for table in TABLES {
        let listed = c.list_reference(table).await.expect(table);
        let want: BTreeSet<String> = reference::listable_ids(table).into_iter().collect();
        assert_eq!(ids(&listed), want, "{table}");
        assert_eq!(listed.entities.len(), want.len(), "{table}: each once");
        assert!(listed.warnings.is_empty(), "{table}: {:?}", listed.warnings);
    }
    let users = c.list_reference("users").await.expect("users");
    assert_eq!(users.entities.len(), reference::USER_COUNT);
    let states: BTreeSet<&str> = users
        .entities
        .iter()
        .map(|e| e.json["state"].as_str().expect("state"))
        .collect();
    assert_eq!(
        states,
        BTreeSet::from(["active", "inactive", "deleted"]),
        "state=any lists inactive and deleted users"
    );
    // 40 users at 3 a page: 14 pages.
    assert!(users.requests >= 14, "{} requests", users.requests);
    let codes = c.list_reference("wrapup_codes").await.expect("codes");
    let deleted: Vec<_> = codes
        .entities
        .iter()
        .filter(|e| e.implied_state == Some("deleted"))
        .map(|e| e.json["id"].as_str().expect("id"))
        .collect();
    assert_eq!(deleted, vec![reference::DELETED_WRAPUP]);
    let divisions = c.list_reference("divisions").await.expect("divisions");
    let deleted: Vec<_> = divisions
        .entities
        .iter()
        .filter(|e| e.implied_state == Some("deleted"))
        .map(|e| e.json["id"].as_str().expect("id"))
        .collect();
    assert_eq!(deleted, vec![reference::DIVISION_LEGACY]);
    let queues = c.list_reference("queues").await.expect("queues");
    assert!(!ids(&queues).contains(reference::DELETED_QUEUE));
    let stats = sim.stats();
    assert!(stats.http_429 + stats.http_5xx > 0, "faults were played");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_forbidden_required_listing_fails_its_table_naming_the_permission() {
    let sim = simulator::start(SimConfig {
        missing_permissions: vec!["routing:queue:view".into()],
        ..SimConfig::default()
    })
    .await
    .expect("sim");
    let c = client(&sim, 100);
    let err = c.list_reference("queues").await.expect_err("403");
    assert!(
        matches!(&err, ReferenceError::MissingPermission { permission, .. } if permission == "routing:queue:view"),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("routing:queue:view") && text.contains("queues"),
        "{text}"
    );
    assert!(!err.is_transient());
    // Other tables are unaffected.
    assert!(c.list_reference("users").await.is_ok());
    sim.shutdown().await;
}

#[tokio::test]
async fn a_forbidden_optional_listing_leaves_the_table_without_them_and_warns() {
    let sim = simulator::start(SimConfig {
        missing_permissions: vec![
            "routing:wrapupCode:search".into(),
            "authorization:divisionDeleted:view".into(),
        ],
        ..SimConfig::default()
    })
    .await
    .expect("sim");
    let c = client(&sim, 2);
    let codes = c.list_reference("wrapup_codes").await.expect("codes");
    let mut want: BTreeSet<String> = reference::listable_ids("wrapup_codes")
        .into_iter()
        .collect();
    want.remove(reference::DELETED_WRAPUP);
    assert_eq!(ids(&codes), want);
    assert_eq!(codes.warnings.len(), 1, "{:?}", codes.warnings);
    assert!(codes.warnings[0].contains("routing:wrapupCode:search"));
    let divisions = c.list_reference("divisions").await.expect("divisions");
    assert!(!ids(&divisions).contains(reference::DIVISION_LEGACY));
    assert!(divisions.warnings[0].contains("authorization:divisionDeleted:view"));
    sim.shutdown().await;
}

#[tokio::test]
async fn listings_have_the_real_envelope_and_presence_definitions_are_unpaged() {
    let sim = simulator::start(SimConfig {
        ref_page_size_cap: 25,
        ..SimConfig::default()
    })
    .await
    .expect("sim");
    let http = reqwest::Client::new();
    let token: serde_json::Value = http
        .post(format!("{}/oauth/token", sim.base_url()))
        .basic_auth("demo", Some("demo"))
        .body("grant_type=client_credentials")
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("token");
    let token = token["access_token"].as_str().expect("token").to_string();
    let get = |path: String| {
        let (http, token, base) = (http.clone(), token.clone(), sim.base_url());
        async move {
            http.get(format!("{base}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .expect("get")
                .json::<serde_json::Value>()
                .await
                .expect("json")
        }
    };
    // Asked for 500, capped at 25 without an error.
    let p1 = get("/api/v2/users?state=any&pageSize=500&pageNumber=1".into()).await;
    assert_eq!(p1["pageSize"], 25);
    assert_eq!(p1["pageCount"], 2);
    assert_eq!(p1["total"], reference::USER_COUNT);
    assert!(p1["nextUri"]
        .as_str()
        .expect("next")
        .contains("pageNumber=2"));
    let p2 = get("/api/v2/users?state=any&pageSize=25&pageNumber=2".into()).await;
    assert!(p2.get("nextUri").is_none(), "no nextUri on the last page");
    assert_eq!(p2["entities"].as_array().expect("entities").len(), 15);
    let active = get("/api/v2/users".into()).await;
    assert!(active["entities"]
        .as_array()
        .expect("entities")
        .iter()
        .all(|u| u["state"] == "active"));
    let presence = get("/api/v2/presence/definitions?localeCode=ALL".into()).await;
    assert!(presence.get("pageCount").is_none() && presence.get("pageSize").is_none());
    assert_eq!(presence["total"], reference::PRESENCES.len() - 1);
    let search = get("/api/v2/routing/wrapupcodes/divisionviews?includeState=Deleted".into()).await;
    assert_eq!(search["entities"][0]["id"], reference::DELETED_WRAPUP);
    sim.shutdown().await;
}

/// The listing as the pipeline converts it: one row per entity in the dataset's table, the id
/// column named for the entity, the division flattened, state as given or implied (deleted),
/// presence names from the en_US label with every label kept, the rest in typed columns or
/// `extra`; the run date is the partition.
#[tokio::test]
async fn listings_convert_to_the_reference_tables() {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::DataType;
    use futures::StreamExt;
    use genesys_parquet::datasets::reference as ds;
    use genesys_parquet::tables::{ConvertOptions, Converter};

    let sim = simulator::start(SimConfig::default()).await.expect("sim");
    let c = client(&sim, 7);
    let run_date: chrono::NaiveDate = "2026-11-30".parse().expect("date");
    let mut seen = BTreeSet::new();
    for d in ds::ALL {
        let table = d.tables[0];
        let planned = d
            .source
            .plan(
                &c,
                genesys_parquet::interval::Interval::day(run_date),
                genesys_parquet::genesys::Mode::Auto,
            )
            .await
            .expect("plan");
        assert_eq!(planned.paths, "listing");
        let mut ex = (planned.start)();
        let mut conv = Converter::new(
            d,
            ConvertOptions {
                run_date: Some(run_date),
                ..ConvertOptions::default()
            },
        );
        let mut batches = Vec::new();
        while let Some(page) = ex.pages.next().await {
            batches.extend(conv.push_page(&page.expect("page")).expect("convert"));
        }
        batches.extend(conv.finish().expect("finish"));
        assert!(ex.warnings.lock().expect("warnings").is_empty());
        let rows: usize = batches.iter().map(|b| b.batch.num_rows()).sum();
        let want = reference::listable_ids(table.name());
        assert_eq!(rows, want.len(), "{table}");
        let id_col = ds::id_column(table).expect("id column");
        let batch = &batches
            .iter()
            .find(|b| b.table == table)
            .expect("batch")
            .batch;
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap_or_else(|| panic!("{table}: no column {name}"))
                .clone()
        };
        let ids: BTreeSet<String> = col(&id_col)
            .as_string::<i32>()
            .iter()
            .map(|v| v.expect("id").to_string())
            .collect();
        assert_eq!(ids, want.iter().cloned().collect(), "{table}");
        assert_eq!(col("name").null_count(), 0, "{table}: every row named");
        assert!(batch.column_by_name("state").is_some(), "{table}: state");
        assert!(batch.column_by_name("extra").is_some(), "{table}: extra");
        assert!(batch.column_by_name("id").is_none(), "{table}: id renamed");
        // The partition column is a dictionary of the batch's dates.
        let partition =
            arrow::compute::cast(&col("snapshot_date"), &DataType::Utf8).expect("partition dates");
        assert!(
            partition
                .as_string::<i32>()
                .iter()
                .all(|d| d == Some("2026-11-30")),
            "{table}: every row in the snapshot's day"
        );
        seen.insert(table.name());
        match table.name() {
            "users" => {
                assert_eq!(col("division_id").null_count(), 0);
                let states: BTreeSet<String> = col("state")
                    .as_string::<i32>()
                    .iter()
                    .map(|s| s.expect("state").to_string())
                    .collect();
                assert_eq!(
                    states,
                    BTreeSet::from(["active", "deleted", "inactive"].map(String::from))
                );
                // The manager object is not a column: it is kept in extra.
                let extra = col("extra");
                let e = extra.as_string::<i32>();
                assert!((0..e.len()).any(|i| e.is_valid(i) && e.value(i).contains("manager")));
            }
            "wrapup_codes" => {
                let s = col("state");
                let s = s.as_string::<i32>();
                let i = (0..batch.num_rows())
                    .find(|&i| {
                        col(&id_col).as_string::<i32>().value(i) == reference::DELETED_WRAPUP
                    })
                    .expect("deleted code");
                assert_eq!(s.value(i), "deleted");
                assert_eq!(s.null_count(), batch.num_rows() - 1, "no state otherwise");
            }
            "presence_definitions" => {
                let names: BTreeSet<String> = col("name")
                    .as_string::<i32>()
                    .iter()
                    .map(|v| v.expect("name").to_string())
                    .collect();
                assert!(names.contains("Available") && names.contains("Long lunch"));
                let labels = col("labels");
                let l: serde_json::Value =
                    serde_json::from_str(labels.as_string::<i32>().value(0)).expect("JSON");
                assert!(l.get("en_US").is_some() && l.get("de").is_some(), "{l}");
                assert_eq!(col("division_id").null_count(), 6, "system ones have none");
            }
            _ => {}
        }
    }
    assert_eq!(seen.len(), 8);
    sim.shutdown().await;
}

/// The README's permissions table lists every permission each reference table's listings ask
/// for, as required or optional as the client treats it.
#[test]
fn the_readme_lists_each_reference_tables_permissions() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .split_once("### Permissions")
        .expect("a Permissions section")
        .1
        .split("\n#")
        .next()
        .expect("section");
    for table in TABLES {
        let row = section
            .lines()
            .find(|l| l.starts_with(&format!("| `{table}`")))
            .unwrap_or_else(|| panic!("no row for {table}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let perms = genesys_parquet::genesys::reference::permissions(table);
        for (p, required) in &perms {
            let cell = if *required { cells[2] } else { cells[3] };
            assert!(
                cell.contains(p),
                "{table}: {p} (required {required}) not in {row}"
            );
        }
        if !perms.iter().any(|(_, r)| *r) {
            assert_eq!(cells[2], "none", "{table}: {row}");
        }
    }
}
