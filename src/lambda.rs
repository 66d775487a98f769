//! The AWS Lambda entry point's logic (the `bootstrap` binary only wires it to the runtime).
//!
//! Accepted events (anything else is refused with `Input.Invalid` listing these). A field of the
//! wrong JSON type or a key an event does not know (a typo such as `"mdoe"`) is refused with
//! `Input.Invalid` naming it, never ignored; so is a scheduled time in the future.
//!
//! | event | extracts |
//! |---|---|
//! | EventBridge Scheduler input `{"source":"schedule","scheduled_time":"2026-11-22T02:30:00Z"}` | the day before the scheduled time, plus `GP_LOOKBACK_DAYS` days before it again |
//! | classic scheduled rule event (`"source":"aws.events"`, `"detail-type":"Scheduled Event"`, `"time"`) | the same, from `time` |
//! | manual `{"start":"2026-11-01","end":"2026-11-08"}` (dates or RFC 3339 times, optional `"mode"`, `"partial_days"`, `"datasets"`) | `[start, end)` day by day, at most `GP_MAX_DAYS_PER_INVOCATION` days |
//! | backfill day `{"source":"backfill","start":…,"end":…}` (from the Step Functions map) | that day, of the day-partitioned datasets only |
//!
//! Every extract writes the datasets of `GP_DATASETS` (the template's `Datasets`), or those a
//! manual event names (`"datasets":"conversations,reference"`); datasets that are a snapshot
//! per run (the reference tables) write today's snapshot, except in a backfill (a backfill of
//! 1,100 days does not rewrite today's snapshot 1,100 times).
//! | `{"action":"plan_backfill","start":…,"end":…}` | nothing: returns `{"days":[{"start","end"},…]}` for the state machine |
//!
//! The scheduled time, not the clock, picks the day, so a retried or late nightly run still
//! exports the day it was scheduled for. The days a scheduled run extracts
//! (`GP_LOOKBACK_DAYS + 1`) must fit `GP_MAX_DAYS_PER_INVOCATION`: a setting that does not is refused at start
//! (`Config.Invalid`), not clamped, since clamping would silently stop re-exporting late days.
//!
//! A scheduled run also extracts again, whole, each earlier day (back to `GP_OPEN_HORIZON_DAYS`,
//! default 60, before its last day) whose manifest still counts open records: a presence or
//! routing status not ended, a conversation in progress ([`reopens_open_days`]). Those days come
//! from one listing of each dataset's manifests, and are named in the summary's `reopened`.
//!
//! The handler is built on the first invocation that needs it ([`LazyHandler`]) and rebuilt after
//! a failed build: a Secrets Manager hiccup at a cold start fails that invocation as retryable
//! (`Genesys.Transient`) instead of leaving a container that can only report a configuration
//! error. A run stops starting new pages `GP_DEADLINE_MARGIN_SECS`
//! before the invocation's deadline; unfinished days keep their previous data and the error
//! (`Deadline.Incomplete`) tells Step Functions to retry.

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant, SystemTime};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use clap::Parser;
use serde::Serialize;
use serde_json::{json, Value};

use crate::config::{ClientArgs, OutputArgs, PipelineArgs};
use crate::error_class::ErrorClass;
use crate::genesys::{GenesysClient, Mode};
use crate::interval::{day_start, parse_time, Interval};
use crate::pipeline::{self, NoProgress, PipelineConfig, RunSummary};
use crate::sink::Store;

/// The function's configuration: environment variables only (see `template.yaml`).
#[derive(Parser, Debug, Clone)]
#[command(name = "bootstrap", no_binary_name = true)]
pub struct LambdaSettings {
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Days before yesterday that a scheduled run extracts again (late-arriving data).
    #[arg(long, env = "GP_LOOKBACK_DAYS", default_value_t = 2)]
    pub lookback_days: u32,
    /// Longest range one invocation accepts; longer ranges go through the backfill state machine.
    #[arg(long, env = "GP_MAX_DAYS_PER_INVOCATION", default_value_t = 7)]
    pub max_days_per_invocation: u32,
    /// Stop starting new pages this long before the invocation's deadline.
    #[arg(long, env = "GP_DEADLINE_MARGIN_SECS", default_value_t = 60)]
    pub deadline_margin_secs: u64,
}

