//! What `tracer top` shows, kept by a sink at the end of the pipeline ([`TopSink`]): per
//! group (a traced port, a remote address, a process), the connections open now, totals
//! since start, and what the last interval saw (new and closed connections, handshake and
//! response times). The view takes a [`Sample`] about once a second, which starts the next
//! interval; the lock is held for the update of one event, or for one copy of the rows.
//! Beyond a thousand groups of a grouping (a busy server's peers), those idle for a
//! minute with nothing open are forgotten, and the header counts them.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    io,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
};

use crate::{
    clock::WallClock,
    event::{Cgroup, Direction, EventMeta, TcpState, TraceEvent},
    kernel::{attach::AttachPlan, program_stats::Costs, selector::matched_port},
    output::{RecordEnd, Sink, StopSummary},
    pipeline::workload::container::container_of,
    pipeline::{
        correlator::{Closes, ConnectionRecord, ResponseTime},
        reader::LossCause,
    },
    vocabulary::{following, names},
};

/// What the rows are grouped by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grouping {
    /// The traced port a connection matched (its local port if traced, else its remote).
    Port,
    /// The remote address, without its port.
    Remote,
    /// The process (`comm`) holding the connection; `-` while none is known.
    Process,
    /// The container its socket's cgroup names (`podman 0123456789ab`), else the cgroup's
    /// path (a systemd service's); `-` when none is known.
    Workload,
}

names!(Grouping as "grouping" {
    Port => "port",
    Remote => "remote",
    Process => "process",
    Workload => "workload",
});

/// A connection's group in each grouping, in the order of [`Grouping`].
type Keys = [String; 4];

/// The workload group of a socket in `cgroup`.
fn workload(cgroup: Option<&Cgroup>) -> String {
    let Some(path) = cgroup.and_then(|cgroup| cgroup.path.as_deref()) else {
        return NO_PROCESS.to_owned();
    };
    // Named by the runtime: the pod and the container, as `kubectl` shows them.
    if let Some(names) = cgroup.and_then(|cgroup| cgroup.names.as_deref())
        && let Some(pod) = &names.pod
    {
        let container = names.container.as_deref().unwrap_or("-");
        return format!("{}/{} {container}", pod.namespace, pod.name);
    }
    match container_of(path) {
        Some(container) => format!(
            "{} {}",
            container.runtime.unwrap_or("container"),
            &container.id[..12]
        ),
        None => path.to_owned(),
    }
}

impl Grouping {
    /// The grouping the `g` key switches to.
    pub fn next(self) -> Self {
        following(Self::ALL, self)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A group's counts: totals since tracing started, and its last interval.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupStats {
    /// Connections open at the sample.
    pub open: u64,
    pub closed: Closes,
    pub resets_sent: u64,
    pub resets_received: u64,
    pub retransmits: u64,
    pub keepalive_timeouts: u64,
    /// Closed connections' requests, and how many closed connections counted them.
    pub requests: u64,
    pub requests_of: u64,
    /// The last interval.
    pub new: u64,
    pub closed_now: Closes,
    pub handshakes_us: Vec<u64>,
    pub responses_us: Vec<u64>,
    /// Samples since anything counted here.
    idle_samples: u32,
}

impl GroupStats {
    /// Requests per closed connection, when any counted them.
    pub fn requests_per_connection(&self) -> Option<f64> {
        (self.requests_of > 0).then(|| self.requests as f64 / self.requests_of as f64)
    }

    fn start_interval(&mut self) {
        self.idle_samples += 1;
        self.new = 0;
        self.closed_now = Closes::default();
        self.handshakes_us.clear();
        self.responses_us.clear();
    }
}

/// An open connection: which groups it belongs to. Kept by socket from its first state
/// to CLOSE.
#[derive(Clone, Debug)]
struct Open {
    keys: Keys,
    /// Counted as new in its process's group yet (its process is learnt after the
    /// handshake on the server's side: the kernel completes that in softirq).
    process_counted: bool,
}

/// What tracing reported about itself.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tracing {
    pub kernel: String,
    pub ports: Vec<u16>,
    pub events: u64,
    /// Connection records: connections closed (or evicted) since tracing started.
    pub records: u64,
    pub lost: u64,
    /// The eBPF programs' run time (ns) and runs, summed, as the kernel counts them while
    /// its BPF statistics are on; `None` until sampled (never in a replay).
    pub kernel_cost: Option<KernelCost>,
}

/// What the kernel counted of tracer's programs: their run time and runs, summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCost {
    pub run_time_ns: u64,
    pub runs: u64,
}

