//! Key columns' chunks, encoded a run at a time.
//!
//! A key (`conversation_id`, `participant_id`, `conversation_start`, … on a child table's
//! rows) is its parent's value repeated on each child row, in runs. A string key comes as a
//! dictionary whose keys are parent rows ([`crate::tables::schema::key_dictionary_type`]),
//! so its runs are known without comparing strings; it is written DELTA_BYTE_ARRAY (a value
//! that repeats the previous one is a prefix length and an empty suffix). parquet-rs's
//! encoder does that a value at a time: looking the value up, comparing it with the previous
//! one, copying it, and adding two lengths to two encoders one call each. That was 9.6% of a
//! 500k-conversation `convert`'s CPU for 62M key values (perf, 2026-12-05). Here a run costs
//! one comparison and one copy, and the lengths are filled and bit-packed a page at a time.
//! Integer and time keys are written DELTA_BINARY_PACKED the same way, with the min/max
//! statistics and column index parquet-rs writes for them.
//!
//! The pages are the ones parquet-rs writes for such a column (PARQUET_1_0 data pages, no
//! levels: a key is required), with the offset index; the chunk is handed to the row group as
//! encoded pages ([`parquet::file::writer::SerializedRowGroupWriter::append_column`]).

use arrow::array::{Array, AsArray, StringArray};
use arrow::datatypes::{DataType, UInt32Type};
use bytes::Bytes;
use parquet::basic::{
    BoundaryOrder, Compression, Encoding, EncodingMask, PageType, Type as PhysicalType,
};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ColumnChunkMetaData, ColumnIndexBuilder, PageEncodingStats};
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::page_index::offset_index::{OffsetIndexMetaData, PageLocation};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::statistics::{Statistics, ValueStatistics};
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
    deltas32: Vec<i32>,
    deltas64: Vec<i64>,
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

/// Writes one key column's chunks, a row group at a time.
pub(super) struct KeyColumn {
    descr: ColumnDescPtr,
    compression: Compression,
    /// Min/max for the chunk, and per page in the column index (what parquet-rs writes
    /// under `EnabledStatistics::Page`); for integer keys only, as for every string column
    /// none are written ([`super::parquet`]).
    statistics: EnabledStatistics,
    /// Min/max in each page's header too.
    page_header_statistics: bool,
    /// A page is written out at this many values…
    page_values: usize,
    /// …or this many bytes (a string page's suffixes, an integer page's values).
    page_bytes: usize,
    page: PageBuf,
    /// The chunk's pages (header and data), from its first.
    pages: Vec<Bytes>,
    /// Their bytes.
    written: u64,
    locations: Vec<PageLocation>,
    /// Min and max of each page of an integer key.
    bounds: Vec<(i64, i64)>,
    rows: u64,
    uncompressed: i64,
}

/// The page being built.
enum PageBuf {
    Str(StrPage),
    /// DELTA_BINARY_PACKED's values.
    Int(Vec<i64>),
}

/// DELTA_BYTE_ARRAY's three parts.
#[derive(Default)]
struct StrPage {
    prefixes: Vec<i32>,
    suffixes: Vec<i32>,
    bytes: Vec<u8>,
    /// The last value of the last batch (the prefix of the next is counted against it).
    last: Vec<u8>,
}

impl StrPage {
    fn memory_size(&self) -> usize {
        (self.prefixes.capacity() + self.suffixes.capacity()) * 4
            + self.bytes.capacity()
            + self.last.capacity()
    }

    fn clear(&mut self) {
        self.prefixes.clear();
        self.suffixes.clear();
        self.bytes.clear();
        self.last.clear();
    }
}

impl PageBuf {
    fn new(int: bool) -> Self {
        match int {
            true => PageBuf::Int(Vec::new()),
            false => PageBuf::Str(StrPage::default()),
        }
    }

    fn values(&self) -> usize {
        match self {
            PageBuf::Str(p) => p.prefixes.len(),
            PageBuf::Int(v) => v.len(),
        }
    }

