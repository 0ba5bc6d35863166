//! Sanitise: a server's line made safe to print, so no server can clear, move or repaint the
//! user's terminal, or reorder the text around it.
//!
//! Escape sequences (ECMA-48: CSI, OSC and the other strings, two- and three-character escapes,
//! their 8-bit C1 forms) are removed whole, not just their ESC, so no `[2J` debris is left.
//! Other control characters go too (a tab becomes a space), as do the bidirectional overrides
//! that would let a line rearrange the columns beside it.

const ESC: char = '\u{1b}';
const BEL: char = '\u{7}';
/// C1 String Terminator, the 8-bit form of `ESC \`.
const ST: char = '\u{9c}';

/// Returns `line` without escape sequences, control characters or bidi overrides, trimmed.
pub fn sanitize(line: &str) -> String {
    let mut clean = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ESC => match chars.next() {
                Some('[') => skip_control_sequence(&mut chars),
                Some(']' | 'P' | 'X' | '^' | '_') => skip_control_string(&mut chars),
                Some(' '..='/') => {
                    // ESC, intermediates, one final: `ESC ( B` and the like.
                    while chars.next_if(|c| matches!(c, ' '..='/')).is_some() {}
                    chars.next_if(|c| matches!(c, '0'..='~'));
                }
                // `ESC c` (full reset), `ESC 7`…: the escape and its one character.
                Some(_) | None => {}
            },
            '\u{9b}' => skip_control_sequence(&mut chars),
            '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => skip_control_string(&mut chars),
            '\t' => clean.push(' '),
            c if c.is_control() || is_bidi_control(c) => {}
            c => clean.push(c),
        }
    }
    clean.trim().to_owned()
}

/// Skips a CSI's parameters and intermediates and its final character (`[2J`, `[38;5;1m`).
fn skip_control_sequence(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while chars
        .next_if(|c| matches!(c, '0'..='?' | ' '..='/'))
        .is_some()
    {}
    chars.next_if(|c| matches!(c, '@'..='~'));
}

/// Skips an OSC/DCS/APC… string up to and including its terminator (BEL, `ESC \` or ST).
fn skip_control_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while let Some(c) = chars.next() {
        match c {
            BEL | ST => return,
            ESC => {
                chars.next_if_eq(&'\\');
                return;
            }
            _ => {}
        }
    }
}

/// Characters that reorder the text around them (embeddings, overrides, isolates, marks).
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        assert_eq!(sanitize(input), expected, "sanitising {input:?}");
    }

    #[test]
    fn clock_lines_pass_untouched() {
        check("10:04:05", "10:04:05");
        check("2026-11-25 10:04:05 JST", "2026-11-25 10:04:05 JST");
        check("東京 10:04:05", "東京 10:04:05");
    }

    #[test]
    fn line_ends_and_padding_go() {
        check("10:04:05\r", "10:04:05");
        check("  10:04:05  ", "10:04:05");
        check("a\tb", "a b");
    }

    #[test]
    fn escape_sequences_go_whole() {
        check("\x1b[2J\x1b[Hhello", "hello");
        check("\x1b[38;5;196mred\x1b[0m", "red");
        check("\x1b[?25lhidden", "hidden");
        check("\x1bcreset", "reset");
        check("\x1b(Bascii", "ascii");
        check("\x1b]0;new title\x07after", "after");
        check("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link");
        check("\x1bP1$r\x1b\\dcs", "dcs");
        check("\u{9b}2Jc1", "c1");
        check("\u{9d}0;title\u{9c}c1 osc", "c1 osc");
    }

    #[test]
    fn truncated_sequences_and_lone_controls_leave_nothing() {
        check("end\x1b", "end");
        check("end\x1b[", "end");
        check("end\x1b]0;never terminated", "end");
        check("bell\x07 back\x08space\x7f", "bell backspace");
        check("\0nul", "nul");
    }

    #[test]
    fn bidi_overrides_cannot_reorder_the_wall() {
        check("\u{202e}50:40:01", "50:40:01");
        check("a\u{2066}b\u{2069}c", "abc");
    }
}
