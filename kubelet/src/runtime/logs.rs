//! Container logs in the CRI format, one line per record:
//! `2026-12-03T06:00:00.123456789Z stdout F the text` (the tag is F for a full line, P
//! for a fragment of a longer one). The writer runs in each container's monitor
//! helper, the only process that writes the file, so it can rotate between two
//! records and never lose or split a line: the current file `N.log` (N is the
//! container's restart count) is renamed `N.log.<seq>` once it would pass the size
//! limit, and the oldest rotated files go so that at most `max_files` remain. The
//! reader streams a container's files back in order for `logs`, with tail, since,
//! timestamps, a byte limit and follow (across rotations).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

/// A record longer than this is split into P fragments (as containerd does).
pub const MAX_RECORD: usize = 16 * 1024;

/// How often a follow looks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// When a container's log is rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    /// Bytes one file may hold before the next record goes to a fresh file.
    pub max_size: u64,
    /// Files kept per container instance, the current one included (at least 1).
    pub max_files: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation { max_size: 10 * 1024 * 1024, max_files: 5 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// The rotated files of the log at `path` (`path.<seq>`), oldest first.
pub fn rotated_files(path: &Path) -> Vec<(u64, PathBuf)> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let prefix = format!("{name}.");
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let file = e.file_name().to_str()?.to_string();
                    let seq = file.strip_prefix(&prefix)?.parse::<u64>().ok()?;
                    Some((seq, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Writes one container instance's log, rotating it by size.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    rotation: Rotation,
    next_seq: u64,
}

impl LogWriter {
    pub fn open(path: &Path, rotation: Rotation) -> std::io::Result<LogWriter> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        let next_seq = rotated_files(path).last().map_or(1, |(seq, _)| seq + 1);
        Ok(LogWriter { path: path.to_path_buf(), file, size, rotation, next_seq })
    }

    /// Appends one record, timestamped now; `partial` marks a fragment (no newline).
    pub fn write(&mut self, stream: Stream, partial: bool, content: &[u8]) -> std::io::Result<()> {
        let stamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let mut record = Vec::with_capacity(stamp.len() + content.len() + 12);
        record.extend_from_slice(stamp.as_bytes());
        record.push(b' ');
        record.extend_from_slice(stream.as_str().as_bytes());
        record.extend_from_slice(if partial { b" P " } else { b" F " });
        record.extend_from_slice(content);
        record.push(b'\n');
        if self.size > 0 && self.size + record.len() as u64 > self.rotation.max_size {
            self.rotate()?;
        }
        // One write per record: a reader never sees two records interleaved.
        self.file.write_all(&record)?;
        self.size += record.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let rotated = PathBuf::from(format!("{}.{}", self.path.display(), self.next_seq));
        std::fs::rename(&self.path, &rotated)?;
        self.next_seq += 1;
        self.file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.size = 0;
        let keep = self.rotation.max_files.max(1) as usize - 1;
        let old = rotated_files(&self.path);
        for (_, path) in old.iter().take(old.len().saturating_sub(keep)) {
            let _ = std::fs::remove_file(path);
        }
        Ok(())
    }
}

/// Cuts a stream of bytes into records: whole lines, and MAX_RECORD fragments of longer ones.
#[derive(Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Calls `emit(partial, content)` for every record complete in `data`.
    pub fn push(&mut self, data: &[u8], mut emit: impl FnMut(bool, &[u8])) {
        let mut rest = data;
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            self.pending.extend_from_slice(&rest[..i]);
            self.flush_fragments(&mut emit);
            emit(false, &self.pending);
            self.pending.clear();
            rest = &rest[i + 1..];
        }
        self.pending.extend_from_slice(rest);
        self.flush_fragments(&mut emit);
    }

    fn flush_fragments(&mut self, emit: &mut impl FnMut(bool, &[u8])) {
        while self.pending.len() > MAX_RECORD {
            emit(true, &self.pending[..MAX_RECORD]);
            self.pending.drain(..MAX_RECORD);
        }
    }

    /// The end of the stream: a last line without a newline is kept as a fragment.
    pub fn finish(&mut self, mut emit: impl FnMut(bool, &[u8])) {
        if !self.pending.is_empty() {
            emit(true, &self.pending);
            self.pending.clear();
        }
    }
}

/// One parsed record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub timestamp: String,
    pub stream: Stream,
    pub partial: bool,
    pub content: Vec<u8>,
}

