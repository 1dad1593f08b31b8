//! Progress reporting for long steps, injected into libraries as `&dyn Progress`.
//!
//! Libraries never draw anything: they open a [`ProgressTask`] per step and advance it. The CLI
//! implements [`Progress`] with progress bars on a terminal, plain lines otherwise, and nothing
//! under `--quiet`. [`NoProgress`] is the silent implementation for tests and embedders.

use std::io::{self, Read};

/// The unit of a task's position and total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressUnit {
    /// Bytes, shown with binary prefixes and a rate.
    Bytes,
    /// Countable items such as files, layers or chunks.
    Items,
}

/// A sink for progress reports. Every method defaults to doing nothing.
pub trait Progress: Send + Sync {
    /// Starts a step called `label` whose size is `total` units, when known.
    fn task(&self, label: &str, total: Option<u64>, unit: ProgressUnit) -> Box<dyn ProgressTask> {
        let _ = (label, total, unit);
        Box::new(NoProgress)
    }

    /// Reports a one-off event worth a line of its own, such as a skipped input.
    fn note(&self, message: &str) {
        let _ = message;
    }
}

/// One step in progress. Dropping it without [`ProgressTask::finish`] abandons the step.
pub trait ProgressTask: Send + Sync {
    /// Advances the position by `delta` units.
    fn advance(&self, delta: u64) {
        let _ = delta;
    }

    /// Marks the step complete.
    fn finish(&self) {}
}

/// Progress that reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
impl ProgressTask for NoProgress {}

/// A reader that advances a task by the number of bytes read.
pub struct ProgressReader<'a, R> {
    inner: R,
    task: &'a dyn ProgressTask,
}

impl<'a, R: Read> ProgressReader<'a, R> {
    /// Wraps `inner`, reporting to `task`.
    pub fn new(inner: R, task: &'a dyn ProgressTask) -> Self {
        ProgressReader { inner, task }
    }
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.task.advance(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Default)]
    struct Tally(AtomicU64);
    impl ProgressTask for Tally {
        fn advance(&self, delta: u64) {
            self.0.fetch_add(delta, Ordering::Relaxed);
        }
    }

    #[test]
    fn reader_reports_every_byte() {
        let tally = Tally::default();
        let mut r = ProgressReader::new(&[7u8; 1000][..], &tally);
        let mut sink = Vec::new();
        r.read_to_end(&mut sink).unwrap();
        assert_eq!(tally.0.load(Ordering::Relaxed), 1000);
    }

    #[test]
    fn no_progress_is_silent_and_usable_as_dyn() {
        let p: &dyn Progress = &NoProgress;
        let t = p.task("x", Some(3), ProgressUnit::Items);
        t.advance(3);
        t.finish();
        p.note("nothing happens");
    }
}
