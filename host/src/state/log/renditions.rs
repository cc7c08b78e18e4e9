//! Renditions: entries as a component renders them for its readers (an event of a stream, for
//! one), kept for the entries near the log's end, so that a thousand followers of the log
//! render each new entry once between them instead of once each.
//!
//! The format stays the component's: it names a form, renders entries in it and hands the
//! bytes over (`keep`); the host only keeps them, bounded, and hands them back (`rendered`) to
//! any call of any instance while the log still holds the entries they were made from. An
//! entry is named by its `(seq, epoch)` everywhere (two entries with both equal are the same
//! entry), so a render is checked against the epoch the log holds at its `seq` whenever it is
//! handed out: one made from an entry a repair replaced is never used, and is dropped at the
//! first look. A new component version that renders differently names a new form.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::change::Run;

/// Forms kept at once (a component version or two, each with a form or two); the least
/// recently used goes when another comes.
const FORMS: usize = 4;
/// Bytes of renders kept per form: with events of about a hundred bytes, some tens of thousands
/// of entries, seconds of a busy log. A follower further behind renders for itself.
const FORM_BYTES: usize = 4 << 20;
/// Only renders of the last this many entries of the log are kept: the entries that many
/// followers read at about the same time. A follower catching up from far back would
/// otherwise push the renders the others share out.
const NEAR_END: u64 = 1 << 16;
/// A form's name is a short label chosen by the component.
const NAME_BYTES: usize = 64;
/// How long a caller that said it would render an entry (`claim`) has before another is told
/// to render it instead: a call that died or was slow holds the others up this long at most.
pub(crate) const CLAIM_FOR: Duration = Duration::from_millis(50);

/// The renders kept, per form.
#[derive(Debug, Default)]
pub(crate) struct Renditions {
    forms: Vec<Form>,
    /// Counts looks, to tell the least recently used form.
    clock: u64,
}

#[derive(Debug)]
struct Form {
    name: Box<str>,
    /// The `seq` of `held[0]`.
    first: u64,
    held: VecDeque<Held>,
    bytes: usize,
    used: u64,
    /// The entry a caller is rendering (see `claim`), and until when the others wait for it.
    claim: Option<(u64, Instant)>,
}

/// One entry's render, and the epoch of the entry it was made from.
#[derive(Debug)]
struct Held {
    epoch: u64,
    bytes: Box<[u8]>,
}

/// Renders handed out: one after another, from the `seq` asked for.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Rendition {
    pub(crate) bytes: Vec<u8>,
    pub(crate) count: u32,
    /// The epochs of the entries rendered, as runs.
    pub(crate) runs: Vec<Run>,
}

/// What a component hands over to keep: renders of consecutive entries from `start`, each
/// ending at its `ends` in `bytes`, of the epochs `runs` gives.
#[derive(Debug)]
pub(crate) struct Renders<'a> {
    pub(crate) start: u64,
    pub(crate) runs: &'a [Run],
    pub(crate) ends: &'a [u32],
    pub(crate) bytes: &'a [u8],
}

/// The log as renditions check it: its length and the epoch at each `seq`.
pub(super) trait Entries {
    fn len(&self) -> u64;
    fn epoch_at(&self, seq: u64) -> Option<u64>;
}

impl Renditions {
    /// The renders in `form` of the entries from `start` through `through` (at most), as far
    /// as they are kept without a gap and were made from the entries `log` holds, at most
    /// `max_bytes` of them (the first always comes). A render found stale is dropped with
    /// everything kept after it.
    pub(super) fn rendered(
        &mut self,
        log: &impl Entries,
        form: &str,
        start: u64,
        through: u64,
        max_bytes: usize,
    ) -> Rendition {
        self.clock += 1;
        let clock = self.clock;
        let mut out = Rendition::default();
        let Some(form) = self.forms.iter_mut().find(|f| &*f.name == form) else {
            return out;
        };
        form.used = clock;
        let through = through.min(log.len());
        let Some(mut at) = start.checked_sub(form.first).and_then(|i| usize::try_from(i).ok())
        else {
            return out;
        };
        let mut seq = start;
        while seq <= through {
            let Some(held) = form.held.get(at) else { break };
            if log.epoch_at(seq) != Some(held.epoch) {
                form.drop_from(at);
                break;
            }
            if out.count > 0 && out.bytes.len() + held.bytes.len() > max_bytes {
                break;
            }
            out.bytes.extend_from_slice(&held.bytes);
            if out.runs.last().is_none_or(|run| run.epoch != held.epoch) {
                out.runs.push(Run { epoch: held.epoch, first: seq });
            }
            out.count += 1;
            at += 1;
            seq += 1;
        }
        out
    }

