//! One page of a dataset's records, as it travels from a source (the Genesys API or saved
//! files) to the converter.
//!
//! A [`Page`] keeps the response body byte for byte (so it can be archived and converted again
//! later) plus the byte ranges of the records that survived filtering. The records are the
//! list under the dataset's envelope key ([`crate::datasets::Dataset::envelope`]). Nothing here
//! builds a `serde_json::Value` tree: the envelope is split by skipping each record with the
//! [`crate::json`] reader.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::datasets::RecordSpec;
use crate::json::{self, Reader};

/// Where a page came from, for error messages and logs ("job 4f2… page 7", "file x.ndjson line 3").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageOrigin(pub Arc<str>);

impl PageOrigin {
    pub fn new(s: impl Into<String>) -> Self {
        Self(Arc::from(s.into()))
    }
}

impl fmt::Display for PageOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A page or record that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("{origin}: not UTF-8 at byte {valid_up_to}")]
    NotUtf8 {
        origin: PageOrigin,
        valid_up_to: usize,
    },
    /// The message names where (line, column) or which key, never the value found there.
    #[error("{origin}: malformed page JSON: {detail}")]
    Malformed { origin: PageOrigin, detail: String },
    #[error("{origin}: record {index}: {reason}")]
    BadRecord {
        origin: PageOrigin,
        index: usize,
        reason: String,
    },
}

/// Paging facts a page's envelope carries (all optional: which ones depends on the endpoint).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PageMeta {
    /// Async job results: the cursor of the next page; absent on the last page.
    pub cursor: Option<String>,
    /// Synchronous query: the total number of matching records.
    pub total_hits: Option<i64>,
    /// Async job results: the data lake's availability date.
    pub data_availability_date: Option<DateTime<Utc>>,
    /// Pages of the `_raw/` archive: what the page's extraction covered, and when.
    pub archive: Option<ArchiveStamp>,
    /// For a dataset with several root tables: the root table whose rows these records are
    /// (its name); `None`: the dataset's first.
    pub root: Option<&'static str>,
}

/// What an archived page records about its extraction (`"_archive"` in the page object, beside
/// the API's own keys): every conversation that started in `interval` was extracted, at
/// `extracted_at`, in the pages of that run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveStamp {
    pub interval: crate::interval::Interval,
    pub extracted_at: DateTime<Utc>,
}

impl ArchiveStamp {
    /// The key of the stamp in an archived page object.
    pub const KEY: &'static str = "_archive";

    /// The stamp as the JSON object stored under [`ArchiveStamp::KEY`].
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "interval": self.interval.to_genesys(),
            "extractedAt": crate::interval::format_millis(self.extracted_at),
        })
        .to_string()
    }
}

#[derive(Deserialize)]
struct RawStamp<'a> {
    interval: &'a str,
    #[serde(rename = "extractedAt")]
    extracted_at: &'a str,
}

impl RawStamp<'_> {
    fn parse(&self) -> Option<ArchiveStamp> {
        Some(ArchiveStamp {
            interval: self.interval.parse().ok()?,
            extracted_at: crate::interval::parse_time(self.extracted_at).ok()?,
        })
    }
}

/// One page of records.
#[derive(Clone)]
pub struct Page {
    body: Bytes,
    records: Vec<Range<usize>>,
    /// The number of records the page held before any filtering.
    pub received: usize,
    pub meta: PageMeta,
    pub origin: PageOrigin,
}

impl fmt::Debug for Page {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Page")
            .field("origin", &self.origin)
            .field("bytes", &self.body.len())
            .field("records", &self.records.len())
            .field("meta", &self.meta)
            .finish()
    }
}

/// The page object: the records under the envelope key (absent on an empty sync page), the
/// paging keys, and our archive stamp; other keys are ignored.
#[derive(Default)]
struct Envelope<'a> {
    /// The byte ranges of the records in the page's text.
    records: Option<Vec<Range<usize>>>,
    cursor: Option<String>,
    total_hits: Option<i64>,
    data_availability_date: Option<&'a str>,
    archive: Option<RawStamp<'a>>,
}

/// Why a page object could not be read.
enum EnvelopeError {
    /// Not JSON: what and where.
    Syntax(json::SyntaxError),
    /// JSON, but a key of the wrong shape (named, never quoted).
    Shape(String),
}

impl From<json::SyntaxError> for EnvelopeError {
    fn from(e: json::SyntaxError) -> Self {
        EnvelopeError::Syntax(e)
    }
}

impl<'a> Envelope<'a> {
    /// Reads the page object whose record list is under `key`, its list with `list`; the
    /// message says what and where, never a value.
    fn read(text: &'a str, key: &str, list: &mut ListReader<'_>) -> Result<Self, String> {
        Self::read_inner(text, key, list).map_err(|e| match e {
            EnvelopeError::Syntax(e) => e.describe(text),
            EnvelopeError::Shape(s) => s,
        })
    }

