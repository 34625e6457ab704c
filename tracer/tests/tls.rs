//! TLS through OpenSSL: a real nginx serving HTTPS (a certificate made by rcgen), real
//! clients that make several requests on one connection (curl, Python's `ssl`), over TLS
//! 1.2 and 1.3. Each record's `requests` and `responses` must be the application's on
//! both sides (the handshake's records would add two or three more), and its
//! `tls.handshake_us` must agree with the capture of the same traffic, decrypted by
//! tshark with the clients' key log (`SSLKEYLOGFILE`), within the wire tolerance: from
//! the ClientHello to the last handshake message the side's library took part in before
//! it returned, the last Finished for a client, the last handshake message for a server
//! (a TLS 1.3 server sends its session tickets before its handshake call returns). On
//! the host the records also go to an OTLP collector, whose log records must say the
//! same of TLS.
//!
//! The tests of both clients hook every process using the library (`--tls all`: the
//! clients start after tracer); one test checks the default, which hooks only the
//! processes holding a traced socket at start.
//!
//! The kernel matrix's guests carry nginx and curl but neither Python nor tshark: there
//! the curl tests run (`TRACER_TEST_NO_TSHARK` set by the guest's init), the handshake
//! time checked only to lie within the connection.

use std::{
    fs,
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use rcgen::{CertificateParams, KeyPair};
use rustix::process::{Pid, Signal, kill_process};
use serde_json::Value;

use crate::support::{
    DEADLINE, Tracer,
    capture::{Capture, wire_tolerance_ns},
    free_port, shared, tracer_bin,
};
use crate::{
    otlp::{attributes, json},
    support::otlp::{Collector, Transport},
};

/// A TLS version, as nginx's `ssl_protocols` and the clients name it.
#[derive(Clone, Copy, Debug)]
enum Version {
    Tls12,
    Tls13,
}

impl Version {
    fn nginx(self) -> &'static str {
        match self {
            Version::Tls12 => "TLSv1.2",
            Version::Tls13 => "TLSv1.3",
        }
    }

    fn curl(self) -> [&'static str; 3] {
        match self {
            Version::Tls12 => ["--tlsv1.2", "--tls-max", "1.2"],
            Version::Tls13 => ["--tlsv1.3", "--tls-max", "1.3"],
        }
    }

    fn python(self) -> &'static str {
        match self {
            Version::Tls12 => "TLSv1_2",
            Version::Tls13 => "TLSv1_3",
        }
    }
}

