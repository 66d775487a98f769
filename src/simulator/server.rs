//! The HTTP side of the simulator (axum): login, the details query, jobs, availability, with
//! the real envelopes, paging rules, limits and error bodies.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::{json, Value};

use super::data::{ConvRef, Dataset};
use super::user_details::Stored;
use super::SimConfig;
use crate::genesys::model::{PATH_DETAILS_QUERY, PATH_JOBS, PATH_JOBS_AVAILABILITY, PATH_TOKEN};
use crate::interval::{day_start, format_millis, parse_time, Interval};

/// What the simulator has served.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SimStats {
    /// API requests (logins not included).
    pub requests: u64,
    pub by_endpoint: BTreeMap<String, u64>,
    pub logins: u64,
    /// Logins refused (wrong client id or secret).
    pub logins_refused: u64,
    pub http_401: u64,
    pub http_429: u64,
    pub http_5xx: u64,
    pub jobs_submitted: u64,
    pub jobs_deleted: u64,
    /// API requests answered 200 with an HTML page.
    pub html_200: u64,
    /// Result requests refused because of an invalid cursor.
    pub invalid_cursors: u64,
    /// Job ids submitted and not deleted (running, finished or orphaned).
    pub jobs_alive: u64,
}

struct Job {
    interval: Interval,
    start_of_day: bool,
    submitted: Instant,
    submitted_at: DateTime<Utc>,
    availability: DateTime<Utc>,
    failed: bool,
    results: Option<Arc<Vec<ConvRef>>>,
    pages_served: u32,
    expired: bool,
    /// A user-details job (its own endpoints; the conversation ones do not know it).
    user_details: bool,
    ud_results: Option<Arc<Vec<Stored>>>,
}

struct Inner {
    tokens: HashMap<String, Instant>,
    rate: HashMap<String, (Instant, u32)>,
    jobs: HashMap<String, Job>,
    jobs_created: u32,
    revoked: bool,
    /// Whether the cursor faults (invalid, expired) were played (once each).
    cursor_refused: bool,
    cursor_expired: bool,
    fault_rng: ChaCha8Rng,
    stats: SimStats,
    query_cache: HashMap<(i64, i64), Arc<Vec<ConvRef>>>,
    ud_query_cache: HashMap<(i64, i64), Arc<Vec<Stored>>>,
    /// The service's "now" when set ([`State::set_now`]), else the wall clock.
    now: Option<DateTime<Utc>>,
}

pub struct State {
    pub cfg: SimConfig,
    pub data: Dataset,
    inner: Mutex<Inner>,
}

