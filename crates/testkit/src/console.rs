//! Reading a guest's serial console (QEMU's `-nographic` stdout) until lines appear.

use std::io::{BufRead as _, BufReader, Read};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Reads `console` line by line until every one of `wanted` has appeared in some line (console
/// lines of the kernel and systemd may share a line with them), or `timeout` passes. Returns
/// the time taken, or on timeout the lines still missing and the last 40 console lines.
pub fn wait_for_lines(
    console: impl Read + Send + 'static,
    wanted: &[String],
    timeout: Duration,
) -> Result<Duration, String> {
    wait_for_lines_unless(console, wanted, &[], timeout)
}

/// [`wait_for_lines`], failing as soon as a line holds one of `forbidden` (a guest that must
/// not get that far).
pub fn wait_for_lines_unless(
    console: impl Read + Send + 'static,
    wanted: &[String],
    forbidden: &[String],
    timeout: Duration,
) -> Result<Duration, String> {
    let start = Instant::now();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(console).split(b'\n') {
            let Ok(line) = line else { break };
            if tx.send(String::from_utf8_lossy(&line).trim_end().to_owned()).is_err() {
                break;
            }
        }
    });
    let mut missing: Vec<&String> = wanted.iter().collect();
    let mut serial: Vec<String> = Vec::new();
    while !missing.is_empty() {
        let left = timeout.saturating_sub(start.elapsed());
        let line = match rx.recv_timeout(left) {
            Ok(line) => line,
            Err(e) => {
                let why = match e {
                    mpsc::RecvTimeoutError::Timeout => format!("within {timeout:?}"),
                    mpsc::RecvTimeoutError::Disconnected => {
                        format!("before the console closed after {:?}", start.elapsed())
                    }
                };
                let tail = serial[serial.len().saturating_sub(40)..].join("\n");
                return Err(format!("no {missing:?} {why}; console:\n{tail}"));
            }
        };
        missing.retain(|w| !line.contains(w.as_str()));
        let bad = forbidden.iter().find(|f| line.contains(f.as_str())).cloned();
        serial.push(line);
        if let Some(bad) = bad {
            let tail = serial[serial.len().saturating_sub(40)..].join("\n");
            return Err(format!("{bad:?} appeared after {:?}; console:\n{tail}", start.elapsed()));
        }
    }
    Ok(start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_lines_in_any_order_and_times_out_naming_the_missing() {
        let text = b"boot\n[ ok ] a: ready\nnoise b: ready\n".to_vec();
        let wanted = ["b: ready".to_owned(), "a: ready".to_owned()];
        assert!(
            wait_for_lines(std::io::Cursor::new(text.clone()), &wanted, Duration::from_secs(5))
                .is_ok()
        );
        let err = wait_for_lines(
            std::io::Cursor::new(text),
            &["c".to_owned()],
            Duration::from_millis(50),
        )
        .unwrap_err();
        assert!(err.contains("[\"c\"]") && err.contains("noise b: ready"), "{err}");
        let err = wait_for_lines_unless(
            std::io::Cursor::new(b"boot\nMARKER\nb: ready\n".to_vec()),
            &["b: ready".to_owned()],
            &["MARKER".to_owned()],
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(err.starts_with("\"MARKER\" appeared"), "{err}");
    }
}
