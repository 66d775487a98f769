//! The AWS Lambda binary (`provided.al2023`): wires [`genesys_parquet::lambda::LazyHandler`] to the
//! Lambda runtime. Clients (HTTP, S3, the Genesys token) are built once and reused by warm
//! invocations.

use std::sync::Arc;

use genesys_parquet::lambda::{init_tracing, LazyHandler};
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let handler = Arc::new(LazyHandler::default());
    // Built now when it can be; otherwise each invocation tries again and answers with the
    // failure's class (a Secrets Manager hiccup is retryable, a wrong setting is not), instead of
    // the runtime's opaque init error.
    if let Err(e) = handler.init().await {
        tracing::error!(error = %e, "initialisation failed; the next invocation tries again");
    }
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let handler = handler.clone();
        async move {
            let deadline = event.context.deadline();
            handler.handle(event.payload, deadline).await
        }
    }))
    .await
}
