//! Human byte sizes for settings: `256MiB`, `1MiB`, `64KiB`, `2GiB`, `500kB`, or a bare byte count.

/// Parses a size such as `256MiB`, `1GiB`, `64KiB`, `1MB` or `1048576`.
pub fn parse(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| "expected a number with a unit such as 256MiB, 1GiB, 64KiB".to_owned())?;
    let multiplier: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown unit {other:?}; use B, KiB, MiB, GiB (or kB, MB, GB)"
            ))
        }
    };
    let bytes = value * multiplier;
    if !bytes.is_finite() || !(0.0..=1e15).contains(&bytes) {
        return Err("out of range".to_owned());
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_understood() {
        assert_eq!(parse("256MiB"), Ok(256 * 1024 * 1024));
        assert_eq!(parse("1MiB"), Ok(1024 * 1024));
        assert_eq!(parse("64kib"), Ok(64 * 1024));
        assert_eq!(parse("1GB"), Ok(1_000_000_000));
        assert_eq!(parse("4096"), Ok(4096));
        assert!(parse("12 parsecs").is_err());
        assert!(parse("MiB").is_err());
    }
}
