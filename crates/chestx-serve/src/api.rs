//! The routes: `/v1/predict`, `/v1/label`, `/v1/model`, `/healthz`, `/metrics` and the viewer at `/`,
//! with the layers every request passes (metrics and access log, timeout, token).

use crate::error::{ApiError, ErrorKind};
use crate::eval_view::EvalView;
use crate::film::{self, HeatmapChoice};
use crate::label;
use crate::metrics::Metrics;
use crate::model::{FilmInput, ModelInfo, ModelQueue};
use crate::viewer;
use axum::body::{Body, Bytes};
use axum::extract::{
    DefaultBodyLimit, FromRequest, MatchedPath, Multipart, Path, Query, Request, State,
};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chestx_report::Labeler;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Bounds on what one request may take.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, in bytes.
    pub max_body: usize,
    /// Longest a request may take, queueing included.
    pub timeout: Duration,
    /// Films decoded at once (each may need up to a few hundred MB).
    pub decode_slots: usize,
    /// Predictions in flight (reading, decoding, queued, scoring); more are refused with 503.
    pub max_inflight: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Limits {
            max_body: 64 << 20,
            timeout: Duration::from_secs(60),
            decode_slots: cores,
            max_inflight: 64,
        }
    }
}

/// One line of the access log: no bodies, no query strings, no file names.
#[derive(Debug, Clone)]
pub struct RequestLog {
    pub method: String,
    pub route: String,
    pub status: u16,
    pub millis: f64,
    pub error: Option<&'static str>,
}

pub type RequestObserver = Arc<dyn Fn(&RequestLog) + Send + Sync>;

pub struct AppState {
    pub model: ModelQueue,
    pub info: Arc<ModelInfo>,
    pub labeler: Arc<Labeler>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    /// Required as `Authorization: Bearer <token>` on `/v1/*` when set.
    pub token: Option<String>,
    pub on_request: Option<RequestObserver>,
    /// An evaluation to show (`--eval`).
    pub eval: Option<Arc<EvalView>>,
    decode_slots: Arc<Semaphore>,
    inflight: Arc<Semaphore>,
}

impl AppState {
    pub fn new(
        model: ModelQueue,
        info: ModelInfo,
        limits: Limits,
        token: Option<String>,
        metrics: Arc<Metrics>,
        on_request: Option<RequestObserver>,
    ) -> AppState {
        AppState {
            model,
            info: Arc::new(info),
            labeler: Arc::new(Labeler::with_defaults()),
            metrics,
            decode_slots: Arc::new(Semaphore::new(limits.decode_slots.max(1))),
            inflight: Arc::new(Semaphore::new(limits.max_inflight.max(1))),
            limits,
            token,
            on_request,
            eval: None,
        }
    }

    /// Also serve an evaluation's tables, ROC plot and overlay gallery.
    pub fn with_eval(mut self, view: EvalView) -> AppState {
        self.eval = Some(Arc::new(view));
        self
    }
}

type Shared = Arc<AppState>;

/// The whole service.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(viewer::index))
        .route("/viewer.js", get(viewer::script))
        .route("/viewer.css", get(viewer::style))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/model", get(model))
        .route("/v1/predict", post(predict))
        .route("/v1/label", post(label))
        .route("/v1/eval", get(eval_summary))
        .route("/v1/eval/roc.png", get(eval_roc))
        .route("/v1/eval/overlays/{id}", get(eval_overlay))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        // Multipart reads through axum's limit; raw bodies through `read_body`'s.
        .layer(DefaultBodyLimit::max(state.limits.max_body))
        .with_state(state)
}

/// Time, count and log every request; cut it off at the timeout.
async fn observe(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let response = match tokio::time::timeout(s.limits.timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!(
                "the request took longer than {} s",
                s.limits.timeout.as_secs_f64()
            ),
        )
        .into_response(),
    };
    let error = response.extensions().get::<ErrorKind>().map(|k| k.0);
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    s.metrics.record(&route, status, seconds, error);
    if let Some(log) = &s.on_request {
        log(&RequestLog {
            method,
            route,
            status,
            millis: seconds * 1e3,
            error,
        });
    }
    response
}

/// `/v1/*` needs the token when one is set; the viewer page, health and metrics do not.
async fn authorize(State(s): State<Shared>, req: Request, next: Next) -> Response {
    if let Some(token) = &s.token {
        if req.uri().path().starts_with("/v1/") {
            let given = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
                return ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "this server needs `Authorization: Bearer <token>` (the --token-file's token)",
                )
                .into_response();
            }
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn healthz(State(s): State<Shared>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "queued": s.model.queued(),
        "queue_capacity": s.model.capacity(),
    }))
}

