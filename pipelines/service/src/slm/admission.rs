//! The admission stage in front of the SLM: the calls waiting for a worker, and which one a
//! free worker takes. Pure logic (no threads, no clock of its own), so that its rules are tested
//! directly; [`super::executor`] wraps it in a mutex and a condition variable.
//!
//! - **Second opinions** wait in a queue ranked by urgency (the router's `1 − confidence`, or
//!   the learned deferral score; in `arrival` mode everyone ranks alike, so the order is first
//!   come, first served). A worker takes up to a batch of the most urgent. Each waits until its
//!   deadline at most (`urgency`: the admission window; `arrival`: its call's timeout); past it,
//!   its caller withdraws it ([`Waiting::withdraw`]), or the worker finds it expired
//!   ([`Taken::expired`]). In `urgency` mode the queue holds at most `capacity`: a more urgent
//!   call pushes the least urgent out, a less urgent one is refused.
//! - **Drafted replies** wait first come, first served (their urgency says nothing about how much
//!   a reply is needed), at most `reply_capacity` of them in `urgency` mode.
//! - A worker alternates between the two kinds when both wait, so neither starves the other.

use std::collections::BTreeMap;
use std::time::Instant;

use triage_core::config::Admission;
use triage_router::Shed;

/// Which queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Second opinions (batched).
    Opinion,
    /// Drafted replies (one at a time).
    Reply,
}

/// Where a waiting call sits: what its caller needs to withdraw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    kind: Kind,
    key: (u32, u64),
}

/// A waiting call.
#[derive(Debug)]
struct Entry<T> {
    item: T,
    /// Until when it may wait.
    deadline: Instant,
}

/// The outcome of offering a call.
#[derive(Debug)]
pub enum Offer<T> {
    /// It waits; `pushed_out` is the less urgent call it displaced from a full queue.
    Queued {
        /// How to withdraw it.
        ticket: Ticket,
        /// The call it displaced, to be answered `over_budget`.
        pushed_out: Option<T>,
    },
    /// Turned away at once.
    Refused(T, Shed),
}

/// What a worker took.
#[derive(Debug)]
pub struct Taken<T> {
    /// The calls to run: up to a batch of second opinions, most urgent first, or one reply.
    pub work: Vec<T>,
    /// Calls found past their deadline on the way: to be answered, not run.
    pub expired: Vec<T>,
    /// Calls that could not be answered in time (a model call would outlast their timeout): to
    /// be answered as timed out, not run.
    pub late: Vec<T>,
}

/// The waiting calls.
#[derive(Debug)]
pub struct Waiting<T> {
    admission: Admission,
    capacity: usize,
    reply_capacity: usize,
    /// Keyed by (rank, arrival): the smallest key is served first.
    opinions: BTreeMap<(u32, u64), Entry<T>>,
    replies: BTreeMap<(u32, u64), Entry<T>>,
    next: u64,
}

/// The rank of an urgency: higher urgency, smaller rank. Urgencies are probabilities (0..=1);
/// anything else is clamped, and NaN counts as 0.
fn rank(urgency: f32) -> u32 {
    let u = if urgency.is_nan() {
        0.0
    } else {
        urgency.clamp(0.0, 1.0)
    };
    // Non-negative floats order like their bit patterns.
    !u.to_bits()
}

impl<T> Waiting<T> {
    /// An empty stage. `capacity` and `reply_capacity` apply in `urgency` mode only.
    pub fn new(admission: Admission, capacity: usize, reply_capacity: usize) -> Self {
        Self {
            admission,
            capacity: capacity.max(1),
            reply_capacity: reply_capacity.max(1),
            opinions: BTreeMap::new(),
            replies: BTreeMap::new(),
            next: 0,
        }
    }

    /// Calls waiting, of one kind.
    pub fn len(&self, kind: Kind) -> usize {
        self.queue(kind).len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.opinions.is_empty() && self.replies.is_empty()
    }

