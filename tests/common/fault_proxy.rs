//! A fault-injecting HTTP proxy for S3 tests: it stands in front of an S3 server (moto) on
//! 127.0.0.1, port 0, and forwards every request unchanged (method, path, query, headers, body)
//! except those a [`Rule`] picks, which it answers itself with a real S3 error (status and XML
//! body, as S3 sends them). The upstream never sees an answered request.
//!
//! It records every request it saw and what it answered, so a test can check that the faults
//! really happened (a rule that never matched is a broken test) and how the client reacted
//! (retried or not).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, Method, StatusCode};
use axum::response::{IntoResponse, Response};

/// An S3 error the proxy answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 503 SlowDown (S3 throttling).
    SlowDown,
    /// 500 InternalError.
    InternalError,
    /// 403 AccessDenied (a role without the permission).
    AccessDenied,
}

impl Fault {
    pub fn status(self) -> u16 {
        match self {
            Fault::SlowDown => 503,
            Fault::InternalError => 500,
            Fault::AccessDenied => 403,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Fault::SlowDown => "SlowDown",
            Fault::InternalError => "InternalError",
            Fault::AccessDenied => "AccessDenied",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Fault::SlowDown => "Please reduce your request rate.",
            Fault::InternalError => "We encountered an internal error. Please try again.",
            Fault::AccessDenied => "Access Denied",
        }
    }
}

/// Which of a rule's matching requests get the fault.
#[derive(Debug, Clone, Copy)]
pub enum Times {
    Always,
    /// The first n matching requests.
    First(u64),
    /// The n-th, 2n-th, … matching request.
    Every(u64),
    /// Every matching request after the first n.
    After(u64),
}

/// Requests to answer with a fault: an HTTP method, a substring of the path, optionally query
/// parameters (`uploads`, `uploadId`, `partNumber`, or `name=value` such as `x-id=PutObject`).
#[derive(Debug, Clone)]
pub struct Rule {
    method: Method,
    path_contains: String,
    query: Vec<String>,
    times: Times,
    fault: Fault,
}

impl Rule {
    /// Every `method` request whose path contains `path_contains` gets `fault`.
    pub fn new(fault: Fault, method: &str, path_contains: &str) -> Rule {
        Rule {
            method: method.parse().expect("HTTP method"),
            path_contains: path_contains.to_string(),
            query: Vec::new(),
            times: Times::Always,
            fault,
        }
    }

    /// Only requests with this query parameter (`name`, or `name=value`).
    pub fn query(mut self, param: &str) -> Rule {
        self.query.push(param.to_string());
        self
    }

    pub fn times(mut self, times: Times) -> Rule {
        self.times = times;
        self
    }

    fn matches(&self, method: &Method, path: &str, query: &str) -> bool {
        *method == self.method
            && path.contains(&self.path_contains)
            && self.query.iter().all(|want| {
                query.split('&').any(|p| {
                    if want.contains('=') {
                        p == want
                    } else {
                        p.split('=').next() == Some(want.as_str())
                    }
                })
            })
    }
}

/// One request the proxy received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    /// Percent-decoded path.
    pub path: String,
    pub query: String,
    /// The status the client got (the fault's, or the upstream's).
    pub status: u16,
    /// The rule (its index in [`FaultProxy::set_rules`]) that answered, if one did.
    pub rule: Option<usize>,
}

#[derive(Default)]
struct Rules {
    rules: Vec<Rule>,
    /// Matching requests seen so far, per rule.
    matched: Vec<u64>,
}

struct Shared {
    upstream: String,
    client: reqwest::Client,
    rules: Mutex<Rules>,
    log: Mutex<Vec<Seen>>,
    request_ids: AtomicU64,
}

