//! The report as one self-contained HTML page: its style sheet and script inline, its
//! drawings inline SVG, nothing fetched. Sections, top to bottom: what was traced and
//! what the trace lost, the connections by traced port and by peer, the histograms, the
//! timeline, and every connection with its flow graph. A search box (or `#search=TEXT` in
//! the address) filters the peers, the timeline and the connections by address, process,
//! role or outcome.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::{
    Report,
    collect::DRAWN,
    figures::Group,
    svg::{self, search_text},
};
use crate::{output::flow, pipeline::correlator::ConnectionRecord, quantile::median_and_p99_ms};

const STYLE: &str = r#"
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; } th, td { padding: 2px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { border-bottom: 1px solid #888; } tbody tr:nth-child(odd) { background: #f4f4f4; }
.filtered { display: none; }
#search { font-size: 1em; width: 22em; padding: 3px 6px; }
.histograms { display: flex; flex-wrap: wrap; gap: 2em; }
svg text { font: 11px ui-monospace, monospace; fill: #222; }
svg .note { fill: #666; } svg .state { font-style: italic; }
svg .lifeline { stroke: #999; stroke-width: 2; }
svg .arrow line { stroke-width: 1.5; } svg .inferred line { stroke-dasharray: 5 4; }
svg .handshake line { stroke: #2a8a2a; } svg .data line { stroke: #1f77b4; }
svg .keepalive line { stroke: #b8860b; } svg .fin line { stroke: #8e44ad; }
svg .reset line { stroke: #d62728; } svg .arrow.note line { stroke: #777; }
svg .reset text { fill: #d62728; font-weight: bold; }
svg .tick { stroke: #ddd; }
svg rect.completed { fill: #2a8a2a; } svg rect.failed { fill: #d62728; } svg rect.unseen { fill: #aaa; }
svg rect.end { fill: #555; } svg rect.end.remote { fill: #1f77b4; }
svg rect.end.reset_sent, svg rect.end.reset_received { fill: #d62728; }
svg .bucket rect { fill: #1f77b4; }
details.connection { margin: 4px 0; } details.connection > summary { cursor: pointer; }
.failed-outcome { color: #d62728; font-weight: bold; }
.legend span { margin-right: 1.2em; }
"#;

const SCRIPT: &str = r#"
(function () {
  const input = document.getElementById('search');
  const searchable = Array.from(document.querySelectorAll('[data-search]'));
  const connections = document.querySelectorAll('.connection');
  const shown = document.getElementById('shown');
  function apply() {
    const wanted = input.value.trim().toLowerCase();
    for (const element of searchable) {
      const hit = wanted === '' || element.dataset.search.toLowerCase().includes(wanted);
      element.classList.toggle('filtered', !hit);
    }
    let count = 0;
    for (const connection of connections) {
      if (!connection.classList.contains('filtered')) count++;
    }
    shown.textContent = count + ' of ' + connections.length + ' connections shown';
  }
  function follow() {
    const hash = decodeURIComponent(location.hash.slice(1));
    if (hash.startsWith('search=')) {
      input.value = hash.slice('search='.length);
      apply();
    } else if (hash !== '') {
      const target = document.getElementById(hash);
      if (target && target.tagName === 'DETAILS') target.open = true;
    }
  }
  input.addEventListener('input', apply);
  window.addEventListener('hashchange', follow);
  apply();
  follow();
  document.body.dataset.ready = 'yes';
})();
"#;

fn group_row(name: String, group: &Group, searchable: bool) -> Markup {
    let failures: Vec<String> = (group.failures.iter())
        .map(|(outcome, n)| format!("{n} {outcome}"))
        .collect();
    html! {
        tr data-search=[searchable.then_some(&name)] {
            td { (name) }
            td.connections { (group.connections) }
            td.failed title=(failures.join(", ")) { (group.failed()) }
            td { (group.closed.local) "/" (group.closed.remote) "/" (group.closed.simultaneous) }
            td.resets { (group.resets_sent) "/" (group.resets_received) }
            td { (group.retransmits) }
            td { (group.requests) }
            td { (median_and_p99_ms(&group.handshakes_us)) }
            td { (median_and_p99_ms(&group.responses_us)) }
        }
    }
}

fn group_table<'a>(
    id: &str,
    first: &str,
    rows: impl Iterator<Item = (String, &'a Group)>,
    searchable: bool,
) -> Markup {
    html! {
        table id=(id) {
            thead {
                tr {
                    th { (first) }
                    th { "connections" }
                    th title="outcome not completed (hover a count for which)" { "failed" }
                    th title="closed by this host / by the peer / both at once" { "closed L/R/both" }
                    th { "resets sent/received" }
                    th { "retransmits" }
                    th { "requests" }
                    th { "handshake p50/p99 ms" }
                    th { "response p50/p99 ms" }
                }
            }
            tbody {
                @for (name, group) in rows {
                    (group_row(name, group, searchable))
                }
            }
        }
    }
}

fn connection(record: &ConnectionRecord, drawn: bool) -> Markup {
    let owner = match (&record.comm, record.pid) {
        (Some(comm), Some(pid)) => format!(", {comm} (pid {pid})"),
        _ => String::new(),
    };
    html! {
        details.connection id=(format!("c{}", record.conn_id)) data-search=(search_text(record))
            data-outcome=(record.outcome.name()) {
            summary {
                "connection " (record.conn_id) ": " (record.local) " - " (record.remote) ", "
                (record.role.name()) (owner) ", "
                span class=[record.outcome.failed().then_some("failed-outcome")] { (record.outcome.name()) }
                ", " (record.close_initiator.name())
            }
            @if drawn {
                (svg::flow_graph(record))
            } @else {
                p.note { "Not drawn: the report draws the first " (DRAWN) " connections." }
            }
            p { (flow::summary(record)) }
        }
    }
}

/// The page of `report`.
pub fn page(report: &Report) -> String {
    let collected = &report.collected;
    let figures = &report.figures;
    let drawn: Vec<&ConnectionRecord> = collected.records.iter().take(DRAWN).collect();
    let stop = &collected.stop;
    let lost: Vec<String> = (collected.lost.iter())
        .map(|(cause, n)| format!("{n} ({cause})"))
        .collect();
    let ports: Vec<String> = report.start.ports.iter().map(u16::to_string).collect();
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                link rel="icon" href="data:,";
                title { "tracer report: " (report.source) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                (svg::arrowhead())
                h1 { "TCP connections of " (report.source) }
                table #trace {
                    tbody {
                        tr { th { "traced ports" } td { (ports.join(", ")) } }
                        tr { th { "kernel" } td { (report.start.kernel) } }
                        tr { th { "started" } td { (report.start.ts.as_deref().unwrap_or("(not recorded)")) } }
                        tr { th { "events" } td #events { (collected.events) } }
                        tr { th { "connections" } td #records { (collected.records.len()) } }
                        tr { th { "events lost" } td #lost { @if lost.is_empty() { "none" } @else { (lost.join(", ")) } } }
                        tr { th { "records not decoded" } td { (collected.undecodable) } }
                        tr { th title="open when the trace ended: no record" { "still open at the end" } td { (stop.open_connections) } }
                        tr { th title="events of sockets without a connection (opened before tracing, or their connection evicted)" { "events without a connection" } td { (stop.unmatched_events) } }
                        tr { th { "records evicted / stale / ended unseen" } td { (stop.evicted) " / " (stop.stale) " / " (stop.ended) } }
                    }
                }
                p {
                    input #search type="search" placeholder="search: address, process, role or outcome"
                        aria-label="search connections";
                    " " output #shown {}
                }
                h2 { "By traced port" }
                (group_table("by-port", "port", figures.by_port.iter().map(|(p, g)| (p.to_string(), g)), false))
                h2 { "By peer" }
                (group_table("by-peer", "peer", figures.by_peer.iter().map(|(p, g)| (p.to_string(), g)), true))
                h2 { "Times" }
                div.histograms {
                    figure { (svg::histogram("handshakes", &figures.handshakes)) figcaption { "handshake (the kernel's measure of each connection's)" } }
                    figure { (svg::histogram("responses", &figures.responses)) figcaption { "response (from a request's first byte to its response's)" } }
                    figure { (svg::histogram("idle", &figures.idle)) figcaption { "idle before close" } }
                }
                h2 { "Timeline" }
                p.legend {
                    span { "bar: " b style="color:#2a8a2a" { "completed" } ", " b style="color:#d62728" { "failed" } ", " b style="color:#999" { "close not seen" } }
                    span { "end: grey closed by this host, blue by the peer, red reset" }
                    @if collected.records.len() > DRAWN { span { "the first " (DRAWN) " of " (collected.records.len()) " connections" } }
                }
                (svg::timeline(&drawn))
                h2 { "Connections" }
                section #connections {
                    @for (index, record) in collected.records.iter().enumerate() {
                        (connection(record, index < DRAWN))
                    }
                }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    };
    markup.into_string()
}
