//! The idempotency keys a log remembers: the last `capacity` keys its entries carry, each with
//! the `seq` it got and a fingerprint of its message, so that a client's retry of a write is
//! answered with the original `seq` instead of being appended again.
//!
//! Bounded by count: past `capacity` keys the oldest is forgotten, and a retry that old is
//! taken as a new write. Fingerprints use a hash keyed at random per process, so that no one
//! can craft a different message that passes for another's.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;

/// How many keys a log remembers unless told otherwise.
pub const DEFAULT_KEY_WINDOW: usize = 100_000;

/// What a key says about a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Not among the keys remembered.
    New,
    /// Written already, with this message, at this `seq`.
    Same(u64),
    /// Written already at this `seq`, with another message.
    Other(u64),
}

#[derive(Debug)]
pub(crate) struct Keys {
    written: HashMap<Box<str>, (u64, u64)>,
    /// Keys in the order they were written, with their `seq`, for forgetting the oldest.
    order: VecDeque<(Box<str>, u64)>,
    capacity: usize,
    fingerprints: RandomState,
}

impl Keys {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            written: HashMap::new(),
            order: VecDeque::new(),
            capacity,
            fingerprints: RandomState::new(),
        }
    }

    pub(crate) fn check(&self, key: &str, msg: &str) -> Seen {
        match self.written.get(key) {
            None => Seen::New,
            Some(&(seq, fingerprint)) if fingerprint == self.fingerprints.hash_one(msg) => {
                Seen::Same(seq)
            }
            Some(&(seq, _)) => Seen::Other(seq),
        }
    }

    /// Remembers `key` for the entry at `seq`, forgetting the oldest key past the capacity.
    pub(crate) fn insert(&mut self, key: &str, seq: u64, msg: &str) {
        if self.capacity == 0 {
            return;
        }
        let fingerprint = self.fingerprints.hash_one(msg);
        self.written.insert(key.into(), (seq, fingerprint));
        self.order.push_back((key.into(), seq));
        while self.order.len() > self.capacity {
            let Some((oldest, seq)) = self.order.pop_front() else { break };
            if self.written.get(&oldest).is_some_and(|(at, _)| *at == seq) {
                self.written.remove(&oldest);
            }
        }
    }

    /// Forgets the keys of entries after `seq` (they were dropped from the log).
    pub(crate) fn forget_after(&mut self, seq: u64) {
        while self.order.back().is_some_and(|(_, at)| *at > seq) {
            if let Some((key, at)) = self.order.pop_back()
                && self.written.get(&key).is_some_and(|(written, _)| *written == at)
            {
                self.written.remove(&key);
            }
        }
    }

    /// Forgets the keys of entries through `seq` (retention removed them): a retry of one of
    /// those writes is a new write.
    pub(crate) fn forget_through(&mut self, seq: u64) {
        while self.order.front().is_some_and(|(_, at)| *at <= seq) {
            if let Some((key, at)) = self.order.pop_front()
                && self.written.get(&key).is_some_and(|(written, _)| *written == at)
            {
                self.written.remove(&key);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.written.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_answers_its_seq_for_the_same_message_only() {
        let mut keys = Keys::new(10);
        assert_eq!(keys.check("k1", "hello"), Seen::New);
        keys.insert("k1", 7, "hello");
        assert_eq!(keys.check("k1", "hello"), Seen::Same(7));
        assert_eq!(keys.check("k1", "hello!"), Seen::Other(7));
        assert_eq!(keys.check("k2", "hello"), Seen::New);
    }

    #[test]
    fn the_oldest_keys_are_forgotten_past_the_window_and_dropped_entries_take_theirs() {
        let mut keys = Keys::new(3);
        for (i, key) in ["a", "b", "c", "d"].into_iter().enumerate() {
            keys.insert(key, i as u64 + 1, "m");
        }
        assert_eq!(keys.len(), 3);
        assert_eq!(keys.check("a", "m"), Seen::New, "past the window");
        assert_eq!(keys.check("d", "m"), Seen::Same(4));
        keys.forget_after(2);
        assert_eq!((keys.check("c", "m"), keys.check("d", "m")), (Seen::New, Seen::New));
        assert_eq!(keys.check("b", "m"), Seen::Same(2));
        keys.insert("e", 3, "m");
        keys.forget_through(2);
        assert_eq!((keys.check("b", "m"), keys.check("e", "m")), (Seen::New, Seen::Same(3)));
        assert_eq!(Keys::new(0).check("x", "m"), Seen::New);
    }
}
