//! Cell formatting shared by every table: ratios, times, thousands
//! separators, spreads and target verdicts, kept apart so each section
//! file holds only its own table and findings.
use super::super::stats::Spread;

pub(super) fn ratio(s: &Spread) -> String {
    if s.n == 1 {
        format!("{:.2}×", s.median)
    } else {
        format!("{:.2}× ({:.2}–{:.2})", s.median, s.min, s.max)
    }
}

pub(super) fn ns(s: &Spread) -> String {
    let f = |v: f64| {
        if v >= 10_000.0 {
            format!("{:.1} µs", v / 1000.0)
        } else {
            format!("{v:.0} ns")
        }
    };
    if s.n == 1 {
        f(s.median)
    } else {
        format!("{} ({}–{})", f(s.median), f(s.min), f(s.max))
    }
}

pub(super) fn num(v: f64) -> String {
    let n = v.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

pub(super) fn spread_with(s: &Option<Spread>, f: impl Fn(f64) -> String) -> String {
    match s {
        None => "–".into(),
        Some(s) if s.n == 1 || s.min == s.max => f(s.median),
        Some(s) => format!("{} ({}–{})", f(s.median), f(s.min), f(s.max)),
    }
}

/// "met", or "missed by 0.07× (7 % over)".
pub(super) fn verdict(measured: f64, target: f64) -> String {
    if measured <= target {
        "met".into()
    } else {
        format!(
            "**missed** by {:.2}× ({:.0} % over the allowed {:.0} %)",
            measured - target,
            (measured - target) * 100.0,
            (target - 1.0) * 100.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers_and_verdicts() {
        assert_eq!(num(1234567.0), "1,234,567");
        assert_eq!(num(999.0), "999");
        assert_eq!(verdict(1.03, 1.05), "met");
        assert!(verdict(1.12, 1.05).contains("0.07×"));
        let s = Spread {
            median: 1.5,
            min: 1.0,
            max: 2.0,
            n: 3,
        };
        assert_eq!(ratio(&s), "1.50× (1.00–2.00)");
        assert_eq!(ns(&Spread { n: 1, ..s }), "2 ns");
    }
}