impl KernelCost {
    fn of(costs: &Costs) -> Self {
        costs.iter().fold(Self::default(), |sum, (_, stats)| Self {
            run_time_ns: sum.run_time_ns + stats.run_time_ns,
            runs: sum.runs + stats.run_count,
        })
    }

    fn since(self, earlier: Self) -> Self {
        Self {
            run_time_ns: self.run_time_ns.saturating_sub(earlier.run_time_ns),
            runs: self.runs.saturating_sub(earlier.runs),
        }
    }
}

/// The rows of one grouping and what tracing reported, at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    pub tracing: Tracing,
    /// Events received in the interval.
    pub events: u64,
    /// What the kernel counted of the programs in the interval, when it was sampled.
    pub kernel_cost: Option<KernelCost>,
    /// Idle groups forgotten since tracing started (see [`MAX_GROUPS`]).
    pub forgotten_groups: u64,
    /// How far the events' own time went in the interval: a replay's rates are per second
    /// of the trace, whatever the speed it is shown at.
    pub trace_ns: u64,
    pub rows: Vec<(String, GroupStats)>,
}

/// Records kept for the view to list and draw, the most recent.
const RECENT: usize = 512;

/// A connection's record, with the groups it belongs to and when it was written.
#[derive(Clone, Debug)]
pub struct Recent {
    pub keys: Keys,
    pub clock: WallClock,
    pub record: Arc<ConnectionRecord>,
}

/// Groups kept per grouping before idle ones are forgotten: a busy server's peers would
/// otherwise grow the view without bound.
const MAX_GROUPS: usize = 1_000;
/// Samples (seconds) a group counts nothing before it may be forgotten.
const IDLE_SAMPLES: u32 = 60;

/// The state the sink keeps and the view samples.
#[derive(Debug, Default)]
pub struct TopState {
    tracing: Option<Tracing>,
    open: HashMap<u64, Open>,
    groups: [BTreeMap<String, GroupStats>; 4],
    recent: VecDeque<Recent>,
    /// Events received by the last sample.
    events_sampled: u64,
    /// The programs' cost by the last sample.
    cost_sampled: KernelCost,
    /// Groups forgotten (see [`MAX_GROUPS`]).
    forgotten_groups: u64,
    /// The latest event's time, and what it was at the last sample.
    latest_ns: Option<u64>,
    latest_sampled_ns: Option<u64>,
}

/// The process key of a connection no process is known for yet.
const NO_PROCESS: &str = "-";

impl TopState {
    /// Whether tracing has started (the view waits for it).
    pub fn started(&self) -> bool {
        self.tracing.is_some()
    }

    /// Tracing started on `kernel`, for `ports`.
    pub fn start(&mut self, kernel: &str, ports: &[u16]) {
        self.tracing = Some(Tracing {
            kernel: kernel.to_owned(),
            ports: ports.to_vec(),
            ..Tracing::default()
        });
    }

    fn keys(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        comm: Option<&str>,
        cgroup: Option<&Cgroup>,
    ) -> Keys {
        let ports = self.tracing.as_ref().map_or(&[][..], |t| &t.ports[..]);
        [
            matched_port(ports, local, remote).to_string(),
            remote.ip().to_canonical().to_string(),
            comm.unwrap_or(NO_PROCESS).to_owned(),
            workload(cgroup),
        ]
    }

    fn group(&mut self, grouping: Grouping, key: &str) -> &mut GroupStats {
        let groups = &mut self.groups[grouping.index()];
        if !groups.contains_key(key) {
            groups.insert(key.to_owned(), GroupStats::default());
        }
        let group = groups.get_mut(key).expect("inserted");
        group.idle_samples = 0;
        group
    }

    /// Forgets the groups beyond [`MAX_GROUPS`] of a grouping that have nothing open and
    /// have counted nothing for [`IDLE_SAMPLES`] samples, the longest idle first.
    fn forget_idle_groups(&mut self) {
        for grouping in Grouping::ALL {
            let groups = &mut self.groups[grouping.index()];
            if groups.len() <= MAX_GROUPS {
                continue;
            }
            let open: HashSet<&str> = (self.open.values())
                .map(|open| open.keys[grouping.index()].as_str())
                .collect();
            let mut idle: Vec<(u32, String)> = (groups.iter())
                .filter(|(key, g)| g.idle_samples >= IDLE_SAMPLES && !open.contains(key.as_str()))
                .map(|(key, g)| (g.idle_samples, key.clone()))
                .collect();
            idle.sort_unstable_by(|a, b| b.cmp(a));
            for (_, key) in idle.into_iter().take(groups.len() - MAX_GROUPS) {
                groups.remove(&key);
                self.forgotten_groups += 1;
            }
        }
    }

