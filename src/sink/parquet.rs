//! Parquet files of one table: writer settings that Athena (Trino) and Spark read well, and a
//! streaming writer (row groups capped by encoded size and rows, see [`ParquetSettings`]).

use std::str::FromStr;

use arrow::array::RecordBatch;
use chrono::{DateTime, Utc};
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnWriter, ArrowRowGroupWriterFactory};
use parquet::arrow::async_writer::AsyncFileWriter;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, GzipLevel, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;

use super::keys::KeyColumn;

use crate::tables::schema::{file_schema, Role, Ty};
use crate::tables::{Table, SCHEMA_VERSION};

/// How files are written.
#[derive(Debug, Clone)]
pub struct ParquetSettings {
    pub compression: Codec,
    /// A row group is closed once its encoded size reaches this (Athena reads row groups of
    /// tens of MiB well)…
    pub max_row_group_bytes: usize,
    /// …or this many rows…
    pub max_row_group_rows: usize,
    /// …or earlier, when the row groups being built for one day's tables hold more memory than
    /// this: every table of a day has one open, so the largest is written out first. This is
    /// what bounds the writer's memory, whatever the day's size.
    pub max_buffered_bytes: usize,
    /// Key columns (ids and times copied from the parent row, in runs of one value) are
    /// written DELTA_BYTE_ARRAY / DELTA_BINARY_PACKED; `false`: PLAIN, for readers without
    /// the delta encodings (Athena and Trino, Spark 3.3+, Hive, DuckDB and pyarrow read them).
    pub delta_keys: bool,
    /// A file keeps each row group's column metadata (about 640 bytes a column chunk,
    /// heaptrack 2026-12-04) until its footer is written: when the files open for a day hold
    /// more column chunks than this, the one holding the most is closed and its table goes on
    /// in a new part. This bounds what a day's size adds to memory.
    pub max_open_column_chunks: usize,
}

/// The default of [`ParquetSettings::max_open_column_chunks`]: about 2.5 MiB of metadata, above
/// a 50k-conversation day's 1,700 column chunks. At 500k (20,000 chunks, 16,000 of them in
/// `sessions`' 102 columns) it writes 24 files instead of 15 and peaks 13–18 MiB lower than one
/// file a table; 2,048 or 1,024 saved 1 or 3 MiB more for 43 or 87 files, 8,192 cost 4 MiB
/// (medians of 4 alternating runs, 2026-12-04). With the 20 MiB budget's smaller row groups,
/// 30 files at 500k (2026-12-05).
pub const MAX_OPEN_COLUMN_CHUNKS: usize = 4096;

/// The default of [`ParquetSettings::max_buffered_bytes`], in MiB (`--buffer-mb`). 28 rather
/// than 32 paid for the converter's deeper queue ([`crate::pipeline`]): together they kept a
/// 500k-conversation convert under 200 MiB (187) and took 9% less time than 32 with a queue of 2
/// (median of 4 alternating runs, 10.1 vs 11.1 s; 18.6 vs 19.1 s of CPU; 2026-12-03). Once
/// files were written with direct I/O and C code allocated from jemalloc, the budget no longer
/// bought CPU: 20, 28 and 40 MiB took the same CPU at 500k (10.99, 10.98, 10.98 s, medians of
/// 4 alternating runs) for 148, 167 and 211 MiB; 20 pays for the converter's larger batches
/// ([`crate::tables::ConvertOptions::batch_bytes`]). Lower still saves memory for smaller row
/// groups, which readers pay for: 16 and 12 MiB peaked at 162 and 150 MiB with 16 MiB batches
/// (CPU within the noise) and wrote 0.1% and 0.2% more bytes.
pub const DEFAULT_BUFFER_MB: usize = 20;

impl Default for ParquetSettings {
    fn default() -> Self {
        Self {
            // Level 1: on conversation data it writes files no bigger than level 3 (the
            // columns are mostly dictionary-encoded already) for a fifth less CPU.
            compression: Codec::Zstd(1),
            max_row_group_bytes: 64 << 20,
            max_row_group_rows: 1 << 20,
            max_buffered_bytes: DEFAULT_BUFFER_MB << 20,
            max_open_column_chunks: MAX_OPEN_COLUMN_CHUNKS,
            delta_keys: true,
        }
    }
}

