//! Kernel symbol addresses from `/proc/kallsyms` (real addresses need root).

use std::fs;

use anyhow::{Context as _, Result, bail};

const KALLSYMS: &str = "/proc/kallsyms";

/// The address of the text symbol `name` in `kallsyms` (the file's contents).
pub fn find(kallsyms: &str, name: &str) -> Option<u64> {
    kallsyms.lines().find_map(|line| {
        let mut fields = line.split_ascii_whitespace();
        let (address, kind, symbol) = (fields.next()?, fields.next()?, fields.next()?);
        (symbol == name && matches!(kind, "t" | "T"))
            .then(|| u64::from_str_radix(address, 16).ok())
            .flatten()
    })
}

/// The address of `name` in the running kernel.
pub fn address_of(name: &str) -> Result<u64> {
    let kallsyms =
        fs::read_to_string(KALLSYMS).with_context(|| format!("cannot read {KALLSYMS}"))?;
    match find(&kallsyms, name) {
        Some(0) => bail!("{KALLSYMS} hides addresses (kptr_restrict): cannot locate {name}"),
        Some(address) => Ok(address),
        None => bail!("the kernel has no {name} symbol in {KALLSYMS}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_text_symbols_only() {
        let text = "ffffffff812445d3 t tcp_keepalive_timer.cold\n\
                    ffffffff8208c310 t tcp_keepalive_timer\n\
                    ffffffff8300c310 d tcp_keepalive_data\n";
        assert_eq!(
            find(text, "tcp_keepalive_timer"),
            Some(0xffff_ffff_8208_c310)
        );
        assert_eq!(find(text, "tcp_keepalive_data"), None);
        assert_eq!(find(text, "missing"), None);
    }

    #[test]
    fn the_running_kernel_has_the_keepalive_timer() {
        assert!(address_of("tcp_keepalive_timer").unwrap() > 0);
    }
}
