//! The recent path: the synchronous details query, page-numbered (`pageSize` ≤ 100), ordered by
//! conversationStart. An interval holding more than the paging window is split into halves
//! (recursively) before paging, or when the service refuses to page deeper.

use std::sync::Arc;

use futures::stream::BoxStream;
use reqwest::Method;

use super::http::{Request, RequestStats, Transport};
use super::model::{ConversationQuery, PagingSpec, PATH_DETAILS_QUERY};
use super::{ClientConfig, GenesysError};
use crate::interval::Interval;
use crate::page::{Page, PageOrigin};

/// The request body of one page (pinned by tests against API.md).
pub(super) fn query_body(iv: &Interval, page_size: u32, page_number: u32) -> ConversationQuery {
    ConversationQuery {
        interval: iv.to_genesys(),
        order: Some("asc".into()),
        order_by: Some("conversationStart".into()),
        paging: Some(PagingSpec {
            page_size,
            page_number,
        }),
        ..Default::default()
    }
}

pub(super) fn query_pages(
    t: Arc<Transport>,
    cfg: Arc<ClientConfig>,
    interval: Interval,
    stats: Arc<RequestStats>,
) -> BoxStream<'static, Result<Page, GenesysError>> {
    Box::pin(async_stream::try_stream! {
        let size = cfg.query_page_size.clamp(1, 100);
        let mut pending = vec![interval];
        while let Some(iv) = pending.pop() {
            let mut n = 1u32;
            loop {
                let body = serde_json::to_vec(&query_body(&iv, size, n)).map_err(|e| GenesysError::Decode {
                    what: "details query".into(),
                    reason: e.to_string(),
                })?;
                let req = Request {
                    method: Method::POST,
                    path: PATH_DETAILS_QUERY.to_string(),
                    query: vec![],
                    body: Some(body),
                    what: format!("details query {iv} page {n}"),
                };
                let mut split = false;
                match t.send(&req, &stats).await {
                    Err(GenesysError::Api { status: 400, message, .. })
                        if message.to_ascii_lowercase().contains("pagination may not exceed") =>
                    {
                        split = true;
                    }
                    Err(e) => Err(e)?,
                    Ok(resp) => {
                        let page = Page::parse(resp, PageOrigin::new(format!("query {iv} page {n}")))?;
                        let total = page.meta.total_hits.unwrap_or(0).max(0) as u64;
                        if n == 1 && total > cfg.query_window {
                            split = true;
                        } else {
                            // The last page is short or empty, or reaches totalHits (API.md).
                            let last = page.received < size as usize
                                || u64::from(n) * u64::from(size) >= total;
                            stats.page();
                            yield page;
                            if last {
                                break;
                            }
                            n += 1;
                        }
                    }
                }
                if split {
                    let halves = iv.split_into(2);
                    if halves.len() < 2 || iv.duration() <= cfg.min_split {
                        Err(GenesysError::TooDense {
                            interval: iv.to_genesys(),
                            window: cfg.query_window,
                            minutes: iv.duration().num_minutes(),
                        })?;
                    }
                    tracing::info!(interval = %iv, "more conversations than the query may page through: splitting");
                    pending.extend(halves.into_iter().rev());
                    break;
                }
            }
        }
    })
}
