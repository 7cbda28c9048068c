//! What a setting's key means in the configuration file: for each kind of
//! value the table's `file:` part names, what YAML it takes, how it is
//! checked (every problem a [`Diagnostic`] pointing at the value) and how it
//! becomes the value in force (secrets are read only then, and only for the
//! values the file wins).
use std::{
    marker::PhantomData,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{
    SourcedText, TextSource, Validator, placed,
    raw::{OneOrMany, Value},
};
use crate::{
    bpf::{hooks::TierChoice, profile::ProfileChoice},
    diagnostic::Diagnostic,
    sink::AlertFormat,
};

/// A kind of value in the file: what it is once checked.
pub trait FileValue {
    /// The checked value, its secrets not read yet (a [`super::FileSettings`] field).
    type Checked: Clone + std::fmt::Debug;
}

/// How a kind of value is read from the file and made the value in force.
pub(crate) trait FileCheck: FileValue {
    /// As written (parsed by serde; YAML type errors are the parser's).
    type Raw: for<'de> Deserialize<'de>;
    /// The value in force (the row's type).
    type Value;
    /// Checks the written value of `key`; `None` (with a diagnostic) when it is wrong.
    fn check(
        v: &mut Validator,
        raw: &Spanned<Self::Raw>,
        key: &'static str,
    ) -> Option<Self::Checked>;
    /// The value in force, secrets read.
    fn resolve(checked: Self::Checked) -> Result<Self::Value, Vec<Diagnostic>>;
}

/// Whether the file gave a value of kind `K` (ties the field to its kind).
pub(crate) fn is_set<K: FileValue>(v: &Option<K::Checked>) -> bool {
    v.is_some()
}

/// Declares a kind whose checked value is the value in force.
macro_rules! kind {
    ($(#[$doc:meta])* $name:ident: $raw:ty => $checked:ty, |$v:ident, $r:ident, $key:ident| $check:block) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug)]
        pub struct $name;
        impl FileValue for $name {
            type Checked = $checked;
        }
        impl FileCheck for $name {
            type Raw = $raw;
            type Value = $checked;
            fn check($v: &mut Validator, $r: &Spanned<$raw>, $key: &'static str) -> Option<$checked> {
                $check
            }
            fn resolve(checked: $checked) -> Result<$checked, Vec<Diagnostic>> {
                Ok(checked)
            }
        }
    };
}

/// A kind nobody has to give: the value in force is `None` without it.
#[derive(Clone, Copy, Debug)]
pub struct Optional<K>(PhantomData<K>);

impl<K: FileValue> FileValue for Optional<K> {
    type Checked = K::Checked;
}

impl<K: FileCheck> FileCheck for Optional<K> {
    type Raw = K::Raw;
    type Value = Option<K::Value>;
    fn check(
        v: &mut Validator,
        raw: &Spanned<Self::Raw>,
        key: &'static str,
    ) -> Option<Self::Checked> {
        K::check(v, raw, key)
    }
    fn resolve(checked: Self::Checked) -> Result<Self::Value, Vec<Diagnostic>> {
        K::resolve(checked).map(Some)
    }
}

kind!(
    /// The host's `/`: an absolute directory.
    HostRoot: PathBuf => PathBuf, |v, r, key| {
        if r.value.is_absolute() {
            return Some(r.value.clone());
        }
        v.err(
            r.referenced,
            format!("`{key}` must be absolute, not `{}`", r.value.display()),
            "write `/` on a host, or the directory the host's `/` is mounted at in a container (`/host`)",
        );
        None
    }
);

kind!(
    /// cgroup v2 directories, as written: relative ones are relative to the
    /// cgroup2 mount, not to the file.
    CgroupDirs: OneOrMany<PathBuf> => Vec<PathBuf>, |_v, r, _key| {
        Some(r.value.0.iter().map(|p| p.value.clone()).collect())
    }
);

kind!(
    /// The ring buffer's size: a power of two from one page to 2^31 bytes.
    RingBufferBytes: u64 => u32, |v, r, key| {
        let n = r.value;
        if (4096..=u64::from(u32::MAX)).contains(&n) && n.is_power_of_two() {
            return u32::try_from(n).ok();
        }
        v.err(
            r.referenced,
            format!("`{key}` is {n}: it must be a power of two from 4096 to 2^31"),
            "use e.g. 8388608 (8 MiB, the default) or 33554432 (32 MiB) on busy nodes",
        );
        None
    }
);

kind!(
    /// A per-cgroup fairness count (records a second, or at once).
    FairnessCount: u64 => u32, |v, r, key| {
        match u32::try_from(r.value) {
            Ok(n) => Some(n),
            Err(_) => {
                v.err(
                    r.referenced,
                    format!("`{key}` is {}: it must be at most {}", r.value, u32::MAX),
                    "use e.g. 20000 (the default); `fair_rate: 0` turns the budget off",
                );
                None
            }
        }
    }
);

kind!(
    /// Rule directories: at least one, relative to the file's directory.
    RuleDirs: OneOrMany<PathBuf> => Vec<PathBuf>, |v, r, key| {
        if r.value.0.is_empty() {
            v.err(
                r.referenced,
                format!("`{key}` is an empty list"),
                "name at least one rule directory, e.g. `rules: [/etc/monitor/rules]`",
            );
        }
        Some(
            r.value
                .0
                .iter()
                .filter_map(|p| v.nonempty_path_at(p, key, r.referenced))
                .collect(),
        )
    }
);

kind!(
    /// A path, not empty, relative to the file's directory.
    FilePath: PathBuf => PathBuf, |v, r, key| {
        v.nonempty_path_at(r, key, r.referenced)
    }
);

kind!(
    /// `native`, `ocsf` or `ecs`.
    OutputFormat: String => AlertFormat, |v, r, key| { v.format(r, key) }
);

kind!(
    /// `auto` or `tracepoint`.
    HookTier: String => TierChoice, |v, r, key| {
        match r.value.trim().parse::<TierChoice>() {
            Ok(t) => Some(t),
            Err(e) => {
                v.err(r.referenced, format!("`{key}`: {e}"), "write `auto` (the default) or `tracepoint`");
                None
            }
        }
    }
);

kind!(
    /// `off`, `docker-default`, or a profile file's path (relative to the
    /// configuration file's directory).
    SyscallProfile: String => ProfileChoice, |v, r, key| {
        match r.value.trim().parse::<ProfileChoice>() {
            Ok(ProfileChoice::File(path)) => Some(ProfileChoice::File(v.path(&path))),
            Ok(choice) => Some(choice),
            Err(e) => {
                v.err(
                    r.referenced,
                    format!("`{key}`: {e}"),
                    "write `off` (the default), `docker-default`, or the path of a file of call names",
                );
                None
            }
        }
    }
);

kind!(
    /// `true` or `false`.
    Switch: bool => bool, |_v, r, _key| { Some(r.value) }
);

kind!(
    /// An address and port to listen on.
    ListenAddr: String => SocketAddr, |v, r, key| {
        match r.value.trim().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(e) => {
                v.err(
                    r.referenced,
                    format!("`{key}`: `{}` is not an address and port ({e})", r.value),
                    "write `127.0.0.1:9464` (this host only), `0.0.0.0:9464` (a pod's probes and scrapes) or `[::]:9464`",
                );
                None
            }
        }
    }
);

kind!(
    /// An IP address without a port, replacing `listen`'s.
    ListenIp: String => IpAddr, |v, r, key| {
        match r.value.trim().parse::<IpAddr>() {
            Ok(a) => Some(a),
            Err(e) => {
                v.err(
                    r.referenced,
                    format!("`{key}`: `{}` is not an IP address ({e})", r.value),
                    "write an address without a port, e.g. `10.0.0.7` or `fd00::7`; in Kubernetes set MONITOR_LISTEN_IP from `status.podIP` instead",
                );
                None
            }
        }
    }
);

kind!(
    /// A duration with a unit: `500ms`, `5s`, `2m`.
    HumanDuration: String => Duration, |v, r, key| { v.duration(r, key) }
);

kind!(
    /// A `tracing` filter such as `info` or `monitor=debug,info`.
    LogFilter: String => String, |v, r, key| {
        match tracing_subscriber::EnvFilter::try_new(r.value.trim()) {
            Ok(_) => Some(r.value.trim().to_owned()),
            Err(e) => {
                v.err(
                    r.referenced,
                    format!("`{key}`: `{}` is not a log filter ({e})", r.value),
                    "write a level (`error`, `warn`, `info`, `debug`, `trace`) or `monitor=debug,info`",
                );
                None
            }
        }
    }
);

/// Declares a kind of text read at start (inline, `{file: PATH}` or `{env: VAR}`).
macro_rules! text_kind {
    ($(#[$doc:meta])* $name:ident, |$v:ident, $t:ident, $at:ident, $key:ident| $check:block) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug)]
        pub struct $name;
        impl FileValue for $name {
            type Checked = SourcedText;
        }
        impl FileCheck for $name {
            type Raw = Value;
            type Value = String;
            fn check($v: &mut Validator, r: &Spanned<Value>, $key: &'static str) -> Option<SourcedText> {
                let $at = r.referenced;
                let $t = $v.text(r, $at);
                $check
                Some($t)
            }
            fn resolve(checked: SourcedText) -> Result<String, Vec<Diagnostic>> {
                checked.read().map_err(|d| vec![d])
            }
        }
    };
}

text_kind!(
    /// An http(s) URL.
    HttpUrl, |v, t, at, key| { v.url(&t, at, key); }
);

text_kind!(
    /// A syslog URL: `udp://`, `tcp://` or `tls://host:port`.
    SyslogUrl, |v, t, at, key| { v.syslog_url(&t, at, key); }
);

text_kind!(
    /// A Slack incoming webhook's URL, which is itself the credential: from
    /// a file or a variable, never inline.
    SlackUrl, |v, t, at, key| {
        if matches!(t.source, TextSource::Inline(_)) {
            v.err(
                at,
                format!("`{key}` is written inline, but a Slack webhook URL is itself the credential"),
                "put the URL in a file readable only by the agent and write `slack_webhook: {file: /etc/monitor/secrets/slack-webhook-url}` (or `{env: VARIABLE}`)",
            );
        }
    }
);

/// http(s) URLs, one or a list, each inline or from a file or variable.
#[derive(Clone, Copy, Debug)]
pub struct HttpUrls;

impl FileValue for HttpUrls {
    type Checked = Vec<SourcedText>;
}

impl FileCheck for HttpUrls {
    type Raw = OneOrMany<Value>;
    type Value = Vec<String>;
    fn check(
        v: &mut Validator,
        r: &Spanned<OneOrMany<Value>>,
        key: &'static str,
    ) -> Option<Vec<SourcedText>> {
        let mut urls = Vec::new();
        for u in &r.value.0 {
            let t = v.text(u, r.referenced);
            v.url(&t, placed(u.referenced, r.referenced), key);
            urls.push(t);
        }
        Some(urls)
    }
    fn resolve(checked: Vec<SourcedText>) -> Result<Vec<String>, Vec<Diagnostic>> {
        let mut urls = Vec::new();
        let mut diags = Vec::new();
        for t in checked {
            match t.read() {
                Ok(u) => urls.push(u),
                Err(d) => diags.push(d),
            }
        }
        if diags.is_empty() {
            Ok(urls)
        } else {
            Err(diags)
        }
    }
}
