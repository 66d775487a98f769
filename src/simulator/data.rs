//! The simulated contact centre's conversations: deterministic from (seed, day, index),
//! generated on demand, never held whole in memory.
//!
//! Each day has `per_day` conversations. A cheap per-day index (start, end, id) answers which
//! conversations an interval holds; the full record JSON is generated from its own seeded RNG
//! stream when a page needs it, so the same conversation is byte-identical in every response.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::reference::{division_of_queue, user_for, LANGUAGES, QUEUES, SKILLS, WRAPUPS};
use crate::interval::{day_start, format_millis, Interval};

/// What decides the data.
#[derive(Debug, Clone)]
pub struct DataConfig {
    pub seed: u64,
    pub per_day: u32,
    /// The last simulated day (inclusive).
    pub end_date: NaiveDate,
    /// Share of records carrying a field the schema does not know.
    pub unknown_field: f64,
    /// Share of records carrying enum values the SDK does not know.
    pub unknown_enum: f64,
    /// Share of records that are structurally odd (see [`ODD_MARKER`]).
    pub odd_records: f64,
    /// Share of conversations starting in the same millisecond as the one before them.
    pub ties: f64,
    /// Agents who handle the conversations (their user ids are the agent participants' and
    /// their presence and routing-status history is consistent with them); 0: a fresh random
    /// user id per agent participant and no user details.
    pub agents: u32,
}

/// Text inside every structurally odd record's odd parts, so tests can check that errors,
/// logs and summaries never echo record values.
pub const ODD_MARKER: &str = "ODD-VALUE caller +1 555 0100";

/// One conversation in a day's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvRef {
    pub date: NaiveDate,
    pub index: u32,
    pub start_ms: i64,
    pub end_ms: i64,
    pub id: u128,
}

impl ConvRef {
    pub fn id_string(&self) -> String {
        uuid::Uuid::from_u128(self.id).to_string()
    }
}

/// The simulated data set.
pub struct Dataset {
    cfg: DataConfig,
    days: Mutex<HashMap<NaiveDate, Arc<Vec<ConvRef>>>>,
    /// Which agent handles which conversation, by the conversations' start day.
    pub(super) assignments: Mutex<HashMap<NaiveDate, Arc<super::user_details::DayAssign>>>,
}

/// Conversations can last this long at most (so a query looks this far back for ones still
/// active in its interval).
const MAX_DURATION_MS: i64 = 30 * 3_600_000;

