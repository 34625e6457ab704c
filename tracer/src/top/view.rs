//! Drawing a [`Sample`]: a header with what tracing sees and loses, then one of three
//! screens ([`Screen`]): a table with one row per group, the recent connections of one
//! group, or one connection's flow graph (the drawing of `--format pretty`). Columns that
//! do not fit the terminal's width are left out, least important first, so 80 columns
//! show the essentials and a narrow terminal still shows the group and its open
//! connections.

use std::time::Duration;

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Modifier, Style},
    text::Line,
    widgets::{Cell, Paragraph, Row, Table, TableState},
};

use super::state::{GroupStats, Grouping, KernelCost, Recent, Sample};
use crate::{
    output::pretty::write_timeline,
    quantile::median_and_p99_ms,
    vocabulary::{following, names},
};

/// What the rows are sorted by (descending, then by group).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    Open,
    New,
    Closed,
    Resets,
    Retransmits,
    Group,
}

names!(SortBy as "sort column" {
    Open => "open",
    New => "new",
    Closed => "closed",
    Resets => "resets",
    Retransmits => "retransmits",
    Group => "group",
});

impl SortBy {
    /// The column the `s` key switches to.
    pub fn next(self) -> Self {
        following(Self::ALL, self)
    }

    fn key(self, stats: &GroupStats) -> u64 {
        let closed = &stats.closed_now;
        match self {
            Self::Open => stats.open,
            Self::New => stats.new,
            Self::Closed => closed.local + closed.remote + closed.simultaneous + closed.other,
            Self::Resets => stats.resets_sent + stats.resets_received,
            Self::Retransmits => stats.retransmits,
            Self::Group => 0,
        }
    }
}

/// Which screen the view shows.
#[derive(Clone, Debug)]
pub enum Screen {
    /// One row per group.
    Groups,
    /// The recent connections of one group.
    Connections { group: String },
    /// One connection's flow graph (of the group it was chosen in).
    Flow { group: String, recent: Recent },
}

/// What the person chose to see.
#[derive(Clone, Debug)]
pub struct ViewOptions {
    pub grouping: Grouping,
    pub sort: SortBy,
    /// Plain text: `NO_COLOR` is set.
    pub plain: bool,
    pub screen: Screen,
    /// The row selected in a table.
    pub selected: usize,
    /// Lines of the flow graph scrolled past.
    pub scroll: u16,
    /// What the header says of a replay (its speed, paused, over); `None` live.
    pub status: Option<String>,
}

/// A column: its title, width, and its cell for a group over an interval.
struct Column {
    title: &'static str,
    width: u16,
    cell: fn(&GroupStats, f64) -> String,
}

fn per_second(count: u64, seconds: f64) -> String {
    format!("{:.1}", count as f64 / seconds)
}

/// The columns after the group's, most important first.
const COLUMNS: &[Column] = &[
    Column {
        title: "OPEN",
        width: 6,
        cell: |g, _| g.open.to_string(),
    },
    Column {
        title: "NEW/s",
        width: 7,
        cell: |g, s| per_second(g.new, s),
    },
    Column {
        title: "L-CLOSE/s",
        width: 9,
        cell: |g, s| per_second(g.closed_now.local, s),
    },
    Column {
        title: "R-CLOSE/s",
        width: 9,
        cell: |g, s| per_second(g.closed_now.remote, s),
    },
    Column {
        title: "RST s/r",
        width: 9,
        cell: |g, _| format!("{}/{}", g.resets_sent, g.resets_received),
    },
    Column {
        title: "RETR",
        width: 6,
        cell: |g, _| g.retransmits.to_string(),
    },
    Column {
        title: "HS p50/99 ms",
        width: 13,
        cell: |g, _| median_and_p99_ms(&g.handshakes_us),
    },
    Column {
        title: "RSP p50/99 ms",
        width: 14,
        cell: |g, _| median_and_p99_ms(&g.responses_us),
    },
    Column {
        title: "KA-TO",
        width: 6,
        cell: |g, _| g.keepalive_timeouts.to_string(),
    },
    Column {
        title: "REQ/c",
        width: 6,
        cell: |g, _| {
            g.requests_per_connection()
                .map_or("-".to_owned(), |r| format!("{r:.1}"))
        },
    },
    Column {
        title: "SIM/s",
        width: 6,
        cell: |g, s| per_second(g.closed_now.simultaneous, s),
    },
    Column {
        title: "ABORT/s",
        width: 7,
        cell: |g, s| per_second(g.closed_now.other, s),
    },
];

/// The group column's width.
const GROUP_WIDTH: u16 = 18;

/// The rows of `sample` in the order `sort` shows them.
pub fn sorted(sample: &Sample, sort: SortBy) -> Vec<&(String, GroupStats)> {
    let mut rows: Vec<&(String, GroupStats)> = sample.rows.iter().collect();
    rows.sort_by(|a, b| {
        sort.key(&b.1)
            .cmp(&sort.key(&a.1))
            .then_with(|| a.0.cmp(&b.0))
    });
    rows
}

