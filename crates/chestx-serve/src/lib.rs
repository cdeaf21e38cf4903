//! `chestx serve`: a trained network and the report labeler behind a versioned JSON API, with a web
//! viewer for films, heatmaps, boxes and report evidence.
//!
//! ```text
//! request ─► observe (metrics, access log, timeout) ─► authorize (token on /v1/*) ─► route
//!   /v1/predict: body ─► film::prepare (decode, resize; blocking pool, bounded slots)
//!                     ─► batcher (bounded queue ─► one model thread, batches of what queued)
//!                     ─► film::finish (boxes, heatmap PNGs; blocking pool) ─► JSON
//!   /v1/label:   text or JSON ─► label (Labeler, evidence with offsets) ─► JSON
//!   /v1/eval:    an evaluation read at start-up (tables, ROC, overlays by number) ─► JSON / PNG
//! ```
//!
//! Memory is bounded by construction: predictions in flight are capped (503 + Retry-After past the
//! cap, before the body is read), bodies by the size limit, decodes by a semaphore, and the model's
//! queue by its capacity. Nothing a request sends reaches the filesystem, and the access log holds
//! method, route, status and time only.

pub mod api;
pub mod batcher;
mod error;
pub mod eval_view;
pub mod film;
pub mod label;
pub mod metrics;
pub mod model;
mod viewer;

pub use api::{router, AppState, Limits, RequestLog};
pub use error::ApiError;
pub use model::{ModelInfo, ModelSpec, ThresholdSource};

use std::net::SocketAddr;

/// Who may reach the server: loopback is open; any other address needs a token, or the explicit
/// choice to run without one.
pub fn check_bind(addr: &SocketAddr, token: bool, insecure: bool) -> Result<(), String> {
    if addr.ip().is_loopback() || token || insecure {
        Ok(())
    } else {
        Err(format!(
            "{addr} is reachable from other machines: give --token-file FILE (clients then send \
             `Authorization: Bearer <token>`), or --insecure to serve without one"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_is_served_without_a_token() {
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let v6: SocketAddr = "[::1]:8080".parse().unwrap();
        let all: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(check_bind(&local, false, false).is_ok());
        assert!(check_bind(&v6, false, false).is_ok());
        assert!(check_bind(&all, false, false)
            .unwrap_err()
            .contains("--token-file"));
        assert!(check_bind(&all, true, false).is_ok());
        assert!(check_bind(&all, false, true).is_ok());
    }
}
