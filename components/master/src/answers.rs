//! What a secondary's answer on `/replicate` means to the master, from its status and body.
//! Pure, so that every kind of answer is tested on the native target: `replicator` and
//! `recovery` send the requests and act on what this reads.

use replog_guest::wire::{Ack, Fencing};
use serde::de::DeserializeOwned;

/// Why an answer to a replication step is no acknowledgement to work with.
#[derive(Debug, PartialEq, Eq)]
pub enum NoAck {
    /// The secondary follows a master of this newer epoch: this master is fenced.
    Fenced(u64),
    /// Anything else, in words for the secondary's `last_error`.
    Failed(String),
}

/// A replication step's answer (`status`, `body`): the secondary's [`Ack`] on `200`, a fencing
/// on a `409` that says so, a failure otherwise; a `401` says what is likely wrong.
pub fn step_answer(status: u16, body: &[u8]) -> Result<Ack, NoAck> {
    let text = || String::from_utf8_lossy(body).trim().to_owned();
    match status {
        200 => serde_json::from_slice::<Ack>(body).map_err(|e| {
            NoAck::Failed(format!("answered 200 with an unreadable body ({e}): {}", text()))
        }),
        409 => match serde_json::from_slice::<Fencing>(body) {
            Ok(fencing) if fencing.fenced => Err(NoAck::Fenced(fencing.epoch)),
            _ => Err(NoAck::Failed(format!("answered 409: {}", text()))),
        },
        401 => Err(NoAck::Failed(format!(
            "refused this master's proof (is the cluster secret the same on every node?): {}",
            text()
        ))),
        status => Err(NoAck::Failed(format!("answered {status}: {}", text()))),
    }
}

/// A recovery round's answer (`status`, `body`) read as a `T` on `200`, or why not, in words
/// for the reason recovery waits (a secondary that follows a newer master says so in its
/// probe's `epoch`, which recovery opens above).
pub fn recovery_answer<T: DeserializeOwned>(status: u16, body: &[u8]) -> Result<T, String> {
    match status {
        200 => serde_json::from_slice::<T>(body).map_err(|e| format!("unreadable answer ({e})")),
        _ => Err(format!("answered {status}: {}", String::from_utf8_lossy(body).trim())),
    }
}

#[cfg(test)]
mod tests {
    use replog_guest::wire::{AckStatus, Position};

    use super::*;

    fn ack() -> Ack {
        Ack {
            status: AckStatus::Ok,
            epoch: 3,
            last: Position { seq: 4, epoch: 3 },
            count: 4,
            matched: Some(Position { seq: 4, epoch: 3 }),
            runs: vec![],
            added: 1,
            duplicates: 0,
            truncated: 0,
            duplicate: None,
            delay_ms: 0,
            committed: 0,
        }
    }

    fn fencing(fenced: bool) -> Vec<u8> {
        let fencing = Fencing { error: "fenced".into(), fenced, epoch: 5 };
        serde_json::to_vec(&fencing).unwrap()
    }

    fn failure(answer: Result<Ack, NoAck>) -> String {
        match answer {
            Err(NoAck::Failed(why)) => why,
            other => panic!("not a failure: {other:?}"),
        }
    }

    #[test]
    fn a_step_works_with_an_ack_is_fenced_by_a_fencing_and_fails_on_anything_else() {
        assert_eq!(step_answer(200, &serde_json::to_vec(&ack()).unwrap()), Ok(ack()));
        assert_eq!(step_answer(409, &fencing(true)), Err(NoAck::Fenced(5)));
        assert!(failure(step_answer(409, &fencing(false))).starts_with("answered 409: {"));
        assert!(failure(step_answer(200, b" {} ")).contains("unreadable body"));
        let proof = failure(step_answer(401, b"no proof\n"));
        assert!(proof.contains("cluster secret") && proof.ends_with(": no proof"), "{proof}");
        assert_eq!(failure(step_answer(503, b" busy ")), "answered 503: busy");
    }

    #[test]
    fn a_recovery_round_reads_what_it_asked_for_or_says_why_not() {
        let body = serde_json::to_vec(&ack()).unwrap();
        assert_eq!(recovery_answer::<Ack>(200, &body), Ok(ack()));
        let unreadable = recovery_answer::<Ack>(200, b"[]").unwrap_err();
        assert!(unreadable.starts_with("unreadable answer ("), "{unreadable}");
        let fenced = recovery_answer::<Ack>(409, &fencing(true)).unwrap_err();
        assert!(fenced.starts_with("answered 409: {"), "{fenced}");
    }
}
