//! Writing to the terminal. Text printed here comes from suites, documents, models and
//! servers, so control characters are shown as escapes, never sent raw (an `ESC ]` from a
//! document must not retitle the window or hide a line), and every secret the process
//! holds is replaced, whatever message carried it (a server that echoes a request's
//! headers in its error body). A reader that goes away (`show |
//! head`) ends the command quietly. Colour marks outcomes when stdout is a terminal and
//! `NO_COLOR` is unset.

use std::borrow::Cow;
use std::io::{IsTerminal, Write};

/// `text` with every control character but newline and tab, and the Unicode characters
/// that reorder or split what a terminal shows, written as `\u{…}` escapes.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unprintable) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_unprintable(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn is_unprintable(c: char) -> bool {
    c != '\n' && c != '\t' && crate::invisible::is_layout_control(c)
}

/// On GitHub Actions a printed line that starts with `::` is a workflow command: text from
/// a suite or a server must not forge one, so such lines get a leading `\`.
fn no_forged_commands(text: Cow<'_, str>) -> Cow<'_, str> {
    static ACTIONS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let on_actions =
        *ACTIONS.get_or_init(|| std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true"));
    if !on_actions || !text.lines().any(|l| l.trim_start().starts_with("::")) {
        return text;
    }
    let guarded: Vec<String> = text
        .split('\n')
        .map(|line| {
            if line.trim_start().starts_with("::") {
                format!("\\{line}")
            } else {
                line.to_owned()
            }
        })
        .collect();
    Cow::Owned(guarded.join("\n"))
}

/// Prints one GitHub Actions workflow command (its values escaped by the caller), scrubbed;
/// on stderr when stdout carries a JSON document.
pub fn workflow_command(line: &str, to_stderr: bool) {
    let scrubbed = crate::secrets::scrub(line);
    let text = printable(&scrubbed);
    if to_stderr {
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    } else {
        let mut lock = std::io::stdout().lock();
        finish_write(writeln!(lock, "{text}").and_then(|()| lock.flush()));
    }
}

/// Prints `text` on stdout as it is safe to show; with colour on a terminal.
pub fn print(text: &str) {
    let scrubbed = crate::secrets::scrub(text);
    let text = no_forged_commands(printable(&scrubbed));
    let stdout = std::io::stdout();
    let coloured = if colour_wanted(stdout.is_terminal()) {
        Cow::Owned(colour(&text))
    } else {
        text
    };
    let mut lock = stdout.lock();
    finish_write(
        lock.write_all(coloured.as_bytes())
            .and_then(|()| lock.flush()),
    );
}

/// Prints a JSON document and a newline on stdout: no colour, nothing escaped (JSON has
/// no raw control characters).
pub fn print_data(text: &str) {
    let text = crate::secrets::scrub(text);
    let mut lock = std::io::stdout().lock();
    finish_write(writeln!(lock, "{text}").and_then(|()| lock.flush()));
}

/// [`print`] with a newline.
pub fn println(text: &str) {
    print(&format!("{text}\n"));
}

/// Prints `text` on stderr as it is safe to show.
pub fn eprintln(text: &str) {
    let scrubbed = crate::secrets::scrub(text);
    let text = no_forged_commands(printable(&scrubbed));
    let mut lock = std::io::stderr().lock();
    let _ = writeln!(lock, "{text}");
}

/// A closed pipe means the reader has what it wanted: exit quietly, as `cat` does.
/// Anything else on stdout cannot be reported there either; it is said on stderr.
fn finish_write(result: std::io::Result<()>) {
    match result {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "error: cannot write to stdout: {err}");
        }
    }
}

/// Colour only for a terminal, never when `NO_COLOR` is set (https://no-color.org) or
/// the terminal is `dumb`.
pub fn colour_wanted(is_terminal: bool) -> bool {
    is_terminal
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[31m";
const YELLOW: &str = "\x1b[33m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// The outcome words of summaries, coloured: at the start of a line (`FAIL case: …`,
/// `result: PASS`), and as table cells (a word with two spaces after it).
pub fn colour(text: &str) -> String {
    const WORDS: &[(&str, &str)] = &[
        ("PASS", GREEN),
        ("FAIL", RED),
        ("REGRESSION", RED),
        ("ERROR", YELLOW),
        ("FLAKY", YELLOW),
        ("INCOMPLETE", YELLOW),
        ("INTERRUPTED", YELLOW),
    ];
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.split_inclusive('\n') {
        let mut line = line.to_owned();
        for (word, code) in WORDS {
            for prefix in ["result: ", ""] {
                let head = format!("{prefix}{word}");
                if line.starts_with(&head) && line[head.len()..].starts_with([' ', '\n', ':']) {
                    let painted = format!("{prefix}{BOLD}{code}{word}{RESET}");
                    line.replace_range(..head.len(), &painted);
                }
            }
            let cell = format!("  {word}  ");
            if line.contains(&cell) {
                line = line.replace(&cell, &format!("  {code}{word}{RESET}  "));
            }
        }
        out.push_str(&line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_shown_not_sent() {
        let text = "a \x1b[31mred\x1b]0;title\x07 b\u{202e}c\nnext\tline";
        let shown = printable(text);
        assert!(!shown.contains('\x1b'), "{shown}");
        assert!(!shown.contains('\x07'), "{shown}");
        assert!(shown.contains("\\u{1b}[31mred"), "{shown}");
        assert!(shown.contains("\\u{202e}"), "{shown}");
        assert!(shown.contains("\nnext\tline"), "{shown}");
        assert!(matches!(printable("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn outcomes_are_coloured_where_they_stand() {
        let text = "case  FAIL     0/2\nFAIL storage: q\nresult: PASS · 2 cases\nPASSWORD stays\n";
        let painted = colour(text);
        assert!(
            painted.contains(&format!("  {RED}FAIL{RESET}  ")),
            "{painted}"
        );
        assert!(
            painted.contains(&format!("{BOLD}{RED}FAIL{RESET} storage")),
            "{painted}"
        );
        assert!(
            painted.contains(&format!("result: {BOLD}{GREEN}PASS{RESET}")),
            "{painted}"
        );
        assert!(painted.contains("PASSWORD stays"), "{painted}");
    }
}