impl LambdaSettings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, LambdaError> {
        Self::try_parse_from(std::iter::empty::<String>())
            .map_err(|e| LambdaError::config(e.to_string()))
    }

    /// Checks the settings that depend on each other (once, when the handler is built).
    pub fn validate(&self) -> Result<(), LambdaError> {
        let max = self.max_days_per_invocation;
        if max == 0 {
            return Err(LambdaError::config(
                "GP_MAX_DAYS_PER_INVOCATION must be at least 1",
            ));
        }
        let scheduled = u64::from(self.lookback_days) + 1;
        if scheduled > u64::from(max) {
            return Err(LambdaError::config(format!(
                "GP_LOOKBACK_DAYS {} makes a scheduled run extract {scheduled} days, more than \
                 GP_MAX_DAYS_PER_INVOCATION {max}: set GP_LOOKBACK_DAYS to at most {} or raise \
                 GP_MAX_DAYS_PER_INVOCATION to at least {scheduled}",
                self.lookback_days,
                max - 1
            )));
        }
        Ok(())
    }
}

/// An error returned to Lambda: `error_type` is what Step Functions' `Retry`/`Catch` match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct LambdaError {
    pub error_type: String,
    pub message: String,
}

impl LambdaError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            error_type: ErrorClass::InputInvalid.as_str().into(),
            message: message.into(),
        }
    }

    fn config(message: impl Into<String>) -> Self {
        Self::of(ErrorClass::ConfigInvalid, message)
    }

    fn of(class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            error_type: class.as_str().into(),
            message: message.into(),
        }
    }
}

impl From<crate::config::ConfigError> for LambdaError {
    fn from(e: crate::config::ConfigError) -> Self {
        Self::of(e.error_class(), e.to_string())
    }
}

impl From<LambdaError> for lambda_runtime::Diagnostic {
    fn from(e: LambdaError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: e.error_type,
            error_message: e.message,
        }
    }
}

/// What an event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Extract {
        range: Interval,
        mode: Option<Mode>,
        partial_days: bool,
        trigger: Trigger,
        /// The datasets the event names (else the configured ones).
        datasets: Option<Vec<&'static crate::datasets::Dataset>>,
    },
    PlanBackfill {
        range: Interval,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Schedule,
    Manual,
    Backfill,
}

const ACCEPTED: &str =
    "accepted events: {\"source\":\"schedule\",\"scheduled_time\":\"<RFC 3339>\"} \
    (EventBridge Scheduler), an EventBridge scheduled rule event, {\"start\":\"YYYY-MM-DD\",\
    \"end\":\"YYYY-MM-DD\"} (optional \"mode\": auto|jobs|query, \"partial_days\": true|false, \
    \"datasets\": \"conversations,reference\", \"source\": \"manual\"), {\"source\":\"backfill\",\"start\":…,\"end\":…}, \
    {\"action\":\"plan_backfill\",\"start\":…,\"end\":…}";

/// Backfills longer than this are surely a typo (Genesys keeps far less history).
const MAX_BACKFILL_DAYS: i64 = 3660;

/// How far ahead of the clock a scheduled time or a range end may be (clock skew).
const CLOCK_SKEW: Duration = Duration::minutes(1);

/// The JSON type an event field must have.
#[derive(Debug, Clone, Copy)]
enum FieldType {
    Text,
    Flag,
}

impl FieldType {
    fn accepts(self, v: &Value) -> bool {
        match self {
            FieldType::Text => v.is_string(),
            FieldType::Flag => v.is_boolean(),
        }
    }

    fn expected(self) -> &'static str {
        match self {
            FieldType::Text => "a string",
            FieldType::Flag => "true or false",
        }
    }
}

/// The fields of each event we define (AWS's scheduled rule envelope is AWS's and is not listed).
const SCHEDULE_FIELDS: &[(&str, FieldType)] = &[
    ("source", FieldType::Text),
    ("scheduled_time", FieldType::Text),
];
const PLAN_FIELDS: &[(&str, FieldType)] = &[
    ("action", FieldType::Text),
    ("start", FieldType::Text),
    ("end", FieldType::Text),
];
const RANGE_FIELDS: &[(&str, FieldType)] = &[
    ("source", FieldType::Text),
    ("start", FieldType::Text),
    ("end", FieldType::Text),
    ("mode", FieldType::Text),
    ("partial_days", FieldType::Flag),
    ("datasets", FieldType::Text),
];

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Refuses a key the event does not know and a value of the wrong JSON type, naming the field.
/// Values are not quoted: the error goes to Step Functions' history and the logs.
fn check_fields(
    obj: &serde_json::Map<String, Value>,
    event: &str,
    fields: &[(&str, FieldType)],
) -> Result<(), LambdaError> {
    for (key, value) in obj {
        let Some((_, ty)) = fields.iter().find(|(name, _)| name == key) else {
            let known: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
            return Err(LambdaError::invalid(format!(
                "unknown field {key:?} in a {event} event (its fields: {}); {ACCEPTED}",
                known.join(", ")
            )));
        };
        if !ty.accepts(value) {
            return Err(LambdaError::invalid(format!(
                "field {key:?} of a {event} event must be {}, not {}",
                ty.expected(),
                json_type(value)
            )));
        }
    }
    Ok(())
}

