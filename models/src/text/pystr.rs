//! Python `str` whitespace semantics (`str.isspace`, `str.strip`, regex `\s`), which the
//! reference tokenizer and detokenizer rely on. Python counts U+001C..U+001F as whitespace
//! where Rust's `char::is_whitespace` does not; these helpers follow Python.

/// `str.isspace` for one char (also what Python's `re` `\s` matches).
pub fn is_py_space(c: char) -> bool {
    matches!(
        c,
        '\t'..='\r'
            | '\u{1c}'..='\u{20}'
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

/// `s.lstrip()`.
pub fn py_lstrip(s: &str) -> &str {
    s.trim_start_matches(is_py_space)
}

/// `s.rstrip()`.
pub fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(is_py_space)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_whitespace_set() {
        // The exact set printed by Python 3.11: [c for c in range(0x110000) if chr(c).isspace()].
        let expected: Vec<u32> = [
            0x9, 0xa, 0xb, 0xc, 0xd, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680,
        ]
        .into_iter()
        .chain(0x2000..=0x200a)
        .chain([0x2028, 0x2029, 0x202f, 0x205f, 0x3000])
        .collect();
        let got: Vec<u32> = (0..0x110000u32)
            .filter(|c| char::from_u32(*c).is_some_and(is_py_space))
            .collect();
        assert_eq!(got, expected);
        assert_eq!(py_rstrip(py_lstrip("\u{1f} a b\u{3000}\n")), "a b");
    }
}
