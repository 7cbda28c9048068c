//! `/proc/<pid>/mountinfo`, the one parser for it: where a file system of a
//! type is mounted.
use std::path::PathBuf;

/// The mount points of every file system of type `fstype`, in the text's order.
///
/// A line is `id parent major:minor root mount-point options [optional...] -
/// fstype source super-options`; the optional fields vary in number, so the
/// type is found after the ` - ` separator.
pub fn mount_points(mountinfo: &str, fstype: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            (right.split(' ').next()? == fstype).then(|| PathBuf::from(unescape(mount_point)))
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\134` for a
/// backslash, any other byte the kernel escaped).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push(
                    d.iter()
                        .fold(0u8, |acc, b| acc.wrapping_mul(8) + (b - b'0')),
                );
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_octal_and_leaves_the_rest() {
        assert_eq!(unescape(r"a\134b\011c\0"), "a\\b\tc\\0");
        assert_eq!(unescape(r"/mnt/my\040disk"), "/mnt/my disk");
    }

    #[test]
    fn finds_mounts_by_type_past_the_optional_fields() {
        let text = "\
24 1 0:22 / /sys/fs/cgroup/unified rw,nosuid shared:7 master:1 - cgroup2 cgroup2 rw
25 1 0:23 / /sys/fs/cgroup/cpu rw shared:8 - cgroup cgroup rw,cpu
26 1 0:24 / /sys/kernel/tracing rw - tracefs tracefs rw
27 1 0:24 / /mnt/trace\\040dir rw - tracefs tracefs rw
";
        assert_eq!(
            mount_points(text, "cgroup2"),
            [PathBuf::from("/sys/fs/cgroup/unified")]
        );
        assert_eq!(
            mount_points(text, "tracefs"),
            [
                PathBuf::from("/sys/kernel/tracing"),
                PathBuf::from("/mnt/trace dir")
            ]
        );
    }
}
