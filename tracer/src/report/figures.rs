//! The report's figures: the connections grouped by the traced port they matched and by
//! peer ([`Group`]), and histograms of handshake, response and idle times
//! ([`Histogram`]), in buckets that double (a time's order of magnitude is what a person
//! compares across a page).

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
};

use super::collect::Collected;
use crate::{
    kernel::selector::matched_port,
    pipeline::correlator::{Closes, ConnectionRecord},
};

/// One group's counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Group {
    pub connections: u64,
    /// Connections whose outcome is a failure, by outcome.
    pub failures: BTreeMap<&'static str, u64>,
    /// Closed by a FIN of this host, of the peer, of both.
    pub closed: Closes,
    pub resets_sent: u64,
    pub resets_received: u64,
    pub retransmits: u64,
    pub requests: u64,
    pub handshakes_us: Vec<u64>,
    pub responses_us: Vec<u64>,
}

impl Group {
    fn add(&mut self, record: &ConnectionRecord) {
        self.connections += 1;
        if record.outcome.failed() {
            *self.failures.entry(record.outcome.name()).or_default() += 1;
        }
        self.closed.count(record.close_initiator);
        self.resets_sent += u64::from(record.resets_sent);
        self.resets_received += u64::from(record.resets_received);
        self.retransmits += u64::from(record.retransmits);
        self.requests += u64::from(record.requests.unwrap_or(0));
        self.handshakes_us.extend(record.handshake_us);
    }

    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }
}

/// Histogram buckets: bucket `i` holds times below 2^`i` µs (and at least 2^(`i`-1)).
const BUCKETS: usize = 40;

/// A histogram of times in µs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Histogram {
    pub counts: [u64; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: [0; BUCKETS],
        }
    }
}

impl Histogram {
    pub fn of(times_us: impl IntoIterator<Item = u64>) -> Self {
        let mut histogram = Self::default();
        for us in times_us {
            let bucket = (u64::BITS - us.leading_zeros()) as usize;
            histogram.counts[bucket.min(BUCKETS - 1)] += 1;
        }
        histogram
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The buckets from the first that counts a time to the last, each with the bound it
    /// is below (µs) and its count.
    pub fn bars(&self) -> Vec<(u64, u64)> {
        let first = self.counts.iter().position(|&n| n > 0);
        let last = self.counts.iter().rposition(|&n| n > 0);
        match first.zip(last) {
            Some((first, last)) => (first..=last)
                .map(|bucket| (1u64 << bucket, self.counts[bucket]))
                .collect(),
            None => Vec::new(),
        }
    }
}

/// What the summary shows of the whole trace.
#[derive(Debug, Default)]
pub struct Figures {
    pub by_port: BTreeMap<u16, Group>,
    pub by_peer: BTreeMap<IpAddr, Group>,
    pub handshakes: Histogram,
    pub responses: Histogram,
    pub idle: Histogram,
}

/// The peer of a connection: the remote address, an IPv4 peer of an IPv6 socket as IPv4.
pub fn peer(remote: SocketAddr) -> IpAddr {
    remote.ip().to_canonical()
}

impl Figures {
    /// The figures of `collected`, its connections grouped by the one of `ports` they
    /// matched.
    pub fn of(collected: &Collected, ports: &[u16]) -> Self {
        let mut figures = Self::default();
        for record in &collected.records {
            let port = matched_port(ports, record.local, record.remote);
            figures.by_port.entry(port).or_default().add(record);
            figures
                .by_peer
                .entry(peer(record.remote))
                .or_default()
                .add(record);
        }
        for response in &collected.responses {
            let port = matched_port(ports, response.local, response.remote);
            for group in [
                figures.by_port.entry(port).or_default(),
                figures.by_peer.entry(peer(response.remote)).or_default(),
            ] {
                group.responses_us.push(response.micros);
            }
        }
        figures.handshakes = Histogram::of(collected.records.iter().filter_map(|r| r.handshake_us));
        figures.responses = Histogram::of(collected.responses.iter().map(|r| r.micros));
        figures.idle = Histogram::of(
            collected
                .records
                .iter()
                .filter_map(|r| r.idle_before_close_us),
        );
        figures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_double() {
        let histogram = Histogram::of([0, 1, 2, 3, 4, 1_000, 1_023, 1_024]);
        assert_eq!(histogram.total(), 8);
        assert_eq!(
            histogram.bars()[..4],
            [(1, 1), (2, 1), (4, 2), (8, 1)],
            "0 below 1, 1 below 2, 2 and 3 below 4, 4 below 8"
        );
        let bars = histogram.bars();
        assert_eq!(bars.last(), Some(&(2_048, 1)), "1024 is below 2048");
        assert_eq!(bars[bars.len() - 2], (1_024, 2), "1000 and 1023");
        assert!(Histogram::default().bars().is_empty());
    }
}