    /// The paging keys are read by serde from their text.
    fn read_inner(
        text: &'a str,
        key: &str,
        list: &mut ListReader<'_>,
    ) -> Result<Self, EnvelopeError> {
        let mut r = Reader::new(text);
        if r.peek()? != b'{' {
            r.skip()?;
            return Err(EnvelopeError::Shape(format!(
                "the page is not a JSON object (records under `{key}`)"
            )));
        }
        let mut env = Envelope::default();
        r.open();
        let mut first = true;
        while let Some(k) = r.key(&mut first)? {
            if k == key {
                env.records = list(&mut r)?;
                continue;
            }
            let raw = r.skip()?;
            let shape = |what: &str| EnvelopeError::Shape(format!("$.{k} is not {what}"));
            match k.as_ref() {
                "cursor" => {
                    env.cursor = serde_json::from_str(raw).map_err(|_| shape("a string"))?
                }
                "totalHits" => {
                    env.total_hits = serde_json::from_str(raw).map_err(|_| shape("an integer"))?
                }
                "dataAvailabilityDate" => {
                    env.data_availability_date =
                        serde_json::from_str(raw).map_err(|_| shape("a string"))?
                }
                ArchiveStamp::KEY => {
                    env.archive =
                        serde_json::from_str(raw).map_err(|_| shape("an object of two strings"))?
                }
                _ => {}
            }
        }
        r.end()?;
        Ok(env)
    }
}

/// Reads a page's list of records at its start (`[` or `null`): the byte ranges of the records
/// it keeps.
type ListReader<'f> = dyn FnMut(&mut Reader<'_>) -> json::Result<Option<Vec<Range<usize>>>> + 'f;

/// A list of records (or `null`): the byte range of each. The records are only skipped
/// (checked as JSON; the converter reads each in full).
fn records(r: &mut Reader<'_>) -> json::Result<Option<Vec<Range<usize>>>> {
    records_each(r, &mut |_, _| Ok(Take::Keep))
}

/// A list of records (or `null`), handing each to `each` (its index and start), which says
/// what to do with it ([`Take`]); `Err(())`: `each` stopped the read (the error then says only
/// that, where).
fn records_each(
    r: &mut Reader<'_>,
    each: &mut dyn FnMut(usize, usize) -> Result<Take, ()>,
) -> json::Result<Option<Vec<Range<usize>>>> {
    if r.peek()? == b'n' {
        r.literal()?;
        return Ok(None);
    }
    if r.peek()? != b'[' {
        // Not a list: reported as a value of the wrong type, where it starts.
        return Err(json::SyntaxError {
            what: "expected a list of records",
            at: r.pos(),
        });
    }
    r.open();
    let mut first = true;
    let mut out = Vec::new();
    let mut index = 0;
    while r.element(&mut first)? {
        let start = {
            r.peek()?;
            r.pos()
        };
        let i = index;
        index += 1;
        match each(i, start) {
            Ok(Take::Read(end)) => r.reset(end),
            Ok(Take::Keep) => {
                r.skip()?;
            }
            Ok(Take::Drop) => {
                r.skip()?;
                continue;
            }
            Err(()) => {
                return Err(json::SyntaxError {
                    what: STOPPED,
                    at: start,
                })
            }
        }
        out.push(start..r.pos());
    }
    Ok(Some(out))
}

/// A record handler of [`Page::parse_each`]: given the page's text, a record's index and its
/// start, what it did with the record or wants done with it; `Err(())` stops the read.
pub type EachRecord<'f> = dyn FnMut(&str, usize, usize) -> Result<Take, ()> + 'f;

/// What a record handler of [`Page::parse_each`] did with a record, or wants done with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// It read the record, which ends at this byte; the page keeps it.
    Read(usize),
    /// Skip it (checked as JSON); the page keeps it.
    Keep,
    /// Skip it (checked as JSON); the page drops it.
    Drop,
}

/// The [`json::SyntaxError`] text of a read that a record handler stopped.
const STOPPED: &str = "stopped by the record handler";

impl Page {
    /// Splits an API response body (`{"<envelope>": [...], ...}`, e.g. `{"conversations":
    /// [...]}`) into records.
    pub fn parse(body: Bytes, origin: PageOrigin, envelope: &str) -> Result<Page, PageError> {
        Self::parse_inner(body, origin, envelope, false, None)
    }

    /// Like [`Page::parse`], but also accepts a bare JSON array of records (how users save
    /// records by hand).
    pub fn parse_page_or_list(
        body: Bytes,
        origin: PageOrigin,
        envelope: &str,
    ) -> Result<Page, PageError> {
        Self::parse_inner(body, origin, envelope, true, None)
    }

