//! Policy durations (`90s`, `4h`, `2d`): one integer and one unit, nothing else, so that a
//! policy reads the same to every person and every tool.

use jiff::SignedDuration;

/// Parses a policy duration. Units: `s`, `m`, `h`, `d` (a day is 24 hours).
pub fn parse(text: &str) -> Result<SignedDuration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` has no unit (use s, m, h or d, e.g. 4h)"))?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(format!("`{text}` must start with a whole number (e.g. 90s, 4h, 2d)"));
    }
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is too large"))?;
    let secs_per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{text}` has unknown unit `{unit}` (use s, m, h or d)")),
    };
    if n == 0 {
        return Err(format!("`{text}` must be longer than zero"));
    }
    n.checked_mul(secs_per_unit)
        .filter(|s| *s <= 100 * 365 * 86_400)
        .map(SignedDuration::from_secs)
        .ok_or_else(|| format!("`{text}` is longer than 100 years"))
}

/// A duration in the largest unit that divides it (`90s`, `4h`, `2d`), the form `parse` reads.
pub fn format(d: SignedDuration) -> String {
    let secs = d.as_secs();
    for (unit, n) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs != 0 && secs % n == 0 {
            return format!("{}{unit}", secs / n);
        }
    }
    format!("{secs}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_in_the_largest_unit() {
        for text in ["90s", "4h", "2d", "45m", "25h"] {
            assert_eq!(format(parse(text).unwrap()), text);
        }
    }

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse("90s").unwrap(), SignedDuration::from_secs(90));
        assert_eq!(parse("10m").unwrap(), SignedDuration::from_secs(600));
        assert_eq!(parse("4h").unwrap(), SignedDuration::from_secs(4 * 3600));
        assert_eq!(parse("2d").unwrap(), SignedDuration::from_secs(2 * 86_400));
    }

    #[test]
    fn refuses_malformed() {
        for bad in ["", "h", "4", "4w", "1.5h", "-3h", "0s", "4 h", "99999999999999999999d"] {
            assert!(parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
