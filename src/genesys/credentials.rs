//! OAuth client credentials: from the environment, or from an AWS Secrets Manager secret (what
//! the Lambda uses). The secret never appears in `Debug`, logs or errors.
//!
//! Credentials read from a secret remember where they came from: a warm Lambda container keeps
//! them for hours, and when the login host refuses them (the secret was rotated since) the client
//! reads the secret once more ([`Credentials::reread`]). Clones share what was read.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use super::GenesysError;

/// Attempts (with the SDK's standard back-off) at one Secrets Manager read before a failure that
/// may pass is reported as transient.
const SECRET_READ_ATTEMPTS: u32 = 3;

/// An OAuth client id and secret.
#[derive(Clone)]
pub struct Credentials {
    current: Arc<RwLock<Pair>>,
    source: Option<Arc<SecretSource>>,
}

#[derive(Clone, PartialEq, Eq)]
struct Pair {
    client_id: String,
    secret: String,
}

/// The Secrets Manager secret the credentials were read from.
struct SecretSource {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id())
            .field("secret", &"<redacted>")
            .field(
                "secret_id",
                &self.source.as_ref().map(|s| s.secret_id.as_str()),
            )
            .finish()
    }
}

impl Credentials {
    pub fn new(client_id: String, secret: String) -> Self {
        Self {
            current: Arc::new(RwLock::new(Pair { client_id, secret })),
            source: None,
        }
    }

    /// The client id in use.
    pub fn client_id(&self) -> String {
        self.pair().client_id
    }

    /// The client id and secret in use, for one login.
    pub(crate) fn current(&self) -> (String, String) {
        let p = self.pair();
        (p.client_id, p.secret)
    }

    fn pair(&self) -> Pair {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `GENESYS_CLIENT_ID` and `GENESYS_CLIENT_SECRET`.
    pub fn from_env() -> Result<Self, GenesysError> {
        let get = |k: &str| {
            std::env::var(k)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| GenesysError::Credentials(format!("{k} is not set")))
        };
        Ok(Self::new(
            get("GENESYS_CLIENT_ID")?,
            get("GENESYS_CLIENT_SECRET")?,
        ))
    }

    /// The secret's JSON: `{"client_id": "…", "client_secret": "…"}`.
    pub fn from_secret_json(secret_id: &str, json: &str) -> Result<Self, GenesysError> {
        let p = parse_secret_json(secret_id, json)?;
        Ok(Self::new(p.client_id, p.secret))
    }

    /// Reads the credentials from an AWS Secrets Manager secret. A failure that may pass
    /// (throttling, a network error, a service error) after the SDK's retries is
    /// [`GenesysError::RetriesExhausted`], which is transient; a missing secret, a denied read or
    /// a malformed value is [`GenesysError::Credentials`].
    pub async fn from_secret(
        aws: &aws_config::SdkConfig,
        secret_id: &str,
    ) -> Result<Self, GenesysError> {
        let conf = aws_sdk_secretsmanager::config::Builder::from(aws)
            .retry_config(
                aws_sdk_secretsmanager::config::retry::RetryConfig::standard()
                    .with_max_attempts(SECRET_READ_ATTEMPTS),
            )
            .build();
        let source = SecretSource {
            client: aws_sdk_secretsmanager::Client::from_conf(conf),
            secret_id: secret_id.to_string(),
        };
        let pair = source.read().await?;
        Ok(Self {
            current: Arc::new(RwLock::new(pair)),
            source: Some(Arc::new(source)),
        })
    }

    /// Called when the login host refused these credentials: reads the secret again (it may have
    /// been rotated since it was read) and keeps the new value. True when the credentials changed
    /// and a new login may succeed; false without a secret, when it is unchanged, or when the
    /// read fails (logged; the refusal is the error worth reporting).
    pub(crate) async fn reread(&self) -> bool {
        let Some(source) = &self.source else {
            return false;
        };
        match source.read().await {
            Ok(pair) => {
                let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
                if *current == pair {
                    tracing::warn!(secret_id = %source.secret_id, "login refused; the secret is unchanged");
                    return false;
                }
                *current = pair;
                tracing::info!(secret_id = %source.secret_id, "login refused; read the rotated secret again");
                true
            }
            Err(e) => {
                tracing::warn!(secret_id = %source.secret_id, error = %e, "login refused; reading the secret again failed");
                false
            }
        }
    }
}