    /// Bytes held before encoding, against the page's size limit.
    fn bytes(&self) -> usize {
        match self {
            PageBuf::Str(p) => p.bytes.len(),
            PageBuf::Int(v) => v.len() * 8,
        }
    }

    fn memory_size(&self) -> usize {
        match self {
            PageBuf::Str(p) => p.memory_size(),
            PageBuf::Int(v) => v.capacity() * 8,
        }
    }
}

impl KeyColumn {
    /// A writer for the column `descr` (strings, or 64-bit integers and times) under
    /// `props`, or `None` where its type or codec is not one this writer implements
    /// (parquet-rs writes the column then).
    pub(super) fn new(descr: ColumnDescPtr, props: &WriterProperties) -> Option<Self> {
        let path = descr.path();
        let compression = props.compression(path);
        if !matches!(
            compression,
            Compression::UNCOMPRESSED | Compression::ZSTD(_)
        ) {
            return None;
        }
        let (int, statistics) = match descr.physical_type() {
            PhysicalType::BYTE_ARRAY => (false, EnabledStatistics::None),
            PhysicalType::INT64 => (true, props.statistics_enabled(path)),
            _ => return None,
        };
        Some(Self {
            statistics,
            page_header_statistics: int
                && statistics != EnabledStatistics::None
                && props.write_page_header_statistics(path),
            compression,
            page_values: props.data_page_row_count_limit().max(1),
            page_bytes: props.data_page_size_limit().max(1),
            page: PageBuf::new(int),
            pages: Vec::new(),
            written: 0,
            locations: Vec::new(),
            bounds: Vec::new(),
            rows: 0,
            uncompressed: 0,
            descr,
        })
    }

    /// Adds a column of a batch: strings or a dictionary of strings keyed by `u32` (where a
    /// run of one key is a run of one value) to a string key; 64-bit integers or times to an
    /// integer key. No value may be null.
    pub(super) fn write(&mut self, array: &dyn Array) -> Result<()> {
        if array.logical_null_count() != 0 {
            return Err(ParquetError::General(format!(
                "key column {} holds {} nulls",
                self.descr.path().string(),
                array.logical_null_count()
            )));
        }
        let int = matches!(self.page, PageBuf::Int(_));
        match array.data_type() {
            DataType::Dictionary(k, v)
                if !int && **k == DataType::UInt32 && **v == DataType::Utf8 =>
            {
                let d = array.as_dictionary::<UInt32Type>();
                let values: &StringArray = d.values().as_string();
                let keys = d.keys().values();
                let (mut i, mut prev) = (0, None);
                while i < keys.len() {
                    let k = keys[i];
                    let n = keys[i..].iter().take_while(|&&x| x == k).count();
                    let v = values.value(k as usize).as_bytes();
                    self.add_str_run(prev, v, n)?;
                    prev = Some(v);
                    i += n;
                }
                self.keep_last(prev);
            }
            DataType::Utf8 if !int => {
                let values: &StringArray = array.as_string();
                let (mut i, mut prev) = (0, None);
                while i < values.len() {
                    let v = values.value(i).as_bytes();
                    let n = 1
                        + (i + 1..values.len())
                            .take_while(|&j| values.value(j).as_bytes() == v)
                            .count();
                    self.add_str_run(prev, v, n)?;
                    prev = Some(v);
                    i += n;
                }
                self.keep_last(prev);
            }
            DataType::Int64 | DataType::Timestamp(_, _) if int => {
                let data = array.to_data();
                let values = &data.buffer::<i64>(0)[..array.len()];
                let mut i = 0;
                while i < values.len() {
                    let v = values[i];
                    let n = values[i..].iter().take_while(|&&x| x == v).count();
                    self.add_int_run(v, n)?;
                    i += n;
                }
            }
            other => {
                return Err(ParquetError::General(format!(
                    "key column {}: {other} is not a {} column",
                    self.descr.path().string(),
                    if int { "64-bit integer" } else { "string" }
                )))
            }
        }
        Ok(())
    }