    /// Like [`Page::parse_page_or_list`] (`allow_list`) or [`Page::parse`], but hands each
    /// record to `each` as the page is read, with the page's text, the record's index and its
    /// start, to read it there or have it skipped ([`Take`]); `Err(())` stops the read (the
    /// caller keeps why: the page's error then says only where). One pass over the page where
    /// splitting it first and reading each record after took two: for `convert`, splitting
    /// was a tenth of its CPU.
    pub fn parse_each(
        body: Bytes,
        origin: PageOrigin,
        envelope: &str,
        allow_list: bool,
        each: &mut EachRecord<'_>,
    ) -> Result<Page, PageError> {
        Self::parse_inner(body, origin, envelope, allow_list, Some(each))
    }

    fn parse_inner(
        body: Bytes,
        origin: PageOrigin,
        envelope: &str,
        allow_list: bool,
        each: Option<&mut EachRecord<'_>>,
    ) -> Result<Page, PageError> {
        let text = utf8(&body, &origin)?;
        let malformed = |detail| PageError::Malformed {
            origin: origin.clone(),
            detail,
        };
        // Records in the list before any was dropped.
        let received = std::cell::Cell::new(0);
        let mut list: Box<ListReader<'_>> = match each {
            None => Box::new(|r: &mut Reader<'_>| {
                let list = records(r)?;
                received.set(list.as_ref().map_or(0, Vec::len));
                Ok(list)
            }),
            Some(each) => Box::new(|r: &mut Reader<'_>| {
                records_each(r, &mut |i, start| {
                    received.set(i + 1);
                    each(text, i, start)
                })
            }),
        };
        let (records, meta) = if allow_list && text.trim_start().starts_with('[') {
            let mut r = Reader::new(text);
            let records = list(&mut r)
                .and_then(|list| r.end().map(|()| list))
                .map_err(|e| malformed(e.describe(text)))?;
            (records.unwrap_or_default(), PageMeta::default())
        } else {
            let env = Envelope::read(text, envelope, &mut *list).map_err(malformed)?;
            let data_availability_date = match env.data_availability_date {
                None => None,
                Some(s) => Some(
                    DateTime::parse_from_rfc3339(s)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|e| PageError::BadRecord {
                            origin: origin.clone(),
                            index: 0,
                            reason: format!("dataAvailabilityDate is not an RFC 3339 time: {e}"),
                        })?,
                ),
            };
            let archive = match &env.archive {
                None => None,
                Some(raw) => Some(raw.parse().ok_or_else(|| PageError::BadRecord {
                    origin: origin.clone(),
                    index: 0,
                    reason: format!(
                        "{}: not an interval (start/end, RFC 3339) and an extraction time",
                        ArchiveStamp::KEY
                    ),
                })?),
            };
            (
                env.records.unwrap_or_default(),
                PageMeta {
                    cursor: env.cursor,
                    total_hits: env.total_hits,
                    data_availability_date,
                    archive,
                    root: None,
                },
            )
        };
        drop(list);
        Ok(Page {
            received: received.get(),
            body,
            records,
            meta,
            origin,
        })
    }

    /// A page split before: the same body, `records` the byte ranges its records had then.
    /// No JSON is parsed; the body must be UTF-8 and each range lie on character boundaries
    /// within it (the converter parses each record in full, and refuses what is not JSON).
    pub fn from_ranges(
        body: Bytes,
        records: Vec<Range<usize>>,
        origin: PageOrigin,
    ) -> Result<Page, PageError> {
        let text = utf8(&body, &origin)?;
        let off = |r: &Range<usize>| {
            r.start > r.end || !text.is_char_boundary(r.start) || !text.is_char_boundary(r.end)
        };
        if let Some(index) = records.iter().position(off) {
            return Err(PageError::BadRecord {
                origin,
                index,
                reason: "not where an earlier read of this page found it".into(),
            });
        }
        Ok(Page {
            received: records.len(),
            body,
            records,
            meta: PageMeta::default(),
            origin,
        })
    }

    /// The byte ranges of the kept records in [`Page::body`].
    pub fn record_ranges(&self) -> &[Range<usize>] {
        &self.records
    }

    /// The body exactly as received.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The number of records kept.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The JSON text of the kept record `i`.
    pub fn record(&self, i: usize) -> &str {
        record_text(&self.body, &self.records[i])
    }

    /// The JSON texts of the kept records, in page order.
    pub fn records(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.records.len()).map(move |i| self.record(i))
    }

    /// Keeps the records for which `keep(index, text)` returns `Ok(true)`.
    pub fn try_retain<E>(
        &mut self,
        mut keep: impl FnMut(usize, &str) -> Result<bool, E>,
    ) -> Result<(), E> {
        let body = self.body.clone();
        let mut out = Vec::with_capacity(self.records.len());
        for (i, r) in self.records.drain(..).enumerate() {
            if keep(i, record_text(&body, &r))? {
                out.push(r);
            }
        }
        self.records = out;
        Ok(())
    }
}

