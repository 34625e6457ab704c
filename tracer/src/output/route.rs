//! Routing the pipeline's output to several sinks. When the metrics or an exporter need
//! everything the pipeline makes, it runs in full, and the lines get only what `--emit`
//! asks for ([`Filtered`]); exporters get their copies beside the lines ([`Fanout`]).

use std::io;

use super::{RecordEnd, Sink, StopSummary, exporter::QueuedSink, metrics::Metrics};
use crate::{
    clock::WallClock,
    event::TraceEvent,
    kernel::{attach::AttachPlan, program_stats::Costs},
    pipeline::{
        Emit,
        correlator::{ConnectionRecord, ResponseTime},
        reader::LossCause,
    },
};

/// The sink of a live trace, and what the pipeline must emit into it: the lines get what
/// `emit` asks for; the exporters beside them and the metrics in front of all (when on)
/// need everything.
pub fn route(
    lines: Box<dyn Sink>,
    emit: Emit,
    exporters: Vec<QueuedSink>,
    metrics: Option<&Metrics>,
) -> (Emit, Box<dyn Sink>) {
    if exporters.is_empty() && metrics.is_none() {
        return (emit, lines);
    }
    let mut sink: Box<dyn Sink> = Box::new(Filtered::new(lines, emit));
    if !exporters.is_empty() {
        sink = Box::new(Fanout::new(sink, exporters));
    }
    if let Some(metrics) = metrics {
        sink = Box::new(metrics.counting(sink));
    }
    (Emit::All, sink)
}

/// Passes on to `inner` the events and records `emit` asks for, and everything else.
pub struct Filtered<S> {
    inner: S,
    emit: Emit,
}

impl<S: Sink> Filtered<S> {
    pub fn new(inner: S, emit: Emit) -> Self {
        Self { inner, emit }
    }
}

impl<S: Sink> Sink for Filtered<S> {
    fn tracer_start(&mut self, kernel: &str, plan: &AttachPlan, ports: &[u16]) -> io::Result<()> {
        self.inner.tracer_start(kernel, plan, ports)
    }

    fn event(&mut self, clock: WallClock, event: &TraceEvent) -> io::Result<()> {
        if self.emit.events() {
            self.inner.event(clock, event)?;
        }
        Ok(())
    }

    fn connection(
        &mut self,
        clock: WallClock,
        record: &ConnectionRecord,
        end: RecordEnd,
    ) -> io::Result<()> {
        if self.emit.connections() {
            self.inner.connection(clock, record, end)?;
        }
        Ok(())
    }

    fn response(&mut self, response: &ResponseTime) -> io::Result<()> {
        self.inner.response(response)
    }

    fn program_costs(&mut self, costs: &Costs) -> io::Result<()> {
        self.inner.program_costs(costs)
    }

    fn lost(&mut self, count: u64, cause: LossCause) -> io::Result<()> {
        self.inner.lost(count, cause)
    }

    fn undecodable(&mut self, count: u64, reason: &str) -> io::Result<()> {
        self.inner.undecodable(count, reason)
    }

