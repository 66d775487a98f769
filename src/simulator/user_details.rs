//! The simulated agents' presence and routing-status history (the user details endpoints),
//! consistent with the simulated conversations.
//!
//! Each agent of the pool works planned shifts (three overlapping groups, the night one across
//! midnight; days off and, for some agents, a 50-day leave when the pool is big enough that every
//! hour stays covered) with planned breaks. The conversations of a day are handed out to agents
//! on shift, longest idle first (the record's agent participants then carry that agent's user
//! id); an agent is INTERACTING from its first alert to the end of wrap-up of every conversation
//! it holds, presence ON_QUEUE meanwhile (a break due then waits for the interaction to end; a
//! shift ends late if it must). Between shifts an agent is OFFLINE (OFF_QUEUE), across midnight
//! and, on leave, for weeks; the last records are still open (no `endTime`).
//!
//! Everything is a pure function of the seed: a shift's records depend only on its plan and on
//! the conversations handed to it, so any interval's records are computed locally, the same in
//! every response.
//!
//! Agents are the organization's users ([`super::reference`]): agent `i` is user `i`.
//!
//! The API's user-details habits (`API.md`, "User details") are settings ([`UserDetailsBehaviour`]):
//! a record comes back from every interval it overlaps (whole, not clipped); a record can be stored
//! twice and the redundant copy removed from the page after paging (short pages that are not the
//! last); `totalHits` only gives the order of magnitude; paging counts status records, so one user
//! spans pages; no match answers `{"totalHits":0}`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use super::data::{DataConfig, Dataset};
use super::server::{self, Shared};
use crate::genesys::model::{
    PATH_USER_DETAILS_JOBS, PATH_USER_DETAILS_JOBS_AVAILABILITY, PATH_USER_DETAILS_QUERY,
};
use crate::interval::{day_start, format_millis, Interval};

/// The API's documented user-details habits, each a setting (`simulate` flags).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct UserDetailsBehaviour {
    /// A fixed user-details `dataAvailabilityDate` (RFC 3339) instead of now minus the lag.
    #[arg(long)]
    pub ud_availability_date: Option<DateTime<Utc>>,
    /// How far the user-details jobs' data lake lags behind now (its own date, not the
    /// conversations').
    #[arg(long, default_value_t = 7200)]
    pub ud_availability_lag_secs: u64,
    /// Share of records stored twice for an interval: the redundant copy is paged, then removed
    /// from its page, which comes back short without being the last.
    #[arg(long, default_value_t = 0.0)]
    pub ud_redundant_copies: f64,
    /// `totalHits` is the exact number of stored copies (default: only its order of magnitude,
    /// rounded down to one significant digit, as `API.md` says).
    #[arg(long)]
    pub ud_exact_total_hits: bool,
    /// A record is returned only for intervals touching its start or end day, not a middle day
    /// (the *unverified* reading of `API.md`); default: every interval it overlaps.
    #[arg(long)]
    pub ud_skip_middle_days: bool,
}

/// The presences agents take, with the organization's presence definition each record names
/// (`organizationPresenceId`, from [`super::reference::PRESENCES`]) and its label.
pub const PRESENCES: [(&str, &str, &str); 8] = [
    ("OFFLINE", REF[4].0, "Offline"),
    ("AVAILABLE", REF[0].0, "Available"),
    ("ON_QUEUE", REF[1].0, "On Queue"),
    ("AWAY", REF[2].0, "Away"),
    ("BUSY", REF[3].0, "Busy"),
    ("MEAL", REF[5].0, "Meal"),
    ("AWAY", REF[7].0, "Team meeting"),
    ("BUSY", REF[6].0, "Coaching"),
];
const REF: [(&str, &str, &str, &str, &str, bool); 9] = super::reference::PRESENCES;
const P_OFFLINE: u8 = 0;
const P_AVAILABLE: u8 = 1;
const P_ON_QUEUE: u8 = 2;
const P_BREAK: u8 = 3;
const P_BUSY: u8 = 4;
const P_MEAL: u8 = 5;
const P_MEETING: u8 = 6;
const P_TRAINING: u8 = 7;
const P_AWAY: u8 = 3;