/// A compression codec, as the CLI spells it: `zstd(3)`, `zstd` (level 1), `snappy`,
/// `gzip(6)`, `lz4`, `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Zstd(i32),
    Snappy,
    Gzip(u32),
    Lz4,
    None,
}

impl FromStr for Codec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        let (name, level) = match s.split_once('(') {
            Some((n, rest)) => {
                let l = rest
                    .strip_suffix(')')
                    .ok_or_else(|| format!("{s:?}: missing ')'"))?;
                (
                    n,
                    Some(l.parse::<i64>().map_err(|_| format!("{s:?}: bad level"))?),
                )
            }
            None => (s.as_str(), None),
        };
        let codec = match (name, level) {
            ("zstd", l) => Codec::Zstd(l.unwrap_or(1) as i32),
            ("gzip", l) => Codec::Gzip(l.unwrap_or(6) as u32),
            ("snappy", None) => Codec::Snappy,
            ("lz4", None) => Codec::Lz4,
            ("none" | "uncompressed", None) => Codec::None,
            _ => {
                return Err(format!(
                    "{s:?}: expected zstd(LEVEL), snappy, gzip(LEVEL), lz4 or none"
                ))
            }
        };
        codec.compression().map(|_| codec)
    }
}

impl Codec {
    fn compression(self) -> Result<Compression, String> {
        Ok(match self {
            Codec::Zstd(l) => Compression::ZSTD(
                ZstdLevel::try_new(l).map_err(|_| format!("zstd level {l} is out of 1..=22"))?,
            ),
            Codec::Gzip(l) => Compression::GZIP(
                GzipLevel::try_new(l).map_err(|_| format!("gzip level {l} is out of 0..=10"))?,
            ),
            Codec::Snappy => Compression::SNAPPY,
            Codec::Lz4 => Compression::LZ4_RAW,
            Codec::None => Compression::UNCOMPRESSED,
        })
    }
}

/// Where a file's data came from, stored in its key-value metadata.
#[derive(Debug, Clone)]
pub struct ParquetMeta {
    /// The extracted interval, Genesys form.
    pub interval: String,
    pub extracted_at: DateTime<Utc>,
}

/// Writer properties for one table's files; `first`, the file's first batch, picks the codec
/// of columns that hold almost nothing (see [`nearly_empty`]).
pub fn writer_properties(
    table: Table,
    settings: &ParquetSettings,
    meta: &ParquetMeta,
    first: Option<&RecordBatch>,
) -> WriterProperties {
    let compression = settings
        .compression
        .compression()
        .unwrap_or(Compression::SNAPPY);
    let mut b = WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(compression)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(settings.max_row_group_rows.max(1)))
        .set_max_row_group_bytes(Some(settings.max_row_group_bytes.max(1)))
        .set_created_by(format!("genesys-parquet {}", env!("CARGO_PKG_VERSION")))
        // Standard LIST element names (`element`), which Athena/Hive expect.
        .set_coerce_types(true)
        .set_key_value_metadata(Some(vec![
            KeyValue::new(
                "genesys_parquet.schema_version".into(),
                SCHEMA_VERSION.to_string(),
            ),
            KeyValue::new(
                "genesys_parquet.tool_version".into(),
                env!("CARGO_PKG_VERSION").to_string(),
            ),
            KeyValue::new("genesys_parquet.table".into(), table.name().to_string()),
            KeyValue::new("genesys_parquet.interval".into(), meta.interval.clone()),
            KeyValue::new(
                "genesys_parquet.extracted_at".into(),
                meta.extracted_at.to_rfc3339(),
            ),
        ]));
    // Dictionaries only where they pay (`Column::dictionary`); no statistics for free text.
    for c in table.columns() {
        // The raw record is most of a file's bytes and is read only to rebuild tables: zstd's
        // fastest level halves the encoding time for a few percent more bytes.
        if c.role == Role::Raw {
            if let Codec::Zstd(l) = settings.compression {
                if l > 1 {
                    b = b.set_column_compression(
                        ColumnPath::from(c.name.as_str()),
                        Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()),
                    );
                }
            }
        }
        if let (Some(first), Codec::Zstd(_)) = (first, settings.compression) {
            if first
                .column_by_name(&c.name)
                .is_some_and(|a| nearly_empty(a.as_ref()))
            {
                b = b.set_column_compression(leaf_path(c), Compression::SNAPPY);
            }
        }
        if !c.dictionary {
            b = b.set_column_dictionary_enabled(leaf_path(c), false);
        }
        if let Some(e) = key_encoding(c).filter(|_| settings.delta_keys) {
            b = b.set_column_encoding(leaf_path(c), e);
        }
        if !has_statistics(c) {
            b = b.set_column_statistics_enabled(leaf_path(c), EnabledStatistics::None);
        }
    }
    b.build()
}

