//! The running kernel's build configuration, for the one value tracer needs from it:
//! `CONFIG_HZ`, to turn the jiffies the kernel counts keepalive times in into time.

use std::{fs::File, io::Read};

use flate2::read::GzDecoder;

/// `CONFIG_HZ` from `/proc/config.gz` (CONFIG_IKCONFIG_PROC) or
/// `/boot/config-<release>` (Debian and most distributions), if either is there.
pub fn hz(release: &str) -> Option<u32> {
    let proc_config = File::open("/proc/config.gz").ok().and_then(|file| {
        let mut text = String::new();
        GzDecoder::new(file)
            .read_to_string(&mut text)
            .ok()
            .map(|_| text)
    });
    let boot_config = || std::fs::read_to_string(format!("/boot/config-{release}")).ok();
    proc_config
        .or_else(boot_config)
        .as_deref()
        .and_then(parse_hz)
}

fn parse_hz(config: &str) -> Option<u32> {
    config
        .lines()
        .find_map(|line| line.strip_prefix("CONFIG_HZ=")?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_config_hz_not_its_neighbours() {
        let config =
            "CONFIG_HZ_250=y\n# CONFIG_HZ_1000 is not set\nCONFIG_HZ=250\nCONFIG_HZ_PERIODIC=n\n";
        assert_eq!(parse_hz(config), Some(250));
        assert_eq!(parse_hz("CONFIG_HZ_1000=y\n"), None);
    }
}
