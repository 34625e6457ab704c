//! What a connection record becomes in OpenTelemetry's terms: the attributes of its log
//! record, named by the semantic conventions where one exists (`network.*`, `server.*`,
//! `client.*`, `process.*`, `container.id`, `k8s.pod.uid`) and `tcp.*` for tracer's own
//! (docs/events.md lists them), the body (the record's JSON object, as the lines write
//! it, turned into OpenTelemetry values), and the resource of every record.

use opentelemetry::{Key, KeyValue, logs::AnyValue};
use opentelemetry_sdk::Resource;
use serde_json::Value;

use crate::pipeline::{
    correlator::{ConnectionRecord, Role},
    workload::container::{container_of, pod_of},
};

/// The attributes of `record`'s log record.
pub fn of(record: &ConnectionRecord) -> Vec<(&'static str, AnyValue)> {
    let (server, client) = match record.role {
        Role::Server => (record.local, record.remote),
        Role::Client => (record.remote, record.local),
    };
    let text = |value: String| AnyValue::from(value);
    let int = |value: u64| AnyValue::Int(i64::try_from(value).unwrap_or(i64::MAX));
    let mut attributes = vec![
        ("network.transport", text("tcp".to_owned())),
        ("network.type", text(record.family.name().to_owned())),
        ("network.local.address", text(record.local.ip().to_string())),
        ("network.local.port", int(record.local.port().into())),
        ("network.peer.address", text(record.remote.ip().to_string())),
        ("network.peer.port", int(record.remote.port().into())),
        ("server.address", text(server.ip().to_string())),
        ("server.port", int(server.port().into())),
        ("client.address", text(client.ip().to_string())),
        ("client.port", int(client.port().into())),
        ("tcp.role", text(record.role.name().to_owned())),
        ("tcp.outcome", text(record.outcome.name().to_owned())),
        (
            "tcp.close_initiator",
            text(record.close_initiator.name().to_owned()),
        ),
        ("tcp.duration_us", int(record.duration_us)),
        ("tcp.resets_sent", int(record.resets_sent.into())),
        ("tcp.resets_received", int(record.resets_received.into())),
        ("tcp.retransmits", int(record.retransmits.into())),
    ];
    let optional = [
        ("process.pid", record.pid.map(u64::from)),
        ("tcp.handshake_us", record.handshake_us),
        ("tcp.requests", record.requests.map(u64::from)),
        ("tcp.responses", record.responses.map(u64::from)),
        ("tcp.bytes_sent", record.bytes_sent),
        ("tcp.bytes_received", record.bytes_received),
    ];
    attributes.extend(
        optional
            .into_iter()
            .filter_map(|(key, value)| Some((key, int(value?)))),
    );
    if let Some(tls) = record.tls {
        // The conventions' `tls.established`: the handshake was seen to succeed.
        attributes.push((
            "tls.established",
            AnyValue::Boolean(tls.handshake_us.is_some()),
        ));
        attributes.push(("tcp.tls_library", text(tls.library.name().to_owned())));
        if let Some(us) = tls.handshake_us {
            attributes.push(("tcp.tls_handshake_us", int(us.into())));
        }
    }
    if let Some(comm) = &record.comm {
        attributes.push(("process.executable.name", text(comm.clone())));
    }
    if let Some(error) = record.error {
        attributes.push(("tcp.error", text(error.to_string())));
    }
    if let Some(path) = record.cgroup.as_ref().and_then(|c| c.path.as_deref()) {
        if let Some(container) = container_of(path) {
            attributes.push(("container.id", text(container.id)));
        }
        if let Some(pod) = pod_of(path) {
            attributes.push(("k8s.pod.uid", text(pod.uid)));
        }
    }
    if let Some(names) = record.cgroup.as_ref().and_then(|c| c.names.as_deref()) {
        if let Some(container) = &names.container {
            attributes.push(("k8s.container.name", text(container.clone())));
        }
        if let Some(pod) = &names.pod {
            attributes.push(("k8s.pod.name", text(pod.name.clone())));
            attributes.push(("k8s.namespace.name", text(pod.namespace.clone())));
        }
    }
    attributes
}

/// A JSON value as an OpenTelemetry one; `null` has none (a map leaves such keys out).
pub fn any_value(value: &Value) -> Option<AnyValue> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(b) => AnyValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AnyValue::Int(i),
            None => AnyValue::Double(n.as_f64()?),
        },
        Value::String(s) => AnyValue::from(s.clone()),
        Value::Array(items) => {
            AnyValue::ListAny(Box::new(items.iter().filter_map(any_value).collect()))
        }
        Value::Object(map) => AnyValue::Map(Box::new(
            map.iter()
                .filter_map(|(k, v)| Some((Key::from(k.clone()), any_value(v)?)))
                .collect(),
        )),
    })
}

/// The resource every record comes from: tracer on this host and kernel.
pub fn resource(kernel: &str) -> Resource {
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", "tracer"),
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("host.name", host),
            KeyValue::new("os.type", "linux"),
            KeyValue::new("os.version", kernel.to_owned()),
        ])
        .build()
}
