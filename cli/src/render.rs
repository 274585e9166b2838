//! How bytes are shown to a person: sizes and data previews.

/// Bytes of data a preview shows.
pub const PREVIEW_BYTES: usize = 32;

/// `1536` -> `"1.5 KiB"`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// `3, "segment"` -> `"3 segments"`, `1, "entry"` -> `"1 entry"`.
pub fn count(n: u64, one: &str) -> String {
    match (n, one.strip_suffix('y')) {
        (1, _) => format!("1 {one}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        (_, None) => format!("{n} {one}s"),
    }
}

/// The first [`PREVIEW_BYTES`] of some data, for a person.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Preview {
    /// The bytes as text when they are all printable ASCII, else in hex.
    pub text: String,
    /// Whether `text` is hex.
    pub hex: bool,
    /// Whether the data is longer than the preview.
    pub cut: bool,
}

impl Preview {
    pub fn of(data: &[u8]) -> Preview {
        let head = data.get(..PREVIEW_BYTES).unwrap_or(data);
        let cut = data.len() > head.len();
        if head.iter().all(|b| (0x20..0x7f).contains(b)) {
            let text = String::from_utf8_lossy(head).into_owned();
            Preview {
                text,
                hex: false,
                cut,
            }
        } else {
            let text = head.iter().map(|b| format!("{b:02x}")).collect();
            Preview {
                text,
                hex: true,
                cut,
            }
        }
    }
}

/// Quoted text or `0x` hex, with `...` when cut.
impl std::fmt::Display for Preview {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let more = if self.cut { "..." } else { "" };
        if self.hex {
            write!(f, "0x{}{more}", self.text)
        } else {
            write!(f, "{:?}{more}", self.text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        assert_eq!(count(1, "segment"), "1 segment");
        assert_eq!(count(2, "segment"), "2 segments");
        assert_eq!(count(0, "entry"), "0 entries");
        assert_eq!(count(1, "entry"), "1 entry");
    }

    #[test]
    fn sizes() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(64 << 20), "64.0 MiB");
    }

    fn preview(data: &[u8]) -> String {
        Preview::of(data).to_string()
    }

    #[test]
    fn previews() {
        assert_eq!(preview(b""), "\"\"");
        assert_eq!(preview(b"set k=v"), "\"set k=v\"");
        assert_eq!(preview(&[0, 1, 255]), "0x0001ff");
        assert_eq!(preview(&[b'a'; 40]), format!("\"{}\"...", "a".repeat(32)));
        assert_eq!(preview(b"tab\there"), "0x7461620968657265");
        let p = Preview::of(&[7; 33]);
        assert!(p.hex && p.cut && p.text.len() == 64);
    }
}
