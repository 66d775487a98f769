//! User details: agents' presence and routing-status records (`API.md`, "User details").
//!
//! The same two paths as the conversations (asynchronous jobs for what the user-details data lake
//! holds, the synchronous query after the user-details availability date, which is its own), the
//! same limiter, retries and job handling ([`super::jobs`]), but the user-details paging rules:
//! - the query is page-numbered and a page can come back short without being the last (the
//!   service removes redundant copies of a record after paging), and `totalHits` is only an order
//!   of magnitude: pages are read until one is empty, and nothing is checked against `totalHits`;
//! - paging counts status records, not users: one user comes back on several pages, and a record
//!   comes back from every interval it overlaps, whole: records are merged by key, presence
//!   (user, start, system presence, organization presence) and routing (user, start, status),
//!   the latest copy winning (an open record gains its end), and a closed copy never losing to
//!   an open one (records only ever close).
//!
//! The contract of [`GenesysClient::extract_user_details`]: extracting `[start, end)` yields
//! exactly the records whose `startTime` is in `[start, end)`, each once, as fresh as the
//! service had them.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::http::{Request, RequestStats, Transport};
use super::model::{
    AsyncQueryResponse, DataAvailabilityResponse, PagingSpec, PATH_USER_DETAILS_JOBS,
    PATH_USER_DETAILS_JOBS_AVAILABILITY, PATH_USER_DETAILS_QUERY,
};
use super::{jobs, ClientConfig, ExtractPlan, GenesysClient, GenesysError, JobCleanup, Mode};
use crate::interval::{parse_time, Interval};

/// `UserDetailsQuery` (the fields this client sends).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserDetailsQuery {
    pub interval: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paging: Option<PagingSpec>,
}

/// `AsyncUserDetailsQuery` (the fields this client sends).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AsyncUserDetailsQuery {
    pub interval: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
}

/// One `primaryPresence` record, as a row of `user_presence`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceRecord {
    pub user_id: String,
    /// Milliseconds since the epoch, UTC.
    pub start_time: i64,
    /// `None` while the record is open.
    pub end_time: Option<i64>,
    pub system_presence: Option<String>,
    pub organization_presence_id: Option<String>,
    /// Fields the schema does not know, and known fields of an unexpected type, as JSON.
    pub extra: Option<String>,
}

/// One `routingStatus` record, as a row of `user_routing_status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingRecord {
    pub user_id: String,
    pub start_time: i64,
    pub end_time: Option<i64>,
    pub routing_status: Option<String>,
    pub extra: Option<String>,
}

type PresenceKey = (String, i64, Option<String>, Option<String>);
type RoutingKey = (String, i64, Option<String>);

/// The records of an extraction, merged.
#[derive(Debug, Default)]
pub struct UserDetails {
    pub presence: Vec<PresenceRecord>,
    pub routing: Vec<RoutingRecord>,
    /// Known fields of an unexpected type (kept in `extra`).
    pub type_mismatches: u64,
    /// Records received, copies and records outside the interval included.
    pub received: u64,
}

impl UserDetails {
    /// Records still open (no `endTime`).
    pub fn open_records(&self) -> u64 {
        (self
            .presence
            .iter()
            .filter(|r| r.end_time.is_none())
            .count()
            + self.routing.iter().filter(|r| r.end_time.is_none()).count()) as u64
    }
}

impl UserDetails {
    /// The presence records as one flat JSON object each (`userId` beside the record's own
    /// fields, the unknown and wrong-typed ones back as they came), in key order: the records
    /// of the `user_presence` table.
    pub fn presence_objects(&self) -> Vec<String> {
        self.presence
            .iter()
            .map(|r| {
                flat(
                    &r.user_id,
                    r.start_time,
                    r.end_time,
                    &[
                        ("systemPresence", &r.system_presence),
                        ("organizationPresenceId", &r.organization_presence_id),
                    ],
                    r.extra.as_deref(),
                )
            })
            .collect()
    }

