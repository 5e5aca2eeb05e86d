//! Keys from the bytes a raw terminal sends: printable characters (UTF-8), Enter, Tab,
//! Shift-Tab, Backspace, Escape, the arrows (`ESC [ A` and `ESC O A` forms) and Ctrl-letters.
//! Anything else is dropped.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Ctrl(char),
    Enter,
    Tab,
    BackTab,
    Backspace,
    Esc,
    Up,
    Down,
    Left,
    Right,
}

/// The keys in `bytes`.
pub fn keys(bytes: &[u8]) -> Vec<Key> {
    let text = String::from_utf8_lossy(bytes);
    let mut chars = text.chars().peekable();
    let mut keys = Vec::new();
    while let Some(c) = chars.next() {
        let key = match c {
            '\r' | '\n' => Key::Enter,
            '\t' => Key::Tab,
            '\x7f' | '\x08' => Key::Backspace,
            '\x1b' => match chars.peek() {
                Some('[') | Some('O') => {
                    chars.next();
                    // Parameters (digits, ';') then a final byte.
                    let mut last = None;
                    for c in chars.by_ref() {
                        if !(c.is_ascii_digit() || c == ';') {
                            last = Some(c);
                            break;
                        }
                    }
                    match last {
                        Some('A') => Key::Up,
                        Some('B') => Key::Down,
                        Some('C') => Key::Right,
                        Some('D') => Key::Left,
                        Some('Z') => Key::BackTab,
                        _ => continue,
                    }
                }
                _ => Key::Esc,
            },
            c @ '\x01'..='\x1a' => Key::Ctrl(char::from(b'a' + (c as u8) - 1)),
            c if !c.is_control() => Key::Char(c),
            _ => continue,
        };
        keys.push(key);
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_bytes_become_keys() {
        assert_eq!(
            keys(b"a\r\x1b[A\x1bOB\x1b[Z\x7f\t\x03\x1b"),
            [
                Key::Char('a'),
                Key::Enter,
                Key::Up,
                Key::Down,
                Key::BackTab,
                Key::Backspace,
                Key::Tab,
                Key::Ctrl('c'),
                Key::Esc
            ]
        );
        assert_eq!(keys("é".as_bytes()), [Key::Char('é')]);
        // An unknown sequence is dropped whole.
        assert_eq!(keys(b"\x1b[15~x"), [Key::Char('x')]);
    }
}
