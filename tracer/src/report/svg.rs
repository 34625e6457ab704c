//! The report's drawings, as inline SVG: a connection's flow graph as a sequence diagram
//! (the lines [`flow::lines`] derives, as `--format pretty` draws them in text), the
//! timeline of the connections, and a histogram. Colours come from the page's style
//! sheet, by class, so the drawings carry no style of their own.

use maud::{Markup, html};

use super::figures::Histogram;
use crate::{
    output::flow::{self, Arrow, Kind},
    pipeline::correlator::{CloseInitiator, ConnectionRecord, KEPT_EVENTS},
};

/// The class of a line of `kind`.
fn class(kind: Kind) -> &'static str {
    match kind {
        Kind::Handshake => "handshake",
        Kind::Data => "data",
        Kind::Keepalive => "keepalive",
        Kind::Fin => "fin",
        Kind::Reset => "reset",
        Kind::Note => "note",
    }
}

/// Where the flow graph's columns are: times, this host's line, the peer's line.
const LOCAL_X: u32 = 130;
const REMOTE_X: u32 = 450;
const ROW: u32 = 24;
const TOP: u32 = 44;
const FLOW_WIDTH: u32 = 900;

/// `record`'s flow graph: this host's line on the left, the peer's on the right, an arrow
/// per segment (dashed when its time was not seen), notes on the right.
pub fn flow_graph(record: &ConnectionRecord) -> Markup {
    let lines = flow::lines(record, record.events.len());
    // Where the omitted events were: after the lines of the kept first half.
    let omitted_at =
        (record.events_omitted > 0).then(|| flow::lines(record, KEPT_EVENTS / 2).len());
    let rows = lines.len() + usize::from(omitted_at.is_some());
    let height = TOP + ROW * rows as u32 + 12;
    let row_y = |index: usize| {
        let shifted = index + usize::from(omitted_at.is_some_and(|at| index >= at));
        TOP + ROW * shifted as u32 + ROW / 2
    };
    html! {
        svg.flow width=(FLOW_WIDTH) height=(height)
            viewBox=(format!("0 0 {FLOW_WIDTH} {height}")) role="img"
            aria-label=(format!("flow graph of connection {}", record.conn_id)) {
            text.end x=(LOCAL_X) y="16" text-anchor="middle" { (record.local) }
            text.end x=(REMOTE_X) y="16" text-anchor="middle" { (record.remote) }
            text.side x=(LOCAL_X) y="30" text-anchor="middle" { "this host (" (record.role.name()) ")" }
            text.side x=(REMOTE_X) y="30" text-anchor="middle" { "peer" }
            line.lifeline x1=(LOCAL_X) y1=(TOP) x2=(LOCAL_X) y2=(height - 4) {}
            line.lifeline x1=(REMOTE_X) y1=(TOP) x2=(REMOTE_X) y2=(height - 4) {}
            @if let Some(at) = omitted_at {
                text.note x=((LOCAL_X + REMOTE_X) / 2) y=(TOP + ROW * at as u32 + ROW / 2 + 4)
                    text-anchor="middle" {
                    "... " (record.events_omitted) " events not kept ..."
                }
            }
            @for (index, line) in lines.iter().enumerate() {
                @let y = row_y(index);
                @if let Some(at) = line.at {
                    text.time x="8" y=(y + 4) { (flow::offset(at)) }
                }
                @match &line.arrow {
                    Some((direction, label)) => {
                        @let (from, to) = match direction {
                            Arrow::Out => (LOCAL_X, REMOTE_X),
                            Arrow::In => (REMOTE_X, LOCAL_X),
                        };
                        @let direction_name = match direction { Arrow::Out => "out", Arrow::In => "in" };
                        g class=(format!("arrow {}{}", class(line.kind), if line.at.is_none() { " inferred" } else { "" }))
                            data-direction=(direction_name) data-label=(label) {
                            line x1=(from) y1=(y) x2=(to) y2=(y) marker-end="url(#head)" {}
                            text x=((LOCAL_X + REMOTE_X) / 2) y=(y - 4) text-anchor="middle" { (label) }
                        }
                        @if !line.note.is_empty() {
                            text.note x=(REMOTE_X + 10) y=(y + 4) { (line.note) }
                        }
                    }
                    None => {
                        text.note.state x=((LOCAL_X + REMOTE_X) / 2) y=(y + 4) text-anchor="middle" { (line.note) }
                    }
                }
            }
        }
    }
}

/// The arrowhead every flow graph's arrows end with, defined once per page.
pub fn arrowhead() -> Markup {
    html! {
        svg width="0" height="0" aria-hidden="true" {
            defs {
                marker #head viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8"
                    markerHeight="8" orient="auto-start-reverse" {
                    path d="M 0 0 L 10 5 L 0 10 z" fill="context-stroke" {}
                }
            }
        }
    }
}

/// The class of a connection's bar on the timeline.
pub fn outcome_class(record: &ConnectionRecord) -> &'static str {
    if record.outcome.failed() {
        "failed"
    } else if record.close_initiator == CloseInitiator::Unknown {
        "unseen"
    } else {
        "completed"
    }
}