/// A field every event shape reads to tell them apart: a string when present.
fn discriminator<'a>(
    obj: &'a serde_json::Map<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, LambdaError> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(LambdaError::invalid(format!(
            "field {key:?} must be a string, not {}; {ACCEPTED}",
            json_type(other)
        ))),
    }
}

/// Turns an event into a request, refusing what cannot be right.
pub fn parse_event(
    event: &Value,
    now: DateTime<Utc>,
    settings: &LambdaSettings,
) -> Result<Request, LambdaError> {
    let Some(obj) = event.as_object() else {
        return Err(LambdaError::invalid(format!(
            "the event is not a JSON object; {ACCEPTED}"
        )));
    };
    let text = |k: &str| obj.get(k).and_then(Value::as_str);
    let source = discriminator(obj, "source")?;

    if let Some(action) = discriminator(obj, "action")? {
        if action != "plan_backfill" {
            return Err(LambdaError::invalid(format!(
                "unknown action {action:?}; {ACCEPTED}"
            )));
        }
        check_fields(obj, "plan_backfill", PLAN_FIELDS)?;
        let range = range_from(obj, now)?;
        if range.duration() > Duration::days(MAX_BACKFILL_DAYS) {
            return Err(LambdaError::invalid(format!(
                "backfill {range} is longer than {MAX_BACKFILL_DAYS} days"
            )));
        }
        pipeline::check_range(&range, false).map_err(|e| LambdaError::invalid(e.to_string()))?;
        return Ok(Request::PlanBackfill { range });
    }

    let scheduled = match (source, text("detail-type")) {
        (Some("schedule"), _) => {
            check_fields(obj, "schedule", SCHEDULE_FIELDS)?;
            Some(("scheduled_time", text("scheduled_time")))
        }
        // AWS's envelope (it adds keys such as `replay-name`): only the field we use is checked.
        (Some("aws.events"), Some("Scheduled Event")) => Some(("time", text("time"))),
        _ => None,
    };
    if let Some((field, t)) = scheduled {
        let t = t.ok_or_else(|| {
            LambdaError::invalid(format!(
                "a scheduled event needs {field:?} (an RFC 3339 time string)"
            ))
        })?;
        let at = parse_time(t)
            .map_err(|e| LambdaError::invalid(format!("field {field:?} {t:?}: {e}")))?;
        if at > now + CLOCK_SKEW {
            return Err(LambdaError::invalid(format!(
                "field {field:?} {t:?} is in the future (now {}): a scheduled run exports the day \
                 before its scheduled time, which has not ended yet",
                now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )));
        }
        let yesterday = at.date_naive() - Duration::days(1);
        let first = yesterday - Duration::days(i64::from(settings.lookback_days));
        let range = Interval::new(day_start(first), day_start(yesterday + Duration::days(1)))
            .map_err(|e| LambdaError::invalid(e.to_string()))?;
        return Ok(Request::Extract {
            range,
            mode: None,
            partial_days: false,
            trigger: Trigger::Schedule,
            datasets: None,
        });
    }

    let trigger = match source {
        None | Some("manual") => Trigger::Manual,
        Some("backfill") => Trigger::Backfill,
        Some(other) => {
            return Err(LambdaError::invalid(format!(
                "unknown event source {other:?}; {ACCEPTED}"
            )))
        }
    };
    let event_name = match trigger {
        Trigger::Backfill => "backfill",
        _ => "manual",
    };
    check_fields(obj, event_name, RANGE_FIELDS)?;
    if !obj.contains_key("start") || !obj.contains_key("end") {
        return Err(LambdaError::invalid(format!(
            "the event has no \"start\" and \"end\"; {ACCEPTED}"
        )));
    }
    let range = range_from(obj, now)?;
    let max = i64::from(settings.max_days_per_invocation.max(1));
    if range.duration() > Duration::days(max) {
        return Err(LambdaError::invalid(format!(
            "range {range} is longer than {max} days (GP_MAX_DAYS_PER_INVOCATION): start the \
             backfill state machine with {{\"start\":…,\"end\":…}} instead"
        )));
    }
    let mode = match text("mode") {
        None => None,
        Some(m) => Some(
            m.parse::<Mode>()
                .map_err(|e| LambdaError::invalid(format!("field \"mode\": {e}")))?,
        ),
    };
    let partial_days = obj
        .get("partial_days")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    pipeline::check_range(&range, partial_days).map_err(|e| LambdaError::invalid(e.to_string()))?;
    let datasets = match text("datasets") {
        None => None,
        Some(l) => Some(
            crate::datasets::parse_list(l)
                .map_err(|e| LambdaError::invalid(format!("field \"datasets\": {e}")))?,
        ),
    };
    Ok(Request::Extract {
        range,
        mode,
        partial_days,
        trigger,
        datasets,
    })
}