    /// The routing-status records as flat JSON objects, in key order.
    pub fn routing_objects(&self) -> Vec<String> {
        self.routing
            .iter()
            .map(|r| {
                flat(
                    &r.user_id,
                    r.start_time,
                    r.end_time,
                    &[("routingStatus", &r.routing_status)],
                    r.extra.as_deref(),
                )
            })
            .collect()
    }
}

fn flat(
    user_id: &str,
    start: i64,
    end: Option<i64>,
    strings: &[(&str, &Option<String>)],
    extra: Option<&str>,
) -> String {
    let time = |ms: i64| {
        DateTime::from_timestamp_millis(ms)
            .map(crate::interval::format_millis)
            .unwrap_or_default()
    };
    let mut m = Map::new();
    m.insert("userId".into(), Value::String(user_id.to_string()));
    m.insert("startTime".into(), Value::String(time(start)));
    if let Some(e) = end {
        m.insert("endTime".into(), Value::String(time(e)));
    }
    for (k, v) in strings {
        if let Some(v) = v {
            m.insert((*k).to_string(), Value::String(v.clone()));
        }
    }
    if let Some(Ok(Value::Object(x))) = extra.map(serde_json::from_str::<Value>) {
        m.extend(x);
    }
    Value::Object(m).to_string()
}

/// Merges pages: keeps the records that start in `keep`, one per key, the freshest.
struct Merger {
    keep: Interval,
    presence: HashMap<PresenceKey, PresenceRecord>,
    routing: HashMap<RoutingKey, RoutingRecord>,
    type_mismatches: u64,
    received: u64,
}

/// A later copy replaces an earlier one, except that an open copy never replaces a closed one.
fn fresher(old_end: Option<i64>, new_end: Option<i64>) -> bool {
    !(old_end.is_some() && new_end.is_none())
}

impl Merger {
    fn new(keep: Interval) -> Self {
        Self {
            keep,
            presence: HashMap::new(),
            routing: HashMap::new(),
            type_mismatches: 0,
            received: 0,
        }
    }

