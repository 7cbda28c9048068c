//! The alert record (schema `monitor.alert/v1`, `shared/design/ALERTS.md`), a
//! contract other tools rely on: fields may be added, none may change meaning.
use serde::{Deserialize, Serialize};

use crate::{
    context::{ContainerInfo, ProcessInfo},
    event::{FileInfo, NetworkInfo},
};

pub const SCHEMA: &str = "monitor.alert/v1";

/// How bad an alert is, least to most.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

/// What an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertKind {
    Process,
    File,
    Network,
    Syscall,
    Posture,
    /// The agent's own health: lost events, throttling, a failing sink.
    Agent,
}

/// One alert, as every sink carries it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    pub schema: &'static str,
    /// Unique per alert and stable across delivery retries.
    pub id: String,
    /// RFC 3339 with microseconds, UTC.
    pub time: String,
    pub host: String,
    pub rule: String,
    pub policy: String,
    pub severity: Severity,
    pub kind: AlertKind,
    pub summary: String,
    pub container: Option<ContainerInfo>,
    pub process: Option<ProcessInfo>,
    pub file: Option<FileInfo>,
    pub network: Option<NetworkInfo>,
    /// How many identical alerts the dedup window folded into this one.
    pub count: u64,
}
