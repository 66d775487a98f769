//! Page → Arrow record batches, streaming, driven by the static schema ([`super::schema`]).
//!
//! Each record is read once, straight from the page's bytes: a walk over the JSON object with
//! the [`crate::json`] reader looks each key up in the table's layout and reads each value as its
//! column's type (strings borrowed, no `Value` tree) into the column builders; at the end of the object, columns it did not set get
//! a null. Lists of objects recurse into their child tables. JSON key order is
//! not guaranteed (a child list may come before its parent's id), so a child row records its
//! parent's *row number*, and key columns (the schema's [`Key`]s: `conversation_id`,
//! `participant_id`, …) are made from the parent's columns when the batches are built: a
//! string key is a dictionary over the parent's column, keyed by parent row (an id is held
//! once, not copied onto every child row), a time key is copied with `take`. That is why every
//! table is flushed at the same record boundary.
//!
//! A converter works on one dataset, from its root table: each record is a row of the root.
//! Unknown fields, and values whose type is not the schema's, go verbatim into the object's
//! `extra` JSON column and are counted; a record without one of its root's required fields
//! (`conversationId`, a readable `conversationStart`), or JSON that is not an object at all, is
//! a [`ConvertError`].
//!
//! [`Key`]: super::schema::Key

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanBuilder, DictionaryArray, Float64Builder, Int64Array, Int64Builder,
    ListBuilder, RecordBatch, StringArray, StringBuilder, TimestampMillisecondArray,
    TimestampMillisecondBuilder, UInt32Array,
};
use arrow::compute::take;
use arrow::datatypes::UInt32Type;
use arrow::error::ArrowError;
use chrono::DateTime;
use serde::Serialize;
use serde_json::value::RawValue;

use super::lookup::KeyMap;
use super::schema::{Entry, Role, Table, Ty};
use crate::datasets::{Dataset, Partitioning};
use crate::json::{self, Reader};
use crate::page::{parse_time_ms, Page, PageOrigin};

/// Conversion settings.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// Keep the whole record as JSON in `conversations.raw` (opt-in: `--raw`).
    pub raw: bool,
    /// Batches are emitted once a table holds this many rows…
    pub batch_rows: usize,
    /// …or this many bytes of input JSON have been converted since the last batches. Each
    /// batch costs each column of each table a fixed share (building, levels, pages), used
    /// or not, and most of a day's 289 columns hold a few values: 8 MiB rather than 4 took
    /// 3% less CPU for 500k conversations at the same peak memory (with string keys as
    /// dictionaries and the writer's queue halved to match; median of 6 alternating runs,
    /// 11.9 vs 12.3 s, 189 MiB both; 16 MiB: 6-10% less, for 215-240 MiB; 2026-12-04).
    /// 12 MiB rather than 8, with the writers' budget lowered from 28 to 20 MiB to pay for
    /// it ([`crate::sink::parquet::DEFAULT_BUFFER_MB`]): 2.4% less CPU at 500k, 15 MiB less
    /// (medians of 6 alternating runs; 16 MiB: 2.8% less CPU, 4 MiB more; 2026-12-05).
    pub batch_bytes: usize,
    /// The partition of a dataset partitioned by run date ([`Partitioning::RunDate`]); today
    /// (UTC) when not set.
    pub run_date: Option<chrono::NaiveDate>,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        Self {
            raw: false,
            batch_rows: 64 * 1024,
            batch_bytes: 12 << 20,
            run_date: None,
        }
    }
}

/// One batch of one table; its last column is its dataset's partition column (the rows'
/// dates as a dictionary: [`super::schema::partition_type`]).
#[derive(Debug, Clone)]
pub struct TableBatch {
    pub table: Table,
    pub batch: RecordBatch,
}

/// What the converter has seen so far.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConvertStats {
    pub conversations: u64,
    pub rows: BTreeMap<&'static str, u64>,
    /// `table.field` → records carrying a field the schema does not know (kept in `extra`).
    pub unknown_fields: BTreeMap<String, u64>,
    /// `table.field` → values of an unexpected type or shape (kept in `extra`); `field[]`
    /// counts list elements that are not objects.
    pub type_mismatches: BTreeMap<String, u64>,
    /// The same values by the partition (UTC date) of their record.
    pub type_mismatches_by_date: BTreeMap<chrono::NaiveDate, u64>,
}

impl ConvertStats {
    pub fn type_mismatches(&self) -> u64 {
        self.type_mismatches.values().sum()
    }

    pub fn unknown_fields(&self) -> u64 {
        self.unknown_fields.values().sum()
    }
}

/// A record or page that cannot be converted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    #[error("{origin}: record {index}{}: {reason}", id.as_ref().map(|i| format!(" ({kind} {i})")).unwrap_or_default())]
    Record {
        origin: PageOrigin,
        index: usize,
        /// What a record is (`conversation`).
        kind: &'static str,
        id: Option<String>,
        reason: String,
    },
    #[error("building the {table} batch: {source}")]
    Arrow {
        table: &'static str,
        #[source]
        source: ArrowError,
    },
}

/// Streams pages into per-table record batches with bounded memory.
///
/// After an error the converter holds part of the failed record: drop it.
pub struct Converter {
    opts: ConvertOptions,
    dataset: &'static Dataset,
    /// The table a record is a row of.
    root: Table,
    /// The partition of every row, for a dataset partitioned by run date.
    run_date: String,
    bufs: Vec<TableBuf>,
    stats: ConvertStats,
    pending_bytes: usize,
}

impl Converter {
    /// A converter of `dataset`'s records (rows of its root table).
    pub fn new(dataset: &'static Dataset, opts: ConvertOptions) -> Self {
        Self::for_root(dataset.root(), opts)
    }

    /// A converter of records that are rows of `root` (a dataset with several root tables
    /// converts each kind of record with its own).
    pub fn for_root(root: Table, opts: ConvertOptions) -> Self {
        let dataset = root.dataset();
        let run_date = opts
            .run_date
            .unwrap_or_else(|| chrono::Utc::now().date_naive())
            .to_string();
        Self {
            opts,
            dataset,
            root,
            run_date,
            bufs: dataset.tables.iter().map(|t| TableBuf::new(*t)).collect(),
            stats: ConvertStats {
                rows: dataset.tables.iter().map(|t| (t.name(), 0)).collect(),
                ..ConvertStats::default()
            },
            pending_bytes: 0,
        }
    }

    pub fn stats(&self) -> &ConvertStats {
        &self.stats
    }

    /// Appends every record of the page; returns the batches that filled up (usually none).
    pub fn push_page(&mut self, page: &Page) -> Result<Vec<TableBatch>, ConvertError> {
        let mut out = Vec::new();
        for (index, rec) in page.records().enumerate() {
            self.push_record(rec)
                .map_err(|reason| record_error(self.dataset, &page.origin, index, rec, reason))?;
            if self.full() {
                out.extend(self.flush()?);
            }
        }
        Ok(out)
    }

    /// Appends the record that starts at byte `start` of `text` (a page's text, read as it is
    /// split: [`crate::page::Page::parse_each`]), reading it to its end, which it returns;
    /// batches that filled up are added to `out`. `index` is the record's in its page.
    pub fn push_record_at(
        &mut self,
        text: &str,
        start: usize,
        origin: &PageOrigin,
        index: usize,
        out: &mut Vec<TableBatch>,
    ) -> Result<usize, ConvertError> {
        let rec = &text[start..];
        let len = self.push_record_inner(rec, false).map_err(|reason| {
            // The record alone when it is JSON (for its id), else what is left of the page.
            let own = json::Reader::new(rec).skip().unwrap_or(rec);
            record_error(self.dataset, origin, index, own, reason)
        })?;
        if self.full() {
            out.extend(self.flush()?);
        }
        Ok(start + len)
    }

