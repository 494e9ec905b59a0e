//! A token bucket: at most `per_second` on average, bursts up to `capacity`.
//! Pure: the caller passes the time.

use std::time::Instant;

/// Allows `per_second` events on average and bursts of `capacity`.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(capacity: u32, per_second: u32, now: Instant) -> Self {
        Self {
            capacity: f64::from(capacity),
            per_second: f64::from(per_second),
            tokens: f64::from(capacity),
            last: now,
        }
    }

    /// Takes one token at `now`; `false` when the bucket is empty.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_to_the_capacity_then_refills_at_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(3, 10, start);
        assert_eq!((0..5).filter(|_| bucket.take(start)).count(), 3, "the burst");
        assert!(!bucket.take(start + Duration::from_millis(50)), "half a token");
        assert!(bucket.take(start + Duration::from_millis(100)), "one token after 100 ms");
        let later = start + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| bucket.take(later)).count(), 3, "never more than the capacity");
        assert!(!bucket.take(start), "time going back adds nothing");
    }
}
