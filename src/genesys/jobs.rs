//! The bulk path: asynchronous details jobs. Submit, poll with back-off until FULFILLED, page
//! the results by cursor, delete the job. A job the service fails, expires or forgets, or whose
//! cursor it refuses, is submitted again (a bounded number of times); a job whose results pass
//! the pagination window is split into halves. Pages already emitted may come again after a
//! resubmit: the extraction deduplicates.
//!
//! Every job id the service gave us is kept in a [`JobRegistry`] until it is deleted, so a
//! stopped extraction (deadline, error, a page that does not parse) deletes what it leaves
//! behind: unfinished jobs count against the organization's concurrent-job limit. Submitting
//! is not idempotent, so a submission that got no answer is not sent again blindly: it counts
//! as one of the bounded submissions, and the job it may have created expires by itself.
//!
//! A job over an interval ending after the data lake's availability date returns partial data
//! with no flag (API.md): each result page's `dataAvailabilityDate` is compared with the job's
//! interval, records that started after it are dropped, and that part comes from the
//! synchronous query instead.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::StreamExt;
use reqwest::Method;

use super::http::{Request, RequestStats, Transport};
use super::model::{
    AsyncConversationQuery, AsyncQueryResponse, AsyncQueryStatus, JobState, PATH_JOBS,
};
use super::{query, ClientConfig, GenesysError};
use crate::datasets::conversations::DATASET as CONVERSATIONS;
use crate::interval::Interval;
use crate::page::{record_key, Page, PageError, PageOrigin};

/// Jobs submitted and not deleted yet.
#[derive(Clone, Default)]
pub struct JobRegistry(Arc<Mutex<HashSet<String>>>);

impl JobRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn add(&self, path: &str) {
        self.lock().insert(path.to_string());
    }

    fn remove(&self, path: &str) {
        self.lock().remove(path);
    }

    /// Job ids still alive.
    pub fn ids(&self) -> Vec<String> {
        self.lock()
            .iter()
            .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
            .collect()
    }

    fn paths(&self) -> Vec<String> {
        self.lock().iter().cloned().collect()
    }
}

/// Deletes every job the registry still holds (best effort; they expire anyway). Returns how
/// many were deleted.
pub(super) async fn delete_all(t: &Transport, jobs: &JobRegistry, stats: &RequestStats) -> usize {
    let mut n = 0;
    for path in jobs.paths() {
        if delete(t, jobs, &path, stats).await {
            n += 1;
        }
    }
    n
}

