//! The wire as the truth: a packet capture of a test's traffic (tcpdump on loopback),
//! read back with pcap-file and etherparse into what happened on each connection, and
//! compared with the tracer's records field by field.
//!
//! What the wire says of a connection, per direction: payload bytes the peer acknowledged
//! (what a record calls sent) and that reached the peer in order and were not refused
//! with an RST (what the peer's record calls received),
//! FINs and RSTs and when, keepalive probes (a segment of at most one byte one below the
//! next sequence number, as Wireshark's `tcp.analysis.keep_alive`), and bursts of data:
//! a request is a burst from client to server, a response one back, and a response time
//! runs from a request's first segment to its response's first segment.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{BufRead, BufReader},
    net::{IpAddr, SocketAddr, UdpSocket},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Mutex, MutexGuard, mpsc},
    thread,
    time::{Duration, Instant},
};

use etherparse::{InternetSlice, SlicedPacket, TransportSlice};
use pcap_file::pcap::PcapReader;
use rustix::process::{Pid, Signal, kill_process};
use serde_json::Value;

use super::DEADLINE;

/// Wire and host see the same moments a little apart: between a hook and the capture
/// point the stack runs, and a test machine may be busy. 1 ms here; the kernel matrix's
/// guests, whose CPUs qemu emulates (TCG) tens of times slower, set
/// `TRACER_TEST_WIRE_TOLERANCE_US` (see `xtask/src/vm/init.sh`).
fn tolerance_us() -> u64 {
    std::env::var("TRACER_TEST_WIRE_TOLERANCE_US")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1_000)
}

/// [`tolerance_us`] in nanoseconds, for a test's own comparisons with the wire.
pub fn wire_tolerance_ns() -> u64 {
    tolerance_us() * 1_000
}

/// Whether `tcp:tcp_send_reset` fires for timewait sockets: from 6.10 on (before, only
/// for full sockets).
fn kernel_traces_timewait_resets() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    (major, minor) >= (6, 10)
}

/// Captured tests run one at a time: a test's host times are compared with its wire
/// times within [`tolerance_us`], which other tests' load on the CPUs would stretch.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// tcpdump writing the traffic of one port to a file until [`Capture::finish`]; it also
/// captures datagrams to `marker`, which tell when it has written all before them.
pub struct Capture {
    child: Child,
    file: PathBuf,
    marker: UdpSocket,
    _turn: MutexGuard<'static, ()>,
}

