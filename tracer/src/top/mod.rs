//! `tracer top`: the traced connections live, for a person at a terminal. The daemon
//! traces as always, into a [`state::TopSink`] instead of the lines; a thread of its own
//! samples that state about once a second and draws it ([`view`]), so drawing never slows
//! the ring buffer's reader. `q` or Ctrl-C stop tracing as SIGTERM does; the terminal is
//! restored on every way out (ratatui's panic hook restores it after a panic).

pub mod state;
pub mod view;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use rustix::process::{Signal, getpid, kill_process};

use self::{
    state::{Grouping, Sample, TopSink, TopState},
    view::{SortBy, ViewOptions},
};
use crate::{daemon, daemon::TraceConfig, pipeline::Emit};

/// How often the view samples and draws.
const REFRESH: Duration = Duration::from_secs(1);
/// How long a wait for a key lasts at most: how soon the view notices that tracing ended.
const KEY_WAIT: Duration = Duration::from_millis(100);

/// Traces with `config` and shows it until `q`, Ctrl-C or SIGTERM.
pub fn run(mut config: TraceConfig) -> Result<()> {
    if config.output.file.is_some() {
        bail!("tracer top draws on the terminal: --output is for tracing without it");
    }
    config.pipeline.emit = Emit::All;
    let sink = TopSink::default();
    let state = Arc::clone(&sink.0);
    let traced = Arc::new(AtomicBool::new(false));
    let view = thread::spawn({
        let traced = Arc::clone(&traced);
        move || show(&state, &traced)
    });
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(daemon::run_into(config, Box::new(sink))));
    traced.store(true, Ordering::Release);
    let shown = view.join();
    result?;
    match shown {
        Ok(shown) => shown,
        Err(_) => bail!("the view stopped with a panic"),
    }
}

/// Waits for tracing to start, then draws until tracing ends (`done`), asking it to end
/// on `q` or Ctrl-C.
fn show(state: &Mutex<TopState>, done: &AtomicBool) -> Result<()> {
    let lock = || state.lock().unwrap_or_else(|e| e.into_inner());
    while !lock().started() {
        if done.load(Ordering::Acquire) {
            // Tracing failed to start: its error is printed, on a terminal left alone.
            return Ok(());
        }
        thread::sleep(KEY_WAIT);
    }
    let mut options = ViewOptions {
        grouping: Grouping::Port,
        sort: SortBy::Open,
        plain: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
    };
    let mut terminal = ratatui::init();
    let mut sampled_at = Instant::now();
    let mut sample: Sample = lock().sample(options.grouping);
    let mut interval = REFRESH;
    let mut stopping = false;
    let result = loop {
        if let Err(error) = terminal.draw(|frame| view::draw(frame, &sample, interval, &options)) {
            break Err(error.into());
        }
        if done.load(Ordering::Acquire) {
            break Ok(());
        }
        let mut redraw = false;
        while !redraw && sampled_at.elapsed() < REFRESH {
            if !event::poll(KEY_WAIT)? {
                if done.load(Ordering::Acquire) {
                    break;
                }
                continue;
            }
            let Event::Key(key) = event::read()? else {
                redraw = true;
                continue;
            };
            if key.kind != KeyEventKind::Press {
                continue;
            }
            match key.code {
                KeyCode::Char('q') | KeyCode::Esc => stopping = true,
                KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                    stopping = true;
                }
                KeyCode::Char('g') => {
                    options.grouping = options.grouping.next();
                    // The rows of the new grouping now, without waiting for the next sample.
                    sample.rows = lock().rows(options.grouping);
                }
                KeyCode::Char('s') => options.sort = options.sort.next(),
                _ => continue,
            }
            redraw = true;
            if stopping {
                // As SIGTERM: the daemon detaches, drains and returns.
                let _ = kill_process(getpid(), Signal::TERM);
            }
        }
        if sampled_at.elapsed() >= REFRESH {
            interval = sampled_at.elapsed();
            sampled_at = Instant::now();
            sample = lock().sample(options.grouping);
        }
    };
    ratatui::restore();
    result
}
