//! The integration tests: the real `tracer` binary, its eBPF programs loaded into the
//! running kernel, real sockets on loopback, and assertions on what it prints. One test
//! binary (`integration`, declared in `tracer/Cargo.toml` with `autotests = false`), one
//! module per theme:
//!
//! - [`state_changes`]: the `state_change` lines of real connections (IPv4, IPv6, the
//!   port filter, several ports), the output file, a closed stdout and bad arguments. A
//!   new test of the raw event stream or of the command line goes here.
//! - [`keepalive`]: `keepalive_probe` and `keepalive_timeout`, probes answered and
//!   unanswered.
//! - [`resets`]: `reset` lines, sent and received, with and without a socket.
//! - [`retransmits`]: `retransmit` lines, made by dropping segments with nftables.
//! - [`stories`]: the `connection` records of the seed's four HTTP stories and the other
//!   ways a connection ends, each compared with a packet capture. A new way for a
//!   connection to end, or a new field of the record, goes here.
//! - [`outcomes`]: each connection `outcome` made to happen (refused, timed out,
//!   abandoned, unreachable, aborted, reset, retransmit and keepalive timeouts,
//!   completed), judged by a capture and by what the application was told.
//! - [`connections`]: connection records beyond the stories (connections open before
//!   tracing started, the bound on open records).
//! - [`containers`]: real containers (podman): the container on each record,
//!   `--container`, and tracer's own image run as the DaemonSet runs it. Not run in the kernel matrix's guests (no container runtime there).
//! - [`pods`]: pods run through a real CRI (containerd): the names of each record's
//!   container and pod, and `--pod`. Not run in the kernel matrix's guests.
//! - [`fleet`]: the records loaded into the real ClickHouse engine (chdb) by the table of
//!   docs/deploy.md, and its queries answered from them. Not run in the kernel matrix's
//!   guests (no Python there).
//! - [`replay`]: `tracer replay` of a recorded trace.
//! - [`attach`]: `tracer check` and the attach plan against the running kernel; a new
//!   hook or mechanism gets its test here.
//! - [`accounting`]: events sent, received and lost add up under overload.
//! - [`rotation`]: the output file renamed, reopened on SIGHUP and rotated by size, under
//!   load.
//! - [`metrics`]: `--metrics-addr` scraped by a real Prometheus and checked by
//!   `promtool`. A new metric family goes here (and into its `FAMILIES`).
//! - [`otlp`]: `--otlp-endpoint`: the records received by a test collector over HTTP and
//!   gRPC, equal to their lines; a collector down under load, and the counts adding up.
//!   Not run in the guests.
//! - [`privileges`]: the tracer as an unprivileged user with the systemd unit's
//!   capabilities, and with fewer.
//! - [`workloads`]: the socket's cgroup on every line and record of a connection, with
//!   processes in cgroups of the test's own. A new workload field or selector goes here.
//! - [`systemd`]: deploy/tracer.service and deploy/logrotate in a Debian system booted
//!   by systemd-nspawn: start, rotate and reload, stop. Not run in the guests.
//! - [`top`]: `tracer top` in a real terminal (tmux): keys typed, the screen read. Not
//!   run in the guests.
//! - [`report`]: `tracer report` of a recorded trace, loaded by headless Chromium: the
//!   DOM's counts against the records, the search, a silent console, a screenshot. Not
//!   run in the guests.
//! - [`tls`]: TLS through OpenSSL (nginx, curl, Python's `ssl`, TLS 1.2 and 1.3): the
//!   application's requests on each record and the handshake against a capture
//!   decrypted by tshark, and the records' TLS attributes over OTLP. In the guests with
//!   curl only, the handshake not decrypted.
//! - [`support`]: what the tests share: starting the tracer and reading its lines,
//!   connected sockets, nftables packet drops, a packet capture, an HTTP server and
//!   client, a load generator, Prometheus, a recorded scenario.
//!
//! The tests run as threads of this one process. Each test first takes the machine:
//! [`support::shared`] when it can run beside others (most), [`support::exclusive`] when
//! it loads the machine or changes state other tests would see (`accounting`, the
//! rotations under load, the metrics scenario, `privileges`). A new test does the same.
//!
//! The kernel matrix (`cargo xtask vm-test`) runs this binary in each guest: every module
//! but `metrics`, `containers`, `fleet`, `systemd`, `top`, `report` and `otlp` (guests carry
//! no Prometheus, podman, Python, systemd-nspawn, tmux or Chromium; the OTLP path does not
//! depend on the kernel) in the first attach mode, and with the
//! filters `state_changes:: keepalive:: stories:: tls::` in the others, since only those
//! depend on the attach mode (`xtask/src/vm/init.sh`). A test whose outcome depends on
//! the mode belongs in one of those four modules.

mod support;

mod accounting;
mod attach;
mod connections;
mod containers;
mod fleet;
mod keepalive;
mod metrics;
mod otlp;
mod outcomes;
mod pods;
mod privileges;
mod replay;
mod report;
mod resets;
mod retransmits;
mod rotation;
mod state_changes;
mod stories;
mod systemd;
mod tls;
mod top;
mod workloads;