impl State {
    pub fn new(cfg: SimConfig) -> Self {
        Self {
            data: Dataset::for_config(&cfg),
            inner: Mutex::new(Inner {
                tokens: HashMap::new(),
                rate: HashMap::new(),
                jobs: HashMap::new(),
                jobs_created: 0,
                revoked: false,
                cursor_refused: false,
                cursor_expired: false,
                fault_rng: ChaCha8Rng::seed_from_u64(cfg.seed ^ 0xFA17),
                stats: SimStats::default(),
                query_cache: HashMap::new(),
                ud_query_cache: HashMap::new(),
                now: None,
            }),
            cfg,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic in another handler leaves consistent enough state for a test server.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stats(&self) -> SimStats {
        let g = self.lock();
        let mut s = g.stats.clone();
        s.jobs_alive = g.jobs.len() as u64;
        s
    }

    /// The jobs' data lake watermark now.
    fn availability(&self) -> DateTime<Utc> {
        self.cfg.extract.availability_date.unwrap_or_else(|| {
            self.now() - Duration::seconds(self.cfg.availability_lag_secs as i64)
        })
    }

    /// The instant the service answers as of: which conversations have ended, which status
    /// records are still open, the data lakes' watermarks.
    pub fn now(&self) -> DateTime<Utc> {
        self.lock().now.unwrap_or_else(Utc::now)
    }

    /// Moves the service's clock (tests: records open at one instant closed later); the
    /// cached query listings, computed as of the old clock, are dropped.
    pub fn set_now(&self, now: Option<DateTime<Utc>>) {
        let mut g = self.lock();
        g.now = now;
        g.query_cache.clear();
        g.ud_query_cache.clear();
    }
}

pub(super) type Shared = Arc<State>;

pub fn router(state: Shared) -> Router {
    Router::new()
        .route(PATH_TOKEN, post(token))
        .route(PATH_DETAILS_QUERY, post(details_query))
        .route(PATH_JOBS, post(submit_job))
        .route(PATH_JOBS_AVAILABILITY, get(availability))
        .route(
            &format!("{PATH_JOBS}/{{id}}"),
            get(job_status).delete(delete_job),
        )
        .route(&format!("{PATH_JOBS}/{{id}}/results"), get(job_results))
        .merge(super::reference_routes::routes())
        .merge(super::user_details::routes())
        .with_state(state)
}

/// The real error body, with a fresh contextId and the correlation header.
pub(super) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let context = uuid::Uuid::new_v4().to_string();
    let body = json!({
        "message": message,
        "code": code,
        "status": status.as_u16(),
        "contextId": context,
        "details": [],
        "errors": [],
    });
    let mut r = (status, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        r.headers_mut().insert("inin-correlation-id", v);
    }
    r
}

fn too_many(retry_after: u64) -> Response {
    let mut r = error(
        StatusCode::TOO_MANY_REQUESTS,
        "too.many.requests.retry.after",
        &format!("Rate limit exceeded the maximum. Retry the request in [{retry_after}] seconds"),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    r
}

pub(super) fn bad_request(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "bad.request", message)
}

pub(super) fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        r.headers_mut().insert("inin-correlation-id", v);
    }
    r
}

/// Latency, authentication, rate limit and injected faults, in that order, for an API call.
pub(super) async fn gate(
    state: &State,
    headers: &HeaderMap,
    endpoint: &str,
) -> Result<(), Response> {
    if state.cfg.latency_ms > 0 {
        tokio::time::sleep(StdDuration::from_millis(state.cfg.latency_ms)).await;
    }
    let mut g = state.lock();
    g.stats.requests += 1;
    *g.stats.by_endpoint.entry(endpoint.to_string()).or_default() += 1;
    let requests = g.stats.requests;
    if let Some(n) = state.cfg.fault_token_expiry_after {
        if requests > n && !g.revoked {
            g.revoked = true;
            g.tokens.clear();
        }
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let Some(token) = token else {
        g.stats.http_401 += 1;
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "bad.credentials",
            "Invalid login credentials.",
        ));
    };
    match g.tokens.get(&token) {
        None => {
            g.stats.http_401 += 1;
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "bad.credentials",
                "Invalid login credentials.",
            ));
        }
        Some(exp) if *exp <= Instant::now() => {
            g.stats.http_401 += 1;
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "credentials.expired",
                "The supplied credentials are expired and cannot be used.",
            ));
        }
        Some(_) => {}
    }
    let now = Instant::now();
    let limit = state.cfg.rate_limit_per_minute.max(1);
    let window = g.rate.entry(token).or_insert((now, 0));
    if now.duration_since(window.0) >= StdDuration::from_secs(60) {
        *window = (now, 0);
    }
    if window.1 >= limit {
        let left = 60u64
            .saturating_sub(now.duration_since(window.0).as_secs())
            .max(1);
        g.stats.http_429 += 1;
        return Err(too_many(left));
    }
    window.1 += 1;
    if endpoint.starts_with("ud_")
        && state
            .cfg
            .missing_permissions
            .iter()
            .any(|p| p == "analytics:userDetail:view")
    {
        return Err(error(
            StatusCode::FORBIDDEN,
            "missing.any.permissions",
            "Unable to perform the requested action. You are missing the following permission(s): [analytics:userDetail:view]",
        ));
    }
    if state.cfg.extract.fault_missing_permission && !endpoint.starts_with("ref_") {
        let needed = if endpoint.starts_with("ud_") {
            "[analytics:userDetail:view]"
        } else {
            "[analytics:conversationDetail:view, analytics:agentConversationDetail:view]"
        };
        return Err(error(
            StatusCode::FORBIDDEN,
            "missing.any.permissions",
            &format!("Unable to perform the requested action. You are missing the following permission(s): {needed}"),
        ));
    }
    if state.cfg.extract.fault_html_200 > 0.0
        && g.fault_rng.random::<f64>() < state.cfg.extract.fault_html_200
    {
        g.stats.html_200 += 1;
        let mut r = (
            StatusCode::OK,
            "<html><body><h1>Down for maintenance</h1></body></html>",
        )
            .into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        return Err(r);
    }
    let r: f64 = g.fault_rng.random();
    if r < state.cfg.fault_429 {
        g.stats.http_429 += 1;
        return Err(too_many(1));
    }
    if r < state.cfg.fault_429 + state.cfg.fault_5xx {
        g.stats.http_5xx += 1;
        let pick = g.fault_rng.random_range(0..3);
        return Err(match pick {
            0 => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal.server.error",
                "The server encountered an unexpected condition which prevented it from fulfilling the request.",
            ),
            1 => error(StatusCode::BAD_GATEWAY, "bad.gateway", "Bad gateway"),
            _ => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "service.unavailable",
                "Service Unavailable",
            ),
        });
    }
    Ok(())
}

