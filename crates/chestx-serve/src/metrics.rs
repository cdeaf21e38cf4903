//! `GET /metrics`: requests, latencies, errors by kind, batch sizes and the queue, in the OpenMetrics
//! text format Prometheus scrapes (prometheus-client).

use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Route {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    pub kind: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RouteStatus, Counter>,
    pub latency: Family<Route, Histogram>,
    pub errors: Family<Kind, Counter>,
    pub batch_size: Histogram,
    pub queued: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let requests = Family::<RouteStatus, Counter>::default();
        let latency = Family::<Route, Histogram>::new_with_constructor(|| {
            // 1 ms … 32 s.
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        let errors = Family::<Kind, Counter>::default();
        let batch_size = Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0]);
        let queued = Gauge::default();
        let mut registry = Registry::with_prefix("chestx");
        registry.register(
            "requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request to response, by route",
            latency.clone(),
        );
        registry.register(
            "errors",
            "Error responses by kind (the `kind` of the JSON error)",
            errors.clone(),
        );
        registry.register(
            "batch_size",
            "Films the model scored in one pass",
            batch_size.clone(),
        );
        registry.register(
            "queued_films",
            "Films waiting for the model when last scraped",
            queued.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            errors,
            batch_size,
            queued,
        }
    }
}

impl Metrics {
    pub fn record(&self, route: &str, status: u16, seconds: f64, error: Option<&str>) {
        self.requests
            .get_or_create(&RouteStatus {
                route: route.to_string(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&Route {
                route: route.to_string(),
            })
            .observe(seconds);
        if let Some(kind) = error {
            self.errors
                .get_or_create(&Kind {
                    kind: kind.to_string(),
                })
                .inc();
        }
    }

    /// The OpenMetrics text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        encode(&mut s, &self.registry).expect("writing to a String cannot fail");
        s
    }
}
