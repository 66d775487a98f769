//! Direct I/O (`O_DIRECT`): a file's bytes moved between the disk and an aligned buffer of
//! ours, with no page cache in between, where the file system takes it (ext4, XFS and most
//! local ones). Writing: [`crate::sink`]'s write-behind files. Reading: [`DirectReader`], for
//! `convert`'s input.
//!
//! Where direct I/O is refused (tmpfs on older kernels, FUSE, a device with larger blocks: the
//! flag or a call fails with `EINVAL`, which moves nothing), the file goes on through the page
//! cache.

use std::fs::File;
use std::io::{BufRead, ErrorKind, Read};

/// Direct I/O's unit for offsets, lengths and buffer addresses: 4 KiB is a multiple of every
/// common logical block size (a device needing more refuses the first call, see above).
pub(crate) const BLOCK: usize = 4096;

#[cfg(target_os = "linux")]
pub(crate) const EINVAL: i32 = libc::EINVAL;
#[cfg(not(target_os = "linux"))]
pub(crate) const EINVAL: i32 = 22;

/// Turns `O_DIRECT` on or off; false where it cannot be (the file is then read or written
/// through the page cache).
#[cfg(target_os = "linux")]
pub(crate) fn set_direct(file: &File, on: bool) -> bool {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is open for the borrow of `file`; F_GETFL/F_SETFL take and return integers.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            return false;
        }
        let want = if on {
            flags | libc::O_DIRECT
        } else {
            flags & !libc::O_DIRECT
        };
        libc::fcntl(fd, libc::F_SETFL, want) == 0
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn set_direct(_: &File, _: bool) -> bool {
    false
}

/// Where the first [`BLOCK`]-aligned byte of `buf` is: direct I/O's buffers start there (one
/// byte later in a test that has the kernel refuse direct I/O: [`MISALIGN`]).
pub(crate) fn aligned_start(buf: &[u8]) -> usize {
    let at = buf.as_ptr().align_offset(BLOCK);
    #[cfg(test)]
    let at = at + usize::from(MISALIGN.get());
    at
}