async fn token(AxState(state): AxState<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if state.cfg.latency_ms > 0 {
        tokio::time::sleep(StdDuration::from_millis(state.cfg.latency_ms)).await;
    }
    let oauth_error = |status: StatusCode, error: &str, description: &str| {
        json_response(
            status,
            json!({"error": error, "description": description, "error_description": description})
                .to_string(),
        )
    };
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let form = String::from_utf8_lossy(&body);
    if !form
        .split('&')
        .any(|kv| kv == "grant_type=client_credentials")
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant type not supported",
        );
    }
    let Some((id, secret)) = basic.as_deref().and_then(|s| s.split_once(':')) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "client not found",
        );
    };
    if id != state.cfg.client_id || secret != state.cfg.client_secret {
        state.lock().stats.logins_refused += 1;
    }
    if id != state.cfg.client_id {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "client not found",
        );
    }
    if secret != state.cfg.client_secret {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "authentication failed",
        );
    }
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let lifetime = state.cfg.token_lifetime_secs;
    let mut g = state.lock();
    g.stats.logins += 1;
    g.tokens.insert(
        token.clone(),
        Instant::now() + StdDuration::from_secs(lifetime),
    );
    json_response(
        StatusCode::OK,
        json!({"access_token": token, "token_type": "bearer", "expires_in": lifetime}).to_string(),
    )
}

const QUERY_FIELDS: &[&str] = &[
    "interval",
    "order",
    "orderBy",
    "paging",
    "conversationFilters",
    "segmentFilters",
    "evaluationFilters",
    "surveyFilters",
    "resolutionFilters",
    "aggregations",
];
const JOB_FIELDS: &[&str] = &[
    "interval",
    "order",
    "orderBy",
    "limit",
    "startOfDayIntervalMatching",
    "conversationFilters",
    "segmentFilters",
    "evaluationFilters",
    "surveyFilters",
    "resolutionFilters",
];

// Handlers answer with a `Response` either way; boxing the error side would buy nothing.
#[allow(clippy::result_large_err)]
/// Parses a request body strictly, like the service: unknown fields are refused.
pub(super) fn strict_body(
    body: &[u8],
    allowed: &[&str],
) -> Result<serde_json::Map<String, Value>, Response> {
    if body.len() > 512_000 {
        return Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request.entity.too.large",
            "The request is over the size limit. Maximum bytes: 512000",
        ));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| bad_request(&format!("Unable to parse the request body: {e}")))?;
    let Value::Object(map) = v else {
        return Err(bad_request("The request body must be a JSON object."));
    };
    if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(bad_request(&format!(
            "Unrecognized field \"{k}\" (Class com.inin.analytics.query.DetailsQuery), not marked as ignorable"
        )));
    }
    Ok(map)
}

