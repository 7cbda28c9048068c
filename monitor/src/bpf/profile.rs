//! The syscall profile (`--syscall-profile`): the calls a container is
//! expected to make. The kernel program `syscall_profile` reports the first
//! use of any other call by each cgroup, once.
//!
//! The default profile, `docker-default`, is Docker's default seccomp
//! allowlist (`monitor/data/docker-default-syscalls.txt`). Another profile is
//! a file in the same form: one call name per line, `#` comments.
use std::{fmt, path::PathBuf, str::FromStr};

use anyhow::Context as _;
use monitor_common::SyscallBitmap;
use syscalls::Sysno;

/// Docker's default seccomp allowlist, as call names.
pub const DOCKER_DEFAULT: &str = include_str!("../../data/docker-default-syscalls.txt");

/// Which profile, if any, unexpected calls are judged against.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ProfileChoice {
    /// No profile: the program is not loaded, and no syscall pays for it.
    #[default]
    Off,
    DockerDefault,
    /// A file of call names.
    File(PathBuf),
}

impl FromStr for ProfileChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "off" => Ok(ProfileChoice::Off),
            "docker-default" => Ok(ProfileChoice::DockerDefault),
            "" => Err(
                "the syscall profile is empty: write `off`, `docker-default` or a file's path"
                    .to_owned(),
            ),
            path => Ok(ProfileChoice::File(PathBuf::from(path))),
        }
    }
}

impl fmt::Display for ProfileChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProfileChoice::Off => f.write_str("off"),
            ProfileChoice::DockerDefault => f.write_str("docker-default"),
            ProfileChoice::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A profile, read and checked: what the kernel program is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyscallProfile {
    /// `docker-default` or the file's path, for the log.
    pub name: String,
    /// The expected calls, and the rare calls that are reported with their
    /// arguments anyway (`super::syscalls::HOOKED`): never reported twice.
    pub expected: SyscallBitmap,
    /// How many calls the profile itself names.
    pub calls: usize,
}

impl SyscallProfile {
    /// The profile `choice` names; `None` for `off`.
    pub fn load(choice: &ProfileChoice) -> anyhow::Result<Option<SyscallProfile>> {
        match choice {
            ProfileChoice::Off => Ok(None),
            ProfileChoice::DockerDefault => Ok(Some(SyscallProfile::parse(
                "docker-default",
                DOCKER_DEFAULT,
            )?)),
            ProfileChoice::File(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the syscall profile {}", path.display()))?;
                Ok(Some(SyscallProfile::parse(
                    &path.display().to_string(),
                    &text,
                )?))
            }
        }
    }

    /// Reads a profile's text; an error names the line and column to fix.
    pub fn parse(name: &str, text: &str) -> Result<SyscallProfile, ProfileError> {
        let mut expected = SyscallBitmap::default();
        let mut calls = 0;
        for (i, line) in text.lines().enumerate() {
            let content = line.split('#').next().unwrap_or_default();
            let call = content.trim();
            if call.is_empty() {
                continue;
            }
            let column = content.find(call).unwrap_or(0) + 1;
            let at = |message: String| ProfileError {
                file: name.to_owned(),
                line: i + 1,
                column,
                message,
            };
            if call.contains(char::is_whitespace) {
                return Err(at(format!(
                    "`{call}` is more than one name: write one call per line"
                )));
            }
            let sysno = Sysno::from_str(call).map_err(|_| {
                at(format!(
                    "`{call}` is not a system call on {}: correct the name, or remove the line \
                     (names of other architectures, such as `chown32`, do not apply)",
                    std::env::consts::ARCH
                ))
            })?;
            expected.insert(sysno.id() as u64);
            calls += 1;
        }
        if calls == 0 {
            return Err(ProfileError {
                file: name.to_owned(),
                line: 1,
                column: 1,
                message: "the profile names no system call: list the expected calls, one per \
                          line, or set the profile to `off`"
                    .to_owned(),
            });
        }
        for call in super::syscalls::HOOKED {
            expected.insert(call.nr as u64);
        }
        Ok(SyscallProfile {
            name: name.to_owned(),
            expected,
            calls,
        })
    }
}

/// A profile line that is not a call name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ProfileError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// The call's name, if this architecture has a call of that number.
pub fn name_of(nr: u32) -> Option<&'static str> {
    Sysno::new(nr as usize).map(|s| s.name())
}

/// The call of that name on this architecture.
pub fn number_of(name: &str) -> Option<u32> {
    Sysno::from_str(name).ok().map(|s| s.id() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docker() -> SyscallProfile {
        SyscallProfile::load(&ProfileChoice::DockerDefault)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn the_docker_default_expects_ordinary_calls_and_not_the_privileged_ones() {
        let p = docker();
        for call in [
            "read",
            "write",
            "openat",
            "execve",
            "clone",
            "clone3",
            "fchmodat2",
        ] {
            assert!(
                p.expected.contains(number_of(call).unwrap() as u64),
                "{call} should be expected"
            );
        }
        for call in [
            "syslog",
            "reboot",
            "acct",
            "kexec_load",
            "pivot_root",
            "swapon",
        ] {
            assert!(
                !p.expected.contains(number_of(call).unwrap() as u64),
                "{call} should be unexpected"
            );
        }
        // The rare calls are reported with their arguments already.
        assert!(p.expected.contains(number_of("bpf").unwrap() as u64));
        assert!(p.expected.contains(number_of("setns").unwrap() as u64));
        // Numbers past the table share the last bit, never expected.
        assert!(!p.expected.contains(1 << 30));
        assert!(p.calls > 290, "{}", p.calls);
    }

    #[test]
    fn a_wrong_name_says_where() {
        let err =
            SyscallProfile::parse("p.txt", "read\n  # fine\n  chown32  # i386\n").unwrap_err();
        assert_eq!((err.line, err.column), (3, 3));
        assert!(
            err.to_string()
                .starts_with("p.txt:3:3: `chown32` is not a system call"),
            "{err}"
        );
        let err = SyscallProfile::parse("p.txt", "read write\n").unwrap_err();
        assert!(err.message.contains("one call per line"), "{err}");
        let err = SyscallProfile::parse("p.txt", "# nothing\n").unwrap_err();
        assert!(err.message.contains("names no system call"), "{err}");
    }

    #[test]
    fn choices_read_as_written() {
        assert_eq!("off".parse(), Ok(ProfileChoice::Off));
        assert_eq!("docker-default".parse(), Ok(ProfileChoice::DockerDefault));
        assert_eq!(
            "/etc/monitor/web.txt".parse(),
            Ok(ProfileChoice::File("/etc/monitor/web.txt".into()))
        );
        assert!("".parse::<ProfileChoice>().is_err());
        assert_eq!(name_of(103), Some("syslog"));
        assert_eq!(name_of(100_000), None);
    }
}
