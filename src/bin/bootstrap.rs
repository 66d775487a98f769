//! The AWS Lambda binary (`provided.al2023`): wires [`genesys_parquet::lambda::Handler`] to the
//! Lambda runtime. Clients (HTTP, S3, the Genesys token) are built once and reused by warm
//! invocations.

use std::sync::Arc;

use genesys_parquet::lambda::{init_tracing, Handler};
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let handler = match Handler::from_env().await {
        Ok(h) => Arc::new(h),
        Err(e) => {
            // Logged before exiting so the init failure is readable in CloudWatch.
            tracing::error!(error = %e, "initialisation failed");
            return Err(e.into());
        }
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let handler = handler.clone();
        async move {
            let deadline = event.context.deadline();
            handler.handle(event.payload, deadline).await
        }
    }))
    .await
}
