//! The few etcd v3 calls an election needs, through etcd's JSON gateway (`POST /v3/...`) over
//! the HTTP client the host already has: no gRPC stack, no protoc at build time.
//!
//! The gateway speaks protobuf's JSON: keys and values in base64, 64-bit numbers as strings,
//! and fields at their default value (0, false, empty) left out, so every field is optional
//! here and read as its default when missing.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::{Value, json};

/// How long one call to etcd may take before the next endpoint is tried.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a call to etcd failed: the text names the endpoint and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint answered; the text says what each one did.
    #[error("no etcd endpoint answered: {0}")]
    Unreachable(String),
    /// An endpoint answered something that is not what the call expects.
    #[error("etcd at {endpoint} answered {what}")]
    Unexpected {
        /// The endpoint that answered.
        endpoint: String,
        /// What it answered, in short.
        what: String,
    },
}

/// A key as etcd holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// Its value.
    pub value: Vec<u8>,
    /// The revision that created it: cluster-wide, strictly increasing, never reused.
    pub create_revision: u64,
    /// The lease it is bound to (0: none).
    pub lease: i64,
}

/// What creating a key if it is absent came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// It was absent: now it holds the value, created at this revision.
    Now(u64),
    /// Someone holds it already.
    Held(KeyValue),
}

/// A client of one etcd cluster, trying its endpoints in turn.
#[derive(Clone)]
pub struct Etcd {
    endpoints: Vec<String>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd").field("endpoints", &self.endpoints).finish()
    }
}

impl Etcd {
    /// A client of the etcd cluster at `endpoints` (base URLs, `http://host:2379`).
    pub fn new(endpoints: Vec<String>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CALL_TIMEOUT));
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let endpoints = endpoints.into_iter().map(|e| e.trim_end_matches('/').to_owned()).collect();
        Self { endpoints, client }
    }

    /// A new lease of `ttl`; returns its id.
    pub async fn grant(&self, ttl: Duration) -> Result<i64, EtcdError> {
        let (endpoint, answer) =
            self.call("/v3/lease/grant", json!({ "TTL": ttl.as_secs() })).await?;
        let id = number(&answer["ID"]);
        if id == 0 {
            return Err(unexpected(&endpoint, &answer, "a lease grant without an id"));
        }
        Ok(id)
    }

    /// Renews `lease`; returns the time it has left, none when it has expired.
    pub async fn keep_alive(&self, lease: i64) -> Result<Option<Duration>, EtcdError> {
        let (_, answer) =
            self.call("/v3/lease/keepalive", json!({ "ID": lease.to_string() })).await?;
        // The gateway answers a stream's one message as {"result": {...}}; an expired lease
        // comes back with no TTL (0, left out).
        let ttl = number(&answer["result"]["TTL"]);
        Ok((ttl > 0).then(|| Duration::from_secs(ttl as u64)))
    }

    /// Ends `lease` now: the keys bound to it go with it.
    pub async fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        self.call("/v3/lease/revoke", json!({ "ID": lease.to_string() })).await.map(drop)
    }

    /// The key `key`, if it exists.
    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>, EtcdError> {
        let (endpoint, answer) =
            self.call("/v3/kv/range", json!({ "key": BASE64.encode(key) })).await?;
        first_kv(&endpoint, &answer["kvs"])
    }

    /// Creates `key` with `value`, bound to `lease`, in one transaction, only if it is absent.
    pub async fn create(&self, key: &str, value: &[u8], lease: i64) -> Result<Created, EtcdError> {
        let key = BASE64.encode(key);
        let txn = json!({
            "compare": [{ "key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0" }],
            "success": [{ "request_put": { "key": key, "value": BASE64.encode(value), "lease": lease.to_string() } }],
            "failure": [{ "request_range": { "key": key } }],
        });
        let (endpoint, answer) = self.call("/v3/kv/txn", txn).await?;
        if answer["succeeded"].as_bool().unwrap_or(false) {
            return Ok(Created::Now(number(&answer["header"]["revision"]) as u64));
        }
        match first_kv(&endpoint, &answer["responses"][0]["response_range"]["kvs"])? {
            Some(held) => Ok(Created::Held(held)),
            // Gone between the compare and the range of one transaction cannot happen; an
            // answer without it is not etcd's.
            None => Err(unexpected(&endpoint, &answer, "a failed create without the key")),
        }
    }

    /// Deletes `key` if it is still the one created at `create_revision`: never a key someone
    /// created since. Returns whether it deleted it.
    pub async fn delete_if_created_at(
        &self,
        key: &str,
        create_revision: u64,
    ) -> Result<bool, EtcdError> {
        let key = BASE64.encode(key);
        let txn = json!({
            "compare": [{ "key": key, "target": "CREATE", "result": "EQUAL", "create_revision": create_revision.to_string() }],
            "success": [{ "request_delete_range": { "key": key } }],
        });
        let (_, answer) = self.call("/v3/kv/txn", txn).await?;
        Ok(answer["succeeded"].as_bool().unwrap_or(false))
    }

    /// Puts `value` at `key` with no lease and no condition (for tests and tools).
    pub async fn put(&self, key: &str, value: &[u8]) -> Result<(), EtcdError> {
        let body = json!({ "key": BASE64.encode(key), "value": BASE64.encode(value) });
        self.call("/v3/kv/put", body).await.map(drop)
    }

    /// Posts `body` to `path` on each endpoint in turn until one answers `200` with JSON.
    async fn call(&self, path: &str, body: Value) -> Result<(String, Value), EtcdError> {
        let body = Bytes::from(body.to_string());
        let mut failures = Vec::new();
        for endpoint in &self.endpoints {
            match tokio::time::timeout(CALL_TIMEOUT, self.post(endpoint, path, body.clone())).await
            {
                Ok(Ok(answer)) => return Ok((endpoint.clone(), answer)),
                Ok(Err(why)) => failures.push(format!("{endpoint}: {why}")),
                Err(_) => failures.push(format!("{endpoint}: no answer within {CALL_TIMEOUT:?}")),
            }
        }
        Err(EtcdError::Unreachable(failures.join("; ")))
    }

    async fn post(&self, endpoint: &str, path: &str, body: Bytes) -> Result<Value, String> {
        let request = http::Request::post(format!("{endpoint}{path}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| format!("not a usable URL ({e})"))?;
        let response = self.client.request(request).await.map_err(|e| format!("{e}"))?;
        let status = response.status();
        let bytes = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            return Err(format!("{status}: {}", text.trim()));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("an answer that is not JSON ({e})"))
    }
}