    fn each(&mut self, keys: &Keys, mut update: impl FnMut(&mut GroupStats)) {
        for grouping in Grouping::ALL {
            update(self.group(*grouping, &keys[grouping.index()]));
        }
    }

    /// The groups of the connection an event is about, from the event.
    fn event_keys(&self, meta: &EventMeta) -> Keys {
        let comm = meta.process.as_ref().map(|p| p.comm.as_str());
        self.keys(meta.local, meta.remote, comm, meta.cgroup.as_ref())
    }

    /// The groups of the connection an event is about: those it opened with, or else
    /// the event's.
    fn keys_of(&self, meta: &EventMeta) -> Keys {
        match self.open.get(&meta.sock) {
            Some(open) => open.keys.clone(),
            None => self.event_keys(meta),
        }
    }

    pub fn event(&mut self, event: &TraceEvent) {
        if let Some(tracing) = &mut self.tracing {
            tracing.events += 1;
        }
        let meta = event.meta();
        self.latest_ns = self.latest_ns.max(Some(meta.boot_ns));
        let comm = meta.process.as_ref().map(|p| p.comm.as_str());
        match event {
            TraceEvent::StateChange(change)
                if matches!(change.new_state, TcpState::SynSent | TcpState::SynRecv) =>
            {
                let keys = self.event_keys(meta);
                let process_counted = comm.is_some();
                for grouping in [Grouping::Port, Grouping::Remote] {
                    self.group(grouping, &keys[grouping.index()]).new += 1;
                }
                if process_counted {
                    self.group(Grouping::Process, &keys[2]).new += 1;
                }
                self.open.insert(
                    meta.sock,
                    Open {
                        keys,
                        process_counted,
                    },
                );
            }
            // Its socket is gone (its record follows after a grace period, by when the
            // kernel may have given its address to a new socket).
            TraceEvent::StateChange(change)
                if change.new_state == TcpState::Close && change.old_state != TcpState::Listen =>
            {
                if let Some(open) = self.open.remove(&meta.sock)
                    && !open.process_counted
                {
                    self.group(Grouping::Process, &open.keys[2]).new += 1;
                }
            }
            TraceEvent::Existing(existing) if existing.state != TcpState::Listen => {
                let keys = self.event_keys(meta);
                self.open.insert(
                    meta.sock,
                    Open {
                        keys,
                        process_counted: true,
                    },
                );
            }
            TraceEvent::Reset(reset) => {
                let keys = self.keys_of(meta);
                let sent = reset.direction == Direction::Sent;
                self.each(&keys, |g| {
                    if sent {
                        g.resets_sent += 1;
                    } else {
                        g.resets_received += 1;
                    }
                });
            }
            TraceEvent::Retransmit(_) => {
                let keys = self.keys_of(meta);
                self.each(&keys, |g| g.retransmits += 1);
            }
            TraceEvent::KeepaliveTimeout(_) => {
                let keys = self.keys_of(meta);
                self.each(&keys, |g| g.keepalive_timeouts += 1);
            }
            _ => {}
        }
        // The process of a connection, once an event in its process's context names it.
        if let Some(comm) = comm
            && let Some(open) = self.open.get_mut(&meta.sock)
            && !open.process_counted
        {
            open.process_counted = true;
            open.keys[2] = comm.to_owned();
            let key = open.keys[2].clone();
            self.group(Grouping::Process, &key).new += 1;
        }
    }

    pub fn record(&mut self, clock: WallClock, record: &ConnectionRecord) {
        if let Some(tracing) = &mut self.tracing {
            tracing.records += 1;
        }
        let keys = self.keys(
            record.local,
            record.remote,
            record.comm.as_deref(),
            record.cgroup.as_deref(),
        );
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(Recent {
            keys: keys.clone(),
            clock,
            record: Arc::new(record.clone()),
        });
        self.each(&keys, |g| {
            g.closed.count(record.close_initiator);
            g.closed_now.count(record.close_initiator);
            if let Some(us) = record.handshake_us {
                g.handshakes_us.push(us);
            }
            if let Some(requests) = record.requests {
                g.requests += u64::from(requests);
                g.requests_of += 1;
            }
        });
    }