impl Record {
    pub fn parse(line: &[u8]) -> Option<Record> {
        let mut parts = line.splitn(4, |b| *b == b' ');
        let timestamp = std::str::from_utf8(parts.next()?).ok()?.to_string();
        let stream = match parts.next()? {
            b"stdout" => Stream::Stdout,
            b"stderr" => Stream::Stderr,
            _ => return None,
        };
        let partial = match parts.next()? {
            b"P" => true,
            b"F" => false,
            _ => return None,
        };
        let content = parts.next().unwrap_or_default().to_vec();
        Some(Record { timestamp, stream, partial, content })
    }

    fn unix_nanos(&self) -> Option<i64> {
        chrono::DateTime::parse_from_rfc3339(&self.timestamp).ok()?.timestamp_nanos_opt()
    }

    /// The record as `logs` prints it.
    fn render(&self, timestamps: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.content.len() + 40);
        if timestamps {
            out.extend_from_slice(self.timestamp.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&self.content);
        if !self.partial {
            out.push(b'\n');
        }
        out
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadOptions {
    pub follow: bool,
    pub tail_lines: Option<usize>,
    /// Unix nanoseconds: only records at or after it.
    pub since_nanos: Option<i64>,
    pub timestamps: bool,
    pub limit_bytes: Option<u64>,
}

/// The open file a reader is on, with what it has read but not yet cut into lines.
struct Cursor {
    file: File,
    inode: u64,
    pending: Vec<u8>,
}

impl Cursor {
    fn open(path: &Path) -> std::io::Result<Cursor> {
        let file = File::open(path)?;
        let inode = file.metadata()?.ino();
        Ok(Cursor { file, inode, pending: Vec::new() })
    }

    /// Reads what was appended since the last call; returns its whole lines.
    fn read_lines(&mut self) -> std::io::Result<Vec<Vec<u8>>> {
        let mut buf = [0u8; 64 * 1024];
        let mut lines = Vec::new();
        loop {
            let n = self.file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            self.pending.extend_from_slice(&buf[..n]);
            while let Some(i) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=i).collect();
                lines.push(line[..line.len() - 1].to_vec());
            }
        }
        Ok(lines)
    }
}

