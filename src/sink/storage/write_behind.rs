//! Streaming a large file to disk without keeping it in the page cache.
//!
//! A file written in one go and synced at the end stays dirty in the page cache until the sync,
//! and every page of it is a page the kernel has to find, fill and later write back. The writer
//! never reads back what it wrote, so where the file system takes direct I/O (`O_DIRECT`; ext4,
//! XFS and most local ones) the bytes go from an aligned buffer of ours to the disk with no page
//! cache in between: the kernel's copy and its bookkeeping were 5–8% of a 500k convert's CPU.
//! Each write is staged through an aligned buffer a MiB at a time and written in whole blocks;
//! the last partial block waits for the next write, and the file's end is written padded, then
//! cut to its length. The staging buffers are shared by the files being written: as many as
//! writes run at once, not one per open file. A direct write returns once the device has the
//! bytes (on a network file system, once the server has them); the writes run on the blocking
//! pool, so the encoders go on meanwhile.
//!
//! Where direct I/O is refused (tmpfs on older kernels, FUSE, a device with larger blocks: the
//! flag or a write fails with `EINVAL`, which writes nothing), the file goes on through the page
//! cache, written behind: each full window's write-back starts at once and the window before is
//! waited for and dropped from the cache (what PostgreSQL's `*_flush_after` settings and
//! `dd oflag=nocache` do), so dirty memory stays under two windows a file and the kernel reuses
//! the pages it just got back. Those calls are advice: the sync at completion is what reports a
//! write error (since Linux 4.13 it reports errors met by earlier write-back too).
//!
//! On the 2-core development VM a fresh page-cache page is also a first touch on the host: `dd`
//! of 635 MB took 0.16–1.54 s of system time through the cache, 0.16–0.24 s with
//! `oflag=nocache` and nothing beyond reading its input with `oflag=direct` (2026-12-04).

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::ops::Range;
use std::sync::Mutex;

use crate::direct_io::{aligned_start, set_direct, BLOCK, EINVAL};

/// Bytes a window holds: large enough that the disk sees long writes, small against memory.
const WINDOW: u64 = 8 << 20;

/// Bytes staged per direct write. A/B at 500k (medians of 4 alternating runs, thin LTO): 1 MiB
/// 7.9% less CPU than the page cache, 256 KiB 4.7%, 128 KiB 4.0%.
const STAGE: usize = 1 << 20;

/// A file being written front to back, its bytes handed to the disk as it goes.
#[derive(Debug)]
pub struct WriteBehind {
    file: File,
    /// Bytes written so far (the file's length once synced).
    len: u64,
    mode: Mode,
}

#[derive(Debug)]
enum Mode {
    /// `O_DIRECT`: `tail` holds the bytes past the last whole block written (fewer than
    /// [`BLOCK`]).
    Direct { tail: Vec<u8> },
    /// Through the page cache, written behind.
    Cached { windows: Windows },
}

impl WriteBehind {
    /// Takes `file`, open for writing at offset 0, and turns direct I/O on where it can.
    pub fn new(file: File) -> Self {
        let mode = if set_direct(&file, true) {
            Mode::Direct { tail: Vec::new() }
        } else {
            Mode::Cached {
                windows: Windows::default(),
            }
        };
        Self { file, len: 0, mode }
    }

    #[cfg(test)]
    fn is_direct(&self) -> bool {
        matches!(self.mode, Mode::Direct { .. })
    }