    /// Reads one page body; returns its envelope and how many records it held.
    /// `before`: only records that started before it are kept (the part of a job's interval
    /// past the lake's availability date comes from the query).
    fn absorb(
        &mut self,
        body: &[u8],
        origin: &str,
        before: Option<DateTime<Utc>>,
    ) -> Result<(Envelope, usize), GenesysError> {
        let decode = |reason: String| GenesysError::Decode {
            what: origin.to_string(),
            reason,
        };
        let page: Map<String, Value> = serde_json::from_slice(body).map_err(|e| {
            // Position only: serde's message can quote values.
            decode(format!(
                "malformed JSON at line {} column {}",
                e.line(),
                e.column()
            ))
        })?;
        let env = Envelope {
            cursor: page
                .get("cursor")
                .and_then(Value::as_str)
                .map(str::to_string),
        };
        // A missing list is an empty page (`{"totalHits":0}`).
        let users = match page.get("userDetails") {
            None | Some(Value::Null) => return Ok((env, 0)),
            Some(Value::Array(u)) => u,
            Some(_) => return Err(decode("userDetails is not a list".into())),
        };
        let mut n = 0;
        for (i, u) in users.iter().enumerate() {
            let path = format!("userDetails[{i}]");
            let Value::Object(u) = u else {
                return Err(decode(format!("{path} is not an object")));
            };
            let Some(user_id) = u.get("userId").and_then(Value::as_str) else {
                return Err(decode(format!("{path}.userId is missing or not a string")));
            };
            // Fields of the user object this build does not know go into each record's extra.
            let user_extra: Map<String, Value> = u
                .iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "userId" | "primaryPresence" | "routingStatus")
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (list, routing) in [("primaryPresence", false), ("routingStatus", true)] {
                let recs = match u.get(list) {
                    None | Some(Value::Null) => continue,
                    Some(Value::Array(r)) => r,
                    Some(_) => {
                        return Err(decode(format!(
                            "{path}.{list} of user {user_id} is not a list"
                        )))
                    }
                };
                for (j, r) in recs.iter().enumerate() {
                    n += 1;
                    let rpath = format!("{path}.{list}[{j}]");
                    let Value::Object(r) = r else {
                        return Err(decode(format!(
                            "{rpath} of user {user_id} is not an object"
                        )));
                    };
                    self.record(user_id, r, routing, &user_extra, before)
                        .map_err(|field| {
                            decode(format!(
                                "{rpath}.{field} of user {user_id} is missing or not an ISO-8601 time"
                            ))
                        })?;
                }
            }
        }
        self.received += n as u64;
        Ok((env, n))
    }

    /// Keeps one record if it starts in the interval (and before `before`); `Err(field)` when
    /// its start time cannot be read.
    fn record(
        &mut self,
        user_id: &str,
        r: &Map<String, Value>,
        routing: bool,
        user_extra: &Map<String, Value>,
        before: Option<DateTime<Utc>>,
    ) -> Result<(), &'static str> {
        let start = r
            .get("startTime")
            .and_then(Value::as_str)
            .and_then(|s| parse_time(s).ok())
            .ok_or("startTime")?;
        if !self.keep.contains(start) || before.is_some_and(|b| start >= b) {
            return Ok(());
        }
        let mut extra = Map::new();
        let mut end_time = None;
        let mut strings: [Option<String>; 2] = [None, None];
        let names: &[&str] = if routing {
            &["routingStatus"]
        } else {
            &["systemPresence", "organizationPresenceId"]
        };
        for (k, v) in r {
            match k.as_str() {
                "startTime" => {}
                "endTime" => match v.as_str().and_then(|s| parse_time(s).ok()) {
                    Some(t) => end_time = Some(t.timestamp_millis()),
                    None if v.is_null() => {}
                    None => {
                        self.type_mismatches += 1;
                        extra.insert(k.clone(), v.clone());
                    }
                },
                name => match names.iter().position(|n| *n == name) {
                    Some(p) => match v {
                        Value::String(s) => strings[p] = Some(s.clone()),
                        Value::Null => {}
                        _ => {
                            self.type_mismatches += 1;
                            extra.insert(k.clone(), v.clone());
                        }
                    },
                    None => {
                        extra.insert(k.clone(), v.clone());
                    }
                },
            }
        }
        if !user_extra.is_empty() {
            extra.insert("_user".into(), Value::Object(user_extra.clone()));
        }
        let extra = (!extra.is_empty()).then(|| Value::Object(extra).to_string());
        let start_time = start.timestamp_millis();
        let [a, b] = strings;
        if routing {
            let key = (user_id.to_string(), start_time, a.clone());
            if self
                .routing
                .get(&key)
                .is_none_or(|old| fresher(old.end_time, end_time))
            {
                self.routing.insert(
                    key,
                    RoutingRecord {
                        user_id: user_id.to_string(),
                        start_time,
                        end_time,
                        routing_status: a,
                        extra,
                    },
                );
            }
        } else {
            let key = (user_id.to_string(), start_time, a.clone(), b.clone());
            if self
                .presence
                .get(&key)
                .is_none_or(|old| fresher(old.end_time, end_time))
            {
                self.presence.insert(
                    key,
                    PresenceRecord {
                        user_id: user_id.to_string(),
                        start_time,
                        end_time,
                        system_presence: a,
                        organization_presence_id: b,
                        extra,
                    },
                );
            }
        }
        Ok(())
    }

    fn finish(self) -> UserDetails {
        let mut presence: Vec<PresenceRecord> = self.presence.into_values().collect();
        presence.sort_by(|a, b| {
            (
                &a.user_id,
                a.start_time,
                &a.system_presence,
                &a.organization_presence_id,
            )
                .cmp(&(
                    &b.user_id,
                    b.start_time,
                    &b.system_presence,
                    &b.organization_presence_id,
                ))
        });
        let mut routing: Vec<RoutingRecord> = self.routing.into_values().collect();
        routing.sort_by(|a, b| {
            (&a.user_id, a.start_time, &a.routing_status).cmp(&(
                &b.user_id,
                b.start_time,
                &b.routing_status,
            ))
        });
        UserDetails {
            presence,
            routing,
            type_mismatches: self.type_mismatches,
            received: self.received,
        }
    }
}

