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

/// An address in at most `width` characters, its port always whole: a long host part loses
/// its middle (`[fe80::1…cdef]:65535`), so a cut column never shows a wrong port.
pub fn address(addr: std::net::SocketAddr, width: usize) -> String {
    let text = addr.to_string();
    if text.chars().count() <= width {
        return text;
    }
    let port = format!(":{}", addr.port());
    let host = &text[..text.len() - port.len()];
    let (open, inner, close) = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(inner) => ("[", inner, "]"),
        None => ("", host, ""),
    };
    let room = width.saturating_sub(port.len() + open.len() + close.len() + 1);
    if room < 2 {
        return format!("…{port}");
    }
    let chars: Vec<char> = inner.chars().collect();
    let head = room.div_ceil(2);
    let tail = room - head;
    let head: String = chars[..head.min(chars.len())].iter().collect();
    let tail: String = chars[chars.len().saturating_sub(tail)..].iter().collect();
    format!("{open}{head}…{tail}{close}{port}")
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

    #[test]
    fn an_address_keeps_its_port_when_cut() {
        let short: std::net::SocketAddr = "127.0.0.1:7070".parse().unwrap();
        assert_eq!(address(short, 21), "127.0.0.1:7070");
        let long: std::net::SocketAddr = "[fe80::1234:5678:9abc:def0]:65535".parse().unwrap();
        let cut = address(long, 21);
        assert_eq!(cut.chars().count(), 21);
        assert!(cut.ends_with("]:65535"), "{cut}");
        assert!(cut.starts_with("[fe80:"), "{cut}");
        assert_eq!(address(short, 7), "…:7070");
    }
}