impl Capture {
    /// Starts capturing loopback TCP on `port` and waits until tcpdump listens.
    pub fn start(port: u16) -> Self {
        // A test that failed while capturing left the lock poisoned; the next may go on.
        let turn = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let file =
            std::env::temp_dir().join(format!("tracer-test-{}-{port}.pcap", std::process::id()));
        let marker = UdpSocket::bind("127.0.0.1:0").unwrap();
        let marker_port = marker.local_addr().unwrap().port();
        // `-Z root`: Debian's tcpdump would switch to a `tcpdump` user, which the guests of
        // the kernel matrix do not have (their init writes a passwd with root only).
        let mut child = Command::new("tcpdump")
            .args([
                "-i",
                "lo",
                "-n",
                "-U",
                "-Z",
                "root",
                "--time-stamp-precision=nano",
            ])
            .arg("-w")
            .arg(&file)
            .arg(format!("tcp port {port} or udp dst port {marker_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run tcpdump (install tcpdump)");
        let (send, said) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        let mut lines = Vec::new();
        loop {
            match said.recv_timeout(DEADLINE) {
                Ok(line) if line.contains("listening on") => break,
                Ok(line) => lines.push(line),
                Err(_) => panic!("tcpdump did not start listening: {}", lines.join(" / ")),
            }
        }
        Self {
            child,
            file,
            marker,
            _turn: turn,
        }
    }

    /// [`Capture::finish`], keeping a copy of the capture at `copy` (for another reader
    /// of pcap files, such as tshark).
    pub fn finish_keeping(mut self, copy: &std::path::Path) -> Wire {
        self.stop();
        std::fs::copy(&self.file, copy).expect("cannot copy the capture");
        Wire::read(self.packets())
    }

    /// Waits until tcpdump has written every packet so far (a datagram to the marker
    /// port shows up in the file), stops it and reads the capture.
    pub fn finish(mut self) -> Wire {
        self.stop();
        Wire::read(self.packets())
    }

    /// Waits until tcpdump has written every packet so far, and stops it.
    fn stop(&mut self) {
        let marker = self.marker.local_addr().unwrap();
        self.marker.send_to(b"end", marker).unwrap();
        let deadline = Instant::now() + DEADLINE;
        while !self.contains_datagram_to(marker) {
            assert!(
                Instant::now() < deadline,
                "tcpdump did not write its capture"
            );
            thread::sleep(Duration::from_millis(10));
        }
        let pid = Pid::from_raw(self.child.id() as i32).expect("tcpdump's pid");
        kill_process(pid, Signal::INT).expect("cannot stop tcpdump");
        self.child.wait().unwrap();
    }

    /// The packets written so far, with their times.
    fn packets(&self) -> Vec<(u64, Vec<u8>)> {
        let Ok(mut reader) = File::open(&self.file)
            .map_err(drop)
            .and_then(|file| PcapReader::new(file).map_err(drop))
        else {
            return Vec::new();
        };
        let mut packets = Vec::new();
        // A packet still being written ends the read early.
        while let Some(Ok(packet)) = reader.next_packet() {
            packets.push((packet.timestamp.as_nanos() as u64, packet.data.into_owned()));
        }
        packets
    }

    fn contains_datagram_to(&self, marker: SocketAddr) -> bool {
        self.packets().iter().any(|(_, data)| {
            SlicedPacket::from_ethernet(data).is_ok_and(|packet| {
                matches!(packet.transport, Some(TransportSlice::Udp(udp)) if udp.destination_port() == marker.port())
            })
        })
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.file);
    }
}

/// One TCP segment as captured.
#[derive(Clone, Copy, Debug)]
pub(super) struct Segment {
    pub(super) ns: u64,
    pub(super) from: SocketAddr,
    to: SocketAddr,
    pub(super) seq: u32,
    pub(super) ack: u32,
    pub(super) len: u32,
    pub(super) syn: bool,
    pub(super) ack_flag: bool,
    pub(super) fin: bool,
    pub(super) rst: bool,
    /// A keepalive probe (see the module's doc), and a segment that carried no sequence
    /// space not sent before (data, SYN or FIN sent again): set as the connection reads it.
    pub(super) probe: bool,
    pub(super) retransmission: bool,
}

fn segment(ns: u64, data: &[u8]) -> Option<Segment> {
    let packet = SlicedPacket::from_ethernet(data).ok()?;
    let (source, destination): (IpAddr, IpAddr) = match packet.net? {
        InternetSlice::Ipv4(ip) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        InternetSlice::Ipv6(ip) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        _ => return None,
    };
    let Some(TransportSlice::Tcp(tcp)) = packet.transport else {
        return None;
    };
    Some(Segment {
        ns,
        from: SocketAddr::new(source, tcp.source_port()),
        to: SocketAddr::new(destination, tcp.destination_port()),
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        len: tcp.payload().len() as u32,
        syn: tcp.syn(),
        ack_flag: tcp.ack(),
        fin: tcp.fin(),
        rst: tcp.rst(),
        probe: false,
        retransmission: false,
    })
}

