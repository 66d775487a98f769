//! String key columns' chunks, encoded a run at a time.
//!
//! A string key (`conversation_id`, `participant_id`, … on a child table's rows) is its
//! parent's id repeated on each child row: the converter hands it over as a dictionary whose
//! keys are parent rows ([`crate::tables::schema::key_dictionary_type`]), so its runs are
//! known without comparing strings. It is written DELTA_BYTE_ARRAY (a value that repeats the
//! previous one is a prefix length and an empty suffix), and parquet-rs's encoder does that a
//! value at a time: looking the value up, comparing it with the previous one byte by byte,
//! copying it, and adding two lengths to two encoders one call each. That was 9.6% of a
//! 500k-conversation `convert`'s CPU for 62M key values (perf, 2026-12-05). Here a run costs
//! one comparison and one copy, and the lengths are filled and bit-packed a page at a time.
//!
//! The pages are the ones parquet-rs writes for such a column (PARQUET_1_0 data pages, no
//! levels: a key is required; no statistics, as for every string column), with the offset
//! index; the chunk is handed to the row group as encoded bytes
//! ([`parquet::file::writer::SerializedRowGroupWriter::append_column`]).

use arrow::array::{Array, AsArray, StringArray};
use arrow::datatypes::{DataType, UInt32Type};
use bytes::Bytes;
use parquet::basic::{Compression, Encoding, EncodingMask, PageType};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ColumnChunkMetaData, PageEncodingStats};
use parquet::file::page_index::offset_index::{OffsetIndexMetaData, PageLocation};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

thread_local! {
    /// What every key column written on a thread shares: its scratch buffers (a page
    /// encoded, then compressed: up to a page's size each) and one zstd context a level
    /// (parquet-rs makes one per column chunk). A file's key columns each hold only their
    /// page being built and their chunk's pages, and those only while a row group is open.
    static SCRATCH: std::cell::RefCell<Scratch> = Default::default();
}

#[derive(Default)]
struct Scratch {
    encoded: Vec<u8>,
    compressed: Vec<u8>,
    deltas: Vec<i64>,
    zstd: Vec<(i32, zstd::bulk::Compressor<'static>)>,
}

/// The compressor of `level` among `list`, made on first use.
fn compressor<'a>(
    list: &'a mut Vec<(i32, zstd::bulk::Compressor<'static>)>,
    level: i32,
) -> std::io::Result<&'a mut zstd::bulk::Compressor<'static>> {
    let i = match list.iter().position(|(l, _)| *l == level) {
        Some(i) => i,
        None => {
            list.push((level, zstd::bulk::Compressor::new(level)?));
            list.len() - 1
        }
    };
    Ok(&mut list[i].1)
}

/// Writes one string key column's chunks, a row group at a time.
pub(super) struct KeyColumn {
    descr: ColumnDescPtr,
    compression: Compression,
    /// A page is written out at this many values…
    page_values: usize,
    /// …or this many bytes of suffixes.
    page_bytes: usize,
    page: PageBuf,
    /// The chunk's pages (header and data), from its first.
    pages: Vec<Bytes>,
    /// Their bytes.
    written: u64,
    locations: Vec<PageLocation>,
    rows: u64,
    uncompressed: i64,
}

/// The page being built: DELTA_BYTE_ARRAY's three parts.
#[derive(Default)]
struct PageBuf {
    prefixes: Vec<i32>,
    suffixes: Vec<i32>,
    bytes: Vec<u8>,
    /// The last value added (the prefix of the next is counted against it).
    last: Vec<u8>,
}

impl KeyColumn {
    /// A writer for the column `descr` under `props`, or `None` where its codec is not one
    /// this writer implements (parquet-rs writes the column then).
    pub(super) fn new(descr: ColumnDescPtr, props: &WriterProperties) -> Option<Self> {
        let compression = props.compression(descr.path());
        if !matches!(
            compression,
            Compression::UNCOMPRESSED | Compression::ZSTD(_)
        ) {
            return None;
        }
        Some(Self {
            descr,
            compression,
            page_values: props.data_page_row_count_limit().max(1),
            page_bytes: props.data_page_size_limit().max(1),
            page: PageBuf::default(),
            pages: Vec::new(),
            written: 0,
            locations: Vec::new(),
            rows: 0,
            uncompressed: 0,
        })
    }

