//! `tracer top`: the traced connections live, for a person at a terminal. The daemon
//! traces as always, into a [`state::TopSink`] instead of the lines; a thread of its own
//! samples that state about once a second and draws it ([`view`]), so drawing never slows
//! the ring buffer's reader. Enter on a group lists its recent connections, Enter on one
//! draws its flow graph, Esc goes back. `q` or Ctrl-C stop tracing as SIGTERM does; the
//! terminal is restored on every way out (ratatui's panic hook restores it after a panic).

pub mod replay;
pub mod state;
pub mod view;

use std::{
    fs::File,
    panic::{self, AssertUnwindSafe},
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use rustix::{
    event::{PollFd, PollFlags, Timespec, poll},
    process::{Signal, getpid, kill_process},
};

use self::{
    replay::{Pace, Playback},
    state::{Grouping, Recent, Sample, TopSink, TopState},
    view::{Screen, SortBy, ViewOptions},
};
use crate::{
    daemon::{self, TraceConfig},
    pipeline::{Emit, PipelineConfig, correlator::DEFAULT_MAX_CONNECTIONS},
    replay::TraceStart,
};

/// What the view shows: live tracing, or a recorded trace.
enum Mode {
    /// `done` is set when tracing has ended; quitting asks it to end (as SIGTERM).
    Live { done: Arc<AtomicBool> },
    /// `fed` is set when the whole trace went in; quitting stops the feeding.
    Replay {
        playback: Arc<Playback>,
        fed: Arc<AtomicBool>,
    },
}

impl Mode {
    fn ended(&self) -> bool {
        match self {
            Self::Live { done } => done.load(Ordering::Acquire),
            Self::Replay { fed, .. } => fed.load(Ordering::Acquire),
        }
    }

    /// The header's word on the replay: its speed, paused or over.
    fn status(&self) -> Option<String> {
        let Self::Replay { playback, fed } = self else {
            return None;
        };
        Some(if fed.load(Ordering::Acquire) {
            "replay: the end of the trace".to_owned()
        } else if playback.paused() {
            "replay: paused".to_owned()
        } else {
            format!("replay: x{}", playback.speed())
        })
    }
}

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
    // The flow graph of a connection is drawn from its events.
    config.pipeline.keep_events = true;
    let sink = TopSink::default();
    let state = Arc::clone(&sink.0);
    let done = Arc::new(AtomicBool::new(false));
    let view = thread::spawn({
        let mode = Mode::Live {
            done: Arc::clone(&done),
        };
        move || {
            let shown = panic::catch_unwind(AssertUnwindSafe(|| show(&state, &mode)));
            if !matches!(shown, Ok(Ok(()))) {
                // Nothing shows it any more (the terminal hung up, or the view failed):
                // tracing ends too.
                let _ = kill_process(getpid(), Signal::TERM);
            }
            shown.unwrap_or_else(|panic| panic::resume_unwind(panic))
        }
    });
    let result = daemon::run_into(config, Box::new(sink));
    done.store(true, Ordering::Release);
    let shown = view.join();
    result?;
    match shown {
        Ok(shown) => shown,
        Err(_) => bail!("the view stopped with a panic"),
    }
}

/// Shows the recorded trace `file` at its own pace, until `q` or Ctrl-C.
pub fn replay(file: PathBuf) -> Result<()> {
    let sink = TopSink::default();
    let state = Arc::clone(&sink.0);
    let playback = Arc::new(Playback::default());
    let fed = Arc::new(AtomicBool::new(false));
    let feeder = thread::spawn({
        let (state, fed) = (Arc::clone(&state), Arc::clone(&fed));
        let mut pace = Pace::new(Arc::clone(&playback));
        let config = PipelineConfig {
            emit: Emit::All,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            keep_events: true,
        };
        move || {
            let fed_all = crate::replay::feed(&file, config, sink, |start, at| match at {
                Some(ns) => pace.wait(ns),
                None => {
                    let start = TraceStart::read(start);
                    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
                    state.start(&start.kernel, &start.ports);
                }
            });
            fed.store(true, Ordering::Release);
            fed_all
        }
    });
    let shown = show(&state, &Mode::Replay { playback, fed });
    let fed_all = feeder.join();
    shown?;
    match fed_all {
        Ok(fed_all) => fed_all.map(drop),
        Err(_) => bail!("the replay stopped with a panic"),
    }
}