/// What the wire shows of one side's sending.
#[derive(Clone, Debug, Default)]
pub struct Direction {
    /// The SYN's sequence number, and the highest the peer acknowledged.
    isn: Option<u32>,
    acked: Option<u32>,
    /// New payload bytes (retransmissions counted once).
    payload: u64,
    /// Bytes since the peer last answered, and bytes the peer refused: an RST right
    /// after data answers data the peer's socket would not take (it had closed).
    unanswered: u64,
    refused: u64,
    /// The first FIN's time (when this side closed) and the last copy's (the one that
    /// arrived, when a FIN had to be sent again).
    pub fin_ns: Option<u64>,
    last_fin_ns: Option<u64>,
    /// The FIN's sequence number.
    fin_seq: Option<u32>,
    /// This side's FIN, as last sent (a retransmission is the copy that arrived), did not
    /// acknowledge the other's FIN: this side closed before it had taken the other's FIN
    /// in (on loopback, one still in its backlog while `close` held the socket).
    fin_crossed: bool,
    /// The acknowledgment the last copy of this side's FIN carried.
    last_fin_ack: Option<u32>,
    pub resets: u32,
    pub first_reset_ns: Option<u64>,
    /// The peer acknowledged this side's FIN with a segment of its own (no data, no
    /// FIN): a closed socket then hands its ends to a timewait socket, whose resets
    /// (answering the peer's later data) kernels before 6.10 do not trace. A reset that
    /// answers the peer's FIN alone came from the listener (the kernel kept no timewait
    /// socket: a timewait socket in FIN_WAIT2 takes a FIN), which every kernel traces.
    fin_acked_alone: bool,
    /// The first reset this side sent came from a timewait socket.
    first_reset_timewait: bool,
    pub keepalive_probes: u32,
    /// The next sequence number after the highest byte sent.
    next_seq: Option<u32>,
}

/// One connection as the wire shows it.
#[derive(Clone, Debug)]
pub struct WireConnection {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub to_server: Direction,
    pub to_client: Direction,
    pub syn_ns: u64,
    pub synack_ns: Option<u64>,
    /// The client's ACK of the SYN-ACK.
    pub established_ns: Option<u64>,
    /// (to server?, first segment's time) of each data burst.
    bursts: Vec<(bool, u64)>,
    /// The client's SYNs, retransmissions included.
    pub syns: u32,
    /// Every segment, in the capture's order.
    pub(super) segments: Vec<Segment>,
}

impl WireConnection {
    fn new(syn: &Segment) -> Self {
        Self {
            client: syn.from,
            server: syn.to,
            to_server: Direction::default(),
            to_client: Direction::default(),
            syn_ns: syn.ns,
            synack_ns: None,
            established_ns: None,
            bursts: Vec::new(),
            syns: 0,
            segments: Vec::new(),
        }
    }