    fn queue(&self, kind: Kind) -> &BTreeMap<(u32, u64), Entry<T>> {
        match kind {
            Kind::Opinion => &self.opinions,
            Kind::Reply => &self.replies,
        }
    }

    fn queue_mut(&mut self, kind: Kind) -> &mut BTreeMap<(u32, u64), Entry<T>> {
        match kind {
            Kind::Opinion => &mut self.opinions,
            Kind::Reply => &mut self.replies,
        }
    }

    /// Offers a second opinion of this urgency that may wait until `deadline`.
    pub fn offer_opinion(&mut self, item: T, urgency: f32, deadline: Instant) -> Offer<T> {
        let seq = self.seq();
        let key = match self.admission {
            Admission::Urgency => (rank(urgency), seq),
            Admission::Arrival => (0, seq),
        };
        let mut pushed_out = None;
        if self.admission == Admission::Urgency && self.opinions.len() >= self.capacity {
            let shed = Shed::QueueFull {
                capacity: self.capacity,
            };
            // The least urgent waiting call (the latest among equals) leaves, if the new one is
            // more urgent; otherwise the new one does.
            match self.opinions.last_key_value() {
                Some((&last, _)) if key.0 < last.0 => {
                    pushed_out = self.opinions.remove(&last).map(|e| e.item);
                }
                _ => return Offer::Refused(item, shed),
            }
        }
        self.opinions.insert(key, Entry { item, deadline });
        Offer::Queued {
            ticket: Ticket {
                kind: Kind::Opinion,
                key,
            },
            pushed_out,
        }
    }

    /// Offers a drafted reply that may wait until `deadline`.
    pub fn offer_reply(&mut self, item: T, deadline: Instant) -> Offer<T> {
        if self.admission == Admission::Urgency && self.replies.len() >= self.reply_capacity {
            let shed = Shed::RepliesFull {
                capacity: self.reply_capacity,
            };
            return Offer::Refused(item, shed);
        }
        let key = (0, self.seq());
        self.replies.insert(key, Entry { item, deadline });
        Offer::Queued {
            ticket: Ticket {
                kind: Kind::Reply,
                key,
            },
            pushed_out: None,
        }
    }