    /// Keeps `renders` in `form`, those of them that were made from entries `log` holds near
    /// its end and that continue what the form keeps (or start it again further on). Anything
    /// malformed is not kept: renders are a cache, and a component that finds none renders
    /// again.
    pub(super) fn keep(&mut self, log: &impl Entries, form: &str, renders: &Renders<'_>) {
        if form.is_empty() || form.len() > NAME_BYTES {
            return;
        }
        let Some(epochs) = epochs_of(renders) else { return };
        let oldest_kept = log.len().saturating_sub(NEAR_END) + 1;
        self.clock += 1;
        let clock = self.clock;
        let form = self.form(form, clock);
        let mut begin = 0usize;
        for (i, (&end, epoch)) in renders.ends.iter().zip(epochs).enumerate() {
            let seq = renders.start + i as u64;
            let end = end as usize;
            let bytes = &renders.bytes[begin..end];
            begin = end;
            if seq < oldest_kept || log.epoch_at(seq) != Some(epoch) {
                continue;
            }
            let next = form.first + form.held.len() as u64;
            if form.held.is_empty() || seq > next {
                // Nothing kept, or a gap: what is kept is further from the log's end than this.
                form.clear(seq);
            } else if seq < next {
                // Rendered meanwhile by another reader, or older than what is kept.
                continue;
            }
            if bytes.len() > FORM_BYTES {
                form.clear(seq + 1);
                continue;
            }
            if form.claim.is_some_and(|(claimed, _)| claimed == seq) {
                form.claim = None;
            }
            form.held.push_back(Held { epoch, bytes: bytes.into() });
            form.bytes += bytes.len();
            while form.bytes > FORM_BYTES {
                form.pop_front();
            }
        }
    }

    /// Whether the caller is to render the entry at `seq` in `form`, found not kept: yes,
    /// unless another caller was told so less than `CLAIM_FOR` ago (then it waits for that
    /// render). A thousand followers that find a new entry unrendered at once render it once.
    /// A render that would not be kept (too far from the log's end) is the caller's to make.
    pub(super) fn claim(&mut self, log: &impl Entries, form: &str, seq: u64, now: Instant) -> bool {
        if form.is_empty() || form.len() > NAME_BYTES || seq + NEAR_END <= log.len() {
            return true;
        }
        self.clock += 1;
        let clock = self.clock;
        let form = self.form(form, clock);
        match form.claim {
            Some((claimed, until)) if claimed == seq && now < until => false,
            _ => {
                form.claim = Some((seq, now + CLAIM_FOR));
                true
            }
        }
    }

    /// The form named `name`, made (in the place of the least recently used one, when there
    /// are `FORMS` already) if there is none.
    fn form(&mut self, name: &str, clock: u64) -> &mut Form {
        let at = match self.forms.iter().position(|f| &*f.name == name) {
            Some(at) => at,
            None => {
                let form = Form {
                    name: name.into(),
                    first: 1,
                    held: VecDeque::new(),
                    bytes: 0,
                    used: 0,
                    claim: None,
                };
                if self.forms.len() < FORMS {
                    self.forms.push(form);
                    self.forms.len() - 1
                } else {
                    let (at, _) = self
                        .forms
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, f)| f.used)
                        .unwrap_or((0, &self.forms[0]));
                    self.forms[at] = form;
                    at
                }
            }
        };
        let form = &mut self.forms[at];
        form.used = clock;
        form
    }

    /// Bytes of renders kept, in all forms.
    pub(super) fn bytes(&self) -> usize {
        self.forms.iter().map(|f| f.bytes).sum()
    }
}

impl Form {
    fn clear(&mut self, first: u64) {
        self.held.clear();
        self.bytes = 0;
        self.first = first;
    }

    fn pop_front(&mut self) {
        if let Some(held) = self.held.pop_front() {
            self.bytes -= held.bytes.len();
            self.first += 1;
        }
    }

    fn drop_from(&mut self, at: usize) {
        for held in self.held.drain(at..) {
            self.bytes -= held.bytes.len();
        }
    }
}

