//! One page of conversation records, as it travels from a source (the Genesys API or saved
//! files) to the converter.
//!
//! A [`Page`] keeps the response body byte for byte (so it can be archived and converted again
//! later) plus the byte ranges of the conversation records that survived filtering. Nothing here
//! builds a `serde_json::Value` tree: the envelope is split with borrowed [`RawValue`]s.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

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
    #[error("{origin}: malformed page JSON: {source}")]
    Malformed {
        origin: PageOrigin,
        #[source]
        source: serde_json::Error,
    },
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
    /// Synchronous query: the total number of matching conversations.
    pub total_hits: Option<i64>,
    /// Async job results: the data lake's availability date.
    pub data_availability_date: Option<DateTime<Utc>>,
}

/// One page of conversation records.
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

#[derive(Deserialize)]
struct Envelope<'a> {
    // `default`: an empty sync page has no `conversations` key at all.
    #[serde(borrow, default)]
    conversations: Option<Vec<&'a RawValue>>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default, rename = "totalHits")]
    total_hits: Option<i64>,
    #[serde(default, rename = "dataAvailabilityDate")]
    data_availability_date: Option<&'a str>,
}

impl Page {
    /// Splits an API response body (`{"conversations": [...], ...}`) into records.
    pub fn parse(body: Bytes, origin: PageOrigin) -> Result<Page, PageError> {
        Self::parse_inner(body, origin, false)
    }

    /// Like [`Page::parse`], but also accepts a bare JSON array of conversation records
    /// (how users save records by hand).
    pub fn parse_page_or_list(body: Bytes, origin: PageOrigin) -> Result<Page, PageError> {
        Self::parse_inner(body, origin, true)
    }

    fn parse_inner(body: Bytes, origin: PageOrigin, allow_list: bool) -> Result<Page, PageError> {
        let text = std::str::from_utf8(&body).map_err(|e| PageError::NotUtf8 {
            origin: origin.clone(),
            valid_up_to: e.valid_up_to(),
        })?;
        let malformed = |source| PageError::Malformed {
            origin: origin.clone(),
            source,
        };
        let (raws, meta) = if allow_list && text.trim_start().starts_with('[') {
            (
                serde_json::from_str::<Vec<&RawValue>>(text).map_err(malformed)?,
                PageMeta::default(),
            )
        } else {
            let env = serde_json::from_str::<Envelope>(text).map_err(malformed)?;
            let data_availability_date = match env.data_availability_date {
                None => None,
                Some(s) => Some(
                    DateTime::parse_from_rfc3339(s)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|e| PageError::BadRecord {
                            origin: origin.clone(),
                            index: 0,
                            reason: format!("dataAvailabilityDate {s:?}: {e}"),
                        })?,
                ),
            };
            (
                env.conversations.unwrap_or_default(),
                PageMeta {
                    cursor: env.cursor,
                    total_hits: env.total_hits,
                    data_availability_date,
                },
            )
        };
        let base = text.as_ptr() as usize;
        let records: Vec<Range<usize>> = raws
            .iter()
            .map(|r| {
                let s = r.get();
                let start = s.as_ptr() as usize - base;
                start..start + s.len()
            })
            .collect();
        Ok(Page {
            received: records.len(),
            body,
            records,
            meta,
            origin,
        })
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
        // The ranges were cut from this body's UTF-8 text at parse time, on value boundaries.
        std::str::from_utf8(&self.body[self.records[i].clone()]).unwrap_or("")
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
            let text = std::str::from_utf8(&body[r.clone()]).unwrap_or("");
            if keep(i, text)? {
                out.push(r);
            }
        }
        self.records = out;
        Ok(())
    }
}

/// The two fields every consumer of a record needs before anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordKey<'a> {
    pub conversation_id: Cow<'a, str>,
    pub conversation_start: DateTime<Utc>,
}

