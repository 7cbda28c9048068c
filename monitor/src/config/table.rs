//! The machinery behind the table of settings (`settings.rs`): the
//! `settings!` macro that turns each row into a field of the settings in
//! force, a clap argument, a key of the file's schema, a step of the
//! precedence merge and a key `monitor config check` reports. The macro only
//! repeats; what a type means on the command line is [`CliValue`]'s, what a
//! key means in the file is [`FileValue`](super::kinds::FileValue)'s.
use clap::{Arg, ArgMatches, parser::ValueSource};

pub use super::flags::CliValue;

/// Where a setting's value came from, as `--print-config` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// On the command line.
    Flag,
    /// In the environment.
    Env,
    /// In the configuration file.
    File,
    /// Nobody said: the built-in default.
    Default,
}

impl Origin {
    /// `flag`, `env`, `file` or `default`.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Flag => "flag",
            Origin::Env => "env",
            Origin::File => "file",
            Origin::Default => "default",
        }
    }
}

/// Which commands take a setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every command that loads the kernel programs: `trace`, `hooks`, `run`.
    Source,
    /// `monitor run` only.
    Run,
}

/// One row of the table, as data: for documentation and its tests.
#[derive(Clone, Copy, Debug)]
pub struct Setting {
    /// The configuration-file key (and clap's id), when the file takes it;
    /// else the setting's name.
    pub key: &'static str,
    /// Which commands take it.
    pub scope: Scope,
    /// `--flag`, without the dashes; `None` for the environment and the file only.
    pub flag: Option<&'static str>,
    /// The environment variable.
    pub env: Option<&'static str>,
    /// Whether the configuration file takes it.
    pub in_file: bool,
    /// The value's Rust type, as written in the table.
    pub ty: &'static str,
    /// The help lines (the doc comment of the row).
    pub help: &'static [&'static str],
}

/// A setting's value from the command line or the environment (the default
/// when neither gave one), and where it came from.
pub(crate) fn given<T: CliValue>(m: &ArgMatches, id: &str) -> (T, Origin) {
    let origin = match m.value_source(id) {
        Some(ValueSource::CommandLine) => Origin::Flag,
        Some(ValueSource::EnvVariable) => Origin::Env,
        _ => Origin::Default,
    };
    (T::get(m, id), origin)
}

/// A setting that no flag takes (the Slack URL: every user can read
/// `/proc/*/cmdline`), from its variable: unset or blank is not given.
pub(crate) fn from_env<T: EnvValue>(var: &str) -> (T, Origin) {
    match std::env::var(var).ok().filter(|v| !v.trim().is_empty()) {
        Some(v) => (T::from_env(v.trim()), Origin::Env),
        None => (T::default(), Origin::Default),
    }
}

/// The types a setting without a flag may have.
pub(crate) trait EnvValue: Default {
    fn from_env(text: &str) -> Self;
}

impl EnvValue for Option<String> {
    fn from_env(text: &str) -> Self {
        Some(text.to_owned())
    }
}

/// The clap argument of a row with a flag.
pub(crate) fn arg<T: CliValue>(
    id: &'static str,
    flag: &'static str,
    env: Option<&'static str>,
    default: Option<&'static str>,
    value_name: Option<&'static str>,
    help: &[&str],
) -> Arg {
    let mut a = T::configure(Arg::new(id).long(flag).help(help_text(help)));
    if let Some(e) = env {
        a = a.env(e);
    }
    if let Some(d) = default {
        a = a.default_value(d);
    }
    if let Some(n) = value_name {
        a = a.value_name(n);
    }
    a
}

/// A doc comment as clap's derive writes it for `--help`: the lines joined,
/// the closing period dropped.
pub(crate) fn help_text(lines: &[&str]) -> String {
    let joined: Vec<&str> = lines.iter().map(|l| l.trim()).collect();
    let text = joined.join(" ");
    text.strip_suffix('.').unwrap_or(&text).to_owned()
}

/// `Some(x)` for a present optional part of a row, `None` for an absent one.
macro_rules! part {
    () => {
        None
    };
    ($x:expr) => {
        Some($x)
    };
}

/// Whether a row has a file part.
macro_rules! in_file {
    () => {
        false
    };
    ($kind:ty) => {
        true
    };
}

/// A row's default as clap takes it: text that lives as long as the program.
macro_rules! default_text {
    ($d:expr) => {{
        static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        TEXT.get_or_init(|| $d.to_string()).as_str()
    }};
}

