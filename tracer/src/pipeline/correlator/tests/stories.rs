//! Any interleaving of whole lifecycles on a few reused socket addresses gives each its
//! record.

use proptest::prelude::*;

use super::*;

/// Lifecycles the kernel produces, with the record each must give.
#[derive(Clone, Copy, Debug)]
enum Story {
    ClientLocal,
    ClientRemote,
    Server,
    Refused,
    Linger0,
    KeepaliveTimeout,
    ConnectTimeout,
}

impl Story {
    fn events(self, side: &Side) -> (Vec<TraceEvent>, Vec<TcpState>, CloseInitiator) {
        use Direction::*;
        let s = |old, new| side.state(0, old, new);
        let (events, initiator) = match self {
            Self::ClientLocal => (
                vec![
                    s(Close, SynSent),
                    s(SynSent, Established),
                    side.turn(0, Sent),
                    side.turn(0, Received),
                    s(Established, FinWait1),
                    s(FinWait1, FinWait2),
                    s(FinWait2, Close),
                ],
                CloseInitiator::Local,
            ),
            Self::ClientRemote => (
                vec![
                    s(Close, SynSent),
                    s(SynSent, Established),
                    side.probe(0, 1),
                    s(Established, CloseWait),
                    s(CloseWait, LastAck),
                    s(LastAck, Close),
                ],
                CloseInitiator::Remote,
            ),
            Self::Server => (
                vec![
                    s(Listen, SynRecv),
                    s(SynRecv, Established),
                    side.accepted(0, process(7, "server")),
                    side.turn(0, Received),
                    side.turn(0, Sent),
                    side.summary(0, None, TOTALS),
                    s(Established, FinWait1),
                    s(FinWait1, Close),
                ],
                CloseInitiator::Local,
            ),
            Self::Refused => (
                vec![
                    s(Close, SynSent),
                    side.reset(0, Direction::Received),
                    s(SynSent, Close),
                ],
                CloseInitiator::ResetReceived,
            ),
            Self::Linger0 => (
                vec![
                    s(Close, SynSent),
                    s(SynSent, Established),
                    side.retransmit(0),
                    s(Established, Close),
                    side.reset(0, Direction::Sent),
                ],
                CloseInitiator::ResetSent,
            ),
            Self::KeepaliveTimeout => (
                vec![
                    s(Close, SynSent),
                    s(SynSent, Established),
                    side.probe(0, 1),
                    side.probe(0, 2),
                    side.reset(0, Direction::Sent),
                    side.summary(0, None, TOTALS),
                    s(Established, Close),
                    side.keepalive_timeout(0, 2),
                ],
                CloseInitiator::KeepaliveTimeout,
            ),
            Self::ConnectTimeout => (
                vec![s(Close, SynSent), s(SynSent, Close)],
                CloseInitiator::Aborted,
            ),
        };
        let states = events
            .iter()
            .filter_map(|event| match event {
                TraceEvent::StateChange(change) => Some(change.new_state),
                _ => None,
            })
            .collect();
        (events, states, initiator)
    }
}

fn story() -> impl Strategy<Value = Story> {
    prop_oneof![
        Just(Story::ClientLocal),
        Just(Story::ClientRemote),
        Just(Story::Server),
        Just(Story::Refused),
        Just(Story::Linger0),
        Just(Story::KeepaliveTimeout),
        Just(Story::ConnectTimeout),
    ]
}

fn set_time(event: &mut TraceEvent, ns: u64) {
    event.meta_mut().boot_ns = ns;
}

