//! The simulator, black box over HTTP (reqwest against port 0), checked against the API facts
//! in `spec/genesys/`: login errors, strict bodies, paging, jobs, rate limits, and records
//! whose every field name, type and enum value is in `sdk-models.json`.

use std::time::Duration;

use genesys_parquet::simulator::{self, SimConfig, SimHandle};
use serde_json::{json, Value};

const Q: &str = "/api/v2/analytics/conversations/details/query";
const JOBS: &str = "/api/v2/analytics/conversations/details/jobs";
const DAY: &str = "2026-10-19T00:00:00.000Z/2026-10-20T00:00:00.000Z";

async fn sim(cfg: SimConfig) -> SimHandle {
    simulator::start(SimConfig {
        end_date: Some("2026-10-20".parse().expect("date")),
        ..cfg
    })
    .await
    .expect("simulator")
}

async fn token(http: &reqwest::Client, url: &str) -> String {
    let r: Value = http
        .post(format!("{url}/oauth/token"))
        .basic_auth("demo", Some("demo"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    assert_eq!(r["token_type"], "bearer");
    assert!(r["expires_in"].as_i64().unwrap_or(0) > 0);
    r["access_token"].as_str().expect("token").to_string()
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    tok: &str,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let r = http
        .post(format!("{url}{path}"))
        .bearer_auth(tok)
        .json(&body)
        .send()
        .await
        .expect("post");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn get(http: &reqwest::Client, url: &str, tok: &str, path: &str) -> (u16, Value) {
    let r = http
        .get(format!("{url}{path}"))
        .bearer_auth(tok)
        .send()
        .await
        .expect("get");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn is_error_body(v: &Value, status: u16, code: &str) {
    assert_eq!(v["status"], status, "{v}");
    assert_eq!(v["code"], code, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(
        v["contextId"].as_str().is_some_and(|c| c.len() == 36),
        "{v}"
    );
    assert_eq!(v["details"], json!([]));
}

#[tokio::test]
async fn login_errors_are_the_login_hosts_bodies() {
    let s = sim(SimConfig::default()).await;
    let http = reqwest::Client::new();
    let url = s.base_url();
    let r = http
        .post(format!("{url}/oauth/token"))
        .basic_auth("nobody", Some("demo"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(
        r.json::<Value>().await.expect("json"),
        json!({"error":"invalid_client","description":"client not found","error_description":"client not found"})
    );
    let r = http
        .post(format!("{url}/oauth/token"))
        .basic_auth("demo", Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        r.json::<Value>().await.expect("json")["description"],
        "authentication failed"
    );
    // No token, or a made-up one: 401 with the API's error body.
    let (st, v) = post(&http, &url, "made-up", Q, json!({"interval": DAY})).await;
    assert_eq!(st, 401);
    is_error_body(&v, 401, "bad.credentials");
    s.shutdown().await;
}

#[tokio::test]
async fn the_details_query_is_strict_and_pages_like_the_service() {
    let s = sim(SimConfig {
        per_day: 250,
        ..SimConfig::default()
    })
    .await;
    let http = reqwest::Client::new();
    let url = s.base_url();
    let tok = token(&http, &url).await;
    // Fields blog posts invent are refused.
    for bad in [
        json!({"interval": DAY, "dateRange": "x"}),
        json!({"interval": DAY, "pageLimit": 5}),
        json!({"interval": DAY, "paging": {"pageSize": 1000, "pageNumber": 1}}),
        json!({"interval": "2026-01-01T00:00:00.000Z/2026-03-01T00:00:00.000Z"}),
        json!({"interval": "yesterday"}),
        json!({"interval": DAY, "paging": {"pageSize": 100, "pageNumber": 1001}}),
    ] {
        let (st, v) = post(&http, &url, &tok, Q, bad.clone()).await;
        assert_eq!(st, 400, "{bad}");
        is_error_body(&v, 400, "bad.request");
    }
    let (_, v) = post(
        &http,
        &url,
        &tok,
        Q,
        json!({"interval": DAY, "paging": {"pageSize": 100, "pageNumber": 1001}}),
    )
    .await;
    assert_eq!(v["message"], "Pagination may not exceed 100000 results.");
    let (_, v) = post(
        &http,
        &url,
        &tok,
        Q,
        json!({"interval": "2026-01-01T00:00:00.000Z/2026-03-01T00:00:00.000Z"}),
    )
    .await;
    assert_eq!(
        v["message"],
        "You must specify a search interval as part of your query that does not exceed 31 days."
    );

    // Pages of 100, ordered by start, the last one short, then an empty page without the key.
    let mut starts = Vec::new();
    let mut total = 0;
    for n in 1..=4 {
        let (st, v) = post(&http, &url, &tok, Q, json!({"interval": DAY, "order": "asc", "orderBy": "conversationStart", "paging": {"pageSize": 100, "pageNumber": n}})).await;
        assert_eq!(st, 200);
        total = v["totalHits"].as_u64().expect("totalHits");
        match v.get("conversations") {
            Some(c) => starts.extend(
                c.as_array()
                    .expect("list")
                    .iter()
                    .map(|r| r["conversationStart"].as_str().expect("start").to_string()),
            ),
            None => assert!(starts.len() as u64 >= total, "page {n} empty too early"),
        }
    }
    assert_eq!(starts.len() as u64, total);
    assert!(
        total >= 250,
        "{total}: conversations of the day plus earlier ones still active"
    );
    let mut sorted = starts.clone();
    sorted.sort();
    assert_eq!(starts, sorted);
    s.shutdown().await;
}

#[tokio::test]
async fn jobs_run_queued_pending_fulfilled_and_page_by_cursor() {
    let s = sim(SimConfig {
        per_day: 1500,
        // Long enough that the first status read sees QUEUED even on a loaded CI machine.
        job_ready_after_ms: 1500,
        ..SimConfig::default()
    })
    .await;
    let http = reqwest::Client::new();
    let url = s.base_url();
    let tok = token(&http, &url).await;
    let (st, v) = post(
        &http,
        &url,
        &tok,
        JOBS,
        json!({"interval": DAY, "limit": 5, "groupBy": ["x"]}),
    )
    .await;
    assert_eq!(st, 400, "unknown field groupBy: {v}");
    let (st, v) = post(&http, &url, &tok, JOBS, json!({"interval": DAY})).await;
    assert_eq!(st, 202);
    let id = v["jobId"].as_str().expect("jobId").to_string();
    let (_, v) = get(&http, &url, &tok, &format!("{JOBS}/{id}")).await;
    assert_eq!(v["state"], "QUEUED");
    let (st, _) = get(&http, &url, &tok, &format!("{JOBS}/{id}/results")).await;
    assert_eq!(st, 400, "results before FULFILLED");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (_, v) = get(&http, &url, &tok, &format!("{JOBS}/{id}")).await;
    assert_eq!(v["state"], "FULFILLED");
    assert!(v["completionDate"].is_string() && v["expirationDate"].is_string());
    let mut cursor: Option<String> = None;
    let mut n = 0;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            None => format!("{JOBS}/{id}/results?pageSize=1000"),
            Some(c) => format!("{JOBS}/{id}/results?pageSize=1000&cursor={c}"),
        };
        let (st, v) = get(&http, &url, &tok, &path).await;
        assert_eq!(st, 200, "{v}");
        pages += 1;
        let recs = v["conversations"].as_array().expect("conversations");
        n += recs.len();
        assert!(v["dataAvailabilityDate"].is_string());
        // Job results carry participant attributes (the query's records don't).
        assert!(recs
            .iter()
            .any(|r| r["participants"][0]["attributes"].is_object()));
        match v.get("cursor") {
            Some(c) => cursor = Some(c.as_str().expect("cursor").to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 2);
    assert!(n >= 1500);
    let r = http
        .delete(format!("{url}{JOBS}/{id}"))
        .bearer_auth(&tok)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status().as_u16(), 204);
    let (st, v) = get(&http, &url, &tok, &format!("{JOBS}/{id}")).await;
    assert_eq!(st, 404);
    is_error_body(&v, 404, "not.found");
    let (_, v) = get(&http, &url, &tok, &format!("{JOBS}/availability")).await;
    assert!(v["dataAvailabilityDate"].is_string());
    s.shutdown().await;
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after() {
    let s = sim(SimConfig {
        rate_limit_per_minute: 5,
        ..SimConfig::default()
    })
    .await;
    let http = reqwest::Client::new();
    let url = s.base_url();
    let tok = token(&http, &url).await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..7 {
        let r = http
            .get(format!("{url}{JOBS}/availability"))
            .bearer_auth(&tok)
            .send()
            .await
            .expect("get");
        statuses.push(r.status().as_u16());
        if r.status().as_u16() == 429 {
            retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let v: Value = r.json().await.expect("json");
            is_error_body(&v, 429, "too.many.requests.retry.after");
        }
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);
    let secs: u64 = retry_after
        .expect("Retry-After")
        .parse()
        .expect("integer seconds");
    assert!((1..=60).contains(&secs));
    s.shutdown().await;
}

/// Walks a record against sdk-models.json: every key is a field of its model, with the
/// model's type and, for enumerations, one of its values.
fn check(models: &Value, model: &str, v: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(fields) = models.get(model).and_then(Value::as_object) else {
        errors.push(format!("{path}: unknown model {model}"));
        return;
    };
    for (k, val) in v.as_object().expect("object") {
        let p = format!("{path}.{k}");
        let Some(def) = fields.get(k) else {
            errors.push(format!("{p}: not a field of {model}"));
            continue;
        };
        let ty = def["type"].as_str().expect("type");
        if val.is_null() {
            errors.push(format!("{p}: null (the API omits unset fields)"));
            continue;
        }
        let ok = match ty {
            "str" => val.is_string(),
            "int" => val.is_i64(),
            "float" => val.is_number(),
            "bool" => val.is_boolean(),
            "datetime" => val
                .as_str()
                .is_some_and(|s| s.len() == 24 && s.ends_with('Z')),
            "list[str]" => val
                .as_array()
                .is_some_and(|a| a.iter().all(Value::is_string)),
            "list[int]" => val.as_array().is_some_and(|a| a.iter().all(Value::is_i64)),
            "dict(str, str)" => val
                .as_object()
                .is_some_and(|o| o.values().all(Value::is_string)),
            t if t.starts_with("list[") => {
                let inner = &t[5..t.len() - 1];
                for (i, item) in val.as_array().expect("list").iter().enumerate() {
                    check(models, inner, item, &format!("{p}[{i}]"), errors);
                }
                true
            }
            t => {
                check(models, t, val, &p, errors);
                true
            }
        };
        if !ok {
            errors.push(format!("{p}: {val} is not {ty}"));
        }
        if let (Some(values), Some(s)) = (def.get("enum").and_then(Value::as_array), val.as_str()) {
            if !values.iter().any(|e| e == s) {
                errors.push(format!("{p}: {s:?} is not one of {model}.{k}'s values"));
            }
        }
    }
}

#[tokio::test]
async fn records_use_only_sdk_fields_types_and_enum_values() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/spec/genesys/sdk-models.json");
    let models: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("models")).expect("json");
    let s = sim(SimConfig {
        per_day: 400,
        ..SimConfig::default()
    })
    .await;
    let ds = s.dataset();
    let now = chrono::Utc::now();
    let mut errors = Vec::new();
    let mut seen_models = std::collections::BTreeSet::new();
    for c in ds.day("2026-10-19".parse().expect("date")).iter() {
        let v: Value = serde_json::from_str(&ds.record(c, true, now)).expect("json");
        check(
            &models,
            "AnalyticsConversation",
            &v,
            "conversation",
            &mut errors,
        );
        for k in v.as_object().expect("obj").keys() {
            seen_models.insert(k.clone());
        }
    }
    errors.sort();
    errors.dedup();
    assert!(
        errors.is_empty(),
        "{} problems, e.g. {:?}",
        errors.len(),
        &errors[..errors.len().min(10)]
    );
    for k in [
        "evaluations",
        "surveys",
        "resolutions",
        "mediaStatsMinConversationMos",
    ] {
        assert!(seen_models.contains(k), "no record has {k}");
    }
    // Same seed, same bytes; another seed, other data.
    let c = ds.day("2026-10-19".parse().expect("date"))[0];
    let again = genesys_parquet::simulator::Dataset::for_config(&SimConfig {
        per_day: 400,
        end_date: Some("2026-10-20".parse().expect("date")),
        ..SimConfig::default()
    });
    assert_eq!(again.record(&c, true, now), ds.record(&c, true, now));
    s.shutdown().await;
}