pub const ROUTING: [&str; 4] = ["OFF_QUEUE", "IDLE", "INTERACTING", "NOT_RESPONDING"];
const R_OFF_QUEUE: u8 = 0;
const R_IDLE: u8 = 1;
const R_INTERACTING: u8 = 2;
const R_NOT_RESPONDING: u8 = 3;

const H: i64 = 3_600_000;
const M: i64 = 60_000;
/// How far back a shift is looked for (longer than any leave plus days off).
const LOOKBACK_DAYS: i64 = 62;

/// One status record of an agent: presence (`what` indexes [`PRESENCES`]) or routing status
/// (`what` indexes [`ROUTING`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusRecord {
    pub agent: u32,
    pub routing: bool,
    pub start_ms: i64,
    /// `None`: still open.
    pub end_ms: Option<i64>,
    pub what: u8,
}

impl StatusRecord {
    pub fn system_presence(&self) -> Option<&'static str> {
        (!self.routing).then(|| PRESENCES[self.what as usize].0)
    }
    pub fn organization_presence_id(&self) -> Option<&'static str> {
        (!self.routing).then(|| PRESENCES[self.what as usize].1)
    }
    pub fn routing_status(&self) -> Option<&'static str> {
        self.routing.then(|| ROUTING[self.what as usize])
    }
    fn overlaps(&self, s: i64, e: i64) -> bool {
        self.start_ms < e && self.end_ms.is_none_or(|x| x > s)
    }
}

/// Which agent handles which conversation of one start day, and each agent's busy spans by
/// the day of the shift that holds them.
#[derive(Debug, Default)]
pub struct DayAssign {
    by_conv: HashMap<u32, Vec<u32>>,
    busy: HashMap<(u32, NaiveDate), Vec<(i64, i64)>>,
}

impl DayAssign {
    /// The agents of a conversation's agent participants, in participant order.
    pub fn agents_of(&self, index: u32) -> &[u32] {
        self.by_conv.get(&index).map_or(&[], Vec::as_slice)
    }
}

#[derive(Debug, Clone)]
struct Shift {
    day: NaiveDate,
    login: i64,
    on_queue: i64,
    end: i64,
    /// (planned start, duration, presence), in order.
    breaks: Vec<(i64, i64, u8)>,
    /// Seed of the shift's own small random choices.
    seed: u64,
}

impl Shift {
    fn on_queue_at(&self, t: i64) -> bool {
        self.on_queue <= t
            && t < self.end
            && !self.breaks.iter().any(|&(b, d, _)| b <= t && t < b + d)
    }
    fn covers(&self, t: i64) -> bool {
        self.on_queue <= t && t < self.end
    }
}