    fn seq(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Takes a waiting call back (its caller gave up waiting). `None` when a worker has taken it,
    /// or it was pushed out, meanwhile: its answer is on its way.
    pub fn withdraw(&mut self, ticket: Ticket) -> Option<T> {
        self.queue_mut(ticket.kind)
            .remove(&ticket.key)
            .map(|e| e.item)
    }

    /// The kind a free worker should take next, given the kind it took last: the other kind when
    /// both wait.
    pub fn next_kind(&self, last: Option<Kind>) -> Option<Kind> {
        match (self.opinions.is_empty(), self.replies.is_empty()) {
            (true, true) => None,
            (false, true) => Some(Kind::Opinion),
            (true, false) => Some(Kind::Reply),
            (false, false) => Some(match last {
                Some(Kind::Opinion) => Kind::Reply,
                _ => Kind::Opinion,
            }),
        }
    }

    /// Takes work of `kind` at `now`: up to `max_batch` of the most urgent second opinions, or
    /// the oldest reply. Calls met on the way that are past their deadline are handed back as
    /// expired, and those `fits` rejects (they could not be answered in time) as late.
    pub fn take(
        &mut self,
        kind: Kind,
        max_batch: usize,
        now: Instant,
        fits: impl Fn(&T) -> bool,
    ) -> Taken<T> {
        let most = match kind {
            Kind::Opinion => max_batch.max(1),
            Kind::Reply => 1,
        };
        let queue = self.queue_mut(kind);
        let mut taken = Taken {
            work: Vec::new(),
            expired: Vec::new(),
            late: Vec::new(),
        };
        while taken.work.len() < most {
            let Some((_, e)) = queue.pop_first() else {
                break;
            };
            if e.deadline <= now {
                taken.expired.push(e.item);
            } else if !fits(&e.item) {
                taken.late.push(e.item);
            } else {
                taken.work.push(e.item);
            }
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn later(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    #[test]
    fn the_most_urgent_are_taken_first() {
        let mut w = Waiting::new(Admission::Urgency, 100, 10);
        for (name, u) in [("a", 0.1), ("b", 0.9), ("c", 0.5), ("d", 0.9), ("e", 0.0)] {
            assert!(matches!(
                w.offer_opinion(name, u, later(10_000)),
                Offer::Queued { .. }
            ));
        }
        let t = w.take(Kind::Opinion, 3, Instant::now(), |_| true);
        // Equal urgency: first come first.
        assert_eq!(t.work, vec!["b", "d", "c"]);
        assert!(t.expired.is_empty());
        assert_eq!(
            w.take(Kind::Opinion, 3, Instant::now(), |_| true).work,
            vec!["a", "e"]
        );
        assert!(w.is_empty());
    }

    #[test]
    fn arrival_mode_is_first_come_first_served_and_unbounded() {
        let mut w = Waiting::new(Admission::Arrival, 2, 1);
        for (i, u) in [0.1, 0.9, 0.5, 0.7].into_iter().enumerate() {
            assert!(matches!(
                w.offer_opinion(i, u, later(10_000)),
                Offer::Queued {
                    pushed_out: None,
                    ..
                }
            ));
        }
        for i in 0..3 {
            assert!(matches!(
                w.offer_reply(10 + i, later(10_000)),
                Offer::Queued { .. }
            ));
        }
        let now = Instant::now();
        assert_eq!(
            w.take(Kind::Opinion, 8, now, |_| true).work,
            vec![0, 1, 2, 3]
        );
        assert_eq!(w.take(Kind::Reply, 8, now, |_| true).work, vec![10]);
    }

    #[test]
    fn a_full_queue_keeps_the_most_urgent() {
        let mut w = Waiting::new(Admission::Urgency, 2, 10);
        let deadline = later(10_000);
        assert!(matches!(
            w.offer_opinion("low", 0.2, deadline),
            Offer::Queued { .. }
        ));
        assert!(matches!(
            w.offer_opinion("mid", 0.5, deadline),
            Offer::Queued { .. }
        ));
        // Less urgent than everything waiting: refused, and the reason says the queue was full.
        match w.offer_opinion("lower", 0.1, deadline) {
            Offer::Refused("lower", Shed::QueueFull { capacity: 2 }) => {}
            other => panic!("{other:?}"),
        }
        // As urgent as the least urgent: refused too (first come keeps its place).
        assert!(matches!(
            w.offer_opinion("tie", 0.2, deadline),
            Offer::Refused("tie", _)
        ));
        // More urgent: the least urgent is pushed out.
        match w.offer_opinion("high", 0.9, deadline) {
            Offer::Queued {
                pushed_out: Some("low"),
                ..
            } => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(w.len(Kind::Opinion), 2);
        assert_eq!(
            w.take(Kind::Opinion, 8, Instant::now(), |_| true).work,
            vec!["high", "mid"]
        );
    }

    #[test]
    fn replies_wait_in_order_up_to_their_capacity() {
        let mut w = Waiting::new(Admission::Urgency, 10, 2);
        let deadline = later(10_000);
        assert!(matches!(w.offer_reply(1, deadline), Offer::Queued { .. }));
        assert!(matches!(w.offer_reply(2, deadline), Offer::Queued { .. }));
        assert!(matches!(
            w.offer_reply(3, deadline),
            Offer::Refused(3, Shed::RepliesFull { capacity: 2 })
        ));
        let now = Instant::now();
        // One reply at a time, oldest first, whatever the batch size.
        assert_eq!(w.take(Kind::Reply, 32, now, |_| true).work, vec![1]);
        assert!(matches!(w.offer_reply(4, deadline), Offer::Queued { .. }));
        assert_eq!(w.take(Kind::Reply, 32, now, |_| true).work, vec![2]);
        assert_eq!(w.take(Kind::Reply, 32, now, |_| true).work, vec![4]);
    }

    #[test]
    fn expired_calls_are_handed_back_not_run() {
        let mut w = Waiting::new(Admission::Urgency, 10, 10);
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        w.offer_opinion("urgent-but-old", 0.9, ms(50));
        w.offer_opinion("fresh", 0.5, ms(150));
        w.offer_opinion("fresh-low", 0.1, ms(150));
        // Before any deadline: nothing expires.
        let t = w.take(Kind::Opinion, 1, ms(10), |_| true);
        assert_eq!((t.work, t.expired.len()), (vec!["urgent-but-old"], 0));
        w.offer_opinion("urgent-but-old-2", 0.9, ms(50));
        // Past its window: handed back as expired, and the batch is filled from the rest.
        let t = w.take(Kind::Opinion, 1, ms(60), |_| true);
        assert_eq!(t.expired, vec!["urgent-but-old-2"]);
        assert_eq!(t.work, vec!["fresh"]);
        let t = w.take(Kind::Opinion, 4, ms(200), |_| true);
        assert_eq!((t.work.len(), t.expired), (0, vec!["fresh-low"]));
    }

    #[test]
    fn calls_that_cannot_be_answered_in_time_are_late_not_run() {
        let mut w = Waiting::new(Admission::Arrival, 10, 10);
        let deadline = later(10_000);
        for (item, left) in [("soon", 10), ("later", 500), ("soon-2", 20), ("last", 900)] {
            w.offer_opinion((item, left), 0.5, deadline);
        }
        // A model call takes about 100 ms: the two with less time left than that are late.
        let t = w.take(Kind::Opinion, 2, Instant::now(), |&(_, left)| left >= 100);
        assert_eq!(t.work, vec![("later", 500), ("last", 900)]);
        assert_eq!(t.late, vec![("soon", 10), ("soon-2", 20)]);
        assert!(t.expired.is_empty() && w.is_empty());
    }

    #[test]
    fn a_withdrawn_call_is_gone_and_a_taken_one_cannot_be_withdrawn() {
        let mut w = Waiting::new(Admission::Urgency, 10, 10);
        let deadline = later(10_000);
        let Offer::Queued { ticket: a, .. } = w.offer_opinion("a", 0.5, deadline) else {
            panic!()
        };
        let Offer::Queued { ticket: b, .. } = w.offer_opinion("b", 0.9, deadline) else {
            panic!()
        };
        let Offer::Queued { ticket: r, .. } = w.offer_reply("r", deadline) else {
            panic!()
        };
        assert_eq!(w.withdraw(a), Some("a"));
        assert_eq!(w.withdraw(a), None);
        assert_eq!(w.withdraw(r), Some("r"));
        assert_eq!(
            w.take(Kind::Opinion, 8, Instant::now(), |_| true).work,
            vec!["b"]
        );
        assert_eq!(w.withdraw(b), None, "taken: its answer is on its way");
        assert!(w.is_empty());
    }

    #[test]
    fn workers_alternate_when_both_kinds_wait() {
        let mut w = Waiting::new(Admission::Urgency, 10, 10);
        let deadline = later(10_000);
        assert_eq!(w.next_kind(None), None);
        w.offer_opinion(1, 0.5, deadline);
        assert_eq!(w.next_kind(Some(Kind::Opinion)), Some(Kind::Opinion));
        w.offer_reply(2, deadline);
        assert_eq!(w.next_kind(None), Some(Kind::Opinion));
        assert_eq!(w.next_kind(Some(Kind::Opinion)), Some(Kind::Reply));
        assert_eq!(w.next_kind(Some(Kind::Reply)), Some(Kind::Opinion));
    }

    #[test]
    fn odd_urgencies_rank_sanely() {
        assert!(rank(1.0) < rank(0.5) && rank(0.5) < rank(0.0));
        assert_eq!(rank(f32::NAN), rank(0.0));
        assert_eq!(rank(-3.0), rank(0.0));
        assert_eq!(rank(7.0), rank(1.0));
        assert!(rank(1e-30) < rank(0.0));
    }
}
