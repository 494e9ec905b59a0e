//! Draining the durable outbox: which rows to fetch next, how many may be in
//! flight, which acknowledgements to mark sent. Pure: the session does the I/O.

/// Outbox events published and not yet acknowledged at once.
pub const OUTBOX_WINDOW: usize = 32;

/// Where the session stands in the outbox.
#[derive(Debug)]
pub struct OutboxDrain {
    /// The last seq handed to the broker on this connection.
    cursor: i64,
    /// Published, not yet acknowledged.
    in_flight: usize,
    /// The outbox may hold more than was fetched.
    more: bool,
    /// How many rows the fetch in progress asked for.
    fetch_limit: usize,
    /// Acknowledged seqs not yet marked sent in the index.
    acked: Vec<i64>,
}

impl Default for OutboxDrain {
    fn default() -> Self {
        Self { cursor: 0, in_flight: 0, more: true, fetch_limit: 0, acked: Vec::with_capacity(OUTBOX_WINDOW) }
    }
}

impl OutboxDrain {
    /// A new event was stored, or a slow recheck is due: look again.
    pub fn wake(&mut self) {
        self.more = true;
    }

    /// The rows to fetch now as (after seq, at most), if any: only while connected, with no
    /// fetch running, more to read and room in the window. Marks the fetch as asked for.
    pub fn next_fetch(&mut self, connected: bool, fetching: bool) -> Option<(i64, usize)> {
        if !connected || fetching || !self.more || self.in_flight >= OUTBOX_WINDOW {
            return None;
        }
        self.fetch_limit = OUTBOX_WINDOW - self.in_flight;
        self.more = false;
        Some((self.cursor, self.fetch_limit))
    }

    /// The fetch could not be queued: try again on the next turn.
    pub fn fetch_not_queued(&mut self) {
        self.more = true;
    }

    /// A fetch returned `rows` rows: a full page means there may be more.
    pub fn fetched(&mut self, rows: usize) {
        self.more = rows >= self.fetch_limit;
    }

    /// Event `seq` was handed to the broker.
    pub fn published(&mut self, seq: i64) {
        self.cursor = seq;
        self.in_flight += 1;
    }

    /// An event could not be handed over: the rest of the page waits for the next fetch.
    pub fn not_published(&mut self) {
        self.more = true;
    }

    /// The broker acknowledged event `seq`; `true` when a window's worth of acknowledgements
    /// waits to be marked sent.
    pub fn acked(&mut self, seq: i64) -> bool {
        self.acked.push(seq);
        self.in_flight = self.in_flight.saturating_sub(1);
        self.acked.len() >= OUTBOX_WINDOW
    }

    /// The acknowledged seqs to mark sent now.
    pub fn take_acks(&mut self) -> Vec<i64> {
        std::mem::take(&mut self.acked)
    }

    /// Marking `seqs` sent could not be queued: keep them for the next flush.
    pub fn keep_acks(&mut self, seqs: Vec<i64>) {
        self.acked.splice(0..0, seqs);
    }

    /// A new connection: everything unacknowledged goes out again, in seq order.
    pub fn connected(&mut self) {
        self.cursor = 0;
        self.in_flight = 0;
        self.more = true;
    }

    /// The connection is gone: nothing is in flight any more.
    pub fn disconnected(&mut self) {
        self.in_flight = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetches_a_window_and_waits_for_room() {
        let mut d = OutboxDrain::default();
        assert_eq!(d.next_fetch(false, false), None, "not while disconnected");
        assert_eq!(d.next_fetch(true, true), None, "not while a fetch runs");
        assert_eq!(d.next_fetch(true, false), Some((0, OUTBOX_WINDOW)));
        assert_eq!(d.next_fetch(true, false), None, "nothing more until woken or a full page");
        d.fetched(OUTBOX_WINDOW);
        for seq in 1..=OUTBOX_WINDOW as i64 {
            d.published(seq);
        }
        assert_eq!(d.next_fetch(true, false), None, "the window is full");
        assert!(!d.acked(1));
        assert_eq!(d.next_fetch(true, false), Some((OUTBOX_WINDOW as i64, 1)), "one slot free, after the cursor");
    }

    #[test]
    fn a_short_page_means_the_outbox_is_drained_until_woken() {
        let mut d = OutboxDrain::default();
        assert!(d.next_fetch(true, false).is_some());
        d.fetched(3);
        assert_eq!(d.next_fetch(true, false), None);
        d.wake();
        assert!(d.next_fetch(true, false).is_some());
    }

    #[test]
    fn acknowledgements_flush_by_the_window_and_survive_a_full_store_queue() {
        let mut d = OutboxDrain::default();
        for seq in 1..OUTBOX_WINDOW as i64 {
            d.published(seq);
            assert!(!d.acked(seq));
        }
        d.published(OUTBOX_WINDOW as i64);
        assert!(d.acked(OUTBOX_WINDOW as i64), "a window's worth flushes");
        let seqs = d.take_acks();
        assert_eq!(seqs.len(), OUTBOX_WINDOW);
        d.acked(99);
        d.keep_acks(seqs);
        let again = d.take_acks();
        assert_eq!(again.len(), OUTBOX_WINDOW + 1);
        assert_eq!((again[0], again[OUTBOX_WINDOW]), (1, 99), "kept in order, before newer ones");
        assert!(d.take_acks().is_empty());
    }

    #[test]
    fn a_reconnect_resends_from_the_start() {
        let mut d = OutboxDrain::default();
        d.next_fetch(true, false);
        d.fetched(2);
        d.published(7);
        d.published(8);
        d.disconnected();
        d.connected();
        assert_eq!(d.next_fetch(true, false), Some((0, OUTBOX_WINDOW)), "unacknowledged rows go out again");
    }

    #[test]
    fn a_failed_publish_leaves_the_rest_for_the_next_fetch() {
        let mut d = OutboxDrain::default();
        d.next_fetch(true, false);
        d.fetched(1);
        d.not_published();
        assert!(d.next_fetch(true, false).is_some());
        d.fetch_not_queued();
        assert!(d.next_fetch(true, false).is_some());
    }
}
