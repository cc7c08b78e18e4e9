//! `replog append`: writes messages through a node (the master, or in an elected cluster any
//! member, which forwards to the master) and prints each one's `seq`.

use std::io::Write;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::http::{Connection, HttpError, error_text};
use super::{Ended, Outcome};

/// How `replog append` writes.
#[derive(Debug, Clone)]
pub(crate) struct AppendOptions {
    /// The write concern, if not the master's default (every node).
    pub(crate) w: Option<u64>,
    /// The idempotency key: with several messages, the `n`th gets `KEY-n`.
    pub(crate) id: Option<String>,
    /// How long one write may take to be answered.
    pub(crate) timeout: Duration,
    /// How long a write refused for now (`503`: recovering, no majority, an election) is
    /// tried again, as its `Retry-After` says.
    pub(crate) retry_for: Duration,
}

#[derive(Serialize)]
struct NewMessage<'a> {
    msg: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    w: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
}

/// Writes `msg` (the `n`th of `many`) and returns its `seq`, or why it was not written.
pub(crate) async fn append_one(
    connection: &mut Connection,
    msg: &str,
    n: usize,
    many: bool,
    options: &AppendOptions,
) -> Outcome<u64> {
    let id = options.id.as_ref().map(|key| if many { format!("{key}-{n}") } else { key.clone() });
    let body = serde_json::to_vec(&NewMessage { msg, w: options.w, id })
        .map_err(|e| Ended::Failed(format!("could not encode the message: {e}")))?;
    let started = Instant::now();
    loop {
        let answer = connection
            .exchange(
                http::Method::POST,
                "/messages?log=false",
                Some(body.clone()),
                options.timeout,
            )
            .await;
        let url = &connection.node.url;
        let answer = match answer {
            Ok(answer) => answer,
            Err(e @ (HttpError::Connect(_) | HttpError::BadUrl(_))) => {
                return Err(format!("{url}: {e}; message {n} was not written").into());
            }
            Err(e) => {
                return Err(format!(
                    "{url}: {e}; message {n} may or may not have been written (with --id, \
                     sending it again is safe)"
                )
                .into());
            }
        };
        let seq = || {
            serde_json::from_slice::<serde_json::Value>(&answer.body)
                .ok()
                .and_then(|v| v.get("seq").and_then(serde_json::Value::as_u64))
        };
        match answer.status {
            200 | 201 => {
                return seq().ok_or_else(|| format!("{url}: the answer names no seq").into());
            }
            503 if started.elapsed() < options.retry_for => {
                let pause = answer.retry_after.unwrap_or(Duration::from_secs(1));
                tokio::time::sleep(pause.min(Duration::from_secs(2))).await;
            }
            status => {
                let why = error_text(&answer.body);
                let at = seq().map(|seq| format!(" (seq {seq})")).unwrap_or_default();
                return Err(format!("{url} answered {status} to message {n}{at}: {why}").into());
            }
        }
    }
}

/// Writes every message, in order, printing each `seq` on `out` as it is acknowledged; stops
/// at the first that is not.
pub(crate) async fn append(
    connection: &mut Connection,
    messages: Vec<String>,
    options: &AppendOptions,
    out: &mut dyn Write,
) -> Outcome<()> {
    let many = messages.len() > 1;
    for (i, msg) in messages.iter().enumerate() {
        let seq = append_one(connection, msg, i + 1, many, options).await?;
        super::print(out, &format!("{seq}\n"))?;
    }
    Ok(())
}