    /// Adds a column of a batch: strings, or a dictionary of strings keyed by `u32` (where
    /// a run of one key is a run of one value). No value may be null.
    pub(super) fn write(&mut self, array: &dyn Array) -> Result<()> {
        if array.logical_null_count() != 0 {
            return Err(ParquetError::General(format!(
                "key column {} holds {} nulls",
                self.descr.path().string(),
                array.logical_null_count()
            )));
        }
        match array.data_type() {
            DataType::Dictionary(k, v) if **k == DataType::UInt32 && **v == DataType::Utf8 => {
                let d = array.as_dictionary::<UInt32Type>();
                let values: &StringArray = d.values().as_string();
                let keys = d.keys().values();
                let mut i = 0;
                while i < keys.len() {
                    let k = keys[i];
                    let n = keys[i..].iter().take_while(|&&x| x == k).count();
                    self.add_run(values.value(k as usize).as_bytes(), n)?;
                    i += n;
                }
            }
            DataType::Utf8 => {
                let values: &StringArray = array.as_string();
                let mut i = 0;
                while i < values.len() {
                    let v = values.value(i);
                    let n = 1
                        + (i + 1..values.len())
                            .take_while(|&j| values.value(j) == v)
                            .count();
                    self.add_run(v.as_bytes(), n)?;
                    i += n;
                }
            }
            other => {
                return Err(ParquetError::General(format!(
                    "key column {}: {other} is not a string column",
                    self.descr.path().string()
                )))
            }
        }
        Ok(())
    }

    /// Adds `n` copies of `value`.
    fn add_run(&mut self, value: &[u8], mut n: usize) -> Result<()> {
        let len = i32::try_from(value.len()).map_err(|_| {
            ParquetError::General(format!(
                "key column {}: a value of {} bytes",
                self.descr.path().string(),
                value.len()
            ))
        })?;
        while n > 0 {
            let p = &mut self.page;
            let take = n.min(self.page_values - p.prefixes.len());
            let prefix = common_prefix(&p.last, value);
            p.prefixes.push(prefix as i32);
            p.suffixes.push(len - prefix as i32);
            p.bytes.extend_from_slice(&value[prefix..]);
            // The rest of the run repeats the value in full.
            p.prefixes.resize(p.prefixes.len() + take - 1, len);
            p.suffixes.resize(p.suffixes.len() + take - 1, 0);
            p.last.clear();
            p.last.extend_from_slice(value);
            self.rows += take as u64;
            n -= take;
            if p.prefixes.len() >= self.page_values || p.bytes.len() >= self.page_bytes {
                self.write_page()?;
            }
        }
        Ok(())
    }

    /// Encodes, compresses and adds to the chunk the page being built.
    fn write_page(&mut self) -> Result<()> {
        if self.page.prefixes.is_empty() {
            return Ok(());
        }
        SCRATCH.with_borrow_mut(|scratch| self.write_page_with(scratch))
    }