impl SecretSource {
    async fn read(&self) -> Result<Pair, GenesysError> {
        let id = &self.secret_id;
        let out = self
            .client
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| secret_read_error(id, &e))?;
        let json = out
            .secret_string()
            .ok_or_else(|| GenesysError::Credentials(format!("secret {id} has no SecretString")))?;
        parse_secret_json(id, json)
    }
}

/// Classifies a failed `GetSecretValue`: what a later attempt may get past is transient, what
/// only a change of configuration fixes is a credentials error.
fn secret_read_error<R: fmt::Debug>(
    secret_id: &str,
    e: &SdkError<aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError, R>,
) -> GenesysError {
    let detail = DisplayErrorContext(e).to_string();
    let transient = match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(s) => {
            let err = s.err();
            err.is_internal_service_error()
                || matches!(
                    err.code(),
                    Some("ThrottlingException" | "RequestLimitExceeded" | "ServiceUnavailable")
                )
        }
        _ => false,
    };
    let what = format!("reading secret {secret_id} from Secrets Manager");
    if transient {
        GenesysError::RetriesExhausted {
            what,
            attempts: SECRET_READ_ATTEMPTS,
            last: detail,
            // Secrets Manager, not the Genesys host: nothing here says Genesys is unreachable.
            unreachable: false,
        }
    } else {
        GenesysError::Credentials(format!("{what}: {detail}"))
    }
}

fn parse_secret_json(secret_id: &str, json: &str) -> Result<Pair, GenesysError> {
    #[derive(serde::Deserialize)]
    struct S {
        client_id: Option<String>,
        client_secret: Option<String>,
    }
    // The parse error is not quoted: it could echo part of the secret.
    let s: S = serde_json::from_str(json).map_err(|_| {
        GenesysError::Credentials(format!(
            "secret {secret_id} is not JSON of the form {{\"client_id\": …, \"client_secret\": …}}"
        ))
    })?;
    let missing: Vec<&str> = [
        ("client_id", s.client_id.as_deref()),
        ("client_secret", s.client_secret.as_deref()),
    ]
    .into_iter()
    .filter(|(_, v)| v.is_none_or(str::is_empty))
    .map(|(k, _)| k)
    .collect();
    match (s.client_id, s.client_secret) {
        (Some(client_id), Some(secret)) if missing.is_empty() => Ok(Pair { client_id, secret }),
        _ => Err(GenesysError::Credentials(format!(
            "secret {secret_id} lacks {} (missing or empty)",
            missing.join(" and ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_secret() {
        let c = Credentials::new("id-1".into(), "s3cr3t-value".into());
        let d = format!("{c:?}");
        assert!(d.contains("id-1") && !d.contains("s3cr3t-value"), "{d}");
    }

    #[test]
    fn secret_json() {
        let c = Credentials::from_secret_json("gp", r#"{"client_id":"a","client_secret":"b"}"#)
            .expect("ok");
        assert_eq!(c.current(), ("a".into(), "b".into()));
        // JSON escapes in the secret come out as the characters they stand for.
        let c = Credentials::from_secret_json(
            "gp",
            r#"{"client_id":"a","client_secret":"p\"q\\r/\u00e9"}"#,
        )
        .expect("escaped");
        assert_eq!(c.current().1, "p\"q\\r/é");
        let e = Credentials::from_secret_json("gp", "hunter2").expect_err("not json");
        assert!(!e.to_string().contains("hunter2"));
    }

    #[test]
    fn a_secret_without_a_field_names_the_missing_one() {
        let msg = |json: &str| {
            Credentials::from_secret_json("gp", json)
                .expect_err(json)
                .to_string()
        };
        assert_eq!(
            msg(r#"{"client_id":"a"}"#),
            "Genesys credentials: secret gp lacks client_secret (missing or empty)"
        );
        assert_eq!(
            msg(r#"{"client_secret":"b"}"#),
            "Genesys credentials: secret gp lacks client_id (missing or empty)"
        );
        assert_eq!(
            msg(r#"{"client_id":"","client_secret":"b"}"#),
            "Genesys credentials: secret gp lacks client_id (missing or empty)"
        );
        assert_eq!(
            msg(r#"{}"#),
            "Genesys credentials: secret gp lacks client_id and client_secret (missing or empty)"
        );
    }

    #[tokio::test]
    async fn credentials_not_from_a_secret_are_not_reread() {
        let c = Credentials::new("a".into(), "b".into());
        assert!(!c.reread().await);
        assert_eq!(c.current(), ("a".into(), "b".into()));
    }
}
