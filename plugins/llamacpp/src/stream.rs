//! Turning token bytes into the text a client may see: whole UTF-8 characters only,
//! and nothing that belongs to a stop string.

/// Collects token bytes and releases only complete UTF-8 characters: a token may end
/// in the middle of a multi-byte character (byte-fallback vocabularies do this for
/// emoji and CJK), and a piece must never carry half of one.
#[derive(Default)]
pub struct Utf8Buffer {
    bytes: Vec<u8>,
}

impl Utf8Buffer {
    /// Append bytes and return the text that is now complete. Bytes that can never
    /// become valid UTF-8 come out as U+FFFD rather than stalling the stream.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.bytes.extend_from_slice(bytes);
        let mut text = String::new();
        loop {
            match std::str::from_utf8(&self.bytes) {
                Ok(valid) => {
                    text.push_str(valid);
                    self.bytes.clear();
                    return text;
                }
                Err(error) => {
                    let valid = error.valid_up_to();
                    // `valid_up_to` marks a prefix already checked as UTF-8: this never falls back.
                    text.push_str(std::str::from_utf8(&self.bytes[..valid]).unwrap_or_default());
                    match error.error_len() {
                        // An incomplete character at the end: wait for more bytes.
                        None => {
                            self.bytes.drain(..valid);
                            return text;
                        }
                        Some(bad) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            self.bytes.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }
}

/// What the stop-string filter says about new text.
#[derive(Debug, PartialEq, Eq)]
pub enum Filtered {
    /// Safe to emit; more may follow.
    Emit(String),
    /// A stop string was found: emit this (the text before it) and stop.
    Stopped(String),
}

/// Holds back text that might be the start of a stop string until it is clear whether
/// it is one, so a stop string is never emitted, even split across tokens.
pub struct StopFilter {
    stops: Vec<String>,
    pending: String,
}

impl StopFilter {
    pub fn new(stops: impl IntoIterator<Item = String>) -> Self {
        Self {
            stops: stops.into_iter().filter(|stop| !stop.is_empty()).collect(),
            pending: String::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> Filtered {
        self.pending.push_str(text);
        let first_stop =
            self.stops.iter().filter_map(|stop| self.pending.find(stop.as_str())).min();
        if let Some(at) = first_stop {
            let before = self.pending[..at].to_string();
            self.pending.clear();
            return Filtered::Stopped(before);
        }
        let held = self.held_suffix_len();
        let emit = self.pending[..self.pending.len() - held].to_string();
        self.pending.drain(..self.pending.len() - held);
        Filtered::Emit(emit)
    }

    /// The length of the longest tail of the pending text that begins some stop string.
    fn held_suffix_len(&self) -> usize {
        let pending = self.pending.as_str();
        pending
            .char_indices()
            .map(|(at, _)| at)
            .find(|&at| self.stops.iter().any(|stop| stop.starts_with(&pending[at..])))
            .map_or(0, |at| pending.len() - at)
    }

    /// Text held back when the generation ends for another reason: it was no stop.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_split_across_tokens_comes_out_whole() {
        let mut buffer = Utf8Buffer::default();
        let euro = "€".as_bytes();
        assert_eq!(buffer.push(&euro[..1]), "");
        assert_eq!(buffer.push(&euro[1..2]), "");
        assert_eq!(buffer.push(&[euro[2], b'!']), "€!");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut buffer = Utf8Buffer::default();
        assert_eq!(buffer.push(&[b'a', 0xff, b'b']), "a\u{fffd}b");
        assert_eq!(buffer.push(&[0xe2]), "");
    }

    #[test]
    fn a_stop_string_split_across_pieces_is_never_emitted() {
        let mut filter = StopFilter::new(["</end>".to_string()]);
        assert_eq!(filter.push("hello </"), Filtered::Emit("hello ".into()));
        assert_eq!(filter.push("en"), Filtered::Emit(String::new()));
        assert_eq!(filter.push("d> more"), Filtered::Stopped(String::new()));
    }

    #[test]
    fn held_text_that_turns_out_not_to_be_a_stop_is_released() {
        let mut filter = StopFilter::new(["STOP".to_string()]);
        assert_eq!(filter.push("a ST"), Filtered::Emit("a ".into()));
        assert_eq!(filter.push("AR"), Filtered::Emit("STAR".into()));
        assert_eq!(filter.push("S"), Filtered::Emit(String::new()));
        assert_eq!(filter.finish(), "S");
    }

    #[test]
    fn the_earliest_of_several_stop_strings_wins() {
        let mut filter = StopFilter::new(["xyz".to_string(), "b".to_string()]);
        assert_eq!(filter.push("a b xyz"), Filtered::Stopped("a ".into()));
    }
}
