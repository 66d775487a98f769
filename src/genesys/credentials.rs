//! OAuth client credentials: from the environment, or from an AWS Secrets Manager secret (what
//! the Lambda uses). The secret never appears in `Debug`, logs or errors.

use std::fmt;

use super::GenesysError;

/// An OAuth client id and secret.
#[derive(Clone)]
pub struct Credentials {
    pub client_id: String,
    secret: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    pub fn new(client_id: String, secret: String) -> Self {
        Self { client_id, secret }
    }

    pub(crate) fn secret(&self) -> &str {
        &self.secret
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
        match (s.client_id, s.client_secret) {
            (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => {
                Ok(Self::new(id, secret))
            }
            _ => Err(GenesysError::Credentials(format!(
                "secret {secret_id} lacks client_id or client_secret"
            ))),
        }
    }

    /// Reads the credentials from an AWS Secrets Manager secret.
    pub async fn from_secret(
        aws: &aws_config::SdkConfig,
        secret_id: &str,
    ) -> Result<Self, GenesysError> {
        let client = aws_sdk_secretsmanager::Client::new(aws);
        let out = client
            .get_secret_value()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| {
                GenesysError::Credentials(format!(
                    "reading secret {secret_id} from Secrets Manager: {}",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                ))
            })?;
        let json = out.secret_string().ok_or_else(|| {
            GenesysError::Credentials(format!("secret {secret_id} has no SecretString"))
        })?;
        Self::from_secret_json(secret_id, json)
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
        assert_eq!((c.client_id.as_str(), c.secret()), ("a", "b"));
        let e = Credentials::from_secret_json("gp", r#"{"client_id":"a"}"#).expect_err("no secret");
        assert!(e.to_string().contains("lacks client_secret") || e.to_string().contains("lacks"));
        let e = Credentials::from_secret_json("gp", "hunter2").expect_err("not json");
        assert!(!e.to_string().contains("hunter2"));
    }
}
