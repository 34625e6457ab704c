//! Pods through a real CRI: Debian's containerd runs pods as the kubelet does
//! (`support::cri`), and tracer asks it (`--cri-socket`) for the names the cgroup paths
//! do not say: each record of a pod's server names the container, the pod and its
//! namespace, also for a pod started after tracer; `--pod NAMESPACE/NAME` traces that
//! pod's connections and nothing else; a pod that does not exist, or `--pod` without a
//! runtime to ask, is refused in one line. Not run in the kernel matrix's guests (no
//! container runtime there).

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    thread,
};

use serde_json::Value;

use crate::support::{Tracer, cri::Containerd, free_port, http::pong, refusal, shared, wait_until};

fn httpd(port: u16) -> Vec<String> {
    let listen = format!("127.0.0.1:{port}");
    ["/bin/httpd", "-f", "-p", &listen, "-h", "/www"]
        .map(str::to_owned)
        .to_vec()
}

/// A pod started after tracer: once the runtime's next snapshot has it (tracer asks for
/// one when it meets a container it does not know), the records of its server name the
/// container, the pod and the namespace, beside the ids its cgroup path gives.
#[test]
fn records_name_the_pod_and_container_the_runtime_gives() {
    let _machine = shared();
    let mut containerd = Containerd::start();
    let port = free_port("127.0.0.1");
    let metrics: SocketAddr = ([127, 0, 0, 1], free_port("127.0.0.1")).into();
    let mut command = Tracer::command(&[port]);
    command.arg("--cri-socket").arg(containerd.socket());
    command.args(["--metrics-addr", &metrics.to_string()]);
    command.args(["--metrics-labels", "namespace,pod_name,container_name"]);
    let mut tracer = Tracer::spawn(command);
    let command = httpd(port);
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    let pod = containerd.run_pod("shop", "web", "httpd", &command);
    wait_until("the pod's server", || pong(port).is_some());
    // The first connections may come before the runtime's snapshot has the pod: their
    // records have the ids and no names. Not a wait: each try is a new connection.
    let named = |record: &Value| record["pod"]["name"] == "web";
    let mut record = Value::Null;
    wait_until("a record with the pod's names", || {
        let client = pong(port).expect("the pod answers");
        record = tracer.wait_for("the server's record", |l| {
            l["event"] == "connection" && l["role"] == "server" && l["remote"] == client.to_string()
        });
        named(&record)
    });
    assert_eq!(
        record["container"]["id"],
        pod.container_id.as_str(),
        "{record:#}"
    );
    assert_eq!(record["container"]["name"], "httpd", "{record:#}");
    // The cgroupfs layout does not say the runtime; the CRI does.
    assert_eq!(record["container"]["runtime"], "containerd", "{record:#}");
    assert_eq!(record["pod"]["uid"], pod.uid.as_str(), "{record:#}");
    assert_eq!(record["pod"]["namespace"], "shop", "{record:#}");
    let path = record["cgroup"]["path"].as_str().unwrap();
    assert_eq!(
        path,
        format!("/kubepods/besteffort/pod{}/{}", pod.uid, pod.container_id),
        "the kubelet's cgroupfs layout"
    );
    // The metrics of that record carry the names as labels.
    let scrape = crate::support::prometheus::scrape(metrics, None).1;
    let labels = ["namespace=\"shop\"", "pod=\"web\"", "container=\"httpd\""];
    let named_series = scrape.lines().find(|line| {
        line.starts_with("tracer_connections_total{")
            && line.contains("role=\"server\"")
            && labels.iter().all(|label| line.contains(label))
    });
    let count: f64 = named_series
        .unwrap_or_else(|| panic!("no named series in\n{scrape}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(count >= 1.0, "{named_series:?}");
    // The client's record (the test's own process): no container, no pod.
    let (_, lines) = tracer.stop();
    let client = lines
        .iter()
        .find(|l| l["event"] == "connection" && l["role"] == "client")
        .expect("a client record");
    assert_eq!(
        (&client["container"], &client["pod"]),
        (&Value::Null, &Value::Null),
        "{client:#}"
    );
}

/// `--pod shop/web`: the pod's server's connections, and nothing of a server outside it
/// on another traced port (not a line); the pod's records name it.
#[test]
fn a_pod_selection_keeps_to_the_pod() {
    let _machine = shared();
    let mut containerd = Containerd::start();
    let (port, outside_port) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let command = httpd(port);
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    let pod = containerd.run_pod("shop", "web", "httpd", &command);
    containerd.run_pod("shop", "db", "httpd", &["/bin/sleep", "1000000"]);
    wait_until("the pod's server", || pong(port).is_some());
    let outside = TcpListener::bind(("127.0.0.1", outside_port)).unwrap();
    let echo = thread::spawn(move || {
        let (mut stream, _) = outside.accept().unwrap();
        let _ = stream.read(&mut [0; 16]);
    });

    let mut command = Tracer::command(&[port, outside_port]);
    command.arg("--cri-socket").arg(containerd.socket());
    command.args(["--pod", "shop/web"]);
    let mut tracer = Tracer::spawn(command);
    let mut stream = TcpStream::connect(("127.0.0.1", outside_port)).unwrap();
    stream.write_all(b"x").unwrap();
    drop(stream);
    echo.join().unwrap();
    let client = pong(port).expect("the pod answers");
    let record = tracer.wait_for("the pod's server's record", |l| {
        l["event"] == "connection" && l["remote"] == client.to_string()
    });
    assert_eq!(
        record["role"], "server",
        "the client is not in the pod: {record:#}"
    );
    assert_eq!(
        (&record["pod"]["namespace"], &record["pod"]["name"]),
        (&Value::from("shop"), &Value::from("web")),
        "{record:#}"
    );
    assert_eq!(record["container"]["id"], pod.container_id.as_str());
    let (_, lines) = tracer.stop();
    let outside = format!(":{outside_port}");
    for line in &lines {
        let ends = [&line["local"], &line["remote"]].map(|v| v.as_str().unwrap_or_default());
        assert!(
            !ends.iter().any(|end| end.ends_with(&outside)),
            "a line of the server outside the pod: {line}"
        );
    }
}

/// `tracer check` names the runtime that answers at the CRI socket, and says why one
/// does not.
#[test]
fn check_reports_the_runtime() {
    let _machine = shared();
    let containerd = Containerd::start();
    let check = |socket: &std::path::Path| -> Value {
        let output = std::process::Command::new(crate::support::tracer_bin())
            .args(["check", "--json", "--cri-socket"])
            .arg(socket)
            .output()
            .unwrap();
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let report = check(&containerd.socket());
    let runtime = report["cri"]["runtime"].as_str().unwrap_or_default();
    assert!(runtime.starts_with("containerd "), "{report:#}");
    let missing = containerd.socket().with_file_name("no.sock");
    let report = check(&missing);
    assert_eq!(report["cri"]["runtime"], Value::Null, "{report:#}");
    let problem = report["cri"]["problem"].as_str().unwrap_or_default();
    assert!(
        problem.contains("cannot connect to the CRI socket"),
        "{report:#}"
    );
}

/// A pod the runtime does not have, and `--pod` with no runtime to ask: each refused at
/// start in one line that says why.
#[test]
fn a_pod_that_is_not_there_is_refused_in_one_line() {
    let _machine = shared();
    let containerd = Containerd::start();
    let socket = containerd.socket().display().to_string();
    let cases: [(&[&str], &str); 2] = [
        (
            &["--pod", "shop/nope", "--cri-socket", &socket],
            "no pod shop/nope in the container runtime (--pod)",
        ),
        (
            &["--pod", "shop/web", "--cri-socket", "none"],
            "--pod needs the container runtime's CRI API",
        ),
    ];
    for (args, says) in cases {
        let stderr = refusal(Tracer::command(&[free_port("127.0.0.1")]).args(args));
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
