//! Typed configuration, from CLI flags or the environment (every flag has an env var, which is
//! how the Lambda is configured), validated once at start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::error_class::ErrorClass;
use crate::genesys::{ClientConfig, Credentials, GenesysClient, Hosts, Mode};
use crate::pipeline::PipelineConfig;
use crate::sink::parquet::ParquetSettings;
use crate::sink::{DayStore, Store};
use crate::tables::ConvertOptions;

/// Days before a nightly run's last day within which a partition whose manifest counts open
/// records (a status or a conversation not ended) is extracted again (`--open-horizon-days`).
/// Longer than the longest status the API documents (a 50-day OFFLINE).
pub const DEFAULT_OPEN_HORIZON_DAYS: u32 = 60;

/// A configuration mistake, named precisely.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Genesys(Box<crate::genesys::GenesysError>),
    #[error(transparent)]
    Store(Box<crate::sink::StoreError>),
}

impl ConfigError {
    /// A setting is wrong (nothing but a change fixes it), unless the check needed a service
    /// that failed in a way a later attempt may get past (reading the secret, opening the store).
    pub fn error_class(&self) -> ErrorClass {
        match self {
            ConfigError::Genesys(e) if e.is_transient() => ErrorClass::GenesysTransient,
            ConfigError::Store(e) if e.is_transient() => ErrorClass::StoreTransient,
            _ => ErrorClass::ConfigInvalid,
        }
    }
}

impl From<crate::genesys::GenesysError> for ConfigError {
    fn from(e: crate::genesys::GenesysError) -> Self {
        ConfigError::Genesys(Box::new(e))
    }
}

impl From<crate::sink::StoreError> for ConfigError {
    fn from(e: crate::sink::StoreError) -> Self {
        ConfigError::Store(Box::new(e))
    }
}

/// Where the tables go.
#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Output root: a local folder, or s3://bucket/prefix.
    #[arg(long, env = "GP_OUT")]
    pub out: String,
    /// S3-compatible endpoint (path-style addressing), e.g. http://127.0.0.1:9000.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub s3_endpoint: Option<String>,
    /// Glue database whose tables get each published day's partition registered (S3 output
    /// only): Athena then switches a day to a new run atomically. Without it, Athena finds
    /// partitions by projection and the files are replaced in place.
    #[arg(long, env = "GP_GLUE_DATABASE")]
    pub glue_database: Option<String>,
    /// Seconds to wait for a day another live run is writing, instead of failing at once
    /// (a crashed run's lease lapses within its ttl, 2 minutes by default).
    #[arg(long, env = "GP_LEASE_WAIT", default_value_t = 0)]
    pub lease_wait: u64,
}

impl OutputArgs {
    pub fn local(path: &Path) -> Self {
        Self {
            out: path.display().to_string(),
            s3_endpoint: None,
            glue_database: None,
            lease_wait: 0,
        }
    }

    fn lease_wait(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.lease_wait)
    }

    /// The Glue database, if one is set (the template sets an empty one without a catalog).
    fn glue_database(&self) -> Option<&str> {
        self.glue_database
            .as_deref()
            .filter(|d| !d.trim().is_empty())
    }

    /// Opens the store the output names.
    pub async fn store(&self) -> Result<Arc<dyn Store>, ConfigError> {
        if let Some(rest) = self.out.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "--out {}: no bucket name (expected s3://bucket/prefix)",
                    self.out
                )));
            }
            let client = crate::sink::s3::client_from_env(self.s3_endpoint.as_deref()).await;
            let store = match self.glue_database() {
                Some(db) => DayStore::s3_catalog(
                    client,
                    bucket,
                    prefix,
                    crate::sink::catalog::GlueCatalog::from_env(db).await,
                ),
                None => DayStore::s3(client, bucket, prefix),
            };
            return Ok(Arc::new(store.with_lease_wait(self.lease_wait())));
        }
        if let Some(db) = self.glue_database() {
            return Err(ConfigError::Invalid(format!(
                "--glue-database {db}: Glue partitions can only point at an s3:// output, not {}",
                self.out
            )));
        }
        if self.out.contains("://") {
            return Err(ConfigError::Invalid(format!(
                "--out {}: only local folders and s3://bucket/prefix are supported",
                self.out
            )));
        }
        Ok(Arc::new(
            DayStore::local(PathBuf::from(&self.out))?.with_lease_wait(self.lease_wait()),
        ))
    }
}

