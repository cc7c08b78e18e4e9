//! A node a component sends requests to, as its settings name it (`SECONDARIES`): the one
//! parser of peer URLs. The host takes the peers a component reports (`about.check`) for its
//! allow-list and its replication streams, so it never parses them itself.

use wasip2::http::types::Scheme;

/// A peer's base URL, parsed into what requests to it are addressed with. (The host's record
/// of a secondary is the WIT `peers.peer`; this is only where to send.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerUrl {
    /// The URL exactly as configured: its name in `acks`, `/health` and the host's records.
    pub url: String,
    /// `host:port` (or `host`) as written: the requests' authority, and what `about.check`
    /// reports (the host brings it to the form it compares in; this crate never does).
    pub authority: String,
    /// Its path prefix, if the URL has one (`""` otherwise).
    prefix: String,
}

impl PeerUrl {
    /// Reads `url`, a base URL like `http://secondary1:8001`; the error says what is wrong.
    pub fn parse(url: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("secondary URL {url:?} {why}");
        let rest = match url.split_once("://") {
            Some(("http", rest)) => rest,
            Some(("https", _)) => {
                return Err(bad("uses https, which nodes do not speak; use http://"));
            }
            _ => return Err(bad("must start with http://")),
        };
        if rest.contains(['?', '#']) {
            return Err(bad("must not have a query or a fragment"));
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = match authority.strip_prefix('[') {
            Some(bracketed) => {
                let (host, after) = bracketed
                    .split_once(']')
                    .ok_or_else(|| bad("has an unclosed [ in its host"))?;
                (host, after.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        if let Some(port) = port
            && port.parse::<u16>().is_err()
        {
            return Err(bad("has a port that is not a number from 0 to 65535"));
        }
        if host.is_empty() || host.contains(['@', ' ']) {
            return Err(bad("has no host"));
        }
        let prefix = path.trim_end_matches('/');
        let prefix = if prefix.is_empty() { String::new() } else { format!("/{prefix}") };
        Ok(Self { url: url.to_owned(), authority: authority.to_owned(), prefix })
    }

    /// The scheme requests to it use: always plain HTTP, which is all nodes speak (`parse`
    /// refuses anything else), named here so that request building does not assume it.
    pub fn scheme(&self) -> Scheme {
        Scheme::Http
    }

    /// The path of its endpoint `endpoint` (e.g. `/replicate`).
    pub fn path(&self, endpoint: &str) -> String {
        format!("{}{endpoint}", self.prefix)
    }
}

/// The peers listed in `value`, comma-separated, empty items ignored.
pub fn list(value: &str) -> Result<Vec<PeerUrl>, String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(PeerUrl::parse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls_are_checked_and_their_authority_kept_as_written() {
        let peer = PeerUrl::parse("http://Secondary1:8001").unwrap();
        assert_eq!(
            (peer.url.as_str(), peer.authority.as_str()),
            ("http://Secondary1:8001", "Secondary1:8001")
        );
        assert_eq!(PeerUrl::parse("http://example.com").unwrap().authority, "example.com");
        let prefixed = PeerUrl::parse("http://gateway:80/replog/").unwrap();
        assert_eq!(prefixed.path("/replicate"), "/replog/replicate");
        for (bad, says) in [
            ("secondary1:8001", "must start with http://"),
            ("https://a:1", "https"),
            ("http://", "no host"),
            ("http://a:1/?x=1", "query"),
            ("ftp://a", "must start with http://"),
            ("http://a:99999", "port"),
        ] {
            let error = PeerUrl::parse(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error:?} should say {says:?}");
        }
        assert_eq!(list(" http://a:1, ,http://b:2 ").unwrap().len(), 2);
        assert_eq!(PeerUrl::parse("http://[::1]:8001").unwrap().authority, "[::1]:8001");
        assert_eq!(PeerUrl::parse("http://[::1]/x").unwrap().authority, "[::1]");
    }
}
