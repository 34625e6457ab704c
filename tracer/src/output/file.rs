//! The output file, rotated under load without losing or splitting a line: by size inside
//! tracer (`--rotate-size`: FILE -> FILE.1 -> ... -> FILE.N), or by logrotate, which
//! renames FILE and sends SIGHUP ([`ReopenRequest`]). A rotation happens only between two
//! lines: the sinks write whole lines, but through a buffer that may hand this file part
//! of one, so a rotation that falls due mid-line waits for that line's end.
//!
//! The file is opened for appending: a restarted tracer (`Restart=on-failure`) adds to
//! what the last one wrote instead of erasing it.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::FileExt as _,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

/// Rotation by size: before a write would take the file past `max_bytes`, at a line
/// boundary, FILE becomes FILE.1, FILE.1 becomes FILE.2, ..., and FILE.`keep` is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    pub max_bytes: u64,
    pub keep: u32,
}

/// Asks the output file to reopen its path at the next line boundary: after logrotate
/// renamed it, SIGHUP makes tracer write to a new file of that name. Clones share the
/// request, so the signal handler can keep one and the file another.
#[derive(Clone, Debug, Default)]
pub struct ReopenRequest(Arc<AtomicBool>);

impl ReopenRequest {
    pub fn request(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn pending(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn clear(&self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// What rotating at the next line boundary does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Due {
    /// Reopen the path (logrotate moved the file away).
    Reopen,
    /// Shift the numbered files, then open a new one.
    Rotate,
}

pub struct LogFile {
    path: PathBuf,
    file: File,
    /// Bytes in the file now.
    len: u64,
    /// The last byte written ended a line (or the file is empty).
    at_line_start: bool,
    rotation: Option<Rotation>,
    reopen: ReopenRequest,
}

/// An error that names the file it happened to, keeping its kind.
fn naming(path: &Path, what: &str) -> impl FnOnce(io::Error) -> io::Error {
    move |error| {
        io::Error::new(
            error.kind(),
            format!("cannot {what} {}: {error}", path.display()),
        )
    }
}

/// Opens `path` for appending; returns it with its length. A file whose last line was
/// cut (a tracer killed mid-write) gets a newline first, so the next line starts whole.
fn open_append(path: &Path) -> io::Result<(File, u64)> {
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(naming(path, "open"))?;
    let mut len = file.metadata().map_err(naming(path, "read"))?.len();
    if len > 0 {
        let mut last = [0u8];
        file.read_exact_at(&mut last, len - 1)
            .map_err(naming(path, "read"))?;
        if last[0] != b'\n' {
            file.write_all(b"\n").map_err(naming(path, "write to"))?;
            len += 1;
        }
    }
    Ok((file, len))
}

/// `buf` up to and with its first newline (all of it when it has none).
fn first_line(buf: &[u8]) -> &[u8] {
    buf.iter()
        .position(|&byte| byte == b'\n')
        .map_or(buf, |end| &buf[..=end])
}

/// `path` with `.n` appended (`trace.json.3`).
fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    name.into()
}

impl LogFile {
    pub fn open(
        path: &Path,
        rotation: Option<Rotation>,
        reopen: ReopenRequest,
    ) -> io::Result<Self> {
        let (file, len) = open_append(path)?;
        Ok(Self {
            path: path.to_owned(),
            file,
            len,
            at_line_start: true,
            rotation,
            reopen,
        })
    }

    /// What is due before writing `line` (the next line, or its start) at a line
    /// boundary.
    fn due(&self, line: &[u8]) -> Option<Due> {
        if self.reopen.pending() {
            return Some(Due::Reopen);
        }
        let rotation = self.rotation?;
        (self.len > 0 && self.len + line.len() as u64 > rotation.max_bytes).then_some(Due::Rotate)
    }

    /// The part of `buf` to write now: mid-line, the rest of that line; at a line
    /// boundary of a file that rotates by size, the whole lines that fit (at least one).
    fn chunk<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        let first_line = first_line(buf);
        match self.rotation {
            _ if !self.at_line_start => first_line,
            Some(rotation) => {
                let room = usize::try_from(rotation.max_bytes.saturating_sub(self.len))
                    .unwrap_or(usize::MAX);
                buf[..buf.len().min(room)]
                    .iter()
                    .rposition(|&byte| byte == b'\n')
                    .map_or(first_line, |end| &buf[..=end])
            }
            None => buf,
        }
    }

    fn switch(&mut self, due: Due) -> io::Result<()> {
        if due == Due::Rotate {
            let keep = self.rotation.map_or(1, |rotation| rotation.keep);
            // FILE.1 to FILE.n exist: shift them oldest first, so each rename has a free
            // name (FILE.keep is replaced).
            let existing = (1..keep)
                .take_while(|&n| numbered(&self.path, n).exists())
                .last()
                .unwrap_or(0);
            for n in (1..=existing).rev() {
                let from = numbered(&self.path, n);
                fs::rename(&from, numbered(&self.path, n + 1)).map_err(naming(&from, "rotate"))?;
            }
            // Gone already when logrotate moved it and its SIGHUP is still on the way.
            match fs::rename(&self.path, numbered(&self.path, 1)) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => {
                    return Err(naming(&self.path, "rotate")(error));
                }
                _ => {}
            }
        }
        self.reopen.clear();
        (self.file, self.len) = open_append(&self.path)?;
        Ok(())
    }
}

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.at_line_start
            && let Some(due) = self.due(first_line(buf))
        {
            self.switch(due)?;
        }
        let chunk = self.chunk(buf);
        let written = self
            .file
            .write(chunk)
            .map_err(naming(&self.path, "write to"))?;
        if written > 0 {
            self.len += written as u64;
            self.at_line_start = chunk[written - 1] == b'\n';
        }
        Ok(written)
    }

    /// Everything written so far is in the file; a requested reopen happens now when the
    /// file ends with a whole line (the sinks flush between lines), not at the next line.
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush().map_err(naming(&self.path, "write to"))?;
        if self.at_line_start && self.reopen.pending() {
            self.switch(Due::Reopen)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::BufWriter;

    use proptest::prelude::*;

    use super::*;

    /// A directory of this test's own, empty.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tracer-file-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A file rotating by size in a scratch directory: (directory, path, file).
    fn rotating(name: &str, max_bytes: u64, keep: u32) -> (PathBuf, PathBuf, LogFile) {
        let dir = scratch(name);
        let path = dir.join("trace.json");
        let rotation = Rotation { max_bytes, keep };
        let file = LogFile::open(&path, Some(rotation), ReopenRequest::default()).unwrap();
        (dir, path, file)
    }

    /// Line `n`: a number and `width` filler bytes, so lines differ in length.
    fn line(n: usize, width: usize) -> String {
        format!("{n} {}\n", "x".repeat(width))
    }

    /// The contents of FILE.keep down to FILE.1, then FILE: oldest first.
    fn files_oldest_first(path: &Path, keep: u32) -> Vec<String> {
        (1..=keep)
            .rev()
            .map(|n| numbered(path, n))
            .chain([path.to_owned()])
            .filter(|file| file.exists())
            .map(|file| fs::read_to_string(file).unwrap())
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the line lengths, the buffer's chunking and when SIGHUPs come, every
        /// file holds whole lines only, in order, and none is lost while all files are kept.
        #[test]
        fn rotations_keep_every_line_whole(
            widths in prop::collection::vec(0usize..300, 1..400),
            capacity in 1usize..700,
            max_bytes in 200u64..3000,
            hangups in prop::collection::vec(0usize..400, 0..6),
        ) {
            let dir = scratch("prop");
            let path = dir.join("trace.json");
            let reopen = ReopenRequest::default();
            let rotation = Rotation { max_bytes, keep: 10_000 };
            let file = LogFile::open(&path, Some(rotation), reopen.clone()).unwrap();
            let mut out = BufWriter::with_capacity(capacity, file);
            let mut moved = Vec::new();
            for (n, width) in widths.iter().enumerate() {
                if hangups.contains(&n) {
                    // logrotate: rename, then SIGHUP (the daemon flushes on it).
                    let away = dir.join(format!("moved-{n}"));
                    fs::rename(&path, &away).unwrap();
                    moved.push(away);
                    reopen.request();
                    out.flush().unwrap();
                }
                out.write_all(line(n, *width).as_bytes()).unwrap();
            }
            out.flush().unwrap();
            drop(out);

            let mut texts: Vec<String> =
                moved.iter().map(|file| fs::read_to_string(file).unwrap()).collect();
            // Each renamed file was followed by size rotations of the next path.
            let rotated = files_oldest_first(&path, rotation.keep);
            texts.extend(rotated.iter().cloned());
            let mut numbers = Vec::new();
            for text in &texts {
                prop_assert!(text.is_empty() || text.ends_with('\n'), "a file ends mid-line");
                for (text_line, n) in text.lines().map(|l| (l, l.split(' ').next().unwrap())) {
                    let n: usize = n.parse().unwrap();
                    prop_assert_eq!(format!("{text_line}\n"), line(n, widths[n]));
                    numbers.push(n);
                }
            }
            numbers.sort_unstable();
            prop_assert_eq!(numbers, (0..widths.len()).collect::<Vec<_>>());
            // Past the limit by at most the end of the line that crossed it.
            let longest = widths.iter().max().unwrap() + 8;
            for text in &rotated {
                prop_assert!(text.len() as u64 <= max_bytes + longest as u64);
            }
            fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn keeps_only_the_newest_files() {
        let (dir, path, mut file) = rotating("keep", 100, 2);
        for n in 0..50 {
            file.write_all(line(n, 40).as_bytes()).unwrap();
        }
        assert!(numbered(&path, 2).exists());
        assert!(!numbered(&path, 3).exists());
        let texts = files_oldest_first(&path, 2);
        let lines: Vec<&str> = texts.iter().flat_map(|text| text.lines()).collect();
        // Two lines a file: the last six lines, in order.
        let expected: Vec<String> = (44..50)
            .map(|n| line(n, 40).trim_end().to_owned())
            .collect();
        assert_eq!(lines, expected);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_file_moved_away_before_a_size_rotation_is_created_anew() {
        let (dir, path, mut file) = rotating("moved", 10, 3);
        file.write_all(b"first line\n").unwrap();
        fs::rename(&path, dir.join("moved")).unwrap();
        file.write_all(b"second line\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "second line\n");
        assert_eq!(
            fs::read_to_string(dir.join("moved")).unwrap(),
            "first line\n"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn appends_and_ends_a_cut_line() {
        let dir = scratch("append");
        let path = dir.join("trace.json");
        fs::write(&path, "{\"event\":\"whole\"}\n{\"event\":\"cu").unwrap();
        let mut file = LogFile::open(&path, None, ReopenRequest::default()).unwrap();
        file.write_all(b"{\"event\":\"next\"}\n").unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "{\"event\":\"whole\"}\n{\"event\":\"cu\n{\"event\":\"next\"}\n"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn write_errors_name_the_file() {
        let mut file =
            LogFile::open(Path::new("/dev/full"), None, ReopenRequest::default()).unwrap();
        let error = file.write_all(b"line\n").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::StorageFull);
        assert!(
            error.to_string().starts_with("cannot write to /dev/full: "),
            "{error}"
        );
        let error = LogFile::open(
            Path::new("/nonexistent/trace.json"),
            None,
            ReopenRequest::default(),
        )
        .err()
        .unwrap();
        assert!(
            error
                .to_string()
                .starts_with("cannot open /nonexistent/trace.json: "),
            "{error}"
        );
    }
}
