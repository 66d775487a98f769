//! Writing one day's tables for one run: Parquet parts per table, rolled at a size cap,
//! streamed to the store, then published with a manifest.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{
    Array, AsArray, BooleanArray, DictionaryArray, RecordBatch, StringArray, TypedDictionaryArray,
};
use arrow::compute::filter_record_batch;
use arrow::datatypes::UInt32Type;
use chrono::{NaiveDate, Utc};

use super::encoder::{AskedState, EncoderState, PartEncoder};
use super::parquet::{ParquetMeta, ParquetSettings, TableFileWriter};
use super::{Lease, Manifest, ManifestFile, Store, StoreError, UploadHandle, UploadWriter};
use crate::tables::{Table, TableBatch};

/// Why writing a day failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing Parquet for table {table}, day {date}, part {key}: {source}")]
    Parquet {
        table: &'static str,
        date: NaiveDate,
        key: String,
        #[source]
        source: ::parquet::errors::ParquetError,
    },
    #[error("table {table}: a batch for day {date} holds rows of {other}")]
    WrongDay {
        table: &'static str,
        date: NaiveDate,
        other: String,
    },
    #[error("table {table}: batch has no partition column")]
    NoDateColumn { table: &'static str },
    #[error("table {table}: batch has no column {column}, the record's end (open records are counted by it)")]
    NoEndColumn { table: &'static str, column: String },
}

impl SinkError {
    /// A Parquet writer's failure; when it is the store failing under the writer, the store's
    /// own error (it names bucket, key and cause, and says whether to retry).
    fn writing(
        table: &'static str,
        date: NaiveDate,
        key: String,
        source: ::parquet::errors::ParquetError,
    ) -> Self {
        match source {
            ::parquet::errors::ParquetError::External(e) => match e.downcast::<StoreError>() {
                Ok(store) => SinkError::Store(*store),
                // Parquet's async writer wraps its sink's (our upload's) errors once more.
                Err(e) => match e.downcast::<::parquet::errors::ParquetError>() {
                    Ok(inner) => Self::writing(table, date, key, *inner),
                    Err(e) => SinkError::Parquet {
                        table,
                        date,
                        key,
                        source: ::parquet::errors::ParquetError::External(e),
                    },
                },
            },
            source => SinkError::Parquet {
                table,
                date,
                key,
                source,
            },
        }
    }

    pub fn is_transient(&self) -> bool {
        // A store failing under the Parquet writer is a `Store` error too (see `writing`).
        matches!(self, SinkError::Store(e) if e.is_transient())
    }
}

struct OpenPart {
    encoder: PartEncoder,
    handle: UploadHandle,
    key: String,
    rows: u64,
    /// The latest request for the encoder's state, answered by the next sync.
    asked: Option<AskedState>,
    /// As of the last state read: memory of the row group being built…
    buffered: usize,
    /// …what the upload holds before sending a part…
    upload_buffered: usize,
    /// …bytes written to the file…
    bytes: u64,
    /// …and column chunks whose metadata it holds for its footer.
    column_chunks: usize,
}

impl OpenPart {
    /// Reads the state asked for last (if any) and asks for the state as of now.
    async fn resync(&mut self) -> Result<(), ::parquet::errors::ParquetError> {
        if let Some(asked) = self.asked.take() {
            let EncoderState {
                buffered,
                written,
                column_chunks,
            } = self.encoder.state(asked).await?;
            self.column_chunks = column_chunks;
            self.buffered = buffered;
            self.upload_buffered = self.handle.buffered_at(written);
            self.bytes = written;
        }
        self.asked = Some(self.encoder.ask_state().await?);
        Ok(())
    }
}

/// Writes one day's batches for one run; nothing is visible until [`DayWriter::publish`].
///
/// Each open file encodes on a task of its own ([`PartEncoder`]). Every `sync_every` bytes of
/// batches the writer reads each encoder's state as of the previous sync (or of its last
/// row-group flush) and asks for the state as of now: its decisions, and so the files, do not
/// depend on the tasks' timing, and the encoders have had a whole interval to answer. Waiting
/// for them to catch up with the present instead left a core idle while the slowest table
/// finished (a quarter of the time at 500k conversations, 2026-12-03).
pub struct DayWriter {
    store: Arc<dyn Store>,
    lease: Lease,
    settings: ParquetSettings,
    meta: ParquetMeta,
    max_file_bytes: u64,
    open: HashMap<Table, OpenPart>,
    next_part: HashMap<Table, u32>,
    files: Vec<ManifestFile>,
    rows: BTreeMap<&'static str, u64>,
    type_mismatches: u64,
    /// The root tables' column that is null while a record is open, and the count of those.
    open_column: Option<String>,
    open_records: u64,
    /// Memory of the batches queued since the last sync, and the sync interval.
    unsynced: usize,
    sync_every: usize,
}

impl DayWriter {
    pub fn new(
        store: Arc<dyn Store>,
        lease: Lease,
        settings: ParquetSettings,
        meta: ParquetMeta,
        max_file_bytes: u64,
    ) -> Self {
        let dataset = lease.dataset;
        // The encoders may hold up to two intervals of batches more than the budget (the state
        // read is one interval old).
        let sync_every = (settings.max_buffered_bytes / 16).max(1);
        Self {
            store,
            lease,
            settings,
            meta,
            max_file_bytes,
            open: HashMap::new(),
            next_part: HashMap::new(),
            files: Vec::new(),
            rows: dataset.tables.iter().map(|t| (t.name(), 0)).collect(),
            type_mismatches: 0,
            open_column: dataset.record.end.map(crate::tables::schema::snake_case),
            open_records: 0,
            unsynced: 0,
            sync_every,
        }
    }

    /// The day's values kept in `extra` for their type or shape, for the manifest.
    pub fn set_type_mismatches(&mut self, n: u64) {
        self.type_mismatches = n;
    }

    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    pub fn date(&self) -> NaiveDate {
        self.lease.date
    }

    pub fn rows(&self) -> &BTreeMap<&'static str, u64> {
        &self.rows
    }

    /// Appends a converter batch (its last column is the partition column, all equal to the
    /// day).
    pub async fn write(&mut self, tb: TableBatch) -> Result<(), SinkError> {
        let date = self.lease.date;
        let batch = strip_date(&tb, date)?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let table = tb.table;
        self.open_records += self.open_rows(table, &batch)?;
        if !self.open.contains_key(&table) {
            let part = self.next_part.entry(table).or_insert(0);
            let (upload, key) = self
                .store
                .create_part(&self.lease, table.name(), *part)
                .await?;
            *part += 1;
            let (w, handle) = UploadWriter::new(upload);
            let writer =
                TableFileWriter::try_new(w, table, &self.settings, &self.meta, Some(&batch))
                    .map_err(|source| {
                        SinkError::writing(table.name(), date, key.clone(), source)
                    })?;
            self.open.insert(
                table,
                OpenPart {
                    encoder: PartEncoder::spawn(writer, handle.progress.clone()),
                    handle,
                    key,
                    rows: 0,
                    asked: None,
                    buffered: 0,
                    upload_buffered: 0,
                    bytes: 0,
                    column_chunks: 0,
                },
            );
        }
        let Some(open) = self.open.get_mut(&table) else {
            unreachable!("inserted above")
        };
        let rows = batch.num_rows() as u64;
        let memory = batch.get_array_memory_size();
        if let Err(source) = open.encoder.write(batch).await {
            let key = open.key.clone();
            self.abort_all().await;
            return Err(SinkError::writing(table.name(), date, key, source));
        }
        open.rows += rows;
        *self.rows.entry(table.name()).or_insert(0) += rows;
        self.unsynced += memory;
        if self.unsynced >= self.sync_every {
            self.sync().await?;
            let mut full: Vec<Table> = self
                .open
                .iter()
                .filter(|(_, o)| o.bytes >= self.max_file_bytes)
                .map(|(t, _)| *t)
                .collect();
            // The manifest lists files in the order they close: the same whatever the map's.
            full.sort_by_key(|t| t.name());
            for t in full {
                self.close_part(t).await?;
            }
            while self.open_column_chunks() > self.settings.max_open_column_chunks {
                let most = self
                    .open
                    .iter()
                    .map(|(t, o)| (*t, o.column_chunks))
                    .max_by_key(|(t, chunks)| (*chunks, t.name()));
                match most {
                    Some((t, _)) => self.close_part(t).await?,
                    None => break,
                }
            }
            while self.buffered_bytes() > self.settings.max_buffered_bytes {
                self.flush_largest().await?;
            }
        }
        Ok(())
    }

    /// Takes note of every open file's memory and size as of its last state request, and
    /// asks for its state as of now.
    async fn sync(&mut self) -> Result<(), SinkError> {
        self.unsynced = 0;
        let mut failed = None;
        for (table, open) in self.open.iter_mut() {
            if let Err(source) = open.resync().await {
                failed = Some((table.name(), open.key.clone(), source));
                break;
            }
        }
        if let Some((table, key, source)) = failed {
            self.abort_all().await;
            return Err(SinkError::writing(table, self.lease.date, key, source));
        }
        Ok(())
    }

    /// Column chunks whose metadata the open files hold, as of the last sync.
    fn open_column_chunks(&self) -> usize {
        self.open.values().map(|o| o.column_chunks).sum()
    }

    /// Memory held for this day's tables, as of the last sync: row groups being built, and
    /// what uploads hold before sending a part (S3: up to a part per open file).
    pub fn buffered_bytes(&self) -> usize {
        self.open
            .values()
            .map(|o| o.buffered + o.upload_buffered)
            .sum()
    }

    /// Writes out the largest row group being built (a no-op when none holds data). Largest
    /// per column instead gave wide tables (`sessions`) larger row groups and fewer zstd column
    /// chunks, but it bought CPU (2–3%) only for the memory a larger budget buys it with.
    pub async fn flush_largest(&mut self) -> Result<(), SinkError> {
        let largest = self
            .open
            .iter()
            .map(|(t, o)| (*t, o.buffered))
            .max_by_key(|(t, bytes)| (*bytes, t.name()));
        let Some((table, bytes)) = largest else {
            return Ok(());
        };
        if bytes == 0 {
            // Only upload buffers are left: finish the file holding the most (its buffer goes
            // up as the last part), so that the budget always makes progress.
            let fullest = self
                .open
                .iter()
                .map(|(t, o)| (*t, o.upload_buffered))
                .filter(|(_, b)| *b > 0)
                .max_by_key(|(t, b)| (*b, t.name()));
            if let Some((table, _)) = fullest {
                self.close_part(table).await?;
            }
            return Ok(());
        }
        let Some(open) = self.open.get_mut(&table) else {
            return Ok(());
        };
        // Not waited for: the row group is as good as written out (nothing is left in it), and
        // the state asked for after it, read at the next sync, tells the rest.
        let flushed = match open.encoder.flush_row_group().await {
            Ok(()) => open.encoder.ask_state().await,
            Err(e) => Err(e),
        };
        match flushed {
            Ok(asked) => {
                open.buffered = 0;
                open.asked = Some(asked);
                Ok(())
            }
            Err(source) => {
                let key = open.key.clone();
                self.abort_all().await;
                Err(SinkError::writing(
                    table.name(),
                    self.lease.date,
                    key,
                    source,
                ))
            }
        }
    }

    async fn close_part(&mut self, table: Table) -> Result<(), SinkError> {
        let Some(open) = self.open.remove(&table) else {
            return Ok(());
        };
        self.close_parts(vec![(table, open)]).await
    }

    /// Closes `parts`, all at once (each on its encoder's task).
    async fn close_parts(&mut self, parts: Vec<(Table, OpenPart)>) -> Result<(), SinkError> {
        let mut closing = Vec::with_capacity(parts.len());
        let mut done = Vec::with_capacity(parts.len());
        for (table, open) in parts {
            let OpenPart {
                encoder,
                handle,
                key,
                rows,
                ..
            } = open;
            closing.push(encoder.close());
            done.push((table, handle, key, rows));
        }
        let results = futures::future::join_all(closing).await;
        let mut failed = None;
        for (result, (table, handle, key, rows)) in results.into_iter().zip(done) {
            match result {
                Ok(_) => self.files.push(ManifestFile {
                    table: table.name().to_string(),
                    key,
                    rows,
                    bytes: handle.progress.bytes(),
                    crc64nvme: handle.progress.crc64nvme(),
                }),
                Err(source) => {
                    if let Err(e) = handle.abort().await {
                        tracing::warn!(error = %e, %key, "could not abort an upload");
                    }
                    failed.get_or_insert((table, key, source));
                }
            }
        }
        if let Some((table, key, source)) = failed {
            self.abort_all().await;
            return Err(SinkError::writing(
                table.name(),
                self.lease.date,
                key,
                source,
            ));
        }
        Ok(())
    }

    /// Stops every encoder and aborts every open upload (no orphan multipart parts).
    async fn abort_all(&mut self) {
        for (_, open) in self.open.drain() {
            open.encoder.abandon();
            if let Err(e) = open.handle.abort().await {
                tracing::warn!(error = %e, key = %open.key, "could not abort an upload");
            }
        }
    }

    /// Closes every part and makes the run the day's visible content; returns the manifest.
    /// If that fails, the run is given up as by [`DayWriter::abort`]: its uploads are aborted
    /// and its parts removed, unless the publish got past the store's commit point (the next
    /// run of the day finishes it then).
    pub async fn publish(
        mut self,
        interval: String,
        partial_day: bool,
        conversations: u64,
        started: chrono::DateTime<Utc>,
    ) -> Result<Manifest, SinkError> {
        match self
            .close_and_publish(interval, partial_day, conversations, started)
            .await
        {
            Ok(m) => Ok(m),
            Err(e) => {
                self.abort().await;
                Err(e)
            }
        }
    }

    async fn close_and_publish(
        &mut self,
        interval: String,
        partial_day: bool,
        conversations: u64,
        started: chrono::DateTime<Utc>,
    ) -> Result<Manifest, SinkError> {
        let mut parts: Vec<(Table, OpenPart)> = self.open.drain().collect();
        // The manifest lists files in the same order whatever the map's.
        parts.sort_by_key(|(t, _)| t.name());
        self.close_parts(parts).await?;
        let manifest = Manifest {
            date: self.lease.date,
            run_id: self.lease.run.clone(),
            interval,
            partial_day,
            schema_version: crate::tables::SCHEMA_VERSION.to_string(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            started,
            finished: Utc::now(),
            conversations,
            rows: self.rows.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            files: std::mem::take(&mut self.files),
            type_mismatches: self.type_mismatches,
            open: self.open_records,
        };
        self.store.publish(&self.lease, &manifest).await?;
        Ok(manifest)
    }

    /// Open records in a batch: root rows whose end column is null.
    fn open_rows(&self, table: Table, batch: &RecordBatch) -> Result<u64, SinkError> {
        let Some(column) = self.open_column.as_deref() else {
            return Ok(0);
        };
        if table.spec().parent.is_some() {
            return Ok(0);
        }
        let Some(c) = batch.column_by_name(column) else {
            return Err(SinkError::NoEndColumn {
                table: table.name(),
                column: column.to_string(),
            });
        };
        Ok(c.null_count() as u64)
    }

    /// Gives up the run: aborts uploads and removes its staged parts; the day stays as it was.
    pub async fn abort(mut self) {
        self.abort_all().await;
        if let Err(e) = self.store.discard(&self.lease).await {
            tracing::warn!(error = %e, date = %self.lease.date, "could not remove the failed run's parts");
        }
    }

    /// Archives one raw API page (gzipped NDJSON) with the run; published with the tables.
    pub async fn write_raw(&mut self, seq: u32, gz_ndjson: bytes::Bytes) -> Result<(), SinkError> {
        let name = format!("pages-{seq:05}.ndjson.gz");
        let crc64nvme = super::crc64nvme(&gz_ndjson);
        let bytes = gz_ndjson.len() as u64;
        self.store.put_raw(&self.lease, &name, gz_ndjson).await?;
        self.files.push(ManifestFile {
            table: super::RAW_TABLE.to_string(),
            key: self.store.raw_key(&self.lease, &name),
            rows: 0,
            bytes,
            crc64nvme,
        });
        Ok(())
    }

    /// Parquet and raw files written so far (closed parts only).
    pub fn files(&self) -> &[ManifestFile] {
        &self.files
    }
}

/// Checks the batch's trailing partition column is all `date` and drops it.
fn strip_date(tb: &TableBatch, date: NaiveDate) -> Result<RecordBatch, SinkError> {
    let table = tb.table.name();
    let dates = date_column(tb)?;
    let n = tb.batch.num_columns();
    let want = date.to_string();
    if sole_value(dates) == Some(want.as_str()) {
        // Every row is the day's (the usual case): no row by row look.
    } else if let Some(other) = typed(dates, table)?.into_iter().find(|d| *d != Some(&want)) {
        return Err(SinkError::WrongDay {
            table,
            date,
            other: other.unwrap_or("null").to_string(),
        });
    }
    let mut b = tb.batch.clone();
    b.remove_column(n - 1);
    Ok(b)
}

/// The trailing partition column of a converter batch (its dataset's; see
/// [`crate::tables::schema::partition_type`]).
fn date_column(tb: &TableBatch) -> Result<&DictionaryArray<UInt32Type>, SinkError> {
    let batch = &tb.batch;
    let n = batch.num_columns();
    let column = tb.table.dataset().partitioning.column();
    (n > 0 && batch.schema().field(n - 1).name() == column)
        .then(|| batch.column(n - 1).as_dictionary_opt::<UInt32Type>())
        .flatten()
        .ok_or(SinkError::NoDateColumn {
            table: tb.table.name(),
        })
}

/// The partition column's dates, row by row.
fn typed<'a>(
    dates: &'a DictionaryArray<UInt32Type>,
    table: &'static str,
) -> Result<TypedDictionaryArray<'a, UInt32Type, StringArray>, SinkError> {
    dates
        .downcast_dict::<StringArray>()
        .ok_or(SinkError::NoDateColumn { table })
}