const SOCKS: u64 = 3;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Lifecycles on a few socket addresses (so addresses are reused), each socket's
    /// in order, interleaved across sockets, some events dropped, timestamps jittered
    /// as across CPUs.
    #[test]
    fn any_interleaving_is_handled(
        lifecycles in prop::collection::vec((story(), 0..SOCKS), 1..10),
        picks in prop::collection::vec(any::<u8>(), 100),
        drops in prop::collection::vec(prop::bool::weighted(0.08), 100),
        jitter in prop::collection::vec(0..5_000u64, 100),
        max_connections in 1..6usize,
    ) {
        // Per socket, its lifecycles' events in order, tagged with the lifecycle.
        let mut queues: Vec<VecDeque<(usize, TraceEvent)>> = vec![VecDeque::new(); SOCKS as usize];
        let mut expected = Vec::new();
        for (index, &(story, sock)) in lifecycles.iter().enumerate() {
            let side = Side::client(0x100 + sock, 10_000 + index as u16);
            let (events, states, initiator) = story.events(&side);
            queues[sock as usize].extend(events.into_iter().map(|event| (index, event)));
            expected.push((states, initiator));
        }
        let mut stream = Vec::new();
        let mut n = 0;
        while queues.iter().any(|queue| !queue.is_empty()) {
            let ready: Vec<usize> = (0..queues.len()).filter(|&q| !queues[q].is_empty()).collect();
            let q = ready[usize::from(picks[n % picks.len()]) % ready.len()];
            let (lifecycle, mut event) = queues[q].pop_front().unwrap();
            set_time(&mut event, 1_000_000 + n as u64 * 1_000 + jitter[n % jitter.len()]);
            stream.push((lifecycle, drops[n % drops.len()], event));
            n += 1;
        }
        // Well formed: nothing of it dropped, nor the first event of the next
        // lifecycle on its socket (else that one's late facts could join it).
        let mut well_formed = vec![true; lifecycles.len()];
        for (lifecycle, dropped, _) in &stream {
            if *dropped {
                well_formed[*lifecycle] = false;
            }
        }
        for (index, &(_, sock)) in lifecycles.iter().enumerate() {
            let next = (index + 1..lifecycles.len()).find(|&later| lifecycles[later].1 == sock);
            if let Some(next) = next {
                let first = stream.iter().find(|(lifecycle, ..)| *lifecycle == next).unwrap();
                if first.1 {
                    well_formed[index] = false;
                }
            }
        }

        let mut correlator = Correlator::new(CorrelatorConfig {
            max_connections,
            stale_after_ns: 50_000,
            keep_events: true,
            data_turns: true,
            follow_timewait: None,
        });
        let mut outputs = Vec::new();
        for (i, (_, dropped, event)) in stream.iter().enumerate() {
            if !dropped {
                correlator.observe(event, &mut |output| outputs.push(output));
            }
            prop_assert!(correlator.open_connections() <= max_connections);
            if i % 7 == 0 {
                correlator.reap(event.meta().boot_ns, &mut |output| outputs.push(output));
            }
        }
        correlator.reap(u64::MAX, &mut |output| outputs.push(output));
        prop_assert_eq!(correlator.open_connections(), 0);

        let mut records_of = vec![Vec::new(); lifecycles.len()];
        for output in &outputs {
            let (record, closed) = match output {
                Output::Connection(record) => (record, true),
                Output::Evicted(record) | Output::Reaped(record) | Output::Ended(record) => {
                    (record, false)
                }
                Output::Response(_) => continue,
            };
            prop_assert!(record.end_ns >= record.start_ns);
            prop_assert!(record.states.windows(2).all(|w| w[0].offset_us <= w[1].offset_us));
            prop_assert!(record.states.last().is_none_or(|last| last.offset_us <= record.duration_us));
            records_of[usize::from(record.local.port() - 10_000)].push((record, closed));
        }
        // Enough room: each well-formed lifecycle is exactly one connection record,
        // telling its story.
        if max_connections >= SOCKS as usize {
            for (index, (states, initiator)) in expected.iter().enumerate() {
                if !well_formed[index] {
                    continue;
                }
                let records = &records_of[index];
                prop_assert_eq!(records.len(), 1, "lifecycle {}: {:#?}", index, records);
                let (record, closed) = records[0];
                prop_assert!(closed);
                prop_assert!(record.observed_from_start);
                let got: Vec<TcpState> = record.states.iter().map(|entry| entry.state).collect();
                prop_assert_eq!(&got, states);
                prop_assert_eq!(record.close_initiator, *initiator);
            }
        }
    }
}
