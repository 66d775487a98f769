//! Request and response bodies of the Genesys endpoints this project uses, with the JSON names
//! and absent-vs-null habits of the official SDK (`spec/genesys/sdk-models.json`).
//!
//! Shared by the client and the simulator. Conversation records themselves are NOT modelled
//! here: they travel as raw JSON ([`crate::page::Page`]) and the schema in [`crate::tables`]
//! reads them.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::interval::serde_millis;

pub const PATH_DETAILS_QUERY: &str = "/api/v2/analytics/conversations/details/query";
pub const PATH_JOBS: &str = "/api/v2/analytics/conversations/details/jobs";
pub const PATH_JOBS_AVAILABILITY: &str =
    "/api/v2/analytics/conversations/details/jobs/availability";
pub const PATH_TOKEN: &str = "/oauth/token";
pub const PATH_USER_DETAILS_QUERY: &str = "/api/v2/analytics/users/details/query";
pub const PATH_USER_DETAILS_JOBS: &str = "/api/v2/analytics/users/details/jobs";
pub const PATH_USER_DETAILS_JOBS_AVAILABILITY: &str =
    "/api/v2/analytics/users/details/jobs/availability";

/// `PagingSpec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PagingSpec {
    pub page_size: u32,
    pub page_number: u32,
}

/// `ConversationQuery`: body of `POST /api/v2/analytics/conversations/details/query`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConversationQuery {
    pub interval: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paging: Option<PagingSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_filters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_filters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation_filters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub survey_filters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution_filters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregations: Option<Value>,
}

/// `AsyncConversationQuery`: body of `POST /api/v2/analytics/conversations/details/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AsyncConversationQuery {
    pub interval: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_of_day_interval_matching: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_filters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_filters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation_filters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub survey_filters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution_filters: Option<Value>,
}

/// `AsyncQueryResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AsyncQueryResponse {
    pub job_id: String,
}

/// `AsyncQueryStatus.state`. Open: values this build does not know are kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JobState {
    Queued,
    Pending,
    Fulfilled,
    Failed,
    Cancelled,
    Expired,
    Other(String),
}

impl JobState {
    pub fn as_str(&self) -> &str {
        match self {
            JobState::Queued => "QUEUED",
            JobState::Pending => "PENDING",
            JobState::Fulfilled => "FULFILLED",
            JobState::Failed => "FAILED",
            JobState::Cancelled => "CANCELLED",
            JobState::Expired => "EXPIRED",
            JobState::Other(s) => s,
        }
    }

    fn from_wire(s: &str) -> Self {
        match s {
            "QUEUED" => JobState::Queued,
            "PENDING" => JobState::Pending,
            "FULFILLED" => JobState::Fulfilled,
            "FAILED" => JobState::Failed,
            "CANCELLED" => JobState::Cancelled,
            "EXPIRED" => JobState::Expired,
            other => JobState::Other(other.to_string()),
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for JobState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for JobState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(JobState::from_wire(&s))
    }
}

/// `AsyncQueryStatus`: `GET …/details/jobs/{jobId}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AsyncQueryStatus {
    pub state: JobState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "serde_millis::option"
    )]
    pub expiration_date: Option<DateTime<Utc>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "serde_millis::option"
    )]
    pub submission_date: Option<DateTime<Utc>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "serde_millis::option"
    )]
    pub completion_date: Option<DateTime<Utc>>,
}

/// `DataAvailabilityResponse`: `GET …/details/jobs/availability`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataAvailabilityResponse {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "serde_millis::option"
    )]
    pub data_availability_date: Option<DateTime<Utc>>,
}

/// `ErrorBody`: what every API endpoint answers on failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_with_params: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_params: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<Value>,
    // Genesys sends these as empty arrays rather than leaving them out.
    #[serde(default)]
    pub details: Vec<Value>,
    #[serde(default)]
    pub errors: Vec<Value>,
}

/// Body of a successful `POST /oauth/token`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"<redacted>")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Error body of the login host (`{"error":"invalid_client","description":…}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct OAuthErrorBody {
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub error_description: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/spec/genesys/examples");

    #[test]
    fn real_error_bodies_parse() {
        for f in [
            "error-400-invalid-value.splunk-mock.json",
            "error-401-bad-credentials.splunk-mock.json",
            "error-404-not-found.js-sdk-readme.json",
            "error-500-internal.splunk-mock.json",
        ] {
            let text = std::fs::read_to_string(format!("{EXAMPLES}/{f}")).unwrap();
            let body: ErrorBody = serde_json::from_str(&text).unwrap();
            assert!(body.context_id.is_some(), "{f}");
            assert!(body.code.is_some(), "{f}");
        }
    }

    #[test]
    fn token_response_parses_and_debug_redacts() {
        let text =
            std::fs::read_to_string(format!("{EXAMPLES}/oauth-token-response.splunk-mock.json"))
                .unwrap();
        let t: TokenResponse = serde_json::from_str(&text).unwrap();
        assert_eq!(t.expires_in, 86399);
        assert!(!format!("{t:?}").contains(&t.access_token));
    }

    #[test]
    fn unknown_job_state_is_kept() {
        let s: AsyncQueryStatus = serde_json::from_str(r#"{"state":"ARCHIVED"}"#).unwrap();
        assert_eq!(s.state, JobState::Other("ARCHIVED".into()));
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"state":"ARCHIVED"}"#
        );
    }

    #[test]
    fn query_serializes_like_api_md() {
        let q = ConversationQuery {
            interval: "2026-11-21T00:00:00.000Z/2026-11-22T00:00:00.000Z".into(),
            order: Some("asc".into()),
            order_by: Some("conversationStart".into()),
            paging: Some(PagingSpec {
                page_size: 100,
                page_number: 1,
            }),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&q).unwrap(),
            serde_json::json!({
                "interval": "2026-11-21T00:00:00.000Z/2026-11-22T00:00:00.000Z",
                "order": "asc",
                "orderBy": "conversationStart",
                "paging": {"pageSize": 100, "pageNumber": 1}
            })
        );
    }
}