    fn write_page_with(&mut self, scratch: &mut Scratch) -> Result<()> {
        let p = &mut self.page;
        let values = p.prefixes.len();
        let first_row = self.rows - values as u64;
        let Scratch {
            encoded,
            compressed,
            deltas,
            zstd,
        } = scratch;
        encoded.clear();
        delta_binary_packed(&p.prefixes, deltas, encoded);
        delta_binary_packed(&p.suffixes, deltas, encoded);
        encoded.extend_from_slice(&p.bytes);
        p.prefixes.clear();
        p.suffixes.clear();
        p.bytes.clear();
        p.last.clear();

        let uncompressed = encoded.len();
        let buf = match self.compression {
            Compression::ZSTD(level) => {
                compressed.clear();
                compressed.reserve(zstd::zstd_safe::compress_bound(uncompressed));
                compressor(zstd, level.compression_level())
                    .and_then(|c| c.compress_to_buffer(encoded.as_slice(), compressed))
                    .map_err(|e| ParquetError::External(Box::new(e)))?;
                Bytes::from(std::mem::take(compressed))
            }
            _ => Bytes::copy_from_slice(encoded),
        };
        let page = Page::DataPage {
            buf,
            num_values: values as u32,
            encoding: Encoding::DELTA_BYTE_ARRAY,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        // The page's header, then its data: the header takes a few dozen bytes.
        let mut out = TrackedWrite::new(Vec::with_capacity(64 + page.buffer().len()));
        let spec = SerializedPageWriter::new(&mut out)
            .write_page(CompressedPage::new(page, uncompressed))?;
        self.uncompressed += spec.uncompressed_size as i64;
        self.locations.push(PageLocation {
            offset: self.written as i64,
            compressed_page_size: spec.compressed_size as i32,
            first_row_index: first_row as i64,
        });
        self.written += spec.bytes_written;
        self.pages.push(Bytes::from(out.into_inner()?));
        Ok(())
    }

    /// Memory held: the chunk's pages and the page being built.
    pub(super) fn memory_size(&self) -> usize {
        let p = &self.page;
        self.written as usize
            + (p.prefixes.capacity() + p.suffixes.capacity()) * 4
            + p.bytes.capacity()
            + p.last.capacity()
    }

    /// The chunk's size as written so far, and the page being built's before compression.
    pub(super) fn estimated_total_bytes(&self) -> usize {
        self.written as usize + self.page.bytes.len() + self.page.prefixes.len()
    }

    /// Ends the chunk: its bytes and what the row group records of it. The writer goes on
    /// with the next row group's chunk.
    pub(super) fn close(&mut self) -> Result<(Pages, ColumnCloseResult)> {
        self.write_page()?;
        // Nothing is held between row groups.
        self.page = PageBuf::default();
        let chunk = Pages(std::mem::take(&mut self.pages));
        let written = std::mem::take(&mut self.written);
        let pages = self.locations.len() as i32;
        let metadata = ColumnChunkMetaData::builder(self.descr.clone())
            .set_compression(self.compression)
            .set_encodings_mask(EncodingMask::new_from_encodings(
                [Encoding::RLE, Encoding::DELTA_BYTE_ARRAY].iter(),
            ))
            .set_page_encoding_stats(if pages > 0 {
                vec![PageEncodingStats {
                    page_type: PageType::DATA_PAGE,
                    encoding: Encoding::DELTA_BYTE_ARRAY,
                    count: pages,
                }]
            } else {
                Vec::new()
            })
            .set_total_compressed_size(written as i64)
            .set_total_uncompressed_size(self.uncompressed)
            .set_num_values(self.rows as i64)
            .set_data_page_offset(0)
            .build()?;
        let close = ColumnCloseResult {
            bytes_written: written,
            rows_written: self.rows,
            metadata,
            bloom_filter: None,
            column_index: None,
            offset_index: Some(OffsetIndexMetaData {
                page_locations: std::mem::take(&mut self.locations),
                unencoded_byte_array_data_bytes: None,
            }),
        };
        self.rows = 0;
        self.uncompressed = 0;
        Ok((chunk, close))
    }
}

/// A column chunk's pages, read as one run of bytes by
/// [`parquet::file::writer::SerializedRowGroupWriter::append_column`].
pub(super) struct Pages(Vec<Bytes>);

impl parquet::file::reader::Length for Pages {
    fn len(&self) -> u64 {
        self.0.iter().map(|p| p.len() as u64).sum()
    }
}

impl parquet::file::reader::ChunkReader for Pages {
    type T = PagesReader;