#[allow(clippy::result_large_err)]
pub(super) fn parse_interval_limited(
    map: &serde_json::Map<String, Value>,
    max_days: i64,
) -> Result<Interval, Response> {
    let text = map
        .get("interval")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("You must specify an interval."))?;
    let invalid = || bad_request(&format!("Invalid interval: {text}"));
    let (s, e) = text.split_once('/').ok_or_else(invalid)?;
    let (s, e) = (
        parse_time(s).map_err(|_| invalid())?,
        parse_time(e).map_err(|_| invalid())?,
    );
    let interval = Interval::new(s, e).map_err(|_| invalid())?;
    if interval.duration() > Duration::days(max_days) {
        return Err(bad_request(&format!(
            "You must specify a search interval as part of your query that does not exceed {} days.",
            max_days.min(31)
        )));
    }
    Ok(interval)
}

fn records_json(state: &State, refs: &[ConvRef], with_attributes: bool) -> String {
    let now = state.now();
    let mut s = String::with_capacity(refs.len() * 7000);
    for (i, c) in refs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&state.data.record(c, with_attributes, now));
    }
    s
}

async fn details_query(
    AxState(state): AxState<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = gate(&state, &headers, "details_query").await {
        return r;
    }
    let map = match strict_body(&body, QUERY_FIELDS) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let interval = match parse_interval_limited(&map, 31) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let paging = map.get("paging").cloned().unwrap_or(json!({}));
    let size = paging.get("pageSize").and_then(Value::as_u64).unwrap_or(25);
    let number = paging
        .get("pageNumber")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    let max = u64::from(state.cfg.query_max_page_size);
    if size == 0 || size > max {
        return bad_request(&format!("Max page size is {max}"));
    }
    if number == 0 {
        return bad_request("pageNumber must be at least 1");
    }
    if number * size > state.cfg.query_window {
        return bad_request(&format!(
            "Pagination may not exceed {} results.",
            state.cfg.query_window
        ));
    }
    let desc = map.get("order").and_then(Value::as_str) == Some("desc");
    let by_end = map.get("orderBy").and_then(Value::as_str) == Some("conversationEnd");
    let key = (
        interval.start.timestamp_millis(),
        interval.end.timestamp_millis(),
    );
    let cached = state.lock().query_cache.get(&key).cloned();
    let all = match cached {
        Some(a) => a,
        None => {
            // "only include conversations that started on a day touched by the interval".
            let first = day_start(interval.start.date_naive()).timestamp_millis();
            let last = day_start(interval.end.date_naive() + Duration::days(1)).timestamp_millis();
            let v: Vec<ConvRef> = state
                .data
                .active_in(&interval, state.now())
                .into_iter()
                .filter(|c| c.start_ms >= first && c.start_ms < last)
                .collect();
            let v = Arc::new(v);
            let mut g = state.lock();
            if g.query_cache.len() > 32 {
                g.query_cache.clear();
            }
            g.query_cache.insert(key, v.clone());
            v
        }
    };
    let mut order: Vec<ConvRef> = all.as_ref().clone();
    if by_end {
        order.sort_by_key(|c| (c.end_ms, c.id));
    }
    if desc {
        order.reverse();
    }
    if state.cfg.extract.unstable_tie_order && !by_end {
        // The service sorts on conversationStart only: ties come back in any order.
        let mut g = state.lock();
        for group in order.chunk_by_mut(|a, b| a.start_ms == b.start_ms) {
            if group.len() > 1 {
                rand::seq::SliceRandom::shuffle(group, &mut g.fault_rng);
            }
        }
    }
    let total = if state.cfg.extract.omit_total_hits {
        String::new()
    } else {
        format!(",\"totalHits\":{}", order.len())
    };
    let from = ((number - 1) * size) as usize;
    let page = order
        .get(from..(from + size as usize).min(order.len()))
        .unwrap_or(&[]);
    let body = if page.is_empty() {
        format!("{{{}}}", total.trim_start_matches(','))
    } else {
        format!(
            "{{\"conversations\":[{}]{total}}}",
            records_json(&state, page, false),
        )
    };
    json_response(StatusCode::OK, body)
}

