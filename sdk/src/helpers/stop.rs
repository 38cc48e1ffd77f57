//! Stop strings: text is released only once it cannot be the start of a stop string,
//! so a client never sees the first half of a stop sequence.

/// What [`StopMatcher::push`] releases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// Text that is safe to send now.
    pub text: String,
    /// True when a stop string was found: `text` ends right before it.
    pub stopped: bool,
}

/// Holds back generated text that might begin a stop string.
#[derive(Debug, Clone, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

impl StopMatcher {
    /// Empty stop strings are ignored (they would match everywhere).
    pub fn new<S: AsRef<str>>(stops: impl IntoIterator<Item = S>) -> Self {
        let stops =
            stops.into_iter().map(|s| s.as_ref().to_string()).filter(|s| !s.is_empty()).collect();
        Self { stops, held: String::new() }
    }

    /// Add generated text; release what can no longer be part of a stop string.
    pub fn push(&mut self, text: &str) -> Released {
        self.held.push_str(text);
        let earliest = self.stops.iter().filter_map(|stop| self.held.find(stop.as_str())).min();
        if let Some(at) = earliest {
            let text = self.held[..at].to_string();
            self.held.clear();
            return Released { text, stopped: true };
        }
        // The longest tail of the held text that is a proper prefix of a stop string
        // stays held; everything before it goes out.
        let keep_from = self
            .held
            .char_indices()
            .map(|(at, _)| at)
            .find(|&at| self.stops.iter().any(|stop| stop.starts_with(&self.held[at..])))
            .unwrap_or(self.held.len());
        let text = self.held[..keep_from].to_string();
        self.held.drain(..keep_from);
        Released { text, stopped: false }
    }

    /// At the end of generation, the held text was not a stop string after all.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_that_may_begin_a_stop_string_is_held_back_until_it_cannot() {
        let mut matcher = StopMatcher::new(["</end>"]);
        assert_eq!(matcher.push("hello </"), Released { text: "hello ".into(), stopped: false });
        assert_eq!(matcher.push("en"), Released { text: String::new(), stopped: false });
        assert_eq!(matcher.push("try"), Released { text: "</entry".into(), stopped: false });
    }

    #[test]
    fn a_stop_string_split_across_pieces_stops_before_it() {
        let mut matcher = StopMatcher::new(["STOP", "END"]);
        assert_eq!(matcher.push("abc ST").text, "abc ");
        assert_eq!(matcher.push("OP and more"), Released { text: String::new(), stopped: true });
    }

    #[test]
    fn the_earliest_of_several_stop_strings_wins() {
        let mut matcher = StopMatcher::new(["b", "a"]);
        assert_eq!(matcher.push("xxabxx"), Released { text: "xx".into(), stopped: true });
    }

    #[test]
    fn held_text_is_released_at_the_end_and_multibyte_text_is_never_split() {
        let mut matcher = StopMatcher::new(["é!"]);
        assert_eq!(matcher.push("café").text, "caf");
        assert_eq!(matcher.finish(), "é");
        let mut none = StopMatcher::new([""]);
        assert_eq!(none.push("anything").text, "anything");
    }
}
