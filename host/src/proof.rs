//! Proof that a node-to-node request comes from a member of the cluster, as it travels:
//!
//! ```text
//! Authorization: Replog-HMAC-SHA256 t=<unix time in ms>,sig=<hex>
//! ```
//!
//! where `sig` is the HMAC-SHA256, under the cluster secret, of
//! `replog-v1\n<METHOD>\n<path with query>\n<t>\n` followed by the body. A request whose
//! signature does not check, or whose time is more than [`WINDOW`] from the receiver's clock,
//! is refused, so a captured request can be neither altered nor replayed later; within the
//! window a replay does nothing new, as replication requests are idempotent.
//!
//! The host owns this, as it owns the key: it signs what components send
//! (`replog:node/auth.authorization`) and checks every request to a route a component declares
//! proven. Checking is in two steps so that what cannot be proven costs nothing: [`screen`]
//! judges the header alone, before the body is read, and [`Claim::check`] the signature once
//! the body is in.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::secret::ClusterSecret;

/// The `Authorization` scheme, also named in a `401`'s `WWW-Authenticate`.
pub const SCHEME: &str = "Replog-HMAC-SHA256";

/// How far a request's time may be from the receiver's clock, either way. Generous enough for
/// clocks kept by NTP; a captured request is worthless after it.
pub const WINDOW: Duration = Duration::from_secs(30);

/// Hex digits of an HMAC-SHA256.
const SIGNATURE_HEX: usize = 64;

/// Why a request was not taken as a member's: the text of the `401`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The request has no `Authorization` header.
    #[error(
        "node-to-node request without proof: this route takes requests from the cluster's \
         members only (an Authorization: {SCHEME} header signed with the cluster secret)"
    )]
    Missing,
    /// The header is not of this scheme, or not in its form.
    #[error("malformed Authorization header: expected {SCHEME} t=<ms>,sig=<64 hex digits>")]
    Malformed,
    /// The request's time is more than [`WINDOW`] from the receiver's clock.
    #[error(
        "the request was signed {skew_ms} ms away from this node's clock, outside the {} ms \
         window: a replay, or clocks too far apart",
        WINDOW.as_millis()
    )]
    OutOfWindow {
        /// How far apart the two were, either way.
        skew_ms: u64,
    },
    /// The signature is not the cluster secret's over this request and its body.
    #[error(
        "the signature does not check: the request was altered, or the sender has another \
         cluster secret"
    )]
    BadSignature,
}

/// What a well-formed, timely header claims: when the request was signed, and the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim<'a> {
    t: u64,
    signature: &'a str,
}

/// Judges `header` at `now_ms` without the body: missing, malformed, of another scheme or out
/// of the window is refused here, so that such a request's body is never read.
pub fn screen(header: Option<&[u8]>, now_ms: u64) -> Result<Claim<'_>, Refusal> {
    let header = header.ok_or(Refusal::Missing)?;
    let header = std::str::from_utf8(header).map_err(|_| Refusal::Malformed)?;
    let claim = parse(header).ok_or(Refusal::Malformed)?;
    let skew_ms = now_ms.abs_diff(claim.t);
    if u128::from(skew_ms) > WINDOW.as_millis() {
        return Err(Refusal::OutOfWindow { skew_ms });
    }
    Ok(claim)
}

impl Claim<'_> {
    /// Whether the signature is `secret`'s over `method path_with_query` and `body`, compared
    /// in constant time.
    pub fn check(
        &self,
        secret: &ClusterSecret,
        method: &str,
        path_with_query: &str,
        body: &[u8],
    ) -> Result<(), Refusal> {
        let head = signed_head(method, path_with_query, self.t);
        match secret.verify(&head, body, self.signature) {
            true => Ok(()),
            false => Err(Refusal::BadSignature),
        }
    }
}

/// The `Authorization` value proving `method path_with_query` with `body`, signed at `t`.
pub fn authorization(
    secret: &ClusterSecret,
    method: &str,
    path_with_query: &str,
    body: &[u8],
    t: u64,
) -> String {
    let signature = secret.sign(&signed_head(method, path_with_query, t), body);
    format!("{SCHEME} t={t},sig={signature}")
}

/// The time now in Unix milliseconds, as proofs carry it.
pub fn now_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// What the signature covers besides the body.
fn signed_head(method: &str, path_with_query: &str, t: u64) -> Vec<u8> {
    format!("replog-v1\n{method}\n{path_with_query}\n{t}\n").into_bytes()
}

