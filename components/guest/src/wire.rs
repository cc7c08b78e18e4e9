//! What a master and its secondaries say to each other on `/replicate`. Both roles use these
//! definitions, so the two sides cannot drift apart.
//!
//! - `POST /replicate` with an [`Append`]: entries to store after `prev`, which the secondary
//!   must hold for them to apply (Raft's log matching); without `prev` and entries, a probe
//!   that asks the secondary where its log stands. The answer is an [`Ack`] (`200`), or a
//!   [`Fencing`] refusal (`409`) when the secondary has seen a newer master's epoch.
//! - `POST /replicate` with `{"seq": 7, "msg": "..."}`: the original project's single entry,
//!   stored if it continues the log, acknowledged as a duplicate if held already.
//! - `GET /replicate?from=SEQ&limit=N`: entries with their epochs ([`RecoveryBatch`]), for a master
//!   that recovers its log from a replica.
//!
//! Every request carries the master's proof (see [`crate::auth`]).

use serde::{Deserialize, Serialize};

use crate::host::log;
pub use crate::host::log::{Position, Run};

/// A batch of entries stops growing once its JSON passes this many bytes (it always holds at
/// least one entry).
pub const BATCH_BYTES: usize = 1 << 20;

/// A secondary takes batches of at least this many bytes, whatever the clients' limit: what
/// it always took, room for the envelope of any batch of small messages.
const LEAST_BATCH_LIMIT: u64 = 16 << 20;

/// The largest `/replicate` body a master sends when its clients' messages are at most
/// `max_message` bytes: a batch stops once its JSON passes `BATCH_BYTES`, and its last
/// entry's JSON can be six times its message (a control character is escaped as `\u00XX`).
/// What a secondary states as its largest request.
pub fn largest_batch(max_message: u64) -> u64 {
    let batch = max_message.saturating_mul(6).saturating_add(2 * BATCH_BYTES as u64);
    batch.max(LEAST_BATCH_LIMIT)
}

/// An entry as it travels between nodes: its identity, its client's idempotency key if it had
/// one (so that a retry is recognised on whichever node holds the entry), and the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEntry {
    /// Its place in the log, from 1.
    pub seq: u64,
    /// The epoch of the master that numbered it: with `seq`, what log matching compares.
    pub epoch: u64,
    /// Its client's idempotency key, if the write had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The client's message.
    pub msg: String,
}

impl From<log::Entry> for WireEntry {
    fn from(log::Entry { seq, epoch, key, msg }: log::Entry) -> Self {
        Self { seq, epoch, key, msg }
    }
}

impl From<WireEntry> for log::Entry {
    fn from(WireEntry { seq, epoch, key, msg }: WireEntry) -> Self {
        Self { seq, epoch, key, msg }
    }
}

/// The body of `POST /replicate` from the master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Append {
    /// The sender's epoch: a secondary that has seen a higher one refuses it, and records a
    /// higher one before anything else.
    pub epoch: u64,
    /// The entry just before `entries`, which the secondary must hold for them to apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<Position>,
    /// The entries to store, in order from `prev.seq + 1`; none for a heartbeat.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<WireEntry>,
    /// The master's log length when it sent this. A secondary holding entries past the
    /// request's last one that are older than its epoch drops them when this is that last one:
    /// the master does not have them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<u64>,
    /// The master's commit point when it sent this: the secondary takes it as far as its log
    /// now agrees with the master's (through the last entry sent, or `prev`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<u64>,
    /// `prev` is the entry before the master's start (retention removed what came before): a
    /// secondary that does not hold it drops its log and begins after it, rather than ask for
    /// entries the master no longer has.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub begin: bool,
}

/// What a `POST /replicate` body asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replicate {
    /// Where does your log stand? (An [`Append`] without `prev` and entries.)
    Probe {
        /// The sender's epoch.
        epoch: u64,
    },
    /// Store these after `prev`.
    Append(Append),
    /// The original project's form: one entry at `seq`, of epoch `epoch` if given.
    Single {
        /// Where it goes.
        seq: u64,
        /// The sender's epoch, if it gave one.
        epoch: Option<u64>,
        /// The message.
        msg: String,
    },
}

/// Whether a secondary applied an [`Append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckStatus {
    /// It holds `prev` and every entry sent, as sent.
    Ok,
    /// It does not hold `prev`: `runs` and `last` say where its log stands.
    Mismatch,
}