/// Waits for tracing to start, then draws until it ends (live) or until `q` or Ctrl-C.
fn show(state: &Mutex<TopState>, mode: &Mode) -> Result<()> {
    let lock = || state.lock().unwrap_or_else(|e| e.into_inner());
    while !lock().started() {
        if mode.ended() {
            // Tracing failed to start: its error is printed, on a terminal left alone.
            return Ok(());
        }
        thread::sleep(KEY_WAIT);
    }
    let mut options = ViewOptions {
        grouping: Grouping::Port,
        sort: SortBy::Open,
        plain: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
        screen: Screen::Groups,
        selected: 0,
        scroll: 0,
        status: mode.status(),
    };
    // The terminal crossterm reads keys from (also when standard input is not it).
    let tty =
        File::open("/dev/tty").context("tracer top needs a terminal: cannot open /dev/tty")?;
    let mut terminal = ratatui::init();
    let mut sampled_at = Instant::now();
    let mut sample: Sample = lock().sample(options.grouping);
    let mut interval = REFRESH;
    let result = loop {
        let recent = match &options.screen {
            Screen::Connections { group } => lock().recent(options.grouping, group),
            Screen::Groups | Screen::Flow { .. } => Vec::new(),
        };
        options.status = mode.status();
        let drawn = terminal.draw(|frame| view::draw(frame, &sample, &recent, interval, &options));
        if let Err(error) = drawn {
            break Err(error.into());
        }
        if let Mode::Live { done } = mode
            && done.load(Ordering::Acquire)
        {
            break Ok(());
        }
        match next_key(&tty, sampled_at)? {
            Some(key) => {
                if let Mode::Replay { playback, .. } = mode {
                    match key.code {
                        KeyCode::Char('+') => playback.faster(),
                        KeyCode::Char('-') => playback.slower(),
                        KeyCode::Char(' ') => playback.toggle_pause(),
                        _ => {}
                    }
                }
                if press(key, &mut options, &sample, &recent) {
                    match mode {
                        // As SIGTERM: the daemon detaches, drains and returns.
                        Mode::Live { .. } => {
                            let _ = kill_process(getpid(), Signal::TERM);
                        }
                        Mode::Replay { playback, .. } => {
                            playback.stop();
                            break Ok(());
                        }
                    }
                }
                if key.code == KeyCode::Char('g') {
                    // The rows of the new grouping now, without waiting for the next sample.
                    sample.rows = lock().rows(options.grouping);
                }
            }
            None => {
                interval = sampled_at.elapsed();
                sampled_at = Instant::now();
                sample = lock().sample(options.grouping);
                if let Mode::Replay { .. } = mode {
                    interval = Duration::from_nanos(sample.trace_ns);
                }
            }
        }
    };
    ratatui::restore();
    result
}

/// Waits up to `timeout` for input on `tty`; fails when the terminal hung up. Asked
/// before crossterm's reader is, which on a hung-up terminal reads nothing forever.
fn terminal_input(tty: &File, timeout: Duration) -> Result<bool> {
    let mut terminal = [PollFd::new(tty, PollFlags::IN)];
    let timeout = Timespec::try_from(timeout)?;
    poll(&mut terminal, Some(&timeout))?;
    let seen = terminal[0].revents();
    if seen.intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL) {
        bail!("the terminal hung up");
    }
    Ok(seen.contains(PollFlags::IN))
}

/// The next key pressed before the next sample is due (`None` when it is due), or on a
/// resize a key that changes nothing (so the view is drawn again).
fn next_key(tty: &File, sampled_at: Instant) -> Result<Option<KeyEvent>> {
    while sampled_at.elapsed() < REFRESH {
        // Keys crossterm has read already, or waiting on the terminal.
        terminal_input(tty, Duration::ZERO)?;
        if !event::poll(Duration::ZERO)? {
            terminal_input(tty, KEY_WAIT)?;
            continue;
        }
        match event::read()? {
            Event::Key(key) if key.kind == KeyEventKind::Press => return Ok(Some(key)),
            Event::Resize(..) => return Ok(Some(KeyEvent::from(KeyCode::Null))),
            _ => {}
        }
    }
    Ok(None)
}

/// Applies `key` to what the view shows; `true` when it asks to quit.
fn press(key: KeyEvent, options: &mut ViewOptions, sample: &Sample, recent: &[Recent]) -> bool {
    let ctrl_c = key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl_c || key.code == KeyCode::Char('q') {
        return true;
    }
    let rows = match options.screen {
        Screen::Groups => sample.rows.len(),
        Screen::Connections { .. } => recent.len(),
        Screen::Flow { .. } => 0,
    };
    match key.code {
        KeyCode::Char('g') if matches!(options.screen, Screen::Groups) => {
            options.grouping = options.grouping.next();
            options.selected = 0;
        }
        KeyCode::Char('s') => options.sort = options.sort.next(),
        KeyCode::Down | KeyCode::Char('j') => {
            if let Screen::Flow { .. } = options.screen {
                options.scroll = options.scroll.saturating_add(1);
            } else {
                options.selected = (options.selected + 1).min(rows.saturating_sub(1));
            }
        }
        KeyCode::Up | KeyCode::Char('k') => {
            if let Screen::Flow { .. } = options.screen {
                options.scroll = options.scroll.saturating_sub(1);
            } else {
                options.selected = options.selected.saturating_sub(1);
            }
        }
        KeyCode::Enter => match &options.screen {
            Screen::Groups => {
                if let Some((group, _)) = view::sorted(sample, options.sort).get(options.selected) {
                    options.screen = Screen::Connections {
                        group: group.clone(),
                    };
                    options.selected = 0;
                }
            }
            Screen::Connections { group } => {
                if let Some(recent) = recent.get(options.selected) {
                    options.screen = Screen::Flow {
                        group: group.clone(),
                        recent: recent.clone(),
                    };
                    options.scroll = 0;
                }
            }
            Screen::Flow { .. } => {}
        },
        KeyCode::Esc | KeyCode::Backspace | KeyCode::Left => {
            options.screen = match &options.screen {
                Screen::Flow { group, .. } => Screen::Connections {
                    group: group.clone(),
                },
                _ => Screen::Groups,
            };
            options.selected = 0;
        }
        _ => {}
    }
    false
}