    pub fn response(&mut self, response: &ResponseTime) {
        let keys = self.keys(response.local, response.remote, None, None);
        for grouping in [Grouping::Port, Grouping::Remote] {
            let micros = response.micros;
            self.group(grouping, &keys[grouping.index()])
                .responses_us
                .push(micros);
        }
    }

    /// The connections of group `key` of `grouping` recently written, the latest to end
    /// first.
    pub fn recent(&self, grouping: Grouping, key: &str) -> Vec<Recent> {
        let mut recent: Vec<Recent> = self
            .recent
            .iter()
            .filter(|recent| recent.keys[grouping.index()] == key)
            .cloned()
            .collect();
        recent.sort_by_key(|recent| std::cmp::Reverse(recent.record.end_ns));
        recent
    }

    /// The rows of `grouping` now: totals, and the interval so far.
    pub fn rows(&self, grouping: Grouping) -> Vec<(String, GroupStats)> {
        let mut open: BTreeMap<&str, u64> = BTreeMap::new();
        for connection in self.open.values() {
            *open.entry(&connection.keys[grouping.index()]).or_default() += 1;
        }
        let groups = &self.groups[grouping.index()];
        let mut rows: BTreeMap<String, GroupStats> = groups.clone();
        // A group with connections open and nothing counted yet (a server's process before
        // it is known) has a row too.
        for (key, count) in open {
            rows.entry(key.to_owned()).or_default().open = count;
        }
        rows.into_iter().collect()
    }

    /// The rows of `grouping` now, and the start of the next interval for every grouping.
    pub fn sample(&mut self, grouping: Grouping) -> Sample {
        self.forget_idle_groups();
        let rows = self.rows(grouping);
        for groups in &mut self.groups {
            groups.values_mut().for_each(GroupStats::start_interval);
        }
        let tracing = self.tracing.clone().unwrap_or_default();
        let events = tracing.events - self.events_sampled;
        self.events_sampled = tracing.events;
        let kernel_cost = tracing.kernel_cost.map(|cost| {
            let interval = cost.since(self.cost_sampled);
            self.cost_sampled = cost;
            interval
        });
        // From the first event on.
        let trace_ns = match (self.latest_sampled_ns, self.latest_ns) {
            (Some(sampled), Some(latest)) => latest - sampled,
            _ => 0,
        };
        self.latest_sampled_ns = self.latest_ns;
        Sample {
            tracing,
            events,
            kernel_cost,
            forgotten_groups: self.forgotten_groups,
            trace_ns,
            rows,
        }
    }
}

/// The pipeline's sink in `tracer top`: it keeps [`TopState`] and writes nothing.
#[derive(Clone, Debug, Default)]
pub struct TopSink(pub Arc<Mutex<TopState>>);

impl TopSink {
    fn state(&self) -> MutexGuard<'_, TopState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Sink for TopSink {
    fn tracer_start(&mut self, kernel: &str, _plan: &AttachPlan, ports: &[u16]) -> io::Result<()> {
        self.state().start(kernel, ports);
        Ok(())
    }

    fn event(&mut self, _clock: WallClock, event: &TraceEvent) -> io::Result<()> {
        self.state().event(event);
        Ok(())
    }

    fn connection(
        &mut self,
        clock: WallClock,
        record: &ConnectionRecord,
        _end: RecordEnd,
    ) -> io::Result<()> {
        self.state().record(clock, record);
        Ok(())
    }

    fn response(&mut self, response: &ResponseTime) -> io::Result<()> {
        self.state().response(response);
        Ok(())
    }

    fn program_costs(&mut self, costs: &Costs) -> io::Result<()> {
        if let Some(tracing) = &mut self.state().tracing {
            tracing.kernel_cost = Some(KernelCost::of(costs));
        }
        Ok(())
    }

    fn lost(&mut self, count: u64, _cause: LossCause) -> io::Result<()> {
        if let Some(tracing) = &mut self.state().tracing {
            tracing.lost += count;
        }
        Ok(())
    }

    fn undecodable(&mut self, count: u64, _reason: &str) -> io::Result<()> {
        if let Some(tracing) = &mut self.state().tracing {
            tracing.lost += count;
        }
        Ok(())
    }

    fn tracer_stop(&mut self, _summary: &StopSummary) -> io::Result<()> {
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        fixture::events::{MS, SERVER_PORT, Side, curl, process},
        kernel::attach::AttachPlan,
        pipeline::{Emit, Pipeline, PipelineConfig, Traced},
    };
    use TcpState::*;