fn inode_of(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// Emits rendered records, honouring since and the byte limit. `false` once the
/// limit is reached or the receiver is gone: the reader stops.
struct Emitter {
    out: mpsc::Sender<std::io::Result<Vec<u8>>>,
    options: ReadOptions,
    sent: u64,
}

impl Emitter {
    fn admits(&self, record: &Record) -> bool {
        admits(&self.options, record)
    }

    fn send(&mut self, records: impl IntoIterator<Item = Record>) -> bool {
        let mut chunk = Vec::new();
        let mut full = false;
        for record in records {
            let mut text = record.render(self.options.timestamps);
            if let Some(limit) = self.options.limit_bytes {
                let room = limit.saturating_sub(self.sent + chunk.len() as u64) as usize;
                if text.len() >= room {
                    text.truncate(room);
                    full = true;
                }
            }
            chunk.extend_from_slice(&text);
            if full {
                break;
            }
        }
        self.sent += chunk.len() as u64;
        if !chunk.is_empty() && self.out.blocking_send(Ok(chunk)).is_err() {
            return false;
        }
        !full
    }
}

fn parse_all(lines: Vec<Vec<u8>>) -> impl Iterator<Item = Record> {
    lines.into_iter().filter_map(|l| Record::parse(&l))
}

/// Streams the log whose current file is `path` (rotated files first) into `out`.
/// With `follow`, keeps going until `running` turns false and everything written
/// before is sent. Blocking: run it on a blocking thread.
pub fn stream(
    path: &Path,
    options: ReadOptions,
    running: watch::Receiver<bool>,
    out: mpsc::Sender<std::io::Result<Vec<u8>>>,
) {
    let mut emitter = Emitter { out, options: options.clone(), sent: 0 };
    if options.limit_bytes == Some(0) {
        return;
    }
    // The current file first, so a rotation while reading the older ones cannot be
    // missed: that file then shows up as rotated with our inode and is skipped.
    let mut current = match Cursor::open(path) {
        Ok(c) => Some(c),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            let _ = emitter.out.blocking_send(Err(e));
            return;
        }
    };
    let skip = current.as_ref().map(|c| c.inode);
    let mut initial: Vec<Record> = Vec::new();
    let mut tail: VecDeque<Record> = VecDeque::new();
    let mut keep = |record: Record, emitter: &mut Emitter, initial: &mut Vec<Record>| {
        if !emitter.admits(&record) {
            return;
        }
        match options.tail_lines {
            Some(n) => {
                tail.push_back(record);
                if tail.len() > n {
                    tail.pop_front();
                }
            }
            None => initial.push(record),
        }
    };
    for (_, rotated) in rotated_files(path) {
        let Ok(mut cursor) = Cursor::open(&rotated) else { continue };
        if Some(cursor.inode) == skip {
            continue;
        }
        match cursor.read_lines() {
            Ok(lines) => {
                for record in parse_all(lines) {
                    keep(record, &mut emitter, &mut initial);
                }
            }
            Err(e) => {
                let _ = emitter.out.blocking_send(Err(e));
                return;
            }
        }
        if options.tail_lines.is_none() && !emitter.send(initial.drain(..)) {
            return;
        }
    }
    if let Some(cursor) = current.as_mut() {
        match cursor.read_lines() {
            Ok(lines) => {
                for record in parse_all(lines) {
                    keep(record, &mut emitter, &mut initial);
                }
            }
            Err(e) => {
                let _ = emitter.out.blocking_send(Err(e));
                return;
            }
        }
    }
    let first: Vec<Record> = initial.into_iter().chain(tail).collect();
    if !emitter.send(first) || !options.follow {
        return;
    }
    loop {
        // Read the state before the file: if the container had already exited, all
        // it wrote is on disk by now (the monitor drains the log before recording the exit).
        let was_running = *running.borrow();
        let mut progressed = false;
        if current.is_none() {
            current = Cursor::open(path).ok();
        }
        if let Some(cursor) = current.as_mut() {
            match cursor.read_lines() {
                Ok(lines) if !lines.is_empty() => {
                    progressed = true;
                    if !emitter.send(parse_all(lines).filter(|r| admits(&options, r))) {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = emitter.out.blocking_send(Err(e));
                    return;
                }
            }
            // Rotated: what is left of the old file was just read; go on with the files
            // written after it, however many rotations happened since the last look.
            if !progressed
                && let Some(inode) = inode_of(path)
                && inode != cursor.inode
            {
                let Ok(next) = Cursor::open(path) else { continue };
                let rotated = rotated_files(path);
                let inodes: Vec<Option<u64>> = rotated.iter().map(|(_, p)| inode_of(p)).collect();
                // The old file gone (dropped by max-files) means every rotated file is newer.
                let start = inodes.iter().position(|i| *i == Some(cursor.inode)).map_or(0, |i| i + 1);
                // `next` itself may have been rotated meanwhile: stop before it.
                let end = inodes.iter().position(|i| *i == Some(next.inode)).unwrap_or(rotated.len()).max(start);
                for (_, between) in &rotated[start..end] {
                    let Ok(mut c) = Cursor::open(between) else { continue };
                    let lines = c.read_lines().unwrap_or_default();
                    if !emitter.send(parse_all(lines).filter(|r| admits(&options, r))) {
                        return;
                    }
                }
                current = Some(next);
                continue;
            }
        }
        if !progressed {
            if !was_running || emitter.out.is_closed() {
                return;
            }
            std::thread::sleep(FOLLOW_POLL);
        }
    }
}

fn admits(options: &ReadOptions, record: &Record) -> bool {
    match options.since_nanos {
        Some(since) => record.unix_nanos().is_none_or(|t| t >= since),
        None => true,
    }
}

/// The instances (restart counts) a container has log files for, oldest first.
pub fn instances(container_dir: &Path) -> Vec<u32> {
    let mut found: Vec<u32> = std::fs::read_dir(container_dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_str()?.to_string();
                    name.split_once(".log").and_then(|(n, _)| n.parse().ok())
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort_unstable();
    found.dedup();
    found
}

/// Removes the log files (current and rotated) of every instance of the container
/// whose logs are in `container_dir` except the newest `keep`, so a crash-looping
/// container does not fill the disk; `--previous` needs `keep` >= 2.
pub fn prune_instances(container_dir: &Path, keep: usize) -> std::io::Result<()> {
    let instances = instances(container_dir);
    for old in &instances[..instances.len().saturating_sub(keep)] {
        let path = container_dir.join(format!("{old}.log"));
        for (_, rotated) in rotated_files(&path) {
            remove_file_if_present(&rotated)?;
        }
        remove_file_if_present(&path)?;
    }
    Ok(())
}

/// Removes the logs of the pod with `uid` (its directory `<ns>_<name>_<uid>` under
/// `log_dir`), once the pod is gone.
pub fn remove_pod(log_dir: &Path, uid: &str) -> std::io::Result<()> {
    let suffix = format!("_{uid}");
    let entries = match std::fs::read_dir(log_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        if entry.file_name().to_str().is_some_and(|name| name.ends_with(&suffix)) {
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

fn remove_file_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The end of the log whose current file is `path`: at most `max_lines` lines and
/// `max_bytes` bytes of the containers' output (a terminationMessagePolicy of
/// FallbackToLogsOnError). Reads only the last few KiB of the current file.
pub fn tail(path: &Path, max_lines: usize, max_bytes: usize) -> std::io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    // Room for each line's CRI prefix (timestamp, stream, tag: ~40 bytes) as well.
    let window = (max_bytes + max_lines * 48) as u64;
    let start = len.saturating_sub(window);
    file.seek(std::io::SeekFrom::Start(start))?;
    let mut raw = Vec::new();
    file.read_to_end(&mut raw)?;
    // A window that starts mid-file starts mid-record: drop up to the first newline.
    let raw = if start > 0 { raw.splitn(2, |b| *b == b'\n').nth(1).unwrap_or_default() } else { &raw[..] };
    let mut text = Vec::new();
    for record in raw.split(|b| *b == b'\n').filter_map(Record::parse) {
        text.extend_from_slice(&record.render(false));
    }
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(text.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1))
        .filter(|i| *i < text.len())
        .collect();
    let from_lines = line_starts.len().checked_sub(max_lines).map_or(0, |i| line_starts[i]);
    let from_bytes = text.len().saturating_sub(max_bytes);
    Ok(text.split_off(from_lines.max(from_bytes)))
}

/// Reads a whole log into memory (tests and small tools).
pub fn read_all(path: &Path, timestamps: bool) -> std::io::Result<Vec<u8>> {
    let mut text = Vec::new();
    let mut files: Vec<PathBuf> = rotated_files(path).into_iter().map(|(_, p)| p).collect();
    files.push(path.to_path_buf());
    for file in files {
        let mut cursor = match Cursor::open(&file) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        cursor.file.rewind()?;
        for record in parse_all(cursor.read_lines()?) {
            text.extend_from_slice(&record.render(timestamps));
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(path: &Path, options: ReadOptions) -> String {
        let (tx, mut rx) = mpsc::channel(16);
        let (_running_tx, running) = watch::channel(false);
        let path = path.to_path_buf();
        let reader = std::thread::spawn(move || stream(&path, options, running, tx));
        let mut text = Vec::new();
        while let Some(chunk) = rx.blocking_recv() {
            text.extend(chunk.unwrap());
        }
        reader.join().unwrap();
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn records_round_trip_through_rotation_without_losing_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/0.log");
        let mut writer = LogWriter::open(&path, Rotation { max_size: 120, max_files: 100 }).unwrap();
        let mut expected = String::new();
        for i in 0..40 {
            writer
                .write(if i % 2 == 0 { Stream::Stdout } else { Stream::Stderr }, false, format!("line {i}").as_bytes())
                .unwrap();
            expected.push_str(&format!("line {i}\n"));
        }
        assert!(rotated_files(&path).len() > 5, "no rotation happened");
        assert_eq!(collect(&path, ReadOptions::default()), expected);
        assert_eq!(String::from_utf8(read_all(&path, false).unwrap()).unwrap(), expected);
        let tail = collect(&path, ReadOptions { tail_lines: Some(2), ..Default::default() });
        assert_eq!(tail, "line 38\nline 39\n");
        let limited = collect(&path, ReadOptions { limit_bytes: Some(10), ..Default::default() });
        assert_eq!(limited, "line 0\nlin");
        let stamped = collect(&path, ReadOptions { tail_lines: Some(1), timestamps: true, ..Default::default() });
        let (stamp, rest) = stamped.split_once(' ').unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(stamp).is_ok(), "{stamped}");
        assert_eq!(rest, "line 39\n");
        let future = chrono::Utc::now().timestamp_nanos_opt().unwrap() + 60_000_000_000;
        assert_eq!(collect(&path, ReadOptions { since_nanos: Some(future), ..Default::default() }), "");
    }

    #[test]
    fn tail_keeps_the_last_lines_within_the_byte_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut writer = LogWriter::open(&path, Rotation { max_size: 1 << 20, max_files: 2 }).unwrap();
        for i in 0..500 {
            writer.write(Stream::Stderr, false, format!("line {i}").as_bytes()).unwrap();
        }
        let text = |lines, bytes| String::from_utf8(tail(&path, lines, bytes).unwrap()).unwrap();
        assert_eq!(text(2, 2048), "line 498\nline 499\n");
        let eighty = text(80, 2048);
        assert_eq!(eighty.lines().count(), 80, "{eighty}");
        assert!(eighty.starts_with("line 420\n"), "{eighty}");
        assert_eq!(text(80, 12), "98\nline 499\n", "the byte limit wins when it is smaller");
        writer.write(Stream::Stdout, true, b"no newline").unwrap();
        assert!(text(2, 2048).ends_with("line 499\nno newline"));
    }

    #[test]
    fn max_files_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut writer = LogWriter::open(&path, Rotation { max_size: 60, max_files: 3 }).unwrap();
        for i in 0..20 {
            writer.write(Stream::Stdout, false, format!("line {i}").as_bytes()).unwrap();
        }
        assert_eq!(rotated_files(&path).len(), 2);
        let text = collect(&path, ReadOptions::default());
        assert!(text.ends_with("line 19\n") && !text.contains("line 0\n"), "{text}");
    }

    #[test]
    fn long_lines_become_fragments_and_read_back_whole() {
        let mut splitter = LineSplitter::default();
        let mut records = Vec::new();
        let long = vec![b'x'; MAX_RECORD + 10];
        splitter.push(&long, |p, c| records.push((p, c.len())));
        splitter.push(b"\nshort\nend", |p, c| records.push((p, c.len())));
        splitter.finish(|p, c| records.push((p, c.len())));
        assert_eq!(records, vec![(true, MAX_RECORD), (false, 10), (false, 5), (true, 3)]);
        let record = Record::parse(b"2026-01-01T00:00:00.000000001Z stderr P abc def").unwrap();
        assert_eq!((record.stream, record.partial, record.content.as_slice()), (Stream::Stderr, true, &b"abc def"[..]));
        assert!(Record::parse(b"garbage").is_none());
    }

    #[test]
    fn follow_picks_up_new_lines_across_a_rotation_and_ends_with_the_container() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut writer = LogWriter::open(&path, Rotation { max_size: 100, max_files: 50 }).unwrap();
        writer.write(Stream::Stdout, false, b"first").unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let (running_tx, running) = watch::channel(true);
        let reader_path = path.clone();
        let options = ReadOptions { follow: true, ..Default::default() };
        let reader = std::thread::spawn(move || stream(&reader_path, options, running, tx));
        assert_eq!(rx.blocking_recv().unwrap().unwrap(), b"first\n");
        let mut expected = String::new();
        for i in 0..10 {
            writer.write(Stream::Stdout, false, format!("more {i}").as_bytes()).unwrap();
            expected.push_str(&format!("more {i}\n"));
        }
        assert!(!rotated_files(&path).is_empty());
        let mut seen = String::new();
        while seen.len() < expected.len() {
            seen.push_str(std::str::from_utf8(&rx.blocking_recv().unwrap().unwrap()).unwrap());
        }
        assert_eq!(seen, expected);
        running_tx.send(false).unwrap();
        assert!(rx.blocking_recv().is_none(), "the follow did not end with the container");
        reader.join().unwrap();
    }

    #[test]
    fn old_instances_and_gone_pods_lose_their_logs() {
        let dir = tempfile::tempdir().unwrap();
        let pod = dir.path().join("default_web_uid-1");
        let container = pod.join("app");
        std::fs::create_dir_all(&container).unwrap();
        for name in ["0.log", "0.log.1", "1.log", "1.log.3", "2.log", "3.log"] {
            std::fs::write(container.join(name), "x").unwrap();
        }
        prune_instances(&container, 2).unwrap();
        assert_eq!(instances(&container), vec![2, 3]);
        assert!(!container.join("1.log.3").exists(), "rotated files of a pruned instance go too");
        let other = dir.path().join("default_web_uid-10");
        std::fs::create_dir_all(&other).unwrap();
        remove_pod(dir.path(), "uid-1").unwrap();
        assert!(!pod.exists());
        assert!(other.exists(), "only the pod with that exact uid");
        remove_pod(&dir.path().join("missing"), "uid-1").unwrap();
    }
}