fn parse(header: &str) -> Option<Claim<'_>> {
    let rest = header.trim().strip_prefix(SCHEME)?;
    if !rest.starts_with(' ') {
        return None;
    }
    let (mut t, mut signature) = (None, None);
    for part in rest.trim_start().split(',') {
        match part.trim().split_once('=')? {
            ("t", value) if t.is_none() && value.bytes().all(|b| b.is_ascii_digit()) => {
                t = Some(value.parse().ok()?);
            }
            ("sig", value)
                if signature.is_none()
                    && value.len() == SIGNATURE_HEX
                    && value.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                signature = Some(value);
            }
            _ => return None,
        }
    }
    Some(Claim { t: t?, signature: signature? })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;
    const BODY: &[u8] = b"{\"entries\":[]}";

    fn secret() -> ClusterSecret {
        ClusterSecret::new("correct horse battery staple").unwrap()
    }

    fn judge(header: &str, now: u64, body: &[u8]) -> Result<(), Refusal> {
        screen(Some(header.as_bytes()), now)?.check(&secret(), "POST", "/replicate", body)
    }

    #[test]
    fn a_fresh_request_with_the_right_signature_passes() {
        let header = authorization(&secret(), "POST", "/replicate", BODY, NOW);
        assert!(header.starts_with("Replog-HMAC-SHA256 t=1800000000000,sig="), "{header}");
        // Python: hmac.new(b"correct horse battery staple",
        //   b"replog-v1\nPOST\n/replicate\n1800000000000\n" + b'{"entries":[]}', "sha256")
        assert_eq!(
            header,
            "Replog-HMAC-SHA256 t=1800000000000,\
             sig=0e0d1df6c1303d9001be1205406037e93ecefb07376092564d8bc59a08c48b44"
        );
        assert_eq!(judge(&header, NOW, BODY), Ok(()));
        assert_eq!(judge(&header, NOW + 30_000, BODY), Ok(()), "at the edge of the window");
        assert_eq!(judge(&header, NOW - 30_000, BODY), Ok(()), "the sender's clock ahead");
    }

    #[test]
    fn what_the_header_alone_cannot_prove_is_refused_before_the_body() {
        assert_eq!(screen(None, NOW), Err(Refusal::Missing));
        let sig = "ab".repeat(32);
        for malformed in [
            "Bearer x".to_owned(),
            format!("Replog-HMAC-SHA256t={NOW},sig={sig}"),
            format!("Replog-HMAC-SHA256 t=x,sig={sig}"),
            format!("Replog-HMAC-SHA256 t=-1,sig={sig}"),
            format!("Replog-HMAC-SHA256 sig={sig}"),
            format!("Replog-HMAC-SHA256 t={NOW}"),
            format!("Replog-HMAC-SHA256 t={NOW},sig=ab12"),
            format!("Replog-HMAC-SHA256 t={NOW},sig={}", "zz".repeat(32)),
            format!("Replog-HMAC-SHA256 t={NOW},sig={sig},extra=1"),
            format!("Replog-HMAC-SHA256 t={NOW},t={NOW},sig={sig}"),
            format!("Replog-HMAC-SHA256 t=99999999999999999999999,sig={sig}"),
        ] {
            assert_eq!(
                screen(Some(malformed.as_bytes()), NOW),
                Err(Refusal::Malformed),
                "{malformed}"
            );
        }
        assert_eq!(screen(Some(b"\xff\xfe"), NOW), Err(Refusal::Malformed));
        let stale = format!("Replog-HMAC-SHA256 t={NOW},sig={sig}");
        assert_eq!(
            screen(Some(stale.as_bytes()), NOW + 30_001),
            Err(Refusal::OutOfWindow { skew_ms: 30_001 })
        );
        assert!(screen(Some(stale.as_bytes()), NOW).is_ok(), "well-formed and timely");
    }

    #[test]
    fn an_altered_or_foreign_signature_is_refused_once_the_body_is_in() {
        let header = authorization(&secret(), "POST", "/replicate", BODY, NOW);
        assert_eq!(judge(&header, NOW, b"{\"entries\":[1]}"), Err(Refusal::BadSignature));
        let claim = screen(Some(header.as_bytes()), NOW).unwrap();
        assert_eq!(claim.check(&secret(), "GET", "/replicate", BODY), Err(Refusal::BadSignature));
        assert_eq!(
            claim.check(&secret(), "POST", "/replicate?x=1", BODY),
            Err(Refusal::BadSignature)
        );
        let other = ClusterSecret::new("correct horse battery stapler").unwrap();
        assert_eq!(claim.check(&other, "POST", "/replicate", BODY), Err(Refusal::BadSignature));
        let later = authorization(&secret(), "POST", "/replicate", BODY, NOW + 1);
        let moved = later.replace(&format!("t={}", NOW + 1), &format!("t={NOW}"));
        assert_eq!(judge(&moved, NOW, BODY), Err(Refusal::BadSignature), "t is signed");
        assert!(Refusal::BadSignature.to_string().contains("cluster secret"));
    }
}
