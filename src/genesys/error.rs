//! What can go wrong talking to Genesys Cloud. Messages name the request and quote Genesys's
//! `contextId` (what its support asks for); they never contain the secret or a token.

use crate::page::PageError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenesysError {
    #[error("unknown Genesys Cloud region {name:?}; valid regions: {valid}")]
    UnknownRegion { name: String, valid: String },
    #[error("invalid URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("Genesys credentials: {0}")]
    Credentials(String),
    #[error("login to {host} failed: HTTP {status}: {message}")]
    Login {
        host: String,
        status: u16,
        message: String,
    },
    #[error("{what}: HTTP {status} {code}: {message} (contextId {context_id}{})", correlation_id.as_ref().map(|c| format!(", inin-correlation-id {c}")).unwrap_or_default())]
    Api {
        what: String,
        status: u16,
        code: String,
        message: String,
        context_id: String,
        correlation_id: Option<String>,
    },
    #[error("{what}: the service asked to retry in {seconds} s (Retry-After), over the {max} s this client waits; try again later")]
    RetryAfterTooLong {
        what: String,
        seconds: u64,
        max: u64,
    },
    #[error("{what}: gave up after {attempts} attempts; last error: {last}")]
    RetriesExhausted {
        what: String,
        attempts: u32,
        last: String,
    },
    #[error("{what}: unexpected response: {reason}")]
    Decode { what: String, reason: String },
    #[error("analytics job {job_id} for {interval} ended {state}{}; gave up after {attempts} submissions", message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Job {
        job_id: String,
        interval: String,
        state: String,
        message: Option<String>,
        attempts: u32,
    },
    #[error("{interval}: more than {window} conversations even in a {minutes}-minute interval; cannot page through them")]
    TooDense {
        interval: String,
        window: u64,
        minutes: i64,
    },
    #[error(transparent)]
    Page(#[from] PageError),
}

impl GenesysError {
    /// Whether the same request may succeed later (throttling, a failing service, a network
    /// problem, a job the service failed). Bad credentials, permissions and queries are not.
    pub fn is_transient(&self) -> bool {
        match self {
            GenesysError::RetryAfterTooLong { .. }
            | GenesysError::RetriesExhausted { .. }
            | GenesysError::Job { .. } => true,
            GenesysError::Api { status, .. } => *status == 429 || *status >= 500,
            GenesysError::Login { status, .. } => *status >= 500,
            _ => false,
        }
    }
}
