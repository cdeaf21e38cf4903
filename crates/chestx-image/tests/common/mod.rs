//! The shared data the real-file tests read.

use std::path::PathBuf;

/// `$CHESTX_DATA/sub` (default: the `shared/data` beside the checkout), or `None` with a SKIP line.
pub fn data_dir(sub: &str) -> Option<PathBuf> {
    chestx_testkit::data(sub)
}

/// The NIH PNG originals in name order, or `None` (skipped) without the data.
pub fn nih_pngs() -> Option<Vec<PathBuf>> {
    let dir = data_dir("nih/images")?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    files.sort();
    Some(files)
}