/// How to reach and sign in to Genesys Cloud.
#[derive(Args, Debug, Clone, Default)]
pub struct ClientArgs {
    /// Genesys Cloud region (e.g. us-east-1, eu-west-1, ap-southeast-2).
    #[arg(long, env = "GENESYS_REGION", conflicts_with = "api_url")]
    pub region: Option<String>,
    /// API base URL, instead of a region (tests, proxies).
    #[arg(long, env = "GENESYS_API_URL", requires = "login_url")]
    pub api_url: Option<String>,
    /// Login base URL, with --api-url.
    #[arg(long, env = "GENESYS_LOGIN_URL", requires = "api_url")]
    pub login_url: Option<String>,
    /// OAuth client id (client credentials grant).
    #[arg(long, env = "GENESYS_CLIENT_ID", hide_env_values = true)]
    pub client_id: Option<String>,
    /// OAuth client secret; prefer the environment variable or --secret-id.
    #[arg(long, env = "GENESYS_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
    /// AWS Secrets Manager secret holding {"client_id": …, "client_secret": …}.
    #[arg(long, env = "GENESYS_SECRET_ID")]
    pub secret_id: Option<String>,
    /// Client-side limit on API requests per minute (the platform allows about 300 per token).
    #[arg(long, env = "GP_REQUESTS_PER_MINUTE", default_value_t = 240)]
    pub requests_per_minute: u32,
    /// Async jobs run at once.
    #[arg(long, env = "GP_JOB_CONCURRENCY", default_value_t = 2)]
    pub job_concurrency: usize,
    /// Timeout of one HTTP request, in seconds.
    #[arg(long, env = "GP_REQUEST_TIMEOUT_SECS", default_value_t = 60)]
    pub request_timeout_secs: u64,
    /// pageSize of the reference listings (users, queues, …; default 100): their maximum is
    /// undocumented for most, and a bigger one is silently capped.
    #[arg(long, env = "GP_REFERENCE_PAGE_SIZE")]
    pub reference_page_size: Option<u32>,
}

impl ClientArgs {
    pub fn for_simulator(url: &str, client_id: &str, client_secret: &str) -> Self {
        Self {
            api_url: Some(url.to_string()),
            login_url: Some(url.to_string()),
            client_id: Some(client_id.to_string()),
            client_secret: Some(client_secret.to_string()),
            requests_per_minute: 6000,
            job_concurrency: 2,
            request_timeout_secs: 60,
            ..Default::default()
        }
    }

    pub fn hosts(&self) -> Result<Hosts, ConfigError> {
        match (&self.region, &self.api_url, &self.login_url) {
            (Some(r), None, None) => Ok(Hosts::for_region(r)?),
            (None, Some(api), Some(login)) => Ok(Hosts::custom(api, login)?),
            _ => Err(ConfigError::Invalid(
                "say where Genesys Cloud is: --region R (GENESYS_REGION), or --api-url and \
                 --login-url together"
                    .into(),
            )),
        }
    }

    /// Credentials from flags/environment, or from Secrets Manager when a secret id is given.
    pub async fn credentials(&self) -> Result<Credentials, ConfigError> {
        match (&self.client_id, &self.client_secret, &self.secret_id) {
            (Some(id), Some(secret), _) => Ok(Credentials::new(id.clone(), secret.clone())),
            (_, _, Some(secret_id)) => {
                let aws = aws_config::load_from_env().await;
                Ok(Credentials::from_secret(&aws, secret_id).await?)
            }
            _ => Err(ConfigError::Invalid(
                "no Genesys credentials: set GENESYS_CLIENT_ID and GENESYS_CLIENT_SECRET, or \
                 GENESYS_SECRET_ID (an AWS Secrets Manager secret with client_id/client_secret)"
                    .into(),
            )),
        }
    }

    pub async fn build(&self) -> Result<GenesysClient, ConfigError> {
        if self.requests_per_minute == 0 {
            return Err(ConfigError::Invalid(
                "--requests-per-minute must be at least 1".into(),
            ));
        }
        let mut cfg = ClientConfig::new(self.hosts()?, self.credentials().await?);
        cfg.requests_per_minute = self.requests_per_minute;
        cfg.job_concurrency = self.job_concurrency.max(1);
        cfg.request_timeout = Duration::from_secs(self.request_timeout_secs.max(1));
        if let Some(n) = self.reference_page_size {
            if n == 0 {
                return Err(ConfigError::Invalid(
                    "--reference-page-size must be at least 1".into(),
                ));
            }
            cfg.reference_page_size = n;
        }
        Ok(GenesysClient::new(cfg)?)
    }
}

