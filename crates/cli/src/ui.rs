//! How xspack talks to people and scripts: progress, notes, results.
//!
//! - stderr is a terminal: indicatif progress bars, cleared when done;
//! - stderr is not a terminal: a plain line when a step starts and one when it ends;
//! - `--quiet`: nothing but errors;
//! - `--json`: one JSON result on stdout (human text is then not printed on stdout).

use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressStyle};
use xspack_io::{NoProgress, Progress, ProgressTask, ProgressUnit};

use crate::cli::GlobalArgs;

/// Version of the JSON results printed with `--json`.
pub const RESULT_VERSION: u32 = 1;

/// Output settings for one run.
pub struct Ui {
    /// When the run started, for `seconds` in JSON results.
    pub start: Instant,
    /// Print nothing but errors.
    pub quiet: bool,
    /// Verbosity level from `-v`.
    pub verbose: u8,
    /// Print a JSON result on stdout.
    pub json: bool,
    /// The subcommand being run.
    pub command: &'static str,
    progress: Box<dyn Progress>,
    /// Warnings given so far, for `warnings` in JSON results.
    warnings: Mutex<Vec<String>>,
}

impl Ui {
    /// Settings from the global flags.
    pub fn new(global: &GlobalArgs, command: &'static str) -> Self {
        let progress: Box<dyn Progress> = if global.quiet {
            Box::new(NoProgress)
        } else if std::io::stderr().is_terminal() {
            Box::new(BarProgress { multi: MultiProgress::new() })
        } else {
            Box::new(LineProgress)
        };
        Ui {
            start: Instant::now(),
            quiet: global.quiet,
            verbose: global.verbose,
            json: global.json,
            command,
            progress,
            warnings: Mutex::new(Vec::new()),
        }
    }

    /// Where libraries report progress.
    pub fn progress(&self) -> &dyn Progress {
        self.progress.as_ref()
    }

    /// A human line on stdout; suppressed by `--quiet` and `--json`.
    pub fn say(&self, line: &str) {
        if !self.quiet && !self.json {
            println!("{line}");
        }
    }

    /// A detail line on stdout, shown with `-v`.
    pub fn detail(&self, line: &str) {
        if self.verbose > 0 {
            self.say(line);
        }
    }

    /// A warning on stderr (suppressed by `--quiet`), and in the JSON result's `warnings`.
    pub fn warn(&self, line: &str) {
        lock(&self.warnings).push(line.to_owned());
        if !self.quiet {
            eprintln!("xspack: warning: {line}");
        }
    }

    /// A problem found in the input, on stderr whatever the verbosity.
    pub fn problem(&self, line: &str) {
        if !self.json {
            eprintln!("xspack: {line}");
        }
    }

    /// Prints a JSON result on stdout (docs/json.md): `fields` plus the envelope every result
    /// has. `ok`, `exit_code`, `artifacts` and `inputs` default to a success with none.
    pub fn result(&self, fields: serde_json::Value) {
        let mut result = serde_json::json!({
            "result_version": RESULT_VERSION,
            "command": self.command,
            "ok": true,
            "exit_code": 0,
            "artifacts": [],
            "inputs": [],
        });
        let obj = result.as_object_mut().expect("an object");
        if let serde_json::Value::Object(fields) = fields {
            obj.extend(fields);
        }
        obj.insert("warnings".into(), lock(&self.warnings).clone().into());
        obj.insert("seconds".into(), self.start.elapsed().as_secs_f64().into());
        println!("{result}");
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Progress bars on a terminal.
struct BarProgress {
    multi: MultiProgress,
}

impl Progress for BarProgress {
    fn task(&self, label: &str, total: Option<u64>, unit: ProgressUnit) -> Box<dyn ProgressTask> {
        let template = match (total, unit) {
            (Some(_), ProgressUnit::Bytes) => {
                "{msg:12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}"
            }
            (Some(_), ProgressUnit::Items) => "{msg:12} [{bar:30}] {pos}/{len} eta {eta}",
            (None, ProgressUnit::Bytes) => "{spinner} {msg:12} {bytes} {binary_bytes_per_sec}",
            (None, ProgressUnit::Items) => "{spinner} {msg:12} {pos}",
        };
        let bar = match total {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::new_spinner(),
        };
        let style =
            ProgressStyle::with_template(template).expect("valid template").progress_chars("=> ");
        let bar = self.multi.add(bar.with_style(style).with_message(label.to_owned()));
        bar.enable_steady_tick(Duration::from_millis(120));
        Box::new(BarTask(bar))
    }

    fn note(&self, message: &str) {
        let _ = self.multi.println(message);
    }
}

struct BarTask(ProgressBar);

impl ProgressTask for BarTask {
    fn advance(&self, delta: u64) {
        self.0.inc(delta);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Drop for BarTask {
    fn drop(&mut self) {
        if !self.0.is_finished() {
            self.0.finish_and_clear();
        }
    }
}

/// Plain lines when stderr is a file or a pipe: one when a step starts, one when it ends.
struct LineProgress;

impl Progress for LineProgress {
    fn task(&self, label: &str, total: Option<u64>, unit: ProgressUnit) -> Box<dyn ProgressTask> {
        let size = match (total, unit) {
            (Some(n), ProgressUnit::Bytes) => format!(" ({})", HumanBytes(n)),
            (Some(n), ProgressUnit::Items) => format!(" ({n} items)"),
            (None, _) => String::new(),
        };
        eprintln!("xspack: {label}{size}...");
        Box::new(LineTask {
            label: label.to_owned(),
            unit,
            start: Instant::now(),
            done: Mutex::new(0),
        })
    }

    fn note(&self, message: &str) {
        eprintln!("xspack: {message}");
    }
}

struct LineTask {
    label: String,
    unit: ProgressUnit,
    start: Instant,
    done: Mutex<u64>,
}

impl ProgressTask for LineTask {
    fn advance(&self, delta: u64) {
        *lock(&self.done) += delta;
    }

    fn finish(&self) {
        let done = *lock(&self.done);
        let amount = match self.unit {
            ProgressUnit::Bytes => HumanBytes(done).to_string(),
            ProgressUnit::Items => format!("{done} items"),
        };
        eprintln!(
            "xspack: {} done: {amount} in {:.1} s",
            self.label,
            self.start.elapsed().as_secs_f64()
        );
    }
}