/// The proxy, serving until dropped.
pub struct FaultProxy {
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://host:port`) with no rules (it forwards everything).
    pub async fn start(upstream: &str) -> FaultProxy {
        let client = reqwest::Client::builder()
            .no_gzip()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .expect("HTTP client");
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            client,
            rules: Mutex::new(Rules::default()),
            log: Mutex::new(Vec::new()),
            request_ids: AtomicU64::new(1),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("proxy address"));
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FaultProxy { url, shared, task }
    }

    /// Replaces the rules, and starts a new request log and new counts for them.
    pub fn set_rules(&self, rules: Vec<Rule>) {
        let mut r = lock(&self.shared.rules);
        r.matched = vec![0; rules.len()];
        r.rules = rules;
        lock(&self.shared.log).clear();
    }

    /// Every request seen since the rules were set, in arrival order.
    pub fn log(&self) -> Vec<Seen> {
        lock(&self.shared.log).clone()
    }

    /// Requests answered by rule `i` since the rules were set.
    pub fn injected_by(&self, i: usize) -> Vec<Seen> {
        self.log()
            .into_iter()
            .filter(|s| s.rule == Some(i))
            .collect()
    }

    /// Faults injected since the rules were set (all rules).
    pub fn injected(&self) -> usize {
        lock(&self.shared.log)
            .iter()
            .filter(|s| s.rule.is_some())
            .count()
    }
}

/// The first rule that answers this request. Every rule the request matches counts it, so that
/// `Every(n)` counts the requests it is about whatever other rules do.
fn check_rules(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: &str,
) -> Option<(usize, Fault)> {
    let mut r = lock(&shared.rules);
    let Rules { rules, matched } = &mut *r;
    let mut hit = None;
    for (i, rule) in rules.iter().enumerate() {
        if !rule.matches(method, path, query) {
            continue;
        }
        matched[i] += 1;
        let n = matched[i];
        let fire = match rule.times {
            Times::Always => true,
            Times::First(k) => n <= k,
            Times::Every(k) => k > 0 && n % k == 0,
            Times::After(k) => n > k,
        };
        if fire && hit.is_none() {
            hit = Some((i, rule.fault));
        }
    }
    hit
}

/// Percent-decodes a path (keys with `=` arrive as `%3D`).
fn decode(path: &str) -> String {
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Headers that belong to one connection, not to the request or the response.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "expect"
            // Recomputed from the forwarded body.
            | "content-length"
    )
}

async fn forward(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    // The whole body is read first, also when answering with a fault: a server that answers
    // before reading leaves the client a broken pipe, not an S3 error.
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("proxy: body: {e}")).into_response(),
    };
    let path = decode(parts.uri.path());
    let query = parts.uri.query().unwrap_or("").to_string();
    let mut seen = Seen {
        method: parts.method.clone(),
        path: path.clone(),
        query: query.clone(),
        status: 0,
        rule: None,
    };

    if let Some((i, fault)) = check_rules(&shared, &parts.method, &path, &query) {
        let id = shared.request_ids.fetch_add(1, Ordering::Relaxed);
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message>\
             <Resource>{}</Resource><RequestId>FAULT{id:012}</RequestId></Error>",
            fault.code(),
            fault.message(),
            parts.uri.path(),
        );
        seen.status = fault.status();
        seen.rule = Some(i);
        lock(&shared.log).push(seen);
        return Response::builder()
            .status(fault.status())
            .header("content-type", "application/xml")
            .header("x-amz-request-id", format!("FAULT{id:012}"))
            .body(Body::from(xml))
            .unwrap_or_else(|e| {
                (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
            });
    }

    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut rb = shared
        .client
        .request(parts.method.clone(), format!("{}{pq}", shared.upstream));
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            rb = rb.header(name, value);
        }
    }
    let upstream = match rb.body(body).send().await {
        Ok(r) => r,
        Err(e) => {
            seen.status = 502;
            lock(&shared.log).push(seen);
            return (StatusCode::BAD_GATEWAY, format!("proxy: upstream: {e}")).into_response();
        }
    };
    let status = upstream.status();
    let mut out = Response::builder().status(status);
    for (name, value) in upstream.headers() {
        // A HEAD answer's length describes the object, not this (empty) body: keep it.
        if !hop_by_hop(name) || (parts.method == Method::HEAD && name == "content-length") {
            out = out.header(name, value);
        }
    }
    let bytes = match upstream.bytes().await {
        Ok(b) => b,
        Err(e) => {
            seen.status = 502;
            lock(&shared.log).push(seen);
            return (
                StatusCode::BAD_GATEWAY,
                format!("proxy: upstream body: {e}"),
            )
                .into_response();
        }
    };
    seen.status = status.as_u16();
    lock(&shared.log).push(seen);
    out.body(Body::from(bytes))
        .unwrap_or_else(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())
}
