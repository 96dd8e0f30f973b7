//! `by-time/<moment>`: an ISO-8601 date and time, or any prefix of one,
//! in UTC unless it ends in `Z` or an offset (`+02:00`, `-0500`). A prefix
//! stands for its start: `2026-12-01` is 2026-12-01T00:00:00Z.
//!
//! ```text
//! YYYY[-MM[-DD[(T| )hh[:mm[:ss]]]]][Z|(+|-)hh[:]mm]
//! ```

/// The moment `text` names, as Unix seconds; `None` when it is not one.
pub fn parse(text: &str) -> Option<i64> {
    let (body, offset) = split_zone(text)?;
    let b = body.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let s = b.get(from..from + len)?;
        s.iter()
            .all(u8::is_ascii_digit)
            .then(|| std::str::from_utf8(s).ok()?.parse().ok())?
    };
    let sep = |at: usize, set: &[u8]| b.get(at).is_some_and(|c| set.contains(c));
    let year = num(0, 4)?;
    let mut parts = [year, 1, 1, 0, 0, 0];
    // (position of the separator before the field, its allowed bytes)
    let fields: [(usize, &[u8]); 5] = [(4, b"-"), (7, b"-"), (10, b"T "), (13, b":"), (16, b":")];
    let mut end = 4;
    for (i, (at, set)) in fields.iter().enumerate() {
        if b.len() == *at {
            break;
        }
        if !sep(*at, set) {
            return None;
        }
        parts[i + 1] = num(at + 1, 2)?;
        end = at + 3;
    }
    if end != b.len() {
        return None;
    }
    let [y, mo, d, h, mi, s] = parts;
    if !(1..=12).contains(&mo) || !(1..=days_in(y, mo)).contains(&d) || h > 23 || mi > 59 || s > 60
    {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset)
}

/// The text before the zone, and the zone's offset east of UTC in seconds.
fn split_zone(text: &str) -> Option<(&str, i64)> {
    if let Some(body) = text.strip_suffix('Z').or_else(|| text.strip_suffix('z')) {
        return Some((body, 0));
    }
    // An offset only follows a time (`T` or a space at 10).
    if let Some(tail) = text.get(11..).filter(|_| text.len() > 13) {
        if let Some(at) = tail.rfind(['+', '-']).map(|i| i + 11) {
            let sign = if text.as_bytes()[at] == b'-' { -1 } else { 1 };
            let z: String = text[at + 1..].chars().filter(|c| *c != ':').collect();
            if z.len() != 4 || !z.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let h: i64 = z[..2].parse().ok()?;
            let m: i64 = z[2..].parse().ok()?;
            if h > 23 || m > 59 {
                return None;
            }
            return Some((&text[..at], sign * (h * 3600 + m * 60)));
        }
    }
    Some((text, 0))
}

fn days_in(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (proleptic Gregorian; Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn prefixes_stand_for_their_start() {
        assert_eq!(parse("1970"), Some(0));
        assert_eq!(parse("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse("2026-12-01"), Some(1_796_083_200));
        assert_eq!(parse("2026-12-01T10"), Some(1_796_083_200 + 36_000));
        assert_eq!(parse("2026-12-01T10:00"), Some(1_796_083_200 + 36_000));
        assert_eq!(parse("2026-12-01 10:00:05"), Some(1_796_083_200 + 36_005));
        assert_eq!(parse("2026-12"), Some(1_796_083_200));
        assert_eq!(
            parse("2026-12-01T10:00+01:00"),
            Some(1_796_083_200 + 32_400)
        );
        assert_eq!(parse("2026-12-01T10:00-0130"), Some(1_796_083_200 + 41_400));
        assert_eq!(parse("2000-02-29"), Some(951_782_400));
    }

    #[test]
    fn what_is_not_a_moment_is_refused() {
        for bad in [
            "",
            "20",
            "2026-1",
            "2026-13",
            "2026-02-30",
            "2026-12-01T",
            "2026-12-01T25",
            "2026/12/01",
            "2026-12-01T10:00:00:00",
            "latest",
            "2026-12-01T10:00+1",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
