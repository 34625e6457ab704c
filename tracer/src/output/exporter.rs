//! Exporters: sinks that talk to a network (a collector, a vendor's endpoint). Each runs
//! on a task of its own behind a bounded queue, so a slow or absent peer never stalls the
//! ring buffer's reader: the pipeline hands a [`QueuedSink`] owned copies of what it
//! produces and never waits; when the queue is full the copy is dropped and counted. The
//! tasks run on a thread of their own ([`runtime`]): building and encoding requests costs
//! more than tracing the connections they tell of (measured in docs/performance.md), and
//! on the reader's thread it would slow the reader.
//! Every item offered to an exporter ends in exactly one [`ExportOutcome`], counted in
//! `tracer_exporter_items_total{exporter,outcome}` and in `tracer_stop`'s `exporters`.
//!
//! The JSON and pretty sinks stay synchronous: their writer is a file or a pipe the
//! operator chose, and a full pipe should slow tracer down rather than lose lines.

use std::{
    collections::BTreeMap,
    future::Future,
    io,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde::Serialize;
use tokio::{
    runtime::Runtime,
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

use crate::{
    clock::WallClock,
    event::TraceEvent,
    kernel::attach::AttachPlan,
    output::{RecordEnd, Sink, StopSummary},
    pipeline::{
        Emit,
        correlator::{ConnectionRecord, ResponseTime},
        reader::LossCause,
    },
    vocabulary::names,
};

/// What an exporter is handed: owned copies of the pipeline's output, with the clock that
/// turns their boot-clock times into wall-clock ones.
#[derive(Clone, Debug)]
pub enum Export {
    Event {
        clock: WallClock,
        event: TraceEvent,
    },
    Connection {
        clock: WallClock,
        record: Box<ConnectionRecord>,
        end: RecordEnd,
    },
}

/// A sink that talks to a network, run by [`spawn`] on its own task.
pub trait Exporter: Send + 'static {
    /// Its name in the metrics' `exporter` label and in `tracer_stop`.
    fn name(&self) -> &'static str;
    /// What it is handed: events, connection records or both.
    fn wants(&self) -> Emit;
    /// Items handed to [`export`](Self::export) at most at once: as many as are queued, up
    /// to this.
    fn batch_size(&self) -> usize {
        1
    }
    /// Sends a batch of items (retrying as it sees fit); an error counts every item of the
    /// batch as failed, success every one as exported.
    fn export(&mut self, batch: Vec<Export>) -> impl Future<Output = io::Result<()>> + Send;
    /// Sends what it held back: called once the queue is empty at the end.
    fn flush(&mut self) -> impl Future<Output = io::Result<()>> + Send;
}

/// What became of an item offered to an exporter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportOutcome {
    /// The exporter took it.
    Exported,
    /// The queue was full: the exporter had fallen behind.
    QueueFull,
    /// The exporter could not send it.
    Failed,
    /// Still queued when tracer stopped and the exporter did not take it in time.
    Unsent,
}

names!(ExportOutcome as "export outcome" {
    Exported => "exported",
    QueueFull => "queue_full",
    Failed => "failed",
    Unsent => "unsent",
});

/// The live counts of one exporter, shared by its queue, its task and the metrics.
#[derive(Debug, Default)]
pub struct ExportCounters {
    /// Items accepted into the queue (each ends exported, failed or unsent).
    queued: AtomicU64,
    exported: AtomicU64,
    queue_full: AtomicU64,
    failed: AtomicU64,
    /// Set once the exporter's task has ended: what it never took.
    unsent: AtomicU64,
}

impl ExportCounters {
    /// Every outcome's count so far. Items still queued have no outcome yet: they count
    /// as unsent only once the exporter has finished, so each count only grows.
    pub fn snapshot(&self) -> ExportCounts {
        ExportCounts {
            exported: self.exported.load(Ordering::Relaxed),
            queue_full: self.queue_full.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            unsent: self.unsent.load(Ordering::Relaxed),
        }
    }

    /// The exporter's task has ended: what is still queued was never sent.
    fn finished(&self) {
        let taken = self.exported.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed);
        let unsent = self.queued.load(Ordering::Relaxed).saturating_sub(taken);
        self.unsent.store(unsent, Ordering::Relaxed);
    }
}

/// An exporter's name and live counts.
pub type NamedCounters = (&'static str, Arc<ExportCounters>);

/// One exporter's outcomes, as `tracer_stop` writes them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExportCounts {
    pub exported: u64,
    pub queue_full: u64,
    pub failed: u64,
    pub unsent: u64,
}

