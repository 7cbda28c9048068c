//! What a setting's type means on the command line: the clap action and value
//! parser of each type the table's rows use, as clap's derive would choose
//! them, so the flags parse and report errors as they always have.
use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use clap::{Arg, ArgAction, ArgMatches, builder::ValueParser, value_parser};

use crate::{
    bpf::{hooks::TierChoice, profile::ProfileChoice},
    sink::AlertFormat,
};

/// A type a flag (and its variable) can give.
pub trait CliValue: Sized {
    /// Sets the argument's action and value parser.
    fn configure(arg: Arg) -> Arg;
    /// The value clap parsed (given or the default).
    fn get(m: &ArgMatches, id: &str) -> Self;
}

/// A single value of a flag.
pub trait Scalar: Clone + Send + Sync + 'static {
    /// How clap parses it.
    fn parser() -> ValueParser;
}

macro_rules! scalar {
    ($($ty:ty => $parser:expr),* $(,)?) => {
        $(impl Scalar for $ty {
            fn parser() -> ValueParser {
                $parser.into()
            }
        })*
    };
}

scalar!(
    PathBuf => value_parser!(PathBuf),
    String => value_parser!(String),
    u32 => value_parser!(u32),
    SocketAddr => value_parser!(SocketAddr),
    IpAddr => value_parser!(IpAddr),
    AlertFormat => value_parser!(AlertFormat),
    TierChoice => value_parser!(TierChoice),
    ProfileChoice => value_parser!(ProfileChoice),
    Duration => ValueParser::new(humantime::parse_duration),
);

/// A value with a default (the row says which).
impl<T: Scalar> CliValue for T {
    fn configure(arg: Arg) -> Arg {
        arg.action(ArgAction::Set).value_parser(T::parser())
    }
    fn get(m: &ArgMatches, id: &str) -> Self {
        m.get_one::<T>(id)
            .cloned()
            .unwrap_or_else(|| panic!("the row `{id}` needs a default"))
    }
}

/// A value nobody has to give.
impl<T: Scalar> CliValue for Option<T> {
    fn configure(arg: Arg) -> Arg {
        arg.action(ArgAction::Set).value_parser(T::parser())
    }
    fn get(m: &ArgMatches, id: &str) -> Self {
        m.get_one::<T>(id).cloned()
    }
}

/// A repeatable flag whose variable is a comma-separated list.
impl<T: Scalar> CliValue for Vec<T> {
    fn configure(arg: Arg) -> Arg {
        arg.action(ArgAction::Append)
            .value_parser(T::parser())
            .value_delimiter(',')
    }
    fn get(m: &ArgMatches, id: &str) -> Self {
        m.get_many::<T>(id)
            .map(|v| v.cloned().collect())
            .unwrap_or_default()
    }
}

/// A switch: the flag turns it on, the variable says `true` or `false`.
impl CliValue for bool {
    fn configure(arg: Arg) -> Arg {
        arg.action(ArgAction::SetTrue)
    }
    fn get(m: &ArgMatches, id: &str) -> Self {
        m.get_flag(id)
    }
}
