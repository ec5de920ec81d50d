//! Short human forms for cells: bytes, rates, percentages, ages.

/// `1536` → `1.5K`, powers of 1024, at most four characters plus the unit.
pub fn bytes(n: f64) -> String {
    const UNITS: [&str; 6] = ["B", "K", "M", "G", "T", "P"];
    let mut value = n.max(0.0);
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0}{}", UNITS[unit])
    } else if value < 10.0 {
        format!("{value:.1}{}", UNITS[unit])
    } else {
        format!("{value:.0}{}", UNITS[unit])
    }
}

/// Bytes per second, blank when zero (idle rows read cleaner).
pub fn rate(per_second: f64) -> String {
    if per_second < 0.5 {
        String::new()
    } else {
        format!("{}/s", bytes(per_second))
    }
}

pub fn percent(p: f64) -> String {
    if p >= 100.0 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

/// Seconds → `45s`, `12m`, `3h`, `5d`.
pub fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// Megabytes (Mesos `mem`/`disk` units) → bytes text.
pub fn megabytes(mb: f64) -> String {
    bytes(mb * 1024.0 * 1024.0)
}

/// A scalar resource amount: `0.5`, `2`, `1.25`.
pub fn amount(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').to_owned()
    }
}

/// Truncates to `width` characters with an ellipsis.
pub fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_owned()
    } else if width == 0 {
        String::new()
    } else {
        let mut out: String = s.chars().take(width - 1).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(bytes(512.0), "512B");
        assert_eq!(bytes(1536.0), "1.5K");
        assert_eq!(bytes(300.0 * 1024.0 * 1024.0), "300M");
        assert_eq!(rate(0.0), "");
        assert_eq!(rate(2048.0), "2.0K/s");
        assert_eq!(percent(3.04), "3.0%");
        assert_eq!(percent(250.0), "250%");
        assert_eq!(age(59), "59s");
        assert_eq!(age(7200), "2h");
        assert_eq!(amount(0.5), "0.5");
        assert_eq!(amount(2.0), "2");
        assert_eq!(megabytes(512.0), "512M");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("abc", 4), "abc");
    }
}