    fn tracer_stop(&mut self, summary: &StopSummary) -> io::Result<()> {
        self.inner.tracer_stop(summary)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The lines' sink, and each exporter's queue beside it. The exporters' queues never
/// fail or wait, so the lines' sink decides the result.
pub struct Fanout<S> {
    lines: S,
    exporters: Vec<QueuedSink>,
}

impl<S: Sink> Fanout<S> {
    pub fn new(lines: S, exporters: Vec<QueuedSink>) -> Self {
        Self { lines, exporters }
    }

    fn each(&mut self, mut call: impl FnMut(&mut dyn Sink) -> io::Result<()>) -> io::Result<()> {
        for exporter in &mut self.exporters {
            call(exporter)?;
        }
        call(&mut self.lines)
    }
}

impl<S: Sink> Sink for Fanout<S> {
    fn tracer_start(&mut self, kernel: &str, plan: &AttachPlan, ports: &[u16]) -> io::Result<()> {
        self.each(|sink| sink.tracer_start(kernel, plan, ports))
    }

    fn event(&mut self, clock: WallClock, event: &TraceEvent) -> io::Result<()> {
        self.each(|sink| sink.event(clock, event))
    }

    fn connection(
        &mut self,
        clock: WallClock,
        record: &ConnectionRecord,
        end: RecordEnd,
    ) -> io::Result<()> {
        self.each(|sink| sink.connection(clock, record, end))
    }

    fn response(&mut self, response: &ResponseTime) -> io::Result<()> {
        self.each(|sink| sink.response(response))
    }

    fn program_costs(&mut self, costs: &Costs) -> io::Result<()> {
        self.each(|sink| sink.program_costs(costs))
    }

    fn lost(&mut self, count: u64, cause: LossCause) -> io::Result<()> {
        self.each(|sink| sink.lost(count, cause))
    }

    fn undecodable(&mut self, count: u64, reason: &str) -> io::Result<()> {
        self.each(|sink| sink.undecodable(count, reason))
    }

    fn tracer_stop(&mut self, summary: &StopSummary) -> io::Result<()> {
        self.each(|sink| sink.tracer_stop(summary))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.each(|sink| sink.flush())
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{Arc, Mutex},
        time::Duration,
    };

    use super::*;
    use crate::{
        event::{Accepted, EventMeta},
        output::exporter::{self, Export, Exporter},
    };

    /// Names of what reached it, shared with the test.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<String>>>);

    impl Seen {
        fn push(&self, what: String) {
            self.0.lock().unwrap().push(what);
        }

        fn take(&self) -> Vec<String> {
            std::mem::take(&mut self.0.lock().unwrap())
        }
    }

    impl Sink for Seen {
        fn tracer_start(&mut self, _: &str, _: &AttachPlan, _: &[u16]) -> io::Result<()> {
            Ok(())
        }
        fn event(&mut self, _: WallClock, event: &TraceEvent) -> io::Result<()> {
            self.push(format!("line {}", event.meta().sock));
            Ok(())
        }
        fn connection(
            &mut self,
            _: WallClock,
            _: &ConnectionRecord,
            _: RecordEnd,
        ) -> io::Result<()> {
            Ok(())
        }
        fn lost(&mut self, count: u64, _: LossCause) -> io::Result<()> {
            self.push(format!("lost {count}"));
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

    impl Exporter for Seen {
        fn name(&self) -> &'static str {
            "seen"
        }
        fn wants(&self) -> Emit {
            Emit::Events
        }
        async fn export(&mut self, batch: Vec<Export>) -> io::Result<()> {
            for item in batch {
                if let Export::Event { event, .. } = item {
                    self.push(format!("exported {}", event.meta().sock));
                }
            }
            Ok(())
        }
        async fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn event(sock: u64) -> TraceEvent {
        let addr = "127.0.0.1:1".parse().unwrap();
        TraceEvent::Accepted(Accepted {
            meta: EventMeta {
                boot_ns: 1,
                sock,
                process: None,
                cgroup: None,
                local: addr,
                remote: addr,
            },
        })
    }

    /// The lines get what `--emit` asks for, the exporter what it wants, and the pipeline
    /// is told to emit everything only when someone beside the lines needs it.
    #[tokio::test]
    async fn lines_and_exporters_each_get_what_they_asked_for() {
        let lines = Seen::default();
        let (emit, sink) = route(Box::new(lines.clone()), Emit::Connections, Vec::new(), None);
        assert_eq!(emit, Emit::Connections, "nobody else needs the events");
        drop(sink);

        let exported = Seen::default();
        let (queue, handle) = exporter::spawn(exported.clone(), 8).unwrap();
        let (emit, mut sink) = route(
            Box::new(lines.clone()),
            Emit::Connections,
            vec![queue],
            None,
        );
        assert_eq!(emit, Emit::All);
        let clock = WallClock::from_offset_ns(0);
        sink.event(clock, &event(1)).unwrap();
        sink.event(clock, &event(2)).unwrap();
        sink.lost(3, LossCause::RingBufferFull).unwrap();
        let counts = handle.finish(Duration::from_secs(10)).await;
        assert_eq!(counts.exported, 2);
        assert_eq!(lines.take(), ["lost 3"]);
        assert_eq!(exported.take(), ["exported 1", "exported 2"]);
    }
}
