//! Saved API pages on disk, for `convert`: NDJSON (one page object a line, what the `_raw/`
//! archive holds), a JSON file with one page or an array of conversation records; any of them
//! gzipped (`.gz`). Pages are read one at a time, so memory stays bounded by the largest page.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::direct_io::DirectReader;
use crate::page::{Page, PageError, PageOrigin};

/// Why saved pages cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Page(#[from] PageError),
}

/// Yields the pages of one file.
pub struct PageReader {
    path: PathBuf,
    name: String,
    /// The key of the record list in a page object ([`crate::datasets::Dataset::envelope`]).
    envelope: &'static str,
    kind: Kind,
}

enum Kind {
    Lines {
        reader: Box<dyn BufRead + Send>,
        line: usize,
        /// The capacity to give the next line's buffer: the last line's length and some.
        /// Pages are lines of about the same size (hundreds of KB): a buffer grown from empty
        /// would copy each line about twice more.
        hint: usize,
    },
    Whole(Option<Vec<u8>>),
}

impl PageReader {
    /// Opens `path`, whose pages hold their records under `envelope`.
    pub fn open(path: &Path, envelope: &'static str) -> Result<Self, FileError> {
        let io = |source| FileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let name = path.display().to_string();
        let plain = name
            .strip_suffix(".gz")
            .unwrap_or(&name)
            .to_ascii_lowercase();
        // Read once, front to back: direct I/O where the file system takes it.
        let reader: Box<dyn BufRead + Send> = if name.ends_with(".gz") {
            Box::new(BufReader::with_capacity(
                1 << 20,
                flate2::bufread::MultiGzDecoder::new(DirectReader::new(file)),
            ))
        } else {
            Box::new(DirectReader::new(file))
        };
        let kind = if plain.ends_with(".ndjson") || plain.ends_with(".jsonl") {
            Kind::Lines {
                reader,
                line: 0,
                hint: 0,
            }
        } else {
            let mut buf = Vec::new();
            let mut reader = reader;
            reader.read_to_end(&mut buf).map_err(io)?;
            Kind::Whole(Some(buf))
        };
        Ok(Self {
            path: path.to_path_buf(),
            name,
            envelope,
            kind,
        })
    }
}

impl PageReader {
    /// The next page's text, not parsed yet (so that parsing can run on other threads).
    pub fn next_raw(&mut self) -> Option<Result<RawPage, FileError>> {
        match &mut self.kind {
            Kind::Whole(buf) => {
                let body = buf.take()?;
                Some(Ok(RawPage {
                    body,
                    origin: PageOrigin::new(format!("file {}", self.name)),
                    list: true,
                    envelope: self.envelope,
                }))
            }
            Kind::Lines { reader, line, hint } => loop {
                let mut buf = Vec::with_capacity(*hint);
                match read_line(reader.as_mut(), &mut buf) {
                    Ok(0) => return None,
                    Ok(n) => {
                        *hint = n + n / 8;
                        *line += 1;
                        if buf.iter().all(u8::is_ascii_whitespace) {
                            continue;
                        }
                        return Some(Ok(RawPage {
                            body: buf,
                            origin: PageOrigin::new(format!("file {} line {line}", self.name)),
                            list: false,
                            envelope: self.envelope,
                        }));
                    }
                    Err(source) => {
                        return Some(Err(FileError::Io {
                            path: self.path.clone(),
                            source,
                        }))
                    }
                }
            },
        }
    }
}

/// `BufRead::read_until(b'\n')`, with the `memchr` crate's vectorised search instead of std's
/// word-at-a-time one: a page is a line of hundreds of KB, searched once in full.
fn read_line(r: &mut (dyn BufRead + Send), out: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut read = 0;
    loop {
        let (done, used) = {
            let available = match r.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            match memchr::memchr(b'\n', available) {
                Some(i) => {
                    out.extend_from_slice(&available[..=i]);
                    (true, i + 1)
                }
                None => {
                    out.extend_from_slice(available);
                    (available.is_empty(), available.len())
                }
            }
        };
        r.consume(used);
        read += used;
        if done {
            return Ok(read);
        }
    }
}

impl Iterator for PageReader {
    type Item = Result<Page, FileError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_raw().map(|r| r.and_then(RawPage::parse))
    }
}

/// One page of a file as read: its text and where it is.
pub struct RawPage {
    body: Vec<u8>,
    origin: PageOrigin,
    /// A whole file, which may also be a bare array of records.
    list: bool,
    envelope: &'static str,
}

impl RawPage {
    /// The page's length and a hash of its bytes: whether a second read of the input found
    /// the same page (not a cryptographic check; it catches files changed between reads).
    pub fn fingerprint(&self) -> (usize, u64) {
        use std::hash::Hasher;
        let mut h = rustc_hash::FxHasher::default();
        h.write(&self.body);
        (self.body.len(), h.finish())
    }

    /// The page, split where an earlier read of the same bytes found its records
    /// ([`Page::from_ranges`]): no JSON parsed.
    pub fn with_records(self, records: Vec<std::ops::Range<usize>>) -> Result<Page, FileError> {
        Page::from_ranges(Bytes::from(self.body), records, self.origin).map_err(Into::into)
    }