/// The paging facts of a user-details page.
#[derive(Debug)]
struct Envelope {
    cursor: Option<String>,
}

/// The request body of one query page (pinned by a test against `API.md`).
pub(super) fn query_body(iv: &Interval, page_size: u32, page_number: u32) -> UserDetailsQuery {
    UserDetailsQuery {
        interval: iv.to_genesys(),
        order: Some("asc".into()),
        paging: Some(PagingSpec {
            page_size,
            page_number,
        }),
    }
}

fn too_deep(e: &GenesysError) -> bool {
    matches!(e, GenesysError::Api { status: 400, message, .. }
        if message.to_ascii_lowercase().contains("pagination may not exceed"))
}

/// Pages the synchronous query over `interval` until an empty page; an interval the service
/// will not page through is asked in halves.
async fn query_part(
    t: &Transport,
    cfg: &ClientConfig,
    interval: Interval,
    stats: &RequestStats,
    merger: &mut Merger,
) -> Result<(), GenesysError> {
    let size = cfg.user_details_query_page_size.max(1);
    // The service takes at most 7 days without filters.
    let mut pending: Vec<Interval> = interval
        .split_every(chrono::Duration::days(1))
        .into_iter()
        .rev()
        .collect();
    while let Some(iv) = pending.pop() {
        let mut n = 1u32;
        loop {
            let body = serde_json::to_vec(&query_body(&iv, size, n)).map_err(|e| {
                GenesysError::Decode {
                    what: "user details query".into(),
                    reason: e.to_string(),
                }
            })?;
            let req = Request {
                method: Method::POST,
                path: PATH_USER_DETAILS_QUERY.to_string(),
                query: vec![],
                body: Some(body),
                what: format!("user details query {iv} page {n}"),
                idempotent: true,
            };
            let resp = match t.send(&req, stats).await {
                Err(e) if too_deep(&e) => {
                    let halves = iv.split_into(2);
                    if halves.len() < 2 || iv.duration() <= cfg.min_split {
                        return Err(GenesysError::TooDense {
                            interval: iv.to_genesys(),
                            window: cfg.query_window,
                            minutes: iv.duration().num_minutes(),
                        });
                    }
                    tracing::info!(interval = %iv, "more user-details records than the query may page through: splitting");
                    pending.extend(halves.into_iter().rev());
                    break;
                }
                r => r?,
            };
            stats.page();
            let (_, records) = merger.absorb(&resp, &req.what, None)?;
            // A short page is not the last (API.md); only an empty one is.
            if records == 0 {
                break;
            }
            n += 1;
        }
    }
    Ok(())
}