    /// Flushes what is left.
    pub fn finish(&mut self) -> Result<Vec<TableBatch>, ConvertError> {
        self.flush()
    }

    fn full(&self) -> bool {
        self.pending_bytes >= self.opts.batch_bytes
            || self.bufs.iter().any(|b| b.len >= self.opts.batch_rows)
    }

    fn push_record(&mut self, rec: &str) -> Result<(), String> {
        self.push_record_inner(rec, true).map(|_| ())
    }

    /// A record at the start of `rec`: all of `rec` when `whole`, else up to the record's end;
    /// its length.
    fn push_record_inner(&mut self, rec: &str, whole: bool) -> Result<usize, String> {
        let mut walk = Walk {
            r: Reader::new(rec),
            bufs: &mut self.bufs,
            stats: &mut self.stats,
            mismatches: 0,
        };
        let walked = walk.record(self.root, whole);
        let len = walk.r.pos();
        match walked {
            Ok(()) => {
                let n = walk.mismatches;
                if let Some(date) = self.last_record_date().filter(|_| n > 0) {
                    *self.stats.type_mismatches_by_date.entry(date).or_default() += n;
                }
            }
            Err(Fail::Syntax(e)) => return Err(e.describe(rec)),
            Err(Fail::Refused(reason)) => return Err(reason),
        }
        let rec = &rec[..len];
        let root = &mut self.bufs[self.root.idx()];
        if self.opts.raw {
            root.raw.append_value(rec);
        } else {
            root.raw.append_null();
        }
        self.stats.conversations += 1;
        self.pending_bytes += rec.len();
        Ok(len)
    }

    /// The partition (UTC date) of the record just ended: its time's date (a required
    /// field of the root, set in every ended row), or the run date.
    fn last_record_date(&self) -> Option<chrono::NaiveDate> {
        let Partitioning::RecordDay { .. } = self.dataset.partitioning else {
            return self.run_date.parse().ok();
        };
        let root = &self.bufs[self.root.idx()];
        let layout = self.root.layout();
        let Role::Field { slot } = layout.columns[layout.partition_time?].role else {
            return None;
        };
        let Col::Time(b) = &root.cols[slot] else {
            return None;
        };
        let ms = *b.values_slice().get(root.len.checked_sub(1)?)?;
        DateTime::from_timestamp_millis(ms).map(|t| t.date_naive())
    }

    fn flush(&mut self) -> Result<Vec<TableBatch>, ConvertError> {
        self.pending_bytes = 0;
        if self.bufs[self.root.idx()].len == 0 {
            return Ok(Vec::new());
        }
        // Key columns of each table, for its children.
        let mut keys: Vec<HashMap<&'static str, ArrayRef>> = vec![HashMap::new(); self.bufs.len()];
        let mut out = Vec::new();
        for t in self.dataset.tables {
            let spec = t.spec();
            let layout = t.layout();
            let buf = &mut self.bufs[t.idx()];
            let n = buf.len;
            *self.stats.rows.entry(t.name()).or_default() += n as u64;
            buf.pad();
            let parent_rows = UInt32Array::from(std::mem::replace(
                &mut buf.parent_rows,
                Vec::with_capacity(n),
            ));
            let mut own: Vec<Option<ArrayRef>> =
                buf.cols.iter_mut().map(|c| Some(c.finish())).collect();
            let index: ArrayRef = Arc::new(Int64Array::from(std::mem::replace(
                &mut buf.index,
                Vec::with_capacity(n),
            )));
            let extra: ArrayRef = Arc::new(finish_again(&mut buf.extra));
            let raw: ArrayRef = Arc::new(finish_again(&mut buf.raw));
            buf.len = 0;
            let arrow_err = |source| ConvertError::Arrow {
                table: t.name(),
                source,
            };
            let mut columns: Vec<ArrayRef> = Vec::with_capacity(t.columns().len() + 1);
            for col in t.columns() {
                let array = match col.role {
                    Role::Key => {
                        let parent = spec.parent.map(|p| p.idx()).unwrap_or(0);
                        let src = keys[parent].get(col.name.as_str()).ok_or_else(|| {
                            arrow_err(ArrowError::SchemaError(format!(
                                "parent of {t} has no key column {}",
                                col.name
                            )))
                        })?;
                        key_column(src, &parent_rows).map_err(arrow_err)?
                    }
                    Role::Index => index.clone(),
                    Role::Field { slot } => own[slot].take().ok_or_else(|| {
                        arrow_err(ArrowError::SchemaError(format!("slot {slot} used twice")))
                    })?,
                    Role::Extra => extra.clone(),
                    Role::Raw => raw.clone(),
                };
                if let Some(k) = layout.child_keys.iter().find(|k| **k == col.name) {
                    keys[t.idx()].insert(k, array.clone());
                }
                columns.push(array);
            }
            if n == 0 {
                continue;
            }
            let partition: ArrayRef = match layout.partition_time {
                Some(i) => {
                    let time = columns[i]
                        .as_any()
                        .downcast_ref::<TimestampMillisecondArray>()
                        .ok_or_else(|| {
                            arrow_err(ArrowError::SchemaError(format!(
                                "{} is not a time",
                                t.columns()[i].name
                            )))
                        })?;
                    Arc::new(dates(time))
                }
                None => Arc::new(one_date(&self.run_date, n)),
            };
            columns.push(partition);
            let batch = RecordBatch::try_new(t.layout().batch_schema.clone(), columns)
                .map_err(arrow_err)?;
            out.push(TableBatch { table: *t, batch });
        }
        Ok(out)
    }
}

/// The strings so far; the builder starts again with the room they took and an eighth more
/// (see [`Col::finish`]): string columns, and the rows' `extra` and `raw`.
fn finish_again(b: &mut StringBuilder) -> StringArray {
    let bytes = b.values_slice().len();
    let a = b.finish();
    *b = StringBuilder::with_capacity(a.len() + a.len() / 8, bytes + bytes / 8);
    a
}

/// A key column of a child table: the parent's key column `src` at each child row's parent
/// row. A string key becomes a dictionary over the parent's values (a parent's key that is
/// itself one is re-keyed): four bytes a child row instead of a copy of the id (the copies
/// were 2.2% of `convert`'s CPU at 500k conversations, and most of a batch's bytes).
fn key_column(src: &ArrayRef, parent_rows: &UInt32Array) -> Result<ArrayRef, ArrowError> {
    use arrow::array::AsArray;
    use arrow::datatypes::DataType;
    match src.data_type() {
        DataType::Utf8 => Ok(Arc::new(DictionaryArray::<UInt32Type>::try_new(
            parent_rows.clone(),
            src.clone(),
        )?)),
        DataType::Dictionary(_, _) => {
            let d = src.as_dictionary_opt::<UInt32Type>().ok_or_else(|| {
                ArrowError::SchemaError(format!("key column of type {}", src.data_type()))
            })?;
            let keys = take(d.keys(), parent_rows, None)?;
            Ok(Arc::new(DictionaryArray::<UInt32Type>::try_new(
                keys.as_primitive::<UInt32Type>().clone(),
                d.values().clone(),
            )?))
        }
        _ => take(src.as_ref(), parent_rows, None),
    }
}