fn range_from(
    obj: &serde_json::Map<String, Value>,
    now: DateTime<Utc>,
) -> Result<Interval, LambdaError> {
    let time = |k: &str| -> Result<DateTime<Utc>, LambdaError> {
        let v = obj.get(k).and_then(Value::as_str).ok_or_else(|| {
            LambdaError::invalid(format!("field \"{k}\" must be a date or RFC 3339 time"))
        })?;
        parse_time(v).map_err(|e| LambdaError::invalid(format!("field \"{k}\" {v:?}: {e}")))
    };
    let range = Interval::new(time("start")?, time("end")?)
        .map_err(|e| LambdaError::invalid(e.to_string()))?;
    if range.end > now + CLOCK_SKEW {
        return Err(LambdaError::invalid(format!(
            "range {range} ends in the future: Genesys has no data after now"
        )));
    }
    Ok(range)
}

/// The datasets an invocation writes: a backfill day only the day-partitioned ones (not today's
/// snapshot of the reference tables, once per backfill day).
pub fn datasets_for(
    trigger: Trigger,
    datasets: Vec<&'static crate::datasets::Dataset>,
) -> Vec<&'static crate::datasets::Dataset> {
    match trigger {
        Trigger::Backfill => datasets
            .into_iter()
            .filter(|d| {
                !matches!(
                    d.partitioning,
                    crate::datasets::Partitioning::RunDate { .. }
                )
            })
            .collect(),
        Trigger::Schedule | Trigger::Manual => datasets,
    }
}

/// Whether a run also extracts the earlier days whose manifest counts open records: the nightly
/// run does (it closes, within the horizon, what earlier days left open); a manual or backfill
/// run writes exactly its range.
pub fn reopens_open_days(trigger: Trigger, horizon_days: u32) -> bool {
    trigger == Trigger::Schedule && horizon_days > 0
}

/// The days of a backfill, as the state machine's map iterates them.
pub fn plan_backfill(range: &Interval) -> Value {
    let days: Vec<Value> = range
        .dates()
        .into_iter()
        .map(|d: NaiveDate| json!({"start": d.to_string(), "end": (d + Duration::days(1)).to_string()}))
        .collect();
    json!({ "days": days })
}

/// Built once per execution environment and reused by warm invocations.
pub struct Handler {
    client: GenesysClient,
    store: Arc<dyn Store>,
    settings: LambdaSettings,
    pipeline: PipelineConfig,
    function_name: String,
}

impl Handler {
    /// Reads the settings, fetches the credentials (Secrets Manager) and opens the store.
    pub async fn from_env() -> Result<Self, LambdaError> {
        Self::new(LambdaSettings::from_env()?).await
    }

    /// Validates the settings and builds the clients. A wrong setting is `Config.Invalid`; a
    /// service that failed on the way (Secrets Manager, the store) is its transient class.
    pub async fn new(settings: LambdaSettings) -> Result<Self, LambdaError> {
        settings.validate()?;
        let pipeline = settings.pipeline.build()?;
        let store = settings.output.store().await?;
        let client = settings.client.build().await?;
        Ok(Self {
            client,
            store,
            settings,
            pipeline,
            function_name: std::env::var("AWS_LAMBDA_FUNCTION_NAME")
                .unwrap_or_else(|_| "genesys-parquet".into()),
        })
    }