    /// Where the page is (file and line).
    pub fn origin(&self) -> &PageOrigin {
        &self.origin
    }

    /// [`RawPage::parse`] with each record handed to `each` as it is read
    /// ([`Page::parse_each`]).
    pub fn parse_each(self, each: &mut crate::page::EachRecord<'_>) -> Result<Page, FileError> {
        Page::parse_each(
            Bytes::from(self.body),
            self.origin,
            self.envelope,
            self.list,
            each,
        )
        .map_err(Into::into)
    }

    pub fn parse(self) -> Result<Page, FileError> {
        let body = Bytes::from(self.body);
        let page = if self.list {
            Page::parse_page_or_list(body, self.origin, self.envelope)
        } else {
            Page::parse(body, self.origin, self.envelope)
        };
        page.map_err(Into::into)
    }
}

/// The unparsed pages of several files in order, each with the index of its file; stops
/// after the first error (a file that cannot be opened or read).
pub fn raw_pages<'a>(
    paths: &'a [PathBuf],
    envelope: &'static str,
) -> impl Iterator<Item = (usize, Result<RawPage, FileError>)> + 'a {
    let (mut file, mut reader, mut failed) = (0usize, None::<PageReader>, false);
    std::iter::from_fn(move || loop {
        if failed {
            return None;
        }
        let r = match reader.as_mut() {
            Some(r) => r,
            None => match PageReader::open(paths.get(file)?, envelope) {
                Ok(r) => reader.insert(r),
                Err(e) => {
                    failed = true;
                    return Some((file, Err(e)));
                }
            },
        };
        match r.next_raw() {
            Some(page) => {
                failed = page.is_err();
                return Some((file, page));
            }
            None => {
                reader = None;
                file += 1;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::conversations::DATASET as CONVERSATIONS;
    use std::io::Write;

    const P1: &str = r#"{"conversations":[{"conversationId":"a","conversationStart":"2026-11-20T00:00:00.000Z"}],"totalHits":2}"#;
    const P2: &str = r#"{"conversations":[{"conversationId":"b","conversationStart":"2026-11-20T00:00:01.000Z"}]}"#;

    /// Lines split as std's `read_until` splits them, whatever the buffer's size: lines longer
    /// than it, newlines at its edges, empty lines, a last line without a newline.
    #[test]
    fn read_line_splits_like_read_until() {
        let text: Vec<u8> = (0..300u32)
            .flat_map(|i| {
                let mut l = vec![b'x'; (i as usize * 7) % 23];
                l.push(b'\n');
                l
            })
            .chain(*b"\n\r\nlast")
            .collect();
        for cap in [1, 2, 7, 16, 64, 4096] {
            let (mut ours, mut std_lines) = (Vec::new(), Vec::new());
            let mut r = BufReader::with_capacity(cap, &text[..]);
            let mut s = BufReader::with_capacity(cap, &text[..]);
            loop {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                let n = read_line(&mut r, &mut a).expect("read");
                assert_eq!(n, s.read_until(b'\n', &mut b).expect("read"));
                assert_eq!(n, a.len());
                if n == 0 {
                    break;
                }
                ours.push(a);
                std_lines.push(b);
            }
            assert_eq!(ours, std_lines, "buffer of {cap}");
            assert_eq!(ours.len(), 303);
            assert_eq!(ours.concat(), text);
        }
    }

    fn ids(path: &Path) -> Vec<String> {
        PageReader::open(path, CONVERSATIONS.envelope)
            .expect("open")
            .flat_map(|p| {
                let p = p.expect("page");
                p.records()
                    .map(|r| {
                        crate::page::record_key(r, &CONVERSATIONS.record)
                            .expect("key")
                            .id
                            .to_string()
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn reads_ndjson_gzip_pages_and_lists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nd = dir.path().join("pages.ndjson");
        std::fs::write(&nd, format!("{P1}\n\n{P2}\n")).expect("write");
        assert_eq!(ids(&nd), ["a", "b"]);

        let gz = dir.path().join("pages.ndjson.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(format!("{P1}\n{P2}").as_bytes()).expect("gz");
        std::fs::write(&gz, enc.finish().expect("gz")).expect("write");
        assert_eq!(ids(&gz), ["a", "b"]);

        let list = dir.path().join("records.json");
        std::fs::write(
            &list,
            r#"[{"conversationId":"c","conversationStart":"2026-11-20T00:00:00.000Z"}]"#,
        )
        .expect("write");
        assert_eq!(ids(&list), ["c"]);
    }

    #[test]
    fn a_broken_line_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nd = dir.path().join("pages.ndjson");
        std::fs::write(&nd, format!("{P1}\n{{\"conversations\":[{{\"conv\n")).expect("write");
        let results: Vec<_> = PageReader::open(&nd, CONVERSATIONS.envelope)
            .expect("open")
            .collect();
        assert!(results[0].is_ok());
        let err = results[1].as_ref().expect_err("broken line").to_string();
        assert!(err.contains("pages.ndjson line 2"), "{err}");
        let missing = PageReader::open(&dir.path().join("nope.ndjson"), CONVERSATIONS.envelope)
            .err()
            .expect("missing file")
            .to_string();
        assert!(missing.contains("nope.ndjson"), "{missing}");
    }
}