    fn get_read(&self, start: u64) -> Result<PagesReader> {
        let mut pages = std::collections::VecDeque::from(self.0.clone());
        let mut skip = start as usize;
        while let Some(p) = pages.front_mut() {
            if skip < p.len() {
                bytes::Buf::advance(p, skip);
                break;
            }
            skip -= p.len();
            pages.pop_front();
        }
        Ok(PagesReader(pages))
    }

    fn get_bytes(&self, start: u64, length: usize) -> Result<Bytes> {
        use std::io::Read;
        let mut out = Vec::with_capacity(length);
        self.get_read(start)?
            .take(length as u64)
            .read_to_end(&mut out)?;
        Ok(out.into())
    }
}

/// Reads [`Pages`] from an offset.
pub(super) struct PagesReader(std::collections::VecDeque<Bytes>);

impl std::io::Read for PagesReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(p) = self.0.front_mut() else {
            return Ok(0);
        };
        let n = buf.len().min(p.len());
        buf[..n].copy_from_slice(&p[..n]);
        bytes::Buf::advance(p, n);
        if p.is_empty() {
            self.0.pop_front();
        }
        Ok(n)
    }
}

/// The length of the common prefix of `a` and `b`.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Values per block of DELTA_BINARY_PACKED, and per miniblock (what parquet-rs writes).
const BLOCK: usize = 128;
const MINIBLOCKS: usize = 4;
const MINIBLOCK: usize = BLOCK / MINIBLOCKS;

/// Appends `values` encoded DELTA_BINARY_PACKED (Parquet's encodings spec) to `out`: a
/// header (block size, miniblocks per block, value count, first value), then per block of
/// 128 deltas its smallest delta and four miniblocks of 32 deltas less that, bit-packed at
/// the width of each one's largest. A run of equal values packs to width 0: no bytes.
fn delta_binary_packed(values: &[i32], deltas: &mut Vec<i64>, out: &mut Vec<u8>) {
    uleb(BLOCK as u64, out);
    uleb(MINIBLOCKS as u64, out);
    uleb(values.len() as u64, out);
    let Some(&first) = values.first() else {
        uleb(0, out);
        return;
    };
    uleb(zigzag(first as i64), out);
    deltas.clear();
    deltas.extend(values.windows(2).map(|w| i64::from(w[1]) - i64::from(w[0])));
    for block in deltas.chunks(BLOCK) {
        // Folds rather than `min`/`max`: they vectorize.
        let min = block.iter().fold(i64::MAX, |m, &d| m.min(d));
        uleb(zigzag(min), out);
        let widths_at = out.len();
        out.extend_from_slice(&[0; MINIBLOCKS]);
        for (m, mini) in block.chunks(MINIBLOCK).enumerate() {
            // The width of the largest is the width of all of them or'ed together.
            let all = mini
                .iter()
                .fold(0u64, |a, &d| a | d.wrapping_sub(min) as u64);
            let width = 64 - all.leading_zeros();
            out[widths_at + m] = width as u8;
            pack(mini, min, width, out);
        }
    }
}

