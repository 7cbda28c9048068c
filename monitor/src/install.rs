//! `monitor install --systemd`: places the running binary, the systemd unit,
//! the example configuration and the default rule pack, all shipped inside the
//! binary, so one copied file is enough to install the agent on a host.
use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;

/// The unit as shipped in `deploy/systemd/monitor.service`.
pub const UNIT: &str = include_str!("../../deploy/systemd/monitor.service");
/// The example configuration as shipped in `deploy/monitor.yaml`.
pub const CONFIG: &str = include_str!("../../deploy/monitor.yaml");
/// Where the shipped unit expects the binary; rewritten for another `--prefix`.
pub const UNIT_BINARY: &str = "/usr/local/bin/monitor";

macro_rules! rule_pack {
    ($($name:literal),* $(,)?) => {
        /// The default rule pack (`rules/*.yaml`), by file name.
        pub const RULES: &[(&str, &str)] = &[
            $(($name, include_str!(concat!("../../rules/", $name)))),*
        ];
    };
}

// A test checks this list against the `rules/` directory.
rule_pack!(
    "00-networks.yaml",
    "detectors.yaml",
    "egress.yaml",
    "files.yaml",
    "host.yaml",
    "posture.yaml",
    "processes.yaml",
    "syscalls.yaml",
);

/// Where to install.
#[derive(Clone, Debug)]
pub struct InstallOptions {
    /// Everything goes below this directory (`/` for real; a temporary
    /// directory for a test or a package build).
    pub root: PathBuf,
    /// The binary goes to `<prefix>/bin/monitor`.
    pub prefix: PathBuf,
    /// The binary to install (normally the running one).
    pub binary: PathBuf,
    /// Replace an existing `/etc/monitor/monitor.yaml`.
    pub overwrite_config: bool,
}

/// Places the files and returns one line per action.
pub fn install_systemd(opts: &InstallOptions) -> anyhow::Result<Vec<String>> {
    let mut done = Vec::new();
    let under = |p: &Path| opts.root.join(p.strip_prefix("/").unwrap_or(p));
    let binary_path = opts.prefix.join("bin/monitor");

    let bin = under(&binary_path);
    mkdir(bin.parent().expect("has a parent"), 0o755)?;
    // Copy next to it and rename, so a running agent's binary is never half-written.
    let tmp = bin.with_extension("new");
    fs::copy(&opts.binary, &tmp)
        .with_context(|| format!("copying {} to {}", opts.binary.display(), tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
    fs::rename(&tmp, &bin).with_context(|| format!("placing {}", bin.display()))?;
    done.push(format!("binary   {}", bin.display()));

    let unit_path = under(Path::new("/etc/systemd/system/monitor.service"));
    mkdir(unit_path.parent().expect("has a parent"), 0o755)?;
    let unit = UNIT.replace(UNIT_BINARY, &binary_path.to_string_lossy());
    write(&unit_path, &unit, 0o644)?;
    done.push(format!("unit     {}", unit_path.display()));

    let etc = under(Path::new("/etc/monitor"));
    mkdir(&etc, 0o755)?;
    let config = etc.join("monitor.yaml");
    if config.exists() && !opts.overwrite_config {
        done.push(format!(
            "config   {} (kept; the shipped example is in the unit's docs)",
            config.display()
        ));
    } else {
        write(&config, CONFIG, 0o640)?;
        done.push(format!("config   {}", config.display()));
    }
    let rules = etc.join("rules");
    mkdir(&rules, 0o755)?;
    for (name, text) in RULES {
        write(&rules.join(name), text, 0o644)?;
    }
    done.push(format!(
        "rules    {} ({} files; put your own in {})",
        rules.display(),
        RULES.len(),
        etc.join("rules.d").display()
    ));
    mkdir(&etc.join("rules.d"), 0o755)?;
    mkdir(&etc.join("secrets"), 0o700)?;
    done.push(format!(
        "secrets  {} (mode 0700)",
        etc.join("secrets").display()
    ));
    let spool = under(Path::new("/var/lib/monitor/spool"));
    mkdir(spool.parent().expect("has a parent"), 0o700)?;
    mkdir(&spool, 0o700)?;
    done.push(format!("spool    {}", spool.display()));
    Ok(done)
}

fn mkdir(dir: &Path, mode: u32) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", dir.display()))
}

fn write(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp-install");
    fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp, path).with_context(|| format!("placing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_rule_pack_is_the_rules_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
        let mut on_disk: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
            .collect();
        on_disk.sort();
        let embedded: Vec<&str> = RULES.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            embedded, on_disk,
            "update rule_pack! in monitor/src/install.rs to ship every rule file"
        );
        for (name, text) in RULES {
            assert_eq!(*text, fs::read_to_string(dir.join(name)).unwrap());
        }
    }

    #[test]
    fn unit_names_the_binary_it_is_rewritten_for() {
        assert!(UNIT.contains(&format!("ExecStart={UNIT_BINARY} run --config ")));
    }
}