    /// Adds `n` copies of `value` to a string key, after `prev` (the value before, where
    /// the batch holds it; else the one kept at the end of the last batch).
    fn add_str_run(&mut self, prev: Option<&[u8]>, value: &[u8], mut n: usize) -> Result<()> {
        let len = i32::try_from(value.len()).map_err(|_| {
            ParquetError::General(format!(
                "key column {}: a value of {} bytes",
                self.descr.path().string(),
                value.len()
            ))
        })?;
        while n > 0 {
            let PageBuf::Str(p) = &mut self.page else {
                return Ok(());
            };
            let take = n.min(self.page_values - p.prefixes.len());
            // A page's first value has no prefix.
            let before = match p.prefixes.is_empty() {
                true => &[][..],
                false => prev.unwrap_or(&p.last),
            };
            let prefix = common_prefix(before, value);
            p.prefixes.push(prefix as i32);
            p.suffixes.push(len - prefix as i32);
            p.bytes.extend_from_slice(&value[prefix..]);
            // The rest of the run repeats the value in full.
            p.prefixes.resize(p.prefixes.len() + take - 1, len);
            p.suffixes.resize(p.suffixes.len() + take - 1, 0);
            self.rows += take as u64;
            n -= take;
            self.page_full()?;
        }
        Ok(())
    }

    /// Keeps a batch's last value for the next batch's first prefix: within a batch, each
    /// run's prefix is counted against the value before it where the batch holds it, not a
    /// copy.
    fn keep_last(&mut self, value: Option<&[u8]>) {
        if let (PageBuf::Str(p), Some(v)) = (&mut self.page, value) {
            p.last.clear();
            p.last.extend_from_slice(v);
        }
    }

    /// Adds `n` copies of `value` to an integer key.
    fn add_int_run(&mut self, value: i64, mut n: usize) -> Result<()> {
        while n > 0 {
            let PageBuf::Int(values) = &mut self.page else {
                return Ok(());
            };
            let take = n.min(self.page_values - values.len());
            values.resize(values.len() + take, value);
            self.rows += take as u64;
            n -= take;
            self.page_full()?;
        }
        Ok(())
    }

    /// Writes the page out if it is full.
    fn page_full(&mut self) -> Result<()> {
        if self.page.values() >= self.page_values || self.page.bytes() >= self.page_bytes {
            self.write_page()?;
        }
        Ok(())
    }

    /// Encodes, compresses and adds to the chunk the page being built.
    fn write_page(&mut self) -> Result<()> {
        if self.page.values() == 0 {
            return Ok(());
        }
        SCRATCH.with_borrow_mut(|scratch| self.write_page_with(scratch))
    }

    fn write_page_with(&mut self, scratch: &mut Scratch) -> Result<()> {
        let values = self.page.values();
        let first_row = self.rows - values as u64;
        let Scratch {
            encoded,
            compressed,
            deltas32,
            deltas64,
            zstd,
        } = scratch;
        encoded.clear();
        let (encoding, statistics) = match &mut self.page {
            PageBuf::Str(p) => {
                delta_binary_packed(&p.prefixes, deltas32, encoded);
                delta_binary_packed(&p.suffixes, deltas32, encoded);
                encoded.extend_from_slice(&p.bytes);
                p.clear();
                (Encoding::DELTA_BYTE_ARRAY, None)
            }
            PageBuf::Int(v) => {
                delta_binary_packed(v, deltas64, encoded);
                // Folds rather than `min`/`max`: they vectorize.
                let min = v.iter().fold(i64::MAX, |m, &x| m.min(x));
                let max = v.iter().fold(i64::MIN, |m, &x| m.max(x));
                v.clear();
                self.bounds.push((min, max));
                let header = self
                    .page_header_statistics
                    .then(|| int_statistics(&self.descr, min, max));
                (Encoding::DELTA_BINARY_PACKED, header)
            }
        };

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
            encoding,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics,
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
        self.written as usize + self.page.memory_size()
    }

    /// The chunk's size as written so far, and the page being built's before encoding.
    pub(super) fn estimated_total_bytes(&self) -> usize {
        self.written as usize + self.page.bytes()
    }