/// A secondary's answer to `POST /replicate` (`200`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Whether it applied the request.
    pub status: AckStatus,
    /// Its epoch after this request.
    pub epoch: u64,
    /// Its last entry after this request.
    pub last: Position,
    /// The length of its log (the original project's field).
    pub count: u64,
    /// After an append: the entry through which its log now agrees with the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched: Option<Position>,
    /// After a probe or a mismatch: its runs, to find where the two logs agree.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<Run>,
    /// Entries stored for the first time.
    #[serde(default)]
    pub added: u32,
    /// Entries it held already (replays), acknowledged and not stored twice.
    #[serde(default)]
    pub duplicates: u32,
    /// Entries dropped from its end: a suffix its master does not have.
    #[serde(default)]
    pub truncated: u64,
    /// For a single entry: whether it was held already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<bool>,
    /// Its `DELAY_MS`, so that the master can tell when it cannot answer in time.
    #[serde(default)]
    pub delay_ms: u64,
    /// Its commit point: a master that takes over learns from it how far the log was
    /// committed before (within what it holds in common with this secondary).
    #[serde(default)]
    pub committed: u64,
}

/// A secondary's refusal of an older master (`409`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fencing {
    /// Why, in words, for whoever reads the answer.
    pub error: String,
    /// Always true: what tells a fencing from another `409`.
    pub fenced: bool,
    /// The epoch the secondary has recorded.
    pub epoch: u64,
}

/// The answer to `GET /replicate?from=SEQ&limit=N`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryBatch {
    /// The entries asked for, as many as fit in about a megabyte.
    pub entries: Vec<WireEntry>,
    /// The secondary's recorded epoch.
    pub epoch: u64,
    /// Its last entry: how much more there is to fetch.
    pub last: Position,
    /// When `from` was below the replica's start (retention removed it): the entry before its
    /// start, which the entries continue. The master begins its log after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub begin: Option<Position>,
}

const EXPECTED: &str = r#"expected {"epoch": E, "prev": {"seq": S, "epoch": E}, "entries": [{"seq": S, "epoch": E, "msg": "text"}], "end": N} or {"seq": S, "msg": "text"}"#;

/// Every field either form may hold, read in one pass.
#[derive(Deserialize)]
struct ReplicateFields {
    epoch: Option<u64>,
    prev: Option<Position>,
    entries: Option<Vec<WireEntry>>,
    end: Option<u64>,
    commit: Option<u64>,
    #[serde(default)]
    begin: bool,
    seq: Option<u64>,
    msg: Option<String>,
}