/// A row's clap argument, when it has a flag.
macro_rules! row_arg {
    ($args:ident, $ty:ty, $key:ident, [$($flag:literal)?], $env:expr, $default:expr, $vn:expr, $help:expr) => {
        $( $args.push($crate::config::table::arg::<$ty>(stringify!($key), $flag, $env, $default, $vn, $help)); )?
    };
}

/// A row's value from the command line (or, without a flag, the environment).
macro_rules! row_given {
    ($m:ident, $ty:ty, $key:ident, [$flag:literal], $env:expr) => {
        $crate::config::table::given::<$ty>($m, stringify!($key))
    };
    ($m:ident, $ty:ty, $key:ident, [], $env:expr) => {
        $crate::config::table::from_env::<$ty>(
            $env.expect("a setting without a flag has a variable"),
        )
    };
}

/// Takes the file's value of a row where neither the command line nor the
/// environment gave one.
macro_rules! row_merge {
    ($target:expr, $origins:ident, $file:ident, $diags:ident, $key:ident, []) => {};
    ($target:expr, $origins:ident, $file:ident, $diags:ident, $key:ident, [$kind:ty]) => {
        if let Some((_, origin)) = $origins.iter_mut().find(|(k, _)| *k == stringify!($key))
            && *origin == $crate::config::table::Origin::Default
            && let Some(v) = $file.$key.take()
        {
            match <$kind as $crate::config::kinds::FileCheck>::resolve(v) {
                Ok(v) => $target = v,
                Err(d) => $diags.extend(d),
            }
            *origin = $crate::config::table::Origin::File;
        }
    };
}

