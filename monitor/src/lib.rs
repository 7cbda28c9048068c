//! The monitor agent. The data path flows one way:
//! `bpf` (load, attach, read) -> `event` (decode) -> `context` (enrich) ->
//! `policy` (match) -> `alert` (dedup, rate limit) -> `sink` (deliver).
//! A module imports only from the stages before it and from the leaves below
//! all of them: `finding` (what a rule found: severity, kind, action),
//! `clock`, `metrics`, `diagnostic` and `monitor-common`.
pub mod alert;
pub mod bpf;
pub mod clock;
pub mod config;
pub mod context;
pub mod diagnostic;
pub mod event;
pub mod finding;
pub mod health;
pub mod host;
pub mod install;
pub mod learn;
pub mod metrics;
pub mod policy;
pub mod posture;
pub mod run;
pub mod sink;
pub mod trace;
