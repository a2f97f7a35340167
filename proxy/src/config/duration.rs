//! Human durations for settings: `30s`, `500ms`, `2m`, `1h`, or a bare number of seconds.

use std::time::Duration;

/// Parses a duration such as `30s`, `250ms`, `5m`, `1h` or `10` (seconds).
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| "expected a number with a unit such as 30s, 500ms, 5m".to_owned())?;
    let seconds = match unit.trim() {
        "" | "s" | "sec" | "secs" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown unit {other:?}; use ms, s, m or h")),
    };
    if !seconds.is_finite() || !(0.0..=1e9).contains(&seconds) {
        return Err("out of range".to_owned());
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_understood() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("7"), Ok(Duration::from_secs(7)));
        assert!(parse("7 fortnights").is_err());
        assert!(parse("").is_err());
    }
}
