//! The Glue Data Catalog as the switch of a day's visible run (`catalog` mode).
//!
//! With partitions registered in Glue (and partition projection off), Athena reads exactly the
//! S3 location registered for a partition (`<column>=D`, the dataset's partition column).
//! Publishing a run then points each table's partition at the run's own folder,
//! `{table}/<column>=D/run=R/`, with one
//! `UpdatePartition` (or `CreatePartition` the first time) per table: a query sees the old run or
//! the new one, whole, never both. The switch is atomic per table, not across tables: a query
//! joining two tables in the few hundred milliseconds of a publish may see each at a different
//! run. Superseded runs stay in S3 (queries already planned still read them) until the bucket's
//! lifecycle rule expires them.

use std::collections::HashMap;

use aws_sdk_glue::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_glue::types::{PartitionInput, StorageDescriptor};
use chrono::NaiveDate;
use tokio::sync::Mutex;

use super::StoreError;
use crate::datasets::Dataset;
use crate::tables::schema::Table;

/// Registers day partitions of the output tables in one Glue database.
#[derive(Debug)]
pub struct GlueCatalog {
    client: aws_sdk_glue::Client,
    database: String,
    /// Each table's storage descriptor (columns, formats, SerDe): a partition repeats it with
    /// its own location. Read once per table and process (tables change only on deploys).
    templates: Mutex<HashMap<String, StorageDescriptor>>,
}

fn glue_error<E>(
    op: &'static str,
    database: &str,
    table: &str,
    partition: Option<String>,
    e: SdkError<E, aws_sdk_glue::config::http::HttpResponse>,
) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = e.raw_response().map(|r| r.status().as_u16());
    let code = e.code().unwrap_or("").to_string();
    let transient = matches!(
        code.as_str(),
        "ThrottlingException"
            | "InternalServiceException"
            | "OperationTimeoutException"
            | "ConcurrentModificationException"
    ) || status.is_some_and(|s| s >= 500)
        || matches!(e, SdkError::TimeoutError(_) | SdkError::DispatchFailure(_));
    let message = match code.as_str() {
        "EntityNotFoundException" => format!(
            "{} (create the table with the template, or check GP_GLUE_DATABASE)",
            e.message().unwrap_or("not found")
        ),
        "AccessDeniedException" => format!("access denied: {}", e.message().unwrap_or("")),
        "" => aws_sdk_glue::error::DisplayErrorContext(&e).to_string(),
        c => format!("{c}: {}", e.message().unwrap_or("")),
    };
    StoreError::Catalog {
        op,
        table: format!("{database}.{table}"),
        partition,
        message,
        transient,
    }
}

fn is_code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>, code: &str) -> bool {
    e.code() == Some(code)
}

impl GlueCatalog {
    /// A client from the standard AWS chain (the Lambda's role; `AWS_ENDPOINT_URL_GLUE` for a
    /// local server).
    pub async fn from_env(database: &str) -> Self {
        let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let mut b = aws_sdk_glue::config::Builder::from(&shared);
        if shared.region().is_none() {
            b = b.region(aws_sdk_glue::config::Region::new("us-east-1"));
        }
        Self::new(aws_sdk_glue::Client::from_conf(b.build()), database)
    }

    pub fn new(client: aws_sdk_glue::Client, database: &str) -> Self {
        Self {
            client,
            database: database.to_string(),
            templates: Mutex::new(HashMap::new()),
        }
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    async fn template(&self, table: &str) -> Result<StorageDescriptor, StoreError> {
        if let Some(sd) = self.templates.lock().await.get(table) {
            return Ok(sd.clone());
        }
        let out = self
            .client
            .get_table()
            .database_name(&self.database)
            .name(table)
            .send()
            .await
            .map_err(|e| glue_error("read table", &self.database, table, None, e))?;
        let sd = out
            .table()
            .and_then(|t| t.storage_descriptor())
            .cloned()
            .ok_or_else(|| StoreError::Catalog {
                op: "read table",
                table: format!("{}.{table}", self.database),
                partition: None,
                message: "the table has no storage descriptor".into(),
                transient: false,
            })?;
        self.templates
            .lock()
            .await
            .insert(table.to_string(), sd.clone());
        Ok(sd)
    }

    /// Fails (not retried) unless every table of `dataset` exists: checked before a run
    /// writes anything, so a table not deployed yet cannot leave a publish half registered.
    pub async fn check_tables(&self, dataset: &Dataset) -> Result<(), StoreError> {
        for table in dataset.tables {
            self.template(table.name()).await?;
        }
        Ok(())
    }

    /// Points partition `date` (`<column>=2026-11-20`) of every table of
    /// `dataset` at `location(table)`.
    pub async fn register(
        &self,
        dataset: &Dataset,
        date: NaiveDate,
        location: impl Fn(&str) -> String,
    ) -> Result<(), StoreError> {
        for table in dataset.tables {
            self.register_one(*table, date, &location(table.name()))
                .await?;
        }
        Ok(())
    }

    async fn register_one(
        &self,
        table: Table,
        date: NaiveDate,
        location: &str,
    ) -> Result<(), StoreError> {
        let partition = || Some(table.dataset().partition_folder(date));
        let table = table.name();
        let mut sd = self.template(table).await?;
        sd.location = Some(location.to_string());
        let input = PartitionInput::builder()
            .values(date.to_string())
            .storage_descriptor(sd)
            .build();
        let db = self.database.as_str();
        let update = |input: PartitionInput| {
            self.client
                .update_partition()
                .database_name(db)
                .table_name(table)
                .partition_value_list(date.to_string())
                .partition_input(input)
                .send()
        };
        // Update first: after the first run of a day the partition exists.
        match update(input.clone()).await {
            Ok(_) => return Ok(()),
            Err(e) if is_code(&e, "EntityNotFoundException") => {}
            Err(e) => return Err(glue_error("update partition", db, table, partition(), e)),
        }
        let created = self
            .client
            .create_partition()
            .database_name(db)
            .table_name(table)
            .partition_input(input.clone())
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            // Created by someone else in between (another tool, a crawler): update it.
            Err(e) if is_code(&e, "AlreadyExistsException") => update(input)
                .await
                .map(|_| ())
                .map_err(|e| glue_error("update partition", db, table, partition(), e)),
            Err(e) => Err(glue_error("create partition", db, table, partition(), e)),
        }
    }

    /// Where partition `date` of `table` points, if it is registered.
    pub async fn location(
        &self,
        table: &str,
        date: NaiveDate,
    ) -> Result<Option<String>, StoreError> {
        let got = self
            .client
            .get_partition()
            .database_name(&self.database)
            .table_name(table)
            .partition_values(date.to_string())
            .send()
            .await;
        match got {
            Ok(o) => Ok(o
                .partition()
                .and_then(|p| p.storage_descriptor())
                .and_then(|sd| sd.location())
                .map(str::to_string)),
            Err(e) if is_code(&e, "EntityNotFoundException") => Ok(None),
            Err(e) => Err(glue_error(
                "read partition",
                &self.database,
                table,
                Table::from_name(table).map(|t| t.dataset().partition_folder(date)),
                e,
            )),
        }
    }
}