async fn submit_job(AxState(state): AxState<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = gate(&state, &headers, "jobs_submit").await {
        return r;
    }
    let map = match strict_body(&body, JOB_FIELDS) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let interval = match parse_interval_limited(&map, 366) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let start_of_day = map
        .get("startOfDayIntervalMatching")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let availability = state
        .cfg
        .extract
        .job_page_availability_date
        .unwrap_or_else(|| state.availability());
    let (id, seq) = match create_job(&state, interval, start_of_day, false, availability) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if seq <= state.cfg.extract.fault_slow_submit {
        tokio::time::sleep(StdDuration::from_millis(state.cfg.extract.slow_submit_ms)).await;
    }
    json_response(StatusCode::ACCEPTED, json!({"jobId": id}).to_string())
}

/// Creates a job (conversations or user details) within the concurrent-job limit; the first
/// `fault_job_failed` jobs of either kind end FAILED. Returns its id and sequence number.
#[allow(clippy::result_large_err)]
pub(super) fn create_job(
    state: &State,
    interval: Interval,
    start_of_day: bool,
    user_details: bool,
    availability: DateTime<Utc>,
) -> Result<(String, u32), Response> {
    let ready = StdDuration::from_millis(state.cfg.job_ready_after_ms);
    let now = Instant::now();
    let mut g = state.lock();
    let running = g
        .jobs
        .values()
        .filter(|j| !j.expired && now.duration_since(j.submitted) < ready)
        .count();
    if running >= state.cfg.max_concurrent_jobs {
        g.stats.http_429 += 1;
        return Err(too_many(2));
    }
    g.jobs_created += 1;
    g.stats.jobs_submitted += 1;
    let seq = g.jobs_created;
    let failed = g.jobs_created <= state.cfg.fault_job_failed;
    let id = uuid::Uuid::new_v4().to_string();
    g.jobs.insert(
        id.clone(),
        Job {
            interval,
            start_of_day,
            submitted: now,
            submitted_at: Utc::now(),
            availability,
            failed,
            results: None,
            pages_served: 0,
            expired: false,
            user_details,
            ud_results: None,
        },
    );
    Ok((id, seq))
}

fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not.found",
        "The requested operation failed with status 404",
    )
}

fn job_state<'a>(cfg: &'a SimConfig, j: &Job) -> &'a str {
    let age = j.submitted.elapsed();
    let ready = StdDuration::from_millis(cfg.job_ready_after_ms);
    if j.expired || age > ready + StdDuration::from_secs(cfg.job_expiry_secs) {
        "EXPIRED"
    } else if age < ready / 3 {
        "QUEUED"
    } else if age < ready {
        match &cfg.extract.unknown_job_state {
            Some(s) if age >= ready * 2 / 3 => s.as_str(),
            _ => "PENDING",
        }
    } else if j.failed {
        "FAILED"
    } else {
        "FULFILLED"
    }
}

async fn job_status(
    AxState(state): AxState<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    job_status_of(&state, &headers, &id, false, "jobs_status").await
}

/// A job's status, on the endpoints of its kind.
pub(super) async fn job_status_of(
    state: &State,
    headers: &HeaderMap,
    id: &str,
    user_details: bool,
    endpoint: &str,
) -> Response {
    if let Err(r) = gate(state, headers, endpoint).await {
        return r;
    }
    let g = state.lock();
    let Some(j) = g.jobs.get(id).filter(|j| j.user_details == user_details) else {
        return not_found();
    };
    let st = job_state(&state.cfg, j);
    let ready = j.submitted_at + Duration::milliseconds(state.cfg.job_ready_after_ms as i64);
    let mut body = json!({
        "state": st,
        "submissionDate": format_millis(j.submitted_at),
        "expirationDate": format_millis(ready + Duration::seconds(state.cfg.job_expiry_secs as i64)),
    });
    if matches!(st, "FULFILLED" | "FAILED") {
        body["completionDate"] = json!(format_millis(ready));
    }
    if st == "FAILED" {
        body["errorMessage"] =
            json!("Job failed: the analytics query could not be completed (simulated fault)");
    }
    json_response(StatusCode::OK, body.to_string())
}

