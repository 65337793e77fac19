//! The command samples in README.md and the book (docs/) are run, and their shown output
//! compared, so a stale sample fails the build.
//!
//! The format (docs/contributing.md says it for writers):
//! - a block fenced as ```` ```console ```` holds `$ command` lines, each followed by its
//!   output (stdout and stderr as a terminal shows them); ```` ```console exit=N ```` when
//!   the block's last command exits N (every other command must exit 0);
//! - in shown output, `[..]` matches any text within a line and a line `...` any number of
//!   lines: for times, ids and paths only;
//! - a block fenced as ```` ```yaml file=PATH ```` (or text, json) is written to PATH first;
//! - each markdown file runs in its own scratch folder holding copies of `suites/` and
//!   `examples/`, blocks in order, with `ragprobe` on PATH.

use std::path::{Path, PathBuf};
use std::process::Command;

struct Sample {
    line: usize,
    commands: Vec<(String, Vec<String>)>,
    exit: i32,
}

enum Block {
    Run(Sample),
    File { path: String, text: String },
}

fn blocks(markdown: &str) -> Vec<Block> {
    let mut found = Vec::new();
    let mut lines = markdown.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let trimmed = line.trim_start();
        let fence_len = trimmed.chars().take_while(|&c| c == '`').count();
        if fence_len < 3 {
            continue;
        }
        let fence = &trimmed[..fence_len];
        let info: Vec<&str> = trimmed[fence_len..].split_whitespace().collect();
        let mut body = Vec::new();
        for (_, inner) in lines.by_ref() {
            if inner.trim_start().starts_with(fence) && inner.trim() == fence {
                break;
            }
            body.push(inner.to_owned());
        }
        let setting = |key: &str| {
            info.iter()
                .find_map(|i| i.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        };
        match info.first() {
            Some(&"console") => {
                let mut commands: Vec<(String, Vec<String>)> = Vec::new();
                for line in body {
                    match line.strip_prefix("$ ") {
                        Some(command) => commands.push((command.to_owned(), Vec::new())),
                        None => {
                            if let Some((_, shown)) = commands.last_mut() {
                                shown.push(line);
                            }
                        }
                    }
                }
                let exit = setting("exit").and_then(|v| v.parse().ok()).unwrap_or(0);
                found.push(Block::Run(Sample {
                    line: n + 1,
                    commands,
                    exit,
                }));
            }
            Some(_) => {
                if let Some(path) = setting("file") {
                    found.push(Block::File {
                        path: path.to_owned(),
                        text: body.join("\n") + "\n",
                    });
                }
            }
            None => {}
        }
    }
    found
}