    /// One invocation. `deadline` is the invocation's deadline; work stops a margin before it.
    pub async fn handle(&self, event: Value, deadline: SystemTime) -> Result<Value, LambdaError> {
        let request = parse_event(&event, Utc::now(), &self.settings)?;
        tracing::info!(?request, "invocation");
        let (range, mode, trigger, datasets) = match request {
            Request::PlanBackfill { range } => return Ok(plan_backfill(&range)),
            Request::Extract {
                range,
                mode,
                trigger,
                datasets,
                ..
            } => (range, mode, trigger, datasets),
        };
        let margin = StdDuration::from_secs(self.settings.deadline_margin_secs);
        let left = deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .saturating_sub(margin);
        let mut cfg = self.pipeline.clone();
        cfg.deadline = Some(Instant::now() + left);
        // The invocation cannot outlive its deadline, and its day leases never last longer
        // than that; within it they keep the pipeline's short ttl, renewed by a heartbeat
        // while the invocation lives, so a killed invocation blocks its days for at most that.
        cfg.lease_ttl = lease_ttl(deadline, SystemTime::now()).min(self.pipeline.lease_ttl);
        self.store
            .renew_until(Some(chrono::DateTime::<Utc>::from(deadline)));
        if let Some(m) = mode {
            cfg.mode = m;
        }
        cfg.datasets = datasets_for(trigger, datasets.unwrap_or(cfg.datasets));
        cfg.reopen_open_days = reopens_open_days(trigger, cfg.open_horizon_days);
        let summary = pipeline::extract(
            &self.client,
            self.store.clone(),
            range,
            &cfg,
            Arc::new(NoProgress),
        )
        .await;
        let failed = summary.days.iter().filter(|d| d.status != "ok").count();
        println!(
            "{}",
            emf_line(
                &self.function_name,
                summary.conversations,
                failed,
                Utc::now()
            )
        );
        let mut out = serde_json::to_value(&summary)
            .map_err(|e| LambdaError::invalid(format!("summary: {e}")))?;
        out["trigger"] = json!(trigger);
        if summary.ok {
            return Ok(out);
        }
        tracing::error!(summary = %out, "some days did not finish");
        Err(failure(&summary))
    }
}

/// The handler of one execution environment: built at start when it can be, otherwise by the
/// first invocation that finds it missing (and again by the next one after a failed build).
#[derive(Default)]
pub struct LazyHandler {
    handler: tokio::sync::OnceCell<Handler>,
}

impl LazyHandler {
    /// Builds the handler from the environment unless it is built already.
    pub async fn init(&self) -> Result<&Handler, LambdaError> {
        self.handler.get_or_try_init(Handler::from_env).await
    }

    /// One invocation: a failed build is this invocation's error (with its class).
    pub async fn handle(&self, event: Value, deadline: SystemTime) -> Result<Value, LambdaError> {
        self.init().await?.handle(event, deadline).await
    }
}

/// How long an invocation's day leases last: until its deadline (at least a second).
fn lease_ttl(deadline: SystemTime, now: SystemTime) -> chrono::Duration {
    let left = deadline
        .duration_since(now)
        .unwrap_or_default()
        .max(StdDuration::from_secs(1));
    chrono::Duration::from_std(left).unwrap_or(chrono::Duration::minutes(15))
}

/// The error for a run with failed days: the first failed day's type decides whether Step
/// Functions retries; the message lists every unfinished day.
fn failure(summary: &RunSummary) -> LambdaError {
    let failed: Vec<_> = summary.days.iter().filter(|d| d.status != "ok").collect();
    let error_type = failed
        .iter()
        .find_map(|d| d.error_type.clone())
        .unwrap_or_else(|| ErrorClass::Internal.as_str().into());
    let list: Vec<String> = failed
        .iter()
        .map(|d| {
            format!(
                "{} {}: {}",
                d.date,
                d.status,
                d.error.as_deref().unwrap_or("")
            )
        })
        .collect();
    LambdaError {
        error_type,
        message: format!(
            "{} of {} days did not finish (their previous data is unchanged): {}",
            failed.len(),
            summary.days.len(),
            list.join("; ")
        ),
    }
}

