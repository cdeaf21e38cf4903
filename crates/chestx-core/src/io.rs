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