    pub fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.len += data.len() as u64;
        match self.mode {
            Mode::Direct { .. } => self.write_direct(data, false),
            Mode::Cached { .. } => self.write_cached(data),
        }
    }

    /// Writes what is still staged and syncs the file.
    pub fn sync_all(&mut self) -> std::io::Result<()> {
        if matches!(&self.mode, Mode::Direct { tail } if !tail.is_empty()) {
            self.write_direct(&[], true)?;
            // The last block went out padded.
            self.file.set_len(self.len)?;
        }
        self.file.sync_all()
    }

    fn write_cached(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.file.write_all(data)?;
        if let Mode::Cached { windows } = &mut self.mode {
            if let Some(step) = windows.wrote(data.len() as u64) {
                advise(&self.file, step);
            }
        }
        Ok(())
    }

    /// Writes the tail and `data` in whole blocks through a staging buffer, keeping what is
    /// past the last whole block as the new tail; `end` writes everything, the last block
    /// padded with zeros.
    fn write_direct(&mut self, mut data: &[u8], end: bool) -> std::io::Result<()> {
        let mut stage = Stage::take();
        let buf = stage.aligned();
        while let Mode::Direct { tail } = &mut self.mode {
            let held = tail.len();
            let take = (STAGE - held).min(data.len());
            let filled = held + take;
            let whole = if end && take == data.len() {
                filled.div_ceil(BLOCK) * BLOCK
            } else {
                filled / BLOCK * BLOCK
            };
            if whole == 0 {
                tail.extend_from_slice(&data[..take]);
                return Ok(());
            }
            buf[..held].copy_from_slice(tail);
            buf[held..filled].copy_from_slice(&data[..take]);
            buf[filled..whole.max(filled)].fill(0);
            tail.clear();
            data = &data[take..];
            match write_blocks(&mut self.file, &buf[..whole]) {
                Ok(()) => tail.extend_from_slice(&buf[whole.min(filled)..filled]),
                Err((written, e)) if e.raw_os_error() == Some(EINVAL) => {
                    // Refused (after `written` bytes of a short write, if any): the rest goes
                    // through the page cache.
                    set_direct(&self.file, false);
                    let at = std::io::Seek::stream_position(&mut self.file)?;
                    self.mode = Mode::Cached {
                        windows: Windows::starting_at(at),
                    };
                    self.write_cached(&buf[written.min(filled)..filled])?;
                }
                Err((_, e)) => return Err(e),
            }
            if data.is_empty() {
                return Ok(());
            }
        }
        self.write_cached(data)
    }
}

/// Writes all of `bytes`; on an error, how many were written before it.
fn write_blocks(file: &mut File, bytes: &[u8]) -> Result<(), (usize, std::io::Error)> {
    let mut done = 0;
    while done < bytes.len() {
        match file.write(&bytes[done..]) {
            Ok(0) => return Err((done, ErrorKind::WriteZero.into())),
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err((done, e)),
        }
    }
    Ok(())
}

/// A [`STAGE`]-byte buffer at a [`BLOCK`]-aligned address, back to the pool when dropped.
struct Stage(Vec<u8>);

/// Staging buffers not in use.
static STAGES: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

impl Stage {
    fn take() -> Self {
        let pooled = STAGES.lock().unwrap_or_else(|e| e.into_inner()).pop();
        Self(pooled.unwrap_or_else(|| vec![0; STAGE + BLOCK]))
    }

    fn aligned(&mut self) -> &mut [u8] {
        let at = aligned_start(&self.0);
        &mut self.0[at..at + STAGE]
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        STAGES.lock().unwrap_or_else(|e| e.into_inner()).push(buf);
    }
}

/// What to do when a window fills: start writing `start` back, and wait for `drop` (the window
/// before) to be on disk and drop it from the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    start: Range<u64>,
    drop: Option<Range<u64>>,
}

/// The window bookkeeping, apart from the calls: `[dropped, started)` is being written back,
/// `[started, written)` is the window filling.
#[derive(Debug, Default)]
struct Windows {
    written: u64,
    started: u64,
    dropped: u64,
}

impl Windows {
    /// Windows of a file whose first `at` bytes are on disk already.
    fn starting_at(at: u64) -> Self {
        Self {
            written: at,
            started: at,
            dropped: at,
        }
    }

    fn wrote(&mut self, n: u64) -> Option<Step> {
        self.written += n;
        if self.written - self.started < WINDOW {
            return None;
        }
        let drop = (self.started > self.dropped).then_some(self.dropped..self.started);
        let step = Step {
            start: self.started..self.written,
            drop,
        };
        self.dropped = self.started;
        self.started = self.written;
        Some(step)
    }
}