/// The partition (UTC date, `YYYY-MM-DD`) of each row's time, as a dictionary of the batch's
/// days (nearly always one): a key a row instead of ten bytes of date, which cost 1.5% of a
/// 50k convert's samples to build, and a batch's day is then checked on its keys.
fn dates(start: &TimestampMillisecondArray) -> DictionaryArray<UInt32Type> {
    let mut days: Vec<i64> = Vec::new();
    let mut keys: Vec<u32> = Vec::with_capacity(start.len());
    let mut last: Option<(i64, u32)> = None;
    for ms in start.iter() {
        let day = ms.unwrap_or(0).div_euclid(86_400_000);
        let key = match last {
            Some((d, k)) if d == day => k,
            _ => {
                let k = match days.iter().position(|d| *d == day) {
                    Some(i) => i as u32,
                    None => {
                        days.push(day);
                        days.len() as u32 - 1
                    }
                };
                last = Some((day, k));
                k
            }
        };
        keys.push(key);
    }
    let values: StringArray = days
        .iter()
        .map(|d| {
            d.checked_mul(86_400_000)
                .and_then(DateTime::from_timestamp_millis)
                .map(|t| t.date_naive().to_string())
                .unwrap_or_default()
        })
        .map(Some)
        .collect();
    DictionaryArray::new(UInt32Array::from(keys), Arc::new(values))
}

/// Every row's partition the same `value` (tables partitioned by the run's date).
fn one_date(value: &str, rows: usize) -> DictionaryArray<UInt32Type> {
    DictionaryArray::new(
        UInt32Array::from(vec![0; rows]),
        Arc::new(StringArray::from(vec![value])),
    )
}

fn record_error(
    dataset: &Dataset,
    origin: &PageOrigin,
    index: usize,
    rec: &str,
    reason: String,
) -> ConvertError {
    ConvertError::Record {
        origin: origin.clone(),
        index,
        kind: dataset.record.name,
        id: record_id(dataset, rec),
        reason,
    }
}

/// The record's id, if it has a readable one (for error messages).
fn record_id(dataset: &Dataset, rec: &str) -> Option<String> {
    let v: HashMap<&str, &RawValue> = serde_json::from_str(rec).ok()?;
    serde_json::from_str(v.get(dataset.record.id)?.get()).ok()
}

/// Column builders of one table, plus the parent row and position of each row.
struct TableBuf {
    cols: Vec<Col>,
    index: Vec<i64>,
    parent_rows: Vec<u32>,
    extra: StringBuilder,
    raw: StringBuilder,
    len: usize,
    /// The key that followed each key (by its position in the table's lookup; the last two:
    /// the object's start, an unknown key) the last time: records list their keys in the
    /// same order, so the next key is nearly always the guess, checked in place instead of
    /// scanned and hashed ([`Walk::object`]).
    next_key: Vec<u32>,
    /// [`TableBuf::next_key`] of the object flattened into this table's rows.
    flat_next_key: Vec<u32>,
}

/// No guess in [`TableBuf::next_key`].
const NO_GUESS: u32 = u32::MAX;

impl TableBuf {
    fn new(t: Table) -> Self {
        Self {
            cols: t.layout().slots.iter().map(|ty| Col::new(*ty)).collect(),
            index: Vec::new(),
            parent_rows: Vec::new(),
            extra: StringBuilder::new(),
            raw: StringBuilder::new(),
            len: 0,
            next_key: vec![NO_GUESS; t.layout().lookup.positions() + 2],
            flat_next_key: vec![NO_GUESS; t.layout().flat_lookup.positions() + 2],
        }
    }

    /// Ends row `self.len`. Columns its object did not set stay short: their nulls are
    /// appended in bulk when a later row sets them, or at [`TableBuf::pad`] (most columns of a
    /// row are absent, and a per-row pass over every column cost more than the values).
    fn end_row(&mut self, extra: Extra, parent_row: u32, index: i64) {
        match extra.finish() {
            Some(e) => self.extra.append_value(e),
            None => self.extra.append_null(),
        }
        self.parent_rows.push(parent_row);
        self.index.push(index);
        self.len += 1;
    }

    /// Brings every column to `self.len` rows (nulls for the rows that did not set it).
    fn pad(&mut self) {
        for col in &mut self.cols {
            let missing = self.len.saturating_sub(col.len());
            if missing > 0 {
                col.append_nulls(missing);
            }
        }
    }

    /// Whether the current row (`self.len`) has a non-null value in column `slot`.
    fn is_set(&self, slot: usize) -> bool {
        let row = self.len;
        let valid = |v: Option<&[u8]>| v.is_none_or(|v| arrow::util::bit_util::get_bit(v, row));
        let col = &self.cols[slot];
        col.len() > row
            && match col {
                Col::Str(b) => valid(b.validity_slice()),
                Col::Int(b) => valid(b.validity_slice()),
                Col::Float(b) => valid(b.validity_slice()),
                Col::Bool(b) => valid(b.validity_slice()),
                Col::Time(b) => valid(b.validity_slice()),
                Col::StrList(b) => valid(b.validity_slice()),
                Col::IntList(b) => valid(b.validity_slice()),
            }
    }

    /// Sets column `slot` of row `self.len` from the reader's next value. Returns false (and
    /// sets nothing; the reader is somewhere in the value) when the value has another type, or
    /// the object had the key already.
    fn set(&mut self, slot: usize, r: &mut Reader<'_>) -> json::Result<bool> {
        let row = self.len;
        let col = &mut self.cols[slot];
        let have = col.len();
        if have > row {
            return Ok(false);
        }
        if have < row {
            col.append_nulls(row - have);
        }
        col.append_from(r)
    }
}

enum Col {
    Str(StringBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Time(TimestampMillisecondBuilder),
    StrList(ListBuilder<StringBuilder>),
    IntList(ListBuilder<Int64Builder>),
}

impl Col {
    fn new(ty: Ty) -> Self {
        match ty {
            Ty::Str => Col::Str(StringBuilder::new()),
            Ty::Int => Col::Int(Int64Builder::new()),
            Ty::Float => Col::Float(Float64Builder::new()),
            Ty::Bool => Col::Bool(BooleanBuilder::new()),
            Ty::Time => Col::Time(TimestampMillisecondBuilder::new().with_timezone("UTC")),
            Ty::StrList => Col::StrList(ListBuilder::new(StringBuilder::new())),
            Ty::IntList => Col::IntList(ListBuilder::new(Int64Builder::new())),
        }
    }

    fn len(&self) -> usize {
        use arrow::array::ArrayBuilder;
        match self {
            Col::Str(b) => b.len(),
            Col::Int(b) => b.len(),
            Col::Float(b) => b.len(),
            Col::Bool(b) => b.len(),
            Col::Time(b) => b.len(),
            Col::StrList(b) => b.len(),
            Col::IntList(b) => b.len(),
        }
    }

    fn append_null(&mut self) {
        match self {
            Col::Str(b) => b.append_null(),
            Col::Int(b) => b.append_null(),
            Col::Float(b) => b.append_null(),
            Col::Bool(b) => b.append_null(),
            Col::Time(b) => b.append_null(),
            Col::StrList(b) => b.append(false),
            Col::IntList(b) => b.append(false),
        }
    }

