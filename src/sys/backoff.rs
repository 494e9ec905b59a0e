//! Reconnect delays: doubling from a floor to a cap, with jitter so a fleet
//! does not reconnect to a restarted broker in lockstep.

use std::time::Duration;

/// Capped exponential backoff; reset after a successful connection.
#[derive(Clone, Debug)]
pub struct Backoff {
    floor: Duration,
    cap: Duration,
    current: Duration,
}

impl Backoff {
    /// Starts at `floor`, doubles up to `cap`.
    pub fn new(floor: Duration, cap: Duration) -> Self {
        Self { floor, cap, current: floor }
    }

    /// The next delay; `jitter` in 0..1 scales it to between 50 % and 100 %.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let delay = self.current;
        self.current = (self.current * 2).min(self.cap);
        delay.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    /// Back to the floor after a healthy connection.
    pub fn reset(&mut self) {
        self.current = self.floor;
    }
}

/// A jitter value in 0..1 from the clock's nanoseconds; good enough to spread reconnects.
pub fn clock_jitter() -> f64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1000) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(4));
        let delays: Vec<_> = (0..6).map(|_| b.next_delay(1.0).as_millis()).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 4000, 4000]);
        b.reset();
        assert_eq!(b.next_delay(1.0).as_millis(), 500);
    }

    #[test]
    fn jitter_scales_between_half_and_full() {
        let mut b = Backoff::new(Duration::from_secs(2), Duration::from_secs(2));
        assert_eq!(b.next_delay(0.0), Duration::from_secs(1));
        assert_eq!(b.next_delay(5.0), Duration::from_secs(2));
    }
}