fn seed_of(seed: u64, agent: u32, day: NaiveDate, stream: u64) -> u64 {
    let mut z = seed
        ^ 0x5EED_0FA6_E7E7
        ^ (day.to_epoch_days() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ u64::from(agent).wrapping_mul(0xBF58_476D_1CE4_E5B9)
        ^ stream.wrapping_mul(0x94D0_49BB_1331_11EB);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The planned shift of `agent` starting on `day`, if it works that day.
fn shift(cfg: &DataConfig, agent: u32, day: NaiveDate) -> Option<Shift> {
    if day > cfg.end_date || cfg.agents == 0 {
        return None;
    }
    let n = day.to_epoch_days() as i64;
    // Some agents take a 50-day leave; only agents whose shift group keeps others on duty.
    if agent >= 9 && agent % 10 == 9 && (n + i64::from(agent) * 7).rem_euclid(120) < 50 {
        return None;
    }
    // Two days off a week, staggered so that every group keeps five of seven on duty.
    if cfg.agents >= 21 && matches!((n + i64::from(agent / 3)).rem_euclid(7), 0 | 1) {
        return None;
    }
    let seed = seed_of(cfg.seed, agent, day, 1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let base = day_start(day).timestamp_millis();
    let start_hour = [6, 14, 21][agent as usize % 3];
    let login = base + start_hour * H + rng.random_range(-20 * M..20 * M);
    let on_queue = if rng.random_bool(0.5) {
        login + rng.random_range(M..5 * M)
    } else {
        login
    };
    let end = login + 10 * H + rng.random_range(-15 * M..15 * M);
    let mut jitter = || rng.random_range(-10 * M..10 * M);
    let first = if seed.is_multiple_of(2) {
        P_BREAK
    } else {
        P_BUSY
    };
    let mut breaks = vec![(on_queue + 2 * H + jitter(), 15 * M, first)];
    if seed % 10 == 3 {
        breaks.push((on_queue + 3 * H, 45 * M, P_TRAINING));
    }
    breaks.push((on_queue + 4 * H + 30 * M + jitter(), 30 * M, P_MEAL));
    if seed % 10 == 5 {
        breaks.push((on_queue + 5 * H + 45 * M, 5 * M, P_AWAY));
    }
    if seed % 10 == 7 {
        breaks.push((on_queue + 6 * H, 45 * M, P_MEETING));
    }
    breaks.push((on_queue + 7 * H + 30 * M + jitter(), 15 * M, P_BREAK));
    Some(Shift {
        day,
        login,
        on_queue,
        end,
        breaks,
        seed,
    })
}

impl Dataset {
    /// Which agents handle the conversations that start on `date` (cached).
    pub(super) fn assignment(&self, date: NaiveDate) -> Arc<DayAssign> {
        {
            let cache = self.assignments.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(a) = cache.get(&date) {
                return a.clone();
            }
        }
        let a = Arc::new(self.assign(date));
        let mut cache = self.assignments.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 64 {
            cache.clear();
        }
        cache.insert(date, a.clone());
        a
    }

    fn assign(&self, date: NaiveDate) -> DayAssign {
        let cfg = self.config();
        let mut out = DayAssign::default();
        if cfg.agents == 0 {
            return out;
        }
        let mut spans: Vec<(i64, i64, u32)> = Vec::new();
        for c in self.day(date).iter() {
            for (s, e) in self.agent_spans(c) {
                spans.push((s, e, c.index));
            }
        }
        // Stable: a conversation's agents keep their participant order.
        spans.sort_by_key(|&(s, _, i)| (s, i));
        let shifts: Vec<Vec<Shift>> = (0..cfg.agents)
            .map(|a| {
                (-1..=1)
                    .filter_map(|d| shift(cfg, a, date + Duration::days(d)))
                    .collect()
            })
            .collect();
        let mut free_at = vec![i64::MIN; cfg.agents as usize];
        for (s, e, index) in spans {
            // Longest idle among those on queue and free; else the first free of those on shift;
            // else (no one on shift: past the last planned day) whoever ended a shift last.
            let pick = |ok: &dyn Fn(u32, &Shift) -> bool| {
                (0..cfg.agents)
                    .filter_map(|a| {
                        shifts[a as usize]
                            .iter()
                            .find(|sh| ok(a, sh))
                            .map(|sh| (free_at[a as usize], a, sh.day))
                    })
                    .min()
            };
            let chosen = pick(&|a, sh| sh.on_queue_at(s) && free_at[a as usize] <= s)
                .or_else(|| pick(&|_, sh| sh.covers(s)))
                .map(|(_, a, d)| (a, d))
                .or_else(|| {
                    (0..cfg.agents)
                        .flat_map(|a| shifts[a as usize].iter().map(move |sh| (a, sh)))
                        .filter(|(_, sh)| sh.end <= s)
                        .max_by_key(|(a, sh)| (sh.end, std::cmp::Reverse(*a)))
                        .map(|(a, sh)| (a, sh.day))
                });
            let (agent, day) = chosen.unwrap_or((0, date));
            out.by_conv.entry(index).or_default().push(agent);
            out.busy.entry((agent, day)).or_default().push((s, e));
            let f = &mut free_at[agent as usize];
            *f = (*f).max(e);
        }
        out
    }

    /// The agent's busy blocks (merged spans) in the shift of `day`.
    fn busy_blocks(&self, agent: u32, day: NaiveDate) -> Vec<(i64, i64)> {
        let mut v: Vec<(i64, i64)> = (-1..=1)
            .flat_map(|d| {
                self.assignment(day + Duration::days(d))
                    .busy
                    .get(&(agent, day))
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        v.sort();
        let mut merged: Vec<(i64, i64)> = Vec::new();
        for (s, e) in v {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        merged
    }

    /// The records of one shift (from login to its actual end) as (start, end, what) pieces:
    /// presence and routing.
    #[allow(clippy::type_complexity)]
    fn shift_pieces(
        &self,
        agent: u32,
        sh: &Shift,
    ) -> (Vec<(i64, i64, u8)>, Vec<(i64, i64, u8)>, i64) {
        let busy = self.busy_blocks(agent, sh.day);
        let end = busy.iter().map(|b| b.1).fold(sh.end, i64::max);
        // Breaks wait for an interaction to end and are cut short by the next one.
        let mut breaks: Vec<(i64, i64, u8)> = Vec::new();
        let mut floor = sh.on_queue;
        for &(b, d, p) in &sh.breaks {
            let mut b0 = b.max(floor);
            for &(x, y) in &busy {
                if x <= b0 && b0 < y {
                    b0 = y;
                }
            }
            let mut b1 = b0 + d;
            if let Some(&(x, _)) = busy.iter().find(|&&(x, _)| x > b0 && x < b1) {
                b1 = x;
            }
            if b1 > end {
                b1 = end;
            }
            if b0 < b1 {
                breaks.push((b0, b1, p));
                floor = b1;
            }
        }
        let mut presence = Vec::new();
        if sh.on_queue > sh.login {
            presence.push((sh.login, sh.on_queue, P_AVAILABLE));
        }
        let mut t = sh.on_queue;
        for &(b0, b1, p) in &breaks {
            if b0 > t {
                presence.push((t, b0, P_ON_QUEUE));
            }
            presence.push((b0, b1, p));
            t = b1;
        }
        if end > t {
            presence.push((t, end, P_ON_QUEUE));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(sh.seed ^ 0x0207);
        let mut routing = Vec::new();
        for &(p0, p1, p) in &presence {
            if p != P_ON_QUEUE {
                routing.push((p0, p1, R_OFF_QUEUE));
                continue;
            }
            let mut t = p0;
            for &(x, y) in busy.iter().filter(|&&(x, _)| x >= p0 && x < p1) {
                idle(&mut routing, t, x, &mut rng);
                routing.push((x, y.min(p1), R_INTERACTING));
                t = y.min(p1);
            }
            idle(&mut routing, t, p1, &mut rng);
        }
        (presence, routing, end)
    }

    /// The agent's records that overlap `[from, to)`, as the service knows them at `now`
    /// (later records do not exist yet; records going on at `now` are open). Whole records,
    /// not clipped.
    pub fn agent_records(&self, agent: u32, from: i64, to: i64, now: i64) -> Vec<StatusRecord> {
        let cfg = self.config();
        let (Some(f), Some(t)) = (
            DateTime::from_timestamp_millis(from),
            DateTime::from_timestamp_millis(to - 1),
        ) else {
            return Vec::new();
        };
        let first = f.date_naive() - Duration::days(2);
        let last = t.date_naive();
        let mut shifts: Vec<Shift> = Vec::new();
        // The shift before the window, for the OFFLINE record leading into it.
        if let Some(prev) = (1..=LOOKBACK_DAYS)
            .map(|k| first - Duration::days(k))
            .find_map(|d| shift(cfg, agent, d))
        {
            shifts.push(prev);
        }
        let mut d = first;
        while d <= last {
            shifts.extend(shift(cfg, agent, d));
            d += Duration::days(1);
        }
        // The shift after, for the end of the last OFFLINE record.
        let next = (1..=LOOKBACK_DAYS)
            .map(|k| last + Duration::days(k))
            .find_map(|d| shift(cfg, agent, d));
        let mut presence: Vec<(i64, i64, u8)> = Vec::new();
        let mut routing: Vec<(i64, i64, u8)> = Vec::new();
        let mut offline_from = shifts
            .first()
            .map_or(day_start(first).timestamp_millis(), |s| s.login);
        for (i, sh) in shifts.iter().enumerate() {
            let (p, r, end) = self.shift_pieces(agent, sh);
            if i > 0 && sh.login > offline_from {
                presence.push((offline_from, sh.login, P_OFFLINE));
                routing.push((offline_from, sh.login, R_OFF_QUEUE));
            }
            presence.extend(p);
            routing.extend(r);
            offline_from = end;
        }
        let open_end = next.map_or(i64::MAX, |n| n.login);
        presence.push((offline_from, open_end, P_OFFLINE));
        routing.push((offline_from, open_end, R_OFF_QUEUE));
        let mut out = Vec::new();
        for (routing_kind, pieces) in [(false, presence), (true, routing)] {
            for (s, e, what) in merge(pieces) {
                if s >= now {
                    continue;
                }
                let r = StatusRecord {
                    agent,
                    routing: routing_kind,
                    start_ms: s,
                    end_ms: (e <= now).then_some(e),
                    what,
                };
                if r.overlaps(from, to) {
                    out.push(r);
                }
            }
        }
        out
    }

    /// Every agent's records overlapping `interval` at `now`, by agent, presence before
    /// routing, by start: the truth tests compare with.
    pub fn user_records(&self, interval: &Interval, now: DateTime<Utc>) -> Vec<StatusRecord> {
        let (s, e, n) = (
            interval.start.timestamp_millis(),
            interval.end.timestamp_millis(),
            now.timestamp_millis(),
        );
        (0..self.config().agents)
            .flat_map(|a| self.agent_records(a, s, e, n))
            .collect()
    }

    /// The records that start in `interval` (as known at `now`), each once.
    pub fn user_records_started_in(
        &self,
        interval: &Interval,
        now: DateTime<Utc>,
    ) -> Vec<StatusRecord> {
        let (s, e) = (
            interval.start.timestamp_millis(),
            interval.end.timestamp_millis(),
        );
        self.user_records(interval, now)
            .into_iter()
            .filter(|r| r.start_ms >= s && r.start_ms < e)
            .collect()
    }
}

/// IDLE over `[s, e)`, now and then broken by a short NOT_RESPONDING (an alert not answered).
fn idle(out: &mut Vec<(i64, i64, u8)>, s: i64, e: i64, rng: &mut ChaCha8Rng) {
    if e <= s {
        return;
    }
    if e - s > 3 * M && rng.random_bool(0.03) {
        let x = s + M;
        out.push((s, x, R_IDLE));
        out.push((x, x + 20_000, R_NOT_RESPONDING));
        out.push((x + 20_000, e, R_IDLE));
    } else {
        out.push((s, e, R_IDLE));
    }
}

/// Consecutive pieces with the same status become one record (they share the boundary).
fn merge(pieces: Vec<(i64, i64, u8)>) -> Vec<(i64, i64, u8)> {
    let mut out: Vec<(i64, i64, u8)> = Vec::new();
    for (s, e, w) in pieces {
        if e <= s {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.2 == w && last.1 == s => last.1 = e,
            _ => out.push((s, e, w)),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// One stored copy of a record in an interval's result set.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stored {
    rec: StatusRecord,
    /// A redundant copy: paged, then removed from its page.
    redundant: bool,
}

/// What an interval returns at `now`: the stored copies, by user, kind, start.
pub(super) fn listing(state: &server::State, interval: &Interval, now: i64) -> Vec<Stored> {
    let b = &state.cfg.user_details;
    let (s, e) = (
        interval.start.timestamp_millis(),
        interval.end.timestamp_millis(),
    );
    let first_day = interval.start.date_naive();
    let last_day = (interval.end - Duration::milliseconds(1)).date_naive();
    let now_day = DateTime::from_timestamp_millis(now).map(|t| t.date_naive());
    let mut ids: Vec<(String, u32)> = (0..state.data.config().agents)
        .map(|a| (state.data.agent_id(a), a))
        .collect();
    ids.sort();
    let mut out = Vec::new();
    for (_, a) in ids {
        for rec in state.data.agent_records(a, s, e, now) {
            if b.ud_skip_middle_days {
                let start_day =
                    DateTime::from_timestamp_millis(rec.start_ms).map(|t| t.date_naive());
                let end_day = match rec.end_ms {
                    Some(x) => DateTime::from_timestamp_millis(x - 1).map(|t| t.date_naive()),
                    None => now_day,
                };
                let touched =
                    |d: Option<NaiveDate>| d.is_some_and(|d| d >= first_day && d <= last_day);
                if !touched(start_day) && !touched(end_day) {
                    continue;
                }
            }
            out.push(Stored {
                rec,
                redundant: false,
            });
            if b.ud_redundant_copies > 0.0 {
                let mut rng = ChaCha8Rng::seed_from_u64(seed_of(
                    state.cfg.seed,
                    a,
                    NaiveDate::MIN,
                    rec.start_ms as u64 ^ u64::from(rec.routing),
                ));
                if rng.random_bool(b.ud_redundant_copies.clamp(0.0, 1.0)) {
                    out.push(Stored {
                        rec,
                        redundant: true,
                    });
                }
            }
        }
    }
    out
}

/// `totalHits` as the service gives it: exact, or its order of magnitude.
fn total_hits(state: &server::State, n: usize) -> u64 {
    let n = n as u64;
    if state.cfg.user_details.ud_exact_total_hits || n < 10 {
        return n;
    }
    let mag = 10u64.pow(n.ilog10());
    n / mag * mag
}

/// `userDetails` of a page: consecutive copies of a user become one `AnalyticsUserDetail`;
/// redundant copies are dropped. `None` when nothing is left.
fn user_details_json(state: &server::State, page: &[Stored]) -> Option<String> {
    let mut users: Vec<Value> = Vec::new();
    let mut cur: Option<(u32, Vec<Value>, Vec<Value>)> = None;
    let flush = |cur: &mut Option<(u32, Vec<Value>, Vec<Value>)>, users: &mut Vec<Value>| {
        if let Some((a, p, r)) = cur.take() {
            let mut u = json!({"userId": state.data.agent_id(a)});
            if !p.is_empty() {
                u["primaryPresence"] = Value::Array(p);
            }
            if !r.is_empty() {
                u["routingStatus"] = Value::Array(r);
            }
            users.push(u);
        }
    };
    for st in page.iter().filter(|s| !s.redundant) {
        let r = st.rec;
        if cur.as_ref().is_some_and(|c| c.0 != r.agent) {
            flush(&mut cur, &mut users);
        }
        let c = cur.get_or_insert_with(|| (r.agent, Vec::new(), Vec::new()));
        let mut v = json!({"startTime": fmt_ms(r.start_ms)});
        if let Some(e) = r.end_ms {
            v["endTime"] = json!(fmt_ms(e));
        }
        if r.routing {
            v["routingStatus"] = json!(ROUTING[r.what as usize]);
            c.2.push(v);
        } else {
            let (system, id, _) = PRESENCES[r.what as usize];
            v["systemPresence"] = json!(system);
            v["organizationPresenceId"] = json!(id);
            c.1.push(v);
        }
    }
    flush(&mut cur, &mut users);
    (!users.is_empty()).then(|| Value::Array(users).to_string())
}

fn fmt_ms(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(format_millis)
        .unwrap_or_default()
}

/// The user-details jobs' data lake watermark now.
fn availability(state: &server::State) -> DateTime<Utc> {
    let b = &state.cfg.user_details;
    b.ud_availability_date
        .unwrap_or_else(|| state.now() - Duration::seconds(b.ud_availability_lag_secs as i64))
}

const QUERY_FIELDS: &[&str] = &[
    "interval",
    "userFilters",
    "presenceFilters",
    "routingStatusFilters",
    "order",
    "presenceAggregations",
    "routingStatusAggregations",
    "paging",
];
const JOB_FIELDS: &[&str] = &[
    "interval",
    "userFilters",
    "presenceFilters",
    "routingStatusFilters",
    "order",
    "limit",
];

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route(PATH_USER_DETAILS_QUERY, post(query))
        .route(PATH_USER_DETAILS_JOBS, post(submit))
        .route(PATH_USER_DETAILS_JOBS_AVAILABILITY, get(job_availability))
        .route(
            &format!("{PATH_USER_DETAILS_JOBS}/{{id}}"),
            get(status).delete(delete),
        )
        .route(
            &format!("{PATH_USER_DETAILS_JOBS}/{{id}}/results"),
            get(results),
        )
}

async fn query(AxState(state): AxState<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = server::gate(&state, &headers, "ud_query").await {
        return r;
    }
    let map = match server::strict_body(&body, QUERY_FIELDS) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let filtered = ["userFilters", "presenceFilters", "routingStatusFilters"]
        .iter()
        .any(|k| map.contains_key(*k));
    let interval = match server::parse_interval_limited(&map, if filtered { 31 } else { 7 }) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let paging = map.get("paging").cloned().unwrap_or(json!({}));
    let size = paging.get("pageSize").and_then(Value::as_u64).unwrap_or(25);
    let number = paging
        .get("pageNumber")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    let max = u64::from(state.cfg.query_max_page_size);
    if size == 0 || size > max {
        return server::bad_request(&format!("Max page size is {max}"));
    }
    if number == 0 {
        return server::bad_request("pageNumber must be at least 1");
    }
    if number * size > state.cfg.query_window {
        return server::bad_request(&format!(
            "Pagination may not exceed {} results.",
            state.cfg.query_window
        ));
    }
    let desc = map.get("order").and_then(Value::as_str) == Some("desc");
    let all = server::ud_query_listing(&state, &interval, |iv| {
        listing(&state, iv, state.now().timestamp_millis())
    });
    let from = ((number - 1) * size) as usize;
    let to = (from + size as usize).min(all.len());
    let page: Vec<Stored> = match all.get(from..to) {
        Some(_) if desc => {
            // Descending: the same pages counted from the end.
            let (a, b) = (all.len() - to, all.len() - from);
            all[a..b].iter().rev().copied().collect()
        }
        Some(p) => p.to_vec(),
        None => Vec::new(),
    };
    let total = total_hits(&state, all.len());
    let body = match user_details_json(&state, &page) {
        Some(u) => format!("{{\"userDetails\":{u},\"totalHits\":{total}}}"),
        None => format!("{{\"totalHits\":{total}}}"),
    };
    server::json_response(StatusCode::OK, body)
}

async fn submit(AxState(state): AxState<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = server::gate(&state, &headers, "ud_jobs_submit").await {
        return r;
    }
    let map = match server::strict_body(&body, JOB_FIELDS) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let interval = match server::parse_interval_limited(&map, 366) {
        Ok(i) => i,
        Err(r) => return r,
    };
    match server::create_job(&state, interval, false, true, availability(&state)) {
        Ok((id, _)) => {
            server::json_response(StatusCode::ACCEPTED, json!({"jobId": id}).to_string())
        }
        Err(r) => r,
    }
}

async fn status(
    AxState(state): AxState<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    server::job_status_of(&state, &headers, &id, true, "ud_jobs_status").await
}

async fn delete(
    AxState(state): AxState<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    server::delete_job_of(&state, &headers, &id, true, "ud_jobs_delete").await
}

async fn job_availability(AxState(state): AxState<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = server::gate(&state, &headers, "ud_jobs_availability").await {
        return r;
    }
    server::json_response(
        StatusCode::OK,
        json!({"dataAvailabilityDate": format_millis(availability(&state))}).to_string(),
    )
}

async fn results(
    AxState(state): AxState<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = server::gate(&state, &headers, "ud_jobs_results").await {
        return r;
    }
    let size: u64 = match q.get("pageSize").map(|s| s.parse::<u64>()) {
        None => 1000,
        Some(Ok(n)) if n >= 1 => n,
        Some(_) => return server::bad_request("pageSize must be a positive integer"),
    };
    if size > u64::from(state.cfg.job_page_size_max) {
        return server::bad_request(&format!("Max page size is {}", state.cfg.job_page_size_max));
    }
    let offset: u64 = match q.get("cursor") {
        None => 0,
        Some(c) => match base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(c)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.strip_prefix("ud:").and_then(|n| n.parse().ok()))
        {
            Some(n) => n,
            None => return server::bad_request("Invalid cursor"),
        },
    };
    let (all, lake) =
        match server::ud_job_results(&state, &id, q.contains_key("cursor"), |iv, lake| {
            listing(&state, iv, lake.timestamp_millis())
        }) {
            Ok(v) => v,
            Err(r) => return r,
        };
    let from = (offset as usize).min(all.len());
    let to = (from + size as usize).min(all.len());
    if to as u64 > state.cfg.job_window {
        return server::bad_request(&format!(
            "pagination may not exceed {} results",
            state.cfg.job_window
        ));
    }
    let mut body = String::from("{");
    if let Some(u) = user_details_json(&state, &all[from..to]) {
        body.push_str(&format!("\"userDetails\":{u},"));
    }
    if to < all.len() {
        let cursor = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("ud:{to}"));
        body.push_str(&format!("\"cursor\":\"{cursor}\","));
    }
    body.push_str(&format!(
        "\"dataAvailabilityDate\":\"{}\"}}",
        format_millis(lake)
    ));
    server::json_response(StatusCode::OK, body)
}