/// The value every row of `a` holds, when all hold one (the same key, a valid value), checked
/// on the keys alone: nearly every batch is one day's, and looking at each row's date twice
/// (split, then check) was 1% of `convert`'s CPU. `None` when rows differ in key, though
/// their values may still be equal (a dictionary needs not be distinct).
fn sole_value(a: &DictionaryArray<UInt32Type>) -> Option<&str> {
    let keys = a.keys();
    if keys.is_empty() || keys.null_count() > 0 {
        return None;
    }
    let first = keys.value(0);
    if !keys.values().iter().all(|k| *k == first) {
        return None;
    }
    let values = a.values().as_string_opt::<i32>()?;
    let i = first as usize;
    (i < values.len() && values.is_valid(i)).then(|| values.value(i))
}

/// Splits a converter batch by its trailing partition column (for `convert`, whose
/// input may span many days). Rows with a null date are a converter bug and are refused.
pub fn split_by_date(tb: &TableBatch) -> Result<Vec<(NaiveDate, TableBatch)>, SinkError> {
    let batch = &tb.batch;
    let table = tb.table.name();
    let dates = date_column(tb)?;
    let parse = |d: &str| {
        NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|_| SinkError::WrongDay {
            table,
            date: NaiveDate::MIN,
            other: d.to_string(),
        })
    };
    if let Some(d) = sole_value(dates) {
        return Ok(vec![(parse(d)?, tb.clone())]);
    }
    let rows = typed(dates, table)?;
    if rows.into_iter().any(|d| d.is_none()) {
        return Err(SinkError::WrongDay {
            table,
            date: NaiveDate::MIN,
            other: "null".into(),
        });
    }
    // Rows come grouped by record, so runs of one date are long: drop repeats before sorting.
    let mut distinct: Vec<&str> = rows.into_iter().flatten().collect();
    distinct.dedup();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() <= 1 {
        return match distinct.first() {
            Some(d) => Ok(vec![(parse(d)?, tb.clone())]),
            None => Ok(vec![]),
        };
    }
    let mut out = Vec::with_capacity(distinct.len());
    for d in distinct {
        let mask: BooleanArray = rows.into_iter().map(|v| Some(v == Some(d))).collect();
        let part = filter_record_batch(batch, &mask).map_err(|e| SinkError::Parquet {
            table,
            date: NaiveDate::MIN,
            key: String::new(),
            source: e.into(),
        })?;
        out.push((
            parse(d)?,
            TableBatch {
                table: tb.table,
                batch: part,
            },
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::conversations::DATASET as CONVERSATIONS;

    /// One value in every row, found on the buffers; anything else (a row that differs in a
    /// byte, in its length though the bytes line up, a null, an offset slice) is `None` or
    /// the slice's own value.
    #[test]
    fn sole_value_only_when_every_row_holds_it() {
        use arrow::array::UInt32Array;
        let day = "2026-10-20";
        let next = "2026-10-21";
        let dict = |keys: Vec<Option<u32>>, values: Vec<Option<&str>>| {
            DictionaryArray::<UInt32Type>::new(
                UInt32Array::from(keys),
                Arc::new(StringArray::from(values)),
            )
        };
        let many = dict(vec![Some(0); 1000], vec![Some(day)]);
        assert_eq!(sole_value(&many), Some(day));
        for at in [0, 1, 409, 999] {
            let mut keys = vec![Some(0); 1000];
            keys[at] = Some(1);
            let a = dict(keys, vec![Some(day), Some(next)]);
            assert_eq!(sole_value(&a), None, "row {at}");
            // The rows before the odd one are one day, seen through a slice.
            let head = a.slice(0, at);
            assert_eq!(sole_value(&head), (at > 0).then_some(day), "slice to {at}");
            let tail = a.slice(at + 1, 999 - at);
            assert_eq!(
                sole_value(&tail),
                (at < 999).then_some(day),
                "slice from {at}"
            );
        }
        // A day's part of a split batch keeps the other day in its dictionary.
        assert_eq!(
            sole_value(&dict(vec![Some(1); 3], vec![Some(day), Some(next)])),
            Some(next)
        );
        // A null row, a key to a null value, and no rows.
        assert_eq!(
            sole_value(&dict(vec![Some(0), None], vec![Some(day)])),
            None
        );
        assert_eq!(
            sole_value(&dict(vec![Some(1), Some(1)], vec![Some(day), None])),
            None
        );
        assert_eq!(sole_value(&dict(vec![], vec![Some(day)])), None);
    }
    use crate::interval::Interval;
    use crate::sink::{DayStore, RunId};
    use crate::tables::{ConvertOptions, Converter};
    use ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    /// What [`write_day`] wrote: for the table with the most rows, (row groups, rows, sorted
    /// record ids); and every file's (table, rows, crc64nvme).
    type Written = (usize, usize, Vec<String>, Vec<(String, u64, String)>);

    /// Writes one simulated day through a DayWriter with `budget`.
    async fn write_day(root: &std::path::Path, budget: usize) -> Written {
        let settings = ParquetSettings {
            max_buffered_bytes: budget,
            ..ParquetSettings::default()
        };
        write_day_with(root, settings).await
    }

    async fn write_day_with(root: &std::path::Path, settings: ParquetSettings) -> Written {
        let date: NaiveDate = "2026-10-20".parse().expect("date");
        let store: Arc<dyn Store> = Arc::new(DayStore::local(root).expect("store"));
        let lease = store
            .acquire_lease(
                &CONVERSATIONS,
                date,
                &RunId::new(Utc::now()),
                chrono::Duration::minutes(5),
            )
            .await
            .expect("lease");
        // Fixed, so that two writes of the day can be the same bytes.
        let meta = ParquetMeta {
            interval: Interval::day(date).to_genesys(),
            extracted_at: "2026-10-21T01:00:00Z".parse().expect("time"),
        };
        let mut w = DayWriter::new(store.clone(), lease.clone(), settings, meta, 256 << 20);
        // Small batches, so that the budget is crossed many times.
        let mut conv = Converter::new(
            &CONVERSATIONS,
            ConvertOptions {
                batch_bytes: 64 << 10,
                ..ConvertOptions::default()
            },
        );
        for page in crate::simulator::test_day_pages(date, 400) {
            for tb in conv.push_page(&page).expect("convert") {
                w.write(tb).await.expect("write");
            }
        }
        for tb in conv.finish().expect("finish") {
            w.write(tb).await.expect("write");
        }
        let m = w
            .publish(Interval::day(date).to_genesys(), false, 400, Utc::now())
            .await
            .expect("publish");
        store.release_lease(&lease).await.expect("release");
        for f in &m.files {
            let bytes = std::fs::read(root.join(&f.key)).expect("read");
            assert_eq!(bytes.len() as u64, f.bytes, "{}", f.key);
            assert_eq!(crate::sink::crc64nvme(&bytes), f.crc64nvme, "{}", f.key);
        }
        let (mut groups, mut rows, mut ids) = (0, 0, Vec::new());
        let id_column = crate::tables::schema::snake_case(CONVERSATIONS.record.id);
        let biggest = m
            .files
            .iter()
            .max_by_key(|f| (f.rows, f.table.clone()))
            .map(|f| f.table.clone())
            .expect("files");
        for f in m.files.iter().filter(|f| f.table == biggest) {
            let file = std::fs::File::open(root.join(&f.key)).expect("open");
            let r = ParquetRecordBatchReaderBuilder::try_new(file).expect("reader");
            groups += r.metadata().num_row_groups();
            for b in r.build().expect("build") {
                let b = b.expect("batch");
                rows += b.num_rows();
                let col = b.column_by_name(&id_column).expect("column");
                ids.extend(col.as_string::<i32>().iter().flatten().map(String::from));
            }
        }
        ids.sort();
        let files = m
            .files
            .iter()
            .map(|f| (f.table.clone(), f.rows, f.crc64nvme.clone()))
            .collect();
        (groups, rows, ids, files)
    }

    #[test]
    fn a_store_error_under_the_parquet_writer_keeps_its_transience() {
        let store = |transient| StoreError::S3 {
            op: "complete upload",
            bucket: "b".into(),
            key: "k".into(),
            message: "InternalError: try again".into(),
            transient,
        };
        let parquet = |source| SinkError::writing("a_table", NaiveDate::MIN, "k".into(), source);
        let external = |e: StoreError| ::parquet::errors::ParquetError::External(Box::new(e));
        assert!(parquet(external(store(true))).is_transient());
        // The store's own message, not the writer's wrapping of it.
        assert_eq!(
            parquet(external(store(true))).to_string(),
            "complete upload s3://b/k: InternalError: try again"
        );
        assert!(!parquet(external(store(false))).is_transient());
        // As Parquet's async writer reports a failed write to its sink: wrapped twice.
        let twice = |e| ::parquet::errors::ParquetError::External(Box::new(external(e)));
        assert!(parquet(twice(store(true))).is_transient());
        assert_eq!(
            parquet(twice(store(true))).to_string(),
            "complete upload s3://b/k: InternalError: try again"
        );
        let general = ::parquet::errors::ParquetError::General("bad".into());
        assert!(!parquet(general).is_transient());
    }

    #[tokio::test]
    async fn a_small_buffer_budget_writes_smaller_row_groups_of_the_same_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let roomy = write_day(dir.path(), 48 << 20).await;
        let tight = write_day(dir.path(), 1).await;
        assert_eq!(roomy.0, 1, "one row group when memory allows");
        assert!(tight.0 > 5, "the budget splits row groups: {}", tight.0);
        assert!(roomy.1 > 1000, "rows written: {}", roomy.1);
        assert_eq!(roomy.1, tight.1);
        assert_eq!(roomy.2, tight.2);
    }

    #[tokio::test]
    async fn files_are_cut_when_open_footers_hold_too_many_column_chunks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let budget = 256 << 10;
        let uncut = write_day_with(
            dir.path(),
            ParquetSettings {
                max_buffered_bytes: budget,
                max_open_column_chunks: usize::MAX,
                ..ParquetSettings::default()
            },
        )
        .await;
        let cut = write_day_with(
            dir.path(),
            ParquetSettings {
                max_buffered_bytes: budget,
                max_open_column_chunks: 300,
                ..ParquetSettings::default()
            },
        )
        .await;
        let files_of = |w: &Written| {
            let mut n = BTreeMap::new();
            for (table, _, _) in &w.3 {
                *n.entry(table.clone()).or_insert(0) += 1;
            }
            n
        };
        assert!(
            files_of(&uncut).values().all(|&n| n == 1),
            "{:?}",
            files_of(&uncut)
        );
        // `sessions` has 102 columns: a new part every few row groups.
        assert!(files_of(&cut)["sessions"] > 2, "{:?}", files_of(&cut));
        // The same rows, whatever the files.
        assert_eq!(cut.1, uncut.1);
        assert_eq!(cut.2, uncut.2);
        let rows_of = |w: &Written| {
            let mut n = BTreeMap::new();
            for (table, rows, _) in &w.3 {
                *n.entry(table.clone()).or_insert(0) += rows;
            }
            n
        };
        assert_eq!(rows_of(&cut), rows_of(&uncut));
    }

    /// Tables encode on tasks of their own, but the writer decides row groups and file cuts
    /// only on their state after a sync: with threads racing, the files are the same bytes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn parallel_encoding_writes_the_same_bytes_every_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A budget crossed many times: row groups are written out at the writer's decisions.
        let first = write_day(dir.path(), 256 << 10).await;
        assert!(first.0 > 3, "several row groups: {}", first.0);
        // A file per table with rows (the simulated day leaves one table empty), and more
        // where the open footers' column chunks went past the default cap: file cuts are
        // decisions on the encoders' state too.
        assert!(
            first.3.len() > CONVERSATIONS.tables.len() - 1,
            "files: {}",
            first.3.len()
        );
        for _ in 0..3 {
            let again = write_day(dir.path(), 256 << 10).await;
            assert_eq!(again.0, first.0, "row groups");
            assert_eq!(again.3, first.3, "files: table, rows, crc64nvme");
        }
    }
}