/// Declares the settings. See `settings.rs` for the rows and what each part drives.
macro_rules! settings {
    (
        $(#[doc = $sdoc:literal])*
        source {
            $(
                $(#[doc = $shelp:literal])*
                $skey:ident: $sty:ty {
                    $(flag: $sflag:literal,)?
                    $(env: $senv:literal,)?
                    $(default: $sdefault:expr,)?
                    $(value_name: $svn:literal,)?
                    $(file: $skind:ty,)?
                }
            )*
        }
        $(#[doc = $rdoc:literal])*
        run {
            $(
                $(#[doc = $rhelp:literal])*
                $rkey:ident: $rty:ty {
                    $(flag: $rflag:literal,)?
                    $(env: $renv:literal,)?
                    $(default: $rdefault:expr,)?
                    $(value_name: $rvn:literal,)?
                    $(file: $rkind:ty,)?
                }
            )*
        }
    ) => {
        $(#[doc = $sdoc])*
        #[derive(Clone, Debug)]
        pub struct SourceSettings {
            $( $(#[doc = $shelp])* pub $skey: $sty, )*
        }

        $(#[doc = $rdoc])*
        #[derive(Clone, Debug)]
        pub struct RunSettings {
            /// What `trace` and `hooks` take too.
            pub source: SourceSettings,
            $( $(#[doc = $rhelp])* pub $rkey: $rty, )*
        }

        /// Every row of the table, in order.
        pub const SETTINGS: &[$crate::config::table::Setting] = &[
            $($crate::config::table::Setting {
                key: stringify!($skey),
                scope: $crate::config::table::Scope::Source,
                flag: part!($($sflag)?),
                env: part!($($senv)?),
                in_file: in_file!($($skind)?),
                ty: stringify!($sty),
                help: &[$($shelp),*],
            },)*
            $($crate::config::table::Setting {
                key: stringify!($rkey),
                scope: $crate::config::table::Scope::Run,
                flag: part!($($rflag)?),
                env: part!($($renv)?),
                in_file: in_file!($($rkind)?),
                ty: stringify!($rty),
                help: &[$($rhelp),*],
            },)*
        ];

        /// The settings a configuration file gives, validated, secrets not
        /// read yet; `None` where the file leaves a setting out. Field names
        /// are the file's keys; each is documented in [`RunSettings`] (or
        /// [`SourceSettings`]).
        #[derive(Clone, Debug, Default)]
        pub struct FileSettings {
            $($(
                #[doc = concat!("`", stringify!($skey), ":`")]
                pub $skey: Option<<$skind as $crate::config::kinds::FileValue>::Checked>,
            )?)*
            $($(
                #[doc = concat!("`", stringify!($rkey), ":`")]
                pub $rkey: Option<<$rkind as $crate::config::kinds::FileValue>::Checked>,
            )?)*
            /// Extra sinks with every option (file only).
            pub sinks: Vec<$crate::config::SinkSpec>,
        }

        /// The file as written: one key per row with a file part, and `sinks`.
        #[derive(Debug, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(crate) struct RawConfig {
            $($(
                #[serde(default)]
                pub $skey: Option<serde_saphyr::Spanned<<$skind as $crate::config::kinds::FileCheck>::Raw>>,
            )?)*
            $($(
                #[serde(default)]
                pub $rkey: Option<serde_saphyr::Spanned<<$rkind as $crate::config::kinds::FileCheck>::Raw>>,
            )?)*
            #[serde(default)]
            pub sinks: Vec<serde_saphyr::Spanned<$crate::config::raw::RawSink>>,
        }

        impl FileSettings {
            /// The keys the file sets.
            pub fn keys_set(&self) -> Vec<&'static str> {
                let mut v = Vec::new();
                $($( if $crate::config::kinds::is_set::<$skind>(&self.$skey) { v.push(stringify!($skey)); } )?)*
                $($( if $crate::config::kinds::is_set::<$rkind>(&self.$rkey) { v.push(stringify!($rkey)); } )?)*
                if !self.sinks.is_empty() {
                    v.push("sinks");
                }
                v
            }

            /// Every key's value checked, in the table's order (the sinks
            /// and the rules between keys are the caller's).
            pub(crate) fn check(v: &mut $crate::config::Validator, raw: &RawConfig) -> Self {
                FileSettings {
                    $($( $skey: raw.$skey.as_ref().and_then(|r| {
                        <$skind as $crate::config::kinds::FileCheck>::check(v, r, stringify!($skey))
                    }), )?)*
                    $($( $rkey: raw.$rkey.as_ref().and_then(|r| {
                        <$rkind as $crate::config::kinds::FileCheck>::check(v, r, stringify!($rkey))
                    }), )?)*
                    sinks: Vec::new(),
                }
            }
        }

        impl SourceSettings {
            fn push_args(args: &mut Vec<clap::Arg>) {
                $( row_arg!(args, $sty, $skey, [$($sflag)?], part!($($senv)?),
                    part!($(default_text!($sdefault))?), part!($($svn)?), &[$($shelp),*]); )*
            }

            /// The values of the command line and the environment (or the
            /// defaults), and where each came from.
            fn given(m: &clap::ArgMatches, origins: &mut Vec<(&'static str, $crate::config::table::Origin)>) -> Self {
                SourceSettings {
                    $( $skey: {
                        let (v, o) = row_given!(m, $sty, $skey, [$($sflag)?], part!($($senv)?));
                        origins.push((stringify!($skey), o));
                        v
                    }, )*
                }
            }

            /// Fills in the file's values where the command line and the
            /// environment gave none.
            fn merge(
                &mut self,
                origins: &mut [(&'static str, $crate::config::table::Origin)],
                file: &mut FileSettings,
                diags: &mut Vec<$crate::diagnostic::Diagnostic>,
            ) {
                $( row_merge!(self.$skey, origins, file, diags, $skey, [$($skind)?]); )*
            }
        }

        impl RunSettings {
            fn push_args(args: &mut Vec<clap::Arg>) {
                SourceSettings::push_args(args);
                $( row_arg!(args, $rty, $rkey, [$($rflag)?], part!($($renv)?),
                    part!($(default_text!($rdefault))?), part!($($rvn)?), &[$($rhelp),*]); )*
            }

            fn given(m: &clap::ArgMatches, origins: &mut Vec<(&'static str, $crate::config::table::Origin)>) -> Self {
                RunSettings {
                    source: SourceSettings::given(m, origins),
                    $( $rkey: {
                        let (v, o) = row_given!(m, $rty, $rkey, [$($rflag)?], part!($($renv)?));
                        origins.push((stringify!($rkey), o));
                        v
                    }, )*
                }
            }

            fn merge(
                &mut self,
                origins: &mut [(&'static str, $crate::config::table::Origin)],
                file: &mut FileSettings,
                diags: &mut Vec<$crate::diagnostic::Diagnostic>,
            ) {
                self.source.merge(origins, file, diags);
                $( row_merge!(self.$rkey, origins, file, diags, $rkey, [$($rkind)?]); )*
            }
        }
    };
}

pub(crate) use {default_text, in_file, part, row_arg, row_given, row_merge, settings};
