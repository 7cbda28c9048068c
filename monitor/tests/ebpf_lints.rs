//! Source checks of the kernel programs that the compiler cannot make.
//!
//! No event may be lost without a counter a user sees: every fallible step of
//! a program ends in `maps::counted` / `count_lost`. The one way to drop a
//! result silently in Rust is `let _ = ...`, so each one must say, in the
//! comment line just above it, why nothing is lost there.
use std::{fs, path::Path};

#[test]
fn every_dropped_result_in_the_kernel_programs_says_why() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../monitor-ebpf/src");
    let mut offences = Vec::new();
    let mut files = 0;
    // The modules and their submodules (`syscall/fexit.rs`).
    let mut dirs = vec![src.clone()];
    let mut paths = Vec::new();
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("monitor-ebpf/src") {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                paths.push(path);
            }
        }
    }
    for path in paths {
        files += 1;
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = line.trim_start();
            if !code.starts_with("let _ =") && !code.contains(".ok();") {
                continue;
            }
            let why = i > 0 && lines[i - 1].trim_start().starts_with("//");
            // A program's own work must go through `counted`, never be dropped.
            let drops_work =
                code.contains("try_") || code.contains("stash(") || code.contains("complete(");
            if !why || drops_work {
                offences.push(format!("{}:{}: {}", path.display(), i + 1, code));
            }
        }
    }
    assert!(
        files > 5,
        "found only {files} source files in {}",
        src.display()
    );
    assert!(
        offences.is_empty(),
        "results dropped without a counter or a reason (count them with maps::counted, \
         or say in the line above why nothing is lost):\n{}",
        offences.join("\n")
    );
}