/// The text of a record of `body`: `range` is one of a [`Page`]'s record ranges.
fn record_text<'b>(body: &'b Bytes, range: &Range<usize>) -> &'b str {
    let bytes = &body[range.clone()];
    debug_assert!(std::str::from_utf8(bytes).is_ok());
    // SAFETY: a page's body is immutable and was checked to be UTF-8 when the page was built
    // ([`Page::parse`], [`Page::from_ranges`]), and its record ranges to lie on character
    // boundaries within it (byte spans of JSON values cut from that text, or checked). Checking again per record cost
    // 3% of `convert`.
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

/// The two fields every consumer of a record needs before anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordKey<'a> {
    /// Its id ([`RecordSpec::id`]: `conversationId`).
    pub id: Cow<'a, str>,
    /// Its time ([`RecordSpec::time`]: `conversationStart`), when the dataset has one.
    pub time: Option<DateTime<Utc>>,
}

impl RecordKey<'_> {
    /// The record's time. Always set for a dataset whose records have one ([`record_key`]
    /// refuses a record without it); the earliest time otherwise.
    pub fn start(&self) -> DateTime<Utc> {
        self.time.unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

/// Reads a record's id and time (`conversationId` and `conversationStart`) from its JSON text.
///
/// Stops reading once both are seen (the API sends them first): the record is parsed in full,
/// and checked, by the converter. Errors only when the record is unreadable before both keys.
pub fn record_key<'t>(text: &'t str, spec: &RecordSpec) -> Result<RecordKey<'t>, String> {
    use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};

    struct Keys<'a, 'de> {
        spec: &'a RecordSpec,
        id: &'a mut Option<Cow<'de, str>>,
        start: &'a mut Option<Cow<'de, str>>,
    }
    impl<'de> DeserializeSeed<'de> for Keys<'_, 'de> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de> Visitor<'de> for Keys<'_, 'de> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "a {} object", self.spec.name)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let timed = self.spec.time.is_some();
            while let Some(key) = map.next_key_seed(StrSeed)? {
                match key.as_ref() {
                    k if k == self.spec.id => *self.id = map.next_value_seed(StrSeed).map(Some)?,
                    k if Some(k) == self.spec.time => {
                        *self.start = map.next_value_seed(StrSeed).map(Some)?
                    }
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                if self.id.is_some() && (self.start.is_some() || !timed) {
                    break;
                }
            }
            Ok(())
        }
    }

    let (mut id, mut start) = (None, None);
    let mut de = serde_json::Deserializer::from_str(text);
    let read = Keys {
        spec,
        id: &mut id,
        start: &mut start,
    }
    .deserialize(&mut de);
    let kind = spec.name;
    let (id, start) = match (id, start, read, spec.time) {
        // Stopping early leaves the rest unread, which serde_json reports: not an error here.
        (Some(id), Some(start), _, Some(_)) => (id, Some(start)),
        (Some(id), _, _, None) => (id, None),
        (id, _, Err(e), _) => {
            let at = id.map(|i| format!("{kind} {i}: ")).unwrap_or_default();
            return Err(format!("{at}malformed record: {}", describe_json_error(&e)));
        }
        (None, _, Ok(()), _) => return Err(format!("record has no $.{}", spec.id)),
        (Some(id), None, Ok(()), Some(time)) => return Err(format!("{kind} {id} has no $.{time}")),
    };
    let time = match (start, spec.time) {
        // The converter's parser: a record the converter accepts is never refused here.
        (Some(start), Some(field)) => Some(
            parse_time_ms(&start)
                .and_then(DateTime::from_timestamp_millis)
                .ok_or_else(|| format!("{kind} {id}: $.{field} is not an ISO-8601 time"))?,
        ),
        _ => None,
    };
    Ok(RecordKey { id, time })
}