    /// Ends the chunk: its bytes and what the row group records of it. The writer goes on
    /// with the next row group's chunk.
    pub(super) fn close(&mut self) -> Result<(Pages, ColumnCloseResult)> {
        self.write_page()?;
        // Nothing is held between row groups.
        self.page = PageBuf::new(matches!(self.page, PageBuf::Int(_)));
        let encoding = match self.page {
            PageBuf::Str(_) => Encoding::DELTA_BYTE_ARRAY,
            PageBuf::Int(_) => Encoding::DELTA_BINARY_PACKED,
        };
        let chunk = Pages(std::mem::take(&mut self.pages));
        let written = std::mem::take(&mut self.written);
        let bounds = std::mem::take(&mut self.bounds);
        let pages = self.locations.len() as i32;
        let mut metadata = ColumnChunkMetaData::builder(self.descr.clone())
            .set_compression(self.compression)
            .set_encodings_mask(EncodingMask::new_from_encodings(
                [Encoding::RLE, encoding].iter(),
            ))
            .set_page_encoding_stats(if pages > 0 {
                vec![PageEncodingStats {
                    page_type: PageType::DATA_PAGE,
                    encoding,
                    count: pages,
                }]
            } else {
                Vec::new()
            })
            .set_total_compressed_size(written as i64)
            .set_total_uncompressed_size(self.uncompressed)
            .set_num_values(self.rows as i64)
            .set_data_page_offset(0);
        let mut column_index = None;
        if let (Some(min), Some(max)) = (
            bounds.iter().map(|b| b.0).min(),
            bounds.iter().map(|b| b.1).max(),
        ) {
            if self.statistics != EnabledStatistics::None {
                metadata = metadata.set_statistics(int_statistics(&self.descr, min, max));
            }
            if self.statistics == EnabledStatistics::Page {
                column_index = Some(int_column_index(&bounds)?);
            }
        }
        let close = ColumnCloseResult {
            bytes_written: written,
            rows_written: self.rows,
            metadata: metadata.build()?,
            bloom_filter: None,
            column_index,
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

/// Min/max of an INT64 column as parquet-rs writes them: no nulls, no distinct count, and
/// the deprecated min/max fields too where the type's order is signed.
fn int_statistics(descr: &ColumnDescPtr, min: i64, max: i64) -> Statistics {
    Statistics::Int64(
        ValueStatistics::new(Some(min), Some(max), None, Some(0), false)
            .with_backwards_compatible_min_max(descr.sort_order().is_signed()),
    )
}

/// The column index of an INT64 chunk from its pages' min/max, with the boundary order
/// parquet-rs finds (ascending where no page's min or max is below the previous page's;
/// descending the other way round).
fn int_column_index(bounds: &[(i64, i64)]) -> Result<ColumnIndexMetaData> {
    let mut b = ColumnIndexBuilder::new(PhysicalType::INT64);
    for &(min, max) in bounds {
        b.append(
            false,
            min.to_le_bytes().to_vec(),
            max.to_le_bytes().to_vec(),
            0,
            None,
        );
    }
    let ascending = bounds
        .windows(2)
        .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1);
    let descending = bounds
        .windows(2)
        .all(|w| w[0].0 >= w[1].0 && w[0].1 >= w[1].1);
    b.set_boundary_order(match (ascending, descending) {
        (true, _) => BoundaryOrder::ASCENDING,
        (false, true) => BoundaryOrder::DESCENDING,
        (false, false) => BoundaryOrder::UNORDERED,
    });
    b.build()
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

/// Miniblocks per block of DELTA_BINARY_PACKED.
const MINIBLOCKS: usize = 4;

/// A value DELTA_BINARY_PACKED packs, with the miniblock parquet-rs packs it in (32 values
/// of a 32-bit type, 64 of a 64-bit one: the same layout, so the same bytes for zstd), and
/// its deltas in its own width, wrapping, as readers add them up (and as the smallest of a
/// block then vectorizes for 32-bit values).
trait Packed: Copy + Ord + Into<i64> {
    const MINIBLOCK: usize;
    const MAX: Self;
    fn delta(self, next: Self) -> Self;
    /// `self - min`, wrapping, as the unsigned value packed.
    fn above(self, min: Self) -> u64;
}

macro_rules! packed {
    ($t:ty, $unsigned:ty, $miniblock:expr) => {
        impl Packed for $t {
            const MINIBLOCK: usize = $miniblock;
            const MAX: Self = <$t>::MAX;
            fn delta(self, next: Self) -> Self {
                next.wrapping_sub(self)
            }
            fn above(self, min: Self) -> u64 {
                u64::from(self.wrapping_sub(min) as $unsigned)
            }
        }
    };
}

packed!(i32, u32, 32);
packed!(i64, u64, 64);

/// The largest miniblock.
const MAX_MINIBLOCK: usize = 64;

/// Appends `values` encoded DELTA_BINARY_PACKED (Parquet's encodings spec) to `out`: a
/// header (block size, miniblocks per block, value count, first value), then per block of
/// four miniblocks of deltas its smallest delta, and each miniblock's deltas less that,
/// bit-packed at the width of its largest. A run of equal values packs to width 0: no bytes.
fn delta_binary_packed<T: Packed>(values: &[T], deltas: &mut Vec<T>, out: &mut Vec<u8>) {
    let block = T::MINIBLOCK * MINIBLOCKS;
    uleb(block as u64, out);
    uleb(MINIBLOCKS as u64, out);
    uleb(values.len() as u64, out);
    let Some(&first) = values.first() else {
        uleb(0, out);
        return;
    };
    uleb(zigzag(first.into()), out);
    deltas.clear();
    deltas.extend(values.windows(2).map(|w| w[0].delta(w[1])));
    for block in deltas.chunks(block) {
        // A fold rather than `min`: it vectorizes.
        let min = block.iter().fold(T::MAX, |m, &d| m.min(d));
        uleb(zigzag(min.into()), out);
        let widths_at = out.len();
        out.extend_from_slice(&[0; MINIBLOCKS]);
        for (m, mini) in block.chunks(T::MINIBLOCK).enumerate() {
            // The width of the largest is the width of all of them or'ed together.
            let all = mini.iter().fold(0u64, |a, &d| a | d.above(min));
            let width = 64 - all.leading_zeros();
            out[widths_at + m] = width as u8;
            pack(mini, T::MINIBLOCK, min, width, out);
        }
    }
}

/// Bit-packs a miniblock of `size` values (`mini` less `min`, padded with zeros) at `width`
/// bits each, least significant bit first: `size / 8 × width` bytes.
fn pack<T: Packed>(mini: &[T], size: usize, min: T, width: u32, out: &mut Vec<u8>) {
    if width == 0 {
        return;
    }
    let mut values = [0u64; MAX_MINIBLOCK];
    for (v, &d) in values.iter_mut().zip(mini) {
        *v = d.above(min);
    }
    let (mut word, mut used) = (0u64, 0u32);
    for &v in &values[..size] {
        word |= v << used;
        used += width;
        if used >= 64 {
            out.extend_from_slice(&word.to_le_bytes());
            used -= 64;
            // The bits of `v` that did not fit.
            word = if used == 0 { 0 } else { v >> (width - used) };
        }
    }
    // A multiple of 32 values: whole words and at most half of one.
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

    /// Deterministic numbers below `m` (xorshift).
    fn numbers(mut x: u64) -> impl FnMut(u64) -> u64 {
        move |m| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        }
    }

    /// Deterministic: batches of dictionaries (runs of keys, and distinct keys of equal
    /// strings side by side) and of plain strings (runs of equal values), with the strings
    /// they hold in order.
    fn batches(seed: u64, n: usize) -> (Vec<ArrayRef>, Vec<String>) {
        let pool = pool();
        let mut next = numbers(seed);
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

    /// Times with runs, steps both ways and the extremes side by side (deltas that wrap).
    fn times(seed: u64, rows: usize) -> Vec<i64> {
        let mut next = numbers(seed);
        let mut out = Vec::new();
        let mut t = 1_790_000_000_000i64;
        while out.len() < rows {
            t = match next(50) {
                0 => i64::MIN,
                1 => i64::MAX,
                2 => t.wrapping_sub(next(1 << 40) as i64),
                _ => t.wrapping_add(next(90_000) as i64),
            };
            let long = next(8) == 0;
            let run = 1 + next(if long { 5_000 } else { 12 }) as usize;
            out.extend(std::iter::repeat_n(t, run.min(rows - out.len())));
        }
        out
    }

    /// An integer key written by [`KeyColumn`] and by parquet-rs (DELTA_BINARY_PACKED,
    /// page statistics) in row groups of `groups` rows: the same values, statistics,
    /// column index and page boundaries.
    #[test]
    fn integer_keys_match_parquet_rs_values_statistics_and_page_index() {
        use arrow::array::TimestampMillisecondArray;
        use arrow::datatypes::{Field, Schema, TimeUnit};
        use parquet::arrow::ArrowWriter;
        use parquet::file::properties::EnabledStatistics;
        let field = Field::new(
            "t",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        );
        let schema = Arc::new(Schema::new(vec![field]));
        let zstd = Compression::ZSTD(ZstdLevel::try_new(1).expect("level"));
        for (seed, compression, page_values, groups) in [
            (1, zstd, 2048, vec![8192, 4096]),
            (2, Compression::UNCOMPRESSED, 1024, vec![3072, 1024, 7168]),
            (3, zstd, 20480, vec![65536]),
        ] {
            let props = WriterProperties::builder()
                .set_compression(compression)
                .set_dictionary_enabled(false)
                .set_encoding(Encoding::DELTA_BINARY_PACKED)
                .set_statistics_enabled(EnabledStatistics::Page)
                .set_data_page_row_count_limit(page_values)
                .build();
            let all = times(seed, groups.iter().sum());
            let batches: Vec<arrow::array::RecordBatch> = groups
                .iter()
                .scan(0, |at, &n| {
                    let a = TimestampMillisecondArray::from(all[*at..*at + n].to_vec())
                        .with_timezone("UTC");
                    *at += n;
                    Some(
                        arrow::array::RecordBatch::try_new(schema.clone(), vec![Arc::new(a)])
                            .expect("batch"),
                    )
                })
                .collect();

            let mut theirs = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props.clone()))
                .expect("writer");
            for b in &batches {
                theirs.write(b).expect("write");
                theirs.flush().expect("row group");
            }
            let theirs = Bytes::from(theirs.into_inner().expect("close"));

            let (mut file, _) = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props))
                .expect("writer")
                .into_serialized_writer()
                .expect("writer");
            let mut key = KeyColumn::new(file.schema_descr().column(0), file.properties())
                .expect("an INT64 key");
            for b in &batches {
                // In two writes: a run may go on across them.
                let (a, rest) = (
                    b.column(0).slice(0, 1000),
                    b.column(0).slice(1000, b.num_rows() - 1000),
                );
                key.write(a.as_ref()).expect("write");
                key.write(rest.as_ref()).expect("write");
                let (pages, close) = key.close().expect("close");
                let mut rg = file.next_row_group().expect("row group");
                rg.append_column(&pages, close).expect("append");
                rg.close().expect("row group");
            }
            let ours = Bytes::from(file.into_inner().expect("close"));

            let metadata = |file: &Bytes| {
                ParquetRecordBatchReaderBuilder::try_new_with_options(
                    file.clone(),
                    ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required),
                )
                .expect("reader")
                .metadata()
                .clone()
            };
            let (m, t) = (metadata(&ours), metadata(&theirs));
            assert_eq!(m.num_row_groups(), groups.len());
            for rg in 0..groups.len() {
                let (a, b) = (m.row_group(rg).column(0), t.row_group(rg).column(0));
                assert_eq!(a.statistics(), b.statistics(), "seed {seed} row group {rg}");
                assert!(a.statistics().is_some());
                assert_eq!(a.num_values(), b.num_values());
                // The same layout: the same bytes before compression.
                assert_eq!(a.uncompressed_size(), b.uncompressed_size(), "seed {seed}");
                assert_eq!(a.compression(), b.compression());
                assert_eq!(
                    a.encodings().collect::<Vec<_>>(),
                    b.encodings().collect::<Vec<_>>()
                );
                let (pa, pb) = (
                    m.page_index_for_row_group(rg),
                    t.page_index_for_row_group(rg),
                );
                assert_eq!(
                    format!("{:?}", pa.column_index(0).expect("ours")),
                    format!("{:?}", pb.column_index(0).expect("theirs")),
                    "seed {seed} row group {rg}: column index"
                );
                let rows = |o: &OffsetIndexMetaData| {
                    o.page_locations()
                        .iter()
                        .map(|l| l.first_row_index)
                        .collect::<Vec<_>>()
                };
                assert_eq!(
                    rows(pa.offset_index(0).expect("ours")),
                    rows(pb.offset_index(0).expect("theirs"))
                );
            }
            let read_all = |file: Bytes| {
                let mut out = Vec::new();
                for b in ParquetRecordBatchReaderBuilder::try_new(file)
                    .expect("reader")
                    .build()
                    .expect("reader")
                {
                    let b = b.expect("batch");
                    out.extend_from_slice(
                        b.column(0)
                            .as_primitive::<arrow::datatypes::TimestampMillisecondType>()
                            .values(),
                    );
                }
                out
            };
            assert!(read_all(ours) == all, "seed {seed}: values");
            assert!(read_all(theirs) == all);
        }
    }

    /// A string key written by [`KeyColumn`] and by parquet-rs (DELTA_BYTE_ARRAY, from the
    /// same dictionaries): pages of the same bytes before compression, and no statistics.
    #[test]
    fn string_keys_match_parquet_rs_page_bytes() {
        use arrow::datatypes::{Field, Schema};
        use parquet::arrow::ArrowWriter;
        use parquet::file::properties::EnabledStatistics;
        let field = Field::new("id", DataType::Utf8, false);
        let schema = Arc::new(Schema::new(vec![field]));
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("level")))
            .set_dictionary_enabled(false)
            .set_encoding(Encoding::DELTA_BYTE_ARRAY)
            .set_statistics_enabled(EnabledStatistics::None)
            .set_data_page_row_count_limit(1024)
            .build();
        // Batches of whole pages (parquet-rs closes a page between batches of 1,024 rows).
        let (_, all) = batches(7, 60);
        let all = StringArray::from(all);
        assert!(all.len() >= 8192, "{} rows", all.len());
        let groups: Vec<ArrayRef> = (0..2)
            .map(|g| Arc::new(all.slice(g * 4096, 4096)) as ArrayRef)
            .collect();

        let mut theirs =
            ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props.clone())).expect("writer");
        for a in &groups {
            let b =
                arrow::array::RecordBatch::try_new(schema.clone(), vec![a.clone()]).expect("batch");
            theirs.write(&b).expect("write");
            theirs.flush().expect("row group");
        }
        let theirs = Bytes::from(theirs.into_inner().expect("close"));
        // Ours in writes that cut runs: a run goes on across them.
        let cut = |a: &ArrayRef| vec![a.slice(0, 1500), a.slice(1500, 1000), a.slice(2500, 1596)];
        let ours = write(&groups.iter().map(cut).collect::<Vec<_>>(), props);
        let md = |f: &Bytes| {
            ParquetRecordBatchReaderBuilder::try_new(f.clone())
                .expect("reader")
                .metadata()
                .clone()
        };
        let (m, t) = (md(&ours), md(&theirs));
        for rg in 0..2 {
            let (a, b) = (m.row_group(rg).column(0), t.row_group(rg).column(0));
            assert_eq!(
                a.uncompressed_size(),
                b.uncompressed_size(),
                "row group {rg}"
            );
            assert_eq!(a.statistics(), b.statistics());
            assert_eq!(
                a.encodings().collect::<Vec<_>>(),
                b.encodings().collect::<Vec<_>>()
            );
        }
        assert!(read(ours, None) == read(theirs, None));
    }
}
