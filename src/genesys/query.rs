//! The recent path: the synchronous details query, page-numbered (`pageSize` ≤ 100), ordered by
//! conversationStart. An interval holding more than the paging window is split into halves
//! (recursively) before paging, or when the service refuses to page deeper.
//!
//! Page numbers are not a snapshot: the sort key (`conversationStart`) is not unique, and
//! conversations that start in the same millisecond may come back in a different order on each
//! request, so one of them can appear on two pages and its partner on none. So each
//! (sub-)interval is checked: the distinct conversations it returned (before our own
//! `conversationStart` filter) must be at least the smallest `totalHits` seen while paging it
//! (on a live interval the total only grows). A shortfall is repaired by asking again for the
//! pages on both sides of each boundary inside a run of equal start times, then by splitting
//! the interval; if it stays, the interval fails with the number missing.

use std::collections::HashSet;
use std::sync::Arc;

use futures::stream::BoxStream;
use reqwest::Method;

use super::http::{Request, RequestStats, Transport};
use super::model::{ConversationQuery, PagingSpec, PATH_DETAILS_QUERY};
use super::{id_key, ClientConfig, GenesysError};
use crate::datasets::conversations::DATASET as CONVERSATIONS;
use crate::interval::Interval;
use crate::page::{record_key, Page, PageError, PageOrigin};

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

/// What one page request gave.
enum Fetched {
    Page(Page),
    /// The service refuses to page this deep.
    TooDeep,
}

async fn fetch(
    t: &Transport,
    stats: &RequestStats,
    iv: &Interval,
    size: u32,
    n: u32,
    repair: bool,
) -> Result<Fetched, GenesysError> {
    let body = serde_json::to_vec(&query_body(iv, size, n)).map_err(|e| GenesysError::Decode {
        what: "details query".into(),
        reason: e.to_string(),
    })?;
    let req = Request {
        method: Method::POST,
        path: PATH_DETAILS_QUERY.to_string(),
        query: vec![],
        body: Some(body),
        what: format!("details query {iv} page {n}"),
        idempotent: true,
    };
    if repair {
        stats.repair();
    }
    match t.send(&req, stats).await {
        Err(GenesysError::Api {
            status: 400,
            message,
            ..
        }) if message
            .to_ascii_lowercase()
            .contains("pagination may not exceed") =>
        {
            Ok(Fetched::TooDeep)
        }
        Err(e) => Err(e),
        Ok(resp) => {
            let origin = PageOrigin::new(format!("query {iv} page {n}"));
            Ok(Fetched::Page(Page::parse(
                resp,
                origin,
                CONVERSATIONS.envelope,
            )?))
        }
    }
}

/// What paging one interval saw, for the completeness check.
#[derive(Default)]
struct Tally {
    /// Distinct conversation ids returned (before any filter).
    ids: HashSet<u128>,
    /// The smallest `totalHits` seen.
    min_total: Option<u64>,
    /// Start time (ms) of the last record of each page, by page number (1-based).
    firsts: Vec<Option<i64>>,
    lasts: Vec<Option<i64>>,
}

impl Tally {
    /// Counts a page; returns how many ids were new.
    fn add(&mut self, page: &Page, n: u32) -> Result<usize, GenesysError> {
        if let Some(t) = page.meta.total_hits {
            let t = t.max(0) as u64;
            self.min_total = Some(self.min_total.map_or(t, |m| m.min(t)));
        }
        let mut new = 0;
        let (mut first, mut last) = (None, None);
        for (i, rec) in page.records().enumerate() {
            let key =
                record_key(rec, &CONVERSATIONS.record).map_err(|reason| PageError::BadRecord {
                    origin: page.origin.clone(),
                    index: i,
                    reason,
                })?;
            let ms = key.start().timestamp_millis();
            first.get_or_insert(ms);
            last = Some(ms);
            if self.ids.insert(id_key(&key.id)) {
                new += 1;
            }
        }
        let i = n as usize - 1;
        if self.firsts.len() <= i {
            self.firsts.resize(i + 1, None);
            self.lasts.resize(i + 1, None);
        }
        self.firsts[i] = first;
        self.lasts[i] = last;
        Ok(new)
    }

    /// Conversations the service said it holds but did not return.
    fn missing(&self) -> u64 {
        self.min_total
            .map_or(0, |t| t.saturating_sub(self.ids.len() as u64))
    }

    /// Pages (1-based) on either side of a boundary inside a run of equal start times: where
    /// an unstable order of ties can lose a conversation.
    fn tie_pages(&self) -> Vec<u32> {
        let mut pages = Vec::new();
        for k in 1..self.lasts.len() {
            if self.lasts[k - 1].is_some() && self.lasts[k - 1] == self.firsts[k] {
                for p in [k as u32, k as u32 + 1] {
                    if pages.last() != Some(&p) {
                        pages.push(p);
                    }
                }
            }
        }
        pages
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
        // (interval, whether it is a repair split of a short interval)
        let mut pending = vec![(interval, false)];
        while let Some((iv, repairing)) = pending.pop() {
            let mut tally = Tally::default();
            let mut n = 1u32;
            let mut split = false;
            loop {
                match fetch(&t, &stats, &iv, size, n, repairing).await? {
                    Fetched::TooDeep => {
                        split = true;
                        break;
                    }
                    Fetched::Page(page) => {
                        let total = page.meta.total_hits.map(|t| t.max(0) as u64);
                        if n == 1 && total.is_some_and(|t| t > cfg.query_window) {
                            split = true;
                            break;
                        }
                        tally.add(&page, n)?;
                        // The last page is short or empty, or reaches totalHits (API.md);
                        // without totalHits only a short or empty page ends the paging.
                        let last = page.received < size as usize
                            || total.is_some_and(|t| u64::from(n) * u64::from(size) >= t);
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
                pending.extend(halves.into_iter().map(|h| (h, repairing)).rev());
                continue;
            }
            // Ask again for the pages around tied boundaries, in a new order each time, until
            // nothing is missing (or, without totalHits, until a round brings nothing new).
            let ties = tally.tie_pages();
            let mut round = 0;
            while !ties.is_empty()
                && round < cfg.query_repair_rounds
                && (tally.missing() > 0 || tally.min_total.is_none())
            {
                round += 1;
                let mut new = 0;
                for &p in &ties {
                    if let Fetched::Page(page) = fetch(&t, &stats, &iv, size, p, true).await? {
                        new += tally.add(&page, p)?;
                        stats.page();
                        yield page;
                    }
                }
                if tally.min_total.is_none() && new == 0 {
                    break;
                }
            }
            let missing = tally.missing();
            if missing > 0 {
                let halves = iv.split_into(2);
                if halves.len() < 2 || iv.duration() <= cfg.min_split {
                    Err(GenesysError::Shortfall {
                        interval: iv.to_genesys(),
                        total_hits: tally.min_total.unwrap_or(0),
                        returned: tally.ids.len() as u64,
                    })?;
                }
                tracing::warn!(interval = %iv, missing, "the query returned fewer conversations than totalHits: asking again in halves");
                pending.extend(halves.into_iter().map(|h| (h, true)).rev());
            }
        }
    })
}
