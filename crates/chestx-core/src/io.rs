//! Small I/O helpers shared by the readers of released files.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

/// Open a file for reading, transparently gunzipping names ending in `.gz`.
pub fn open_maybe_gz(path: &Path) -> std::io::Result<Box<dyn Read>> {
    let f = BufReader::new(File::open(path)?);
    Ok(
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gz"))
        {
            Box::new(flate2::read::GzDecoder::new(f))
        } else {
            Box::new(f)
        },
    )
}

/// Write `path` atomically and durably: `write` fills a temporary file beside it (given by path, so
/// any encoder or library that writes files can be used), which is flushed to disk, renamed over
/// `path`, and the folder entry synced. A crash leaves the old file or the new one, never a torn one;
/// a failed write leaves no temporary file behind. Errors name `path`.
///
/// Every output and checkpoint of chestx is written through this function.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let tmp = temporary_beside(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    write_atomic_at(path, &tmp, write)
}

/// A hidden temporary name beside `path`, unique per process and call (concurrent writers of one
/// folder never share one), its folder created.
fn temporary_beside(path: &Path) -> std::io::Result<std::path::PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let dir = folder_of(path);
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map_or("out".into(), |n| n.to_string_lossy());
    Ok(dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        SERIAL.fetch_add(1, Ordering::Relaxed)
    )))
}

