//! Kernel symbol addresses from `/proc/kallsyms` (real addresses need CAP_SYSLOG, and
//! `kernel.kptr_restrict` below 2).

use std::{
    fs::File,
    io::{self, BufRead, BufReader},
};

use anyhow::{Context as _, Result, bail};

const KALLSYMS: &str = "/proc/kallsyms";

/// The address of the text symbol `name` in `kallsyms`, read up to that symbol.
pub fn find(kallsyms: impl BufRead, name: &str) -> io::Result<Option<u64>> {
    for line in kallsyms.lines() {
        let line = line?;
        let mut fields = line.split_ascii_whitespace();
        let (Some(address), Some(kind), Some(symbol)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if symbol == name && matches!(kind, "t" | "T") {
            return Ok(u64::from_str_radix(address, 16).ok());
        }
    }
    Ok(None)
}

/// The address of `name` in the running kernel. The kernel formats /proc/kallsyms as it
/// is read (most of a second in an emulated guest), so reading stops at the symbol.
pub fn address_of(name: &str) -> Result<u64> {
    let kallsyms = File::open(KALLSYMS).with_context(|| format!("cannot read {KALLSYMS}"))?;
    let found =
        find(BufReader::new(kallsyms), name).with_context(|| format!("cannot read {KALLSYMS}"))?;
    match found {
        Some(0) => bail!(
            "{KALLSYMS} hides kernel addresses: tracer needs CAP_SYSLOG (and kernel.kptr_restrict below 2) to locate {name}"
        ),
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
        let find = |name| find(text.as_bytes(), name).unwrap();
        assert_eq!(find("tcp_keepalive_timer"), Some(0xffff_ffff_8208_c310));
        assert_eq!(find("tcp_keepalive_data"), None);
        assert_eq!(find("missing"), None);
    }

    #[test]
    fn the_running_kernel_has_the_keepalive_timer() {
        assert!(address_of("tcp_keepalive_timer").unwrap() > 0);
    }
}
