//! Per-partition offset tracking: at-least-once.
//!
//! Offsets are handed out in order as messages arrive and acknowledged in any order as their
//! output is delivered. Only the highest offset below which *everything* has been acknowledged
//! may be stored for commit, so nothing undelivered is ever committed.

use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::FxHashMap as HashMap;

/// A topic and partition. The name is shared: a consumed message's partition is a reference
/// count, not a copy of the name (see [`Topics`]).
pub type Tp = (Arc<str>, i32);

/// The topic names seen, each held once: the few topics a consumer reads, searched in order.
#[derive(Debug, Default)]
pub struct Topics(Vec<Arc<str>>);

impl Topics {
    /// `topic`'s shared name, added when it is new.
    pub fn get(&mut self, topic: &str) -> Arc<str> {
        if let Some(t) = self.0.iter().find(|t| &***t == topic) {
            return Arc::clone(t);
        }
        let t: Arc<str> = Arc::from(topic);
        self.0.push(Arc::clone(&t));
        t
    }
}

#[derive(Debug, Default)]
struct Partition {
    /// Received offsets, ascending, with whether each is acknowledged.
    pending: VecDeque<(i64, bool)>,
    paused: bool,
}

/// Tracks in-flight offsets for every assigned partition.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    parts: HashMap<Tp, Partition>,
}

/// What an acknowledgement changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// The new highest contiguous acknowledged offset, if it advanced: store it.
    pub store: Option<i64>,
    /// Messages of the partition still in flight.
    pub in_flight: usize,
}

impl OffsetTracker {
    /// Records a received message. Returns the partition's in-flight count.
    pub fn begin(&mut self, tp: &Tp, offset: i64) -> usize {
        // Looked up before inserting: the key is cloned once per partition, not per message.
        if !self.parts.contains_key(tp) {
            self.parts.insert(tp.clone(), Partition::default());
        }
        let p = self.parts.get_mut(tp).expect("inserted above");
        // Offsets arrive in order; a re-delivery after a seek restarts the queue.
        if p.pending.back().is_some_and(|&(last, _)| offset <= last) {
            p.pending.retain(|&(o, _)| o < offset);
        }
        p.pending.push_back((offset, false));
        p.pending.len()
    }

    /// Marks an offset as delivered. Unknown partitions or offsets (revoked meanwhile) are
    /// ignored and return `None`.
    pub fn ack(&mut self, tp: &Tp, offset: i64) -> Option<Ack> {
        let p = self.parts.get_mut(tp)?;
        let i = p.pending.binary_search_by_key(&offset, |&(o, _)| o).ok()?;
        p.pending[i].1 = true;
        let mut store = None;
        while let Some(&(o, true)) = p.pending.front() {
            store = Some(o);
            p.pending.pop_front();
        }
        Some(Ack {
            store,
            in_flight: p.pending.len(),
        })
    }

    /// Forgets a partition (revoked): its later acknowledgements are ignored.
    pub fn revoke(&mut self, tp: &Tp) {
        self.parts.remove(tp);
    }

    /// In-flight messages over all partitions.
    pub fn in_flight(&self) -> usize {
        self.parts.values().map(|p| p.pending.len()).sum()
    }

    /// Marks a partition paused or not; returns the previous state.
    pub fn set_paused(&mut self, tp: &Tp, paused: bool) -> bool {
        // Looked up before inserting: the key is cloned once per partition, not per message.
        if !self.parts.contains_key(tp) {
            self.parts.insert(tp.clone(), Partition::default());
        }
        let p = self.parts.get_mut(tp).expect("inserted above");
        std::mem::replace(&mut p.paused, paused)
    }

    /// Whether a partition is paused.
    pub fn is_paused(&self, tp: &Tp) -> bool {
        self.parts.get(tp).is_some_and(|p| p.paused)
    }

    /// Partitions currently paused.
    pub fn paused(&self) -> Vec<Tp> {
        self.parts
            .iter()
            .filter(|(_, p)| p.paused)
            .map(|(tp, _)| tp.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tp() -> Tp {
        ("t".into(), 0)
    }

    #[test]
    fn topics_share_one_name_each() {
        let mut topics = Topics::default();
        let a = topics.get("orders");
        let b = topics.get("refunds");
        assert!(Arc::ptr_eq(&a, &topics.get("orders")));
        assert!(Arc::ptr_eq(&b, &topics.get("refunds")));
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!((&*a, &*b), ("orders", "refunds"));
        // A partition made from a rebalance's own copy of the name is the same key.
        let mut t = OffsetTracker::default();
        t.begin(&(a, 3), 7);
        assert_eq!(t.begin(&("orders".into(), 3), 8), 2);
    }

    #[test]
    fn stores_only_contiguous_acks() {
        let mut t = OffsetTracker::default();
        for o in 10..15 {
            t.begin(&tp(), o);
        }
        assert_eq!(t.ack(&tp(), 12).unwrap().store, None);
        assert_eq!(t.ack(&tp(), 10).unwrap().store, Some(10));
        assert_eq!(t.ack(&tp(), 11).unwrap().store, Some(12));
        assert_eq!(t.ack(&tp(), 14).unwrap().store, None);
        let a = t.ack(&tp(), 13).unwrap();
        assert_eq!(a.store, Some(14));
        assert_eq!(a.in_flight, 0);
        // Revoked partitions ignore late acks.
        t.begin(&tp(), 15);
        t.revoke(&tp());
        assert!(t.ack(&tp(), 15).is_none());
    }

    proptest! {
        /// Whatever order deliveries complete in, a stored offset never passes an
        /// unacknowledged one, and once everything is acknowledged the last offset is stored.
        #[test]
        fn never_stores_past_a_gap(order in Just((0..200i64).collect::<Vec<_>>()).prop_shuffle()) {
            let mut t = OffsetTracker::default();
            for o in 0..200 {
                t.begin(&tp(), o);
            }
            let mut acked = std::collections::HashSet::new();
            let mut stored = -1;
            for o in order {
                acked.insert(o);
                if let Some(s) = t.ack(&tp(), o).unwrap().store {
                    prop_assert!(s > stored);
                    prop_assert!((0..=s).all(|x| acked.contains(&x)));
                    stored = s;
                }
            }
            prop_assert_eq!(stored, 199);
            prop_assert_eq!(t.in_flight(), 0);
        }
    }
}