    fn add(&mut self, segment: &Segment) {
        let to_server = segment.from == self.client;
        if segment.syn && to_server {
            self.syns += 1;
        }
        if segment.syn && !to_server {
            self.synack_ns.get_or_insert(segment.ns);
        }
        if to_server
            && !segment.syn
            && segment.ack_flag
            && self.synack_ns.is_some()
            && self.established_ns.is_none()
        {
            self.established_ns = Some(segment.ns);
        }
        let (direction, peer) = if to_server {
            (&mut self.to_server, &mut self.to_client)
        } else {
            (&mut self.to_client, &mut self.to_server)
        };
        let peer_fin = peer.fin_seq;
        if segment.ack_flag && !segment.rst {
            let acked = peer
                .acked
                .map_or(segment.ack, |acked| acked.max_seq(segment.ack));
            peer.acked = Some(acked);
            peer.fin_acked_alone |= segment.len == 0
                && !segment.fin
                && peer
                    .fin_seq
                    .is_some_and(|fin| (segment.ack.wrapping_sub(fin) as i32) > 0);
        }
        // A reset that answers data (not a FIN alone): what a timewait socket refuses.
        let refuses_data = segment.rst && peer.unanswered > 0;
        if segment.rst {
            peer.refused += peer.unanswered;
        }
        peer.unanswered = 0;
        if segment.syn {
            direction.isn.get_or_insert(segment.seq);
        }
        let end = segment
            .seq
            .wrapping_add(segment.len + u32::from(segment.syn) + u32::from(segment.fin));
        let probe = !segment.syn
            && !segment.fin
            && !segment.rst
            && segment.len <= 1
            && direction
                .next_seq
                .is_some_and(|next| segment.seq == next.wrapping_sub(1));
        let mut captured = Segment { probe, ..*segment };
        captured.retransmission = !probe
            && !segment.rst
            && (segment.len > 0 || segment.syn || segment.fin)
            && direction
                .next_seq
                .is_some_and(|next| (end.wrapping_sub(next) as i32) <= 0);
        self.segments.push(captured);
        if probe {
            direction.keepalive_probes += 1;
            return;
        }
        if segment.rst {
            if direction.first_reset_ns.is_none() {
                direction.first_reset_timewait = direction.fin_acked_alone && refuses_data;
                direction.first_reset_ns = Some(segment.ns);
            }
            direction.resets += 1;
            return;
        }
        let new_bytes = match direction.next_seq {
            Some(next) if (end.wrapping_sub(next) as i32) <= 0 => 0,
            Some(next) => end
                .wrapping_sub(next.max_seq(segment.seq))
                .saturating_sub(u32::from(segment.fin)),
            None => segment.len,
        };
        if segment.fin {
            direction.last_fin_ns = Some(segment.ns);
            if direction.fin_ns.is_none() {
                direction.fin_ns = Some(segment.ns);
                direction.fin_seq = Some(segment.seq.wrapping_add(segment.len));
            }
            direction.fin_crossed =
                peer_fin.is_some_and(|fin| (segment.ack.wrapping_sub(fin) as i32) <= 0);
            direction.last_fin_ack = segment.ack_flag.then_some(segment.ack);
        }
        if direction
            .next_seq
            .is_none_or(|next| (end.wrapping_sub(next) as i32) > 0)
        {
            direction.next_seq = Some(end);
        }
        let new_bytes = new_bytes.min(segment.len);
        direction.payload += u64::from(new_bytes);
        direction.unanswered += u64::from(new_bytes);
        if new_bytes > 0
            && self
                .bursts
                .last()
                .is_none_or(|&(last_to_server, _)| last_to_server != to_server)
        {
            self.bursts.push((to_server, segment.ns));
        }
    }

    /// Payload bytes the peer acknowledged: sequence space from after the SYN to the
    /// highest acknowledgment, less the FIN when that was acknowledged too.
    fn acked_payload(direction: &Direction) -> u64 {
        let (Some(isn), Some(acked)) = (direction.isn, direction.acked) else {
            return 0;
        };
        let fin_acked = direction
            .fin_seq
            .is_some_and(|fin| (acked.wrapping_sub(fin) as i32) > 0);
        u64::from(acked.wrapping_sub(isn.wrapping_add(1))).saturating_sub(u64::from(fin_acked))
    }

    /// The segments `from` sent, as captured: for a failing test to show.
    pub fn segments_from(&self, from: SocketAddr) -> Vec<String> {
        self.segments
            .iter()
            .filter(|segment| segment.from == from)
            .map(|segment| format!("{segment:?}"))
            .collect()
    }

    /// Payload bytes that reached the other side and were not refused.
    fn delivered_payload(direction: &Direction) -> u64 {
        direction.payload - direction.refused
    }

    /// Whether resets the socket at `local`'s side sent include some that the running
    /// kernel does not trace: a timewait socket's, before 6.10.
    pub(super) fn sends_untraced_resets(&self, local: SocketAddr) -> bool {
        let sent = if local == self.client {
            &self.to_server
        } else {
            &self.to_client
        };
        sent.first_reset_timewait && !kernel_traces_timewait_resets()
    }