/// One shown line against one printed line: `[..]` is any text.
fn line_matches(shown: &str, printed: &str) -> bool {
    let parts: Vec<&str> = shown.split("[..]").collect();
    if parts.len() == 1 {
        return shown == printed;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !printed.starts_with(first) || printed.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &printed[first.len()..];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// Shown lines against printed ones: a `...` line is any number of lines.
fn lines_match(shown: &[String], printed: &[&str]) -> bool {
    match shown.split_first() {
        None => printed.is_empty(),
        Some((first, rest)) if first == "..." => {
            (0..=printed.len()).any(|skip| lines_match(rest, &printed[skip..]))
        }
        Some((first, rest)) => printed
            .split_first()
            .is_some_and(|(p, more)| line_matches(first, p) && lines_match(rest, more)),
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let name = entry.file_name();
        if name == "__pycache__" || name == ".venv" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn markdown_files(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("README.md")];
    let mut stack = vec![root.join("docs")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Runs one file's samples; the problems found, one paragraph each.
fn check_file(root: &Path, file: &Path) -> Vec<String> {
    let markdown = std::fs::read_to_string(file).expect("markdown");
    let found = blocks(&markdown);
    if !found.iter().any(|b| matches!(b, Block::Run(_))) {
        return Vec::new();
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    copy_tree(&root.join("suites"), &scratch.path().join("suites"));
    copy_tree(&root.join("examples"), &scratch.path().join("examples"));
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_ragprobe"))
        .parent()
        .expect("bin dir")
        .to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let name = file
        .strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string();
    let mut problems = Vec::new();
    for block in found {
        let sample = match block {
            Block::File { path, text } => {
                let target = scratch.path().join(&path);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).expect("mkdir");
                }
                std::fs::write(target, text).expect("write sample file");
                continue;
            }
            Block::Run(sample) => sample,
        };
        let last = sample.commands.len().saturating_sub(1);
        for (i, (command, shown)) in sample.commands.iter().enumerate() {
            let mut run = Command::new("bash");
            run.arg("-c")
                .arg(format!("exec 2>&1\n{command}"))
                .current_dir(scratch.path())
                .env("PATH", &path)
                .env("NO_COLOR", "1")
                .env("COLUMNS", "100");
            for name in [
                "CI",
                "GITHUB_ACTIONS",
                "GITHUB_STEP_SUMMARY",
                "MLFLOW_TRACKING_URI",
                "MLFLOW_EXPERIMENT_NAME",
                "MLFLOW_EXPERIMENT_ID",
                "OPENAI_API_KEY",
            ] {
                run.env_remove(name);
            }
            let output = run.output().expect("bash runs");
            let printed = String::from_utf8_lossy(&output.stdout).into_owned();
            let printed_lines: Vec<&str> = printed.lines().map(str::trim_end).collect();
            let shown: Vec<String> = shown.iter().map(|l| l.trim_end().to_owned()).collect();
            // A trailing blank line in the block is layout, not output.
            let shown_end = shown
                .iter()
                .rposition(|l| !l.is_empty())
                .map_or(0, |p| p + 1);
            let printed_end = printed_lines
                .iter()
                .rposition(|l| !l.is_empty())
                .map_or(0, |p| p + 1);
            let want_exit = if i == last { sample.exit } else { 0 };
            let code = output.status.code().unwrap_or(-1);
            if code != want_exit {
                problems.push(format!(
                    "{name}:{}: `{command}` exited {code}, the block says {want_exit}\n{printed}",
                    sample.line
                ));
            } else if !lines_match(&shown[..shown_end], &printed_lines[..printed_end]) {
                let diff = similar::TextDiff::from_lines(
                    &shown[..shown_end].join("\n"),
                    &printed_lines[..printed_end].join("\n"),
                )
                .unified_diff()
                .header("shown", "printed")
                .to_string();
                problems.push(format!(
                    "{name}:{}: `{command}` printed something else than shown:\n{diff}",
                    sample.line
                ));
            }
        }
    }
    problems
}

#[test]
fn every_command_sample_in_the_readme_and_the_book_prints_what_it_shows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut problems = Vec::new();
    let mut samples = 0;
    for file in markdown_files(root) {
        let markdown = std::fs::read_to_string(&file).expect("markdown");
        samples += blocks(&markdown)
            .iter()
            .filter(|b| matches!(b, Block::Run(_)))
            .count();
        problems.extend(check_file(root, &file));
    }
    assert!(samples >= 10, "only {samples} samples found");
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn the_sample_matcher_wildcards_only_what_it_says() {
    assert!(line_matches("took [..] s", "took 1.2 s"));
    assert!(line_matches("[..]", "anything"));
    assert!(line_matches("a [..] b [..] c", "a 1 b 2 c"));
    assert!(!line_matches("a [..] c", "a 1 b"));
    assert!(!line_matches("exact", "exact but longer"));
    let shown = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert!(lines_match(
        &shown(&["a", "...", "d"]),
        &["a", "b", "c", "d"]
    ));
    assert!(lines_match(&shown(&["a", "...", "b"]), &["a", "b"]));
    assert!(!lines_match(&shown(&["a", "...", "d"]), &["a", "b"]));
    assert!(!lines_match(&shown(&["a", "b"]), &["a", "b", "c"]));
}

#[test]
fn the_readme_stays_short_and_links_the_book() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("readme");
    let lines = readme.lines().count();
    assert!(
        lines <= 250,
        "README.md has {lines} lines: move detail into docs/"
    );
    let summary = std::fs::read_to_string(root.join("docs/SUMMARY.md")).expect("the book");
    // Every chapter the book lists exists, and every link between markdown files resolves.
    for file in markdown_files(root) {
        let text = std::fs::read_to_string(&file).expect("markdown");
        for (at, _) in text.match_indices("](") {
            let target: String = text[at + 2..]
                .chars()
                .take_while(|&c| c != ')' && c != '#' && c != ' ')
                .collect();
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let resolved = file.parent().expect("dir").join(&target);
            assert!(
                resolved.exists(),
                "{}: link to {target} goes nowhere",
                file.display()
            );
        }
    }
    assert!(summary.contains("](") && readme.contains("docs/"));
}
