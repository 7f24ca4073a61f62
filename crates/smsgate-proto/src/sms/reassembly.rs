//! Joining the parts of concatenated inbound messages.
//!
//! Pure: the caller passes the current time with every call, so tests and the
//! daemon agree on what "expired" means and nothing here reads a clock. The
//! buffer holds at most `max_messages` unfinished messages; when a new one
//! would exceed that, the one that has waited longest is evicted and handed
//! back by [`Reassembler::expire`] like an expired one, so the caller can still
//! deliver what arrived.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use super::pdu::{Body, SmsDeliver};
use super::segment::RefWidth;
use super::ucs2;
use super::udh::Concat;

/// Parts belong together when sender, reference (in its own 8- or 16-bit
/// space) and total agree.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ConcatKey {
    pub sender: String,
    pub reference: u16,
    pub width: RefWidth,
    pub total: u8,
}

#[derive(Debug)]
struct Pending {
    first_seen: Timestamp,
    last_seen: Timestamp,
    parts: Vec<Option<Body>>,
    received: usize,
}

/// What pushing one part did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reassembly {
    /// The message is whole.
    Complete(Assembled),
    /// More parts are expected.
    Waiting { received: usize, total: u8 },
    /// This part had already arrived; the first copy is kept.
    Duplicate,
}

/// A whole message: its parts in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assembled {
    pub key: ConcatKey,
    pub first_seen: Timestamp,
    pub parts: Vec<Body>,
}

impl Assembled {
    /// The text of the message, or `None` if a part is 8-bit data.
    pub fn text(&self) -> Option<String> {
        join_text(self.parts.iter())
    }
}

/// The parts that arrived of a message that never completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incomplete {
    pub key: ConcatKey,
    pub first_seen: Timestamp,
    /// One slot per part, `None` for parts that never came.
    pub parts: Vec<Option<Body>>,
}

impl Incomplete {
    /// The text of the parts that did arrive, in order, or `None` if one of
    /// them is 8-bit data.
    pub fn text(&self) -> Option<String> {
        join_text(self.parts.iter().flatten())
    }

    /// Sequence numbers (1-based) of the parts that never came.
    pub fn missing(&self) -> Vec<u8> {
        (1..=self.key.total)
            .zip(&self.parts)
            .filter(|(_, p)| p.is_none())
            .map(|(seq, _)| seq)
            .collect()
    }
}

/// Joins bodies into text. Consecutive UCS-2 parts are joined as code units
/// before decoding, so a surrogate pair cut between two parts survives.
fn join_text<'a>(parts: impl Iterator<Item = &'a Body>) -> Option<String> {
    let mut text = String::new();
    let mut units: Vec<u16> = Vec::new();
    for part in parts {
        match part {
            Body::Ucs2(u) => units.extend_from_slice(u),
            Body::Gsm7(t) => {
                text.push_str(&ucs2::units_to_string(&units));
                units.clear();
                text.push_str(t);
            }
            Body::Data(_) => return None,
        }
    }
    text.push_str(&ucs2::units_to_string(&units));
    Some(text)
}

#[derive(Debug)]
pub struct Reassembler {
    max_messages: usize,
    max_age: SignedDuration,
    pending: HashMap<ConcatKey, Pending>,
    evicted: Vec<Incomplete>,
}

impl Reassembler {
    /// `max_messages` unfinished messages at most (at least one is kept);
    /// a message whose last part came `max_age` ago is given up on.
    pub fn new(max_messages: usize, max_age: SignedDuration) -> Reassembler {
        Reassembler {
            max_messages: max_messages.max(1),
            max_age,
            pending: HashMap::new(),
            evicted: Vec::new(),
        }
    }

    /// Unfinished messages held now.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Adds one part of a concatenated message from `sender`.
    pub fn push(&mut self, sender: &str, concat: Concat, body: Body, now: Timestamp) -> Reassembly {
        let key = ConcatKey {
            sender: sender.to_owned(),
            reference: concat.reference,
            width: concat.width,
            total: concat.total,
        };
        let total = usize::from(concat.total);
        let index = usize::from(concat.sequence);
        if total == 0 || index == 0 || index > total {
            // The header parser never yields these; a hand-made Concat might.
            return Reassembly::Complete(Assembled {
                key,
                first_seen: now,
                parts: vec![body],
            });
        }
        if !self.pending.contains_key(&key) && self.pending.len() >= self.max_messages {
            self.evict_oldest();
        }
        let entry = self.pending.entry(key.clone()).or_insert_with(|| Pending {
            first_seen: now,
            last_seen: now,
            parts: vec![None; total],
            received: 0,
        });
        let slot = &mut entry.parts[index - 1];
        if slot.is_some() {
            return Reassembly::Duplicate;
        }
        *slot = Some(body);
        entry.received += 1;
        entry.last_seen = entry.last_seen.max(now);
        if entry.received < total {
            return Reassembly::Waiting {
                received: entry.received,
                total: concat.total,
            };
        }
        let Some(done) = self.pending.remove(&key) else {
            return Reassembly::Waiting {
                received: 0,
                total: concat.total,
            };
        };
        Reassembly::Complete(Assembled {
            key,
            first_seen: done.first_seen,
            parts: done.parts.into_iter().flatten().collect(),
        })
    }