async fn metrics(State(s): State<Shared>) -> Response {
    s.metrics.queued.set(s.model.queued() as i64);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

async fn model(State(s): State<Shared>) -> Json<serde_json::Value> {
    let i = &s.info;
    let thresholds: serde_json::Map<_, _> = i
        .classes
        .iter()
        .zip(&i.thresholds.values)
        .map(|(c, t)| (c.clone(), serde_json::json!(t)))
        .collect();
    Json(serde_json::json!({
        "api_version": 1,
        "architecture": i.architecture,
        "classes": i.classes,
        "input_size": i.input_size,
        "thresholds": thresholds,
        "thresholds_source": i.thresholds.source,
        "boxes": i.boxes,
        "checkpoint": i.checkpoint,
        "device": i.device,
        "training": i.training,
        "preprocessing": i.preprocess.describe(i.input_size),
    }))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictQuery {
    #[serde(default)]
    heatmaps: HeatmapChoice,
    /// Also return a display copy of the film (PNG), for viewers that cannot read DICOM.
    #[serde(default)]
    film: bool,
}

async fn predict(
    State(s): State<Shared>,
    req: Request,
) -> Result<Json<film::PredictResponse>, ApiError> {
    let q = Query::<PredictQuery>::try_from_uri(req.uri())
        .map_err(|e| ApiError::bad_request("bad_query", e.body_text()))?
        .0;
    // Backpressure before the body is read: in-flight predictions, and so their memory, are bounded.
    let _slot = s.inflight.clone().try_acquire_owned().map_err(|_| {
        ApiError::busy(format!(
            "{} predictions are in progress; try again shortly",
            s.limits.max_inflight
        ))
    })?;
    let bytes = film_bytes(&s, req).await?;
    let permit = s
        .decode_slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::internal("shutting_down", "the server is stopping"))?;
    let (size, preprocess) = (s.info.input_size, s.info.preprocess);
    let prepared = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        film::prepare(&bytes, size, preprocess, q.film)
    })
    .await
    .map_err(|e| ApiError::internal("decoder_failed", e.to_string()))??;
    let input = FilmInput {
        input: prepared.input,
        all_maps: q.heatmaps == HeatmapChoice::All,
    };
    let reply = s.model.submit(input).map_err(|_| {
        ApiError::busy(format!(
            "the model's queue is full ({} films); try again shortly",
            s.model.capacity()
        ))
    })?;
    let scores = reply
        .await
        .map_err(|_| ApiError::internal("model_stopped", "the model thread stopped"))?
        .map_err(|e| ApiError::internal("model_failed", e))?;
    let info = s.info.clone();
    let response = tokio::task::spawn_blocking(move || {
        film::finish(&info, prepared.info, prepared.display, scores, q.heatmaps)
    })
    .await
    .map_err(|e| ApiError::internal("boxes_failed", e.to_string()))?;
    Ok(Json(response))
}

/// The uploaded file: the raw body, or the first file of a multipart form.
async fn film_bytes(s: &AppState, req: Request) -> Result<Bytes, ApiError> {
    let content_type = content_type(req.headers());
    match content_type.as_deref() {
        None
        | Some("application/octet-stream" | "application/dicom" | "image/png" | "image/jpeg") => {
            read_body(req.into_body(), s.limits.max_body).await
        }
        Some("multipart/form-data") => {
            let mut form = Multipart::from_request(req, &())
                .await
                .map_err(|e| ApiError::bad_request("bad_multipart", e.body_text()))?;
            while let Some(field) = form
                .next_field()
                .await
                .map_err(|e| multipart_error(e.status(), e.body_text()))?
            {
                if field.file_name().is_some() || field.name() == Some("file") {
                    return field
                        .bytes()
                        .await
                        .map_err(|e| multipart_error(e.status(), e.body_text()));
                }
            }
            Err(ApiError::bad_request(
                "empty_body",
                "the form has no file field: send the film as a field named `file`",
            ))
        }
        Some(other) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "Content-Type {other} is not a film: send image/png, image/jpeg, application/dicom, application/octet-stream or multipart/form-data"
            ),
        )),
    }
}

fn multipart_error(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(status, "body_too_large", text)
    } else {
        ApiError::bad_request("bad_multipart", text)
    }
}

/// The media type without parameters, lower-cased.
fn content_type(h: &HeaderMap) -> Option<String> {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
}

/// The whole body, refused with 413 past `limit` (before reading, when Content-Length says so).
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        // axum wraps http-body's `LengthLimitError`; its text is the stable part.
        let too_large = format!("{e:?} {e}").contains("length limit");
        if too_large {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body is larger than the server's limit of {limit} bytes"),
            )
        } else {
            ApiError::bad_request(
                "unreadable_body",
                format!("the body could not be read: {e}"),
            )
        }
    })
}

async fn label(State(s): State<Shared>, req: Request) -> Result<Json<serde_json::Value>, ApiError> {
    let ct = content_type(req.headers());
    let body = read_body(req.into_body(), s.limits.max_body).await?;
    let labeler = s.labeler.clone();
    let reports = tokio::task::spawn_blocking(move || {
        label::parse(ct.as_deref(), &body).map(|rs| {
            rs.into_iter()
                .map(|(id, text)| label::label(&labeler, id, text))
                .collect::<Vec<_>>()
        })
    })
    .await
    .map_err(|e| ApiError::internal("labeler_failed", e.to_string()))??;
    Ok(Json(serde_json::json!({
        "convention": "CheXpert: 1 positive, 0 negative, -1 uncertain, null not mentioned",
        "reports": reports,
    })))
}

fn evaluation(s: &AppState) -> Result<&EvalView, ApiError> {
    s.eval.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_evaluation",
            "this server shows no evaluation (start it with --eval DIR, a `chestx eval` output)",
        )
    })
}

fn png(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "image/png")], bytes).into_response()
}

async fn eval_summary(State(s): State<Shared>) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(evaluation(&s)?.summary.clone()))
}

async fn eval_roc(State(s): State<Shared>) -> Result<Response, ApiError> {
    let roc = evaluation(&s)?.roc.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "the evaluation has no roc.png",
        )
    })?;
    Ok(png(roc))
}

/// An overlay by its number in the gallery; nothing else reaches a file.
async fn eval_overlay(
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let view = evaluation(&s)?;
    let bytes = id
        .parse::<usize>()
        .ok()
        .and_then(|i| view.overlays.get(i))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "no overlay {id:?}: the gallery's ids are 0 to {}",
                    view.overlays.len().saturating_sub(1)
                ),
            )
        })?;
    Ok(png(bytes.clone()))
}