/// A serde_json error for messages and logs: where it happened, never the value (records hold
/// callers' names and numbers, and serde quotes the value it did not expect).
pub fn describe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        // Syntax messages are fixed texts ("expected `,` or `]`", "EOF while parsing …").
        Category::Syntax | Category::Eof | Category::Io => e.to_string(),
        Category::Data => format!(
            "a value of an unexpected type at line {} column {}",
            e.line(),
            e.column()
        ),
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.mmm]Z` by hand (the API's form); anything else RFC 3339 or a lenient
/// `%Y-%m-%dT%H:%M:%S%.fZ` (which takes a one-digit day such as `2021-04-2T…`, seen in Genesys'
/// own examples). The one timestamp parser of records: keys, filters and columns agree.
pub fn parse_time_ms(s: &str) -> Option<i64> {
    fast_time(s.as_bytes())
        .or_else(|| {
            DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.timestamp_millis())
        })
        .or_else(|| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.fZ")
                .ok()
                .map(|t| t.and_utc().timestamp_millis())
        })
}

/// A page's text: `simdutf8` validates a page (hundreds of KB, nearly all ASCII) several
/// times faster than std, which then only says where a bad page goes wrong.
fn utf8<'b>(body: &'b [u8], origin: &PageOrigin) -> Result<&'b str, PageError> {
    simdutf8::basic::from_utf8(body).or_else(|_| {
        std::str::from_utf8(body).map_err(|e| PageError::NotUtf8 {
            origin: origin.clone(),
            valid_up_to: e.valid_up_to(),
        })
    })
}

fn fast_time(b: &[u8]) -> Option<i64> {
    match <&[u8; 24]>::try_from(b) {
        Ok(b) => fast_time_ms(b),
        Err(_) => fast_time_bytes(b),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, what Genesys sends, checked and read as three 8-byte words
/// (a byte at a time, this was 2% of `convert`'s CPU).
fn fast_time_ms(b: &[u8; 24]) -> Option<i64> {
    const TEMPLATE: &[u8; 24] = b"0000-00-00T00:00:00.000Z";
    const DIGITS: &[u8; 24] =
        b"\xff\xff\xff\xff\0\xff\xff\0\xff\xff\0\xff\xff\0\xff\xff\0\xff\xff\0\xff\xff\xff\0";
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let word = |a: &[u8; 24], i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&a[i..i + 8]);
        u64::from_le_bytes(w)
    };
    let mut x = [0u64; 3];
    for (k, x) in x.iter_mut().enumerate() {
        let m = word(DIGITS, 8 * k);
        // Separators become 0 when they match; digits become their value, and anything else
        // in a digit's place becomes more than 9.
        let v = word(b, 8 * k) ^ word(TEMPLATE, 8 * k);
        let d = v & m;
        if v & !m != 0 || d & HIGH != 0 || d.wrapping_add(0x7676_7676_7676_7676 & m) & HIGH != 0 {
            return None;
        }
        *x = d;
    }
    let at = |w: u64, i: u32| ((w >> (8 * i)) & 0xff) as i64;
    let y = at(x[0], 0) * 1000 + at(x[0], 1) * 100 + at(x[0], 2) * 10 + at(x[0], 3);
    let mo = at(x[0], 5) * 10 + at(x[0], 6);
    let d = at(x[1], 0) * 10 + at(x[1], 1);
    let h = at(x[1], 3) * 10 + at(x[1], 4);
    let mi = at(x[1], 6) * 10 + at(x[1], 7);
    let s = at(x[2], 1) * 10 + at(x[2], 2);
    let ms = at(x[2], 4) * 100 + at(x[2], 5) * 10 + at(x[2], 6);
    civil_ms(y, mo, d, h, mi, s, ms)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` or `YYYY-MM-DDTHH:MM:SSZ`, a byte at a time.
fn fast_time_bytes(b: &[u8]) -> Option<i64> {
    if !(b.len() == 24 || b.len() == 20) || b[b.len() - 1] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let mut v = 0i64;
        for &c in &b[r] {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Some(v)
    };
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let ms = if b.len() == 24 {
        if b[19] != b'.' {
            return None;
        }
        num(20..23)?
    } else {
        0
    };
    civil_ms(y, mo, d, h, mi, s, ms)
}

/// Milliseconds since the epoch of a UTC date and time; `None` when it is no such time.
fn civil_ms(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64, ms: i64) -> Option<i64> {
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = match mo {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=12).contains(&mo) || !(1..=month_days).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + mi) * 60_000 + s * 1000 + ms)
}

/// A JSON string, borrowed from the input when it has no escapes.
pub(crate) struct StrSeed;

impl<'de> serde::de::DeserializeSeed<'de> for StrSeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for StrSeed {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::conversations::{DATASET, RECORD};

