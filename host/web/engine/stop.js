// Stop strings, as the native side applies them (sdk/src/helpers/stop.rs): text is
// released only once it cannot be the start of a stop string, so a reader never sees
// the first half of one; the answer ends right before the earliest match.

export class StopMatcher {
  // `stop` is OpenAI's field: a string or an array of them; empty ones never match.
  constructor(stop) {
    const stops = stop === undefined || stop === null ? [] : Array.isArray(stop) ? stop : [stop];
    for (const entry of stops) {
      if (typeof entry !== 'string') throw new Error('`stop` must be a string or an array of strings');
    }
    this.stops = stops.filter((entry) => entry.length > 0);
    this.held = '';
  }

  // Add generated text; returns `{ text, stopped }`: what can be released, and whether
  // a stop string was found (`text` then ends right before it).
  push(piece) {
    this.held += piece;
    let earliest = -1;
    for (const stop of this.stops) {
      const at = this.held.indexOf(stop);
      if (at >= 0 && (earliest < 0 || at < earliest)) earliest = at;
    }
    if (earliest >= 0) {
      const text = this.held.slice(0, earliest);
      this.held = '';
      return { text, stopped: true };
    }
    let keep = this.held.length;
    for (let at = 0; at < this.held.length; at++) {
      const tail = this.held.slice(at);
      if (this.stops.some((stop) => stop.startsWith(tail))) {
        keep = at;
        break;
      }
    }
    const text = this.held.slice(0, keep);
    this.held = this.held.slice(keep);
    return { text, stopped: false };
  }

  // What is still held when the answer ends without a stop string.
  end() {
    const text = this.held;
    this.held = '';
    return text;
  }
}