enum JobEnd {
    /// Results paged to the end.
    Done,
    /// FAILED / CANCELLED / EXPIRED, a refused cursor, or results gone mid-way: submit again.
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
    jobs: JobRegistry,
) -> BoxStream<'static, Result<Page, GenesysError>> {
    Box::pin(async_stream::try_stream! {
        let mut pending = vec![interval];
        while let Some(iv) = pending.pop() {
            let mut submissions = 0u32;
            loop {
                submissions += 1;
                let job_id = match submit(&t, &iv, &stats).await {
                    Ok(id) => id,
                    Err(e @ GenesysError::Unconfirmed { .. }) if submissions <= cfg.job_resubmits => {
                        tracing::warn!(interval = %iv, error = %e, "job submission unanswered: submitting again (the first job, if created, expires by itself)");
                        continue;
                    }
                    Err(e) => Err(e)?,
                };
                let job_path = format!("{PATH_JOBS}/{job_id}");
                jobs.add(&job_path);
                stats.job();
                let polled = poll(&t, &cfg, &job_path, &iv, &stats).await;
                if polled.is_err() {
                    delete(&t, &jobs, &job_path, &stats).await;
                }
                let mut end = match polled? {
                    None => JobEnd::Done,
                    Some((state, message)) => JobEnd::Resubmit { job_id: job_id.clone(), state, message },
                };
                // Where the lake's data ends inside this interval, if it does.
                let mut available: Option<DateTime<Utc>> = None;
                if matches!(end, JobEnd::Done) {
                    let mut cursor: Option<String> = None;
                    let mut n = 0u32;
                    loop {
                        n += 1;
                        let mut q = vec![("pageSize", cfg.job_page_size.to_string())];
                        if let Some(c) = &cursor {
                            q.push(("cursor", c.clone()));
                        }
                        let req = Request {
                            method: Method::GET,
                            path: format!("{PATH_JOBS}/{job_id}/results"),
                            query: q,
                            body: None,
                            what: format!("results of job {job_id} page {n} ({iv})"),
                            idempotent: true,
                        };
                        match t.send(&req, &stats).await {
                            Ok(body) => {
                                let origin = PageOrigin::new(format!("job {job_id} page {n} ({iv})"));
                                let mut page = match Page::parse(body, origin, CONVERSATIONS.envelope) {
                                    Ok(p) => p,
                                    Err(e) => {
                                        delete(&t, &jobs, &job_path, &stats).await;
                                        Err(e)?
                                    }
                                };
                                stats.page();
                                if let Some(a) = page.meta.data_availability_date.filter(|a| *a < iv.end) {
                                    let a = available.map_or(a, |b| b.min(a));
                                    if available.is_none() {
                                        tracing::warn!(interval = %iv, data_availability_date = %a, "job results are partial past the data availability date: that part comes from the query");
                                    }
                                    available = Some(a);
                                }
                                if let Some(a) = available {
                                    if let Err(e) = keep_started_before(&mut page, a) {
                                        delete(&t, &jobs, &job_path, &stats).await;
                                        Err(e)?;
                                    }
                                }
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
                            Err(GenesysError::Api { status: 400, message, .. })
                                if cursor.is_some() && message.to_ascii_lowercase().contains("cursor") =>
                            {
                                end = JobEnd::Resubmit { job_id: job_id.clone(), state: "INVALID CURSOR".into(), message: Some(message) };
                                break;
                            }
                            Err(GenesysError::Api { status: 404, message, .. }) => {
                                end = JobEnd::Resubmit { job_id: job_id.clone(), state: "EXPIRED".into(), message: Some(message) };
                                break;
                            }
                            Err(e) => {
                                delete(&t, &jobs, &job_path, &stats).await;
                                Err(e)?;
                            }
                        }
                    }
                }
                delete(&t, &jobs, &job_path, &stats).await;
                match end {
                    JobEnd::Done => {
                        if let Some(a) = available {
                            // The part the lake does not hold yet comes from the query.
                            let from = a.max(iv.start);
                            if let Ok(tail) = Interval::new(from, iv.end) {
                                let mut rest = query::query_pages(t.clone(), cfg.clone(), tail, stats.clone());
                                while let Some(page) = rest.next().await {
                                    yield page?;
                                }
                            }
                        }
                        break;
                    }
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

/// Drops the records that started at or after `available` (the lake may hold only part of
/// them).
fn keep_started_before(page: &mut Page, available: DateTime<Utc>) -> Result<(), GenesysError> {
    let origin = page.origin.clone();
    page.try_retain(|i, text| {
        let key =
            record_key(text, &CONVERSATIONS.record).map_err(|reason| PageError::BadRecord {
                origin: origin.clone(),
                index: i,
                reason,
            })?;
        Ok::<bool, GenesysError>(key.start() < available)
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
        idempotent: false,
    };
    let resp = t.send(&req, stats).await?;
    let r: AsyncQueryResponse =
        serde_json::from_slice(&resp).map_err(|e| GenesysError::Decode {
            what: req.what.clone(),
            reason: e.to_string(),
        })?;
    Ok(r.job_id)
}

/// Waits for the job at `job_path` (conversation or user-details) to finish: `None` when
/// FULFILLED, the state and message otherwise. A state this build does not know counts as still
/// running, for a bounded number of polls.
pub(super) async fn poll(
    t: &Transport,
    cfg: &ClientConfig,
    job_path: &str,
    iv: &Interval,
    stats: &RequestStats,
) -> Result<Option<(String, Option<String>)>, GenesysError> {
    let job_id = job_path.rsplit('/').next().unwrap_or(job_path);
    let started = Instant::now();
    let mut delay = cfg.job_poll_initial;
    let mut unknown = 0u32;
    loop {
        tokio::time::sleep(delay).await;
        let req = Request {
            method: Method::GET,
            path: job_path.to_string(),
            query: vec![],
            body: None,
            what: format!("status of job {job_id} ({iv})"),
            idempotent: true,
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
        match &status.state {
            JobState::Fulfilled => return Ok(None),
            JobState::Queued | JobState::Pending => {}
            JobState::Other(s) => {
                unknown += 1;
                if unknown == 1 {
                    tracing::warn!(%job_id, state = %s, "job state unknown to this build: waiting as if running");
                }
                if unknown > cfg.unknown_state_polls {
                    return Ok(Some((s.clone(), status.error_message)));
                }
            }
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

/// Deletes the job at `job_path` once done with it (best effort: it expires anyway). A job the
/// service no longer knows counts as deleted.
pub(super) async fn delete(
    t: &Transport,
    jobs: &JobRegistry,
    job_path: &str,
    stats: &RequestStats,
) -> bool {
    let job_id = job_path.rsplit('/').next().unwrap_or(job_path);
    let req = Request {
        method: Method::DELETE,
        path: job_path.to_string(),
        query: vec![],
        body: None,
        what: format!("deleting job {job_id}"),
        idempotent: true,
    };
    match t.send(&req, stats).await {
        Ok(_) | Err(GenesysError::Api { status: 404, .. }) => {
            jobs.remove(job_path);
            true
        }
        Err(e) => {
            tracing::debug!(%job_id, error = %e, "could not delete the job");
            false
        }
    }
}
