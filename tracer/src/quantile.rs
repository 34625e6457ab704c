//! Quantiles of a sample of times, as `tracer top` and `tracer report` show them: the
//! value at the nearest rank of the sorted sample, so every figure shown is one that was
//! measured.

/// The `q`-th quantile (0 to 1) of `values`, `None` of none.
pub fn quantile(values: &[u64], q: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let at = ((sorted.len() - 1) as f64 * q).round() as usize;
    Some(sorted[at])
}

/// The `q`-th quantile of `values` (µs) in milliseconds, `-` of none.
fn quantile_ms(values: &[u64], q: f64) -> String {
    quantile(values, q).map_or("-".to_owned(), |us| format!("{:.2}", us as f64 / 1000.0))
}

/// `p50/p99` of `values` (µs), in milliseconds.
pub fn median_and_p99_ms(values: &[u64]) -> String {
    format!("{}/{}", quantile_ms(values, 0.5), quantile_ms(values, 0.99))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_measured_values() {
        let values = [9, 1, 5, 3, 7];
        assert_eq!(quantile(&values, 0.0), Some(1));
        assert_eq!(quantile(&values, 0.5), Some(5));
        assert_eq!(quantile(&values, 0.99), Some(9));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(median_and_p99_ms(&[1_500, 250]), "1.50/1.50");
        assert_eq!(median_and_p99_ms(&[]), "-/-");
    }
}