/// Whether a column's pages and row groups carry statistics (min/max, null count): not for
/// strings. A day's rows are in the order of their conversations' start, so min/max prune
/// only where values follow that order (times, and numbers near them); a string column (ids,
/// names, codes, free text) spans nearly all its values in every page, so its min/max prune
/// nothing, and comparing each value cost 3.7% of `convert`'s CPU (500k conversations, median
/// of 5 alternating runs, 2026-12-03). Athena prunes string equality on dictionary-encoded
/// columns (codes, names) by their dictionaries.
fn has_statistics(c: &crate::tables::schema::Column) -> bool {
    !matches!(c.ty, Ty::Str | Ty::StrList)
}

/// Whether a column of a file's first batch is (nearly) all null: most columns of a day are
/// (optional fields), and each zstd column being written holds a compression context (and
/// held a decompression one, about 250 KiB together, until zstd was vendored with that made
/// lazily: Cargo.toml) until its row group is written out: with a day's 289 columns open,
/// that was a fifth of `convert`'s memory, for columns worth 3% of the output. Snappy keeps
/// no context; on such columns it writes about the same bytes (500k conversations: 613 MB
/// either way, peak RSS 191 MiB instead of 199-210, 2026-12-03), and creating a zstd context
/// runs CPUID three times on x86-64, each an exit to the hypervisor in a VM. A column that
/// fills in later in the file is still compressed, only less well.
fn nearly_empty(a: &dyn arrow::array::Array) -> bool {
    let set = a.len() - a.null_count();
    set * 100 <= a.len()
}

/// The encoding of a key column: the parent's id (or time) repeated on each of its children's
/// rows. PLAIN wrote each copy out (40 bytes a UUID) for zstd to find the runs again: key
/// columns were 289 of the 362 MB a day of 50k conversations handed to zstd (81 of 154
/// delta-encoded). Delta encodings write a run as nearly nothing (a value that repeats the
/// previous one in full is a prefix length and an empty suffix), without a dictionary's
/// hashing: convert took 8-12% less CPU for the same output size (64.0 vs 64.5 MB; a
/// dictionary instead cost 4% more CPU and 10% more bytes, its pages overflowing to PLAIN;
/// 2026-12-03). [`KeyColumn`] writes them a run at a time, under zstd or no compression
/// (parquet-rs writes them under other codecs, and PLAIN keys).
fn key_encoding(c: &crate::tables::schema::Column) -> Option<Encoding> {
    match (c.role, c.ty) {
        (Role::Key, Ty::Str) => Some(Encoding::DELTA_BYTE_ARRAY),
        (Role::Key, Ty::Int | Ty::Time) => Some(Encoding::DELTA_BINARY_PACKED),
        _ => None,
    }
}

/// A column's leaf in the Parquet schema (lists' values are `<name>.list.element`).
fn leaf_path(c: &crate::tables::schema::Column) -> ColumnPath {
    match c.ty {
        Ty::StrList | Ty::IntList => {
            ColumnPath::new(vec![c.name.clone(), "list".into(), "element".into()])
        }
        _ => ColumnPath::from(c.name.as_str()),
    }
}