/// The folder `path` sits in (`.` for a bare name).
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Fill `tmp` with `write`, sync it, rename it over `path`, sync the folder; on failure remove `tmp`.
fn write_atomic_at(
    path: &Path,
    tmp: &Path,
    write: impl FnOnce(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let named =
        |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let result = write(tmp)
        .and_then(|()| File::open(tmp)?.sync_all())
        .and_then(|()| std::fs::rename(tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(tmp);
        return Err(named(e));
    }
    // The rename is durable once the folder's entry is (best effort: not every platform can open
    // a folder for syncing).
    if let Ok(d) = File::open(folder_of(path)) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A file written through a hidden temporary beside it and renamed into place by
/// [`AtomicFile::commit`], for outputs filled bit by bit while other work goes on (a streaming job
/// writing several files at once). Dropped uncommitted, the temporary goes and `path` is untouched.
pub struct AtomicFile {
    path: std::path::PathBuf,
    tmp: std::path::PathBuf,
    file: Option<std::io::BufWriter<File>>,
}

impl AtomicFile {
    pub fn create(path: &Path) -> std::io::Result<AtomicFile> {
        let named =
            |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let tmp = temporary_beside(path).map_err(named)?;
        let file = File::create(&tmp).map_err(named)?;
        Ok(AtomicFile {
            path: path.to_path_buf(),
            tmp,
            file: Some(std::io::BufWriter::with_capacity(1 << 16, file)),
        })
    }

    /// Flush, sync and rename over the target (see [`write_atomic_with`] for the guarantees).
    pub fn commit(mut self) -> std::io::Result<()> {
        let file = self.file.take().expect("committed once");
        let path = self.path.clone();
        let tmp = self.tmp.clone();
        write_atomic_at(&path, &tmp, move |_| {
            file.into_inner().map(drop).map_err(|e| e.into_error())
        })
    }
}

impl std::io::Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.as_mut().expect("not committed").write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.as_mut().expect("not committed").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// [`write_atomic_with`] for bytes in memory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, |tmp| std::fs::write(tmp, bytes))
}

/// [`write_atomic_with`] through a buffered writer.
pub fn write_atomic_stream(
    path: &Path,
    fill: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    write_atomic_with(path, |tmp| {
        let mut w = std::io::BufWriter::new(File::create(tmp)?);
        fill(&mut w)?;
        std::io::Write::flush(&mut w)
    })
}

/// CSV bytes with every CRLF record terminator (outside quotes) read as LF; quoted cells keep
/// their bytes. The csv crate counts a record's line at the LF of the terminator before it, which it
/// has not consumed yet when the terminator is CRLF, so every line number of a Windows-written file
/// came out one short (rust-csv issue 395). Messages must name the line a user opens.
pub struct CrlfAsLf<R> {
    inner: R,
    in_quotes: bool,
    held_cr: bool,
    ready: Vec<u8>,
    at: usize,
}

impl<R: Read> CrlfAsLf<R> {
    pub fn new(inner: R) -> Self {
        CrlfAsLf {
            inner,
            in_quotes: false,
            held_cr: false,
            ready: Vec::new(),
            at: 0,
        }
    }

    /// The next chunk of `inner`, converted, into `ready`; false at the end of the input.
    fn fill(&mut self) -> std::io::Result<bool> {
        let mut chunk = [0u8; 8192];
        let n = self.inner.read(&mut chunk)?;
        self.ready.clear();
        self.at = 0;
        if n == 0 {
            if std::mem::take(&mut self.held_cr) {
                self.ready.push(b'\r');
            }
            return Ok(!self.ready.is_empty());
        }
        for &b in &chunk[..n] {
            if std::mem::take(&mut self.held_cr) && b != b'\n' {
                self.ready.push(b'\r');
            }
            match b {
                b'"' => self.in_quotes = !self.in_quotes,
                b'\r' if !self.in_quotes => {
                    self.held_cr = true;
                    continue;
                }
                _ => {}
            }
            self.ready.push(b);
        }
        Ok(true)
    }
}

impl<R: Read> Read for CrlfAsLf<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.ready.len() {
            if out.is_empty() || !self.fill()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.ready.len() - self.at);
        out[..n].copy_from_slice(&self.ready[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    fn crlf_as_lf(input: &[u8], chunk: usize) -> Vec<u8> {
        let mut r = super::CrlfAsLf::new(input);
        let mut out = Vec::new();
        let mut buf = vec![0u8; chunk];
        loop {
            let n = std::io::Read::read(&mut r, &mut buf).unwrap();
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn crlf_terminators_become_lf_and_quoted_cells_keep_their_bytes() {
        let input = b"id,text\r\n1,\"two\r\nlines\"\r\n2,lone\rcr\r\n3,\"\"\"q\"\"\"\r";
        let want = b"id,text\n1,\"two\r\nlines\"\n2,lone\rcr\n3,\"\"\"q\"\"\"\r";
        for chunk in [1, 2, 3, 7, 4096] {
            assert_eq!(
                crlf_as_lf(input, chunk),
                want.to_vec(),
                "read {chunk} at a time"
            );
        }
    }

    #[test]
    fn csv_line_numbers_of_a_crlf_file_match_the_lf_file() {
        let lf = "a,b\n1,2\n3,4\n5,6\n";
        let crlf = lf.replace('\n', "\r\n");
        let lines = |text: &str| -> Vec<u64> {
            let mut rdr = csv::Reader::from_reader(super::CrlfAsLf::new(text.as_bytes()));
            rdr.records()
                .map(|r| r.unwrap().position().unwrap().line())
                .collect()
        };
        assert_eq!(lines(lf), vec![2, 3, 4]);
        assert_eq!(lines(&crlf), vec![2, 3, 4]);
    }

    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("chestx-core-io-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn atomic_write_replaces_the_file_and_leaves_nothing_else() {
        let d = scratch("replace");
        let p = d.join("out.json");
        write_atomic(&p, b"old").unwrap();
        write_atomic_stream(&p, |w: &mut dyn std::io::Write| w.write_all(b"new")).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.json")]);
    }

    #[test]
    fn an_atomic_file_appears_on_commit_and_not_before_or_when_dropped() {
        use std::io::Write;
        let d = scratch("atomicfile");
        let p = d.join("labels.csv");
        write_atomic(&p, b"old").unwrap();
        let mut f = AtomicFile::create(&p).unwrap();
        f.write_all(b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"old", "not before the commit");
        f.commit().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        let mut g = AtomicFile::create(&p).unwrap();
        g.write_all(b"half").unwrap();
        drop(g); // a job that failed midway
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(
            std::fs::read_dir(&d).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    #[test]
    fn a_failed_atomic_write_keeps_the_old_file_and_names_the_path() {
        let d = scratch("fail");
        let p = d.join("ckpt.safetensors");
        write_atomic(&p, b"old").unwrap();
        let e = write_atomic_with(&p, |tmp| {
            std::fs::write(tmp, b"half")?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(
            e.to_string().contains("ckpt.safetensors") && e.to_string().contains("disk full"),
            "{e}"
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(
            std::fs::read_dir(&d).unwrap().count(),
            1,
            "temporary file left behind"
        );
    }
}