const TIMELINE_WIDTH: u32 = 1000;
const TIMELINE_LEFT: u32 = 10;
const TIMELINE_PLOT: u32 = 900;
const BAR: u32 = 8;

/// `ns` as a short duration: `850 us`, `12.3 ms`, `4.56 s`.
fn duration(ns: u64) -> String {
    match ns {
        ns if ns < 1_000_000 => format!("{} us", ns / 1_000),
        ns if ns < 1_000_000_000 => format!("{:.1} ms", ns as f64 / 1e6),
        ns => format!("{:.2} s", ns as f64 / 1e9),
    }
}

/// The connections of `records` as bars from their start to their end, in the order
/// they started, each a link to its flow graph: coloured by outcome, its end marked by
/// who closed (a reset in red).
pub fn timeline(records: &[&ConnectionRecord]) -> Markup {
    let start = records.iter().map(|r| r.start_ns).min().unwrap_or(0);
    let end = records.iter().map(|r| r.end_ns).max().unwrap_or(start);
    let span = (end - start).max(1);
    let x = |ns: u64| {
        TIMELINE_LEFT + ((ns - start) as f64 / span as f64 * f64::from(TIMELINE_PLOT)) as u32
    };
    let mut ordered = records.to_vec();
    ordered.sort_by_key(|r| (r.start_ns, r.conn_id));
    let height = 30 + (BAR + 2) * ordered.len() as u32;
    html! {
        svg.timeline width=(TIMELINE_WIDTH) height=(height)
            viewBox=(format!("0 0 {TIMELINE_WIDTH} {height}")) role="img"
            aria-label="timeline of the connections" {
            @for tick in 0..=4u64 {
                @let at = start + span * tick / 4;
                line.tick x1=(x(at)) y1="0" x2=(x(at)) y2=(height) {}
                text.time x=(x(at) + 2) y="12" { "+" (duration(at - start)) }
            }
            @for (row, record) in ordered.iter().enumerate() {
                @let y = 20 + (BAR + 2) * row as u32;
                @let (from, to) = (x(record.start_ns), x(record.end_ns).max(x(record.start_ns) + 2));
                a.bar href=(format!("#c{}", record.conn_id)) data-search=(search_text(record)) {
                    title {
                        (record.local) " - " (record.remote) ": " (record.outcome.name()) ", "
                        (record.close_initiator.name()) ", " (duration(record.duration_us * 1_000))
                    }
                    rect class=(outcome_class(record)) x=(from) y=(y) width=(to - from) height=(BAR) {}
                    rect class=(format!("end {}", record.close_initiator.name())) x=(to - 2) y=(y)
                        width="3" height=(BAR) {}
                }
            }
        }
    }
}

/// What a search matches a connection by: its ends, process, role and outcome.
pub fn search_text(record: &ConnectionRecord) -> String {
    format!(
        "{} {} {} {} {}",
        record.local,
        record.remote,
        record.comm.as_deref().unwrap_or(""),
        record.role.name(),
        record.outcome.name()
    )
}

/// A bound in µs as a person reads it: `16 us`, `1 ms`, `2.1 s`.
fn bound(us: u64) -> String {
    duration(us * 1_000).replace(".0 ", " ")
}

const BAR_WIDTH: u32 = 60;
const HISTOGRAM_HEIGHT: u32 = 120;

/// `histogram` as bars, each labelled with the bound its times are below and its count.
pub fn histogram(id: &str, histogram: &Histogram) -> Markup {
    let bars = histogram.bars();
    let highest = bars.iter().map(|&(_, n)| n).max().unwrap_or(1).max(1);
    let width = (BAR_WIDTH * bars.len() as u32).max(200) + 10;
    let height = HISTOGRAM_HEIGHT + 40;
    html! {
        svg.histogram id=(id) width=(width) height=(height)
            viewBox=(format!("0 0 {width} {height}")) role="img" data-total=(histogram.total()) {
            @if bars.is_empty() {
                text.note x="10" y="20" { "none in this trace" }
            }
            @for (index, (below, count)) in bars.iter().enumerate() {
                @let x = 5 + BAR_WIDTH * index as u32;
                @let tall = (HISTOGRAM_HEIGHT as f64 * *count as f64 / highest as f64) as u32;
                g.bucket data-below-us=(below) data-count=(count) {
                    title { (count) " below " (bound(*below)) }
                    rect x=(x + 2) y=(HISTOGRAM_HEIGHT + 16 - tall) width=(BAR_WIDTH - 4) height=(tall) {}
                    @if *count > 0 {
                        text.count x=(x + BAR_WIDTH / 2) y=(HISTOGRAM_HEIGHT + 12 - tall) text-anchor="middle" { (count) }
                    }
                    text.time x=(x + BAR_WIDTH / 2) y=(HISTOGRAM_HEIGHT + 30) text-anchor="middle" { "<" (bound(*below)) }
                }
            }
        }
    }
}