/// A protobuf-JSON 64-bit number (a string, or left out for 0).
fn number(value: &Value) -> i64 {
    match value {
        Value::String(text) => text.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn unexpected(endpoint: &str, answer: &Value, what: &str) -> EtcdError {
    let mut text = answer.to_string();
    text.truncate(200);
    EtcdError::Unexpected { endpoint: endpoint.to_owned(), what: format!("{what}: {text}") }
}

/// The first of a range's `kvs`, if any.
fn first_kv(endpoint: &str, kvs: &Value) -> Result<Option<KeyValue>, EtcdError> {
    #[derive(Deserialize)]
    struct Raw {
        #[serde(default)]
        value: String,
        #[serde(default)]
        create_revision: Value,
        #[serde(default)]
        lease: Value,
    }
    let Some(first) = kvs.as_array().and_then(|kvs| kvs.first()) else { return Ok(None) };
    let raw: Raw = serde_json::from_value(first.clone())
        .map_err(|_| unexpected(endpoint, first, "a key that is not one"))?;
    let value = BASE64
        .decode(raw.value)
        .map_err(|_| unexpected(endpoint, first, "a value not in base64"))?;
    Ok(Some(KeyValue {
        value,
        create_revision: number(&raw.create_revision) as u64,
        lease: number(&raw.lease),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protobuf_json_numbers_are_strings_or_left_out() {
        assert_eq!(number(&json!("7587871122")), 7_587_871_122);
        assert_eq!(number(&json!(12)), 12);
        assert_eq!(number(&Value::Null), 0, "a field at its default is left out");
        assert_eq!(number(&json!("x")), 0);
    }

    #[test]
    fn a_key_is_read_from_a_range_answer() {
        let kvs = json!([{ "key": "YQ==", "value": BASE64.encode("v"), "create_revision": "9", "lease": "42" }]);
        let kv = first_kv("e", &kvs).unwrap().unwrap();
        assert_eq!(kv, KeyValue { value: b"v".to_vec(), create_revision: 9, lease: 42 });
        assert_eq!(first_kv("e", &Value::Null).unwrap(), None, "no kvs: no key");
        let bad = json!([{ "value": "***" }]);
        assert!(matches!(first_kv("e", &bad), Err(EtcdError::Unexpected { .. })));
    }
}
