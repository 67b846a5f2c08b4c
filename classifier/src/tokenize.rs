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
    // quick check says so without running the (costly) normalisation. It looks at the non-ASCII
    // characters only: an ASCII character is in NFKC and has combining class 0, so leaving it
    // out can turn a "yes" into a "maybe" (then the text is normalised, to the same result),
    // never the other way round.
    let normalised = !nfkc
        || unicode_normalization::is_nfkc_quick(text.chars().filter(|c| !c.is_ascii()))
            == unicode_normalization::IsNormalized::Yes;
    if !normalised {
        for c in text.nfkc() {
            push_char(out, c, lowercase);
        }
        return;
    }
    // Copy ASCII runs whole, lower-case the other characters one by one, then the ASCII letters
    // in one pass (a lower-cased character is never an upper-case ASCII letter).
    let mut rest = text;
    while let Some(k) = rest.bytes().position(|b| !b.is_ascii()) {
        out.push_str(&rest[..k]);
        let mut chars = rest[k..].chars();
        if let Some(c) = chars.next() {
            push_char(out, c, lowercase);
        }
        rest = chars.as_str();
    }
    out.push_str(rest);
    if lowercase {
        out.make_ascii_lowercase();
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
    if text.is_ascii() {
        ascii_text(text, 0, out);
        return;
    }
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
        if chunk.is_ascii() {
            ascii_text(chunk, start, out);
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
    if !SPECIAL_FIRST[first as usize] {
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

/// The first bytes of URLs, mentions and the emoticons.
const SPECIAL_FIRST: [bool; 256] = {
    let mut t = [false; 256];
    let firsts = b"hw@:;<x^-d";
    let mut i = 0;
    while i < firsts.len() {
        t[firsts[i] as usize] = true;
        i += 1;
    }
    t
};

/// Whether the chunk that starts at `b[i]`, a byte of [`SPECIAL_FIRST`], can be a URL, a mention
/// or an emoticon: the letters among those bytes start common words (`how`, `what`, `do`), which
/// their second byte rules out without looking for the chunk's end.
#[inline(always)]
fn may_be_special(b: &[u8], i: usize) -> bool {
    let next = b.get(i + 1).copied().unwrap_or(b' ');
    match b[i] {
        b'h' => next == b't',
        b'w' => next == b'w',
        b'x' => next == b'd',
        b'd' => next == b':',
        _ => true,
    }
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

/// Tokenises all-ASCII text (a whole message, or one chunk of a message that is not all ASCII,
/// starting at byte `base` of it) in one pass over its bytes: the same tokens as splitting it at
/// white space and reading each chunk alone, but each token costs one hard-to-predict branch
/// (where it ends) instead of several.
fn ascii_text(text: &str, base: usize, out: &mut Vec<Token>) {
    let b = text.as_bytes();
    let n = b.len();
    let mut i = 0;
    // At the start of a white-space separated chunk.
    let mut chunk_start = true;
    while i < n {
        let c = b[i];
        if chunk_start {
            chunk_start = false;
            if SPECIAL_FIRST[c as usize] && may_be_special(b, i) {
                let end = b[i..]
                    .iter()
                    .position(u8::is_ascii_whitespace)
                    .map_or(n, |p| i + p);
                if special_chunk(&text[i..end], base + i, out) {
                    i = end;
                    continue;
                }
            }
        }
        if is_word_byte(c) {
            let s = i;
            i = word_end(b, i + 1);
            while i + 1 < n && b[i] == b'\'' && is_word_byte(b[i + 1]) {
                i = word_end(b, i + 2);
            }
            push(out, base + s, base + i, TokenKind::Word);
        } else if c == b'!' || c == b'?' {
            let s = i;
            while i < n && b[i] == c {
                i += 1;
            }
            // A run of the same mark is one token of one mark.
            push(out, base + s, base + s + 1, TokenKind::Symbol);
        } else {
            chunk_start = c.is_ascii_whitespace();
            i += 1;
        }
    }
}

/// The first index at or after `i` that is not a word byte (or `b.len()`). Looks at eight bytes
/// at a time, so that the length of a word costs no branch per byte.
#[inline]
fn word_end(b: &[u8], mut i: usize) -> usize {
    while let Some(eight) = b.get(i..i + 8) {
        let mut word = 0u32;
        for (k, &c) in eight.iter().enumerate() {
            word |= (is_word_byte(c) as u32) << k;
        }
        let run = (!word).trailing_zeros() as usize;
        i += run;
        if run < 8 {
            return i;
        }
    }
    while i < b.len() && is_word_byte(b[i]) {
        i += 1;
    }
    i
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

    /// [`may_be_special`] lets through the start of every chunk [`special_chunk`] takes whole,
    /// so that a form added later with a new second byte is not skipped unseen.
    #[test]
    fn every_special_form_passes_the_two_byte_check() {
        let forms = ["http://x.io", "https://x.io", "www.x.io", "@bob"];
        let mut taken = 0;
        for form in EMOTICONS.iter().copied().chain(forms) {
            if !special_chunk(form, 0, &mut Vec::new()) {
                // All word bytes (`xd`): the word tokeniser reads it the same way.
                assert!(form.bytes().all(is_word_byte), "{form:?}");
                continue;
            }
            taken += 1;
            let b = form.as_bytes();
            assert!(
                SPECIAL_FIRST[b[0] as usize] && may_be_special(b, 0),
                "{form:?} would not be looked at"
            );
        }
        assert!(
            taken > forms.len(),
            "the URLs, the mention and an emoticon are taken whole"
        );
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

    /// The reference for [`ascii_text`]: one white-space chunk, byte by byte.
    fn ascii_chunk_bytewise(chunk: &str, base: usize, out: &mut Vec<Token>) {
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

    /// The tokens of ASCII text the plain way: white-space chunks, each read byte by byte.
    fn chunked(text: &str) -> Vec<Token> {
        let mut out = Vec::new();
        let mut i = 0;
        for chunk in text.split(|c: char| c.is_ascii_whitespace()) {
            if !chunk.is_empty() {
                ascii_chunk_bytewise(chunk, i, &mut out);
            }
            i += chunk.len() + 1;
        }
        out
    }

    proptest::proptest! {
        /// Normalisation gives NFKC then lower case, char by char, whichever path it takes:
        /// ASCII, already-NFKC text (the quick check over non-ASCII characters only), or the
        /// full NFKC.
        #[test]
        fn normalise_is_nfkc_then_lowercase(
            text in "([a-zA-Z '!]|\u{301}|\u{316}|\u{2019}|\u{212A}|\u{130}|Ａ|ﬁ|é|É|😂|\u{3000}|\u{1E9E}){0,30}",
            lowercase: bool,
        ) {
            let mut got = String::new();
            normalise(&text, lowercase, true, &mut got);
            let mut want = String::new();
            for c in text.nfkc() {
                push_char(&mut want, c, lowercase);
            }
            proptest::prop_assert_eq!(got, want);
        }

        /// The one-pass ASCII tokeniser finds exactly the tokens of the chunk-by-chunk one, on
        /// text made of the bytes that matter to either (specials, marks, apostrophes, blanks).
        #[test]
        fn one_pass_ascii_matches_chunks(
            text in "([a-z0-9_'!?@:;<^()/.\\-]|http://|https://|www\\.|xd|d:| |\t|\n|\r|\x0b|\x0c){0,60}"
        ) {
            let mut fast = Vec::new();
            tokenize(&text, &mut fast);
            proptest::prop_assert_eq!(fast, chunked(&text));
        }

        /// In text that is not all ASCII, the ASCII chunks get the same tokens, at their place.
        #[test]
        fn ascii_chunks_of_mixed_text_match(
            text in "([a-z0-9_'!?@:;<^()/.\\-]|http://|https://|www\\.|xd|d:| |\t|\n|\r|\x0b|\x0c){0,60}"
        ) {
            let mut mixed = Vec::new();
            tokenize(&format!("日 {text}"), &mut mixed);
            // "日 " is 4 bytes and one token.
            let shifted: Vec<Token> = chunked(&text)
                .into_iter()
                .map(|t| Token { start: t.start + 4, end: t.end + 4, kind: t.kind })
                .collect();
            proptest::prop_assert_eq!(&mixed[1..], &shifted[..]);
        }
    }

    #[test]
    fn empty_and_blank() {
        assert!(words("").is_empty());
        assert!(words("   \t\n ").is_empty());
        assert!(words("\u{3000}").is_empty());
    }
}