    /// A client (curl) and its server (nginx, known from its accept on), through the real
    /// pipeline into the sink.
    #[test]
    fn groups_count_open_new_and_closed_connections() {
        let sink = TopSink::default();
        let state = Arc::clone(&sink.0);
        let config = PipelineConfig {
            emit: Emit::All,
            max_connections: 16,
            keep_events: false,
        };
        let traced = Traced {
            data_turns: false,
            timewait_fin_timeout_ns: None,
        };
        let mut pipeline = Pipeline::new(config, traced, sink, WallClock::from_offset_ns(0));
        pipeline
            .sink
            .tracer_start("6.1", &AttachPlan::default(), &[SERVER_PORT])
            .unwrap();
        let client = Side::client(1, 40_000).timed(0, MS);
        let server = Side::server(2, 40_000).timed(0, MS);
        let nginx = process(7, "nginx");
        let mut events = client.connect(0);
        events.push(server.state(0, Listen, SynRecv));
        events.push(server.established(0, Some(30), 0));
        for event in &events {
            pipeline.event(event).unwrap();
        }
        let sample = state.lock().unwrap().sample(Grouping::Process);
        let rows: BTreeMap<_, _> = sample.rows.into_iter().collect();
        // The server's process is not known yet: its socket is open under `-`, not new.
        assert_eq!((rows["curl"].open, rows["curl"].new), (1, 1));
        assert_eq!((rows["-"].open, rows["-"].new), (1, 0));

        let closing = [
            server.accepted(1, nginx.clone()),
            client.state_by(2, Established, FinWait1, curl()),
            server.state(2, Established, CloseWait),
            client.state(2, FinWait1, FinWait2),
            server.state_by(3, CloseWait, LastAck, nginx),
            client.state(3, FinWait2, Close),
            server.state(3, LastAck, Close),
        ];
        for event in &closing {
            pipeline.event(event).unwrap();
        }
        pipeline.reap_last().unwrap();
        let mut top = state.lock().unwrap();
        let sample = top.sample(Grouping::Process);
        // The events' own time went on to 3 ms since the first sample.
        let sampled_at = events.iter().map(|e| e.meta().boot_ns).max().unwrap();
        assert_eq!(sample.trace_ns, 3 * MS - sampled_at);
        let rows: BTreeMap<_, _> = sample.rows.into_iter().collect();
        assert_eq!((rows["nginx"].open, rows["nginx"].new), (0, 1), "{rows:#?}");
        assert_eq!(rows["nginx"].closed.remote, 1);
        assert_eq!(rows["curl"].closed.local, 1);
        let port = &top.rows(Grouping::Port)[0];
        assert_eq!(port.0, SERVER_PORT.to_string());
        assert_eq!(
            (port.1.open, port.1.closed.local + port.1.closed.remote),
            (0, 2)
        );
        // The interval started again with the sample: nothing new in it.
        assert_eq!(port.1.new, 0);
        let last = top.sample(Grouping::Port);
        assert_eq!((last.tracing.records, last.trace_ns), (2, 0));
    }

    /// Beyond the bound, groups idle long enough are forgotten, the longest idle first,
    /// never one with a connection open.
    #[test]
    fn idle_groups_beyond_the_bound_are_forgotten() {
        let mut top = TopState::default();
        top.start("6.1", &[SERVER_PORT]);
        let peer = |n: usize| format!("10.0.{}.{}", n / 256, n % 256);
        let extra = 5;
        for n in 0..MAX_GROUPS + extra {
            top.group(Grouping::Remote, &peer(n)).new += 1;
        }
        // The first peer has a connection open.
        let keys = [
            SERVER_PORT.to_string(),
            peer(0),
            NO_PROCESS.to_owned(),
            NO_PROCESS.to_owned(),
        ];
        top.open.insert(
            1,
            Open {
                keys,
                process_counted: true,
            },
        );
        for _ in 0..IDLE_SAMPLES {
            // The last peer keeps counting.
            top.group(Grouping::Remote, &peer(MAX_GROUPS + extra - 1))
                .new += 1;
            assert_eq!(top.sample(Grouping::Remote).forgotten_groups, 0);
        }
        let sample = top.sample(Grouping::Remote);
        assert_eq!(sample.forgotten_groups, extra as u64);
        let left: Vec<&str> = sample.rows.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(left.len(), MAX_GROUPS);
        assert!(left.contains(&peer(0).as_str()), "the open one stays");
        assert!(left.contains(&peer(MAX_GROUPS + extra - 1).as_str()));
    }
}