    fn append_nulls(&mut self, n: usize) {
        match self {
            Col::Str(b) => b.append_nulls(n),
            Col::Int(b) => b.append_nulls(n),
            Col::Float(b) => b.append_nulls(n),
            Col::Bool(b) => b.append_nulls(n),
            Col::Time(b) => b.append_nulls(n),
            Col::StrList(b) => b.append_nulls(n),
            Col::IntList(b) => b.append_nulls(n),
        }
    }

    /// Reads the next value as this column's type and appends it (`null` appends a null).
    /// Returns false, appending nothing, when the value has another type.
    fn append_from(&mut self, r: &mut Reader<'_>) -> json::Result<bool> {
        let c = r.peek()?;
        if c == b'n' {
            r.literal()?;
            self.append_null();
            return Ok(true);
        }
        let number = c == b'-' || c.is_ascii_digit();
        Ok(match self {
            Col::Str(b) => {
                c == b'"'
                    && match r.string()? {
                        Some(s) => {
                            b.append_value(s);
                            true
                        }
                        None => false,
                    }
            }
            Col::Int(b) => number && r.number()?.parse().map(|v| b.append_value(v)).is_ok(),
            Col::Float(b) => number && r.number()?.parse().map(|v| b.append_value(v)).is_ok(),
            Col::Bool(b) => {
                (c == b't' || c == b'f') && {
                    b.append_value(r.literal()? == "true");
                    true
                }
            }
            Col::Time(b) => {
                c == b'"'
                    && match r.string()?.and_then(|s| parse_time_ms(&s)) {
                        Some(v) => {
                            b.append_value(v);
                            true
                        }
                        None => false,
                    }
            }
            Col::StrList(b) => {
                c == b'['
                    && append_list(
                        b,
                        list(r, |r, c| match c {
                            b'"' => r.string(),
                            _ => Ok(None),
                        })?,
                        |v, i| v.append_option(i),
                    )
            }
            Col::IntList(b) => {
                c == b'['
                    && append_list(
                        b,
                        list(r, |r, c| match c {
                            b'-' | b'0'..=b'9' => Ok(r.number()?.parse::<i64>().ok()),
                            _ => Ok(None),
                        })?,
                        |v, i| v.append_option(i),
                    )
            }
        })
    }

    /// The column so far; the builder starts again with the room this batch took and an
    /// eighth more (batches are alike: growing from nothing each time copied every buffer
    /// several times, and a batch a little larger than the last copied it once more).
    fn finish(&mut self) -> ArrayRef {
        use arrow::array::ArrayBuilder;
        let more = |n: usize| n + n / 8;
        match self {
            Col::Str(b) => Arc::new(finish_again(b)),
            Col::Int(b) => {
                let a = b.finish();
                *b = Int64Builder::with_capacity(more(a.len()));
                Arc::new(a)
            }
            Col::Float(b) => {
                let a = b.finish();
                *b = Float64Builder::with_capacity(more(a.len()));
                Arc::new(a)
            }
            Col::Bool(b) => {
                let a = b.finish();
                *b = BooleanBuilder::with_capacity(more(a.len()));
                Arc::new(a)
            }
            Col::Time(b) => {
                let a = b.finish();
                *b = TimestampMillisecondBuilder::with_capacity(more(a.len())).with_timezone("UTC");
                Arc::new(a)
            }
            Col::StrList(b) => {
                let (items, bytes) = (b.values_ref().len(), b.values_ref().values_slice().len());
                let a = b.finish();
                let values = StringBuilder::with_capacity(more(items), more(bytes));
                *b = ListBuilder::with_capacity(values, more(a.len()));
                Arc::new(a)
            }
            Col::IntList(b) => {
                let items = b.values_ref().len();
                let a = b.finish();
                *b = ListBuilder::with_capacity(
                    Int64Builder::with_capacity(more(items)),
                    more(a.len()),
                );
                Arc::new(a)
            }
        }
    }
}

/// Appends a list [`list`] read; false, appending nothing, when it held another type.
fn append_list<B: arrow::array::ArrayBuilder, T>(
    b: &mut ListBuilder<B>,
    items: Option<Vec<Option<T>>>,
    mut push: impl FnMut(&mut B, Option<T>),
) -> bool {
    let Some(items) = items else {
        return false;
    };
    for i in items {
        push(b.values(), i);
    }
    b.append(true);
    true
}

/// A list at `[` whose elements are `null` or what `item` reads (given the element's first
/// byte); `None` when `item` takes an element for another type.
fn list<'a, T>(
    r: &mut Reader<'a>,
    mut item: impl FnMut(&mut Reader<'a>, u8) -> json::Result<Option<T>>,
) -> json::Result<Option<Vec<Option<T>>>> {
    r.open();
    let mut first = true;
    let mut items = Vec::new();
    while r.element(&mut first)? {
        match r.peek()? {
            b'n' => {
                r.literal()?;
                items.push(None);
            }
            c => match item(r, c)? {
                Some(v) => items.push(Some(v)),
                None => return Ok(None),
            },
        }
    }
    Ok(Some(items))
}

/// The `extra` JSON object of one row, built as text.
#[derive(Default)]
struct Extra(String);

impl Extra {
    fn push(&mut self, key: &str, raw: &str) {
        self.0.push(if self.0.is_empty() { '{' } else { ',' });
        // Keys come from JSON object keys: re-escape them.
        self.0.push_str(&serde_json::Value::from(key).to_string());
        self.0.push(':');
        self.0.push_str(raw);
    }

    fn finish(mut self) -> Option<String> {
        if self.0.is_empty() {
            None
        } else {
            self.0.push('}');
            Some(self.0)
        }
    }
}

/// A key as read, and what its table makes of it (`None`: a key the table does not know).
type KeyEntry<'a, 'l> = (Cow<'a, str>, Option<&'l Entry>);

/// The keys of one object, each checked first against the key that followed the previous one
/// last time (`guesses`, by position in `lookup`; the last two: the object's start, an unknown
/// key) before it is scanned and hashed: records list their keys in one order.
struct Keys<'l> {
    lookup: &'l KeyMap<Entry>,
    /// Where the previous key sits in `guesses`.
    prev: usize,
    first: bool,
}

impl<'l> Keys<'l> {
    fn new(lookup: &'l KeyMap<Entry>) -> Self {
        Self {
            lookup,
            prev: lookup.positions(),
            first: true,
        }
    }

    /// The next key and what it is (`None` for a key `lookup` does not know); `None` at the
    /// object's end. Inlined into its two loops: called once a key of every record, it cost
    /// 1.5% more CPU as a call.
    #[inline(always)]
    fn next<'a>(
        &mut self,
        r: &mut Reader<'a>,
        guesses: &mut [u32],
    ) -> Result<Option<KeyEntry<'a, 'l>>, Fail> {
        if !r.next_key(&mut self.first)? {
            return Ok(None);
        }
        let guess = guesses[self.prev];
        if guess != NO_GUESS {
            if let Some((key, entry)) = self.lookup.key_at(guess as usize, r.key_text()) {
                r.guessed_key(key.len())?;
                self.prev = guess as usize;
                return Ok(Some((Cow::Borrowed(key), Some(entry))));
            }
        }
        let key = r.key_rest()?;
        let pos = self.lookup.find(&key);
        guesses[self.prev] = pos.map_or(NO_GUESS, |p| p as u32);
        self.prev = pos.unwrap_or(self.lookup.positions() + 1);
        let entry = pos.and_then(|p| self.lookup.at(p)).map(|(_, e)| e);
        Ok(Some((key, entry)))
    }
}