/// One job's results for `iv`, resubmitted (bounded) when it fails, expires or its cursor is
/// refused; the part past the lake's availability date comes from the query.
async fn job_part(
    t: &Transport,
    cfg: &ClientConfig,
    iv: Interval,
    stats: &RequestStats,
    registry: &jobs::JobRegistry,
    merger: &mut Merger,
) -> Result<(), GenesysError> {
    let mut submissions = 0u32;
    loop {
        submissions += 1;
        let body = serde_json::to_vec(&AsyncUserDetailsQuery {
            interval: iv.to_genesys(),
            order: Some("asc".into()),
        })
        .map_err(|e| GenesysError::Decode {
            what: "user details job".into(),
            reason: e.to_string(),
        })?;
        let req = Request {
            method: Method::POST,
            path: PATH_USER_DETAILS_JOBS.to_string(),
            query: vec![],
            body: Some(body),
            what: format!("submitting a user details job for {iv}"),
            idempotent: false,
        };
        let job_id = match t.send(&req, stats).await {
            Ok(resp) => {
                serde_json::from_slice::<AsyncQueryResponse>(&resp)
                    .map_err(|e| GenesysError::Decode {
                        what: req.what.clone(),
                        reason: e.to_string(),
                    })?
                    .job_id
            }
            Err(e @ GenesysError::Unconfirmed { .. }) if submissions <= cfg.job_resubmits => {
                tracing::warn!(interval = %iv, error = %e, "user details job submission unanswered: submitting again");
                continue;
            }
            Err(e) => return Err(e),
        };
        let path = format!("{PATH_USER_DETAILS_JOBS}/{job_id}");
        registry.add(&path);
        stats.job();
        let outcome = job_results(t, cfg, &path, &job_id, iv, stats, merger).await;
        jobs::delete(t, registry, &path, stats).await;
        match outcome? {
            JobOutcome::Done(available) => {
                if let Some(a) = available {
                    if let Ok(tail) = Interval::new(a.max(iv.start), iv.end) {
                        query_part(t, cfg, tail, stats, merger).await?;
                    }
                }
                return Ok(());
            }
            JobOutcome::Again { state, message } => {
                if submissions > cfg.job_resubmits {
                    return Err(GenesysError::Job {
                        job_id,
                        interval: iv.to_genesys(),
                        state,
                        message,
                        attempts: submissions,
                    });
                }
                tracing::warn!(%job_id, %state, ?message, interval = %iv, "user details job did not finish: submitting again");
            }
        }
    }
}

enum JobOutcome {
    /// Paged to the end; where the lake's data ends inside the interval, if it does.
    Done(Option<DateTime<Utc>>),
    Again {
        state: String,
        message: Option<String>,
    },
}

async fn job_results(
    t: &Transport,
    cfg: &ClientConfig,
    path: &str,
    job_id: &str,
    iv: Interval,
    stats: &RequestStats,
    merger: &mut Merger,
) -> Result<JobOutcome, GenesysError> {
    if let Some((state, message)) = jobs::poll(t, cfg, path, &iv, stats).await? {
        return Ok(JobOutcome::Again { state, message });
    }
    let mut cursor: Option<String> = None;
    let mut available: Option<DateTime<Utc>> = None;
    let mut n = 0u32;
    loop {
        n += 1;
        let mut q = vec![(
            "pageSize",
            cfg.user_details_job_page_size.max(1).to_string(),
        )];
        if let Some(c) = &cursor {
            q.push(("cursor", c.clone()));
        }
        let req = Request {
            method: Method::GET,
            path: format!("{path}/results"),
            query: q,
            body: None,
            what: format!("results of user details job {job_id} page {n} ({iv})"),
            idempotent: true,
        };
        let body = match t.send(&req, stats).await {
            Ok(b) => b,
            Err(GenesysError::Api {
                status: 400,
                message,
                ..
            }) if cursor.is_some() && message.to_ascii_lowercase().contains("cursor") => {
                return Ok(JobOutcome::Again {
                    state: "INVALID CURSOR".into(),
                    message: Some(message),
                });
            }
            Err(GenesysError::Api {
                status: 404,
                message,
                ..
            }) => {
                return Ok(JobOutcome::Again {
                    state: "EXPIRED".into(),
                    message: Some(message),
                });
            }
            Err(e) => return Err(e),
        };
        stats.page();
        // The lake's date of this page: records after it may be missing (partial, no flag).
        let peek: PeekAvailability = serde_json::from_slice(&body).unwrap_or_default();
        if let Some(a) = peek
            .data_availability_date
            .as_deref()
            .and_then(|s| parse_time(s).ok())
            .filter(|a| *a < iv.end)
        {
            if available.is_none() {
                tracing::warn!(interval = %iv, data_availability_date = %a, "user details job results are partial past the data availability date: that part comes from the query");
            }
            available = Some(available.map_or(a, |b: DateTime<Utc>| b.min(a)));
        }
        let (env, _) = merger.absorb(&body, &req.what, available)?;
        match env.cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(JobOutcome::Done(available)),
        }
    }
}