    /// The payload bytes the socket at `local` sent (acknowledged) and received, as a
    /// record counts them: totals since the connection began.
    pub fn payload(&self, local: SocketAddr) -> (u64, u64) {
        let (sent, received) = if local == self.client {
            (&self.to_server, &self.to_client)
        } else {
            (&self.to_client, &self.to_server)
        };
        (Self::acked_payload(sent), Self::delivered_payload(received))
    }

    pub fn requests(&self) -> u32 {
        self.bursts
            .iter()
            .filter(|(to_server, _)| *to_server)
            .count() as u32
    }

    pub fn responses(&self) -> u32 {
        self.bursts
            .iter()
            .filter(|(to_server, _)| !*to_server)
            .count() as u32
    }

    /// Each answered request's response time, microseconds.
    pub fn response_times_us(&self) -> Vec<u64> {
        self.bursts
            .windows(2)
            .filter(|pair| pair[0].0 && !pair[1].0)
            .map(|pair| (pair[1].1 - pair[0].1) / 1_000)
            .collect()
    }

    /// When the close started: the first FIN or RST either way.
    pub fn close_ns(&self) -> Option<u64> {
        [
            self.to_server.fin_ns,
            self.to_client.fin_ns,
            self.to_server.first_reset_ns,
            self.to_client.first_reset_ns,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// How long a last request without a response waited until the close started.
    pub fn unanswered_us(&self) -> Option<u64> {
        match self.bursts.last() {
            Some(&(true, since)) => self.close_ns().map(|close| (close - since) / 1_000),
            _ => None,
        }
    }

    /// Who ended it, in the words of a record at `local`.
    pub fn close_initiator(&self, local: SocketAddr) -> &'static str {
        let (mine, theirs) = if local == self.client {
            (&self.to_server, &self.to_client)
        } else {
            (&self.to_client, &self.to_server)
        };
        let first = |fin: Option<u64>, d: &Direction| {
            [fin, d.first_reset_ns]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(u64::MAX)
        };
        // As this side's kernel saw it: its own FIN when sent, the peer's when it arrived
        // (the last copy, when FINs were lost).
        let mine_first = first(mine.fin_ns, mine) < first(theirs.last_fin_ns, theirs);
        let (first_dir, first_is_mine) = if mine_first {
            (mine, true)
        } else {
            (theirs, false)
        };
        match (first_dir.fin_ns, first_dir.first_reset_ns) {
            (Some(fin), reset) if reset.is_none_or(|r| fin < r) => {
                // The kernel's FIN_WAIT1 -> CLOSING: a FIN arrived that did not
                // acknowledge this side's. Either the peer closed before this side's FIN
                // reached it, or this side closed before taking in the peer's FIN (which
                // then, sent earlier, cannot acknowledge this side's): the FINs crossed,
                // and both kernels see it so.
                let acks_mine = |ack: Option<u32>| matches!((ack, mine.fin_seq), (Some(ack), Some(fin)) if (ack.wrapping_sub(fin) as i32) > 0);
                if theirs.fin_crossed || (mine.fin_crossed && !acks_mine(theirs.last_fin_ack)) {
                    "simultaneous"
                } else if first_is_mine {
                    "local"
                } else {
                    "remote"
                }
            }
            // The keepalive timer's reset, after its unanswered probes.
            (_, Some(_)) if first_is_mine && mine.keepalive_probes > 0 => "keepalive_timeout",
            (_, Some(_)) if first_is_mine => "reset_sent",
            (_, Some(_)) => "reset_received",
            // Closed (the records compared are) with neither on the wire.
            _ => "aborted",
        }
    }
}

impl WireConnection {
    /// The outcomes a record at `local` may have by what the wire shows (docs/events.md
    /// gives each outcome's pattern). The wire alone cannot tell why SYNs went
    /// unanswered (the kernel gave up, the application did, or an ICMP error that a
    /// TCP capture does not show), nor why an established connection ended without a
    /// FIN or RST; a test that knows says which.
    pub fn outcomes(&self, local: SocketAddr) -> &'static [&'static str] {
        let client = local == self.client;
        let theirs = if client {
            &self.to_client
        } else {
            &self.to_server
        };
        let established = if client {
            self.synack_ns.is_some()
        } else {
            self.established_ns.is_some()
        };
        if !established {
            return match (client, theirs.resets > 0) {
                (true, true) => &["refused"],
                (true, false) => &["connect_timeout", "connect_abandoned", "unreachable"],
                (false, _) => &["handshake_reset"],
            };
        }
        if theirs.resets > 0 {
            return &["reset"];
        }
        match self.close_initiator(local) {
            "keepalive_timeout" => &["keepalive_timeout"],
            "reset_sent" => &["aborted_locally"],
            "local" | "remote" | "simultaneous" => &["completed"],
            _ => &["retransmit_timeout", "aborted_locally"],
        }
    }
}

