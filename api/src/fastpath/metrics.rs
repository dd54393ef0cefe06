//! The request metrics of the fast path: the same series the router's `metrics::track` layer
//! records (`route="/objects/{sha}"`), through handles registered once, so that recording
//! allocates nothing and hashes no label per request.

use std::sync::OnceLock;
use std::time::Duration;

use axum::http::StatusCode;
use metrics::{Counter, Histogram};

const ROUTE: &str = "/objects/{sha}";

/// The statuses the fast path answers with; anything else is labelled on the fly.
const STATUSES: [(StatusCode, &str); 11] = [
    (StatusCode::OK, "200"),
    (StatusCode::PARTIAL_CONTENT, "206"),
    (StatusCode::NOT_MODIFIED, "304"),
    (StatusCode::BAD_REQUEST, "400"),
    (StatusCode::UNAUTHORIZED, "401"),
    (StatusCode::FORBIDDEN, "403"),
    (StatusCode::NOT_FOUND, "404"),
    (StatusCode::RANGE_NOT_SATISFIABLE, "416"),
    (StatusCode::INTERNAL_SERVER_ERROR, "500"),
    (StatusCode::SERVICE_UNAVAILABLE, "503"),
    (StatusCode::GATEWAY_TIMEOUT, "504"),
];

struct Handles {
    /// `[GET, HEAD][status]`.
    requests: [[Counter; STATUSES.len()]; 2],
    duration: Histogram,
}

/// Handles are registered on first use, after the node installed its recorder.
fn handles() -> &'static Handles {
    static HANDLES: OnceLock<Handles> = OnceLock::new();
    HANDLES.get_or_init(|| Handles {
        requests: ["GET", "HEAD"].map(|method| {
            STATUSES.map(|(_, status)| {
                metrics::counter!("tessera_http_requests_total", "route" => ROUTE, "method" => method, "status" => status)
            })
        }),
        duration: metrics::histogram!("tessera_http_request_duration_seconds", "route" => ROUTE),
    })
}

/// Counts one answered object request and its latency.
pub fn record(head: bool, status: StatusCode, elapsed: Duration) {
    let h = handles();
    match STATUSES.iter().position(|(s, _)| *s == status) {
        Some(i) => h.requests[usize::from(head)][i].increment(1),
        None => {
            let method = if head { "HEAD" } else { "GET" };
            metrics::counter!("tessera_http_requests_total", "route" => ROUTE, "method" => method, "status" => status.as_u16().to_string())
                .increment(1);
        }
    }
    h.duration.record(elapsed.as_secs_f64());
}
