//! Requests as the node's HTTP edge sees them: by route, method and status.

use std::time::Duration;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

use super::{SECONDS, register};

/// The routes counted apart; every other path is `other`, so that a client cannot make the
/// node keep a series per path it invents.
const ROUTES: [&str; 5] = ["/messages", "/health", "/ready", "/replicate", "/metrics"];

/// Requests answered and their durations, and the request bodies held. Cheap to clone: every
/// clone counts into the same series.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    /// Bytes of request bodies the node holds room for now (`server::budget`).
    pub(crate) body_bytes_held: IntGauge,
    /// The node's budget for them (`BODY_BUDGET_BYTES`).
    pub(crate) body_budget_bytes: IntGauge,
    /// Answers the host served again, kept, without calling the component (`node::answers`).
    pub(crate) kept_answers_served: IntCounter,
    /// Bytes of those answers kept now.
    pub(crate) kept_answers_bytes: IntGauge,
}

impl HttpMetrics {
    pub(super) fn new(registry: &Registry) -> Self {
        let requests = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "replog_http_requests_total",
                    "HTTP requests answered, by route, method and status (refusals at the edge included).",
                ),
                &["route", "method", "status"],
            ),
        );
        let duration = register(
            registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "replog_http_request_duration_seconds",
                    "Time from a request's arrival to its answer's head, by route and method.",
                )
                .buckets(SECONDS.to_vec()),
                &["route", "method"],
            ),
        );
        let body_bytes_held = register(
            registry,
            IntGauge::new(
                "replog_http_body_bytes_held",
                "Bytes of request bodies the node holds room for now, out of its budget.",
            ),
        );
        let body_budget_bytes = register(
            registry,
            IntGauge::new(
                "replog_http_body_budget_bytes",
                "Bytes of request bodies the node holds at most (BODY_BUDGET_BYTES).",
            ),
        );
        let kept_answers_served = register(
            registry,
            IntCounter::new(
                "replog_http_kept_answers_served_total",
                "Answers served again as the component made them, without calling it: answers it \
                 said depend on the log alone, to the same request, while the log had not changed.",
            ),
        );
        let kept_answers_bytes = register(
            registry,
            IntGauge::new(
                "replog_http_kept_answers_bytes",
                "Bytes of answers kept to be served again while the log does not change.",
            ),
        );
        Self {
            requests,
            duration,
            body_bytes_held,
            body_budget_bytes,
            kept_answers_served,
            kept_answers_bytes,
        }
    }

    /// Counts one answered request to `path` (classified into a route).
    pub fn observe(&self, path: &str, method: &str, status: u16, took: Duration) {
        let (route, method) = (route(path), method_label(method));
        self.requests.with_label_values(&[route, method, &status.to_string()]).inc();
        self.duration.with_label_values(&[route, method]).observe(took.as_secs_f64());
    }
}

/// The route label of `path`.
pub(crate) fn route(path: &str) -> &'static str {
    ROUTES.iter().find(|route| **route == path).copied().unwrap_or("other")
}

fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "HEAD" => "HEAD",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invented_paths_and_methods_share_one_series() {
        assert_eq!(route("/messages"), "/messages");
        assert_eq!(route("/messages/1"), "other");
        assert_eq!(route("/a-path-of-its-own"), "other");
        assert_eq!(route("/env"), "other", "a route only a test component has");
        assert_eq!(method_label("BREW"), "other");
        let registry = Registry::new();
        let http = HttpMetrics::new(&registry);
        for path in ["/x", "/y", "/z"] {
            http.observe(path, "GET", 404, Duration::from_millis(1));
        }
        http.observe("/messages", "POST", 201, Duration::from_millis(3));
        let families = registry.gather();
        let requests = families.iter().find(|f| f.name() == "replog_http_requests_total").unwrap();
        assert_eq!(requests.get_metric().len(), 2, "one series for every unknown path");
    }
}
