//! Drawing a [`Sample`]: a header with what tracing sees and loses, a table with one row
//! per group, and the keys. Columns that do not fit the terminal's width are left out,
//! least important first, so 80 columns show the essentials and a narrow terminal still
//! shows the group and its open connections.

use std::time::Duration;

use ratatui::{
    Frame,
    layout::{Constraint, Layout},
    style::{Modifier, Style},
    text::Line,
    widgets::{Cell, Paragraph, Row, Table},
};

use super::state::{GroupStats, Grouping, Sample};
use crate::vocabulary::names;

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
        let all = Self::ALL;
        all[(all.iter().position(|s| *s == self).unwrap_or(0) + 1) % all.len()]
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

/// What the person chose to see.
#[derive(Clone, Copy, Debug)]
pub struct ViewOptions {
    pub grouping: Grouping,
    pub sort: SortBy,
    /// Plain text: `NO_COLOR` is set.
    pub plain: bool,
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

/// The `q`-th quantile of `values` in milliseconds, `-` for none.
fn quantile_ms(values: &[u64], q: f64) -> String {
    if values.is_empty() {
        return "-".to_owned();
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let at = ((sorted.len() - 1) as f64 * q).round() as usize;
    format!("{:.2}", sorted[at] as f64 / 1000.0)
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
        cell: |g, _| {
            format!(
                "{}/{}",
                quantile_ms(&g.handshakes_us, 0.5),
                quantile_ms(&g.handshakes_us, 0.99)
            )
        },
    },
    Column {
        title: "RSP p50/99 ms",
        width: 14,
        cell: |g, _| {
            format!(
                "{}/{}",
                quantile_ms(&g.responses_us, 0.5),
                quantile_ms(&g.responses_us, 0.99)
            )
        },
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

/// Draws `sample`, whose interval lasted `interval`.
pub fn draw(frame: &mut Frame, sample: &Sample, interval: Duration, options: &ViewOptions) {
    let [header, table, keys] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let seconds = interval.as_secs_f64().max(0.001);
    let tracing = &sample.tracing;
    let ports: Vec<String> = tracing.ports.iter().map(u16::to_string).collect();
    let title = format!(
        "tracer top  kernel {}  port {}",
        tracing.kernel,
        ports.join(",")
    );
    let status = format!(
        "by {}, sorted by {}  closed {}  events {}  lost {}",
        options.grouping.name(),
        options.sort.name(),
        tracing.records,
        tracing.events,
        tracing.lost
    );
    frame.render_widget(
        Paragraph::new(vec![Line::from(title), Line::from(status)]),
        header,
    );

    // As many columns as fit, in order of importance.
    let mut width = GROUP_WIDTH;
    let columns: Vec<&Column> = COLUMNS
        .iter()
        .take_while(|column| {
            width += column.width + 1;
            width <= table.width
        })
        .collect();
    let mut rows: Vec<&(String, GroupStats)> = sample.rows.iter().collect();
    rows.sort_by(|a, b| {
        options
            .sort
            .key(&b.1)
            .cmp(&options.sort.key(&a.1))
            .then_with(|| a.0.cmp(&b.0))
    });
    let emphasis = if options.plain {
        Style::default()
    } else {
        Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED)
    };
    let titles = std::iter::once(options.grouping.name().to_uppercase())
        .chain(columns.iter().map(|c| c.title.to_owned()));
    let heading = Row::new(titles.map(Cell::from)).style(emphasis);
    let body = rows.iter().map(|(key, stats)| {
        let cells =
            std::iter::once(key.clone()).chain(columns.iter().map(|c| (c.cell)(stats, seconds)));
        Row::new(cells.map(Cell::from))
    });
    let widths = std::iter::once(Constraint::Length(GROUP_WIDTH))
        .chain(columns.iter().map(|c| Constraint::Length(c.width)));
    frame.render_widget(Table::new(body, widths).header(heading), table);
    frame.render_widget(Paragraph::new("g group by  s sort by  q quit"), keys);
}
