//! The JSON log file: appended to, line by line, and opened anew at its path on request (SIGHUP),
//! so that logrotate can move it away and the next lines start a new file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use tracing_subscriber::fmt::MakeWriter;

/// A log file that can be reopened. Cheap to clone; clones share the open file.
#[derive(Clone)]
pub struct LogFile {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl LogFile {
    /// Opens `path` for appending, creating it and its directory when missing.
    pub fn open(path: &Path) -> io::Result<LogFile> {
        Ok(LogFile {
            path: path.to_owned(),
            file: Arc::new(Mutex::new(open(path)?)),
        })
    }

    /// Opens the path again (a new file if the old one was moved away); lines go there from now on.
    /// On failure the old file stays in use.
    pub fn reopen(&self) -> io::Result<()> {
        let file = open(&self.path)?;
        *sustainbot::sync::lock(&self.file) = file;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn open(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// One log line's hold on the file: the formatter writes the whole line through it at once.
pub struct Line<'a>(MutexGuard<'a, File>);

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line(sustainbot::sync::lock(&self.file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_go_to_a_new_file_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/sustainbot.jsonl");
        let log = LogFile::open(&path).unwrap();
        log.make_writer().write_all(b"first\n").unwrap();
        let rotated = dir.path().join("logs/sustainbot.jsonl.1");
        std::fs::rename(&path, &rotated).unwrap();
        log.make_writer()
            .write_all(b"still the old file\n")
            .unwrap();
        log.reopen().unwrap();
        log.make_writer().write_all(b"second\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap(),
            "first\nstill the old file\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second\n");
    }
}
