//! JSON strings written fast: a log page is mostly message text to copy, and serde_json's
//! writer goes through `dyn Write` a few times per message and looks at each byte alone. This
//! writes the same bytes serde_json does (tested against it), checking eight bytes at a time
//! for anything to escape, into a buffer the whole page shares.

/// Appends `text` as a JSON string, quotes included, escaped exactly as serde_json escapes it:
/// `"` and `\`, the short forms `\b \f \n \r \t`, other control characters as `\u00XX`.
pub fn push_string(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut plain = 0; // start of the bytes not written yet
    let mut i = 0;
    while i < bytes.len() {
        if let Some(word) = bytes.get(i..i + 8) {
            let word = u64::from_le_bytes(word.try_into().unwrap_or_default());
            if !needs_escape(word) {
                i += 8;
                continue;
            }
        }
        let byte = bytes[i];
        if let Some(escape) = escape(byte) {
            out.extend_from_slice(&bytes[plain..i]);
            match escape {
                Escape::Short(short) => out.extend_from_slice(&[b'\\', short]),
                Escape::Unicode => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    let (high, low) = (HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]);
                    out.extend_from_slice(&[b'\\', b'u', b'0', b'0', high, low]);
                }
            }
            plain = i + 1;
        }
        i += 1;
    }
    out.extend_from_slice(&bytes[plain..]);
    out.push(b'"');
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether any of the eight bytes of `word` is below 0x20, `"` or `\` (a word that says yes
/// is then looked at byte by byte; one that says no has none).
fn needs_escape(word: u64) -> bool {
    let below = |n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS;
    let equal = |b: u8| {
        let x = word ^ (ONES * u64::from(b));
        x.wrapping_sub(ONES) & !x & HIGHS
    };
    (below(0x20) | equal(b'"') | equal(b'\\')) != 0
}

enum Escape {
    Short(u8),
    Unicode,
}

fn escape(byte: u8) -> Option<Escape> {
    match byte {
        b'"' => Some(Escape::Short(b'"')),
        b'\\' => Some(Escape::Short(b'\\')),
        0x08 => Some(Escape::Short(b'b')),
        0x0c => Some(Escape::Short(b'f')),
        b'\n' => Some(Escape::Short(b'n')),
        b'\r' => Some(Escape::Short(b'r')),
        b'\t' => Some(Escape::Short(b't')),
        0x00..=0x1f => Some(Escape::Unicode),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(text: &str) -> String {
        let mut out = Vec::new();
        push_string(&mut out, text);
        String::from_utf8(out).expect("valid UTF-8")
    }

    #[test]
    fn every_string_comes_out_as_serde_json_writes_it() {
        let mut cases: Vec<String> = [
            "",
            "plain",
            "a lean write of about sixty bytes, acknowledged by all",
            "quote \" and backslash \\ and slash /",
            "\u{7f} del, \u{e9}t\u{e9}, \u{1f600}, \u{2028}",
            "\"\"\"\"\"\"\"\"\"",
            "12345678\n",
            "1234567\n",
            "\\1234567",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        // Every character below 0x80, alone and at each place in a word of eight.
        for c in 0u8..0x80 {
            let c = char::from(c);
            cases.push(c.to_string());
            for at in 0..9 {
                let mut text = "abcdefghijklmnop".to_owned();
                text.insert(at, c);
                cases.push(text);
            }
        }
        for text in &cases {
            assert_eq!(ours(text), serde_json::to_string(text).unwrap(), "{text:?}");
        }
    }
}