fn mix(seed: u64, date: NaiveDate, index: u32, stream: u64) -> u64 {
    // SplitMix64 over the inputs: independent, portable RNG seeds.
    let mut z = seed
        ^ (date.to_epoch_days() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ u64::from(index).wrapping_mul(0xBF58_476D_1CE4_E5B9)
        ^ stream.wrapping_mul(0x94D0_49BB_1331_11EB);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Dataset {
    pub fn new(cfg: DataConfig) -> Self {
        Self {
            cfg,
            days: Mutex::new(HashMap::new()),
            assignments: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &DataConfig {
        &self.cfg
    }

    /// The day's conversations, ordered by start.
    pub fn day(&self, date: NaiveDate) -> Arc<Vec<ConvRef>> {
        if date > self.cfg.end_date {
            return Arc::new(Vec::new());
        }
        let mut days = self.days.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = days.get(&date) {
            return d.clone();
        }
        if days.len() > 64 {
            days.clear();
        }
        let base = day_start(date).timestamp_millis();
        let mut v: Vec<ConvRef> = (0..self.cfg.per_day)
            .map(|index| {
                let mut rng = ChaCha8Rng::seed_from_u64(mix(self.cfg.seed, date, index, 0));
                let start_ms = base + diurnal_offset_ms(&mut rng);
                let big = rng.random_bool(0.005);
                let dur = if big {
                    rng.random_range(3_600_000..8 * 3_600_000)
                } else {
                    // Mostly minutes; a tail of long ones (emails waiting in a queue).
                    let minutes: f64 = rng.random_range(0.3f64..1.0).powi(3) * 60.0;
                    (minutes * 60_000.0) as i64 + rng.random_range(20_000..120_000)
                };
                ConvRef {
                    date,
                    index,
                    start_ms,
                    end_ms: start_ms + dur.min(MAX_DURATION_MS),
                    id: rng.random::<u128>() & !(0xF << 76) | (0x4 << 76),
                }
            })
            .collect();
        v.sort_by_key(|c| (c.start_ms, c.id));
        if self.cfg.ties > 0.0 {
            // Its own RNG stream, so the rest of the data is the same with or without ties.
            let mut rng = ChaCha8Rng::seed_from_u64(mix(self.cfg.seed, date, u32::MAX, 2));
            for i in 1..v.len() {
                if rng.random_bool(self.cfg.ties.clamp(0.0, 1.0)) {
                    let dur = v[i].end_ms - v[i].start_ms;
                    v[i].start_ms = v[i - 1].start_ms;
                    v[i].end_ms = v[i].start_ms + dur;
                }
            }
            v.sort_by_key(|c| (c.start_ms, c.id));
        }
        let v = Arc::new(v);
        days.insert(date, v.clone());
        v
    }

    /// The conversations whose start is in `interval`: the truth tests compare against.
    pub fn conversation_ids_started_in(&self, interval: &Interval) -> Vec<String> {
        self.started_in(interval)
            .into_iter()
            .map(|c| c.id_string())
            .collect()
    }

    pub fn started_in(&self, interval: &Interval) -> Vec<ConvRef> {
        let (s, e) = (
            interval.start.timestamp_millis(),
            interval.end.timestamp_millis(),
        );
        interval
            .dates()
            .into_iter()
            .flat_map(|d| self.day(d).iter().copied().collect::<Vec<_>>())
            .filter(|c| c.start_ms >= s && c.start_ms < e)
            .collect()
    }

    /// Conversations with activity in the interval (start before its end, end after its
    /// start; in-progress ones are active until `now`), ordered by start.
    pub fn active_in(&self, interval: &Interval, now: DateTime<Utc>) -> Vec<ConvRef> {
        let (s, e) = (
            interval.start.timestamp_millis(),
            interval.end.timestamp_millis(),
        );
        let now = now.timestamp_millis();
        let first = (interval.start - Duration::milliseconds(MAX_DURATION_MS)).date_naive();
        let mut out = Vec::new();
        let mut d = first;
        while d <= interval.end.date_naive() {
            for c in self.day(d).iter() {
                if c.start_ms > now {
                    continue;
                }
                let end = c.end_ms.min(now);
                if c.start_ms < e && (end >= s || c.end_ms > now) {
                    out.push(*c);
                }
            }
            d += Duration::days(1);
        }
        out.sort_by_key(|c| (c.start_ms, c.id));
        out
    }

    /// One record as JSON. `with_attributes`: job results carry participant attributes, the
    /// synchronous query's records don't. A conversation not over at `now` has no end.
    pub fn record(&self, c: &ConvRef, with_attributes: bool, now: DateTime<Utc>) -> String {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(self.cfg.seed, c.date, c.index, 1));
        let agent_ids = match self.cfg.agents {
            0 => Vec::new(),
            _ => self
                .assignment(c.date)
                .agents_of(c.index)
                .iter()
                .map(|&a| self.agent_id(a))
                .collect(),
        };
        let mut g = Gen {
            rng: &mut rng,
            out: String::with_capacity(8192),
            now_ms: now.timestamp_millis(),
            with_attributes,
            unknown_enum: false,
            agent_ids,
            agent_spans: Vec::new(),
        };
        let unknown_field = g.rng.random_bool(self.cfg.unknown_field.clamp(0.0, 1.0));
        g.unknown_enum = g.rng.random_bool(self.cfg.unknown_enum.clamp(0.0, 1.0));
        g.conversation(c, unknown_field);
        match self.odd_parts_of(c) {
            true => make_odd(&g.out).0,
            false => g.out,
        }
    }

    /// Whether the conversation's record is structurally odd (its own RNG stream, so the
    /// setting changes no other record).
    fn odd_parts_of(&self, c: &ConvRef) -> bool {
        self.cfg.odd_records > 0.0
            && ChaCha8Rng::seed_from_u64(mix(self.cfg.seed, c.date, c.index, 7))
                .random_bool(self.cfg.odd_records.clamp(0.0, 1.0))
    }

    /// How many structurally odd values the conversation's record carries (each lands in the
    /// `extra` of the row holding it and counts as one type mismatch).
    pub fn odd_parts(&self, c: &ConvRef, with_attributes: bool, now: DateTime<Utc>) -> u64 {
        if !self.odd_parts_of(c) {
            return 0;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(mix(self.cfg.seed, c.date, c.index, 1));
        let mut g = Gen {
            rng: &mut rng,
            out: String::with_capacity(8192),
            now_ms: now.timestamp_millis(),
            with_attributes,
            unknown_enum: false,
            agent_ids: Vec::new(),
            agent_spans: Vec::new(),
        };
        let unknown_field = g.rng.random_bool(self.cfg.unknown_field.clamp(0.0, 1.0));
        g.unknown_enum = g.rng.random_bool(self.cfg.unknown_enum.clamp(0.0, 1.0));
        g.conversation(c, unknown_field);
        make_odd(&g.out).1
    }

    /// The agent participants' spans (first alert to end of wrap-up) of a conversation, in
    /// participant order, as if it had ended: what the agent assignment works from. The same
    /// random stream as [`Dataset::record`], so the spans are the record's.
    pub(super) fn agent_spans(&self, c: &ConvRef) -> Vec<(i64, i64)> {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(self.cfg.seed, c.date, c.index, 1));
        let mut g = Gen {
            rng: &mut rng,
            out: String::with_capacity(8192),
            now_ms: i64::MAX,
            with_attributes: false,
            unknown_enum: false,
            agent_ids: Vec::new(),
            agent_spans: Vec::new(),
        };
        let unknown_field = g.rng.random_bool(self.cfg.unknown_field.clamp(0.0, 1.0));
        g.unknown_enum = g.rng.random_bool(self.cfg.unknown_enum.clamp(0.0, 1.0));
        g.conversation(c, unknown_field);
        g.agent_spans
    }

    /// The user id of agent `i` of the pool: user `i` of the organization's users
    /// ([`super::reference`]; past their count, ids no listing knows).
    pub fn agent_id(&self, i: u32) -> String {
        super::reference::user_id(i as usize)
    }

    /// The agents' user ids, in pool order.
    pub fn agent_ids(&self) -> Vec<String> {
        (0..self.cfg.agents).map(|i| self.agent_id(i)).collect()
    }

    /// Writes pages (`{"conversations":[…],"totalHits":N}`, one a line) of the conversations
    /// started in `interval`: input for `convert` and the benchmarks. `with_attributes`: the
    /// records as async jobs return them (participant attributes, which the sync query
    /// leaves out; real conversations are 6–7 KB with them).
    pub fn write_ndjson_pages(
        &self,
        interval: &Interval,
        page_size: usize,
        with_attributes: bool,
        mut w: impl Write,
    ) -> std::io::Result<u64> {
        let all = self.started_in(interval);
        let now = Utc::now();
        let mut bytes = 0u64;
        for chunk in all.chunks(page_size.max(1)) {
            let mut line = String::from("{\"conversations\":[");
            for (i, c) in chunk.iter().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                line.push_str(&self.record(c, with_attributes, now));
            }
            let _ = writeln!(line, "],\"totalHits\":{}}}", all.len());
            w.write_all(line.as_bytes())?;
            bytes += line.len() as u64;
        }
        Ok(bytes)
    }
}

/// Makes a record structurally odd the ways `API.md` allows a record to be: a `null` element
/// in a list (`participants`), a string where a list belongs (a session's `metrics`), a list
/// where an object belongs (a session's `flow`), an object where a list belongs (the second
/// participant's `sessions`). Returns the record and how many odd values it carries.
fn make_odd(record: &str) -> (String, u64) {
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(record) else {
        return (record.to_string(), 0);
    };
    let mut parts = 0;
    if let Some(ps) = v.get_mut("participants").and_then(|p| p.as_array_mut()) {
        if let Some(s0) = ps
            .first_mut()
            .and_then(|p| p.get_mut("sessions"))
            .and_then(|s| s.get_mut(0))
            .and_then(|s| s.as_object_mut())
        {
            s0.insert("metrics".into(), ODD_MARKER.into());
            let flow = s0
                .remove("flow")
                .unwrap_or_else(|| serde_json::json!({ "flowName": ODD_MARKER }));
            s0.insert("flow".into(), serde_json::json!([flow]));
            parts += 2;
        }
        if let Some(sessions) = ps.get_mut(1).and_then(|p| p.get_mut("sessions")) {
            if let Some(first) = sessions.get(0).cloned() {
                *sessions = first;
                parts += 1;
            }
        }
        ps.push(serde_json::Value::Null);
        parts += 1;
    }
    (v.to_string(), parts)
}

/// Start offset within the day: busy 08:00–18:00 UTC, quiet at night.
fn diurnal_offset_ms(rng: &mut ChaCha8Rng) -> i64 {
    const WEIGHTS: [u32; 24] = [
        1, 1, 1, 1, 1, 2, 4, 7, 10, 12, 12, 11, 10, 11, 12, 12, 11, 9, 7, 5, 4, 3, 2, 2,
    ];
    let total: u32 = WEIGHTS.iter().sum();
    let mut pick = rng.random_range(0..total);
    let mut hour = 0;
    for (h, w) in WEIGHTS.iter().enumerate() {
        if pick < *w {
            hour = h;
            break;
        }
        pick -= w;
    }
    hour as i64 * 3_600_000 + rng.random_range(0..3_600_000)
}

const NAMES: [&str; 10] = [
    "José Müller",
    "王秀英",
    "Zoë Ørsted",
    "Aoife Ní Bhriain",
    "Mohammed Al-Farsi",
    "Łukasz Wiśniewski",
    "Priya Raghunathan",
    "Émilie Dubois",
    "Sam Taylor",
    "Иван Петров",
];

/// A tiny JSON object writer: fields are written only when set (the API omits unset fields).
struct Obj<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Obj<'a> {
    fn open(out: &'a mut String) -> Self {
        out.push('{');
        Obj { out, first: true }
    }
    fn key(&mut self, k: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.out.push('"');
        self.out.push_str(k);
        self.out.push_str("\":");
    }
    fn str(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k);
        // serde_json escapes exactly as JSON requires (names may hold any character).
        let _ = serde_json::to_writer(json_sink(self.out), v);
        self
    }
    fn int(&mut self, k: &str, v: i64) -> &mut Self {
        self.key(k);
        let _ = write!(self.out, "{v}");
        self
    }
    fn float(&mut self, k: &str, v: f64) -> &mut Self {
        self.key(k);
        let _ = write!(self.out, "{v:.2}");
        self
    }
    fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        self.key(k);
        self.out.push_str(if v { "true" } else { "false" });
        self
    }
    fn time(&mut self, k: &str, ms: i64) -> &mut Self {
        self.key(k);
        self.out.push('"');
        self.out.push_str(&fmt_ms(ms));
        self.out.push('"');
        self
    }
    fn strs(&mut self, k: &str, v: &[&str]) -> &mut Self {
        self.key(k);
        let _ = serde_json::to_writer(json_sink(self.out), v);
        self
    }
    fn ints(&mut self, k: &str, v: &[i64]) -> &mut Self {
        self.key(k);
        let _ = serde_json::to_writer(json_sink(self.out), v);
        self
    }
    fn raw(&mut self, k: &str, json: &str) -> &mut Self {
        self.key(k);
        self.out.push_str(json);
        self
    }
    /// Starts a list value; the caller writes elements and calls `end_list`.
    fn list(&mut self, k: &str) -> &mut String {
        self.key(k);
        self.out.push('[');
        self.out
    }
    fn close(self) {
        self.out.push('}');
    }
}

