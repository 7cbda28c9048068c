//! Kernel timestamps (`bpf_ktime_get_ns`, CLOCK_MONOTONIC) to wall-clock time.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Converts monotonic nanoseconds to wall-clock time with an offset taken once.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    /// Wall-clock nanoseconds since the epoch at monotonic zero.
    offset_ns: i128,
}

impl WallClock {
    pub fn new() -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as i128;
        WallClock {
            offset_ns: wall - monotonic_ns() as i128,
        }
    }

    pub fn at(&self, ktime_ns: u64) -> SystemTime {
        let ns = (self.offset_ns + ktime_ns as i128).max(0) as u128;
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    }

    /// RFC 3339, UTC, microseconds, as the alert record writes time.
    pub fn rfc3339(&self, ktime_ns: u64) -> String {
        humantime::format_rfc3339_micros(self.at(ktime_ns)).to_string()
    }
}

impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}

/// Wall-clock seconds since the epoch (0 before it): heartbeats and ages.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// CLOCK_MONOTONIC now, the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_maps_to_now() {
        let clock = WallClock::new();
        let at = clock.at(monotonic_ns());
        let skew = SystemTime::now()
            .duration_since(at)
            .unwrap_or_else(|e| e.duration());
        assert!(skew < Duration::from_secs(1), "skew {skew:?}");
        assert!(clock.rfc3339(monotonic_ns()).ends_with('Z'));
    }
}
