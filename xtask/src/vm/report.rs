//! What the guests reported, for the reader: each failure with the console around it, and
//! the matrix of kernels by attach mode.

use std::time::Duration;

use super::{
    Mode,
    guest::{Cell, Problem, Run},
};

/// How much of the console a failure report shows.
const EXCERPT_LINES: usize = 120;

impl Run {
    /// The lines from `begin` to `end` (inclusive), at most `EXCERPT_LINES` of the last.
    fn excerpt(&self, begin: usize, end: usize) -> &[String] {
        let end = (end + 1).min(self.lines.len());
        &self.lines[begin.max(end.saturating_sub(EXCERPT_LINES))..end]
    }
}

impl Problem {
    /// For the matrix.
    fn label(&self) -> &'static str {
        match self {
            Problem::Panic => "KERNEL PANIC",
            Problem::Hang(_) => "HUNG",
            Problem::Stopped(_) => "STOPPED EARLY",
        }
    }

    fn describe(&self) -> String {
        match self {
            Problem::Panic => "the kernel panicked".to_owned(),
            Problem::Hang(timeout) => format!(
                "the guest hung: it did not power off within {} s",
                timeout.as_secs()
            ),
            Problem::Stopped(status) => {
                format!("the guest stopped before it finished the suite (qemu {status})")
            }
        }
    }
}

/// The names of the tests libtest reported as failed between two console lines: each
/// `test NAME ... FAILED` line, and the names listed under its closing `failures:` (what
/// other output split from its `... FAILED`).
fn failed_tests(lines: &[String]) -> Vec<&str> {
    let listed = lines
        .iter()
        .rposition(|line| line == "failures:")
        .map_or(&[][..], |heading| &lines[heading + 1..])
        .iter()
        .map_while(|line| line.strip_prefix("    "));
    let mut tests: Vec<&str> = Vec::new();
    let reported = lines
        .iter()
        .filter_map(|line| line.strip_prefix("test ")?.strip_suffix(" ... FAILED"));
    for test in reported.chain(listed) {
        if !tests.contains(&test) {
            tests.push(test);
        }
    }
    tests
}

/// Prints, for each failure of `run`, the kernel, mode, binary and tests, and the console
/// around it.
pub(super) fn report_failures(run: &Run) {
    let kernel = format!("kernel {} ({})", run.kernel.name(), run.release);
    let mut failed = false;
    for binary in &run.binaries {
        let Some((end, exit, failures)) = &binary.end else {
            continue;
        };
        if exit == "0" && *failures == 0 {
            continue;
        }
        failed = true;
        let excerpt = run.excerpt(binary.begin, *end);
        // From the whole output: a binary's failures can start long before its excerpt.
        let tests = failed_tests(&run.lines[binary.begin..=*end]);
        let what = if tests.is_empty() {
            format!("exited with status {exit} without a failed test named")
        } else {
            format!("failed {}", tests.join(", "))
        };
        eprintln!(
            "\nvm-test: {kernel}, mode {}, {}: {what}\n{}",
            binary.mode,
            binary.binary,
            excerpt.join("\n")
        );
    }
    if let Some(problem) = &run.problem {
        failed = true;
        let running = match run.binaries.last() {
            Some(binary) if binary.end.is_none() => {
                let output = &run.lines[binary.begin..];
                let slow: Vec<&str> = output
                    .iter()
                    .filter_map(|line| {
                        line.strip_prefix("test ")?
                            .strip_suffix(" has been running for over 60 seconds")
                    })
                    .collect();
                let slow = if slow.is_empty() {
                    String::new()
                } else {
                    format!("; still running: {}", slow.join(", "))
                };
                format!(
                    " while running {} in mode {}{slow}",
                    binary.binary, binary.mode
                )
            }
            _ => String::new(),
        };
        let last = run.lines.len().saturating_sub(1);
        eprintln!(
            "\nvm-test: {kernel}: {}{running}; the console's last lines:\n{}",
            problem.describe(),
            run.excerpt(0, last).join("\n")
        );
    }
    if failed {
        eprintln!(
            "vm-test: the whole console of {kernel} is in {}",
            run.log.display()
        );
    }
}

pub(super) fn print_matrix(runs: &[Run], modes: &[Mode], total: Duration) {
    let mut rows = vec![{
        let mut header = vec!["kernel".to_owned()];
        header.extend(modes.iter().map(|mode| mode.name().to_owned()));
        header.extend(["guest".to_owned(), "time".to_owned()]);
        header
    }];
    for run in runs {
        let mut row = vec![format!("{} ({})", run.kernel.name(), run.release)];
        for &mode in modes {
            row.push(match run.cell(mode) {
                Some(Cell::Unsupported) => "unsupported".to_owned(),
                Some(&Cell::Counts { passed, failed: 0 }) if passed > 0 => {
                    format!("passed {passed}")
                }
                Some(&Cell::Counts { passed, failed }) => {
                    format!("FAILED {failed} of {}", passed + failed)
                }
                None => "NO RESULT".to_owned(),
            });
        }
        row.push(run.problem.as_ref().map_or("ok", Problem::label).to_owned());
        row.push(format!("{} s", run.elapsed.as_secs()));
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    println!("\nvm-test matrix (tests passed per kernel and attach mode):");
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        println!("  {}", cells.join("  ").trim_end());
    }
    println!("\nwhat --attach auto picks (tracer check in each guest):");
    for run in runs {
        let picks: Vec<String> = run
            .auto
            .iter()
            .map(|(hook, mechanism)| format!("{hook} {mechanism}"))
            .collect();
        println!("  {:<5} {}", run.kernel.name(), picks.join(", "));
    }
    println!("total {} s", total.as_secs());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_failed_tests() {
        let output: Vec<String> = [
            "test a ... ok",
            "test b::c ... FAILED",
            "test d has been running for over 60 seconds",
        ]
        .map(str::to_owned)
        .into();
        assert_eq!(failed_tests(&output), ["b::c"]);
    }

    #[test]
    fn names_the_failed_tests_libtest_lists_at_its_end() {
        let output: Vec<String> = [
            "test a::b ... ok",
            "test a::c ... [  12.3] lo: entered promiscuous mode",
            "FAILED",
            "test a::d ... FAILED",
            "failures:",
            "",
            "---- a::c stdout ----",
            "failures:",
            "    a::c",
            "    a::d",
            "",
            "test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out",
        ]
        .map(str::to_owned)
        .into();
        assert_eq!(failed_tests(&output), ["a::d", "a::c"]);
    }
}