/// Bit-packs 32 values (`mini` less `min`, padded with zeros) at `width` bits each, least
/// significant bit first: `4 × width` bytes.
fn pack(mini: &[i64], min: i64, width: u32, out: &mut Vec<u8>) {
    if width == 0 {
        return;
    }
    let mut values = [0u64; MINIBLOCK];
    for (v, &d) in values.iter_mut().zip(mini) {
        *v = d.wrapping_sub(min) as u64;
    }
    let (mut word, mut used) = (0u64, 0u32);
    for v in values {
        word |= v << used;
        used += width;
        if used >= 64 {
            out.extend_from_slice(&word.to_le_bytes());
            used -= 64;
            // The bits of `v` that did not fit.
            word = if used == 0 { 0 } else { v >> (width - used) };
        }
    }
    // 32 × width bits: whole words and at most half of one.
    out.extend_from_slice(&word.to_le_bytes()[..(used / 8) as usize]);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn uleb(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, DictionaryArray, UInt32Array};
    use parquet::arrow::arrow_reader::{
        ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
    };
    use parquet::basic::ZstdLevel;
    use parquet::file::metadata::PageIndexPolicy;
    use parquet::file::writer::SerializedFileWriter;
    use std::sync::Arc;

    /// Strings that share prefixes, differ in length by hundreds of bytes, are empty or not
    /// ASCII: the lengths' deltas take every width from 0 to 10 bits.
    fn pool() -> Vec<String> {
        let mut v: Vec<String> = ["", "a", "ab", "abc", "abd", "b", "ünï", "ünïcode"]
            .map(String::from)
            .into();
        v.push("x".repeat(700));
        v.push(format!("{}y", "x".repeat(699)));
        v.extend((0..20).map(|i| format!("{:08x}-4d2c-9f0e-{i:012}", i * 7919)));
        v
    }

    /// Deterministic: batches of dictionaries (runs of keys, and distinct keys of equal
    /// strings side by side) and of plain strings (runs of equal values), with the strings
    /// they hold in order.
    fn batches(seed: u64, n: usize) -> (Vec<ArrayRef>, Vec<String>) {
        let pool = pool();
        let mut x = seed;
        let mut next = move |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let (mut arrays, mut all) = (Vec::<ArrayRef>::new(), Vec::new());
        for b in 0..n {
            // Runs of 1 to 40, now and then one of 300 (longer than a page).
            let mut rows = Vec::new();
            while rows.len() < 200 {
                let v = next(pool.len() as u64) as usize;
                let run = if next(10) == 0 {
                    300
                } else {
                    1 + next(40) as usize
                };
                rows.extend(std::iter::repeat_n(v, run));
            }
            if b % 2 == 0 {
                // The dictionary holds every string twice: keys `i` and `i + len` are equal.
                let mut values = pool.clone();
                values.extend(pool.iter().cloned());
                let keys: Vec<u32> = rows
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| (v + pool.len() * (i / 7 % 2)) as u32)
                    .collect();
                arrays.push(Arc::new(
                    DictionaryArray::<UInt32Type>::try_new(
                        UInt32Array::from(keys),
                        Arc::new(StringArray::from(values)),
                    )
                    .expect("dictionary"),
                ));
            } else {
                arrays.push(Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|&v| &pool[v]),
                )));
            }
            all.extend(rows.iter().map(|&v| pool[v].clone()));
        }
        (arrays, all)
    }

    /// A file of one required string column whose row groups are `groups`, written by a
    /// [`KeyColumn`].
    fn write(groups: &[Vec<ArrayRef>], props: WriterProperties) -> Bytes {
        let schema = Arc::new(
            parquet::schema::parser::parse_message_type(
                "message m { required binary id (STRING); }",
            )
            .expect("schema"),
        );
        let props = Arc::new(props);
        let mut file =
            SerializedFileWriter::new(Vec::new(), schema, props.clone()).expect("writer");
        let mut key = KeyColumn::new(file.schema_descr().column(0), &props).expect("its codec");
        for group in groups {
            for a in group {
                key.write(a.as_ref()).expect("write");
            }
            let (pages, close) = key.close().expect("close");
            let mut rg = file.next_row_group().expect("row group");
            rg.append_column(&pages, close).expect("append");
            rg.close().expect("row group");
        }
        file.into_inner().expect("footer").into()
    }

    fn read(file: Bytes, selection: Option<RowSelection>) -> Vec<String> {
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
        let mut b =
            ParquetRecordBatchReaderBuilder::try_new_with_options(file, options).expect("reader");
        if let Some(s) = selection {
            b = b.with_row_selection(s);
        }
        let mut out = Vec::new();
        for batch in b.build().expect("reader") {
            let batch = batch.expect("batch");
            let col: &StringArray = batch.column(0).as_string();
            out.extend(col.iter().map(|v| v.expect("required").to_string()));
        }
        out
    }

    fn props(compression: Compression, page_values: usize, page_bytes: usize) -> WriterProperties {
        WriterProperties::builder()
            .set_compression(compression)
            .set_data_page_row_count_limit(page_values)
            .set_data_page_size_limit(page_bytes)
            .build()
    }

    #[test]
    fn reads_back_as_written_compressed_or_not_in_pages_of_any_size() {
        let zstd = Compression::ZSTD(ZstdLevel::try_new(1).expect("level"));
        for (seed, compression, page_values, page_bytes) in [
            (1, zstd, 20_000, 1 << 20),
            (2, zstd, 7, 1 << 20),
            (3, Compression::UNCOMPRESSED, 64, 100),
            (4, Compression::UNCOMPRESSED, 1, 1 << 20),
            (5, zstd, 129, 5_000),
        ] {
            let (a, mut want) = batches(seed, 6);
            let (b, more) = batches(seed + 100, 3);
            want.extend(more);
            let file = write(&[a, b], props(compression, page_values, page_bytes));
            let got = read(file.clone(), None);
            assert_eq!(got.len(), want.len(), "seed {seed}");
            assert!(got == want, "seed {seed}: the values read back differ");

            let md = ParquetRecordBatchReaderBuilder::try_new_with_options(
                file.clone(),
                ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required),
            )
            .expect("reader")
            .metadata()
            .clone();
            let mut first_rows = 0;
            for rg in 0..md.num_row_groups() {
                let chunk = md.row_group(rg).column(0);
                assert_eq!(chunk.compression(), compression);
                assert!(chunk.encodings().any(|e| e == Encoding::DELTA_BYTE_ARRAY));
                assert!(chunk.statistics().is_none(), "no statistics for strings");
                let pages = md
                    .page_index_for_row_group(rg)
                    .offset_index(0)
                    .expect("offset index")
                    .page_locations()
                    .clone();
                assert_eq!(pages[0].first_row_index, 0);
                assert!(pages
                    .windows(2)
                    .all(|w| w[0].first_row_index < w[1].first_row_index
                        && w[1].first_row_index - w[0].first_row_index <= page_values as i64));
                let rows = md.row_group(rg).num_rows();
                if page_values < 200 {
                    assert!(
                        pages.len() as i64 >= rows / page_values as i64,
                        "{} pages",
                        pages.len()
                    );
                }
                first_rows += rows;
            }
            assert_eq!(first_rows as usize, want.len());

            // Rows from the middle: the reader skips whole pages by the offset index.
            let (skip, take) = (want.len() / 3, want.len() / 4);
            let selection = RowSelection::from(vec![
                RowSelector::skip(skip),
                RowSelector::select(take),
                RowSelector::skip(want.len() - skip - take),
            ]);
            let got = read(file, Some(selection));
            assert!(
                got[..] == want[skip..skip + take],
                "seed {seed}: selected rows differ"
            );
        }
    }

    #[test]
    fn a_null_or_a_column_that_is_not_strings_is_an_error_naming_the_column() {
        let p = props(Compression::UNCOMPRESSED, 100, 1 << 20);
        let schema = Arc::new(
            parquet::schema::parser::parse_message_type(
                "message m { required binary parent_key (STRING); }",
            )
            .expect("schema"),
        );
        let descr = parquet::schema::types::SchemaDescriptor::new(schema);
        let mut key = KeyColumn::new(descr.column(0), &p).expect("codec");
        let nulls = StringArray::from(vec![Some("a"), None, None]);
        let e = key.write(&nulls).expect_err("nulls").to_string();
        assert!(e.contains("key column parent_key holds 2 nulls"), "{e}");
        let numbers = arrow::array::Int64Array::from(vec![1, 2]);
        let e = key.write(&numbers).expect_err("numbers").to_string();
        assert!(
            e.contains("key column parent_key: Int64 is not a string column"),
            "{e}"
        );
        // Snappy is parquet-rs's to write.
        assert!(
            KeyColumn::new(descr.column(0), &props(Compression::SNAPPY, 100, 1 << 20)).is_none()
        );
    }
}
