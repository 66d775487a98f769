//! A JSON pull reader for the hot path: splitting pages into records, and the converter.
//!
//! The converter walks each record along its table layout, so it needs tokens, not a tree:
//! object keys, typed scalars read straight from the text (strings borrowed when they hold no
//! escape), and the exact text of any value it does not take, which goes verbatim into `extra`.
//! Through serde, every value was scanned twice (once to find its end as a `RawValue`, once to
//! read it) behind a visitor per value; this reads it once.
//!
//! It accepts exactly what serde_json accepts (RFC 8259: no control characters in strings,
//! known escapes, the number grammar; like serde_json's own skipping, no limit on nesting, and
//! no stack either; a test compares the two on generated texts), and its errors are
//! serde_json's fixed texts with a line and column: never the value.

use std::borrow::Cow;
use std::fmt;

/// What is wrong, and the byte offset where it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntaxError {
    pub what: &'static str,
    pub at: usize,
}

impl SyntaxError {
    /// `what at line L column C` (serde_json's form; columns count bytes from 1).
    pub fn describe(&self, text: &str) -> String {
        let before = &text.as_bytes()[..self.at.min(text.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = before.len()
            - before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1);
        format!("{} at line {line} column {}", self.what, column + 1)
    }
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

pub type Result<T> = std::result::Result<T, SyntaxError>;

const EOF_VALUE: &str = "EOF while parsing a value";
const EOF_STRING: &str = "EOF while parsing a string";
const EOF_OBJECT: &str = "EOF while parsing an object";
const EOF_LIST: &str = "EOF while parsing a list";
const CONTROL: &str = "control character (\\u0000-\\u001F) found while parsing a string";

/// A cursor over one JSON text.
pub struct Reader<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(text: &'a str) -> Self {
        Self { text, pos: 0 }
    }

    /// The byte offset of the next token (after [`Reader::peek`], the next value's start).
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Goes back to `pos`, an offset this reader returned (to skip a value it began to read).
    pub fn reset(&mut self, pos: usize) {
        self.pos = pos;
    }

    /// The text from `start` to the current position.
    pub fn since(&self, start: usize) -> &'a str {
        &self.text[start..self.pos]
    }

    fn err<T>(&self, what: &'static str) -> Result<T> {
        Err(SyntaxError { what, at: self.pos })
    }

    fn byte(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    #[inline]
    fn ws(&mut self) {
        let b = self.text.as_bytes();
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = b.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The first byte of the next value, not consumed.
    #[inline]
    pub fn peek(&mut self) -> Result<u8> {
        self.ws();
        match self.byte() {
            Some(c) => Ok(c),
            None => self.err(EOF_VALUE),
        }
    }

    /// Only whitespace is left.
    pub fn end(&mut self) -> Result<()> {
        self.ws();
        match self.byte() {
            None => Ok(()),
            Some(_) => self.err("trailing characters"),
        }
    }

    /// Consumes the `{` or `[` that [`Reader::peek`] returned.
    pub fn open(&mut self) {
        self.pos += 1;
    }

    /// The next key of an object opened with [`Reader::open`], its `:` consumed; `None` at
    /// its end. `first` is true until the first call.
    #[inline]
    pub fn key(&mut self, first: &mut bool) -> Result<Option<Cow<'a, str>>> {
        if !self.before_key(first)? {
            return Ok(None);
        }
        self.key_rest().map(Some)
    }

    /// [`Reader::key`] in steps, for a caller that guesses the key: true when a key follows,
    /// then [`Reader::key_text`] is the text after its opening quote, and either
    /// [`Reader::guessed_key`] consumes a key the caller recognised there or
    /// [`Reader::key_rest`] reads it.
    #[inline]
    pub fn next_key(&mut self, first: &mut bool) -> Result<bool> {
        self.before_key(first)
    }

    /// After [`Reader::next_key`]: the text from the key's first byte on.
    #[inline]
    pub fn key_text(&self) -> &'a [u8] {
        self.text.as_bytes().get(self.pos + 1..).unwrap_or_default()
    }

    /// After [`Reader::next_key`]: consumes a key the caller found to be the `len` bytes
    /// after the quote, closed by a quote and holding no escape, and its `:`.
    #[inline]
    pub fn guessed_key(&mut self, len: usize) -> Result<()> {
        self.pos += len + 2;
        self.colon()
    }

