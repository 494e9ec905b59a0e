//! The queue of authorized requests waiting to run: each key has its own
//! share, and the keys take turns, so one key's flood never starves another.
//! Pure: the router does the waiting.

use std::collections::{BTreeMap, VecDeque};

/// Requests one key may have waiting; more are answered `busy`.
pub const PER_KEY: usize = 8;
/// Keys with requests waiting at once (configured keys plus the unsigned lane).
pub const MAX_KEYS: usize = 64;

/// Authorized requests by the key that signed them (`""`: unsigned, where allowed).
#[derive(Debug)]
pub struct FairQueue<T> {
    waiting: BTreeMap<String, VecDeque<T>>,
    /// The key that ran last: the next turn goes to the key after it.
    last: Option<String>,
}

impl<T> Default for FairQueue<T> {
    fn default() -> Self {
        Self { waiting: BTreeMap::new(), last: None }
    }
}

impl<T> FairQueue<T> {
    /// Queues `item` of `key`; gives it back when that key's share (or the key table) is full.
    pub fn push(&mut self, key: &str, item: T) -> Result<(), T> {
        if !self.waiting.contains_key(key) && self.waiting.len() >= MAX_KEYS {
            return Err(item);
        }
        let queue = self.waiting.entry(key.to_string()).or_default();
        if queue.len() >= PER_KEY {
            return Err(item);
        }
        queue.push_back(item);
        Ok(())
    }

    /// The next request to run: the oldest of the key after the one that ran last.
    pub fn pop(&mut self) -> Option<T> {
        let next = match &self.last {
            Some(last) => self
                .waiting
                .range::<str, _>((std::ops::Bound::Excluded(last.as_str()), std::ops::Bound::Unbounded))
                .next()
                .or_else(|| self.waiting.iter().next()),
            None => self.waiting.iter().next(),
        }
        .map(|(key, _)| key.clone())?;
        let queue = self.waiting.get_mut(&next)?;
        let item = queue.pop_front();
        if queue.is_empty() {
            self.waiting.remove(&next);
        }
        self.last = Some(next);
        item
    }

    /// Requests waiting, all keys together.
    pub fn len(&self) -> usize {
        self.waiting.values().map(VecDeque::len).sum()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flooding_key_fills_only_its_own_share() {
        let mut q = FairQueue::default();
        for i in 0..PER_KEY {
            assert!(q.push("flood", i).is_ok());
        }
        assert_eq!(q.push("flood", 99), Err(99), "its share is full");
        assert!(q.push("ops", 1000).is_ok(), "another key still gets in");
        assert_eq!(q.len(), PER_KEY + 1);
    }

    #[test]
    fn keys_take_turns() {
        let mut q = FairQueue::default();
        for i in 0..3 {
            q.push("a", format!("a{i}")).unwrap();
        }
        q.push("b", "b0".to_string()).unwrap();
        q.push("c", "c0".to_string()).unwrap();
        let order: Vec<String> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, ["a0", "b0", "c0", "a1", "a2"]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_key_arriving_later_gets_the_next_turn_after_the_current_one() {
        let mut q = FairQueue::default();
        q.push("b", 1).unwrap();
        q.push("b", 2).unwrap();
        assert_eq!(q.pop(), Some(1));
        q.push("a", 10).unwrap();
        q.push("c", 20).unwrap();
        assert_eq!(q.pop(), Some(20), "after b comes c");
        assert_eq!(q.pop(), Some(10), "then a, wrapping around");
        assert_eq!(q.pop(), Some(2));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn the_key_table_is_bounded() {
        let mut q = FairQueue::default();
        for k in 0..MAX_KEYS {
            q.push(&format!("k{k}"), k).unwrap();
        }
        assert_eq!(q.push("one-more", 0), Err(0));
        assert!(q.push("k0", 1).is_ok(), "a key already waiting may add");
    }
}
