//! How a master proves it is the master, and how a secondary checks it.
//!
//! Every node-to-node request carries
//!
//! ```text
//! Authorization: Replog-HMAC-SHA256 t=<unix time in ms>,sig=<hex>
//! ```
//!
//! where `sig` is the HMAC-SHA256, under the cluster secret, of
//! `replog-v1\n<METHOD>\n<path with query>\n<t>\n` followed by the body. A secondary refuses
//! a request whose signature does not check, or whose time is more than
//! [`WINDOW_MS`] from its own clock, so a captured request cannot be replayed later, nor
//! altered. Within the window a replay does nothing new: replication requests are idempotent.
//! The key stays in the host (`replog:node/auth`); this module only builds what is signed and
//! judges the answer.

use crate::host::auth as host;

pub const SCHEME: &str = "Replog-HMAC-SHA256";

/// How far a request's time may be from the receiver's clock, either way. Generous enough for
/// clocks kept by NTP; a captured request is worthless after it.
pub const WINDOW_MS: u64 = 30_000;

/// What the signature covers besides the body.
pub fn signed_head(method: &str, path_with_query: &str, t: u64) -> Vec<u8> {
    format!("replog-v1\n{method}\n{path_with_query}\n{t}\n").into_bytes()
}

/// The `Authorization` value for a request signed at `t` with `signature`.
pub fn authorization(t: u64, signature: &str) -> String {
    format!("{SCHEME} t={t},sig={signature}")
}

/// Why a request was not taken as the master's: the text of the `401`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Malformed,
    OutOfWindow { skew_ms: u64 },
    BadSignature,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Missing => write!(
                f,
                "node-to-node request without proof: this route takes requests from the cluster's \
                 master only (an Authorization: {SCHEME} header signed with the cluster secret)"
            ),
            Refusal::Malformed => {
                write!(f, "malformed Authorization header: expected {SCHEME} t=<ms>,sig=<hex>")
            }
            Refusal::OutOfWindow { skew_ms } => write!(
                f,
                "the request was signed {skew_ms} ms away from this node's clock, outside the \
                 {WINDOW_MS} ms window: a replay, or clocks too far apart"
            ),
            Refusal::BadSignature => write!(
                f,
                "the signature does not check: the request was altered, or the sender has another \
                 cluster secret"
            ),
        }
    }
}

/// Judges a request's `Authorization` header at `now_ms`, with `verify` checking a signature
/// over the head it is given (the body is the verifier's to add).
pub fn check(
    header: Option<&str>,
    method: &str,
    path_with_query: &str,
    now_ms: u64,
    verify: impl FnOnce(&[u8], &str) -> bool,
) -> Result<(), Refusal> {
    let header = header.ok_or(Refusal::Missing)?;
    let (t, signature) = parse(header).ok_or(Refusal::Malformed)?;
    let skew_ms = now_ms.abs_diff(t);
    if skew_ms > WINDOW_MS {
        return Err(Refusal::OutOfWindow { skew_ms });
    }
    if !verify(&signed_head(method, path_with_query, t), signature) {
        return Err(Refusal::BadSignature);
    }
    Ok(())
}

fn parse(header: &str) -> Option<(u64, &str)> {
    let rest = header.trim().strip_prefix(SCHEME)?.trim_start();
    let mut t = None;
    let mut signature = None;
    for part in rest.split(',') {
        match part.trim().split_once('=')? {
            ("t", value) => t = Some(value.parse().ok()?),
            ("sig", value) => signature = Some(value),
            _ => return None,
        }
    }
    Some((t?, signature?))
}

/// Whether this node runs with a cluster secret (without one it was started `--insecure`).
pub fn enabled() -> bool {
    host::enabled()
}

/// The `Authorization` value for `method path_with_query` with `body`, signed now; none when
/// the node runs without a secret.
pub fn sign(method: &str, path_with_query: &str, body: &[u8], now_ms: u64) -> Option<String> {
    let head = signed_head(method, path_with_query, now_ms);
    host::sign(&head, body).map(|signature| authorization(now_ms, &signature))
}

/// Checks a request received at `now_ms` against the cluster secret. A node without a secret
/// (started `--insecure`) takes every request.
pub fn verify(
    header: Option<&str>,
    method: &str,
    path_with_query: &str,
    body: &[u8],
    now_ms: u64,
) -> Result<(), Refusal> {
    if !host::enabled() {
        return Ok(());
    }
    check(header, method, path_with_query, now_ms, |head, signature| {
        host::verify(head, body, signature)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn judge(header: Option<&str>, now: u64) -> Result<(), Refusal> {
        check(header, "POST", "/replicate", now, |head, signature| {
            head == signed_head("POST", "/replicate", NOW).as_slice() && signature == "ab12"
        })
    }

    #[test]
    fn a_fresh_request_with_the_right_signature_passes() {
        let header = authorization(NOW, "ab12");
        assert_eq!(header, "Replog-HMAC-SHA256 t=1800000000000,sig=ab12");
        assert_eq!(judge(Some(&header), NOW), Ok(()));
        assert_eq!(judge(Some(&header), NOW + WINDOW_MS), Ok(()), "at the edge of the window");
        assert_eq!(judge(Some(&header), NOW - WINDOW_MS), Ok(()), "the sender's clock ahead");
    }

    #[test]
    fn missing_malformed_stale_and_forged_proofs_are_refused() {
        assert_eq!(judge(None, NOW), Err(Refusal::Missing));
        for malformed in [
            "Bearer x",
            "Replog-HMAC-SHA256 t=x,sig=ab12",
            "Replog-HMAC-SHA256 sig=ab12",
            "Replog-HMAC-SHA256 t=1,sig=ab12,extra=1",
        ] {
            assert_eq!(judge(Some(malformed), NOW), Err(Refusal::Malformed), "{malformed}");
        }
        let header = authorization(NOW, "ab12");
        assert_eq!(
            judge(Some(&header), NOW + WINDOW_MS + 1),
            Err(Refusal::OutOfWindow { skew_ms: WINDOW_MS + 1 })
        );
        assert_eq!(judge(Some(&authorization(NOW, "ab13")), NOW), Err(Refusal::BadSignature));
        let other_time = authorization(NOW + 1, "ab12");
        assert_eq!(judge(Some(&other_time), NOW), Err(Refusal::BadSignature), "t is signed");
        assert!(Refusal::BadSignature.to_string().contains("cluster secret"));
    }
}