    /// After [`Reader::next_key`]: reads the key and its `:`.
    #[inline]
    pub fn key_rest(&mut self) -> Result<Cow<'a, str>> {
        let key = match self.string()? {
            Some(k) => k,
            None => return self.err("lone leading surrogate in hex escape"),
        };
        self.colon()?;
        Ok(key)
    }

    /// Consumes what comes before an object's next key (`,` but for the first); true when a
    /// key follows (the reader is at its `"`), false at the object's end (`}` consumed).
    #[inline]
    fn before_key(&mut self, first: &mut bool) -> Result<bool> {
        self.ws();
        if !std::mem::take(first) {
            match self.byte() {
                Some(b',') => {
                    self.pos += 1;
                    self.ws();
                    if self.byte() == Some(b'}') {
                        return self.err("trailing comma");
                    }
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(false);
                }
                Some(_) => return self.err("expected `,` or `}`"),
                None => return self.err(EOF_OBJECT),
            }
        } else if self.byte() == Some(b'}') {
            self.pos += 1;
            return Ok(false);
        }
        match self.byte() {
            Some(b'"') => Ok(true),
            Some(_) => self.err("key must be a string"),
            None => self.err(EOF_OBJECT),
        }
    }

    /// The `:` after a key.
    #[inline]
    fn colon(&mut self) -> Result<()> {
        self.ws();
        match self.byte() {
            Some(b':') => {
                self.pos += 1;
                Ok(())
            }
            Some(_) => self.err("expected `:`"),
            None => self.err(EOF_OBJECT),
        }
    }

    /// Whether a list opened with [`Reader::open`] has another element (then the reader is
    /// before it); false at its end. `first` is true until the first call.
    #[inline]
    pub fn element(&mut self, first: &mut bool) -> Result<bool> {
        self.ws();
        let c = match self.byte() {
            Some(c) => c,
            None => return self.err(EOF_LIST),
        };
        if std::mem::take(first) {
            if c == b']' {
                self.pos += 1;
                return Ok(false);
            }
            return Ok(true);
        }
        match c {
            b']' => {
                self.pos += 1;
                Ok(false)
            }
            b',' => {
                self.pos += 1;
                self.ws();
                match self.byte() {
                    Some(b']') => self.err("trailing comma"),
                    Some(_) => Ok(true),
                    None => self.err(EOF_LIST),
                }
            }
            _ => self.err("expected `,` or `]`"),
        }
    }

    /// A string at `"`: its value, borrowed when it holds no escape. `None` (the string
    /// consumed) when it escapes a lone UTF-16 surrogate: valid JSON, but no Rust string.
    #[inline]
    pub fn string(&mut self) -> Result<Option<Cow<'a, str>>> {
        let b = self.text.as_bytes();
        let start = self.pos + 1;
        let stop = plain_run(b, start);
        match b.get(stop) {
            Some(b'"') => {
                self.pos = stop + 1;
                Ok(Some(Cow::Borrowed(&self.text[start..stop])))
            }
            Some(b'\\') => self.escaped(start, stop),
            Some(_) => {
                self.pos = stop;
                self.err(CONTROL)
            }
            None => {
                self.pos = stop;
                self.err(EOF_STRING)
            }
        }
    }

    /// The rest of a string from its first escape at `stop`.
    #[cold]
    fn escaped(&mut self, start: usize, mut stop: usize) -> Result<Option<Cow<'a, str>>> {
        let b = self.text.as_bytes();
        let mut out = String::with_capacity(stop - start + 16);
        let mut from = start;
        let mut lone = false;
        loop {
            out.push_str(&self.text[from..stop]);
            self.pos = stop + 1;
            let c = match self.byte() {
                Some(c) => c,
                None => return self.err(EOF_STRING),
            };
            self.pos += 1;
            match c {
                b'"' => out.push('"'),
                b'\\' => out.push('\\'),
                b'/' => out.push('/'),
                b'b' => out.push('\x08'),
                b'f' => out.push('\x0c'),
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                b'u' => match self.unicode()? {
                    Some(ch) => out.push(ch),
                    None => lone = true,
                },
                _ => {
                    self.pos -= 1;
                    return self.err("invalid escape");
                }
            }
            from = self.pos;
            stop = plain_run(b, from);
            match b.get(stop) {
                Some(b'"') => {
                    out.push_str(&self.text[from..stop]);
                    self.pos = stop + 1;
                    return Ok((!lone).then_some(Cow::Owned(out)));
                }
                Some(b'\\') => {}
                Some(_) => {
                    self.pos = stop;
                    return self.err(CONTROL);
                }
                None => {
                    self.pos = stop;
                    return self.err(EOF_STRING);
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32> {
        let mut n = 0;
        for _ in 0..4 {
            let d = match self.byte() {
                Some(c) => (c as char).to_digit(16),
                None => return self.err(EOF_STRING),
            };
            match d {
                Some(d) => n = n * 16 + d,
                None => return self.err("invalid escape"),
            }
            self.pos += 1;
        }
        Ok(n)
    }

    /// After `\u`: the character, or `None` for a lone surrogate.
    fn unicode(&mut self) -> Result<Option<char>> {
        let n = self.hex4()?;
        if !(0xD800..0xDC00).contains(&n) {
            return Ok(char::from_u32(n));
        }
        let b = self.text.as_bytes();
        if b.get(self.pos) != Some(&b'\\') || b.get(self.pos + 1) != Some(&b'u') {
            return Ok(None);
        }
        let back = self.pos;
        self.pos += 2;
        let low = self.hex4()?;
        if !(0xDC00..0xE000).contains(&low) {
            // Not a pair: the next escape stands on its own.
            self.pos = back;
            return Ok(None);
        }
        Ok(char::from_u32(
            0x10000 + ((n - 0xD800) << 10) + (low - 0xDC00),
        ))
    }

    /// A number at `-` or a digit: its text, the grammar checked.
    #[inline]
    pub fn number(&mut self) -> Result<&'a str> {
        let b = self.text.as_bytes();
        let start = self.pos;
        let mut i = start;
        let digits = |mut i: usize| {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = digits(i + 1),
            Some(_) => {
                self.pos = i;
                return self.err("invalid number");
            }
            None => {
                self.pos = i;
                return self.err(EOF_VALUE);
            }
        }
        if b.get(i) == Some(&b'.') {
            if !b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                self.pos = i + 1;
                return self.err("invalid number");
            }
            i = digits(i + 1);
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            if !b.get(i).is_some_and(u8::is_ascii_digit) {
                self.pos = i;
                return self.err("invalid number");
            }
            i = digits(i);
        }
        self.pos = i;
        Ok(&self.text[start..i])
    }

    /// `true`, `false` or `null` at its first byte.
    #[inline]
    pub fn literal(&mut self) -> Result<&'a str> {
        let b = &self.text.as_bytes()[self.pos..];
        let word = match b.first() {
            Some(b't') => "true",
            Some(b'f') => "false",
            Some(b'n') => "null",
            _ => return self.err("expected value"),
        };
        let n = word.len();
        if b.len() >= n && &b[..n] == word.as_bytes() {
            self.pos += n;
            Ok(word)
        } else {
            // Where serde_json stops: the first byte that differs, or the end.
            let same = b
                .iter()
                .zip(word.as_bytes())
                .take_while(|(x, y)| x == y)
                .count();
            self.pos += same;
            self.err(if same == b.len() {
                EOF_VALUE
            } else {
                "expected ident"
            })
        }
    }

    /// Skips a string at `"`, checking it (surrogates are not paired up, as serde_json's own
    /// skipping does not).
    fn skip_string(&mut self) -> Result<()> {
        let b = self.text.as_bytes();
        let mut i = self.pos + 1;
        loop {
            i = plain_run(b, i);
            match b.get(i) {
                Some(b'"') => {
                    self.pos = i + 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.pos = i + 1;
                    match self.byte() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 1;
                        }
                        Some(b'u') => {
                            self.pos += 1;
                            self.hex4()?;
                        }
                        Some(_) => return self.err("invalid escape"),
                        None => return self.err(EOF_STRING),
                    }
                    i = self.pos;
                }
                Some(_) => {
                    self.pos = i;
                    return self.err(CONTROL);
                }
                None => {
                    self.pos = i;
                    return self.err(EOF_STRING);
                }
            }
        }
    }

    /// Skips the next value, checking it; returns its text.
    pub fn skip(&mut self) -> Result<&'a str> {
        self.ws();
        let start = self.pos;
        let mut open = Open::default();
        'value: loop {
            match self.peek()? {
                c @ (b'{' | b'[') => {
                    open.push(c == b'[');
                    self.pos += 1;
                    let mut first = true;
                    let more = if c == b'{' {
                        self.skip_key(&mut first)?
                    } else {
                        self.element(&mut first)?
                    };
                    if more {
                        continue 'value;
                    }
                    open.pop();
                }
                b'"' => self.skip_string()?,
                b'-' | b'0'..=b'9' => {
                    self.number()?;
                }
                b't' | b'f' | b'n' => {
                    self.literal()?;
                }
                _ => return self.err("expected value"),
            }
            // After a value: close containers until one has a next item.
            loop {
                let Some(list) = open.top() else {
                    return Ok(&self.text[start..self.pos]);
                };
                let mut first = false;
                let more = if list {
                    self.element(&mut first)?
                } else {
                    self.skip_key(&mut first)?
                };
                if more {
                    continue 'value;
                }
                open.pop();
            }
        }
    }

    /// [`Reader::key`] without reading the key.
    fn skip_key(&mut self, first: &mut bool) -> Result<bool> {
        if !self.before_key(first)? {
            return Ok(false);
        }
        self.skip_string()?;
        self.colon()?;
        Ok(true)
    }
}