/// Lets serde_json write JSON text straight into the record's String.
fn json_sink(s: &mut String) -> StringWriter<'_> {
    StringWriter(s)
}

struct StringWriter<'a>(&'a mut String);

impl std::io::Write for StringWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // serde_json only writes whole UTF-8 sequences of a valid &str or ASCII.
        match std::str::from_utf8(buf) {
            Ok(s) => {
                self.0.push_str(s);
                Ok(buf.len())
            }
            Err(e) => Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn fmt_ms(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(format_millis)
        .unwrap_or_default()
}

fn uuid(rng: &mut ChaCha8Rng) -> String {
    uuid::Uuid::from_u128(rng.random::<u128>() & !(0xF << 76) | (0x4 << 76)).to_string()
}

struct Gen<'r> {
    rng: &'r mut ChaCha8Rng,
    out: String,
    now_ms: i64,
    with_attributes: bool,
    unknown_enum: bool,
    /// User ids of the agent participants, in order (empty: random ones).
    agent_ids: Vec<String>,
    /// The agent participants' spans, in order, as generated.
    agent_spans: Vec<(i64, i64)>,
}

/// A session's timeline while it is being generated.
struct Seg {
    kind: &'static str,
    start: i64,
    end: i64,
    queue: Option<&'static str>,
    disconnect: Option<&'static str>,
    wrapup: bool,
}