/// The epoch of each render, from `runs`; none when the renders are malformed: ends that go
/// back or past the bytes, runs that do not start at `start`, go back, or name a `seq` past the
/// renders.
fn epochs_of(renders: &Renders<'_>) -> Option<Vec<u64>> {
    let count = renders.ends.len() as u64;
    let mut begin = 0u32;
    for &end in renders.ends {
        if end < begin || end as usize > renders.bytes.len() {
            return None;
        }
        begin = end;
    }
    let first = renders.runs.first()?;
    if first.first != renders.start {
        return None;
    }
    let mut epochs = Vec::with_capacity(renders.ends.len());
    for (i, run) in renders.runs.iter().enumerate() {
        let until = renders.runs.get(i + 1).map_or(renders.start + count, |next| next.first);
        if until <= run.first || until > renders.start + count {
            return None;
        }
        epochs.extend((run.first..until).map(|_| run.epoch));
    }
    (epochs.len() == renders.ends.len()).then_some(epochs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log of these epochs, `epochs[i]` at `seq` `i + 1`.
    struct Epochs(Vec<u64>);

    impl Entries for Epochs {
        fn len(&self) -> u64 {
            self.0.len() as u64
        }
        fn epoch_at(&self, seq: u64) -> Option<u64> {
            self.0.get(usize::try_from(seq.checked_sub(1)?).ok()?).copied()
        }
    }

    /// Renders of `seq`s `from..=to`, "<seq>;" each, all of epoch `epoch`.
    fn keep(renditions: &mut Renditions, log: &Epochs, from: u64, to: u64, epoch: u64) {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for seq in from..=to {
            bytes.extend_from_slice(format!("{seq};").as_bytes());
            ends.push(bytes.len() as u32);
        }
        let runs = [Run { epoch, first: from }];
        let renders = Renders { start: from, runs: &runs, ends: &ends, bytes: &bytes };
        renditions.keep(log, "f", &renders);
    }

    fn text(rendition: &Rendition) -> &str {
        std::str::from_utf8(&rendition.bytes).unwrap()
    }

    #[test]
    fn renders_kept_are_handed_out_in_order_up_to_what_is_asked() {
        let log = Epochs(vec![1; 10]);
        let mut r = Renditions::default();
        keep(&mut r, &log, 3, 6, 1);
        keep(&mut r, &log, 5, 8, 1); // overlaps: only 7 and 8 are new
        let all = r.rendered(&log, "f", 3, 10, usize::MAX);
        assert_eq!((text(&all), all.count), ("3;4;5;6;7;8;", 6));
        assert_eq!(all.runs, vec![Run { epoch: 1, first: 3 }]);
        let some = r.rendered(&log, "f", 4, 5, usize::MAX);
        assert_eq!(text(&some), "4;5;");
        let bounded = r.rendered(&log, "f", 4, 10, 5);
        assert_eq!(text(&bounded), "4;5;", "whole renders within the bytes asked");
        let first_alone = r.rendered(&log, "f", 4, 10, 1);
        assert_eq!(text(&first_alone), "4;", "the first comes whatever its size");
        assert_eq!(r.rendered(&log, "f", 2, 10, usize::MAX).count, 0, "2 is not kept");
        assert_eq!(r.rendered(&log, "g", 3, 10, usize::MAX).count, 0, "no such form");
    }

    #[test]
    fn a_render_of_an_entry_the_log_replaced_is_never_handed_out() {
        let mut log = Epochs(vec![1; 6]);
        let mut r = Renditions::default();
        keep(&mut r, &log, 1, 6, 1);
        log.0.truncate(4);
        log.0.extend([2, 2]); // a repair replaced 5 and 6 with entries of epoch 2
        let after = r.rendered(&log, "f", 3, 6, usize::MAX);
        assert_eq!(text(&after), "3;4;");
        keep(&mut r, &log, 5, 6, 1); // a render of the old entries, late: refused
        assert_eq!(r.rendered(&log, "f", 5, 6, usize::MAX).count, 0);
        keep(&mut r, &log, 5, 6, 2);
        let mixed = r.rendered(&log, "f", 3, 6, usize::MAX);
        assert_eq!(text(&mixed), "3;4;5;6;");
        assert_eq!(mixed.runs, vec![Run { epoch: 1, first: 3 }, Run { epoch: 2, first: 5 }]);
        // Nothing past the log's end, even when kept (a truncation shortened it).
        log.0.truncate(5);
        assert_eq!(text(&r.rendered(&log, "f", 4, 9, usize::MAX)), "4;5;");
    }

    #[test]
    fn only_renders_near_the_end_are_kept_and_within_their_bytes() {
        let log = Epochs(vec![1; (NEAR_END + 10) as usize]);
        let mut r = Renditions::default();
        keep(&mut r, &log, 1, 20, 1);
        assert_eq!(r.rendered(&log, "f", 1, 20, usize::MAX).count, 0, "far behind: not kept");
        assert_eq!(r.rendered(&log, "f", 11, 20, usize::MAX).count, 10, "near the end: kept");
        // A gap: what follows it is kept instead.
        keep(&mut r, &log, 30, 31, 1);
        assert_eq!(r.rendered(&log, "f", 11, 20, usize::MAX).count, 0);
        assert_eq!(r.rendered(&log, "f", 30, 40, usize::MAX).count, 2);
        // Big renders push the oldest out.
        let big = vec![b'x'; FORM_BYTES / 2];
        let start = 32;
        let ends = [big.len() as u32, 2 * big.len() as u32 - 1];
        let bytes = [big.as_slice(), &big[1..]].concat();
        let runs = [Run { epoch: 1, first: start }];
        r.keep(&log, "f", &Renders { start, runs: &runs, ends: &ends, bytes: &bytes });
        assert!(r.bytes() <= FORM_BYTES, "{} bytes kept", r.bytes());
        assert_eq!(r.rendered(&log, "f", 30, 40, usize::MAX).count, 0, "30 and 31 went");
        assert_eq!(r.rendered(&log, "f", 33, 40, usize::MAX).count, 1);
    }

    #[test]
    fn one_caller_at_a_time_is_told_to_render_an_entry() {
        let log = Epochs(vec![1; 10]);
        let mut r = Renditions::default();
        let now = Instant::now();
        assert!(r.claim(&log, "f", 9, now), "the first renders");
        assert!(!r.claim(&log, "f", 9, now + CLAIM_FOR / 2), "the others wait for it");
        assert!(r.claim(&log, "f", 9, now + CLAIM_FOR), "unless it takes too long");
        assert!(r.claim(&log, "f", 10, now), "another entry, another claim");
        keep(&mut r, &log, 9, 10, 1);
        assert!(
            r.claim(&log, "f", 10, now),
            "kept, the claim is over (and a caller that finds \
            it unrendered again renders it)"
        );
        assert!(r.claim(&log, &"n".repeat(NAME_BYTES + 1), 1, now), "a form never kept: render");
        let long = Epochs(vec![1; (NEAR_END + 10) as usize]);
        assert!(r.claim(&long, "f", 5, now) && r.claim(&long, "f", 5, now), "never kept: no wait");
    }

    #[test]
    fn malformed_renders_and_too_many_forms_keep_the_bounds() {
        let log = Epochs(vec![1; 10]);
        let mut r = Renditions::default();
        let runs = [Run { epoch: 1, first: 1 }];
        for (ends, bytes) in [(&[3u32, 2][..], &b"abc"[..]), (&[4][..], &b"abc"[..])] {
            r.keep(&log, "f", &Renders { start: 1, runs: &runs, ends, bytes });
            assert_eq!(r.rendered(&log, "f", 1, 10, usize::MAX).count, 0);
        }
        let wrong_start = [Run { epoch: 1, first: 2 }];
        r.keep(&log, "f", &Renders { start: 1, runs: &wrong_start, ends: &[1], bytes: b"a" });
        assert_eq!(r.rendered(&log, "f", 1, 10, usize::MAX).count, 0);
        r.keep(
            &log,
            &"n".repeat(NAME_BYTES + 1),
            &Renders { start: 1, runs: &runs, ends: &[1], bytes: b"a" },
        );
        for name in ["a", "b", "c", "d", "e"] {
            r.keep(&log, name, &Renders { start: 1, runs: &runs, ends: &[1], bytes: b"a" });
        }
        assert_eq!(r.forms.len(), FORMS);
        assert_eq!(r.rendered(&log, "a", 1, 1, usize::MAX).count, 0, "the least used went");
        assert_eq!(r.rendered(&log, "e", 1, 1, usize::MAX).count, 1);
    }
}
