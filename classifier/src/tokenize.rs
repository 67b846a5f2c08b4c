//! Normalisation and word tokenisation.
//!
//! Text is lower-cased and, unless it is pure ASCII, NFKC-normalised first. Tokenisation then
//! splits on white space and looks at each chunk:
//! - `http://…`, `https://…` and `www.…` become one [`TokenKind::Url`] token,
//! - `@name` becomes one [`TokenKind::Mention`] token,
//! - a handful of ASCII emoticons (`:)`, `:(`, `<3`…) are kept whole as [`TokenKind::Symbol`],
//! - otherwise the chunk is split into words (letters, digits, `_` and inner apostrophes), runs of
//!   `!` or `?` (one [`TokenKind::Symbol`] each) and emoji (one symbol per emoji).
//!
//! ASCII chunks take a byte-scanning fast path; other chunks use Unicode word boundaries
//! (UAX #29, through `unicode-segmentation`), which split CJK ideographs into single characters
//! and keep letters of every script.

use unicode_normalization::UnicodeNormalization;
use unicode_segmentation::UnicodeSegmentation;

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A word or number.
    Word,
    /// Punctuation that carries meaning (`!`, `?`), an emoticon or an emoji.
    Symbol,
    /// A web address; its text is not used, only the fact that there was one.
    Url,
    /// An @mention; the name is not used.
    Mention,
}

/// A token: a byte range of the normalised text and its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// Start byte offset in the normalised text.
    pub start: u32,
    /// End byte offset (exclusive).
    pub end: u32,
    /// What the token is.
    pub kind: TokenKind,
}

impl Token {
    /// The token's text inside `normalised`.
    pub fn text<'a>(&self, normalised: &'a str) -> &'a str {
        &normalised[self.start as usize..self.end as usize]
    }
}

/// Lower-cases `text` into `out` (cleared first), NFKC-normalising it unless it is ASCII.
pub fn normalise(text: &str, lowercase: bool, nfkc: bool, out: &mut String) {
    out.clear();
    if text.is_ascii() {
        out.push_str(text);
        if lowercase {
            out.make_ascii_lowercase();
        }
        return;
    }
    // Most non-ASCII chat text (emoji, curly quotes, accented letters) is already in NFKC: the
    // quick check says so without running the (costly) normalisation.
    let normalised = !nfkc
        || unicode_normalization::is_nfkc_quick(text.chars())
            == unicode_normalization::IsNormalized::Yes;
    if !normalised {
        for c in text.nfkc() {
            push_char(out, c, lowercase);
        }
    } else {
        for c in text.chars() {
            push_char(out, c, lowercase);
        }
    }
}

#[inline]
fn push_char(out: &mut String, c: char, lowercase: bool) {
    if lowercase {
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else {
            out.extend(c.to_lowercase());
        }
    } else {
        out.push(c);
    }
}

const EMOTICONS: &[&str] = &[
    ":)", ":-)", ":(", ":-(", ":d", ":-d", ";)", ";-)", ":p", ":-p", ":/", ":-/", ":'(", "<3",
    ":o", ":|", "xd", "^^", "^_^", "-_-", ":3", "d:",
];

/// Splits normalised text into tokens, appending to `out` (cleared first).
pub fn tokenize(text: &str, out: &mut Vec<Token>) {
    out.clear();
    let all_ascii = text.is_ascii();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        // Skip white space (ASCII fast; other white space handled per chunk below).
        if bytes[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let chunk = &text[start..i];
        if all_ascii || chunk.is_ascii() {
            ascii_chunk(chunk, start, out);
        } else {
            // Non-ASCII white space (e.g. U+3000) also separates chunks.
            let mut offset = start;
            for piece in chunk.split(char::is_whitespace) {
                if !piece.is_empty() {
                    unicode_chunk(piece, offset, out);
                }
                offset += piece.len() + next_char_len(text, offset + piece.len());
            }
        }
    }
}

fn next_char_len(text: &str, at: usize) -> usize {
    text[at..].chars().next().map_or(0, char::len_utf8)
}

fn push(out: &mut Vec<Token>, start: usize, end: usize, kind: TokenKind) {
    out.push(Token {
        start: start as u32,
        end: end as u32,
        kind,
    });
}

/// Whole-chunk tokens (URLs, mentions, emoticons). Returns true if the chunk was consumed.
#[inline(always)]
fn special_chunk(chunk: &str, base: usize, out: &mut Vec<Token>) -> bool {
    let Some(&first) = chunk.as_bytes().first() else {
        return false;
    };
    // Most chunks are plain words: rule them out with one look at the first byte.
    if !matches!(
        first,
        b'h' | b'w' | b'@' | b':' | b';' | b'<' | b'x' | b'^' | b'-' | b'd'
    ) {
        return false;
    }
    if chunk.starts_with("http://") || chunk.starts_with("https://") || chunk.starts_with("www.") {
        push(out, base, base + chunk.len(), TokenKind::Url);
        return true;
    }
    if chunk.len() > 1 && chunk.starts_with('@') {
        push(out, base, base + chunk.len(), TokenKind::Mention);
        return true;
    }
    if chunk.len() <= 4 && !chunk.bytes().all(is_word_byte) && EMOTICONS.contains(&chunk) {
        push(out, base, base + chunk.len(), TokenKind::Symbol);
        return true;
    }
    false
}