impl Gen<'_> {
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.random_range(0..items.len())]
    }

    fn conversation(&mut self, c: &ConvRef, unknown_field: bool) {
        let media = {
            let r: f64 = self.rng.random();
            match r {
                r if r < 0.50 => "voice",
                r if r < 0.58 => "callback",
                r if r < 0.73 => "chat",
                r if r < 0.85 => "email",
                _ => "message",
            }
        };
        let ended = c.end_ms <= self.now_ms;
        let end = c.end_ms.min(self.now_ms);
        let big = c.end_ms - c.start_ms >= 3_600_000 && self.rng.random_bool(0.5);
        let queue = self.pick(&QUEUES);
        let inbound = self.rng.random_bool(0.85);
        let mut out = std::mem::take(&mut self.out);
        let mut o = Obj::open(&mut out);
        o.str("conversationId", &c.id_string())
            .time("conversationStart", c.start_ms);
        if ended {
            o.time("conversationEnd", c.end_ms);
        }
        o.str(
            "originatingDirection",
            if inbound { "inbound" } else { "outbound" },
        )
        .strs("divisionIds", &[division_of_queue(queue.0)])
        .str(
            "conversationInitiator",
            if inbound { "customer" } else { "agent" },
        )
        .bool("customerParticipation", true);
        if media == "voice" {
            o.float(
                "mediaStatsMinConversationMos",
                self.rng.random_range(2.5..4.5),
            )
            .float(
                "mediaStatsMinConversationRFactor",
                self.rng.random_range(60.0..93.0),
            );
        }
        if self.rng.random_bool(0.05) {
            o.str(
                "externalTag",
                &format!("crm-{}", self.rng.random_range(10_000..99_999)),
            );
        }
        if unknown_field {
            o.raw("sentimentScore2027", "{\"v\":1,\"label\":\"positive\"}");
        }
        // Participants.
        let agents = if big {
            self.rng.random_range(12..40)
        } else if self.rng.random_bool(0.12) {
            2
        } else {
            1
        };
        let list = o.list("participants");
        let mut first = true;
        let mut sep = |s: &mut String| {
            if !first {
                s.push(',');
            }
            first = false;
        };
        let span = (end - c.start_ms).max(10_000);
        let ivr_end = c.start_ms + span / 8;
        let acd_end = ivr_end + span / 8;
        // Customer.
        sep(list);
        self.participant(
            list, "customer", None, media, c.start_ms, end, ended, queue, inbound,
        );
        if matches!(media, "voice" | "callback") {
            sep(list);
            self.participant(
                list, "ivr", None, media, c.start_ms, ivr_end, true, queue, inbound,
            );
        }
        sep(list);
        self.participant(
            list, "acd", None, media, ivr_end, acd_end, true, queue, inbound,
        );
        let slice = ((end - acd_end) / i64::from(agents)).max(1000);
        for a in 0..agents {
            let s = acd_end + slice * i64::from(a);
            let e = if a + 1 == agents { end } else { s + slice };
            let name = self.pick(&NAMES);
            self.agent_spans.push((s, e));
            sep(list);
            self.participant(
                list,
                "agent",
                Some(name),
                media,
                s,
                e,
                ended || a + 1 < agents,
                queue,
                inbound,
            );
        }
        list.push(']');
        if self.rng.random_bool(0.05) {
            let list = o.list("evaluations");
            let mut e = Obj::open(list);
            e.str("evaluationId", &uuid(self.rng))
                .str("evaluatorId", &user_for(self.rng.random()))
                .str("userId", &user_for(self.rng.random()))
                .str("formId", &uuid(self.rng))
                .str("formName", "Voice QA 2026")
                .str("queueId", queue.0)
                .str("evaluationStatus", "Finished")
                .time("eventTime", end)
                .int("oTotalScore", self.rng.random_range(40..100))
                .int("oTotalCriticalScore", self.rng.random_range(60..100))
                .bool("released", true)
                .bool("rescored", false)
                .bool("deleted", false);
            e.close();
            list.push(']');
        }
        if self.rng.random_bool(0.03) {
            let list = o.list("surveys");
            let mut s = Obj::open(list);
            s.str("surveyId", &uuid(self.rng))
                .str("surveyFormId", &uuid(self.rng))
                .str("surveyFormName", "Post-call NPS")
                .str("surveyStatus", "Finished")
                .str("surveyType", "Web")
                .int("surveyPromoterScore", self.rng.random_range(0..11))
                .int("oSurveyTotalScore", self.rng.random_range(0..100))
                .bool("surveyPartialResponse", false)
                .time("surveyCompletedDate", end + 600_000)
                .time("eventTime", end + 600_000)
                .str("queueId", queue.0);
            s.close();
            list.push(']');
        }
        if ended && self.rng.random_bool(0.04) {
            let list = o.list("resolutions");
            let mut r = Obj::open(list);
            r.str("queueId", queue.0)
                .str("userId", &user_for(self.rng.random()))
                .time("eventTime", end)
                .int("nNextContactAvoided", 1);
            r.close();
            list.push(']');
        }
        o.close();
        self.out = out;
    }

    #[allow(clippy::too_many_arguments)]
    fn participant(
        &mut self,
        out: &mut String,
        purpose: &str,
        name: Option<&str>,
        media: &str,
        start: i64,
        end: i64,
        ended: bool,
        queue: (&'static str, &'static str),
        inbound: bool,
    ) {
        let mut p = Obj::open(out);
        p.str("participantId", &uuid(self.rng));
        match purpose {
            "customer" => {
                p.str("participantName", "Customer")
                    .str("purpose", if inbound { "customer" } else { "external" });
            }
            "ivr" => {
                p.str("participantName", "Main IVR").str("purpose", "ivr");
            }
            "acd" => {
                p.str("participantName", queue.1).str("purpose", "acd");
            }
            _ => {
                // Drawn either way: the rest of the record stays the same with or without a pool.
                let drawn = user_for(self.rng.random());
                let n = self.agent_spans.len().saturating_sub(1);
                let user = self.agent_ids.get(n).cloned().unwrap_or(drawn);
                p.str("participantName", name.unwrap_or("Agent"))
                    .str("purpose", "agent")
                    .str("userId", &user);
            }
        }
        if self.with_attributes && purpose == "customer" {
            // What Architect flows and integrations typically leave on the customer: a dozen
            // or two of ids, menu choices and flags (real records run 6–7 KB with them).
            let tier = self.pick(&["gold", "silver", "bronze"]);
            let attrs = serde_json::json!({
                "customer.tier": tier,
                "ivr.language": self.pick(&["en-US", "de-DE", "es-ES"]),
                "crm.account": format!("ACC-{}", self.rng.random_range(100_000..999_999)),
                "crm.contactId": uuid(self.rng),
                "crm.caseNumber": format!("CS-{:08}", self.rng.random_range(0..10_000_000)),
                "ivr.menuPath": self.pick(&[
                    "main>billing>payment",
                    "main>support>technical",
                    "main>sales>new-contract",
                    "main>operator",
                ]),
                "ivr.intent": self.pick(&["billing", "support", "sales", "cancel", "other"]),
                "ivr.authenticated": self.pick(&["true", "false"]),
                "ivr.retries": self.rng.random_range(0..4).to_string(),
                "survey.optIn": self.pick(&["true", "false"]),
                "web.sessionId": uuid(self.rng),
                "marketing.campaign": self.pick(&["none", "spring-renewal", "winback-q3"]),
                "callback.reason": self.pick(&["", "missed-call", "scheduled"]),
                "scriptId": "5b8b2e1c-9f47-4c1e-9a53-3c0c0f3c1d2a",
                "crm.segment": self.pick(&["consumer", "business", "vip"]),
                "crm.orderId": format!("ORD-{:010}", self.rng.random_range(0..1_000_000_000)),
                "ivr.selfService": self.pick(&["completed", "abandoned", "transferred"]),
                "ivr.lastNode": format!("node-{}", self.rng.random_range(1..60)),
                "routing.reason": self.pick(&["overflow", "preferred-agent", "skills"]),
                "ai.summaryId": uuid(self.rng),
            });
            p.raw("attributes", &attrs.to_string());
        }
        let list = p.list("sessions");
        self.session(list, purpose, media, start, end, ended, queue, inbound);
        list.push(']');
        p.close();
    }

    #[allow(clippy::too_many_arguments)]
    fn session(
        &mut self,
        out: &mut String,
        purpose: &str,
        media: &str,
        start: i64,
        end: i64,
        ended: bool,
        queue: (&'static str, &'static str),
        inbound: bool,
    ) {
        let media_type = if self.unknown_enum && purpose == "customer" {
            "hologram"
        } else {
            media
        };
        let mut s = Obj::open(out);
        s.str("sessionId", &uuid(self.rng))
            .str("mediaType", media_type)
            .str("direction", if inbound { "inbound" } else { "outbound" });
        match media {
            "voice" | "callback" => {
                let ani = format!("tel:+1317555{:04}", self.rng.random_range(0..10_000));
                s.str("ani", &ani)
                    .str("dnis", "tel:+18005550100")
                    .str("sessionDnis", "tel:+18005550100")
                    .str("edgeId", "e1f2a3b4-5555-4666-8777-888899990000")
                    .str("protocolCallId", &uuid(self.rng))
                    .str("provider", "Edge")
                    .bool("recording", purpose == "agent");
                if media == "callback" {
                    s.strs("callbackNumbers", &["tel:+13175550123"])
                        .str("callbackUserName", "Customer")
                        .time("callbackScheduledTime", start + 600_000)
                        .bool("skipEnabled", true)
                        .int("timeoutSeconds", 30);
                }
            }
            "email" => {
                s.str("addressFrom", "customer@example.com")
                    .str("addressTo", "support@example.org")
                    .strs("cc", &["team@example.org"]);
            }
            _ => {
                s.str("addressFrom", "customer-handle")
                    .str("addressTo", "brand-handle");
                if media == "message" {
                    s.str(
                        "messageType",
                        self.pick(&["sms", "whatsapp", "webmessaging"]),
                    );
                }
            }
        }
        if purpose == "acd" {
            s.strs("requestedRoutings", &["Standard"])
                .str("usedRouting", "Standard")
                .int("routingRing", 1);
            if self.rng.random_bool(0.3) {
                let list = s.list("proposedAgents");
                for i in 0..2 {
                    if i > 0 {
                        list.push(',');
                    }
                    let mut a = Obj::open(list);
                    a.str("proposedAgentId", &user_for(self.rng.random()))
                        .int("agentRank", i + 1);
                    a.close();
                }
                list.push(']');
            }
            let list = s.list("agentGroups");
            let mut g = Obj::open(list);
            g.str("agentGroupId", &uuid(self.rng))
                .str("agentGroupType", "SkillGroup");
            g.close();
            list.push(']');
        }
        if purpose == "ivr" {
            let mut flow = String::new();
            let mut f = Obj::open(&mut flow);
            f.str("flowId", "3c1d0e5f-aaaa-4bbb-8ccc-ddddeeeeffff")
                .str("flowName", "Main Menü")
                .str("flowType", "INBOUNDCALL")
                .str("flowVersion", "42.0")
                .str("entryType", "dnis")
                .str("entryReason", "tel:+18005550100")
                .str("exitReason", "TRANSFER")
                .str("transferType", "ACD")
                .str("transferTargetName", queue.1)
                .str("transferTargetAddress", queue.0)
                .str("startingLanguage", "en-us")
                .str("endingLanguage", "en-us")
                .bool("issuedCallback", false);
            let outcomes = f.list("outcomes");
            let mut oc = Obj::open(outcomes);
            oc.str("flowOutcomeId", "9d8c7b6a-1234-4567-89ab-cdef01234567")
                .str(
                    "flowOutcome",
                    "9d8c7b6a-1234-4567-89ab-cdef01234567=Identified",
                )
                .str("flowOutcomeValue", "SUCCESS")
                .time("flowOutcomeStartTimestamp", start + 1000)
                .time("flowOutcomeEndTimestamp", start + 20_000);
            oc.close();
            outcomes.push(']');
            f.close();
            s.raw("flow", &flow);
        }
        // Segments.
        let segs = self.segments(purpose, start, end, ended, queue.0);
        let mut talk = 0;
        let mut held = 0;
        let mut alert = 0;
        let mut acw = 0;
        {
            let list = s.list("segments");
            for (i, g) in segs.iter().enumerate() {
                if i > 0 {
                    list.push(',');
                }
                let mut so = Obj::open(list);
                let kind = if self.unknown_enum && i == 0 && purpose == "agent" {
                    "teleporting"
                } else {
                    g.kind
                };
                so.time("segmentStart", g.start);
                if g.end > 0 {
                    so.time("segmentEnd", g.end);
                }
                so.str("segmentType", kind);
                if let Some(q) = g.queue {
                    so.str("queueId", q);
                }
                if let Some(d) = g.disconnect {
                    so.str("disconnectType", d);
                }
                if g.wrapup {
                    let code = self.pick(&WRAPUPS).0;
                    so.str("wrapUpCode", code);
                    if self.rng.random_bool(0.3) {
                        so.str("wrapUpNote", "Kunde zufrieden – follow-up by email ✉");
                    }
                }
                if g.kind == "interact" && media == "voice" {
                    so.bool("conference", false);
                }
                if g.kind == "interact" && purpose == "acd" && self.rng.random_bool(0.2) {
                    so.strs("requestedRoutingSkillIds", &[SKILLS[0].0])
                        .str("requestedLanguageId", LANGUAGES[0].0);
                    let list = so.list("scoredAgents");
                    let mut a = Obj::open(list);
                    a.str("scoredAgentId", &user_for(self.rng.random()))
                        .int("agentScore", self.rng.random_range(1..100));
                    a.close();
                    list.push(']');
                }
                if g.kind == "interact" && purpose == "ivr" {
                    let list = so.list("properties");
                    let mut p = Obj::open(list);
                    p.str("property", "language")
                        .str("propertyType", "string")
                        .str("value", "en-us");
                    p.close();
                    list.push(']');
                }
                if g.disconnect.is_some() && media == "voice" && purpose == "customer" {
                    so.ints("sipResponseCodes", &[200])
                        .ints("q850ResponseCodes", &[16]);
                }
                so.close();
                let d = if g.end > 0 { g.end - g.start } else { 0 };
                match g.kind {
                    "interact" => talk += d,
                    "hold" => held += d,
                    "alert" => alert += d,
                    "wrapup" => acw += d,
                    _ => {}
                }
            }
            list.push(']');
        }
        // Metrics.
        if ended || purpose != "customer" {
            let emit = segs.last().map(|g| g.end.max(g.start)).unwrap_or(end);
            let mut metrics: Vec<(&str, i64)> = Vec::new();
            match purpose {
                "agent" => {
                    metrics.push(("tAlert", alert.max(1)));
                    metrics.push(("tAnswered", alert.max(1)));
                    metrics.push(("tTalk", talk));
                    metrics.push(("tTalkComplete", talk));
                    if held > 0 {
                        metrics.push(("nHeld", 1));
                        metrics.push(("tHeld", held));
                        metrics.push(("tHeldComplete", held));
                    }
                    if acw > 0 {
                        metrics.push(("tAcw", acw));
                    }
                    metrics.push(("tHandle", talk + held + acw));
                    metrics.push(("nConnected", 1));
                }
                "acd" => {
                    metrics.push(("nOffered", 1));
                    metrics.push(("tAcd", end - start));
                    if self.rng.random_bool(0.06) {
                        metrics.push(("tAbandon", end - start));
                    }
                    if self.rng.random_bool(0.1) {
                        metrics.push(("nTransferred", 1));
                    }
                }
                "ivr" => metrics.push(("tIvr", end - start)),
                _ => {
                    metrics.push(("nConnected", 1));
                    metrics.push(("tWait", (end - start) / 4));
                }
            }
            let list = s.list("metrics");
            for (i, (name, value)) in metrics.iter().enumerate() {
                if i > 0 {
                    list.push(',');
                }
                let mut m = Obj::open(list);
                m.str("name", name)
                    .int("value", *value)
                    .time("emitDate", emit);
                m.close();
            }
            list.push(']');
        }
        if media == "voice" && matches!(purpose, "customer" | "agent") {
            let list = s.list("mediaEndpointStats");
            let mut m = Obj::open(list);
            m.strs("codecs", &["opus"])
                .float("minMos", self.rng.random_range(2.5..4.6))
                .float("minRFactor", self.rng.random_range(55.0..93.0))
                .int("maxLatencyMs", self.rng.random_range(20..400))
                .int("receivedPackets", self.rng.random_range(1000..90_000))
                .int("invalidPackets", self.rng.random_range(0..3))
                .int("discardedPackets", self.rng.random_range(0..40))
                .int("duplicatePackets", 0)
                .int("overrunPackets", 0)
                .int("underrunPackets", self.rng.random_range(0..10))
                .time("eventTime", end);
            m.close();
            list.push(']');
        }
        s.close();
    }

    fn segments(
        &mut self,
        purpose: &str,
        start: i64,
        end: i64,
        ended: bool,
        queue: &'static str,
    ) -> Vec<Seg> {
        let seg = |kind, start, end, queue, disconnect, wrapup| Seg {
            kind,
            start,
            end,
            queue,
            disconnect,
            wrapup,
        };
        let last_end = if ended { end } else { 0 };
        match purpose {
            "agent" => {
                let alert_end = (start + self.rng.random_range(2_000..15_000)).min(end);
                let acw_start = end - (end - alert_end) / 6;
                let mut v = vec![seg("alert", start, alert_end, Some(queue), None, false)];
                if self.rng.random_bool(0.2) && acw_start - alert_end > 30_000 {
                    let mid = alert_end + (acw_start - alert_end) / 2;
                    let hold_end = mid + (acw_start - mid) / 4;
                    v.push(seg("interact", alert_end, mid, Some(queue), None, false));
                    v.push(seg("hold", mid, hold_end, Some(queue), None, false));
                    v.push(seg(
                        "interact",
                        hold_end,
                        acw_start,
                        Some(queue),
                        Some("client"),
                        false,
                    ));
                } else {
                    v.push(seg(
                        "interact",
                        alert_end,
                        acw_start,
                        Some(queue),
                        Some("client"),
                        false,
                    ));
                }
                v.push(seg("wrapup", acw_start, last_end, Some(queue), None, true));
                v
            }
            "acd" => vec![seg(
                "interact",
                start,
                end,
                Some(queue),
                Some("transfer"),
                false,
            )],
            "ivr" => vec![
                seg("system", start, start + 500, None, None, false),
                seg("interact", start + 500, end, None, Some("transfer"), false),
            ],
            _ => vec![
                seg("system", start, start + 300, None, None, false),
                seg(
                    "interact",
                    start + 300,
                    last_end,
                    None,
                    ended.then_some("peer"),
                    false,
                ),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(per_day: u32) -> Dataset {
        Dataset::new(DataConfig {
            seed: 7,
            per_day,
            end_date: "2026-10-20".parse().expect("date"),
            unknown_field: 0.0,
            unknown_enum: 0.0,
            odd_records: 0.0,
            ties: 0.0,
            agents: 0,
        })
    }

    #[test]
    fn odd_records_are_a_setting_that_changes_only_them() {
        let plain = ds(200);
        let odd = Dataset::new(DataConfig {
            odd_records: 0.2,
            ..plain.config().clone()
        });
        let now = Utc::now();
        let day = plain.day("2026-10-19".parse().expect("date"));
        let (mut n_odd, mut parts) = (0, 0);
        for c in day.iter() {
            let (a, b) = (plain.record(c, true, now), odd.record(c, true, now));
            let k = odd.odd_parts(c, true, now);
            if k == 0 {
                assert_eq!(a, b);
                continue;
            }
            n_odd += 1;
            parts += k;
            let v: serde_json::Value = serde_json::from_str(&b).expect("valid JSON");
            assert_eq!(v["conversationId"], c.id_string());
            let ps = v["participants"].as_array().expect("a list");
            assert!(ps.last().expect("last").is_null());
            assert_eq!(ps[0]["sessions"][0]["metrics"], ODD_MARKER);
            assert!(ps[0]["sessions"][0]["flow"].is_array());
        }
        assert!((20..60).contains(&n_odd), "{n_odd} odd records of 200");
        assert!(parts >= 3 * n_odd, "{parts}");
    }

    #[test]
    fn records_are_deterministic_valid_json_of_realistic_size() {
        let a = ds(300);
        let b = ds(300);
        let day = a.day("2026-10-19".parse().expect("date"));
        assert_eq!(day.len(), 300);
        let now = Utc::now();
        let mut total = 0;
        for c in day.iter() {
            let r = a.record(c, true, now);
            assert_eq!(r, b.record(c, true, now));
            let v: serde_json::Value = serde_json::from_str(&r).expect("valid JSON");
            assert_eq!(v["conversationId"], c.id_string());
            total += r.len();
        }
        let avg = total / 300;
        assert!((3000..12_000).contains(&avg), "average record size {avg}");
        let other = Dataset::new(DataConfig {
            seed: 8,
            ..a.config().clone()
        });
        assert_ne!(other.day(day[0].date)[0].id, day[0].id);
    }

    #[test]
    fn days_after_the_end_date_are_empty_and_active_includes_earlier_starts() {
        let d = ds(200);
        assert!(d.day("2026-10-21".parse().expect("date")).is_empty());
        let day: NaiveDate = "2026-10-20".parse().expect("date");
        let iv = Interval::day(day);
        let started = d.started_in(&iv);
        let active = d.active_in(&iv, Utc::now());
        assert!(
            active.len() > started.len(),
            "conversations crossing midnight"
        );
        assert!(started.iter().all(|c| active.contains(c)));
    }
}