/// Reads `conversationId` and `conversationStart` from one record's JSON text.
///
/// Stops reading once both are seen (the API sends them first): the record is parsed in full,
/// and checked, by the converter. Errors only when the record is unreadable before both keys.
pub fn record_key(text: &str) -> Result<RecordKey<'_>, String> {
    use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};

    struct Keys<'a, 'de> {
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
            f.write_str("a conversation object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key_seed(StrSeed)? {
                match key.as_ref() {
                    "conversationId" => *self.id = map.next_value_seed(StrSeed).map(Some)?,
                    "conversationStart" => *self.start = map.next_value_seed(StrSeed).map(Some)?,
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                if self.id.is_some() && self.start.is_some() {
                    break;
                }
            }
            Ok(())
        }
    }

    let (mut id, mut start) = (None, None);
    let mut de = serde_json::Deserializer::from_str(text);
    let read = Keys {
        id: &mut id,
        start: &mut start,
    }
    .deserialize(&mut de);
    let (id, start) = match (id, start, read) {
        // Stopping early leaves the rest unread, which serde_json reports: not an error here.
        (Some(id), Some(start), _) => (id, start),
        (_, _, Err(e)) => return Err(format!("malformed record: {e}")),
        (None, _, Ok(())) => return Err("record has no conversationId".into()),
        (Some(id), None, Ok(())) => {
            return Err(format!("conversation {id} has no conversationStart"))
        }
    };
    let start = DateTime::parse_from_rfc3339(&start)
        .map_err(|e| format!("conversation {id}: conversationStart {start:?}: {e}"))?
        .with_timezone(&Utc);
    Ok(RecordKey {
        conversation_id: id,
        conversation_start: start,
    })
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

    fn origin() -> PageOrigin {
        PageOrigin::new("test page 1")
    }

    #[test]
    fn splits_records_and_meta() {
        let body = br#"{"conversations":[{"conversationId":"a","conversationStart":"2026-11-21T00:00:01.000Z"},
            {"conversationId":"b","x":[1,{"y":"]"}],"conversationStart":"2026-11-21T00:00:02.000Z"}],
            "cursor":"c1","dataAvailabilityDate":"2026-11-21T10:00:00.000Z"}"#;
        let page = Page::parse(Bytes::from_static(body), origin()).unwrap();
        assert_eq!(page.len(), 2);
        assert_eq!(
            page.record(0),
            r#"{"conversationId":"a","conversationStart":"2026-11-21T00:00:01.000Z"}"#
        );
        assert_eq!(page.meta.cursor.as_deref(), Some("c1"));
        let k = record_key(page.record(1)).unwrap();
        assert_eq!(k.conversation_id, "b");
        assert_eq!(
            crate::interval::format_millis(k.conversation_start),
            "2026-11-21T00:00:02.000Z"
        );
    }

    #[test]
    fn empty_sync_page_has_no_conversations_key() {
        let page = Page::parse(Bytes::from_static(br#"{"totalHits":114}"#), origin()).unwrap();
        assert!(page.is_empty());
        assert_eq!(page.meta.total_hits, Some(114));
    }

    #[test]
    fn bare_lists_only_where_allowed() {
        let body = Bytes::from_static(br#"[{"conversationId":"a"}]"#);
        assert!(Page::parse(body.clone(), origin()).is_err());
        assert_eq!(Page::parse_page_or_list(body, origin()).unwrap().len(), 1);
    }

    #[test]
    fn truncated_page_names_origin() {
        let err = Page::parse(
            Bytes::from_static(br#"{"conversations":[{"conversationId":"a""#),
            origin(),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("test page 1: malformed page JSON"), "{msg}");
    }

    #[test]
    fn retain_filters() {
        let body = br#"{"conversations":[{"conversationId":"a"},{"conversationId":"b"}]}"#;
        let mut page = Page::parse(Bytes::from_static(body), origin()).unwrap();
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
        assert_eq!(k.conversation_id, "ab");
        assert_eq!(k.conversation_start.timestamp_millis(), 1_795_219_201_500);
        // Once both keys are read the rest is the converter's business (it names the record).
        let k =
            record_key(r#"{"conversationId":"a","conversationStart":"2026-11-21T00:00:00Z", oops"#)
                .unwrap();
        assert_eq!(k.conversation_id, "a");
        // Broken before both keys: an error.
        assert!(record_key(r#"{"conversationId":"a", oops"#)
            .unwrap_err()
            .contains("malformed record"));
        assert!(
            record_key(r#"{"conversationId":"a","conversationStart":"yesterday"}"#)
                .unwrap_err()
                .contains("conversation a: conversationStart")
        );
    }

    #[test]
    fn record_without_id_is_refused() {
        assert!(
            record_key(r#"{"conversationStart":"2026-11-21T00:00:00.000Z"}"#)
                .unwrap_err()
                .contains("no conversationId")
        );
    }
}