#[cfg(test)]
thread_local! {
    /// Set, direct reads and writes on this thread fail with EINVAL, as on a device with
    /// larger blocks.
    pub(crate) static MISALIGN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Bytes read at a time: `dd` of the 3.1 GB input of a 500k convert took 0.49 s of system time
/// through the page cache, 0.14 s direct in 4 MiB reads and 0.27 s in 1 MiB ones (2026-12-05).
const CHUNK: usize = 4 << 20;

/// A file read front to back, with direct I/O where the file system takes it: `convert`'s
/// input, read once. Through the page cache, the kernel's copy and its page-cache bookkeeping
/// were 4.5% of a 50k convert's CPU, and a page not cached yet costs more (on the development
/// VM a 312 MB input just dropped from the cache took 0.62 s of system time instead of 0.10).
/// Direct: a 500k convert 0.952 and 0.970 of the CPU (system time 0.41 and 0.33 s instead of
/// 1.24 and 0.78), the same wall time, 5-10 MiB more peak RSS; at 50k the same CPU (1.005, 10
/// alternating runs; 2026-12-05). A direct read waits for the device (there is no
/// read-ahead), so this is for a reader on a thread of its own ahead of the work (`convert`'s
/// page reader). It also sees what is only in the page cache so far: the kernel writes that
/// back first.
pub struct DirectReader {
    file: File,
    /// [`CHUNK`] bytes at a [`BLOCK`]-aligned address, from `at`.
    buf: Vec<u8>,
    at: usize,
    /// The bytes read and not consumed yet: `buf[at + start..at + end]`.
    start: usize,
    end: usize,
    direct: bool,
}

impl DirectReader {
    /// Takes `file`, open for reading at offset 0, and turns direct I/O on where it can: on a
    /// regular file (on a pipe, `O_DIRECT` is packet mode).
    pub fn new(file: File) -> Self {
        let regular = file.metadata().is_ok_and(|m| m.is_file());
        let direct = regular && set_direct(&file, true);
        let buf = vec![0; CHUNK + BLOCK];
        let at = aligned_start(&buf);
        Self {
            file,
            buf,
            at,
            start: 0,
            end: 0,
            direct,
        }
    }

    #[cfg(test)]
    fn is_direct(&self) -> bool {
        self.direct
    }

    /// Reads the next chunk into the (empty) buffer.
    fn refill(&mut self) -> std::io::Result<()> {
        loop {
            match self.file.read(&mut self.buf[self.at..self.at + CHUNK]) {
                Ok(n) => {
                    (self.start, self.end) = (0, n);
                    // A short read is the file's end, or leaves the offset unaligned for the
                    // next direct read: go on through the page cache.
                    if self.direct && n % BLOCK != 0 {
                        self.direct = !set_direct(&self.file, false);
                    }
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if self.direct && e.raw_os_error() == Some(EINVAL) => {
                    // Refused, nothing read: the same read through the page cache.
                    if !set_direct(&self.file, false) {
                        return Err(e);
                    }
                    self.direct = false;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl BufRead for DirectReader {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.start == self.end {
            self.refill()?;
        }
        Ok(&self.buf[self.at + self.start..self.at + self.end])
    }

    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }
}

impl Read for DirectReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // In the crate's folder rather than the system's temporary one, which may be a tmpfs.
    fn dir() -> tempfile::TempDir {
        tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).expect("tempdir")
    }

    /// Whether `path` can be read with `O_DIRECT` (asked of the kernel directly).
    fn direct_read_works(path: &std::path::Path) -> bool {
        use std::os::unix::fs::OpenOptionsExt;
        let Ok(mut f) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
        else {
            return false;
        };
        let mut buf = vec![0u8; 2 * BLOCK];
        let at = buf.as_ptr().align_offset(BLOCK);
        f.read(&mut buf[at..at + BLOCK]).is_ok()
    }

    /// Reads all of `r` in pieces of the sizes `sizes` cycles through.
    fn read_all(r: &mut DirectReader, sizes: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0.. {
            let mut piece = vec![0; sizes[i % sizes.len()]];
            match r.read(&mut piece).expect("read") {
                0 => break,
                n => out.extend_from_slice(&piece[..n]),
            }
        }
        out
    }

    #[test]
    fn a_file_reads_back_as_written_whatever_its_length() {
        let dir = dir();
        for n in [
            0,
            1,
            4095,
            4096,
            4097,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            3 * CHUNK + 5000,
        ] {
            let path = dir.path().join(format!("f{n}"));
            let data: Vec<u8> = (0..n).map(|j| (j % 251) as u8).collect();
            std::fs::write(&path, &data).expect("write");
            let direct = direct_read_works(&path);
            let mut r = DirectReader::new(File::open(&path).expect("open"));
            assert_eq!(r.is_direct(), direct, "{n} bytes");
            let got = read_all(&mut r, &[1, 7, BLOCK, 100_000, CHUNK + 3]);
            assert!(got == data, "{n} bytes: {} read", got.len());
            // Past the end, still nothing (and no error) after direct I/O stopped there.
            assert_eq!(r.fill_buf().expect("fill").len(), 0);
            if direct && n % BLOCK != 0 {
                assert!(!r.is_direct(), "{n} bytes");
            }
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_pipe_is_read_whole_without_direct_io() {
        let (rx, mut tx) = std::io::pipe().expect("pipe");
        let data: Vec<u8> = (0..300_000).map(|j| (j % 239) as u8).collect();
        let writer = {
            let data = data.clone();
            std::thread::spawn(move || std::io::Write::write_all(&mut tx, &data))
        };
        let mut r = DirectReader::new(File::from(std::os::fd::OwnedFd::from(rx)));
        assert!(!r.is_direct());
        let got = read_all(&mut r, &[65_536]);
        writer.join().expect("writer").expect("write");
        assert!(got == data, "{} read", got.len());
    }

    #[test]
    fn a_direct_read_refused_goes_on_through_the_page_cache() {
        let dir = dir();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..2 * CHUNK + 77).map(|j| (j % 241) as u8).collect();
        std::fs::write(&path, &data).expect("write");
        // Direct reads into a misaligned buffer fail with EINVAL, as on a device with larger
        // blocks.
        MISALIGN.set(true);
        let mut r = DirectReader::new(File::open(&path).expect("open"));
        MISALIGN.set(false);
        let got = read_all(&mut r, &[CHUNK / 3]);
        assert!(!r.is_direct());
        assert!(got == data, "{} read", got.len());
    }
}