impl ExportCounts {
    pub fn get(&self, outcome: ExportOutcome) -> u64 {
        match outcome {
            ExportOutcome::Exported => self.exported,
            ExportOutcome::QueueFull => self.queue_full,
            ExportOutcome::Failed => self.failed,
            ExportOutcome::Unsent => self.unsent,
        }
    }
}

/// The pipeline's side of an exporter: queues copies, never waits.
pub struct QueuedSink {
    queue: mpsc::Sender<Export>,
    wants: Emit,
    counters: Arc<ExportCounters>,
}

impl QueuedSink {
    fn offer(&self, item: Export) {
        match self.queue.try_send(item) {
            Ok(()) => self.counters.queued.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.counters.queue_full.fetch_add(1, Ordering::Relaxed),
        };
    }
}

impl Sink for QueuedSink {
    fn tracer_start(&mut self, _: &str, _: &AttachPlan, _: &[u16]) -> io::Result<()> {
        Ok(())
    }

    fn event(&mut self, clock: WallClock, event: &TraceEvent) -> io::Result<()> {
        if self.wants.events() {
            let event = event.clone();
            self.offer(Export::Event { clock, event });
        }
        Ok(())
    }

    fn connection(
        &mut self,
        clock: WallClock,
        record: &ConnectionRecord,
        end: RecordEnd,
    ) -> io::Result<()> {
        if self.wants.connections() {
            let record = Box::new(record.clone());
            self.offer(Export::Connection { clock, record, end });
        }
        Ok(())
    }

    fn response(&mut self, _: &ResponseTime) -> io::Result<()> {
        Ok(())
    }

    fn lost(&mut self, _: u64, _: LossCause) -> io::Result<()> {
        Ok(())
    }

    fn undecodable(&mut self, _: u64, _: &str) -> io::Result<()> {
        Ok(())
    }