/// The containers [`Reader::skip`] is in: a bit each (1 for a list), 128 in a word, the
/// words beyond the first on the heap (only for values nested deeper than that).
#[derive(Default)]
struct Open {
    word: u128,
    depth: u32,
    deeper: Vec<u128>,
}

impl Open {
    fn push(&mut self, list: bool) {
        if self.depth > 0 && self.depth.is_multiple_of(128) {
            self.deeper.push(std::mem::take(&mut self.word));
        }
        self.word = (self.word << 1) | u128::from(list);
        self.depth += 1;
    }

    fn pop(&mut self) {
        self.word >>= 1;
        self.depth -= 1;
        if self.depth > 0 && self.depth.is_multiple_of(128) {
            self.word = self.deeper.pop().unwrap_or_default();
        }
    }

    /// Whether the innermost container is a list; `None` outside all.
    fn top(&self) -> Option<bool> {
        (self.depth > 0).then_some(self.word & 1 == 1)
    }
}

/// The offset of the first byte from `i` that ends a run of plain string bytes: `"`, `\` or a
/// control character (or the end). Sixteen bytes at a time where SSE2 is (every x86-64),
/// then eight at a time ([`plain_run_words`]).
#[inline]
fn plain_run(b: &[u8], i: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    let i = {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8,
            _mm_or_si128, _mm_set1_epi8,
        };
        let mut i = i;
        // SAFETY: SSE2 is in every x86-64 CPU; each load reads the 16 bytes at
        // `b[i..i + 16]`, in bounds by the loop's condition, unaligned loads allowed.
        unsafe {
            let quote = _mm_set1_epi8(b'"' as i8);
            let slash = _mm_set1_epi8(b'\\' as i8);
            let control = _mm_set1_epi8(0x1f);
            while i + 16 <= b.len() {
                let v = _mm_loadu_si128(b.as_ptr().add(i).cast::<__m128i>());
                // A byte is a control character when the unsigned min with 0x1f leaves it.
                let hits = _mm_or_si128(
                    _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, slash)),
                    _mm_cmpeq_epi8(_mm_min_epu8(v, control), v),
                );
                let mask = _mm_movemask_epi8(hits) as u32;
                if mask != 0 {
                    return i + mask.trailing_zeros() as usize;
                }
                i += 16;
            }
        }
        i
    };
    plain_run_words(b, i)
}

