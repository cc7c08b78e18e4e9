//! What the master and the secondaries say to each other on `POST /replicate`.
//!
//! The master sends batches, `{"entries": [{"seq": 7, "msg": "..."}, ...]}`; a secondary also
//! takes the original project's single forms, `{"msg": "..."}` and `{"msg": "...", "seq": 7}`.
//! It answers with its gap-free prefix length (`count`), which is what the master counts as an
//! acknowledgement: a message is held by a secondary once `count >= seq`.

use serde::{Deserialize, Serialize};

/// A secondary's answer to `POST /replicate`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReplicateAck {
    pub status: String,
    /// Length of the secondary's gap-free prefix after this request.
    pub count: u64,
    /// Entries stored for the first time.
    #[serde(default)]
    pub added: u32,
    /// Entries it already had (replays), acknowledged without being stored again.
    #[serde(default)]
    pub duplicates: u32,
}