#[derive(Deserialize, Default)]
struct PeekAvailability {
    #[serde(rename = "dataAvailabilityDate")]
    data_availability_date: Option<String>,
}

impl GenesysClient {
    /// The user-details data lake's availability date (its own, not the conversations').
    pub async fn user_details_availability(&self) -> Result<Option<DateTime<Utc>>, GenesysError> {
        let stats = RequestStats::default();
        let req = Request {
            method: Method::GET,
            path: PATH_USER_DETAILS_JOBS_AVAILABILITY.to_string(),
            query: vec![],
            body: None,
            what: "reading the user details jobs' data availability date".into(),
            idempotent: true,
        };
        let body = self.transport.send(&req, &stats).await?;
        let r: DataAvailabilityResponse =
            serde_json::from_slice(&body).map_err(|e| GenesysError::Decode {
                what: req.what,
                reason: e.to_string(),
            })?;
        Ok(r.data_availability_date)
    }

    /// Resolves the mode for user details, at their own availability date.
    pub async fn plan_user_details(
        &self,
        interval: Interval,
        mode: Mode,
    ) -> Result<ExtractPlan, GenesysError> {
        let avail = match mode {
            Mode::Query => None,
            Mode::Jobs | Mode::Auto => self.user_details_availability().await?,
        };
        Ok(ExtractPlan::split(interval, mode, avail))
    }

