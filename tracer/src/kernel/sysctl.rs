//! Settings of the kernel's TCP stack that records depend on, read once at start-up.

use std::fs;

/// `net.ipv4.tcp_fin_timeout`'s default, nanoseconds: how long a timewait socket in
/// FIN_WAIT2 waits for the peer's FIN.
pub const DEFAULT_FIN_TIMEOUT_NS: u64 = 60 * 1_000_000_000;

/// `net.ipv4.tcp_fin_timeout` of tracer's network namespace, nanoseconds; the default,
/// with a warning, when unreadable. Other namespaces may set their own, and a socket its
/// own (`TCP_LINGER2`): a wait that ends sooner is still reported, one cut short by a
/// shorter timeout is reported when this one runs out.
pub fn fin_timeout_ns() -> u64 {
    const PATH: &str = "/proc/sys/net/ipv4/tcp_fin_timeout";
    match fs::read_to_string(PATH).map(|text| text.trim().parse::<u64>()) {
        Ok(Ok(seconds)) => seconds * 1_000_000_000,
        _ => {
            eprintln!(
                "tracer: warning: cannot read {PATH}: timewait sockets are taken to wait the default 60 s"
            );
            DEFAULT_FIN_TIMEOUT_NS
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_hosts_fin_timeout() {
        let text = fs::read_to_string("/proc/sys/net/ipv4/tcp_fin_timeout").unwrap();
        assert_eq!(
            fin_timeout_ns(),
            text.trim().parse::<u64>().unwrap() * 1_000_000_000
        );
    }
}
