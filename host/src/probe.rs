//! `replog probe`: one GET, for health checks in an image that has no curl (and for `replog
//! status`).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ProbeError {
    #[error("not an http:// URL with a host")]
    BadUrl,
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("HTTP error: {0}")]
    Http(#[from] hyper::Error),
}

/// GETs `url` and returns the status.
pub(crate) async fn get(url: &str, timeout: Duration) -> Result<u16, ProbeError> {
    fetch(url, timeout).await.map(|(status, _)| status)
}

/// GETs `url` and returns the status and the body, all within `timeout`.
pub(crate) async fn fetch(url: &str, timeout: Duration) -> Result<(u16, Bytes), ProbeError> {
    let uri: http::Uri = url.parse().map_err(|_| ProbeError::BadUrl)?;
    if uri.scheme_str() != Some("http") {
        return Err(ProbeError::BadUrl);
    }
    let host = uri.host().ok_or(ProbeError::BadUrl)?.to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let attempt = async {
        let stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(ProbeError::Connect)?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let request = http::Request::get(path)
            .header(http::header::HOST, format!("{host}:{port}"))
            .body(Empty::<Bytes>::new())
            .expect("a GET of a parsed path is a valid request");
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        Ok((status, response.into_body().collect().await?.to_bytes()))
    };
    tokio::time::timeout(timeout, attempt).await.map_err(|_| ProbeError::Timeout(timeout))?
}

/// Runs `futures` concurrently and returns their outputs in order.
pub(crate) async fn join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(tasks.len());
    for task in tasks {
        outputs.push(task.await.expect("a probe does not panic"));
    }
    outputs
}

/// A node's JSON answer to `GET path`: its value when `status` is 200, else why not (the
/// status, and the answer's own `error` when it gives one).
pub(crate) fn json_answer(
    path: &str,
    status: u16,
    body: &[u8],
) -> Result<serde_json::Value, String> {
    if status != 200 {
        let why = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .map_or(String::new(), |error| format!(": {error}"));
        return Err(format!("{path} answered {status}{why}"));
    }
    serde_json::from_slice(body).map_err(|e| format!("{path} is not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::json_answer;

    #[test]
    fn a_json_answer_is_its_value_or_why_not() {
        assert_eq!(json_answer("/health", 200, br#"{"a":1}"#).unwrap()["a"], 1);
        let refused = json_answer("/ready", 503, br#"{"error":"recovering"}"#).unwrap_err();
        assert_eq!(refused, "/ready answered 503: recovering");
        assert_eq!(
            json_answer("/health", 502, b"bad gateway").unwrap_err(),
            "/health answered 502"
        );
        assert!(
            json_answer("/health", 200, b"<html>").unwrap_err().starts_with("/health is not JSON")
        );
    }
}