/// [`plain_run`] eight bytes at a time: the lowest flagged byte of each word is exact (the
/// borrows that make false flags only run upwards).
#[inline]
fn plain_run_words(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let quote = w ^ (ONES * u64::from(b'"'));
        let slash = w ^ (ONES * u64::from(b'\\'));
        let flags = (quote.wrapping_sub(ONES) & !quote)
            | (slash.wrapping_sub(ONES) & !slash)
            | (w.wrapping_sub(ONES * 0x20) & !w);
        let hit = flags & HIGH;
        if hit != 0 {
            return i + (hit.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            return i;
        }
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a whole text with `skip`, as the converter does with values it does not take.
    fn read(text: &str) -> Result<&str> {
        let mut r = Reader::new(text);
        let v = r.skip()?;
        r.end()?;
        Ok(v)
    }

    fn serde_ok(text: &str) -> bool {
        serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
    }

    /// Every byte value at every offset of 0 to 40-byte runs, from every start: both scans
    /// stop where a byte-at-a-time one does (the vector loop, the word loop and their tails).
    #[test]
    fn plain_run_stops_at_the_first_quote_backslash_or_control_byte() {
        let naive = |b: &[u8], i: usize| {
            (i..b.len())
                .find(|&j| b[j] == b'"' || b[j] == b'\\' || b[j] < 0x20)
                .unwrap_or(b.len())
        };
        for len in 0..=40usize {
            for at in 0..len.max(1) {
                for byte in 0..=255u8 {
                    let mut b = vec![b'a'; len];
                    if at < len {
                        b[at] = byte;
                    }
                    for start in [0, 1, 7, 9, 17].into_iter().filter(|&s| s <= len) {
                        let want = naive(&b, start);
                        assert_eq!(plain_run(&b, start), want, "{len} {at} {byte} {start}");
                        assert_eq!(
                            plain_run_words(&b, start),
                            want,
                            "{len} {at} {byte} {start}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn accepts_what_serde_json_accepts() {
        let deep = format!("{}1{}", "[{\"a\":".repeat(200), "}]".repeat(200));
        let deep_broken = format!("{}1{}}}}}", "[{\"a\":".repeat(200), "}]".repeat(199));
        for text in [
            r#"{"a":[1,-2.5e3,true,false,null,"x\"\\\/\b\f\n\r\t\u00e9"],"b":{}}"#,
            " [ ] ",
            "0",
            "-0.0E+1",
            r#""\ud83d\ude00""#,
            r#""\ud83d""#,
            "\"é\u{10000}\"",
            deep.as_str(),
            deep_broken.as_str(),
            "",
            "{",
            "[1,]",
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            "01",
            "1.",
            "1e",
            "-",
            ".5",
            "tru",
            "nul",
            "truex",
            "\"a\u{1}b\"",
            r#""\x""#,
            r#""\u12G4""#,
            r#""abc"#,
            "[1 2]",
            "{}{}",
            "[\"\t\"]",
        ] {
            assert_eq!(read(text).is_ok(), serde_ok(text), "{text:?}");
        }
    }

    #[test]
    fn agrees_with_serde_json_on_generated_texts() {
        // Random texts over JSON's alphabet, most of them broken in some place: the two
        // parsers must accept the same ones, and read the same strings.
        const ALPHABET: &[&str] = &[
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "\"",
            "\"k\"",
            "\"v\\\"q\"",
            "\\",
            "\\u00e9",
            "\\ud800",
            "\\udc00",
            "1",
            "-",
            "0",
            ".",
            "e",
            "+",
            "true",
            "null",
            "fals",
            " ",
            "\n",
            "\u{1}",
            "é",
            "a",
        ];
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut accepted = 0;
        for _ in 0..200_000 {
            let len = (next() % 12) as usize + 1;
            let text: String = (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect();
            let ours = read(&text).is_ok();
            assert_eq!(ours, serde_ok(&text), "{text:?}");
            accepted += usize::from(ours);
            if text.starts_with('"') && ours {
                let mut r = Reader::new(&text);
                r.peek().expect("peek");
                let mine = r.string().expect("string").map(|s| s.into_owned());
                assert_eq!(mine, serde_json::from_str::<String>(&text).ok(), "{text:?}");
            }
        }
        // The generator reaches both sides.
        assert!(accepted > 1000, "{accepted}");
    }

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        let mut r = Reader::new(r#""plain text that is longer than eight bytes" "a\nb""#);
        r.peek().expect("peek");
        assert!(matches!(
            r.string(),
            Ok(Some(Cow::Borrowed(
                "plain text that is longer than eight bytes"
            )))
        ));
        r.peek().expect("peek");
        assert_eq!(r.string(), Ok(Some(Cow::Owned("a\nb".to_string()))));
    }

    #[test]
    fn skip_returns_the_exact_text_and_errors_say_where() {
        let text = "{\"a\": [1, {\"b\": \"c\"}] , \"d\": x}";
        let mut r = Reader::new(text);
        r.peek().expect("peek");
        r.open();
        let mut first = true;
        assert_eq!(r.key(&mut first), Ok(Some(Cow::Borrowed("a"))));
        assert_eq!(r.skip(), Ok("[1, {\"b\": \"c\"}]"));
        assert_eq!(r.key(&mut first), Ok(Some(Cow::Borrowed("d"))));
        let e = r.skip().expect_err("x is no value");
        assert_eq!(e.describe(text), "expected value at line 1 column 30");
        let e = read("[1,\n  2,\n  \"a").expect_err("unterminated");
        assert_eq!(
            e.describe("[1,\n  2,\n  \"a"),
            "EOF while parsing a string at line 3 column 5"
        );
    }
}