/// A batch fits a file schema: the same column names, each of the schema's type or, for a
/// string, a dictionary of strings.
fn check_columns(
    schema: &arrow::datatypes::Schema,
    batch: &RecordBatch,
) -> parquet::errors::Result<()> {
    use arrow::datatypes::DataType;
    let fits = |want: &DataType, got: &DataType| {
        want == got
            || matches!((want, got), (DataType::Utf8, DataType::Dictionary(_, v)) if **v == DataType::Utf8)
    };
    let bs = batch.schema();
    if bs.fields().len() != schema.fields().len() {
        return Err(parquet::errors::ParquetError::General(format!(
            "a batch of {} columns for a file of {}",
            bs.fields().len(),
            schema.fields().len()
        )));
    }
    for (want, got) in schema.fields().iter().zip(bs.fields()) {
        if want.name() != got.name() || !fits(want.data_type(), got.data_type()) {
            return Err(parquet::errors::ParquetError::General(format!(
                "batch column {} ({}) where the file has {} ({})",
                got.name(),
                got.data_type(),
                want.name(),
                want.data_type()
            )));
        }
    }
    Ok(())
}

/// Rows and bytes of a finished file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileStats {
    pub rows: u64,
}

/// One Parquet file of one table, streamed to `W`.
///
/// Row groups are built from parquet-rs's column writers ([`ArrowColumnWriter`]), except
/// key columns, which [`KeyColumn`] encodes a run at a time; the row group is cut as
/// `ArrowWriter` cuts it (at [`ParquetSettings::max_row_group_rows`] or
/// [`ParquetSettings::max_row_group_bytes`]), or when the caller flushes it.
///
/// parquet-rs's `AsyncArrowWriter` streams a buffer that starts empty for every row group:
/// growing it by doubling copied each row group about once more and faulted in fresh pages
/// (the largest source of page faults in a 150k-conversation convert). Here a row group
/// written out starts with the room the last one took (reserved only then: between row groups
/// an open file holds no buffer).
pub struct TableFileWriter<W: AsyncFileWriter> {
    file: SerializedFileWriter<Vec<u8>>,
    factory: ArrowRowGroupWriterFactory,
    /// The row group being built, if any: a writer a column, but for those of `keys`.
    columns: Option<Vec<Option<ArrowColumnWriter>>>,
    /// Rows in it.
    buffered_rows: usize,
    /// The writers of the key columns (by column), kept from row group to row group.
    keys: Vec<Option<KeyColumn>>,
    max_rows: usize,
    max_bytes: usize,
    out: W,
    /// The room the next row group written out is given.
    room: usize,
    table: Table,
    schema: arrow::datatypes::SchemaRef,
    rows: u64,
}

