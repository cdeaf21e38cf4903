//! Test support shared by every crate's tests: where the real data is and the one skip policy.
//!
//! Data-driven tests read `$CHESTX_DATA` (default: `shared/data` beside the checkout). On a
//! developer's machine without it they skip, saying so. With `CHESTX_REQUIRE_DATA=1` (CI sets it) a
//! missing data folder *fails* the test instead: a CI run never passes by skipping.
//!
//! Minutes-long tests run only with `CHESTX_SLOW_TESTS=1` ([`slow`]); CI sets it too.

use std::path::{Path, PathBuf};

/// The shared data folder, whether or not it exists.
pub fn data_root() -> PathBuf {
    std::env::var_os("CHESTX_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/data"))
}

/// The workspace's root folder (this crate sits in `crates/chestx-testkit`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}

/// `data_root()/sub` when it exists. Otherwise: a panic when `CHESTX_REQUIRE_DATA=1`, else `None`
/// with a SKIP line naming what is missing.
pub fn data(sub: &str) -> Option<PathBuf> {
    let p = data_root().join(sub);
    if p.exists() {
        return Some(p);
    }
    if required("CHESTX_REQUIRE_DATA") {
        panic!(
            "CHESTX_REQUIRE_DATA=1 but {} does not exist (set CHESTX_DATA to the shared data)",
            p.display()
        );
    }
    eprintln!("SKIP: no {} (set CHESTX_DATA)", p.display());
    None
}

/// Whether minutes-long tests run (`CHESTX_SLOW_TESTS=1`); prints a SKIP line naming `test` when not.
pub fn slow(test: &str) -> bool {
    let on = required("CHESTX_SLOW_TESTS");
    if !on {
        eprintln!("SKIP: {test} takes minutes; set CHESTX_SLOW_TESTS=1 to run it");
    }
    on
}
