//! Times as fuser hands them over, corrected.

use fuser::TimeOrNow;

/// Undo fuser 0.18's conversion of a time before 1970 (`system_time_from_time`
/// computes `epoch - (secs + nsecs)` for `secs < 0`, where the kernel's
/// `(secs, nsecs)` means `epoch - |secs| + nsecs`: −1 ns arrived as
/// −1.999999999 s). Every time fuser hands over before the epoch went through
/// that branch with `|secs| >= 1` and `nsecs < 1e9`, so both are recovered
/// exactly from the whole and fractional seconds of its distance to the epoch.
pub fn fuser_time_fixed(t: TimeOrNow) -> TimeOrNow {
    use std::time::{Duration, UNIX_EPOCH};
    match t {
        TimeOrNow::SpecificTime(st) => match UNIX_EPOCH.duration_since(st) {
            Ok(d) if !d.is_zero() => TimeOrNow::SpecificTime(
                UNIX_EPOCH - Duration::from_secs(d.as_secs())
                    + Duration::from_nanos(u64::from(d.subsec_nanos())),
            ),
            _ => TimeOrNow::SpecificTime(st),
        },
        now => now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// What fuser 0.18 makes of the kernel's (secs, nsecs).
    fn as_fuser_gives_it(secs: i64, nsecs: u32) -> TimeOrNow {
        TimeOrNow::SpecificTime(if secs >= 0 {
            UNIX_EPOCH + Duration::new(secs as u64, nsecs)
        } else {
            UNIX_EPOCH - Duration::new(secs.unsigned_abs(), nsecs)
        })
    }

    #[test]
    fn times_before_1970_come_out_exact() {
        for (secs, nsecs) in [
            (-1i64, 999_999_999u32),
            (-1, 0),
            (-2, 500_000_000),
            (-86_400 * 365 * 30, 123_456_789),
            (0, 0),
            (0, 1),
            (1_700_000_000, 999_999_999),
        ] {
            let TimeOrNow::SpecificTime(t) = fuser_time_fixed(as_fuser_gives_it(secs, nsecs))
            else {
                panic!("a specific time stays one");
            };
            let ts = crate::store::dirfd::timespec(t);
            assert_eq!((ts.tv_sec, ts.tv_nsec as u32), (secs, nsecs));
        }
    }
}
