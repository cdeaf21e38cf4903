//! Finding the input files under folders, the one way every batch command does it: sorted, each file
//! once, symbolic-link loops cut, and anything that is not a regular file reported instead of opened
//! (reading a FIFO blocks forever).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// What a walk met, in order: files to read, and paths passed over with the reason (not a regular
/// file, unreadable, a link loop, the same file again).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Walk {
    pub found: Vec<Found>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    File(PathBuf),
    Skipped(PathBuf, String),
}

impl Walk {
    /// The files, in order.
    pub fn files(&self) -> Vec<PathBuf> {
        self.found
            .iter()
            .filter_map(|f| match f {
                Found::File(p) => Some(p.clone()),
                Found::Skipped(..) => None,
            })
            .collect()
    }

    /// What was passed over, `(path, reason)`, in order.
    pub fn skipped(&self) -> Vec<(PathBuf, String)> {
        self.found
            .iter()
            .filter_map(|f| match f {
                Found::Skipped(p, why) => Some((p.clone(), why.clone())),
                Found::File(_) => None,
            })
            .collect()
    }
}

/// The regular files under `roots` (folders recursively, in sorted order; a file named directly is
/// kept whatever its name) for which `wanted` holds; `wanted` is not asked about files named
/// directly. A file reached twice (through a link, or named twice) is kept the first time only; a
/// folder reached again through a link is not walked again.
pub fn walk(roots: &[PathBuf], wanted: &dyn Fn(&Path) -> bool) -> Walk {
    let mut w = Walker {
        out: Walk::default(),
        dirs: HashSet::new(),
        files: HashSet::new(),
    };
    for r in roots {
        w.visit(r, true, wanted);
    }
    w.out
}

struct Walker {
    out: Walk,
    /// Canonical paths of the folders walked and files kept.
    dirs: HashSet<PathBuf>,
    files: HashSet<PathBuf>,
}

impl Walker {
    fn visit(&mut self, path: &Path, named: bool, wanted: &dyn Fn(&Path) -> bool) {
        // Following links: a link to a folder is walked like the folder, once.
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => return self.skip(path, format!("cannot read: {e}")),
        };
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if meta.is_dir() {
            if !self.dirs.insert(canonical.clone()) {
                let why = format!(
                    "folder {} already walked (a link loop or a repeated path)",
                    canonical.display()
                );
                return self.skip(path, why);
            }
            return self.visit_dir(path, wanted);
        }
        if !meta.is_file() {
            if named || wanted(path) {
                self.skip(path, format!("not a regular file ({})", kind_of(&meta)));
            }
            return;
        }
        if !named && !wanted(path) {
            return;
        }
        if !self.files.insert(canonical.clone()) {
            return self.skip(
                path,
                format!("the same file as {} (read once)", canonical.display()),
            );
        }
        self.out.found.push(Found::File(path.to_path_buf()));
    }

    fn visit_dir(&mut self, dir: &Path, wanted: &dyn Fn(&Path) -> bool) {
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) => return self.skip(dir, format!("cannot read folder: {e}")),
        };
        entries.sort();
        for e in entries {
            self.visit(&e, false, wanted);
        }
    }

    fn skip(&mut self, path: &Path, why: String) {
        self.out.found.push(Found::Skipped(path.to_path_buf(), why));
    }
}

fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_block_device() || t.is_char_device() {
            return "a device";
        }
    }
    let _ = meta;
    "not a file or folder"
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn csv(p: &Path) -> bool {
        p.extension().is_some_and(|e| e == "csv")
    }

    #[test]
    fn fifos_are_reported_and_link_loops_and_repeats_read_once() {
        let d = std::env::temp_dir().join(format!("chestx-walk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        std::fs::write(d.join("a/one.csv"), "x").unwrap();
        std::fs::write(d.join("a/b/two.csv"), "x").unwrap();
        std::fs::write(d.join("a/readme.md"), "x").unwrap();
        // A loop (b/up → a) and a second name for a file.
        std::os::unix::fs::symlink(d.join("a"), d.join("a/b/up")).unwrap();
        std::os::unix::fs::symlink(d.join("a/one.csv"), d.join("a/b/alias.csv")).unwrap();
        let fifo = d.join("a/pipe.csv");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        let w = walk(&[d.join("a"), d.join("a/one.csv")], &csv);
        // Sorted order meets the alias first; one.csv, under its own name and as named, is the same
        // file again.
        assert_eq!(
            w.files(),
            vec![d.join("a/b/alias.csv"), d.join("a/b/two.csv")]
        );
        let skipped = w.skipped();
        let reasons: Vec<&str> = skipped.iter().map(|(_, r)| r.as_str()).collect();
        assert!(
            reasons.iter().any(|r| r.contains("already walked")),
            "{reasons:?}"
        );
        assert_eq!(
            reasons
                .iter()
                .filter(|r| r.contains("the same file"))
                .count(),
            2,
            "{reasons:?}"
        );
        if made.is_ok_and(|s| s.success()) {
            assert!(
                skipped
                    .iter()
                    .any(|(p, r)| p == &fifo && r.contains("FIFO")),
                "{reasons:?}"
            );
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}