    fn tracer_stop(&mut self, _: &StopSummary) -> io::Result<()> {
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The daemon's side of a running exporter.
pub struct ExporterHandle {
    name: &'static str,
    counters: Arc<ExportCounters>,
    /// Asks the task to take what is queued, flush and end.
    finish: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl ExporterHandle {
    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn counters(&self) -> Arc<ExportCounters> {
        self.counters.clone()
    }

    /// Lets the exporter take what is queued and flush, for at most `deadline`; what it
    /// has not taken by then is unsent.
    pub async fn finish(mut self, deadline: Duration) -> ExportCounts {
        // A task that already ended has nothing left to take.
        let _ = self.finish.send(());
        if tokio::time::timeout(deadline, &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
            // It stops at its next await: once this returns, nothing counts any more.
            let _ = (&mut self.task).await;
        }
        self.counters.finished();
        self.counters.snapshot()
    }
}

/// Runs `exporter` on a task of its own behind a queue of `capacity` items: the sink to
/// give the pipeline, and the handle to finish it with.
/// The exporters' runtime: one worker thread, `tracer-export`, beside the reader's. Made
/// on first use, it lives as long as the process. Their clients (an HTTP client's
/// connections, a gRPC channel's worker) are made in its context too, so their tasks run
/// there as well.
pub fn runtime() -> io::Result<&'static Runtime> {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("tracer-export")
        .enable_all()
        .build()?;
    Ok(RUNTIME.get_or_init(|| runtime))
}

pub fn spawn<E: Exporter>(
    mut exporter: E,
    capacity: usize,
) -> io::Result<(QueuedSink, ExporterHandle)> {
    let (queue, mut items) = mpsc::channel(capacity.max(1));
    let (finish, mut finishing) = oneshot::channel();
    let counters = Arc::new(ExportCounters::default());
    let sink = QueuedSink {
        queue,
        wants: exporter.wants(),
        counters: counters.clone(),
    };
    let name = exporter.name();
    let task_counters = counters.clone();
    let task = runtime()?.spawn(async move {
        let counters = task_counters;
        loop {
            let item = tokio::select! {
                biased;
                item = items.recv() => item,
                _ = &mut finishing, if !items.is_closed() => {
                    // Take nothing new; what is queued still comes out of recv.
                    items.close();
                    continue;
                }
            };
            let Some(item) = item else { break };
            let mut batch = vec![item];
            while batch.len() < exporter.batch_size() {
                match items.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
            let size = batch.len() as u64;
            let outcome = match exporter.export(batch).await {
                Ok(()) => &counters.exported,
                Err(_) => &counters.failed,
            };
            outcome.fetch_add(size, Ordering::Relaxed);
        }
        if let Err(error) = exporter.flush().await {
            eprintln!(
                "tracer: warning: the {name} exporter could not send what it held at exit ({error})"
            );
        }
    });
    let handle = ExporterHandle {
        name,
        counters,
        finish,
        task,
    };
    Ok((sink, handle))
}

/// The running exporters.
#[derive(Default)]
pub struct Exporters(Vec<ExporterHandle>);

impl Exporters {
    pub fn add(&mut self, handle: ExporterHandle) {
        self.0.push(handle);
    }

    /// Each exporter's name and live counts (for the metrics).
    pub fn counters(&self) -> Vec<NamedCounters> {
        self.0.iter().map(|h| (h.name(), h.counters())).collect()
    }

    /// Finishes every exporter, each within `deadline`: their counts by name.
    pub async fn finish(self, deadline: Duration) -> BTreeMap<&'static str, ExportCounts> {
        let mut counts = BTreeMap::new();
        for handle in self.0 {
            let name = handle.name();
            counts.insert(name, handle.finish(deadline).await);
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tokio::sync::Semaphore;

    use super::*;
    use crate::event::{Accepted, EventMeta};

    /// An exporter that takes an item only when the test lets it (a permit each), and
    /// fails every item whose socket is 13.
    struct Gated {
        permits: Arc<Semaphore>,
        taken: Arc<std::sync::Mutex<Vec<u64>>>,
    }

    impl Exporter for Gated {
        fn name(&self) -> &'static str {
            "gated"
        }

        fn wants(&self) -> Emit {
            Emit::Events
        }

        async fn export(&mut self, batch: Vec<Export>) -> io::Result<()> {
            self.permits.acquire().await.expect("open").forget();
            let [Export::Event { event, .. }] = &batch[..] else {
                panic!("handed a record it did not want");
            };
            let sock = event.meta().sock;
            if sock == 13 {
                return Err(io::Error::other("refused"));
            }
            self.taken.lock().unwrap().push(sock);
            Ok(())
        }

        async fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn event(sock: u64) -> TraceEvent {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        TraceEvent::Accepted(Accepted {
            meta: EventMeta {
                boot_ns: sock,
                sock,
                process: None,
                cgroup: None,
                local: addr,
                remote: addr,
            },
        })
    }

    fn gated(capacity: usize) -> (QueuedSink, ExporterHandle, Gated) {
        let gate = Gated {
            permits: Arc::new(Semaphore::new(0)),
            taken: Arc::default(),
        };
        let view = Gated {
            permits: gate.permits.clone(),
            taken: gate.taken.clone(),
        };
        let (sink, handle) = spawn(gate, capacity).unwrap();
        (sink, handle, view)
    }

    /// A stalled exporter never blocks the pipeline: past its queue, items are dropped
    /// and counted, and every item offered ends in one outcome.
    #[tokio::test]
    async fn a_stalled_exporter_drops_and_counts_instead_of_blocking() {
        let (mut sink, handle, gate) = gated(4);
        let clock = WallClock::from_offset_ns(0);
        for sock in 0..10 {
            sink.event(clock, &event(sock)).unwrap();
        }
        // What is queued has no outcome until the exporter finishes.
        let counters = handle.counters();
        assert_eq!(
            counters.snapshot(),
            ExportCounts {
                exported: 0,
                queue_full: 6,
                failed: 0,
                unsent: 0,
            }
        );
        gate.permits.add_permits(2);
        let counts = handle.finish(Duration::from_millis(200)).await;
        assert_eq!(
            counts,
            ExportCounts {
                exported: 2,
                queue_full: 6,
                failed: 0,
                unsent: 2,
            }
        );
        assert_eq!(*gate.taken.lock().unwrap(), [0, 1]);
        let offered: u64 = ExportOutcome::ALL.iter().map(|&o| counts.get(o)).sum();
        assert_eq!(offered, 10);
    }

    /// At the end the exporter takes what is queued, within the deadline; its failures
    /// are counted apart.
    #[tokio::test]
    async fn finishing_drains_the_queue() {
        let (mut sink, handle, gate) = gated(16);
        let clock = WallClock::from_offset_ns(0);
        for sock in 10..16 {
            sink.event(clock, &event(sock)).unwrap();
        }
        gate.permits.add_permits(100);
        let counts = handle.finish(Duration::from_secs(10)).await;
        assert_eq!(
            counts,
            ExportCounts {
                exported: 5,
                queue_full: 0,
                failed: 1,
                unsent: 0,
            }
        );
        assert_eq!(*gate.taken.lock().unwrap(), [10, 11, 12, 14, 15]);
    }
}
