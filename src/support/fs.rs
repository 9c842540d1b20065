//! Files replaced whole or not at all. Readers (dnsmasq, a restarted ironpxe, a client
//! fetching an image) see the old contents or the new, never a half-written file, and a
//! write that fails leaves no temporary file behind.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A file being written as `.<name>.tmp` beside its destination — a dotfile, which dnsmasq's
/// hostsdir ignores and the image cache drops at start — and renamed into place by
/// [`AtomicFile::commit`]. Dropped without a commit (a write failed, a task was cancelled),
/// it removes the temporary file.
pub struct AtomicFile {
    file: File,
    tmp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl AtomicFile {
    /// Creates (or truncates a leftover) temporary file for `dest`.
    pub fn create(dest: &Path) -> io::Result<AtomicFile> {
        let name = dest.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a file name", dest.display()),
            )
        })?;
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(".tmp");
        let tmp = dest.with_file_name(tmp_name);
        let file = File::create(&tmp)?;
        Ok(AtomicFile {
            file,
            tmp,
            dest: dest.to_owned(),
            committed: false,
        })
    }

    /// The temporary file, for what a writer does besides writing (its mtime, an async
    /// handle on a clone of it).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Where the contents are until the commit (for error messages).
    pub fn tmp_path(&self) -> &Path {
        &self.tmp
    }

    /// Syncs the contents to disk, then renames them over the destination: a crash never
    /// leaves the destination empty or truncated.
    pub fn commit(mut self) -> io::Result<()> {
        self.file.sync_all()?;
        fs::rename(&self.tmp, &self.dest)?;
        self.committed = true;
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Replaces `dest` with `data` through an [`AtomicFile`].
pub fn write_atomic(dest: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = AtomicFile::create(dest)?;
    f.write_all(data)?;
    f.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_write_replaces_the_file_whole() {
        let dir = tempfile::tempdir().expect("dir");
        let dest = dir.path().join("f");
        write_atomic(&dest, b"old").expect("first");
        write_atomic(&dest, b"new contents").expect("second");
        assert_eq!(fs::read(&dest).expect("read"), b"new contents");
        assert_eq!(names(dir.path()), ["f"], "no temporary file left");
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("dir");
        // The rename fails: a non-empty directory is in the way.
        let dest = dir.path().join("taken");
        fs::create_dir(&dest).expect("mkdir");
        fs::write(dest.join("inside"), "x").expect("write");
        assert!(write_atomic(&dest, b"data").is_err());
        assert_eq!(names(dir.path()), ["taken"], "temporary file removed");
        assert!(dest.is_dir(), "what was there is untouched");

        // A writer that gives up before its commit (a write or a fetch failed).
        let dest = dir.path().join("f");
        fs::write(&dest, "old").expect("write");
        let mut f = AtomicFile::create(&dest).expect("create");
        f.write_all(b"half").expect("write");
        assert!(f.tmp_path().exists());
        drop(f);
        assert_eq!(names(dir.path()), ["f", "taken"], "temporary file removed");
        assert_eq!(fs::read(&dest).expect("read"), b"old", "old contents kept");
    }
}