/// Draws `sample`, whose interval lasted `interval`, and `recent`, the recent connections
/// of the group a drill-down screen shows.
pub fn draw(
    frame: &mut Frame,
    sample: &Sample,
    recent: &[Recent],
    interval: Duration,
    options: &ViewOptions,
) {
    let [header, body, keys] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let tracing = &sample.tracing;
    let ports: Vec<String> = tracing.ports.iter().map(u16::to_string).collect();
    let mut title = format!(
        "tracer top  kernel {}  port {}",
        tracing.kernel,
        ports.join(",")
    );
    if let Some(status) = &options.status {
        title = format!("{title}  {status}");
    }
    let seconds = interval.as_secs_f64().max(0.001);
    title.push_str(&kernel_cost(
        tracing.kernel_cost,
        sample.kernel_cost,
        seconds,
    ));
    let mut status = format!(
        "by {}, sorted by {}  closed {}  events {}/s  lost {}",
        options.grouping.name(),
        options.sort.name(),
        tracing.records,
        per_second(sample.events, seconds),
        tracing.lost
    );
    if sample.forgotten_groups > 0 {
        status.push_str(&format!(
            "  idle groups forgotten {}",
            sample.forgotten_groups
        ));
    }
    frame.render_widget(
        Paragraph::new(vec![Line::from(title), Line::from(status)]),
        header,
    );
    let emphasis = if options.plain {
        Style::default()
    } else {
        Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED)
    };
    let help = match &options.screen {
        Screen::Groups if options.status.is_some() => {
            groups(frame, body, sample, interval, options, emphasis);
            "g group by  s sort by  Enter connections  +/- speed  space pause  q quit"
        }
        Screen::Groups => {
            groups(frame, body, sample, interval, options, emphasis);
            "g group by  s sort by  Enter connections  q quit"
        }
        Screen::Connections { group } => {
            connections(frame, body, group, recent, options, emphasis);
            "Enter flow graph  Esc back  q quit"
        }
        Screen::Flow { recent, .. } => {
            flow(frame, body, recent, options.scroll);
            "Up/Down scroll  Esc back  q quit"
        }
    };
    frame.render_widget(Paragraph::new(help), keys);
}

/// What tracer's programs cost the kernel in the interval: their share of one CPU and
/// the time per run, while the kernel's BPF statistics are on (nothing in a replay).
fn kernel_cost(total: Option<KernelCost>, interval: Option<KernelCost>, seconds: f64) -> String {
    match (total, interval) {
        (Some(KernelCost { runs: 0, .. }), _) => "  bpf cost off (--bpf-stats)".to_owned(),
        (Some(_), Some(cost)) => format!(
            "  bpf {:.2}% cpu {} ns/run",
            cost.run_time_ns as f64 / (seconds * 1e9) * 100.0,
            cost.run_time_ns.checked_div(cost.runs).unwrap_or(0)
        ),
        _ => String::new(),
    }
}

fn selection(options: &ViewOptions, emphasis: Style) -> (TableState, Style) {
    let highlight = if options.plain {
        Style::default().add_modifier(Modifier::UNDERLINED)
    } else {
        emphasis
    };
    (
        TableState::default().with_selected(options.selected),
        highlight,
    )
}

fn groups(
    frame: &mut Frame,
    area: Rect,
    sample: &Sample,
    interval: Duration,
    options: &ViewOptions,
    emphasis: Style,
) {
    let seconds = interval.as_secs_f64().max(0.001);
    // As many columns as fit, in order of importance.
    let mut width = GROUP_WIDTH;
    let columns: Vec<&Column> = COLUMNS
        .iter()
        .take_while(|column| {
            width += column.width + 1;
            width <= area.width
        })
        .collect();
    let titles = std::iter::once(options.grouping.name().to_uppercase())
        .chain(columns.iter().map(|c| c.title.to_owned()));
    let heading = Row::new(titles.map(Cell::from)).style(emphasis);
    let body = sorted(sample, options.sort)
        .into_iter()
        .map(|(key, stats)| {
            let cells = std::iter::once(key.clone())
                .chain(columns.iter().map(|c| (c.cell)(stats, seconds)));
            Row::new(cells.map(Cell::from))
        });
    let widths = std::iter::once(Constraint::Length(GROUP_WIDTH))
        .chain(columns.iter().map(|c| Constraint::Length(c.width)));
    let (mut state, highlight) = selection(options, emphasis);
    let table = Table::new(body, widths)
        .header(heading)
        .row_highlight_style(highlight)
        .highlight_symbol(">");
    frame.render_stateful_widget(table, area, &mut state);
}

fn connections(
    frame: &mut Frame,
    area: Rect,
    group: &str,
    recent: &[Recent],
    options: &ViewOptions,
    emphasis: Style,
) {
    let [title, list] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area);
    frame.render_widget(
        Paragraph::new(format!(
            "recent connections of {} {group} (latest first)",
            options.grouping.name()
        )),
        title,
    );
    let heading =
        Row::new(["ENDED", "ROLE", "LOCAL", "REMOTE", "CLOSED BY", "MS", "REQ"].map(Cell::from))
            .style(emphasis);
    let rows = recent.iter().map(|recent| {
        let record = &recent.record;
        let ended = recent.clock.rfc3339(record.end_ns);
        Row::new([
            ended.get(11..23).unwrap_or(&ended).to_owned(),
            record.role.name().to_owned(),
            record.local.to_string(),
            record.remote.to_string(),
            record.close_initiator.name().to_owned(),
            format!("{:.1}", record.duration_us as f64 / 1000.0),
            record.requests.map_or("-".to_owned(), |r| r.to_string()),
        ])
    });
    let widths = [13, 7, 22, 22, 16, 9, 4].map(Constraint::Length);
    let (mut state, highlight) = selection(options, emphasis);
    let table = Table::new(rows, widths)
        .header(heading)
        .row_highlight_style(highlight)
        .highlight_symbol(">");
    frame.render_stateful_widget(table, list, &mut state);
}

fn flow(frame: &mut Frame, area: Rect, recent: &Recent, scroll: u16) {
    let mut out = Vec::new();
    let text = match write_timeline(&mut out, &recent.record, false) {
        Ok(()) => String::from_utf8_lossy(&out).into_owned(),
        Err(error) => format!("cannot draw the connection: {error}"),
    };
    frame.render_widget(Paragraph::new(text).scroll((scroll, 0)), area);
}
