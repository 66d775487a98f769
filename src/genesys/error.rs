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
    #[error("{what}: gave up after {attempts} attempts; last error: {last}{}", if *unreachable { " (the host could not be reached at all: check the API and login URLs or region, and the network)" } else { "" })]
    RetriesExhausted {
        what: String,
        attempts: u32,
        last: String,
        /// Every attempt failed to connect or timed out: the host is not reachable from here.
        unreachable: bool,
    },
    #[error("{what}: no answer ({last}); not sent again, as the service may have acted on it")]
    Unconfirmed { what: String, last: String },
    #[error("{interval}: the query returned {returned} distinct conversations of the {total_hits} it reported (totalHits), {} missing, even after asking again in smaller parts", total_hits.saturating_sub(*returned))]
    Shortfall {
        interval: String,
        total_hits: u64,
        returned: u64,
    },
    #[error("{what}: unexpected response: {reason}")]
    Decode { what: String, reason: String },
    /// A 403 on a listing one dataset needs: that dataset fails, the others run.
    #[error("{what}: the OAuth client lacks the permission {permission}; grant it to the client's role, or leave the dataset out (--datasets / the Datasets parameter)")]
    MissingPermission { what: String, permission: String },
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
            | GenesysError::Unconfirmed { .. }
            | GenesysError::Shortfall { .. }
            | GenesysError::Job { .. } => true,
            GenesysError::Api { status, .. } => *status == 429 || *status >= 500,
            GenesysError::Login { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// Why every other day would fail the same way, if so: the login refused, the host
    /// unreachable after the retry budget, a permission missing. The text names the cause and
    /// what to change.
    pub fn run_fatal(&self) -> Option<String> {
        match self {
            GenesysError::Login { status, host, .. } if *status < 500 && *status != 429 => {
                Some(format!(
                    "the login to {host} was refused (HTTP {status}): check the OAuth client id \
                     and secret (GENESYS_CLIENT_ID / GENESYS_CLIENT_SECRET or the secret's JSON) \
                     and that the region matches the organization"
                ))
            }
            GenesysError::RetriesExhausted {
                what,
                unreachable: true,
                ..
            } => Some(format!(
                "the Genesys Cloud host cannot be reached ({what}): check --region / \
                 --api-url / --login-url and the network (VPC egress, proxy)"
            )),
            GenesysError::Api {
                status: 403,
                message,
                ..
            } => Some(format!(
                "the OAuth client lacks a permission: {}; grant the permission \
                 analytics:conversationDetail:view to the client's role ({message})",
                missing_permission(message).unwrap_or("analytics:conversationDetail:view")
            )),
            _ => None,
        }
    }
}

/// The permission a 403's message names (`…missing the following permission(s): [a:b:c, …]`).
pub(crate) fn missing_permission(message: &str) -> Option<&str> {
    let list = message.split_once('[')?.1.split_once(']')?.0;
    list.split(',').map(str::trim).find(|p| p.contains(':'))
}