#[cfg(target_os = "linux")]
fn advise(file: &File, step: Step) {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    let len = |r: &Range<u64>| (r.end - r.start) as i64;
    // SAFETY: `fd` is open for the borrow of `file`; the calls take integers only and touch no
    // memory of ours. Their results are advice (see the module's doc), so they are not checked.
    unsafe {
        libc::sync_file_range(
            fd,
            step.start.start as _,
            len(&step.start) as _,
            libc::SYNC_FILE_RANGE_WRITE,
        );
        if let Some(d) = step.drop {
            libc::sync_file_range(
                fd,
                d.start as _,
                len(&d) as _,
                libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER,
            );
            libc::posix_fadvise(fd, d.start as _, len(&d) as _, libc::POSIX_FADV_DONTNEED);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise(_: &File, _: Step) {}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn each_full_window_starts_and_the_one_before_is_dropped() {
        let mut w = Windows::default();
        let mut steps = Vec::new();
        // Writes of 3 MiB: windows close at 9, 18, 27 MiB.
        for i in 1..=10u64 {
            if let Some(s) = w.wrote(3 * MIB) {
                steps.push((i * 3, s));
            }
        }
        assert_eq!(
            steps,
            vec![
                (
                    9,
                    Step {
                        start: 0..9 * MIB,
                        drop: None
                    }
                ),
                (
                    18,
                    Step {
                        start: 9 * MIB..18 * MIB,
                        drop: Some(0..9 * MIB)
                    }
                ),
                (
                    27,
                    Step {
                        start: 18 * MIB..27 * MIB,
                        drop: Some(9 * MIB..18 * MIB)
                    }
                ),
            ]
        );
        // A write larger than a window is a window of its own.
        assert_eq!(
            w.wrote(20 * MIB),
            Some(Step {
                start: 27 * MIB..50 * MIB,
                drop: Some(18 * MIB..27 * MIB)
            })
        );
    }

    use crate::direct_io::MISALIGN;

    /// Whether files in `dir` can be written with `O_DIRECT` (asked of the kernel directly).
    fn direct_io_works(dir: &std::path::Path) -> bool {
        use std::os::unix::fs::OpenOptionsExt;
        let Ok(mut f) = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(dir.join("probe"))
        else {
            return false;
        };
        let mut stage = Stage::take();
        write_blocks(&mut f, &stage.aligned()[..BLOCK]).is_ok()
    }

    /// Odd sizes from one byte to several stages, and the bytes they make.
    fn chunks() -> Vec<Vec<u8>> {
        let sizes = [
            1,
            4095,
            1,
            4096,
            3 * STAGE + 7,
            10,
            STAGE - 3,
            700_001,
            8191,
            2,
        ];
        (0..60u32)
            .map(|i| {
                let n = sizes[i as usize % sizes.len()] + i as usize * 977;
                (0..n).map(|j| (j as u32 ^ i).to_le_bytes()[0]).collect()
            })
            .collect()
    }

    // In the crate's folder rather than the system's temporary one, which may be a tmpfs.
    fn dir() -> tempfile::TempDir {
        tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).expect("tempdir")
    }

    #[test]
    fn the_file_holds_every_byte_written() {
        let dir = dir();
        let direct = direct_io_works(dir.path());
        let path = dir.path().join("f");
        let mut w = WriteBehind::new(File::create(&path).expect("create"));
        assert_eq!(w.is_direct(), direct && cfg!(target_os = "linux"));
        let mut want = Vec::new();
        for chunk in chunks() {
            w.write_all(&chunk).expect("write");
            want.extend_from_slice(&chunk);
        }
        assert_eq!(w.is_direct(), direct && cfg!(target_os = "linux"));
        w.sync_all().expect("sync");
        drop(w);
        assert!(want.len() as u64 > 3 * WINDOW && want.len() % BLOCK != 0);
        assert!(std::fs::read(&path).expect("read") == want);
    }

    #[test]
    fn a_direct_write_refused_midway_goes_on_through_the_page_cache() {
        let dir = dir();
        let direct = direct_io_works(dir.path());
        let path = dir.path().join("f");
        let mut w = WriteBehind::new(File::create(&path).expect("create"));
        let mut want = Vec::new();
        for (i, chunk) in chunks().into_iter().enumerate() {
            assert_eq!(w.is_direct(), direct && i <= 13, "write {i}");
            if i == 13 {
                // Direct I/O from here on fails with EINVAL, as on a device with larger blocks.
                MISALIGN.set(true);
            }
            w.write_all(&chunk).expect("write");
            want.extend_from_slice(&chunk);
        }
        MISALIGN.set(false);
        assert!(!w.is_direct());
        w.sync_all().expect("sync");
        drop(w);
        assert!(std::fs::read(&path).expect("read") == want);
    }

    #[test]
    fn a_file_shorter_than_a_block_is_its_bytes() {
        let dir = dir();
        for n in [0, 1, 4095, 4096, 4097] {
            let path = dir.path().join(format!("f{n}"));
            let mut w = WriteBehind::new(File::create(&path).expect("create"));
            let data: Vec<u8> = (0..n).map(|j| (j % 251) as u8).collect();
            w.write_all(&data).expect("write");
            w.sync_all().expect("sync");
            drop(w);
            assert_eq!(std::fs::read(&path).expect("read"), data, "{n} bytes");
        }
    }
}