/// Reads a `POST /replicate` body; errors are the text of the `400`.
pub fn parse(body: &[u8]) -> Result<Replicate, String> {
    let body: ReplicateFields = serde_json::from_slice(body)
        .map_err(|e| format!("body is not a valid replication request ({e}): {EXPECTED}"))?;
    if let (Some(msg), None) = (&body.msg, &body.entries) {
        let Some(seq) = body.seq else {
            return Err(format!(
                "an entry without \"seq\" is refused: only the master numbers messages (write to \
                 its POST /messages). {EXPECTED}"
            ));
        };
        if seq == 0 {
            return Err("\"seq\" counts from 1".to_owned());
        }
        return Ok(Replicate::Single { seq, epoch: body.epoch, msg: msg.clone() });
    }
    let Some(epoch) = body.epoch else {
        return Err(format!("nothing to replicate: {EXPECTED}"));
    };
    let entries = body.entries.unwrap_or_default();
    let Some(prev) = body.prev else {
        if entries.is_empty() {
            return Ok(Replicate::Probe { epoch });
        }
        return Err(format!("entries need \"prev\", the entry they follow: {EXPECTED}"));
    };
    for (expected, entry) in (prev.seq + 1..).zip(&entries) {
        if entry.seq != expected {
            return Err(format!(
                "entries must follow prev without gaps: entry {} where {expected} was due",
                entry.seq
            ));
        }
    }
    Ok(Replicate::Append(Append {
        epoch,
        prev: Some(prev),
        entries,
        end: body.end,
        commit: body.commit,
        begin: body.begin,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, epoch: u64, msg: &str) -> WireEntry {
        WireEntry { seq, epoch, key: None, msg: msg.to_owned() }
    }

    #[test]
    fn the_fullest_batch_fits_the_largest_request_a_secondary_states() {
        // Messages that fill a batch just short of its bound, then the worst last message: a
        // client's largest, all control characters (six bytes of JSON each), with the longest
        // key a client may give.
        for max_message in [1 << 10, 1 << 20, 3 << 20] {
            let filler = "m".repeat(1000);
            let mut entries = Vec::new();
            let mut bytes = 0;
            while bytes + 1100 < BATCH_BYTES {
                let entry =
                    WireEntry { key: Some("k".repeat(128)), ..entry(u64::MAX, u64::MAX, &filler) };
                bytes += serde_json::to_vec(&entry).unwrap().len() + 1;
                entries.push(entry);
            }
            let worst = "\u{1}".repeat(max_message as usize);
            entries.push(WireEntry {
                key: Some("k".repeat(128)),
                ..entry(u64::MAX, u64::MAX, &worst)
            });
            let append = Append {
                epoch: u64::MAX,
                prev: Some(Position { seq: u64::MAX, epoch: u64::MAX }),
                entries,
                end: Some(u64::MAX),
                commit: Some(u64::MAX),
                begin: true,
            };
            let body = serde_json::to_vec(&append).unwrap().len() as u64;
            assert!(body <= largest_batch(max_message), "{body} > {}", largest_batch(max_message));
        }
        assert_eq!(largest_batch(0), LEAST_BATCH_LIMIT, "never below what a secondary took");
        assert_eq!(largest_batch(u64::MAX), u64::MAX);
    }

    #[test]
    fn an_append_goes_through_json_and_back_unchanged() {
        let append = Append {
            epoch: 3,
            prev: Some(Position { seq: 4, epoch: 2 }),
            entries: vec![
                entry(5, 3, "five \"quoted\""),
                WireEntry { key: Some("client-key-6".into()), ..entry(6, 3, "") },
            ],
            end: Some(6),
            commit: Some(5),
            begin: true,
        };
        let json = serde_json::to_vec(&append).unwrap();
        assert_eq!(String::from_utf8_lossy(&json).matches("\"key\"").count(), 1, "none left out");
        assert_eq!(parse(&json), Ok(Replicate::Append(append)));
    }

    #[test]
    fn a_probe_is_an_epoch_alone() {
        assert_eq!(parse(br#"{"epoch": 2}"#), Ok(Replicate::Probe { epoch: 2 }));
        let probe =
            Append { epoch: 7, prev: None, entries: vec![], end: None, commit: None, begin: false };
        assert_eq!(serde_json::to_string(&probe).unwrap(), r#"{"epoch":7}"#);
    }

    #[test]
    fn the_original_single_form_is_still_read() {
        assert_eq!(
            parse(br#"{"seq": 3, "msg": "x"}"#),
            Ok(Replicate::Single { seq: 3, epoch: None, msg: "x".into() })
        );
        assert_eq!(
            parse(br#"{"seq": 3, "msg": "x", "epoch": 2}"#),
            Ok(Replicate::Single { seq: 3, epoch: Some(2), msg: "x".into() })
        );
    }

    #[test]
    fn what_could_break_a_log_is_refused_with_a_reason() {
        for (body, says) in [
            (&br#"{"msg": "X"}"#[..], "only the master numbers"),
            (br#"{"entries": [{"seq": 1, "epoch": 1, "msg": "a"}], "epoch": 1}"#, "need \"prev\""),
            (
                br#"{"epoch": 1, "prev": {"seq": 0, "epoch": 0}, "entries": [{"seq": 2, "epoch": 1, "msg": "a"}]}"#,
                "without gaps",
            ),
            (br#"{"epoch": "one"}"#, "invalid type"),
            (br#"{"seq": 0, "msg": "x"}"#, "counts from 1"),
            (br#"{"seq": -1, "msg": "x"}"#, "invalid value"),
            (br#"{"seq": 1, "msg": 7}"#, "invalid type"),
            (b"[1]", "not a valid replication request"),
            (b"{", "not a valid replication request"),
            (b"{}", "nothing to replicate"),
        ] {
            let error = parse(body).unwrap_err();
            assert!(error.contains(says), "{error:?} should say {says:?}");
        }
    }

    #[test]
    fn answers_read_back_as_written() {
        let ack = Ack {
            status: AckStatus::Mismatch,
            epoch: 4,
            last: Position { seq: 9, epoch: 3 },
            count: 9,
            matched: None,
            runs: vec![Run { epoch: 1, first: 1 }, Run { epoch: 3, first: 5 }],
            added: 0,
            duplicates: 0,
            truncated: 0,
            duplicate: None,
            delay_ms: 1500,
            committed: 7,
        };
        let json = serde_json::to_string(&ack).unwrap();
        assert!(json.contains(r#""status":"mismatch""#), "{json}");
        assert_eq!(serde_json::from_str::<Ack>(&json).unwrap(), ack);
    }
}