impl<W: AsyncFileWriter> TableFileWriter<W> {
    pub fn try_new(
        w: W,
        table: Table,
        settings: &ParquetSettings,
        meta: &ParquetMeta,
        first: Option<&RecordBatch>,
    ) -> parquet::errors::Result<Self> {
        let schema = file_schema(table);
        let props = writer_properties(table, settings, meta, first);
        let (max_rows, max_bytes) = (
            props.max_row_group_row_count().unwrap_or(usize::MAX),
            props.max_row_group_bytes().unwrap_or(usize::MAX),
        );
        let (file, factory) = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props))?
            .into_serialized_writer()?;
        let descr = file.schema_descr();
        if descr.num_columns() != schema.fields().len() {
            return Err(ParquetError::General(format!(
                "{table}: {} Parquet columns for {} fields",
                descr.num_columns(),
                schema.fields().len()
            )));
        }
        let keys = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let key = table
                    .columns()
                    .iter()
                    .any(|c| c.name == *f.name() && key_encoding(c).is_some());
                (key && settings.delta_keys)
                    .then(|| KeyColumn::new(descr.column(i), file.properties()))
                    .flatten()
            })
            .collect();
        Ok(Self {
            file,
            factory,
            columns: None,
            buffered_rows: 0,
            keys,
            max_rows: max_rows.max(1),
            max_bytes: max_bytes.max(1),
            out: w,
            room: 0,
            table,
            schema,
            rows: 0,
        })
    }

    pub fn table(&self) -> Table {
        self.table
    }

    /// Writes a batch of the file schema's columns (no partition column); string keys may be
    /// dictionaries ([`crate::tables::schema::key_dictionary_type`]): the writer encodes
    /// each column by its array's type, under the file schema's.
    pub async fn write(&mut self, batch: &RecordBatch) -> parquet::errors::Result<()> {
        check_columns(&self.schema, batch)?;
        let mut rest = batch.clone();
        while rest.num_rows() > 0 {
            // As `ArrowWriter` cuts row groups: by rows, and by bytes at the row group's
            // average row size so far.
            let mut take = rest.num_rows().min(self.max_rows - self.buffered_rows);
            let bytes = self.estimated_bytes();
            if let Some(row) = bytes.checked_div(self.buffered_rows) {
                let fit = (self.max_bytes.saturating_sub(bytes))
                    .checked_div(row)
                    .unwrap_or(usize::MAX);
                take = take.min(fit);
            }
            if take == 0 {
                self.flush_row_group().await?;
                continue;
            }
            self.write_rows(&rest.slice(0, take))?;
            self.rows += take as u64;
            rest = rest.slice(take, rest.num_rows() - take);
            if self.buffered_rows >= self.max_rows || self.estimated_bytes() >= self.max_bytes {
                self.flush_row_group().await?;
            }
        }
        Ok(())
    }

    /// Hands `batch` to the row group being built (started if none is).
    fn write_rows(&mut self, batch: &RecordBatch) -> parquet::errors::Result<()> {
        let columns = match &mut self.columns {
            Some(c) => c,
            none => {
                let writers = self
                    .factory
                    .create_column_writers(self.file.flushed_row_groups().len())?;
                none.insert(
                    writers
                        .into_iter()
                        .enumerate()
                        .map(|(i, w)| self.keys[i].is_none().then_some(w))
                        .collect(),
                )
            }
        };
        for (((writer, key), field), array) in columns
            .iter_mut()
            .zip(&mut self.keys)
            .zip(self.schema.fields())
            .zip(batch.columns())
        {
            if let Some(w) = writer {
                // One leaf a column: the tables have no structs.
                for leaf in compute_leaves(field, array)? {
                    w.write(&leaf)?;
                }
            } else if let Some(k) = key {
                k.write(array.as_ref())?;
            }
        }
        self.buffered_rows += batch.num_rows();
        Ok(())
    }

    /// The row group being built's size once encoded, as its column writers estimate it.
    fn estimated_bytes(&self) -> usize {
        self.sum(
            ArrowColumnWriter::get_estimated_total_bytes,
            KeyColumn::estimated_total_bytes,
        )
    }

    /// Memory held by the row group being built (encoded pages, dictionaries, buffers).
    pub fn buffered_bytes(&self) -> usize {
        self.sum(ArrowColumnWriter::memory_size, KeyColumn::memory_size)
    }

    /// The sum over the row group being built's columns of `arrow` or `key` of its writer.
    fn sum(
        &self,
        arrow: impl Fn(&ArrowColumnWriter) -> usize,
        key: impl Fn(&KeyColumn) -> usize,
    ) -> usize {
        let Some(columns) = &self.columns else {
            return 0;
        };
        columns
            .iter()
            .zip(&self.keys)
            .map(|(w, k)| w.as_ref().map(&arrow).or(k.as_ref().map(&key)).unwrap_or(0))
            .sum()
    }

    /// Column chunks of the row groups written out, whose metadata is kept for the footer.
    pub fn column_chunks(&self) -> usize {
        self.file
            .flushed_row_groups()
            .iter()
            .map(|rg| rg.num_columns())
            .sum()
    }

    /// Ends the row group being built (writes it out), freeing its memory.
    pub async fn flush_row_group(&mut self) -> parquet::errors::Result<()> {
        self.end_row_group()?;
        self.send().await
    }

    /// Writes the row group being built to the file's buffer.
    fn end_row_group(&mut self) -> parquet::errors::Result<()> {
        let Some(columns) = self.columns.take() else {
            return Ok(());
        };
        self.buffered_rows = 0;
        self.file.inner_mut().reserve(self.room);
        let mut rg = self.file.next_row_group()?;
        for (w, k) in columns.into_iter().zip(&mut self.keys) {
            if let Some(w) = w {
                w.close()?.append_to_row_group(&mut rg)?;
            } else if let Some(k) = k {
                let (pages, close) = k.close()?;
                rg.append_column(&pages, close)?;
            }
        }
        rg.close()?;
        Ok(())
    }

    /// Writes the footer and completes the upload.
    pub async fn close(mut self) -> parquet::errors::Result<FileStats> {
        self.end_row_group()?;
        self.file.inner_mut().reserve(self.room);
        self.file.finish()?;
        self.send().await?;
        self.out.complete().await?;
        Ok(FileStats { rows: self.rows })
    }

    /// Hands what the writer has encoded to `out`.
    async fn send(&mut self) -> parquet::errors::Result<()> {
        let buf = self.file.inner_mut();
        if buf.is_empty() {
            return Ok(());
        }
        self.room = buf.len() + buf.len() / 4;
        let encoded = std::mem::take(buf);
        self.out.write(encoded.into()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::conversations::DATASET as CONVERSATIONS;
    use crate::tables::{ConvertOptions, Converter, TableBatch};

    /// A simulated day's batches.
    fn day_batches() -> Vec<TableBatch> {
        let date = "2026-10-20".parse().expect("date");
        let mut conv = Converter::new(&CONVERSATIONS, ConvertOptions::default());
        let mut out = Vec::new();
        for page in crate::simulator::test_day_pages(date, 60) {
            out.extend(conv.push_page(&page).expect("convert"));
        }
        out.extend(conv.finish().expect("finish"));
        out
    }

    #[test]
    fn columns_empty_in_a_files_first_batch_are_snappy_the_rest_zstd() {
        let meta = ParquetMeta {
            interval: "2026-10-20T00:00:00Z/2026-10-21T00:00:00Z".into(),
            extracted_at: Utc::now(),
        };
        let settings = ParquetSettings::default();
        let (mut empty, mut full) = (0, 0);
        for tb in day_batches() {
            let props = writer_properties(tb.table, &settings, &meta, Some(&tb.batch));
            for c in tb.table.columns() {
                let Some(a) = tb.batch.column_by_name(&c.name) else {
                    continue;
                };
                let codec = props.compression(&leaf_path(c));
                if a.null_count() == a.len() {
                    assert_eq!(codec, Compression::SNAPPY, "{}.{}", tb.table, c.name);
                    empty += 1;
                } else if a.null_count() * 2 < a.len() {
                    assert!(
                        matches!(codec, Compression::ZSTD(_)),
                        "{}.{}: {codec:?}",
                        tb.table,
                        c.name
                    );
                    full += 1;
                }
            }
            // Without a first batch (or with another codec), one codec for all.
            let plain = writer_properties(tb.table, &settings, &meta, None);
            for c in tb.table.columns() {
                assert!(matches!(
                    plain.compression(&leaf_path(c)),
                    Compression::ZSTD(_)
                ));
            }
        }
        assert!(empty > 20 && full > 20, "empty {empty}, full {full}");
    }

    /// `batch` written by a [`TableFileWriter`] in two row groups.
    fn written(
        table: Table,
        settings: &ParquetSettings,
        meta: &ParquetMeta,
        batch: &RecordBatch,
    ) -> bytes::Bytes {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.parquet");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let f = tokio::fs::File::create(&path).await.expect("file");
            let mut w =
                TableFileWriter::try_new(f, table, settings, meta, Some(batch)).expect("writer");
            let half = batch.num_rows() / 2;
            w.write(&batch.slice(0, half)).await.expect("write");
            w.flush_row_group().await.expect("row group");
            w.write(&batch.slice(half, batch.num_rows() - half))
                .await
                .expect("write");
            w.close().await.expect("close");
        });
        std::fs::read(&path).expect("read").into()
    }

    /// Each table of a day written with `settings`, read back: per key column, its encodings
    /// in the file (every row group's), after checking that every column reads back as
    /// written.
    fn key_encodings_written(settings: &ParquetSettings) -> Vec<(String, Vec<Encoding>)> {
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let meta = ParquetMeta {
            interval: "2026-10-20T00:00:00Z/2026-10-21T00:00:00Z".into(),
            extracted_at: Utc::now(),
        };
        let mut out = Vec::new();
        for tb in day_batches() {
            let schema = file_schema(tb.table);
            // The file's columns as the converter made them (string keys are dictionaries).
            let batch = tb
                .batch
                .project(&(0..schema.fields().len()).collect::<Vec<_>>())
                .expect("file columns");
            let file = written(tb.table, settings, &meta, &batch);
            let reader = ParquetRecordBatchReaderBuilder::try_new(file.clone())
                .expect("reader")
                .build()
                .expect("reader");
            let back: Vec<RecordBatch> = reader.collect::<Result<_, _>>().expect("read back");
            let back = arrow::compute::concat_batches(&back[0].schema(), &back).expect("concat");
            assert_eq!(back.schema().fields().len(), schema.fields().len());
            for (i, f) in schema.fields().iter().enumerate() {
                // Lists read back with Parquet's element name (`element`), and keys were
                // written from dictionaries: the same values.
                let col = arrow::compute::cast(back.column(i), f.data_type()).expect("cast");
                let want = arrow::compute::cast(batch.column(i), f.data_type()).expect("cast");
                if f.data_type() == &arrow::datatypes::DataType::Utf8 {
                    // Readers see strings, whatever the writer was handed.
                    assert_eq!(back.schema().field(i).data_type(), f.data_type());
                }
                assert_eq!(&col, &want, "{}.{} reads back", tb.table, f.name());
            }
            let md = parquet::file::serialized_reader::SerializedFileReader::new(file)
                .expect("metadata");
            let md = parquet::file::reader::FileReader::metadata(&md);
            for c in tb.table.columns().iter().filter(|c| c.role == Role::Key) {
                let i = md
                    .file_metadata()
                    .schema_descr()
                    .columns()
                    .iter()
                    .position(|d| d.path() == &leaf_path(c))
                    .expect("key column in the file");
                for rg in md.row_groups() {
                    out.push((
                        format!("{}.{}", tb.table, c.name),
                        rg.column(i).encodings().collect(),
                    ));
                }
            }
        }
        out
    }

    #[test]
    fn a_batch_fits_its_file_only_with_the_files_columns_strings_or_string_dictionaries() {
        use arrow::array::{ArrayRef, DictionaryArray, Int64Array, UInt32Array};
        use arrow::datatypes::{DataType, Field, Schema, UInt32Type};
        let mut dictionaries = 0;
        for tb in day_batches() {
            let schema = file_schema(tb.table);
            let n = schema.fields().len();
            let batch = tb
                .batch
                .project(&(0..n).collect::<Vec<_>>())
                .expect("file columns");
            check_columns(&schema, &batch).expect("a converter batch fits its file");
            let Some(i) =
                (0..n).find(|i| matches!(batch.column(*i).data_type(), DataType::Dictionary(_, _)))
            else {
                continue;
            };
            dictionaries += 1;
            let name = schema.field(i).name().clone();
            let rows = batch.num_rows();
            let with = |array: ArrayRef| {
                let mut fields: Vec<Field> = batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone())
                    .collect();
                fields[i] = Field::new(&name, array.data_type().clone(), true);
                let mut columns = batch.columns().to_vec();
                columns[i] = array;
                RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns)
                    .expect("batch")
            };
            let numbers: ArrayRef = std::sync::Arc::new(Int64Array::from(vec![1; rows]));
            let number_dictionary: ArrayRef = std::sync::Arc::new(
                DictionaryArray::<UInt32Type>::try_new(
                    UInt32Array::from(vec![0; rows]),
                    std::sync::Arc::new(Int64Array::from(vec![1])),
                )
                .expect("dictionary"),
            );
            for wrong in [numbers, number_dictionary] {
                let e = check_columns(&schema, &with(wrong)).expect_err("wrong type");
                assert!(
                    e.to_string().contains(&format!("batch column {name} (")),
                    "{e}"
                );
            }
            let short = batch
                .project(&(0..n - 1).collect::<Vec<_>>())
                .expect("fewer");
            let e = check_columns(&schema, &short).expect_err("a column short");
            assert!(
                e.to_string()
                    .contains(&format!("a batch of {} columns for a file of {n}", n - 1)),
                "{e}"
            );
        }
        assert!(
            dictionaries > 5,
            "string keys are dictionaries in {dictionaries} tables"
        );
    }

    /// Min/max are written for times, numbers and booleans, not for strings.
    #[test]
    fn statistics_only_for_columns_that_are_not_strings() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let meta = ParquetMeta {
            interval: "2026-10-20T00:00:00Z/2026-10-21T00:00:00Z".into(),
            extracted_at: Utc::now(),
        };
        let mut seen = std::collections::BTreeSet::new();
        let mut checked = [0; 2];
        for tb in day_batches() {
            if !seen.insert(tb.table) {
                continue;
            }
            let schema = file_schema(tb.table);
            // The file's columns as the converter made them (string keys are dictionaries).
            let batch = tb
                .batch
                .project(&(0..schema.fields().len()).collect::<Vec<_>>())
                .expect("file columns");
            let props = writer_properties(tb.table, &ParquetSettings::default(), &meta, None);
            let mut file = Vec::new();
            let mut w = parquet::arrow::ArrowWriter::try_new(&mut file, schema, Some(props))
                .expect("writer");
            w.write(&batch).expect("write");
            w.close().expect("close");
            let r = SerializedFileReader::new(bytes::Bytes::from(file)).expect("reader");
            let rg = r.metadata().row_group(0);
            for c in tb.table.columns() {
                let path = leaf_path(c);
                let Some(chunk) = rg.columns().iter().find(|x| *x.column_path() == path) else {
                    panic!("{}: no chunk {path}", tb.table);
                };
                let stats = chunk.statistics();
                // An all-null chunk has no min/max whatever the setting.
                if stats.and_then(|s| s.null_count_opt()) == Some(rg.num_rows() as u64) {
                    continue;
                }
                let min_max = stats.is_some_and(|s| s.min_bytes_opt().is_some());
                let kept = !matches!(c.ty, Ty::Str | Ty::StrList);
                assert_eq!(min_max, kept, "{}.{}", tb.table, c.name);
                checked[usize::from(kept)] += 1;
            }
        }
        // Both kinds, many of each.
        assert!(checked[0] > 50 && checked[1] > 50, "{checked:?}");
    }

    #[test]
    fn key_columns_are_delta_encoded_unless_plain_keys() {
        let delta = key_encodings_written(&ParquetSettings::default());
        // Every child table has keys: ids (strings), the conversation's start (a time) and,
        // below segments, the segment's index (an integer).
        assert!(delta.len() >= 20, "{delta:?}");
        for want in [Encoding::DELTA_BYTE_ARRAY, Encoding::DELTA_BINARY_PACKED] {
            assert!(delta.iter().any(|(_, e)| e.contains(&want)), "{want:?}");
        }
        for (column, encodings) in &delta {
            assert!(
                !encodings.contains(&Encoding::PLAIN)
                    && encodings.iter().any(|e| matches!(
                        e,
                        Encoding::DELTA_BYTE_ARRAY | Encoding::DELTA_BINARY_PACKED
                    )),
                "{column}: {encodings:?}"
            );
        }
        // Snappy: parquet-rs writes the string keys (crate::sink::keys writes zstd only).
        let snappy = key_encodings_written(&ParquetSettings {
            compression: Codec::Snappy,
            ..ParquetSettings::default()
        });
        assert_eq!(snappy, delta);
        let plain = key_encodings_written(&ParquetSettings {
            delta_keys: false,
            ..ParquetSettings::default()
        });
        assert_eq!(plain.len(), delta.len());
        for (column, encodings) in &plain {
            assert!(
                encodings.contains(&Encoding::PLAIN),
                "{column}: {encodings:?}"
            );
            assert!(
                !encodings.iter().any(|e| matches!(
                    e,
                    Encoding::DELTA_BYTE_ARRAY | Encoding::DELTA_BINARY_PACKED
                )),
                "{column}: {encodings:?}"
            );
        }
    }

    #[test]
    fn codecs_parse_like_the_cli_says() {
        assert_eq!("zstd(3)".parse::<Codec>(), Ok(Codec::Zstd(3)));
        assert_eq!("ZSTD".parse::<Codec>(), Ok(Codec::Zstd(1)));
        assert_eq!("gzip(9)".parse::<Codec>(), Ok(Codec::Gzip(9)));
        assert_eq!("snappy".parse::<Codec>(), Ok(Codec::Snappy));
        assert_eq!("none".parse::<Codec>(), Ok(Codec::None));
        assert!("zstd(99)".parse::<Codec>().unwrap_err().contains("1..=22"));
        assert!("brotli".parse::<Codec>().unwrap_err().contains("expected"));
    }
}
