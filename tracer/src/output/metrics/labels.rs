//! The label sets of the families: each a struct whose fields are its labels, encoded
//! by prometheus-client for the exposition and turned into the same attributes for the
//! families' OpenTelemetry twins ([`Attributes`]). The labels are the traced `port` a
//! connection matched, its `role` and what a family counts by, never addresses, pids or
//! sockets; `--metrics-labels` adds the workload's.

use opentelemetry::KeyValue;
use prometheus_client::encoding::EncodeLabelSet;

use super::{otel::Attributes, workload::Workload};

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub(super) struct PortRole {
    pub(super) port: u16,
    pub(super) role: &'static str,
    /// `--metrics-labels`: none unless asked for.
    #[prometheus(flatten)]
    pub(super) workload: Workload,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ConnectionLabels {
    pub(super) port: u16,
    pub(super) role: &'static str,
    pub(super) close_initiator: &'static str,
    /// `--metrics-labels`: none unless asked for.
    #[prometheus(flatten)]
    pub(super) workload: Workload,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct FailureLabels {
    pub(super) port: u16,
    pub(super) role: &'static str,
    pub(super) outcome: &'static str,
    /// `--metrics-labels`: none unless asked for.
    #[prometheus(flatten)]
    pub(super) workload: Workload,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ResetLabels {
    pub(super) port: u16,
    pub(super) direction: &'static str,
    pub(super) reason: String,
    /// `--metrics-labels`: none unless asked for.
    #[prometheus(flatten)]
    pub(super) workload: Workload,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub(super) struct PortLabel {
    pub(super) port: u16,
    /// `--metrics-labels`: none unless asked for.
    #[prometheus(flatten)]
    pub(super) workload: Workload,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ProbeLabels {
    pub(super) port: u16,
    pub(super) outcome: &'static str,
    /// `--metrics-labels`: none unless asked for.
    #[prometheus(flatten)]
    pub(super) workload: Workload,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct KindLabel {
    pub(super) kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RecordLabel {
    pub(super) record: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct BuildLabels {
    pub(super) version: &'static str,
    pub(super) kernel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct HookLabels {
    pub(super) hook: &'static str,
    pub(super) mechanism: &'static str,
}

/// A label's attribute.
fn attribute(key: &'static str, value: impl Into<opentelemetry::Value>) -> KeyValue {
    KeyValue::new(key, value)
}

/// `labels` followed by the workload's.
fn with_workload(mut labels: Vec<KeyValue>, workload: &Workload) -> Vec<KeyValue> {
    labels.extend(
        workload
            .iter()
            .map(|(key, value)| attribute(key, value.clone())),
    );
    labels
}

impl Attributes for PortRole {
    fn attributes(&self) -> Vec<KeyValue> {
        let labels = vec![
            attribute("port", i64::from(self.port)),
            attribute("role", self.role),
        ];
        with_workload(labels, &self.workload)
    }
}

impl Attributes for ConnectionLabels {
    fn attributes(&self) -> Vec<KeyValue> {
        let labels = vec![
            attribute("port", i64::from(self.port)),
            attribute("role", self.role),
            attribute("close_initiator", self.close_initiator),
        ];
        with_workload(labels, &self.workload)
    }
}

impl Attributes for FailureLabels {
    fn attributes(&self) -> Vec<KeyValue> {
        let labels = vec![
            attribute("port", i64::from(self.port)),
            attribute("role", self.role),
            attribute("outcome", self.outcome),
        ];
        with_workload(labels, &self.workload)
    }
}

impl Attributes for ResetLabels {
    fn attributes(&self) -> Vec<KeyValue> {
        let labels = vec![
            attribute("port", i64::from(self.port)),
            attribute("direction", self.direction),
            attribute("reason", self.reason.clone()),
        ];
        with_workload(labels, &self.workload)
    }
}

impl Attributes for PortLabel {
    fn attributes(&self) -> Vec<KeyValue> {
        with_workload(
            vec![attribute("port", i64::from(self.port))],
            &self.workload,
        )
    }
}

impl Attributes for ProbeLabels {
    fn attributes(&self) -> Vec<KeyValue> {
        let labels = vec![
            attribute("port", i64::from(self.port)),
            attribute("outcome", self.outcome),
        ];
        with_workload(labels, &self.workload)
    }
}

impl Attributes for KindLabel {
    fn attributes(&self) -> Vec<KeyValue> {
        vec![attribute("kind", self.kind)]
    }
}

impl Attributes for RecordLabel {
    fn attributes(&self) -> Vec<KeyValue> {
        vec![attribute("record", self.record)]
    }
}