    /// Adds a received SMS-DELIVER; one without a usable concatenation
    /// header is complete at once.
    pub fn push_deliver(&mut self, deliver: &SmsDeliver, now: Timestamp) -> Reassembly {
        let sender = deliver.originator.to_string();
        let body = deliver.user_data.body.clone();
        match deliver.user_data.concat() {
            Some(concat) => self.push(&sender, concat, body, now),
            None => Reassembly::Complete(Assembled {
                key: ConcatKey {
                    sender,
                    reference: 0,
                    width: RefWidth::Bits8,
                    total: 1,
                },
                first_seen: now,
                parts: vec![body],
            }),
        }
    }

    /// Gives up on messages whose last part came `max_age` or more before
    /// `now`, and returns them with any evicted for lack of room.
    pub fn expire(&mut self, now: Timestamp) -> Vec<Incomplete> {
        let max_age = self.max_age;
        let stale: Vec<ConcatKey> = self
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.last_seen) >= max_age)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = std::mem::take(&mut self.evicted);
        for key in stale {
            if let Some(p) = self.pending.remove(&key) {
                out.push(Incomplete {
                    key,
                    first_seen: p.first_seen,
                    parts: p.parts,
                });
            }
        }
        out
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .pending
            .iter()
            .min_by_key(|(_, p)| p.last_seen)
            .map(|(k, _)| k.clone());
        if let Some(key) = oldest
            && let Some(p) = self.pending.remove(&key)
        {
            self.evicted.push(Incomplete {
                key,
                first_seen: p.first_seen,
                parts: p.parts,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn part(reference: u16, total: u8, sequence: u8) -> Concat {
        Concat {
            reference,
            width: RefWidth::Bits8,
            total,
            sequence,
        }
    }

    fn text(s: &str) -> Body {
        Body::Gsm7(s.to_owned())
    }

    #[test]
    fn joins_parts_in_any_order_and_tolerates_duplicates() {
        let mut r = Reassembler::new(8, SignedDuration::from_secs(60));
        assert_eq!(
            r.push("+1", part(7, 3, 3), text("c"), at(0)),
            Reassembly::Waiting {
                received: 1,
                total: 3
            }
        );
        r.push("+1", part(7, 3, 1), text("a"), at(1));
        assert_eq!(
            r.push("+1", part(7, 3, 1), text("x"), at(2)),
            Reassembly::Duplicate
        );
        let Reassembly::Complete(done) = r.push("+1", part(7, 3, 2), text("b"), at(3)) else {
            panic!("not complete");
        };
        assert_eq!(done.text().unwrap(), "abc");
        assert_eq!(done.first_seen, at(0));
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn keys_on_sender_reference_width_and_total() {
        let mut r = Reassembler::new(8, SignedDuration::from_secs(60));
        r.push("+1", part(7, 2, 1), text("a"), at(0));
        r.push("+2", part(7, 2, 1), text("b"), at(0));
        r.push("+1", part(7, 3, 1), text("c"), at(0));
        let wide = Concat {
            width: RefWidth::Bits16,
            ..part(7, 2, 1)
        };
        r.push("+1", wide, text("d"), at(0));
        assert_eq!(r.pending(), 4);
    }

    #[test]
    fn expires_on_caller_time_and_returns_what_arrived() {
        let mut r = Reassembler::new(8, SignedDuration::from_secs(60));
        r.push("+1", part(1, 3, 2), text("b"), at(0));
        assert!(r.expire(at(59)).is_empty());
        let gone = r.expire(at(60));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].missing(), [1, 3]);
        assert_eq!(gone[0].text().unwrap(), "b");
        // A clock that steps back must not expire or panic.
        r.push("+1", part(2, 2, 1), text("a"), at(100));
        assert!(r.expire(at(0)).is_empty());
    }

    #[test]
    fn stays_bounded_by_evicting_the_stalest() {
        let mut r = Reassembler::new(2, SignedDuration::from_secs(600));
        r.push("+1", part(1, 2, 1), text("a"), at(0));
        r.push("+1", part(2, 2, 1), text("b"), at(1));
        r.push("+1", part(3, 2, 1), text("c"), at(2));
        assert_eq!(r.pending(), 2);
        let evicted = r.expire(at(3));
        assert_eq!(evicted.len(), 1);
        assert_eq!(evicted[0].key.reference, 1);
    }

    #[test]
    fn a_surrogate_pair_cut_between_parts_is_rejoined() {
        let mut r = Reassembler::new(2, SignedDuration::from_secs(600));
        r.push("+1", part(1, 2, 1), Body::Ucs2(vec![0x0041, 0xD83D]), at(0));
        let Reassembly::Complete(done) =
            r.push("+1", part(1, 2, 2), Body::Ucs2(vec![0xDE00]), at(0))
        else {
            panic!("not complete");
        };
        assert_eq!(done.text().unwrap(), "A😀");
    }
}