/// nginx serving HTTPS on one port of loopback, with its own prefix, configuration and
/// self-signed certificate in a temporary directory.
struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl Nginx {
    fn start(port: u16, version: Version) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let key = KeyPair::generate().unwrap();
        let certificate = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        fs::write(path("cert.pem"), certificate.pem()).unwrap();
        fs::write(path("key.pem"), key.serialize_pem()).unwrap();
        let temp = |name: &str| format!("{name} {};", path(name));
        let config = format!(
            "daemon off;\nuser root;\nworker_processes 1;\npid {pid};\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  {body} {proxy} {fastcgi} {uwsgi} {scgi}\n\
               server {{\n    listen 127.0.0.1:{port} ssl;\n\
                 ssl_certificate {cert};\n    ssl_certificate_key {key};\n\
                 ssl_protocols {version};\n\
                 location / {{ return 200 \"pong\\n\"; }}\n  }}\n}}\n",
            pid = path("nginx.pid"),
            body = temp("client_body_temp_path"),
            proxy = temp("proxy_temp_path"),
            fastcgi = temp("fastcgi_temp_path"),
            uwsgi = temp("uwsgi_temp_path"),
            scgi = temp("scgi_temp_path"),
            cert = path("cert.pem"),
            key = path("key.pem"),
            version = version.nginx(),
        );
        fs::write(path("nginx.conf"), config).unwrap();
        let child = Command::new(nginx())
            .args([
                "-e",
                &path("error.log"),
                "-p",
                &path(""),
                "-c",
                &path("nginx.conf"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run nginx (install nginx)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + DEADLINE;
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on {addr}: {}",
                fs::read_to_string(path("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, dir, addr }
    }

    fn key_log(&self) -> std::path::PathBuf {
        self.dir.path().join("keys.log")
    }
}

impl Drop for Nginx {
    /// SIGTERM, which the master passes on to its workers (SIGKILL would leave them).
    fn drop(&mut self) {
        if let Some(pid) = Pid::from_raw(self.child.id() as i32) {
            let _ = kill_process(pid, Signal::TERM);
        }
        let _ = self.child.wait();
    }
}

/// nginx is in /usr/sbin, which an unprivileged PATH may lack.
fn nginx() -> &'static str {
    if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    }
}

/// Whether the capture can be decrypted here (not in the kernel matrix's guests).
fn with_tshark() -> bool {
    std::env::var_os("TRACER_TEST_NO_TSHARK").is_none()
}

/// curl making two requests on one connection; the key log written for tshark.
fn curl(nginx: &Nginx, version: Version) {
    let url = |path: &str| format!("https://{}/{path}", nginx.addr);
    let output = Command::new("curl")
        .args(["-sSk", "--http1.1"])
        .args(version.curl())
        .args([url("a"), url("b")])
        .env("SSLKEYLOGFILE", nginx.key_log())
        .output()
        .expect("cannot run curl (install curl)");
    assert!(output.status.success(), "curl: {output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "pong\npong\n");
}

/// Python's `ssl` making three requests on one connection (`SSL_read_ex`/`SSL_write_ex`).
fn python(nginx: &Nginx, version: Version) {
    let script = format!(
        r#"
import socket, ssl
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
context.minimum_version = context.maximum_version = ssl.TLSVersion.{version}
context.keylog_filename = {keys:?}
with context.wrap_socket(socket.create_connection(("127.0.0.1", {port}))) as tls:
    for _ in range(3):
        tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = b""
        while not answer.endswith(b"pong\n"):
            answer += tls.recv(4096)
"#,
        version = version.python(),
        keys = nginx.key_log().display().to_string(),
        port = nginx.addr.port(),
    );
    let output = Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .output()
        .expect("cannot run /usr/bin/python3");
    assert!(output.status.success(), "python: {output:?}");
}

/// A handshake on the wire: the client's port, the ClientHello's time, the last
/// Finished's and the last handshake message's.
#[derive(Debug)]
struct WireHandshake {
    client_port: u16,
    hello: u64,
    finished: u64,
    last: u64,
}

/// The capture's handshakes, decrypted with the key log.
fn wire_handshakes(capture: &Path, keys: &Path) -> Vec<WireHandshake> {
    let output = Command::new("tshark")
        .arg("-r")
        .arg(capture)
        .arg("-o")
        .arg(format!("tls.keylog_file:{}", keys.display()))
        .args(["-Y", "tls.handshake.type", "-T", "fields"])
        .args([
            "-e",
            "frame.time_epoch",
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
        ])
        .args(["-e", "tls.handshake.type"])
        .output()
        .expect("cannot run tshark (install tshark)");
    assert!(output.status.success(), "tshark: {output:?}");
    let mut handshakes: Vec<WireHandshake> = Vec::new();
    for line in String::from_utf8(output.stdout).unwrap().lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let [time, source, destination, types] = fields[..] else {
            panic!("tshark printed {line:?}");
        };
        let (seconds, fraction) = time.split_once('.').unwrap();
        let ns = seconds.parse::<u64>().unwrap() * 1_000_000_000
            + format!("{fraction:0<9}")[..9].parse::<u64>().unwrap();
        let types: Vec<&str> = types.split(',').collect();
        let (source, destination): (u16, u16) =
            (source.parse().unwrap(), destination.parse().unwrap());
        // The client's port is the ephemeral one, above the server's test port.
        let client = source.max(destination);
        if types.contains(&"1") {
            handshakes.push(WireHandshake {
                client_port: client,
                hello: ns,
                finished: 0,
                last: ns,
            });
        }
        if let Some(handshake) = handshakes.iter_mut().find(|h| h.client_port == client) {
            handshake.last = ns;
            if types.contains(&"20") {
                handshake.finished = ns;
            }
        }
    }
    handshakes
}

/// By default (`--tls auto`) the library is hooked only in the processes that hold a
/// traced socket when tracing starts: nginx, listening before tracer, counts curl's two
/// requests; curl, started after, is not hooked, and its record counts the socket's
/// bursts (the handshake's among them) with no `tls`.
#[test]
fn by_default_only_the_processes_holding_traced_sockets_are_hooked() {
    let _machine = shared();
    let port = free_port("127.0.0.1");
    let nginx = Nginx::start(port, Version::Tls13);
    let mut tracer = Tracer::start(&[port]);
    let start = tracer.wait_for("tracer_start", |line| line["event"] == "tracer_start");
    if start["unsupported"]["data"].is_string() {
        assert!(start["tls"]["unsupported"].is_string(), "{start}");
        return;
    }
    let hooked = start["tls"]["processes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        hooked.contains(&Value::from(nginx.child.id())),
        "nginx ({}) not hooked: {start}",
        nginx.child.id()
    );
    curl(&nginx, Version::Tls13);
    let server = tracer.wait_for("the server's record", |line| {
        line["event"] == "connection" && line["role"] == "server"
    });
    let client = tracer.wait_for("the client's record", |line| {
        line["event"] == "connection" && line["role"] == "client"
    });
    assert_eq!(server["tls"]["library"], "openssl", "{server}");
    assert_eq!(server["requests"], 2, "{server}");
    assert_eq!(client["tls"], Value::Null, "{client}");
    assert!(client["requests"].as_u64().unwrap() > 2, "{client}");
}

/// Runs `client` against nginx over `version` and checks both sides' records: each
/// side's requests and responses are `requests`, its handshake the wire's.
fn check(version: Version, client: fn(&Nginx, Version), requests: u64) {
    let _machine = shared();
    let port = free_port("127.0.0.1");
    let nginx = Nginx::start(port, version);
    // nginx is started before tracer, the client after: the library's uprobes reach both.
    // On the host the records also go to an OTLP collector, for their TLS attributes.
    let collector = with_tshark().then(|| Collector::start(Transport::Http));
    let mut command = Tracer::command(&[port]);
    command.args(["--tls", "all"]);
    if let Some(collector) = &collector {
        command.args(["--otlp-endpoint", &collector.endpoint()]);
    }
    let mut tracer = Tracer::spawn(command);
    let capture = Capture::start(port);
    client(&nginx, version);
    let records: Vec<Value> = ["server", "client"]
        .iter()
        .map(|role| {
            tracer.wait_for(&format!("the {role}'s record"), |line| {
                line["event"] == "connection" && line["role"] == *role
            })
        })
        .collect();
    let pcap = nginx.dir.path().join("capture.pcap");
    let _wire = capture.finish_keeping(&pcap);
    let start = tracer.wait_for("tracer_start", |line| line["event"] == "tracer_start");
    if start["unsupported"]["data"].is_string() {
        // A kernel without a data mechanism in this mode (5.10 has no socket tracepoints):
        // no requests at all, and the TLS hook says why it is not attached.
        assert!(start["tls"]["unsupported"].is_string(), "{start}");
        for record in &records {
            assert_eq!(record["tls"], Value::Null, "{record}");
            assert_eq!(record["requests"], Value::Null, "{record}");
        }
        return;
    }
    assert!(
        start["tls"]["libraries"]
            .as_array()
            .is_some_and(|libraries| !libraries.is_empty()),
        "no TLS library hooked: {start}"
    );
    let handshakes = with_tshark().then(|| wire_handshakes(&pcap, &nginx.key_log()));
    for record in &records {
        let what = format!("{version:?} {}: {record:#}", record["role"]);
        assert_eq!(record["tls"]["library"], "openssl", "{what}");
        assert_eq!(record["requests"], requests, "{what}");
        assert_eq!(record["responses"], requests, "{what}");
        assert_eq!(record["response_time_us"]["count"], requests, "{what}");
        assert_eq!(record["unanswered_request_us"], Value::Null, "{what}");
        let handshake_us = record["tls"]["handshake_us"]
            .as_u64()
            .unwrap_or_else(|| panic!("no handshake time: {what}"));
        assert!(
            handshake_us <= record["duration_us"].as_u64().unwrap(),
            "{what}"
        );
        let Some(handshakes) = &handshakes else {
            continue;
        };
        let client_port: u16 = match record["role"].as_str() {
            Some("client") => &record["local"],
            _ => &record["remote"],
        }
        .as_str()
        .unwrap()
        .parse::<SocketAddr>()
        .unwrap()
        .port();
        let wire = handshakes
            .iter()
            .find(|h| h.client_port == client_port)
            .unwrap_or_else(|| {
                panic!("no handshake on the wire for {client_port}: {handshakes:?}")
            });
        assert!(
            wire.finished > wire.hello,
            "no Finished decrypted: {handshakes:?}"
        );
        let end = match record["role"].as_str() {
            Some("client") => wire.finished,
            _ => wire.last,
        };
        let wire_us = (end - wire.hello) / 1_000;
        let tolerance_us = wire_tolerance_ns() / 1_000;
        eprintln!(
            "{version:?} {}: handshake {handshake_us} us, the wire's {wire_us} us",
            record["role"]
        );
        assert!(
            handshake_us.abs_diff(wire_us) <= tolerance_us,
            "handshake {handshake_us} us, the wire's {wire_us} us (tolerance {tolerance_us}): {what}"
        );
    }
    let Some(collector) = collector else {
        return;
    };
    let (status, _) = tracer.stop();
    assert!(status.success(), "{status}");
    // Each record's log record says what the record's `tls` says.
    let logs = collector.logs();
    for record in &records {
        let log = logs
            .iter()
            .find(|log| json(log.record.body.as_ref().unwrap())["conn_id"] == record["conn_id"])
            .unwrap_or_else(|| panic!("no log record of {record}"));
        let attributes = attributes(&log.record.attributes);
        assert_eq!(attributes["tls.established"], true, "{attributes:?}");
        assert_eq!(attributes["tcp.tls_library"], "openssl", "{attributes:?}");
        assert_eq!(
            attributes["tcp.tls_handshake_us"], record["tls"]["handshake_us"],
            "{attributes:?}"
        );
        assert_eq!(
            attributes["tcp.requests"], record["requests"],
            "{attributes:?}"
        );
    }
}

#[test]
fn curl_over_tls13_counts_its_two_requests() {
    check(Version::Tls13, curl, 2);
}

#[test]
fn curl_over_tls12_counts_its_two_requests() {
    check(Version::Tls12, curl, 2);
}

#[test]
fn python_over_tls13_counts_its_three_requests() {
    check(Version::Tls13, python, 3);
}

#[test]
fn python_over_tls12_counts_its_three_requests() {
    check(Version::Tls12, python, 3);
}

/// `tracer check` names the library file a running nginx maps (the same file, whatever
/// path reaches it: `/lib` and `/usr/lib` are often one directory).
#[test]
fn check_names_the_library_nginx_uses() {
    use std::os::unix::fs::MetadataExt;
    let _machine = shared();
    let nginx = Nginx::start(free_port("127.0.0.1"), Version::Tls13);
    let maps = fs::read_to_string(format!("/proc/{}/maps", nginx.child.id())).unwrap();
    let libssl = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| path.contains("/libssl.so"))
        .unwrap_or_else(|| panic!("nginx maps no libssl: {maps}"));
    let inode = |path: &str| fs::metadata(path).map(|meta| (meta.dev(), meta.ino())).ok();
    let output = Command::new(tracer_bin())
        .args(["check", "--json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let libraries = report["tls"]["libraries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        libraries
            .iter()
            .any(|library| inode(library.as_str().unwrap()) == inode(libssl)),
        "check does not name {libssl}: {}",
        report["tls"]
    );
}