/// ASCII letters, digits and `_`.
const WORD_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'_';
        b += 1;
    }
    t
};

#[inline]
fn is_word_byte(b: u8) -> bool {
    WORD_BYTE[b as usize]
}

fn ascii_chunk(chunk: &str, base: usize, out: &mut Vec<Token>) {
    if special_chunk(chunk, base, out) {
        return;
    }
    let b = chunk.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if is_word_byte(c) {
            let s = i;
            i += 1;
            while i < b.len() {
                if is_word_byte(b[i]) {
                    i += 1;
                } else if b[i] == b'\'' && i + 1 < b.len() && is_word_byte(b[i + 1]) {
                    i += 2;
                } else {
                    break;
                }
            }
            push(out, base + s, base + i, TokenKind::Word);
        } else if c == b'!' || c == b'?' {
            let s = i;
            while i < b.len() && b[i] == c {
                i += 1;
            }
            // A run of the same mark is one token of one mark.
            push(out, base + s, base + s + 1, TokenKind::Symbol);
        } else {
            i += 1;
        }
    }
}

fn unicode_chunk(chunk: &str, base: usize, out: &mut Vec<Token>) {
    if special_chunk(chunk, base, out) {
        return;
    }
    let mut last_mark: Option<char> = None;
    for (off, seg) in chunk.split_word_bound_indices() {
        let first = seg.chars().next().unwrap_or(' ');
        if seg.chars().any(char::is_alphanumeric) {
            push(out, base + off, base + off + seg.len(), TokenKind::Word);
            last_mark = None;
        } else if seg.chars().any(is_emoji) {
            push(out, base + off, base + off + seg.len(), TokenKind::Symbol);
            last_mark = None;
        } else if matches!(first, '!' | '?' | '！' | '？') {
            let mark = if first == '！' {
                '!'
            } else if first == '？' {
                '?'
            } else {
                first
            };
            if last_mark != Some(mark) {
                push(out, base + off, base + off + seg.len(), TokenKind::Symbol);
            }
            last_mark = Some(mark);
        } else {
            last_mark = None;
        }
    }
}

/// Emoji and pictographs (the main Unicode emoji blocks).
fn is_emoji(c: char) -> bool {
    matches!(c as u32,
        0x1F000..=0x1FAFF // mahjong … symbols and pictographs extended-A
        | 0x2600..=0x27BF // misc symbols, dingbats
        | 0x2B00..=0x2BFF // arrows, stars
        | 0x2190..=0x21FF // arrows
        | 0x2300..=0x23FF // misc technical (⌚, ⏰)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<(String, TokenKind)> {
        let mut norm = String::new();
        normalise(text, true, true, &mut norm);
        let mut out = Vec::new();
        tokenize(&norm, &mut out);
        out.iter()
            .map(|t| (t.text(&norm).to_string(), t.kind))
            .collect()
    }

    fn words(text: &str) -> Vec<String> {
        toks(text).into_iter().map(|(t, _)| t).collect()
    }

    #[test]
    fn ascii_words_apostrophes_and_marks() {
        assert_eq!(
            words("I don't LIKE it!!! Why?"),
            ["i", "don't", "like", "it", "!", "why", "?"]
        );
        assert_eq!(words("[NAME] is 'great'"), ["name", "is", "great"]);
        assert_eq!(
            words("well-known co_op 3.5 $100"),
            ["well", "known", "co_op", "3", "5", "100"]
        );
    }

    #[test]
    fn urls_mentions_emoticons() {
        let t = toks("@bob see https://x.io/a?b=1 now :) <3");
        assert_eq!(t[0], ("@bob".into(), TokenKind::Mention));
        assert_eq!(t[1], ("see".into(), TokenKind::Word));
        assert_eq!(t[2].1, TokenKind::Url);
        assert_eq!(t[3], ("now".into(), TokenKind::Word));
        assert_eq!(t[4], (":)".into(), TokenKind::Symbol));
        assert_eq!(t[5], ("<3".into(), TokenKind::Symbol));
    }

    #[test]
    fn emoji_and_non_latin_scripts() {
        let t = toks("Thanks 🙏🙏 — Привет, МИР! 東京へ 👍🏽");
        let w: Vec<_> = t.iter().map(|(s, _)| s.as_str()).collect();
        assert!(w.contains(&"thanks"));
        assert!(w.contains(&"привет"));
        assert!(w.contains(&"мир"));
        assert!(w.contains(&"!"));
        assert!(w.contains(&"東"));
        assert!(w.contains(&"京"));
        assert_eq!(t.iter().filter(|(s, _)| s == "🙏").count(), 2);
        assert!(
            t.iter()
                .any(|(s, k)| s.starts_with('👍') && *k == TokenKind::Symbol)
        );
    }

    #[test]
    fn nfkc_folds_compatibility_forms() {
        // Full-width letters and the "ﬁ" ligature normalise to plain letters.
        assert_eq!(words("ＨＥＬＬＯ ﬁne"), ["hello", "fine"]);
    }

    #[test]
    fn empty_and_blank() {
        assert!(words("").is_empty());
        assert!(words("   \t\n ").is_empty());
        assert!(words("\u{3000}").is_empty());
    }
}