/// How the pipeline runs and what it writes.
#[derive(Args, Debug, Clone)]
pub struct PipelineArgs {
    /// auto: async jobs up to the data lake's availability date, the synchronous query after;
    /// jobs / query: force one path.
    #[arg(long, env = "GP_MODE", default_value = "auto")]
    pub mode: Mode,
    /// Days extracted at once.
    #[arg(long, env = "GP_CONCURRENCY", default_value_t = 1)]
    pub concurrency: usize,
    /// Parquet compression: zstd(LEVEL), snappy, gzip(LEVEL), lz4, none.
    #[arg(long, env = "GP_COMPRESSION", default_value = "zstd(1)")]
    pub compression: String,
    /// Also fill the `raw` column of the conversations table with the whole record as JSON
    /// (off by default: it holds callers' numbers, names and custom attributes, costs about a
    /// fifth of the convert time and half the output size; the typed columns and `extra` already
    /// keep every field).
    #[arg(long, env = "GP_RAW")]
    pub raw: bool,
    /// Also archive the API pages (gzipped NDJSON) under _raw/, for `convert` later.
    #[arg(long, env = "GP_ARCHIVE_RAW")]
    pub archive_raw: bool,
    /// Datasets to extract (comma list): conversations, reference (the reference tables: users,
    /// queues, wrapup_codes, divisions, presence_definitions, skills, languages, groups; or any
    /// of them by name), or all. Reference tables are a snapshot of the run's date.
    #[arg(long, env = "GP_DATASETS", default_value = "all")]
    pub datasets: String,
    /// Part files are cut at this size, in MiB.
    #[arg(long, env = "GP_MAX_FILE_MB", default_value_t = 256)]
    pub max_file_mb: u64,
    /// Memory for the Parquet row groups being built, in MiB per day (all tables): past it the
    /// largest is written out, so larger values give larger row groups.
    #[arg(long, env = "GP_BUFFER_MB", default_value_t = crate::sink::parquet::DEFAULT_BUFFER_MB)]
    pub buffer_mb: usize,
    /// Write key columns (ids and times copied from the parent row) PLAIN instead of with
    /// Parquet's delta encodings, for readers that lack them (Athena, Trino, Spark 3.3+, Hive,
    /// DuckDB and pyarrow read them). About 10% more convert CPU, the same output size.
    #[arg(long, env = "GP_PLAIN_KEYS")]
    pub plain_keys: bool,
    /// A nightly run also extracts again, whole, each day up to this many days before its last
    /// day whose manifest still counts open records (statuses or conversations not ended);
    /// 0: never.
    #[arg(long, env = "GP_OPEN_HORIZON_DAYS", default_value_t = DEFAULT_OPEN_HORIZON_DAYS)]
    pub open_horizon_days: u32,
    /// Threads that parse and convert `convert`'s pages (0: half the cores; Parquet encoding
    /// runs beside them, one thread per core). The output is the same for any number.
    #[arg(long, env = "GP_THREADS", default_value_t = 0)]
    pub threads: usize,
}

impl PipelineArgs {
    pub fn default_for_demo() -> Self {
        Self {
            mode: Mode::Auto,
            concurrency: 3,
            compression: "zstd(1)".into(),
            raw: false,
            archive_raw: false,
            datasets: "all".into(),
            max_file_mb: 256,
            buffer_mb: crate::sink::parquet::DEFAULT_BUFFER_MB,
            plain_keys: false,
            open_horizon_days: DEFAULT_OPEN_HORIZON_DAYS,
            threads: 0,
        }
    }

    pub fn build(&self) -> Result<PipelineConfig, ConfigError> {
        let compression = self.compression.parse().map_err(|e| {
            ConfigError::Invalid(format!("--compression {}: {e}", self.compression))
        })?;
        if !(1..=65536).contains(&self.max_file_mb) {
            return Err(ConfigError::Invalid(format!(
                "--max-file-mb {} is out of range (1 to 65536)",
                self.max_file_mb
            )));
        }
        if !(4..=16384).contains(&self.buffer_mb) {
            return Err(ConfigError::Invalid(format!(
                "--buffer-mb {} is out of range (4 to 16384)",
                self.buffer_mb
            )));
        }
        if self.open_horizon_days > 3660 {
            return Err(ConfigError::Invalid(format!(
                "--open-horizon-days {} is out of range (0 to 3660)",
                self.open_horizon_days
            )));
        }
        let datasets = crate::datasets::parse_list(&self.datasets)
            .map_err(|e| ConfigError::Invalid(format!("--datasets {}: {e}", self.datasets)))?;
        Ok(PipelineConfig {
            datasets,
            mode: self.mode,
            day_concurrency: self.concurrency.clamp(1, 16),
            parquet: ParquetSettings {
                compression,
                max_buffered_bytes: self.buffer_mb << 20,
                delta_keys: !self.plain_keys,
                ..ParquetSettings::default()
            },
            convert: ConvertOptions {
                raw: self.raw,
                ..ConvertOptions::default()
            },
            max_file_bytes: self.max_file_mb << 20,
            archive_raw: self.archive_raw,
            open_horizon_days: self.open_horizon_days,
            threads: match self.threads {
                0 => crate::par::workers(),
                n => n.min(64),
            },
            ..PipelineConfig::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        pipeline: PipelineArgs,
    }

    fn build(args: &[&str]) -> PipelineConfig {
        Flags::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
            .expect("flags")
            .pipeline
            .build()
            .expect("config")
    }

    #[test]
    fn the_raw_column_is_opt_in() {
        assert!(!build(&[]).convert.raw);
        assert!(build(&["--raw"]).convert.raw);
        assert!(
            !PipelineArgs::default_for_demo()
                .build()
                .expect("demo")
                .convert
                .raw
        );
    }
}
