//! The bulk path: asynchronous details jobs. Submit, poll with back-off until FULFILLED, page
//! the results by cursor, delete the job. A job the service fails, expires or forgets is
//! submitted again (a bounded number of times); a job whose results pass the pagination window
//! is split into halves. Pages already emitted may come again after a resubmit: the extraction
//! deduplicates.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::BoxStream;
use reqwest::Method;

use super::http::{Request, RequestStats, Transport};
use super::model::{
    AsyncConversationQuery, AsyncQueryResponse, AsyncQueryStatus, JobState, PATH_JOBS,
};
use super::{ClientConfig, GenesysError};
use crate::interval::Interval;
use crate::page::{Page, PageOrigin};

enum JobEnd {
    /// Results paged to the end.
    Done,
    /// FAILED / CANCELLED / EXPIRED, or results gone mid-way: submit again.
    Resubmit {
        job_id: String,
        state: String,
        message: Option<String>,
    },
    /// More results than one job may page through.
    Split,
}

/// The pages of one interval's job(s).
pub(super) fn job_pages(
    t: Arc<Transport>,
    cfg: Arc<ClientConfig>,
    interval: Interval,
    stats: Arc<RequestStats>,
) -> BoxStream<'static, Result<Page, GenesysError>> {
    Box::pin(async_stream::try_stream! {
        let mut pending = vec![interval];
        while let Some(iv) = pending.pop() {
            let mut submissions = 0u32;
            loop {
                submissions += 1;
                let job_id = submit(&t, &iv, &stats).await?;
                stats.job();
                let polled = poll(&t, &cfg, &job_id, &iv, &stats).await;
                if polled.is_err() {
                    delete(&t, &job_id, &stats).await;
                }
                let mut end = match polled? {
                    None => JobEnd::Done,
                    Some((state, message)) => JobEnd::Resubmit { job_id: job_id.clone(), state, message },
                };
                if matches!(end, JobEnd::Done) {
                    let mut cursor: Option<String> = None;
                    let mut n = 0u32;
                    loop {
                        n += 1;
                        let mut query = vec![("pageSize", cfg.job_page_size.to_string())];
                        if let Some(c) = &cursor {
                            query.push(("cursor", c.clone()));
                        }
                        let req = Request {
                            method: Method::GET,
                            path: format!("{PATH_JOBS}/{job_id}/results"),
                            query,
                            body: None,
                            what: format!("results of job {job_id} page {n} ({iv})"),
                        };
                        match t.send(&req, &stats).await {
                            Ok(body) => {
                                let origin = PageOrigin::new(format!("job {job_id} page {n} ({iv})"));
                                let page = Page::parse(body, origin)?;
                                stats.page();
                                cursor = page.meta.cursor.clone();
                                let last = cursor.is_none();
                                yield page;
                                if last {
                                    break;
                                }
                            }
                            Err(GenesysError::Api { status: 400, message, .. })
                                if message.to_ascii_lowercase().contains("pagination may not exceed") =>
                            {
                                end = JobEnd::Split;
                                break;
                            }
                            Err(GenesysError::Api { status: 404, message, .. }) => {
                                end = JobEnd::Resubmit { job_id: job_id.clone(), state: "EXPIRED".into(), message: Some(message) };
                                break;
                            }
                            Err(e) => {
                                delete(&t, &job_id, &stats).await;
                                Err(e)?;
                            }
                        }
                    }
                }
                delete(&t, &job_id, &stats).await;
                match end {
                    JobEnd::Done => break,
                    JobEnd::Split => {
                        let halves = iv.split_into(2);
                        if halves.len() < 2 || iv.duration() <= cfg.min_split {
                            Err(GenesysError::TooDense {
                                interval: iv.to_genesys(),
                                window: 400_000,
                                minutes: iv.duration().num_minutes(),
                            })?;
                        }
                        tracing::info!(interval = %iv, "job results exceed the pagination window: splitting");
                        pending.extend(halves.into_iter().rev());
                        break;
                    }
                    JobEnd::Resubmit { job_id, state, message } => {
                        if submissions > cfg.job_resubmits {
                            Err(GenesysError::Job {
                                job_id,
                                interval: iv.to_genesys(),
                                state,
                                message,
                                attempts: submissions,
                            })?;
                        } else {
                            tracing::warn!(%job_id, %state, ?message, interval = %iv, "job did not finish: submitting again");
                        }
                    }
                }
            }
        }
    })
}

async fn submit(
    t: &Transport,
    iv: &Interval,
    stats: &RequestStats,
) -> Result<String, GenesysError> {
    let body = AsyncConversationQuery {
        interval: iv.to_genesys(),
        order: Some("asc".into()),
        order_by: Some("conversationStart".into()),
        ..Default::default()
    };
    let req = Request {
        method: Method::POST,
        path: PATH_JOBS.to_string(),
        query: vec![],
        body: Some(serde_json::to_vec(&body).map_err(|e| GenesysError::Decode {
            what: "job query".into(),
            reason: e.to_string(),
        })?),
        what: format!("submitting a job for {iv}"),
    };
    let resp = t.send(&req, stats).await?;
    let r: AsyncQueryResponse =
        serde_json::from_slice(&resp).map_err(|e| GenesysError::Decode {
            what: req.what.clone(),
            reason: e.to_string(),
        })?;
    Ok(r.job_id)
}

/// Waits for the job to finish: `None` when FULFILLED, the state and message otherwise.
async fn poll(
    t: &Transport,
    cfg: &ClientConfig,
    job_id: &str,
    iv: &Interval,
    stats: &RequestStats,
) -> Result<Option<(String, Option<String>)>, GenesysError> {
    let started = Instant::now();
    let mut delay = cfg.job_poll_initial;
    loop {
        tokio::time::sleep(delay).await;
        let req = Request {
            method: Method::GET,
            path: format!("{PATH_JOBS}/{job_id}"),
            query: vec![],
            body: None,
            what: format!("status of job {job_id} ({iv})"),
        };
        let status: AsyncQueryStatus = match t.send(&req, stats).await {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| GenesysError::Decode {
                what: req.what.clone(),
                reason: e.to_string(),
            })?,
            Err(GenesysError::Api { status: 404, .. }) => {
                return Ok(Some(("NOT FOUND".into(), None)))
            }
            Err(e) => return Err(e),
        };
        match status.state {
            JobState::Fulfilled => return Ok(None),
            JobState::Queued | JobState::Pending => {}
            other => return Ok(Some((other.as_str().to_string(), status.error_message))),
        }
        if started.elapsed() > cfg.job_timeout {
            return Err(GenesysError::Job {
                job_id: job_id.to_string(),
                interval: iv.to_genesys(),
                state: status.state.as_str().to_string(),
                message: Some(format!("not finished after {:?}", cfg.job_timeout)),
                attempts: 1,
            });
        }
        delay = (delay.mul_f32(1.5))
            .min(cfg.job_poll_max)
            .max(Duration::from_millis(10));
    }
}

/// Deletes a job we are done with (best effort: it expires anyway).
async fn delete(t: &Transport, job_id: &str, stats: &RequestStats) {
    let req = Request {
        method: Method::DELETE,
        path: format!("{PATH_JOBS}/{job_id}"),
        query: vec![],
        body: None,
        what: format!("deleting job {job_id}"),
    };
    if let Err(e) = t.send(&req, stats).await {
        tracing::debug!(%job_id, error = %e, "could not delete the job");
    }
}