async fn job_results(
    AxState(state): AxState<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = gate(&state, &headers, "jobs_results").await {
        return r;
    }
    let size: u64 = match q.get("pageSize").map(|s| s.parse::<u64>()) {
        None => 1000,
        Some(Ok(n)) if n >= 1 => n,
        Some(_) => return bad_request("pageSize must be a positive integer"),
    };
    if size > u64::from(state.cfg.job_page_size_max) {
        return bad_request(&format!("Max page size is {}", state.cfg.job_page_size_max));
    }
    let offset: u64 = match q.get("cursor") {
        None => 0,
        Some(c) => match base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(c)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.strip_prefix("offset:").and_then(|n| n.parse().ok()))
        {
            Some(n) => n,
            None => return bad_request("Invalid cursor"),
        },
    };
    let (refs, availability) = {
        let mut guard = state.lock();
        let g = &mut *guard;
        let cfg = &state.cfg;
        let Some(j) = g.jobs.get_mut(&id).filter(|j| !j.user_details) else {
            return not_found();
        };
        match job_state(cfg, j) {
            "FULFILLED" => {}
            "EXPIRED" => {
                return error(
                    StatusCode::NOT_FOUND,
                    "not.found",
                    "The job results have expired",
                )
            }
            other => {
                return bad_request(&format!("The job is not fulfilled (state {other})"));
            }
        }
        if let Some(n) = cfg.extract.fault_invalid_cursor {
            if !g.cursor_refused && j.pages_served >= n && q.contains_key("cursor") {
                g.cursor_refused = true;
                g.stats.invalid_cursors += 1;
                return bad_request("Invalid cursor: the cursor is invalid or has expired");
            }
        }
        if let Some(n) = cfg.fault_expire_cursor {
            if !g.cursor_expired && j.pages_served >= n {
                g.cursor_expired = true;
                j.expired = true;
                return error(
                    StatusCode::NOT_FOUND,
                    "not.found",
                    "The job results have expired",
                );
            }
        }
        j.pages_served += 1;
        if j.results.is_none() {
            let avail = j.availability.timestamp_millis();
            let first = day_start(j.interval.start.date_naive()).timestamp_millis();
            let v: Vec<ConvRef> = state
                .data
                .active_in(&j.interval, j.submitted_at)
                .into_iter()
                // The lake holds only what happened before its availability date.
                .filter(|c| c.start_ms < avail)
                .filter(|c| !j.start_of_day || c.start_ms >= first)
                .collect();
            j.results = Some(Arc::new(v));
        }
        (j.results.clone().unwrap_or_default(), j.availability)
    };
    let from = (offset as usize).min(refs.len());
    let to = (from + size as usize).min(refs.len());
    if to as u64 > state.cfg.job_window {
        return bad_request(&format!(
            "pagination may not exceed {} results",
            state.cfg.job_window
        ));
    }
    let mut body = String::from("{\"conversations\":[");
    body.push_str(&records_json(&state, &refs[from..to], true));
    body.push(']');
    if to < refs.len() {
        let cursor =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("offset:{to}"));
        body.push_str(&format!(",\"cursor\":\"{cursor}\""));
    }
    body.push_str(&format!(
        ",\"dataAvailabilityDate\":\"{}\"}}",
        format_millis(availability)
    ));
    json_response(StatusCode::OK, body)
}

async fn delete_job(
    AxState(state): AxState<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    delete_job_of(&state, &headers, &id, false, "jobs_delete").await
}