/// Why a record was not converted.
enum Fail {
    /// Not JSON.
    Syntax(json::SyntaxError),
    /// JSON, but not a record of the root table (in our words: a value is never quoted).
    Refused(String),
}

impl From<json::SyntaxError> for Fail {
    fn from(e: json::SyntaxError) -> Self {
        Fail::Syntax(e)
    }
}

/// One record's walk along its tables' layouts: each value is read once, straight into its
/// column, or skipped and kept verbatim in the `extra` of the row holding it.
struct Walk<'c, 'a> {
    r: Reader<'a>,
    bufs: &'c mut [TableBuf],
    stats: &'c mut ConvertStats,
    /// Type mismatches in this record.
    mismatches: u64,
}

impl<'a> Walk<'_, 'a> {
    fn count(map: &mut BTreeMap<String, u64>, table: Table, key: &str) {
        *map.entry(format!("{}.{key}", table.name())).or_default() += 1;
    }

    fn unknown(&mut self, table: Table, key: &str) {
        Self::count(&mut self.stats.unknown_fields, table, key);
    }

    fn mismatch(&mut self, table: Table, key: &str) {
        self.mismatches += 1;
        Self::count(&mut self.stats.type_mismatches, table, key);
    }

    /// One object, a row of `root`: the whole text when `whole`, else its start.
    fn record(&mut self, root: Table, whole: bool) -> Result<(), Fail> {
        if self.r.peek()? != b'{' {
            self.r.skip()?;
            if whole {
                self.r.end()?;
            }
            return Err(Fail::Refused("the record is not a JSON object".into()));
        }
        self.object(root, 0, 0)?;
        if whole {
            self.r.end()?;
        }
        Ok(())
    }

    /// At `{`: one row of `t`, and rows of its child tables.
    fn object(&mut self, t: Table, parent_row: u32, index: i64) -> Result<(), Fail> {
        let layout = t.layout();
        let row = u32::try_from(self.bufs[t.idx()].len)
            .map_err(|_| Fail::Refused("too many rows in one batch".into()))?;
        let mut extra = Extra::default();
        self.r.open();
        let mut keys = Keys::new(&layout.lookup);
        while let Some((key, entry)) = keys.next(&mut self.r, &mut self.bufs[t.idx()].next_key)? {
            match entry {
                Some(Entry::Slot(slot, _)) => {
                    if let Some(raw) = self.field(t, *slot)? {
                        extra.push(&key, raw);
                        self.mismatch(t, &key);
                    }
                }
                Some(Entry::Children(child)) => self.list(
                    *child,
                    row,
                    OddSlot {
                        extra: &mut extra,
                        owner: t,
                        key: &key,
                    },
                )?,
                Some(Entry::Map(child)) => self.map(
                    *child,
                    row,
                    OddSlot {
                        extra: &mut extra,
                        owner: t,
                        key: &key,
                    },
                )?,
                Some(Entry::Flatten) => self.flat(t, row, &mut extra, &key)?,
                None => {
                    let raw = self.r.skip()?;
                    extra.push(&key, raw);
                    self.unknown(t, &key);
                }
            }
        }
        let buf = &mut self.bufs[t.idx()];
        for json in t.spec().required {
            if let Some(Entry::Slot(slot, ty)) = layout.lookup.get(json) {
                if !buf.is_set(*slot) {
                    let what = match ty {
                        Ty::Time => "an ISO-8601 time",
                        Ty::Str => "a string",
                        Ty::Int => "an integer",
                        Ty::Float => "a number",
                        Ty::Bool => "a boolean",
                        Ty::StrList | Ty::IntList => "a list",
                    };
                    return Err(Fail::Refused(format!("$.{json} is missing or not {what}")));
                }
            }
        }
        buf.end_row(extra, parent_row, index);
        Ok(())
    }

    /// The next value into column `slot` of `t`'s current row; its text when it does not fit
    /// (another type, or the object set the column already).
    fn field(&mut self, t: Table, slot: usize) -> Result<Option<&'a str>, Fail> {
        self.r.peek()?;
        let start = self.r.pos();
        if self.bufs[t.idx()].set(slot, &mut self.r)? {
            return Ok(None);
        }
        self.r.reset(start);
        Ok(Some(self.r.skip()?))
    }

    /// A value where a list or an object belongs: `null` is an empty one, anything else goes
    /// to `odd`.
    fn other(&mut self, odd: &mut OddSlot<'_>) -> Result<(), Fail> {
        let raw = self.r.skip()?;
        if raw != "null" {
            odd.keep(self, raw, None);
        }
        Ok(())
    }

    /// A list of objects: rows of `child`. Anything else, and elements that are not objects,
    /// go to `odd`; `null` is an empty list.
    fn list(&mut self, child: Table, parent_row: u32, mut odd: OddSlot<'_>) -> Result<(), Fail> {
        match self.r.peek()? {
            b'[' => {
                self.r.open();
                let mut first = true;
                let mut index = 0i64;
                while self.r.element(&mut first)? {
                    if self.r.peek()? == b'{' {
                        self.object(child, parent_row, index)?;
                    } else {
                        let raw = self.r.skip()?;
                        odd.keep(self, raw, Some(index));
                    }
                    index += 1;
                }
            }
            _ => self.other(&mut odd)?,
        }
        Ok(())
    }

    /// A string map (participant attributes): name/value rows of `child`; a value that is not
    /// a string is kept as its JSON text. Anything but an object goes to `odd`.
    fn map(&mut self, child: Table, parent_row: u32, mut odd: OddSlot<'_>) -> Result<(), Fail> {
        match self.r.peek()? {
            b'{' => {
                self.r.open();
                let mut first = true;
                let mut index = 0i64;
                while let Some(key) = self.r.key(&mut first)? {
                    let buf = &mut self.bufs[child.idx()];
                    let [Col::Str(names), Col::Str(values)] = buf.cols.as_mut_slice() else {
                        unreachable!("a map table's slots are name and value");
                    };
                    names.append_value(key);
                    let start = {
                        self.r.peek()?;
                        self.r.pos()
                    };
                    match self.r.peek()? {
                        b'"' => match self.r.string()? {
                            Some(s) => values.append_value(s),
                            None => values.append_value(self.r.since(start)),
                        },
                        b'n' => {
                            self.r.literal()?;
                            values.append_null();
                        }
                        _ => values.append_value(self.r.skip()?),
                    }
                    buf.end_row(Extra::default(), parent_row, index);
                    index += 1;
                }
            }
            _ => self.other(&mut odd)?,
        }
        Ok(())
    }

    /// A nested object flattened into `t`'s current row (the session's `flow`), its keys
    /// prefixed in `extra` and the counts. Anything but an object goes to that `extra`.
    fn flat(&mut self, t: Table, row: u32, extra: &mut Extra, prefix: &str) -> Result<(), Fail> {
        match self.r.peek()? {
            b'{' => {
                let layout = t.layout();
                self.r.open();
                let mut keys = Keys::new(&layout.flat_lookup);
                while let Some((key, entry)) =
                    keys.next(&mut self.r, &mut self.bufs[t.idx()].flat_next_key)?
                {
                    let k = || format!("{prefix}.{key}");
                    match entry {
                        Some(Entry::Slot(slot, _)) => {
                            if let Some(raw) = self.field(t, *slot)? {
                                let k = k();
                                extra.push(&k, raw);
                                self.mismatch(t, &k);
                            }
                        }
                        Some(Entry::Children(child)) => {
                            let k = k();
                            self.list(
                                *child,
                                row,
                                OddSlot {
                                    extra: &mut *extra,
                                    owner: t,
                                    key: &k,
                                },
                            )?
                        }
                        _ => {
                            let raw = self.r.skip()?;
                            let k = k();
                            extra.push(&k, raw);
                            self.unknown(t, &k);
                        }
                    }
                }
            }
            _ => self.other(&mut OddSlot {
                extra,
                owner: t,
                key: prefix,
            })?,
        }
        Ok(())
    }
}