    fn record_key(text: &str) -> Result<RecordKey<'_>, String> {
        super::record_key(text, &RECORD)
    }

    fn parse(body: Bytes, origin: PageOrigin) -> Result<Page, PageError> {
        Page::parse(body, origin, DATASET.envelope)
    }

    fn parse_list(body: Bytes, origin: PageOrigin) -> Result<Page, PageError> {
        Page::parse_page_or_list(body, origin, DATASET.envelope)
    }

    fn origin() -> PageOrigin {
        PageOrigin::new("test page 1")
    }

    #[test]
    fn splits_records_and_meta() {
        let body = br#"{"conversations":[{"conversationId":"a","conversationStart":"2026-11-21T00:00:01.000Z"},
            {"conversationId":"b","x":[1,{"y":"]"}],"conversationStart":"2026-11-21T00:00:02.000Z"}],
            "cursor":"c1","dataAvailabilityDate":"2026-11-21T10:00:00.000Z"}"#;
        let page = parse(Bytes::from_static(body), origin()).unwrap();
        assert_eq!(page.len(), 2);
        assert_eq!(
            page.record(0),
            r#"{"conversationId":"a","conversationStart":"2026-11-21T00:00:01.000Z"}"#
        );
        assert_eq!(page.meta.cursor.as_deref(), Some("c1"));
        let k = record_key(page.record(1)).unwrap();
        assert_eq!(k.id, "b");
        assert_eq!(
            crate::interval::format_millis(k.time.unwrap()),
            "2026-11-21T00:00:02.000Z"
        );
    }

    #[test]
    fn empty_sync_page_has_no_conversations_key() {
        let page = parse(Bytes::from_static(br#"{"totalHits":114}"#), origin()).unwrap();
        assert!(page.is_empty());
        assert_eq!(page.meta.total_hits, Some(114));
    }

    #[test]
    fn bare_lists_only_where_allowed() {
        let body = Bytes::from_static(br#"[{"conversationId":"a"}]"#);
        assert!(parse(body.clone(), origin()).is_err());
        assert_eq!(parse_list(body, origin()).unwrap().len(), 1);
    }

    #[test]
    fn odd_pages_are_named_never_quoted() {
        for (json, needle) in [
            (
                r#"{"conversations":[],"totalHits":"Jane Roe"}"#,
                "$.totalHits is not an integer",
            ),
            (
                r#"{"conversations":[],"cursor":{"n":"Jane Roe"}}"#,
                "$.cursor is not a string",
            ),
            (
                r#"{"conversations":"Jane Roe"}"#,
                "expected a list of records at line 1 column 18",
            ),
            (r#"["Jane Roe"]"#, "the page is not a JSON object"),
            (
                r#"{"conversations":[{"a":"Jane Roe"}]} x"#,
                "trailing characters at line 1 column 38",
            ),
            (
                r#"{"conversations":[{"a":"Jane Roe"}"#,
                "EOF while parsing a list",
            ),
        ] {
            let e = parse(Bytes::from(json), origin())
                .expect_err(json)
                .to_string();
            assert!(e.starts_with("test page 1: malformed page JSON: "), "{e}");
            assert!(e.contains(needle), "{e}");
            assert!(!e.contains("Jane"), "{e}");
        }
        // A null list is an empty page; other keys of any shape are ignored.
        let p = parse(
            Bytes::from(r#"{"conversations":null,"other":[{"x":1}],"totalHits":0}"#),
            origin(),
        )
        .expect("page");
        assert_eq!((p.len(), p.meta.total_hits), (0, Some(0)));
    }

    #[test]
    fn truncated_page_names_origin() {
        let err = parse(
            Bytes::from_static(br#"{"conversations":[{"conversationId":"a""#),
            origin(),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("test page 1: malformed page JSON"), "{msg}");
    }

    #[test]
    fn parse_each_keeps_reads_drops_and_stops_as_told() {
        let body = br#"{"conversations":[{"conversationId":"a"}, {"conversationId":"b"} ,{"conversationId":"c","x":[1,{"y":"}"}]}],"totalHits":3}"#;
        let mut seen = Vec::new();
        let page = Page::parse_each(
            Bytes::from_static(body),
            origin(),
            DATASET.envelope,
            false,
            &mut |text, i, start| {
                seen.push(i);
                Ok(match i {
                    0 => Take::Keep,
                    1 => Take::Drop,
                    // Read by the handler (here with the reader), to its end.
                    _ => {
                        let mut r = Reader::new(&text[start..]);
                        r.skip().map_err(|_| ())?;
                        Take::Read(start + r.pos())
                    }
                })
            },
        )
        .expect("page");
        assert_eq!(seen, [0, 1, 2]);
        assert_eq!(
            (page.len(), page.received, page.meta.total_hits),
            (2, 3, Some(3))
        );
        assert_eq!(page.record(0), r#"{"conversationId":"a"}"#);
        assert_eq!(
            page.record(1),
            r#"{"conversationId":"c","x":[1,{"y":"}"}]}"#
        );
        // A dropped record is still checked; a handler's stop says where, never a value.
        let bad =
            br#"{"conversations":[{"conversationId":"a","n":"Jane Roe"},{"conversationId":"b"}]}"#;
        let e = Page::parse_each(
            Bytes::from_static(bad),
            origin(),
            DATASET.envelope,
            false,
            &mut |_, i, _| {
                if i == 0 {
                    Ok(Take::Drop)
                } else {
                    Err(())
                }
            },
        )
        .expect_err("stopped")
        .to_string();
        assert!(
            e.contains("stopped by the record handler at line 1 column 57"),
            "{e}"
        );
        assert!(!e.contains("Jane"), "{e}");
        let broken = br#"{"conversations":[{"conversationId":"a",}]}"#;
        let e = Page::parse_each(
            Bytes::from_static(broken),
            origin(),
            DATASET.envelope,
            false,
            &mut |_, _, _| Ok(Take::Drop),
        )
        .expect_err("a dropped record is checked")
        .to_string();
        assert!(e.contains("malformed page JSON"), "{e}");
    }

    #[test]
    fn retain_filters() {
        let body = br#"{"conversations":[{"conversationId":"a"},{"conversationId":"b"}]}"#;
        let mut page = parse(Bytes::from_static(body), origin()).unwrap();
        page.try_retain::<()>(|i, _| Ok(i == 1)).unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page.received, 2);
        assert_eq!(page.record(0), r#"{"conversationId":"b"}"#);
    }

    #[test]
    fn record_key_reads_the_keys_wherever_they_are() {
        let k = record_key(
            r#"{"participants":[{"x":"}"}],"conversationStart":"2026-11-21T00:00:01.500Z","conversationId":"a\u0062"}"#,
        )
        .unwrap();
        assert_eq!(k.id, "ab");
        assert_eq!(k.time.unwrap().timestamp_millis(), 1_795_219_201_500);
        // Once both keys are read the rest is the converter's business (it names the record).
        let k =
            record_key(r#"{"conversationId":"a","conversationStart":"2026-11-21T00:00:00Z", oops"#)
                .unwrap();
        assert_eq!(k.id, "a");
        // Broken before both keys: an error.
        assert!(record_key(r#"{"conversationId":"a", oops"#)
            .unwrap_err()
            .contains("malformed record"));
        assert!(
            record_key(r#"{"conversationId":"a","conversationStart":"yesterday"}"#)
                .unwrap_err()
                .contains("conversation a: $.conversationStart")
        );
    }

    #[test]
    fn record_key_takes_every_time_the_converter_takes() {
        // Genesys' own examples carry one-digit days; the converter has always taken them.
        let k =
            record_key(r#"{"conversationId":"a","conversationStart":"2021-04-2T15:30:51.418Z"}"#)
                .unwrap();
        assert_eq!(
            crate::interval::format_millis(k.time.unwrap()),
            "2021-04-02T15:30:51.418Z"
        );
        let k =
            record_key(r#"{"conversationId":"a","conversationStart":"2021-04-02T17:30:51+02:00"}"#)
                .unwrap();
        assert_eq!(k.time.unwrap().timestamp_millis() % 86_400_000, 55_851_000);
    }

    /// Text in any script reads; a byte that is not UTF-8 is named by its offset, in a page
    /// long enough for the vectorised check to see it in the middle of a block.
    #[test]
    fn pages_must_be_utf8_and_bad_bytes_are_located() {
        let name = "José Müller 山田 😀";
        let good = format!(
            r#"{{"conversations":[{{"conversationId":"a","conversationStart":"2026-11-20T00:00:00Z","participants":[{{"participantName":"{name}"}}]}}],"pad":"{}"}}"#,
            "x".repeat(300)
        );
        let page = parse(Bytes::from(good.clone()), PageOrigin::new("p")).expect("utf-8 page");
        assert_eq!(page.records().count(), 1);
        for at in [good.find('M').expect("M"), good.len() - 100] {
            let mut bad = good.clone().into_bytes();
            bad[at] = 0xff;
            let err = parse(Bytes::from(bad), PageOrigin::new("p")).expect_err("not utf-8");
            assert!(
                matches!(err, PageError::NotUtf8 { valid_up_to, .. } if valid_up_to == at),
                "{err}"
            );
        }
    }

    #[test]
    fn errors_name_where_never_the_value() {
        const MARK: &str = "Jane Roe +1 555 0100";
        let cases = [
            format!(
                r#"{{"conversationId":{{"name":"{MARK}"}},"conversationStart":"2026-11-20T00:00:00Z"}}"#
            ),
            format!(r#"{{"conversationId":"a","conversationStart":"{MARK}"}}"#),
            format!(r#"{{"conversationId":"a","conversationStart":["{MARK}"]}}"#),
            format!(r#"{{"conversationStart":"2026-11-20T00:00:00Z","conversationId":"{MARK}""#),
        ];
        for rec in &cases {
            match record_key(rec) {
                Ok(k) => assert_eq!(k.id, MARK, "{rec}"),
                Err(e) => assert!(!e.contains(MARK) && !e.contains("555"), "{e}"),
            }
        }
        for body in [
            format!(r#"{{"conversations":"{MARK}"}}"#),
            format!(r#"{{"conversations":[],"totalHits":"{MARK}"}}"#),
            format!(r#"{{"conversations":[],"cursor":["{MARK}"]}}"#),
        ] {
            let err = parse(Bytes::from(body), origin()).unwrap_err();
            let msg = format!("{err} {err:?}");
            let shown = err.to_string();
            assert!(shown.contains("test page 1"), "{shown}");
            assert!(!shown.contains("555"), "{shown}");
            // Nothing further down the chain either.
            assert!(std::error::Error::source(&err).is_none(), "{msg}");
        }
    }

    #[test]
    fn fast_time_agrees_with_chrono() {
        for s in [
            "2026-11-21T23:59:59.999Z",
            "1970-01-01T00:00:00.000Z",
            "2000-02-29T12:00:00.001Z",
            "2026-03-01T00:00:00Z",
            "1969-12-31T23:59:59.999Z",
        ] {
            let want = DateTime::parse_from_rfc3339(s).expect(s).timestamp_millis();
            assert_eq!(fast_time(s.as_bytes()), Some(want), "{s}");
        }
        assert_eq!(fast_time(b"2026-13-01T00:00:00.000Z"), None);
        // Days past the month's end are no date (they were read as the next month's).
        for s in [
            "2026-02-29T00:00:00.000Z",
            "2026-04-31T00:00:00Z",
            "1900-02-29T00:00:00Z",
        ] {
            assert_eq!(parse_time_ms(s), None, "{s}");
        }
        assert_eq!(
            fast_time(b"2024-02-29T00:00:00.000Z"),
            Some(
                DateTime::parse_from_rfc3339("2024-02-29T00:00:00Z")
                    .expect("leap")
                    .timestamp_millis()
            )
        );
        // Lenient fallbacks: offsets, and Genesys' own one-digit day.
        assert_eq!(
            parse_time_ms("2026-11-21T10:00:00+01:00"),
            parse_time_ms("2026-11-21T09:00:00.000Z")
        );
        assert_eq!(
            parse_time_ms("2021-04-2T15:30:51.418Z"),
            parse_time_ms("2021-04-02T15:30:51.418Z")
        );
        assert_eq!(parse_time_ms("yesterday"), None);
    }

    /// The word-at-a-time reading of `YYYY-MM-DDTHH:MM:SS.mmmZ` agrees with the byte-at-a-time
    /// one on every time of a sample and on each with any one byte replaced (digits,
    /// separators, other ASCII, non-ASCII), and both with chrono where it reads a time.
    #[test]
    fn word_and_byte_time_readers_agree() {
        let mut times = vec![
            "2026-11-21T23:59:59.999Z".to_string(),
            "0000-01-01T00:00:00.000Z".into(),
            "9999-12-31T23:59:60.999Z".into(),
            "2000-02-29T00:00:00.000Z".into(),
        ];
        let base = DateTime::parse_from_rfc3339("1999-12-31T23:00:00Z").expect("base");
        for i in 0..2000i64 {
            let t = base + chrono::Duration::milliseconds(i * 7_919_993_117 % 1_000_000_000_007);
            times.push(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
        }
        let replacements = [
            b'0', b'5', b'9', b'/', b':', b'-', b'T', b'.', b'Z', b' ', 0xc3, 0x7f,
        ];
        let mut checked = 0;
        for t in &times {
            let b: &[u8; 24] = t.as_bytes().try_into().expect("24 bytes");
            assert_eq!(fast_time_ms(b), fast_time_bytes(b), "{t}");
            if let Ok(want) = DateTime::parse_from_rfc3339(t) {
                if !t.contains(":60.") {
                    assert_eq!(fast_time_ms(b), Some(want.timestamp_millis()), "{t}");
                }
            }
            for at in 0..24 {
                for r in replacements {
                    let mut m = *b;
                    m[at] = r;
                    assert_eq!(
                        fast_time_ms(&m),
                        fast_time_bytes(&m),
                        "{t} with {r:#x} at {at}"
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 500_000);
    }

    #[test]
    fn archive_stamps_are_read() {
        let stamp = ArchiveStamp {
            interval: crate::interval::Interval::day("2026-11-20".parse().unwrap()),
            extracted_at: "2026-11-21T03:00:00Z".parse().unwrap(),
        };
        let body = format!(
            r#"{{"conversations":[],"{}":{}}}"#,
            ArchiveStamp::KEY,
            stamp.to_json()
        );
        let page = parse(Bytes::from(body), origin()).unwrap();
        assert_eq!(page.meta.archive, Some(stamp));
        let bad = format!(
            r#"{{"conversations":[],"{}":{{"interval":"x","extractedAt":"y"}}}}"#,
            ArchiveStamp::KEY
        );
        assert!(parse(Bytes::from(bad), origin()).is_err());
    }

    #[test]
    fn record_without_id_is_refused() {
        assert!(
            record_key(r#"{"conversationStart":"2026-11-21T00:00:00.000Z"}"#)
                .unwrap_err()
                .contains("no $.conversationId")
        );
    }
}