/// Deletes a job, on the endpoints of its kind.
pub(super) async fn delete_job_of(
    state: &State,
    headers: &HeaderMap,
    id: &str,
    user_details: bool,
    endpoint: &str,
) -> Response {
    if let Err(r) = gate(state, headers, endpoint).await {
        return r;
    }
    let mut g = state.lock();
    if g.jobs
        .get(id)
        .is_none_or(|j| j.user_details != user_details)
    {
        return not_found();
    }
    g.jobs.remove(id);
    g.stats.jobs_deleted += 1;
    StatusCode::NO_CONTENT.into_response()
}

/// The user-details query's result set for an interval (computed once, then cached, as the
/// conversation query's).
pub(super) fn ud_query_listing(
    state: &State,
    interval: &Interval,
    compute: impl FnOnce(&Interval) -> Vec<Stored>,
) -> Arc<Vec<Stored>> {
    let key = (
        interval.start.timestamp_millis(),
        interval.end.timestamp_millis(),
    );
    if let Some(a) = state.lock().ud_query_cache.get(&key).cloned() {
        return a;
    }
    let v = Arc::new(compute(interval));
    let mut g = state.lock();
    if g.ud_query_cache.len() > 32 {
        g.ud_query_cache.clear();
    }
    g.ud_query_cache.insert(key, v.clone());
    v
}

/// A fulfilled user-details job's result set (computed at the first results request from the
/// lake as of its availability date) and that date; the job faults (failed, expired, invalid
/// cursor) as for conversation jobs.
#[allow(clippy::result_large_err)]
pub(super) fn ud_job_results(
    state: &State,
    id: &str,
    has_cursor: bool,
    compute: impl FnOnce(&Interval, DateTime<Utc>) -> Vec<Stored>,
) -> Result<(Arc<Vec<Stored>>, DateTime<Utc>), Response> {
    let mut guard = state.lock();
    let g = &mut *guard;
    let cfg = &state.cfg;
    let Some(j) = g.jobs.get_mut(id).filter(|j| j.user_details) else {
        return Err(not_found());
    };
    match job_state(cfg, j) {
        "FULFILLED" => {}
        "EXPIRED" => {
            return Err(error(
                StatusCode::NOT_FOUND,
                "not.found",
                "The job results have expired",
            ))
        }
        other => {
            return Err(bad_request(&format!(
                "The job is not fulfilled (state {other})"
            )));
        }
    }
    if let Some(n) = cfg.extract.fault_invalid_cursor {
        if !g.cursor_refused && j.pages_served >= n && has_cursor {
            g.cursor_refused = true;
            g.stats.invalid_cursors += 1;
            return Err(bad_request(
                "Invalid cursor: the cursor is invalid or has expired",
            ));
        }
    }
    if let Some(n) = cfg.fault_expire_cursor {
        if !g.cursor_expired && j.pages_served >= n {
            g.cursor_expired = true;
            j.expired = true;
            return Err(error(
                StatusCode::NOT_FOUND,
                "not.found",
                "The job results have expired",
            ));
        }
    }
    j.pages_served += 1;
    // The lake holds what was known at its availability date (the job's interval past it is
    // partial, with no flag).
    let lake = j.availability.min(j.submitted_at);
    let availability = j.availability;
    if let Some(r) = j.ud_results.clone() {
        return Ok((r, availability));
    }
    let interval = j.interval;
    drop(guard);
    // Computed without the lock: other requests go on meanwhile.
    let r = Arc::new(compute(&interval, lake));
    if let Some(j) = state.lock().jobs.get_mut(id) {
        j.ud_results.get_or_insert_with(|| r.clone());
    }
    Ok((r, availability))
}

async fn availability(AxState(state): AxState<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = gate(&state, &headers, "jobs_availability").await {
        return r;
    }
    let at = state.availability();
    json_response(
        StatusCode::OK,
        json!({"dataAvailabilityDate": format_millis(at)}).to_string(),
    )
}
