//! The AWS Lambda entry point's logic (the `bootstrap` binary only wires it to the runtime).
//!
//! Accepted events (anything else is refused with `Input.Invalid` listing these):
//!
//! | event | extracts |
//! |---|---|
//! | EventBridge Scheduler input `{"source":"schedule","scheduled_time":"2026-11-22T02:30:00Z"}` | the day before the scheduled time, plus `GP_LOOKBACK_DAYS` days before it again |
//! | classic scheduled rule event (`"source":"aws.events"`, `"detail-type":"Scheduled Event"`, `"time"`) | the same, from `time` |
//! | manual `{"start":"2026-11-01","end":"2026-11-08"}` (dates or RFC 3339 times, optional `"mode"`, `"partial_days"`) | `[start, end)` day by day, at most `GP_MAX_DAYS_PER_INVOCATION` days |
//! | backfill day `{"source":"backfill","start":…,"end":…}` (from the Step Functions map) | that day |
//! | `{"action":"plan_backfill","start":…,"end":…}` | nothing: returns `{"days":[{"start","end"},…]}` for the state machine |
//!
//! The scheduled time, not the clock, picks the day, so a retried or late nightly run still
//! exports the day it was scheduled for. A run stops starting new pages `GP_DEADLINE_MARGIN_SECS`
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
        Self {
            error_type: ErrorClass::ConfigInvalid.as_str().into(),
            message: message.into(),
        }
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
    \"end\":\"YYYY-MM-DD\"} (optional \"mode\": auto|jobs|query), {\"source\":\"backfill\",\
    \"start\":…,\"end\":…}, {\"action\":\"plan_backfill\",\"start\":…,\"end\":…}";

/// Backfills longer than this are surely a typo (Genesys keeps far less history).
const MAX_BACKFILL_DAYS: i64 = 3660;

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

    if let Some(action) = text("action") {
        if action != "plan_backfill" {
            return Err(LambdaError::invalid(format!(
                "unknown action {action:?}; {ACCEPTED}"
            )));
        }
        let range = range_from(obj, now)?;
        if range.duration() > Duration::days(MAX_BACKFILL_DAYS) {
            return Err(LambdaError::invalid(format!(
                "backfill {range} is longer than {MAX_BACKFILL_DAYS} days"
            )));
        }
        pipeline::check_range(&range, false).map_err(|e| LambdaError::invalid(e.to_string()))?;
        return Ok(Request::PlanBackfill { range });
    }

    let scheduled = match (text("source"), text("detail-type")) {
        (Some("schedule"), _) => Some(text("scheduled_time").ok_or_else(|| {
            LambdaError::invalid("a schedule event needs \"scheduled_time\" (RFC 3339)")
        })?),
        (Some("aws.events"), Some("Scheduled Event")) => Some(text("time").ok_or_else(|| {
            LambdaError::invalid("a scheduled rule event needs \"time\" (RFC 3339)")
        })?),
        _ => None,
    };
    if let Some(t) = scheduled {
        let at = parse_time(t)
            .map_err(|e| LambdaError::invalid(format!("scheduled time {t:?}: {e}")))?;
        let yesterday = at.date_naive() - Duration::days(1);
        let first = yesterday - Duration::days(i64::from(settings.lookback_days));
        let range = Interval::new(day_start(first), day_start(yesterday + Duration::days(1)))
            .map_err(|e| LambdaError::invalid(e.to_string()))?;
        return Ok(Request::Extract {
            range,
            mode: None,
            partial_days: false,
            trigger: Trigger::Schedule,
        });
    }

    let trigger = match text("source") {
        None | Some("manual") => Trigger::Manual,
        Some("backfill") => Trigger::Backfill,
        Some(other) => {
            return Err(LambdaError::invalid(format!(
                "unknown event source {other:?}; {ACCEPTED}"
            )))
        }
    };
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
                .map_err(|e| LambdaError::invalid(format!("mode {m:?}: {e}")))?,
        ),
    };
    let partial_days = obj
        .get("partial_days")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    pipeline::check_range(&range, partial_days).map_err(|e| LambdaError::invalid(e.to_string()))?;
    Ok(Request::Extract {
        range,
        mode,
        partial_days,
        trigger,
    })
}

fn range_from(
    obj: &serde_json::Map<String, Value>,
    now: DateTime<Utc>,
) -> Result<Interval, LambdaError> {
    let time = |k: &str| -> Result<DateTime<Utc>, LambdaError> {
        let v = obj.get(k).and_then(Value::as_str).ok_or_else(|| {
            LambdaError::invalid(format!("\"{k}\" must be a date or RFC 3339 time"))
        })?;
        parse_time(v).map_err(|e| LambdaError::invalid(format!("\"{k}\" {v:?}: {e}")))
    };
    let range = Interval::new(time("start")?, time("end")?)
        .map_err(|e| LambdaError::invalid(e.to_string()))?;
    if range.end > now + Duration::minutes(1) {
        return Err(LambdaError::invalid(format!(
            "range {range} ends in the future: Genesys has no data after now"
        )));
    }
    Ok(range)
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

    pub async fn new(settings: LambdaSettings) -> Result<Self, LambdaError> {
        let pipeline = settings
            .pipeline
            .build()
            .map_err(|e| LambdaError::config(e.to_string()))?;
        let store = settings
            .output
            .store()
            .await
            .map_err(|e| LambdaError::config(e.to_string()))?;
        let client = settings
            .client
            .build()
            .await
            .map_err(|e| LambdaError::config(e.to_string()))?;
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
        let (range, mode, trigger) = match request {
            Request::PlanBackfill { range } => return Ok(plan_backfill(&range)),
            Request::Extract {
                range,
                mode,
                trigger,
                ..
            } => (range, mode, trigger),
        };
        let margin = StdDuration::from_secs(self.settings.deadline_margin_secs);
        let left = deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .saturating_sub(margin);
        let mut cfg = self.pipeline.clone();
        cfg.deadline = Some(Instant::now() + left);
        // The invocation cannot outlive its deadline: a lease that expires at it lets a retry
        // take the day over as soon as a killed invocation (runtime timeout) is gone.
        cfg.lease_ttl = lease_ttl(deadline, SystemTime::now());
        if let Some(m) = mode {
            cfg.mode = m;
        }
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
        .unwrap_or_else(|| "Internal".into());
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