    /// Extracts the plan's records: those that start in its interval, each once, freshest copy.
    /// Jobs go in `cleanup`'s registry until deleted (a dropped extraction leaves them there for
    /// [`JobCleanup::delete_jobs`]); requests are counted in its stats.
    pub async fn extract_user_details(
        &self,
        plan: &ExtractPlan,
        cleanup: &JobCleanup,
    ) -> Result<UserDetails, GenesysError> {
        let mut merger = Merger::new(plan.interval);
        let (t, cfg, stats) = (&*self.transport, &*self.cfg, &*cleanup.stats);
        // The jobs' (older) copies first: the query's fresher copies then replace them.
        if let Some(j) = plan.jobs_part {
            for chunk in j.split_every(cfg.max_job_interval) {
                job_part(t, cfg, chunk, stats, &cleanup.jobs, &mut merger).await?;
            }
        }
        if let Some(q) = plan.query_part {
            query_part(t, cfg, q, stats, &mut merger).await?;
        }
        Ok(merger.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interval::day_start;

    fn day() -> Interval {
        Interval::day("2026-10-20".parse().expect("date"))
    }

    #[test]
    fn query_body_is_the_documented_user_details_query() {
        let v = serde_json::to_value(query_body(&day(), 100, 3)).expect("json");
        assert_eq!(
            v,
            serde_json::json!({
                "interval": "2026-10-20T00:00:00.000Z/2026-10-21T00:00:00.000Z",
                "order": "asc",
                "paging": {"pageSize": 100, "pageNumber": 3}
            })
        );
    }

    #[test]
    fn merge_keeps_records_starting_in_the_interval_once_and_closed_copies_win() {
        let mut m = Merger::new(day());
        let u = "6d1a5e2c-0000-4000-8000-000000000001";
        let page1 = serde_json::json!({"userDetails": [{"userId": u,
            "primaryPresence": [
                {"startTime": "2026-10-19T17:00:00.000Z", "endTime": "2026-10-20T06:00:00.000Z", "systemPresence": "OFFLINE", "organizationPresenceId": "p0"},
                {"startTime": "2026-10-20T06:00:00.000Z", "systemPresence": "ON_QUEUE", "organizationPresenceId": "p1"}
            ],
            "routingStatus": [{"startTime": "2026-10-20T06:00:00.000Z", "endTime": "2026-10-20T06:05:00.000Z", "routingStatus": "IDLE", "newField": 1}]
        }], "totalHits": 10});
        // The same user again on the next page: a closed copy of the open record, the same
        // routing record, and one at the same instant with another status.
        let page2 = serde_json::json!({"userDetails": [{"userId": u,
            "primaryPresence": [
                {"startTime": "2026-10-20T06:00:00.000Z", "endTime": "2026-10-20T08:00:00.000Z", "systemPresence": "ON_QUEUE", "organizationPresenceId": "p1"}
            ],
            "routingStatus": [
                {"startTime": "2026-10-20T06:00:00.000Z", "endTime": "2026-10-20T06:05:00.000Z", "routingStatus": "IDLE", "newField": 1},
                {"startTime": "2026-10-20T06:00:00.000Z", "routingStatus": "OFF_QUEUE", "endTime": 5}
            ]
        }]});
        let stale = serde_json::json!({"userDetails": [{"userId": u,
            "primaryPresence": [{"startTime": "2026-10-20T06:00:00.000Z", "systemPresence": "ON_QUEUE", "organizationPresenceId": "p1"}]}]});
        for p in [&page1, &page2, &stale] {
            m.absorb(p.to_string().as_bytes(), "test page", None)
                .expect("page");
        }
        let (n_empty, _) = (
            m.absorb(br#"{"totalHits":0}"#, "empty", None)
                .expect("empty")
                .1,
            0,
        );
        assert_eq!(n_empty, 0);
        let out = m.finish();
        assert_eq!(out.presence.len(), 1, "{:?}", out.presence);
        let p = &out.presence[0];
        let six = day_start(day().start.date_naive()).timestamp_millis() + 6 * 3_600_000;
        assert_eq!(p.start_time, six);
        assert_eq!(p.end_time, Some(six + 2 * 3_600_000));
        assert_eq!(p.system_presence.as_deref(), Some("ON_QUEUE"));
        assert_eq!(out.routing.len(), 2);
        assert_eq!(out.routing[0].routing_status.as_deref(), Some("IDLE"));
        assert_eq!(out.routing[0].extra.as_deref(), Some(r#"{"newField":1}"#));
        // A wrong-typed endTime is kept in extra and counted; the record counts as open.
        assert_eq!(out.routing[1].routing_status.as_deref(), Some("OFF_QUEUE"));
        assert_eq!(out.routing[1].end_time, None);
        assert_eq!(out.routing[1].extra.as_deref(), Some(r#"{"endTime":5}"#));
        assert_eq!(out.type_mismatches, 1);
    }

    #[test]
    fn bad_records_name_the_path_and_user_never_the_value() {
        let mut m = Merger::new(day());
        let page = serde_json::json!({"userDetails": [{"userId": "u-1",
            "primaryPresence": [{"startTime": "SECRET-VALUE"}]}]});
        let e = m
            .absorb(page.to_string().as_bytes(), "query page 1", None)
            .expect_err("bad start");
        let msg = e.to_string();
        assert!(
            msg.contains("userDetails[0].primaryPresence[0].startTime"),
            "{msg}"
        );
        assert!(msg.contains("u-1") && msg.contains("query page 1"), "{msg}");
        assert!(!msg.contains("SECRET-VALUE"), "{msg}");
        let e = m
            .absorb(br#"{"userDetails": [{"userId": "SECRET-VALUE""#, "p", None)
            .expect_err("malformed");
        assert!(!e.to_string().contains("SECRET-VALUE"), "{e}");
    }
}