/// Where a structurally odd value goes: the `extra` of the row that holds it, under its path
/// relative to that row's object (`participants`, `participants[3]`, `flow.outcomes`).
struct OddSlot<'e> {
    extra: &'e mut Extra,
    /// The table of the row holding the value (for the count).
    owner: Table,
    key: &'e str,
}

impl OddSlot<'_> {
    /// Keeps `raw`, the value's text, written compactly (as odd values always were).
    fn keep(&mut self, walk: &mut Walk<'_, '_>, raw: &str, element: Option<i64>) {
        let compact = serde_json::from_str::<serde_json::Value>(raw)
            .map(|v| v.to_string())
            // Valid JSON that serde_json cannot hold (an unpaired surrogate, a number beyond
            // f64): kept as it came.
            .unwrap_or_else(|_| raw.to_string());
        match element {
            None => {
                self.extra.push(self.key, &compact);
                walk.mismatch(self.owner, self.key);
            }
            Some(i) => {
                self.extra.push(&format!("{}[{i}]", self.key), &compact);
                walk.mismatch(self.owner, &format!("{}[]", self.key));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::conversations as conv;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::TimestampMillisecondType;
    use bytes::Bytes;

    /// Each row's day, as keys into the batch's days in the order first seen: runs, a day
    /// coming back, times before 1970 and a missing time (1970-01-01, as before).
    #[test]
    fn dates_key_each_row_to_its_day() {
        let ms = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .expect("time")
                .timestamp_millis()
        };
        let times = TimestampMillisecondArray::from(vec![
            Some(ms("2026-10-20T23:59:59.999Z")),
            Some(ms("2026-10-20T00:00:00Z")),
            Some(ms("2026-10-21T00:00:00Z")),
            Some(ms("2026-10-20T12:00:00Z")),
            Some(ms("1969-12-31T23:00:00Z")),
            None,
            Some(ms("2026-10-21T05:00:00Z")),
        ]);
        let d = dates(&times);
        assert_eq!(d.keys().values().to_vec(), vec![0, 0, 1, 0, 2, 3, 1]);
        let values = d.values().as_string::<i32>();
        let days: Vec<&str> = values.iter().map(|v| v.expect("day")).collect();
        assert_eq!(
            days,
            ["2026-10-20", "2026-10-21", "1969-12-31", "1970-01-01"]
        );
        assert_eq!(d.null_count(), 0);
        let one = one_date("2026-11-19", 3);
        assert_eq!(one.keys().values().to_vec(), vec![0, 0, 0]);
        assert_eq!(one.values().as_string::<i32>().value(0), "2026-11-19");
    }

    fn page(json: &str) -> Page {
        Page::parse(
            Bytes::from(json.to_string()),
            PageOrigin::new("test page"),
            conv::DATASET.envelope,
        )
        .expect("page")
    }

    fn convert(json: &str) -> (HashMap<Table, RecordBatch>, ConvertStats) {
        let mut c = Converter::new(&conv::DATASET, ConvertOptions::default());
        let mut batches = c.push_page(&page(json)).expect("push");
        batches.extend(c.finish().expect("finish"));
        let map = batches.into_iter().map(|b| (b.table, b.batch)).collect();
        (map, c.stats().clone())
    }

    fn col<'a>(b: &'a RecordBatch, name: &str) -> &'a ArrayRef {
        b.column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name}"))
    }

    fn strs(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
        // String keys are dictionaries over their parent's column.
        let strings =
            arrow::compute::cast(col(b, name), &arrow::datatypes::DataType::Utf8).expect("strings");
        strings
            .as_string::<i32>()
            .iter()
            .map(|s| s.map(str::to_string))
            .collect()
    }

    const REC: &str = r#"{"conversations":[
      {"participants":[{"sessions":[{"segments":[{"segmentType":"interact","segmentStart":"2026-11-20T10:00:01.000Z"},{"segmentType":"teleporting","segmentStart":"2026-11-20T10:00:05.000Z","properties":[{"property":"p","propertyType":"string","value":"v"}]}],"sessionId":"s1","mediaType":"voice","flow":{"flowId":"f1","outcomes":[{"flowOutcome":"o1"}],"futureFlowField":1},"metrics":[{"name":"tTalk","value":1234,"emitDate":"2026-11-20T10:05:00.000Z"}]}],"participantId":"p1","purpose":"customer","participantName":"José Müller","attributes":{"a":"1","b":"x\"y"}}],
       "conversationStart":"2026-11-20T23:59:00.000Z","conversationId":"c1","divisionIds":["d1","d2"],
       "mediaStatsMinConversationMos":"bad","sentimentScore2027":{"v":1}},
      {"conversationId":"c2","conversationStart":"2026-11-21T00:00:00.000Z","conversationEnd":null}
    ],"totalHits":2}"#;

    #[test]
    fn converts_nested_records_with_keys_unknown_fields_and_mismatches() {
        let (b, stats) = convert(REC);
        let conv = &b[&conv::CONVERSATIONS];
        assert_eq!(conv.num_rows(), 2);
        assert_eq!(
            strs(conv, "conversation_id"),
            [Some("c1".into()), Some("c2".into())]
        );
        assert_eq!(
            strs(conv, "conversation_date"),
            [Some("2026-11-20".into()), Some("2026-11-21".into())]
        );
        let extra = strs(conv, "extra");
        let e: serde_json::Value =
            serde_json::from_str(extra[0].as_deref().expect("extra")).expect("json");
        assert_eq!(
            e,
            serde_json::json!({"mediaStatsMinConversationMos": "bad", "sentimentScore2027": {"v": 1}})
        );
        assert_eq!(extra[1], None);
        assert!(col(conv, "media_stats_min_conversation_mos").is_null(0));
        assert!(col(conv, "conversation_end").is_null(1));
        let divs = col(conv, "division_ids").as_list::<i32>();
        assert_eq!(
            divs.value(0).as_string::<i32>().iter().collect::<Vec<_>>(),
            [Some("d1"), Some("d2")]
        );
        assert_eq!(stats.type_mismatches(), 1);
        assert_eq!(stats.unknown_fields(), 2); // sentimentScore2027 + flow.futureFlowField

        // Segments came before sessionId in the JSON; keys are still right.
        let seg = &b[&conv::SEGMENTS];
        assert_eq!(seg.num_rows(), 2);
        assert_eq!(
            strs(seg, "session_id"),
            [Some("s1".into()), Some("s1".into())]
        );
        assert_eq!(
            strs(seg, "participant_id"),
            [Some("p1".into()), Some("p1".into())]
        );
        assert_eq!(
            strs(seg, "conversation_id"),
            [Some("c1".into()), Some("c1".into())]
        );
        assert_eq!(
            strs(seg, "segment_type"),
            [Some("interact".into()), Some("teleporting".into())]
        );
        // A string key is no copy: a dictionary over the parent's own column (a grandparent's
        // key re-keyed to it), its keys the parent rows.
        let dict = |b: &RecordBatch, name: &str| {
            col(b, name)
                .as_dictionary_opt::<arrow::datatypes::UInt32Type>()
                .unwrap_or_else(|| panic!("{name} is a dictionary"))
                .clone()
        };
        let sessions = &b[&conv::SESSIONS];
        let parts = &b[&conv::PARTICIPANTS];
        let seg_sessions = dict(seg, "session_id");
        assert_eq!(seg_sessions.keys().values().to_vec(), vec![0, 0]);
        assert_eq!(
            seg_sessions.values().to_data().buffers()[1].as_ptr(),
            col(sessions, "session_id").to_data().buffers()[1].as_ptr(),
            "segments.session_id holds the sessions' ids, not a copy"
        );
        assert_eq!(
            dict(seg, "conversation_id").values().to_data().buffers()[1].as_ptr(),
            col(conv, "conversation_id").to_data().buffers()[1].as_ptr(),
            "segments.conversation_id holds the conversations' ids"
        );
        assert_eq!(
            dict(parts, "conversation_id").keys().values().to_vec(),
            vec![0]
        );
        let idx = col(seg, "segment_index").as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(idx.values().to_vec(), vec![0, 1]);
        let start = col(seg, "conversation_start").as_primitive::<TimestampMillisecondType>();
        assert_eq!(
            start.value(0),
            parse_time_ms("2026-11-20T23:59:00.000Z").expect("t")
        );

        let props = &b[&conv::SEGMENT_PROPERTIES];
        assert_eq!(
            col(props, "segment_index")
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(0),
            1
        );
        let sess = &b[&conv::SESSIONS];
        assert_eq!(strs(sess, "flow_id"), [Some("f1".into())]);
        let e: serde_json::Value =
            serde_json::from_str(strs(sess, "extra")[0].as_deref().expect("extra")).expect("json");
        assert_eq!(e, serde_json::json!({"flow.futureFlowField": 1}));
        assert_eq!(
            strs(&b[&conv::FLOW_OUTCOMES], "session_id"),
            [Some("s1".into())]
        );
        let attrs = &b[&conv::PARTICIPANT_ATTRIBUTES];
        assert_eq!(strs(attrs, "name"), [Some("a".into()), Some("b".into())]);
        assert_eq!(
            strs(attrs, "value"),
            [Some("1".into()), Some("x\"y".into())]
        );
        assert_eq!(
            strs(&b[&conv::PARTICIPANTS], "participant_name"),
            [Some("José Müller".into())]
        );
        let m = &b[&conv::SESSION_METRICS];
        assert_eq!(
            col(m, "value")
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(0),
            1234
        );
        // Tables the records don't fill produce no batch.
        assert!(!b.contains_key(&conv::SURVEYS));
    }

    #[test]
    fn bad_records_name_page_and_record() {
        for (json, needle) in [
            (
                r#"{"conversations":[{"conversationId":"c1","conversationStart":"2026-11-20T00:00:00.000Z"},{"conversationStart":"2026-11-20T00:00:00.000Z"}]}"#,
                "record 1: $.conversationId is missing",
            ),
            (
                r#"{"conversations":[{"conversationId":"c9","conversationStart":"soon"}]}"#,
                "record 0 (conversation c9): $.conversationStart",
            ),
            (
                r#"{"conversations":[[1,2]]}"#,
                "record 0: the record is not a JSON object",
            ),
            (
                r#"{"conversations":["Jane Roe +1 555 0100"]}"#,
                "record 0: the record is not a JSON object",
            ),
            (
                r#"{"conversations":[{"conversationId":{"n":"Jane Roe +1 555 0100"},"conversationStart":"2026-11-20T00:00:00.000Z"}]}"#,
                "record 0: $.conversationId is missing or not a string",
            ),
        ] {
            let mut c = Converter::new(&conv::DATASET, ConvertOptions::default());
            let err = c.push_page(&page(json)).expect_err(json).to_string();
            assert!(err.starts_with("test page: "), "{err}");
            assert!(err.contains(needle), "{err}");
            assert!(!err.contains("555"), "{err}");
        }
    }

    /// `extra` and `raw` (with `--raw`) land on their own rows, and the rows between and
    /// after are null.
    #[test]
    fn sparse_extra_and_raw_land_on_their_rows() {
        let odd = [false, true, false, false, true, false];
        let recs: Vec<String> = odd
            .iter()
            .enumerate()
            .map(|(i, odd)| {
                let unknown = if *odd { r#","zzUnknown":1"# } else { "" };
                format!(
                    r#"{{"conversationId":"c{i}","conversationStart":"2026-11-20T10:00:00.000Z"{unknown}}}"#
                )
            })
            .collect();
        let json = format!(r#"{{"conversations":[{}]}}"#, recs.join(","));
        for raw in [false, true] {
            let mut c = Converter::new(
                &conv::DATASET,
                ConvertOptions {
                    raw,
                    ..ConvertOptions::default()
                },
            );
            let mut batches = c.push_page(&page(&json)).expect("push");
            batches.extend(c.finish().expect("finish"));
            let b = &batches
                .iter()
                .find(|b| b.table == conv::CONVERSATIONS)
                .expect("conversations")
                .batch;
            let extra = strs(b, "extra");
            let set: Vec<bool> = extra.iter().map(Option::is_some).collect();
            assert_eq!(set, odd, "raw {raw}");
            for e in extra.iter().flatten() {
                assert_eq!(e, r#"{"zzUnknown":1}"#);
            }
            let raws = strs(b, "raw");
            assert_eq!(raws.len(), recs.len());
            for (got, want) in raws.iter().zip(&recs) {
                assert_eq!(got.as_deref(), raw.then_some(want.as_str()), "raw {raw}");
            }
        }
    }

    #[test]
    fn structurally_odd_values_go_to_the_extra_of_the_row_holding_them() {
        const MARK: &str = "Jane Roe +1 555 0100";
        let json = format!(
            r#"{{"conversations":[
          {{"conversationId":"c1","conversationStart":"2026-11-20T10:00:00.000Z",
           "participants":[
             {{"participantId":"p1","sessions":{{"sessionId":"s1","mediaType":"voice"}}}},
             null,
             "{MARK}",
             {{"participantId":"p4","attributes":["{MARK}"],"sessions":[
                {{"sessionId":"s4","flow":[{{"flowId":"f1"}}],"metrics":"{MARK}",
                  "segments":[{{"segmentType":"interact"}},null,{{"segmentType":"wrapup"}}]}}]}},
             {{"participantId":"p5","sessions":[{{"sessionId":"s5","flow":{{"outcomes":{{"flowOutcome":"o"}}}}}}]}}
           ]}},
          {{"conversationId":"c2","conversationStart":"2026-11-21T00:00:00.000Z","participants":7}}
        ]}}"#
        );
        let (b, stats) = convert(&json);
        let extra = |t: Table, row: usize| -> serde_json::Value {
            serde_json::from_str(strs(&b[&t], "extra")[row].as_deref().expect("extra"))
                .expect("json")
        };
        // The rest of each record landed.
        assert_eq!(
            strs(&b[&conv::CONVERSATIONS], "conversation_id"),
            [Some("c1".into()), Some("c2".into())]
        );
        assert_eq!(
            strs(&b[&conv::PARTICIPANTS], "participant_id"),
            [Some("p1".into()), Some("p4".into()), Some("p5".into())]
        );
        // Elements keep their positions: p4 is participant 3.
        let idx = col(&b[&conv::PARTICIPANTS], "participant_index")
            .as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(idx.values().to_vec(), vec![0, 3, 4]);
        assert_eq!(
            strs(&b[&conv::SESSIONS], "session_id"),
            [Some("s4".into()), Some("s5".into())]
        );
        assert_eq!(
            strs(&b[&conv::SEGMENTS], "segment_type"),
            [Some("interact".into()), Some("wrapup".into())]
        );
        // Each odd part is in the extra of the row holding it, as JSON.
        assert_eq!(
            extra(conv::CONVERSATIONS, 0),
            serde_json::json!({"participants[1]": null, "participants[2]": MARK})
        );
        assert_eq!(
            extra(conv::CONVERSATIONS, 1),
            serde_json::json!({"participants": 7})
        );
        assert_eq!(
            extra(conv::PARTICIPANTS, 0),
            serde_json::json!({"sessions": {"sessionId": "s1", "mediaType": "voice"}})
        );
        assert_eq!(
            extra(conv::PARTICIPANTS, 1),
            serde_json::json!({"attributes": [MARK]})
        );
        assert_eq!(
            extra(conv::SESSIONS, 0),
            serde_json::json!({"flow": [{"flowId": "f1"}], "metrics": MARK, "segments[1]": null})
        );
        assert_eq!(
            extra(conv::SESSIONS, 1),
            serde_json::json!({"flow.outcomes": {"flowOutcome": "o"}})
        );
        // Counted, by field and by day.
        assert_eq!(stats.type_mismatches(), 9, "{:?}", stats.type_mismatches);
        assert_eq!(stats.type_mismatches["conversations.participants[]"], 2);
        assert_eq!(stats.type_mismatches["sessions.segments[]"], 1);
        assert_eq!(
            stats
                .type_mismatches_by_date
                .values()
                .copied()
                .collect::<Vec<_>>(),
            [8, 1]
        );
        assert_eq!(stats.conversations, 2);
    }

    #[test]
    fn values_no_rust_string_can_hold_are_kept_verbatim() {
        // Valid JSON escaping a lone UTF-16 surrogate: no column can take it, and serde_json
        // cannot hold it either; it is kept as it came, and the record still converts.
        let json = r#"{"conversations":[{"conversationId":"c1","conversationStart":"2026-11-20T10:00:00.000Z",
          "externalTag":"a\ud800","participants":["\udc00",{"participantId":"p1"}]}]}"#;
        let (b, stats) = convert(json);
        let conv = &b[&conv::CONVERSATIONS];
        assert!(col(conv, "external_tag").is_null(0));
        assert_eq!(
            strs(conv, "extra")[0].as_deref(),
            Some(r#"{"externalTag":"a\ud800","participants[0]":"\udc00"}"#)
        );
        assert_eq!(
            strs(&b[&conv::PARTICIPANTS], "participant_id"),
            [Some("p1".into())]
        );
        assert_eq!(stats.type_mismatches(), 2);
    }

    #[test]
    fn batches_flush_at_the_row_target_without_losing_rows() {
        let mut recs = Vec::new();
        for i in 0..250 {
            recs.push(format!(r#"{{"conversationId":"c{i}","conversationStart":"2026-11-20T00:00:00.000Z","participants":[{{"participantId":"p{i}"}},{{"participantId":"q{i}"}}]}}"#));
        }
        let json = format!(r#"{{"conversations":[{}]}}"#, recs.join(","));
        let mut c = Converter::new(
            &conv::DATASET,
            ConvertOptions {
                batch_rows: 100,
                ..ConvertOptions::default()
            },
        );
        let mut batches = c.push_page(&page(&json)).expect("push");
        assert!(batches.len() >= 4, "{}", batches.len());
        batches.extend(c.finish().expect("finish"));
        let rows = |t| {
            batches
                .iter()
                .filter(|b| b.table == t)
                .map(|b| b.batch.num_rows())
                .sum::<usize>()
        };
        assert_eq!(rows(conv::CONVERSATIONS), 250);
        assert_eq!(rows(conv::PARTICIPANTS), 500);
        // Keys stay aligned across flushes.
        for b in batches.iter().filter(|b| b.table == conv::PARTICIPANTS) {
            let conv = strs(&b.batch, "conversation_id");
            let part = strs(&b.batch, "participant_id");
            for (c, p) in conv.iter().zip(&part) {
                let (c, p) = (c.as_deref().expect("c"), p.as_deref().expect("p"));
                assert_eq!(&c[1..], &p[1..]);
            }
        }
        assert_eq!(c.stats().conversations, 250);
        assert_eq!(c.stats().rows["participants"], 500);
    }

    /// Keys are checked against the key that followed last time before being scanned: the
    /// rows and counts must be those of a converter without guesses (a fresh one per record),
    /// whatever the order, spelling (escapes, near misses) or repetition of the keys.
    #[test]
    fn guessed_keys_convert_like_scanned_keys() {
        let forms = [
            r#"{"conversationId":"c#","conversationStart":"2026-11-20T10:00:00.000Z","originatingDirection":"inbound","participants":[{"participantId":"p#","purpose":"agent","userId":"u#"}]}"#,
            r#"{"participants":[{"userId":"u#","purpose":"agent","participantId":"p#"}],"originatingDirection":"outbound","conversationStart":"2026-11-20T11:00:00.000Z","conversationId":"c#"}"#,
            r#"{"conversation\u0049d":"c#","conversationStart":"2026-11-20T12:00:00.000Z","conversationIdX":1,"participants":[{"participantId":"p#","purpos":"x","purpose":"customer"}]}"#,
            r#"{"conversationId":"c#","conversationStart":"2026-11-20T13:00:00.000Z","originatingDirection":"inbound","originatingDirection":"outbound","participants":[]}"#,
            r#"{"conversationId" : "c#" , "conversationStart":"2026-11-20T14:00:00.000Z","originatingDirectio":"x","participants":[{"participantId":"p#","purpose":"agent","userId":"u#"}]}"#,
        ];
        let mut recs = Vec::new();
        for round in 0..3 {
            for (i, f) in forms.iter().enumerate() {
                recs.push(f.replace('#', &format!("{round}{i}")));
            }
        }
        let page_of = |recs: &[String]| format!(r#"{{"conversations":[{}]}}"#, recs.join(","));
        let (together, stats) = convert(&page_of(&recs));
        let mut alone: HashMap<Table, Vec<RecordBatch>> = HashMap::new();
        let (mut unknown, mut mismatches) = (BTreeMap::new(), BTreeMap::new());
        for r in &recs {
            let (b, st) = convert(&page_of(std::slice::from_ref(r)));
            for (t, batch) in b {
                alone.entry(t).or_default().push(batch);
            }
            for (k, n) in st.unknown_fields {
                *unknown.entry(k).or_insert(0) += n;
            }
            for (k, n) in st.type_mismatches {
                *mismatches.entry(k).or_insert(0) += n;
            }
        }
        assert_eq!(together.len(), alone.len());
        for (t, batches) in &alone {
            let want =
                arrow::compute::concat_batches(&batches[0].schema(), batches).expect("concat");
            assert_eq!(together[t], want, "{t}");
        }
        assert_eq!(together[&conv::CONVERSATIONS].num_rows(), 15);
        assert_eq!(together[&conv::PARTICIPANTS].num_rows(), 12);
        assert_eq!(stats.unknown_fields, unknown);
        assert_eq!(stats.type_mismatches, mismatches);
        assert_eq!(stats.unknown_fields["conversations.conversationIdX"], 3);
        assert_eq!(stats.unknown_fields["participants.purpos"], 3);
    }
}
