//! The console: a page every node serves at `GET /` that shows the whole cluster, live, in a
//! browser: each node's role, epoch, state, log, commit point, lag, component version and last
//! messages, the events between them, and a form that appends.
//!
//! The page is plain HTML, CSS and JavaScript kept in this binary (`assets/`): no build step,
//! nothing fetched from any other site (its `Content-Security-Policy` allows its own origin
//! only). It reads one thing, `GET /console/cluster` (`view`), every second, and appends
//! through `POST /console/append`, which goes to the master's write path like any client
//! write: the node serving the page takes it if it is master, else sends it on to its master.
//! Everything it shows, any client may read; it shows no secret.
//!
//! The console is the host's, as `GET /metrics` is: it reads the nodes' public API and
//! decides nothing, so a component version changes what it shows, never whether it answers.

mod view;

use std::sync::Arc;

use bytes::Bytes;

pub(crate) use self::view::Views;
use crate::config::Role;
use crate::node::{Node, Response, json_error};
use crate::seat::Seat;

/// What the console answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// A file of the page.
    Asset(&'static Asset),
    /// `GET /console/cluster`: the cluster now, as JSON.
    Cluster,
    /// `POST /console/append`: a write, sent to the master.
    Append,
}

/// A file of the page, kept in the binary.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: [Asset; 3] = [
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_str!("assets/index.html"),
    },
    Asset {
        path: "/console/console.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("assets/console.css"),
    },
    Asset {
        path: "/console/console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/console.js"),
    },
];

/// The page may use what comes from its own node, and nothing else.
const POLICY: &str = "default-src 'self'; img-src 'self' data:; base-uri 'none'; \
                      form-action 'self'; frame-ancestors 'none'";

/// The console's route for `path`, if it is one.
pub(crate) fn route(path: &str) -> Option<Route> {
    match path {
        "/console/cluster" => Some(Route::Cluster),
        "/console/append" => Some(Route::Append),
        _ => ASSETS.iter().find(|asset| asset.path == path).map(Route::Asset),
    }
}

/// Whether `route` is answered by the host before admission (everything but an append, which
/// is admitted whole first, as any write).
pub(crate) fn answers_at_once(route: Route) -> bool {
    route != Route::Append
}

/// A file of the page, or the cluster view; `405` for a method other than `GET` or `HEAD`.
pub(crate) async fn answer(
    route: Route,
    method: &http::Method,
    seat: &Arc<Seat>,
    views: &Views,
) -> Response {
    if !matches!(*method, http::Method::GET | http::Method::HEAD) {
        return method_not_allowed("GET", "the console's pages and view are read with GET");
    }
    let mut response = match route {
        Route::Asset(asset) => {
            let mut response = crate::node::whole(
                200,
                asset.content_type,
                Bytes::from_static(asset.body.as_bytes()),
            );
            if asset.content_type.starts_with("text/html") {
                let headers = response.headers_mut();
                headers.insert(
                    http::header::CONTENT_SECURITY_POLICY,
                    http::HeaderValue::from_static(POLICY),
                );
                headers.insert(
                    http::header::REFERRER_POLICY,
                    http::HeaderValue::from_static("no-referrer"),
                );
            }
            response
        }
        Route::Cluster => crate::node::whole(200, "application/json", views.cluster(seat).await),
        Route::Append => return method_not_allowed("POST", "/console/append takes POST"),
    };
    let headers = response.headers_mut();
    headers.insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-cache"));
    headers.insert(http::header::X_CONTENT_TYPE_OPTIONS, http::HeaderValue::from_static("nosniff"));
    response
}

/// `POST /console/append`: the body a client would `POST /messages` (`{"msg": ..., "w": ...,
/// "id": ...}`), written through the master: here if this node is master, else sent on to the
/// master it knows (`503` when it knows none). The answer is the master's, without the log.
pub(crate) async fn append(seat: &Seat, node: &Node, request: http::Request<Bytes>) -> Response {
    if request.method() != http::Method::POST {
        return method_not_allowed("POST", "/console/append takes POST");
    }
    let (mut parts, body) = request.into_parts();
    parts.uri = http::Uri::from_static("/messages?log=false");
    let write = http::Request::from_parts(parts, body);
    if node.role() == Role::Master {
        node.handle(write).await
    } else if seat.master().is_some() || seat.election().is_some() {
        // An elected node between masters answers 503 with why (`Seat::forward`).
        seat.forward(write).await
    } else {
        let mut refused = json_error(
            503,
            "this node knows no master to write through: with fixed roles, start a secondary with \
             MASTER_URL, or open the console on the master",
        );
        refused
            .headers_mut()
            .insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
        refused
    }
}

fn method_not_allowed(allow: &'static str, why: &str) -> Response {
    let mut refused = json_error(405, why);
    refused.headers_mut().insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
    refused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_files_are_routed_and_nothing_else() {
        assert!(
            matches!(route("/"), Some(Route::Asset(a)) if a.content_type.starts_with("text/html"))
        );
        assert!(matches!(route("/console/console.js"), Some(Route::Asset(_))));
        assert_eq!(route("/console/cluster"), Some(Route::Cluster));
        assert_eq!(route("/console/append"), Some(Route::Append));
        for other in
            ["/messages", "/health", "/console", "/console/", "/index.html", "/console/x.js"]
        {
            assert_eq!(route(other), None, "{other}");
        }
    }

    #[test]
    fn the_page_fetches_nothing_from_elsewhere() {
        for asset in &ASSETS {
            for outside in ["http://", "https://", "//"] {
                let found = asset.body.match_indices(outside).any(|(at, _)| {
                    // A `//` comment in the script or the CSS is not a URL.
                    outside != "//" || asset.body[..at].ends_with(['"', '\'', '(', '='])
                });
                assert!(!found, "{} refers to {outside}", asset.path);
            }
        }
        let page = ASSETS[0].body;
        assert!(
            page.contains(r#"src="/console/console.js""#)
                && page.contains(r#"href="/console/console.css""#)
        );
    }
}