/// A CloudWatch Embedded Metric Format line: the `Conversations` metric the alarms watch.
pub fn emf_line(
    function: &str,
    conversations: u64,
    failed_days: usize,
    now: DateTime<Utc>,
) -> String {
    json!({
        "_aws": {
            "Timestamp": now.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": "GenesysParquet",
                "Dimensions": [["Function"]],
                "Metrics": [
                    {"Name": "Conversations", "Unit": "Count"},
                    {"Name": "FailedDays", "Unit": "Count"}
                ]
            }]
        },
        "Function": function,
        "Conversations": conversations,
        "FailedDays": failed_days,
    })
    .to_string()
}

/// JSON logs on stderr for CloudWatch (`RUST_LOG` filters; default info).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_current_span(false)
        .without_time()
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LambdaSettings {
        LambdaSettings::try_parse_from(["--out", "/tmp/x", "--region", "eu-west-1"])
            .expect("settings")
    }

    fn now() -> DateTime<Utc> {
        parse_time("2026-11-22T10:00:00Z").expect("time")
    }

    fn event(name: &str) -> Value {
        let path = format!("{}/tests/events/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect("json")
    }

    fn days(r: &Request) -> (String, String) {
        match r {
            Request::Extract { range, .. } | Request::PlanBackfill { range } => {
                (range.start.to_rfc3339(), range.end.to_rfc3339())
            }
        }
    }

    #[test]
    fn leases_end_at_the_invocation_deadline() {
        let now = SystemTime::UNIX_EPOCH + StdDuration::from_secs(1_000_000);
        let ttl = lease_ttl(now + StdDuration::from_secs(900), now);
        assert_eq!(ttl, chrono::Duration::seconds(900));
        // Past the deadline already: a second, never negative.
        let ttl = lease_ttl(now, now + StdDuration::from_secs(5));
        assert_eq!(ttl, chrono::Duration::seconds(1));
    }

    #[test]
    fn scheduler_event_extracts_yesterday_and_lookback_days() {
        let r = parse_event(&event("scheduler.json"), now(), &settings()).expect("parse");
        assert_eq!(
            days(&r),
            (
                "2026-11-19T00:00:00+00:00".into(),
                "2026-11-22T00:00:00+00:00".into()
            )
        );
        assert!(matches!(
            r,
            Request::Extract {
                trigger: Trigger::Schedule,
                mode: None,
                ..
            }
        ));
    }

    #[test]
    fn only_the_nightly_run_extracts_days_with_open_records_again() {
        let horizon = settings()
            .pipeline
            .build()
            .expect("config")
            .open_horizon_days;
        assert_eq!(horizon, crate::config::DEFAULT_OPEN_HORIZON_DAYS);
        assert!(reopens_open_days(Trigger::Schedule, horizon));
        assert!(!reopens_open_days(Trigger::Schedule, 0));
        assert!(!reopens_open_days(Trigger::Manual, horizon));
        assert!(!reopens_open_days(Trigger::Backfill, horizon));
        // The nightly run's datasets (GP_DATASETS defaults to all) include the user details.
        let all = settings().pipeline.build().expect("config").datasets;
        let nightly = datasets_for(Trigger::Schedule, all);
        assert!(nightly.contains(&&crate::datasets::user_details::DATASET));
    }

    #[test]
    fn scheduled_rule_event_uses_its_time_not_the_clock() {
        // Delivered two days late: still exports the day before the scheduled time.
        let late = parse_time("2026-11-24T10:00:00Z").expect("time");
        let r = parse_event(&event("scheduled-rule.json"), late, &settings()).expect("parse");
        assert_eq!(days(&r).1, "2026-11-22T00:00:00+00:00");
    }

    #[test]
    fn manual_and_backfill_ranges() {
        let r = parse_event(&event("manual.json"), now(), &settings()).expect("parse");
        assert_eq!(
            days(&r),
            (
                "2026-11-01T00:00:00+00:00".into(),
                "2026-11-08T00:00:00+00:00".into()
            )
        );
        assert!(matches!(
            r,
            Request::Extract {
                trigger: Trigger::Manual,
                mode: Some(Mode::Jobs),
                ..
            }
        ));
        let r = parse_event(&event("backfill-day.json"), now(), &settings()).expect("parse");
        assert!(matches!(
            r,
            Request::Extract {
                trigger: Trigger::Backfill,
                ..
            }
        ));
        let plan = parse_event(&event("plan-backfill.json"), now(), &settings()).expect("parse");
        let Request::PlanBackfill { range } = plan else {
            panic!("not a plan")
        };
        let p = plan_backfill(&range);
        let days = p["days"].as_array().expect("days");
        assert_eq!(days.len(), 62);
        assert_eq!(days[0], json!({"start": "2026-01-01", "end": "2026-01-02"}));
        assert_eq!(
            days[61],
            json!({"start": "2026-03-03", "end": "2026-03-04"})
        );
    }

    #[test]
    fn events_can_name_datasets_and_a_backfill_skips_snapshots() {
        let names = |v: &[&'static crate::datasets::Dataset]| -> Vec<&str> {
            v.iter().map(|d| d.name).collect()
        };
        let e = json!({"start": "2026-11-01", "end": "2026-11-02", "datasets": "reference"});
        let Request::Extract { datasets, .. } = parse_event(&e, now(), &settings()).expect("parse")
        else {
            panic!("not an extract")
        };
        let datasets = datasets.expect("named");
        assert_eq!(
            names(&datasets).len(),
            crate::datasets::reference::ALL.len()
        );
        let e = json!({"start": "2026-11-01", "end": "2026-11-02", "datasets": "conversatons"});
        let err = parse_event(&e, now(), &settings()).expect_err("typo");
        assert!(
            err.message.contains("field \"datasets\""),
            "{}",
            err.message
        );
        let Request::Extract { datasets, .. } =
            parse_event(&event("backfill-day.json"), now(), &settings()).expect("parse")
        else {
            panic!("not an extract")
        };
        assert_eq!(datasets, None, "the configured ones");
        let all = crate::datasets::Dataset::all().to_vec();
        let backfilled = names(&datasets_for(Trigger::Backfill, all.clone()));
        // The day-partitioned datasets only: no reference snapshot.
        assert_eq!(
            backfilled,
            [
                crate::datasets::conversations::DATASET.name,
                crate::datasets::user_details::DATASET.name
            ],
            "no snapshot in a backfill"
        );
        assert_eq!(
            datasets_for(Trigger::Schedule, all.clone()).len(),
            all.len()
        );
        assert_eq!(datasets_for(Trigger::Manual, all.clone()).len(), all.len());
    }

    #[test]
    fn bad_events_are_refused_with_the_reason() {
        let s = settings();
        let cases = [
            (json!([1, 2]), "not a JSON object"),
            (json!({"hello": "world"}), "accepted events"),
            (json!({"start": "2026-11-08", "end": "2026-11-01"}), "end"),
            (
                json!({"start": "2026-10-01", "end": "2026-10-30"}),
                "backfill state machine",
            ),
            (
                json!({"start": "2026-11-21", "end": "2026-11-29"}),
                "future",
            ),
            (
                json!({"start": "2026-11-01T05:00:00Z", "end": "2026-11-02"}),
                "UTC midnight",
            ),
            (
                json!({"start": "2026-11-01", "end": "2026-11-02", "mode": "fast"}),
                "mode",
            ),
            (json!({"source": "schedule"}), "scheduled_time"),
            (json!({"action": "destroy"}), "unknown action"),
        ];
        for (ev, needle) in cases {
            let e = parse_event(&ev, now(), &s).expect_err(&ev.to_string());
            assert_eq!(e.error_type, "Input.Invalid", "{ev}");
            assert!(e.message.contains(needle), "{ev}: {}", e.message);
        }
    }

    /// Each bad event of issue 12 §4: refused with `Input.Invalid`, the field named exactly.
    #[test]
    fn wrong_types_unknown_keys_and_future_times_are_refused_by_name() {
        let s = settings();
        let cases = [
            (
                json!({"start": "2026-11-01", "end": "2026-11-02", "mode": 1}),
                "field \"mode\" of a manual event must be a string, not a number",
            ),
            (
                json!({"start": "2026-11-01", "end": "2026-11-02", "partial_days": "true"}),
                "field \"partial_days\" of a manual event must be true or false, not a string",
            ),
            (
                json!({"start": "2026-11-01", "end": "2026-11-02", "mdoe": "jobs"}),
                "unknown field \"mdoe\" in a manual event (its fields: source, start, end, mode, \
                 partial_days, datasets)",
            ),
            (
                json!({"source": "backfill", "start": "2026-11-01", "end": "2026-11-02", "partial_days": null}),
                "field \"partial_days\" of a backfill event must be true or false, not null",
            ),
            (
                json!({"source": "backfill", "start": 20261101, "end": "2026-11-02"}),
                "field \"start\" of a backfill event must be a string, not a number",
            ),
            (
                json!({"source": "schedule", "scheduled_time": "2026-11-22T02:30:00Z", "lookback_days": 5}),
                "unknown field \"lookback_days\" in a schedule event",
            ),
            (
                json!({"source": "schedule", "scheduled_time": ["2026-11-22T02:30:00Z"]}),
                "field \"scheduled_time\" of a schedule event must be a string, not an array",
            ),
            (
                json!({"source": "schedule", "scheduled_time": "2026-11-23T02:30:00Z"}),
                "field \"scheduled_time\" \"2026-11-23T02:30:00Z\" is in the future",
            ),
            (
                json!({"version": "0", "source": "aws.events", "detail-type": "Scheduled Event", "time": "2026-11-22T10:02:00Z"}),
                "field \"time\" \"2026-11-22T10:02:00Z\" is in the future",
            ),
            (
                json!({"source": "aws.events", "detail-type": "Scheduled Event", "time": 1}),
                "a scheduled event needs \"time\"",
            ),
            (
                json!({"source": 7, "start": "2026-11-01", "end": "2026-11-02"}),
                "field \"source\" must be a string, not a number",
            ),
            (
                json!({"action": "plan_backfill", "start": "2026-01-01", "end": "2026-02-01", "mode": "jobs"}),
                "unknown field \"mode\" in a plan_backfill event",
            ),
            (
                json!({"action": true, "start": "2026-01-01", "end": "2026-02-01"}),
                "field \"action\" must be a string, not a boolean",
            ),
        ];
        for (ev, needle) in cases {
            let e = parse_event(&ev, now(), &s).expect_err(&ev.to_string());
            assert_eq!(e.error_type, ErrorClass::InputInvalid.as_str(), "{ev}");
            assert!(e.message.contains(needle), "{ev}: {}", e.message);
        }
        // At the clock (within the skew) is not the future; the right types pass.
        let ok = [
            json!({"source": "schedule", "scheduled_time": "2026-11-22T10:00:30Z"}),
            json!({"start": "2026-11-01", "end": "2026-11-02", "mode": "query", "partial_days": false, "source": "manual"}),
        ];
        for ev in ok {
            parse_event(&ev, now(), &s).unwrap_or_else(|e| panic!("{ev}: {e}"));
        }
    }

    #[test]
    fn lookback_days_must_fit_the_days_per_invocation() {
        let with = |lookback: &str, max: &str| {
            LambdaSettings::try_parse_from([
                "--out",
                "/tmp/x",
                "--region",
                "eu-west-1",
                "--lookback-days",
                lookback,
                "--max-days-per-invocation",
                max,
            ])
            .expect("settings")
            .validate()
        };
        assert_eq!(with("6", "7"), Ok(()));
        assert_eq!(with("0", "1"), Ok(()));
        let e = with("7", "7").expect_err("8 days > 7");
        assert_eq!(e.error_type, ErrorClass::ConfigInvalid.as_str());
        assert_eq!(
            e.message,
            "GP_LOOKBACK_DAYS 7 makes a scheduled run extract 8 days, more than \
             GP_MAX_DAYS_PER_INVOCATION 7: set GP_LOOKBACK_DAYS to at most 6 or raise \
             GP_MAX_DAYS_PER_INVOCATION to at least 8"
        );
        let e = with("0", "0").expect_err("no days");
        assert!(
            e.message
                .contains("GP_MAX_DAYS_PER_INVOCATION must be at least 1"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_handler_is_not_built_with_settings_that_do_not_fit() {
        let s = LambdaSettings::try_parse_from([
            "--out",
            "/tmp/x",
            "--region",
            "eu-west-1",
            "--client-id",
            "a",
            "--client-secret",
            "b",
            "--lookback-days",
            "9",
        ])
        .expect("settings");
        let e = Handler::new(s).await.err().expect("refused");
        assert_eq!(e.error_type, ErrorClass::ConfigInvalid.as_str());
        assert!(e.message.starts_with("GP_LOOKBACK_DAYS 9"), "{e}");
    }

    #[test]
    fn emf_line_carries_the_conversations_metric() {
        let v: Value = serde_json::from_str(&emf_line("fn", 1234, 0, now())).expect("json");
        assert_eq!(v["Conversations"], 1234);
        assert_eq!(v["Function"], "fn");
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"],
            "Conversations"
        );
    }
}
