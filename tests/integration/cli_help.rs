//! Every `--help` ends with examples that are true: each example names files that exist under
//! examples/, and the real binary parses its subcommand and flags. docs/cli.md pastes every
//! `--help` as the binary prints it.

use std::path::Path;

use crate::util::bin::{stderr, stdout, swarm};
use crate::util::live;

/// The subcommands `swarm PATH --help` lists under "Commands:" (without clap's `help`).
fn subcommands(path: &[String]) -> Vec<String> {
    let help = help(path);
    let Some((_, listed)) = help.split_once("\nCommands:\n") else { return Vec::new() };
    listed
        .lines()
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// Every command path: `[]` (swarm itself), `["check"]`, ..., `["runs", "show"]`, ...
fn command_paths() -> Vec<Vec<String>> {
    let mut paths = vec![Vec::new()];
    let mut i = 0;
    while i < paths.len() {
        let path = paths[i].clone();
        for name in subcommands(&path) {
            let mut deeper = path.clone();
            deeper.push(name);
            paths.push(deeper);
        }
        i += 1;
    }
    assert!(paths.len() > 10, "swarm has its subcommands and `runs` its own: {paths:?}");
    paths
}

/// `swarm PATH`, as a person types it.
fn shown(path: &[String]) -> String {
    std::iter::once("swarm").chain(path.iter().map(String::as_str)).collect::<Vec<_>>().join(" ")
}

/// What `swarm PATH --help` prints.
fn help(path: &[String]) -> String {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    let out = swarm(&args);
    assert_eq!(out.status.code(), Some(0), "swarm {}: {}", args.join(" "), stderr(&out));
    stdout(&out)
}

/// The lines of the "Examples:" section at the end of `help`.
fn examples(help: &str) -> Vec<String> {
    let Some((_, section)) = help.rsplit_once("\nExamples:\n") else { return Vec::new() };
    section.lines().filter_map(|line| line.strip_prefix("  ")).map(str::to_string).collect()
}

/// A word of a shell command line, and whether it was quoted (a quoted `|` is not a pipe).
struct Word {
    text: String,
    quoted: bool,
}

/// Splits a command line into words as a POSIX shell does for the quoting these examples use.
fn words(line: &str) -> Vec<Word> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = Word { text: String::new(), quoted: false };
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            match c {
                '\'' | '"' => {
                    word.quoted = true;
                    for inner in chars.by_ref() {
                        if inner == c {
                            break;
                        }
                        word.text.push(inner);
                    }
                }
                _ => word.text.push(c),
            }
        }
        words.push(word);
    }
    words
}

/// The argument lists of the `swarm` commands in an example line (the commands joined by `|`,
/// `&&` or `;`), with redirections left out.
fn swarm_invocations(line: &str) -> Vec<Vec<String>> {
    let mut commands = vec![Vec::new()];
    let mut words = words(line).into_iter();
    while let Some(word) = words.next() {
        match word.text.as_str() {
            "|" | "||" | "&&" | ";" if !word.quoted => commands.push(Vec::new()),
            ">" | ">>" | "2>" | "<" if !word.quoted => {
                words.next();
            }
            _ => commands.last_mut().unwrap().push(word.text),
        }
    }
    commands.into_iter().filter(|c| c.first().is_some_and(|w| w == "swarm")).map(|c| c[1..].to_vec()).collect()
}

/// The subcommand path an argument list names: its leading words that are subcommands.
fn command_of(args: &[String], paths: &[Vec<String>]) -> Vec<String> {
    let mut path = Vec::new();
    for arg in args {
        let mut deeper = path.clone();
        deeper.push(arg.clone());
        if !paths.contains(&deeper) {
            break;
        }
        path = deeper;
    }
    path
}

#[test]
fn every_help_ends_with_examples_that_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let paths = command_paths();
    let mut failures = Vec::new();
    for path in &paths {
        let shown = shown(path);
        let examples = examples(&help(path));
        if examples.is_empty() {
            failures.push(format!("`{shown} --help` has no Examples: section"));
            continue;
        }
        let mut shows_itself = false;
        for line in &examples {
            let invocations = swarm_invocations(line);
            if invocations.is_empty() {
                failures.push(format!("`{shown} --help`: example `{line}` runs no swarm command"));
            }
            for args in invocations {
                let command = command_of(&args, &paths);
                shows_itself |= command == *path;
                // Parsed up to --help, every flag and value before it is checked (an unknown
                // flag or a bad value exits 2); missing arguments are not, which is the point.
                let mut parse: Vec<&str> = args.iter().map(String::as_str).collect();
                parse.push("--help");
                let out = swarm(&parse);
                let usage = format!("Usage: swarm {}", command.join(" "));
                if out.status.code() != Some(0) || !stdout(&out).contains(&usage) {
                    failures.push(format!(
                        "`{shown} --help`: example `{line}` does not parse as `{usage}`: {}",
                        stderr(&out)
                    ));
                }
                for arg in args.iter().filter(|a| a.starts_with("examples/")) {
                    if !root.join(arg).is_file() {
                        failures.push(format!("`{shown} --help`: example `{line}` names {arg}, which does not exist"));
                    }
                }
                for pair in args.windows(2).filter(|w| w[0] == "--input" && !w[1].starts_with('@')) {
                    if !serde_json::from_str::<serde_json::Value>(&pair[1]).is_ok_and(|v| v.is_object()) {
                        failures.push(format!("`{shown} --help`: example `{line}`: --input is not a JSON object"));
                    }
                }
            }
        }
        if !path.is_empty() && !shows_itself {
            failures.push(format!("`{shown} --help`: no example runs `{shown}`"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_examples_on_files_run() {
    // The read-only examples, run for real: what they claim about these files holds.
    for args in [
        vec!["check", "examples/review.lua"],
        vec!["check", "examples/pipeline.lua", "--load-timeout", "2000"],
        vec!["compile", "examples/pipeline.lua"],
        vec!["graph", "examples/review.lua", "--format", "dot"],
        vec![
            "run",
            "examples/pipeline.lua",
            "--input",
            r#"{"topic":"lua"}"#,
            "--events",
            "ndjson",
            "--state",
            "memory",
        ],
    ] {
        let out = swarm(&args);
        assert_eq!(out.status.code(), Some(0), "swarm {}: {}", args.join(" "), stderr(&out));
    }
}

#[test]
fn the_served_example_ticks_and_stops_on_sigterm() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut served = live::Swarm::start(root, &["serve", "examples/serve/ticker.lua", "--state", "memory"]);
    served.wait_stderr("serving examples/serve/ticker.lua (1 timers)", 1);
    served.wait_stdout("hello, you (run 1)", 1);
    served.signal("TERM");
    let status = served.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", served.stderr());
}

#[test]
fn docs_cli_pastes_every_help() {
    let docs = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cli.md")).unwrap();
    // clap pads some lines with spaces; the Markdown does not keep trailing spaces.
    let pasted = |help: &str| {
        let lines: Vec<&str> = help.trim_end().lines().map(str::trim_end).collect();
        format!("```text\n{}\n```", lines.join("\n"))
    };
    let stale: Vec<String> = command_paths()
        .iter()
        .filter(|path| !docs.contains(&pasted(&help(path))))
        .map(|path| format!("`{} --help`", shown(path)))
        .collect();
    assert!(stale.is_empty(), "docs/cli.md does not paste what these print (paste them again): {stale:?}");
}
