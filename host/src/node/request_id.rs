//! Request ids: every client request has one, taken from its `X-Request-Id` or made here,
//! returned in the answer, named in the logs of each node it reaches (see `outbound::Trace`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use crate::outbound::REQUEST_ID;

/// The longest id taken from a client; a longer or unprintable one is replaced by a new id.
/// (Room for the list a replication request names.)
const MAX_LEN: usize = 4096;

/// Made ids start with this process's random prefix, so that ids from several processes (or
/// one process's runs) do not collide in one place of logs.
static PREFIX: LazyLock<String> = LazyLock::new(|| {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
});
static NEXT: AtomicU64 = AtomicU64::new(1);

/// The id of the request with `headers`: its own if it gave a usable one, else a new one,
/// which is written into `headers` so that the component sees the same.
pub(crate) fn take_or_make(headers: &mut http::HeaderMap) -> Arc<str> {
    if let Some(id) = headers.get(&REQUEST_ID).and_then(|v| v.to_str().ok()).filter(|id| usable(id))
    {
        return id.into();
    }
    let id = format!("{}-{:x}", *PREFIX, NEXT.fetch_add(1, Ordering::Relaxed));
    headers.insert(REQUEST_ID, http::HeaderValue::try_from(&id).expect("hex and a dash"));
    id.into()
}

fn usable(id: &str) -> bool {
    (1..=MAX_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_usable_id_is_kept_and_others_are_replaced_by_unique_ones() {
        let mut given = http::HeaderMap::new();
        given.insert(REQUEST_ID, "client-42".parse().unwrap());
        assert_eq!(&*take_or_make(&mut given), "client-42");
        let mut none = http::HeaderMap::new();
        let (a, b) = (take_or_make(&mut none), take_or_make(&mut http::HeaderMap::new()));
        assert_ne!(a, b);
        assert_eq!(none.get(&REQUEST_ID).unwrap(), &*a, "the component sees the same id");
        let mut spaced = http::HeaderMap::new();
        spaced.insert(REQUEST_ID, "has space".parse().unwrap());
        assert_ne!(&*take_or_make(&mut spaced), "has space");
        let mut long = http::HeaderMap::new();
        long.insert(REQUEST_ID, "x".repeat(MAX_LEN + 1).parse().unwrap());
        assert_eq!(take_or_make(&mut long).len(), a.len(), "a new id, not the long one");
    }
}