/// A record's time `field` (RFC 3339), nanoseconds since the epoch: the capture's clock.
pub fn epoch_ns(record: &Value, field: &str) -> u64 {
    let time = humantime::parse_rfc3339(record[field].as_str().unwrap()).unwrap();
    time.duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

trait MaxSeq {
    fn max_seq(self, other: u32) -> u32;
}

impl MaxSeq for u32 {
    /// The later of two sequence numbers (modulo 2^32).
    fn max_seq(self, other: u32) -> u32 {
        if (other.wrapping_sub(self) as i32) > 0 {
            other
        } else {
            self
        }
    }
}

/// Every connection of a capture, by its client's address: a client port can be used again
/// (its socket closed without TIME_WAIT), so each address holds its connections in order.
pub struct Wire {
    connections: BTreeMap<SocketAddr, Vec<WireConnection>>,
}

impl Wire {
    fn read(packets: Vec<(u64, Vec<u8>)>) -> Self {
        let mut connections: BTreeMap<SocketAddr, Vec<WireConnection>> = BTreeMap::new();
        for (ns, data) in packets {
            let Some(segment) = segment(ns, &data) else {
                continue;
            };
            if segment.syn && !segment.ack_flag {
                let incarnations = connections.entry(segment.from).or_default();
                // A retransmitted SYN carries the same sequence number: same connection.
                if incarnations
                    .last()
                    .is_none_or(|last| last.to_server.isn != Some(segment.seq))
                {
                    incarnations.push(WireConnection::new(&segment));
                }
            }
            let key = if connections.contains_key(&segment.from) {
                segment.from
            } else {
                segment.to
            };
            if let Some(connection) = connections.get_mut(&key).and_then(|c| c.last_mut()) {
                connection.add(&segment);
            }
        }
        Self { connections }
    }

    /// The connection between `a` and `b`, either way round, whose SYN is nearest to
    /// `start_ns` (wall clock).
    pub fn connection(&self, a: SocketAddr, b: SocketAddr, start_ns: u64) -> &WireConnection {
        let between = |client: &SocketAddr, server: SocketAddr| {
            self.connections
                .get(client)
                .into_iter()
                .flatten()
                .filter(move |c| c.server == server)
        };
        between(&a, b)
            .chain(between(&b, a))
            .min_by_key(|c| c.syn_ns.abs_diff(start_ns))
            .unwrap_or_else(|| {
                panic!(
                    "no connection {a} - {b} in the capture: {:#?}",
                    self.connections.keys()
                )
            })
    }

    /// Asserts that `record` (a `connection` line) agrees with the wire on every field the
    /// wire shows: payload bytes each way, who closed, resets each way, keepalive probes,
    /// requests and responses, response times and an unanswered request (within
    /// [`tolerance_us`]), and the handshake's time.
    pub fn assert_agrees(&self, record: &Value) {
        let field = |name: &str| -> SocketAddr { record[name].as_str().unwrap().parse().unwrap() };
        let (local, remote) = (field("local"), field("remote"));
        let wire = self.connection(local, remote, epoch_ns(record, "start"));
        let client = local == wire.client;
        let (sent, received) = if client {
            (&wire.to_server, &wire.to_client)
        } else {
            (&wire.to_client, &wire.to_server)
        };
        let context = || format!("record {record:#}\nwire {wire:#?}");
        let (bytes_sent, bytes_received) = wire.payload(local);
        assert_eq!(
            record["bytes_sent"],
            bytes_sent,
            "bytes sent: {}",
            context()
        );
        assert_eq!(
            record["bytes_received"],
            bytes_received,
            "bytes received: {}",
            context()
        );
        assert_eq!(
            record["close_initiator"],
            wire.close_initiator(local),
            "{}",
            context()
        );
        let outcomes = wire.outcomes(local);
        assert!(
            outcomes.contains(&record["outcome"].as_str().unwrap_or("none")),
            "outcome: the wire says one of {outcomes:?}: {}",
            context()
        );
        // A socket sends one reset: it closes with it (a full socket) or is removed (a
        // timewait socket), so any later reset from this side found no socket (it answers
        // a segment that was in flight).
        assert_eq!(
            record["resets_sent"],
            u32::from(sent.resets > 0 && !wire.sends_untraced_resets(local)),
            "resets sent: {}",
            context()
        );
        // A socket takes one reset: the first closes it, and any later one (e.g. answering
        // a FIN sent before the first arrived) finds no socket.
        assert_eq!(
            record["resets_received"],
            received.resets.min(1),
            "resets received: {}",
            context()
        );
        assert_eq!(
            record["keepalive"]["probes_sent"],
            sent.keepalive_probes,
            "keepalive probes: {}",
            context()
        );
        let tolerance_us = tolerance_us();
        let close_enough = |tracer: &Value, wire: u64, what: &str| {
            let tracer = tracer
                .as_u64()
                .unwrap_or_else(|| panic!("no {what}: {}", context()));
            assert!(
                tracer.abs_diff(wire) <= tolerance_us,
                "{what}: tracer {tracer} us, wire {wire} us: {}",
                context()
            );
        };
        let handshake_us = if client {
            wire.synack_ns.map(|synack| (synack - wire.syn_ns) / 1_000)
        } else {
            wire.established_ns.map(|ack| (ack - wire.syn_ns) / 1_000)
        };
        if let Some(wire_us) = handshake_us {
            close_enough(&record["handshake_us"], wire_us, "handshake");
        }
        // Without the data hook (some attach modes) the tracer does not know.
        if record["requests"].is_null() {
            return;
        }
        assert_eq!(
            (&record["requests"], &record["responses"]),
            (&wire.requests().into(), &wire.responses().into()),
            "requests and responses: {}",
            context()
        );
        let times = wire.response_times_us();
        if times.is_empty() {
            assert_eq!(record["response_time_us"], Value::Null, "{}", context());
        } else {
            let measured = &record["response_time_us"];
            assert_eq!(measured["count"], times.len(), "{}", context());
            close_enough(
                &measured["min"],
                *times.iter().min().unwrap(),
                "fastest response",
            );
            close_enough(
                &measured["max"],
                *times.iter().max().unwrap(),
                "slowest response",
            );
        }
        match wire.unanswered_us() {
            Some(waited) => {
                close_enough(&record["unanswered_request_us"], waited, "unanswered wait")
            }
            // Waiting when the socket closed with nothing on the wire (a retransmit
            // timeout): how long, only the host knows.
            None if wire.close_ns().is_none() && matches!(wire.bursts.last(), Some((true, _))) => {
                assert!(
                    record["unanswered_request_us"].as_u64().is_some(),
                    "a request left waiting: {}",
                    context()
                )
            }
            None => assert_eq!(
                record["unanswered_request_us"],
                Value::Null,
                "{}",
                context()
            ),
        }
    }
}
