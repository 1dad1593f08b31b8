//! Where in a text file a parser stopped: `file:line:column`, as compilers print it, for the
//! one-line errors of every configuration file we read (`pack.toml`, templates, `guest.toml`).

use std::fmt::Display;

/// Line and column (1-based, the column in bytes) of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.len(), |nl| before.len() - nl - 1) + 1;
    (line, column)
}

/// `file:line:column` of byte `offset` in `text`, or just `file` when the offset is unknown.
pub fn locate(file: impl Display, text: &str, offset: Option<usize>) -> String {
    match offset {
        Some(offset) => {
            let (line, column) = line_column(text, offset);
            format!("{file}:{line}:{column}")
        }
        None => file.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_count_from_one() {
        let text = "a = 1\nbb = x\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 11), (2, 6));
        assert_eq!(line_column(text, 99), (3, 1));
        assert_eq!(locate("p.toml", text, Some(6)), "p.toml:2:1");
        assert_eq!(locate("p.toml", text, None), "p.toml");
        assert_eq!(line_column("é", 1), (1, 1), "inside a character: its start");
    }
}
